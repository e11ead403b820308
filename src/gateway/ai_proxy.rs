//! ai-proxy (`plugins/wasm-go/extensions/ai-proxy/`): the `ai-proxy.internal` WasmPlugin. Its
//! `defaultConfig.providers[]` holds every provider; each service rule (`matchRules[].config`) names one by
//! `activeProviderId`.

use super::{Broken, Entry, Problem};
use serde_json::Value;

/// One `providers[]` entry as the plugin reads it: `ProviderConfig.FromJson`, `Validate` and the type's
/// `ValidateConfig`.
pub fn provider_problems(_provider: &Value) -> Vec<Broken> {
    Vec::new()
}

/// `defaultConfig` outside what [`provider_problems`] checks for each entry (the entries' list itself,
/// what is true of them together).
pub fn global_problems(_default_config: &Value) -> Vec<Broken> {
    Vec::new()
}

/// A matchRule's config, combined with `defaultConfig` as the plugin combines them.
pub fn rule_problems(_rule_config: &Value, _default_config: &Value) -> Vec<Broken> {
    Vec::new()
}

/// Every problem of the whole config: `defaultConfig` (absent: `{}`) and each rule with its entry.
pub fn check(default_config: &Value, rules: &[(Entry, &Value)]) -> Vec<Problem> {
    let mut problems: Vec<Problem> = global_problems(default_config)
        .into_iter()
        .map(|broken| Problem {
            entry: Entry::Global,
            broken,
        })
        .collect();
    if let Some(providers) = default_config.get("providers").and_then(Value::as_array) {
        for provider in providers {
            let id = provider.get("id").and_then(Value::as_str).unwrap_or_default();
            problems.extend(provider_problems(provider).into_iter().map(|broken| Problem {
                entry: Entry::Provider(id.to_string()),
                broken,
            }));
        }
    }
    for (entry, config) in rules {
        problems.extend(rule_problems(config, default_config).into_iter().map(|broken| Problem {
            entry: entry.clone(),
            broken,
        }));
    }
    problems
}
