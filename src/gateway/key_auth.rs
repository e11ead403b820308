//! key-auth (`plugins/wasm-cpp/extensions/key_auth/`, the C++ plugin the console's image runs): the
//! `key-auth.internal` WasmPlugin. `defaultConfig.consumers[]` holds every consumer; each route's rule
//! (`matchRules[].config`) lists the consumers it `allow`s.

use super::{Broken, Entry, Problem};
use serde_json::Value;

/// One `consumers[]` entry as the plugin reads it.
pub fn consumer_problems(_consumer: &Value) -> Vec<Broken> {
    Vec::new()
}

/// `defaultConfig` outside what [`consumer_problems`] checks for each entry (keys, in_header/in_query,
/// global_auth, and what is true of the consumers together: names and credentials used twice).
pub fn global_problems(_default_config: &Value) -> Vec<Broken> {
    Vec::new()
}

/// A matchRule's config (`allow`), as the plugin reads a rule.
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
    if let Some(consumers) = default_config.get("consumers").and_then(Value::as_array) {
        for consumer in consumers {
            let name = consumer.get("name").and_then(Value::as_str).unwrap_or_default();
            problems.extend(consumer_problems(consumer).into_iter().map(|broken| Problem {
                entry: Entry::Consumer(name.to_string()),
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
