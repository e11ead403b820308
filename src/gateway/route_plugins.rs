//! The plugins whose CRs hold one rule per route: model-router and model-mapper (`<name>.internal`),
//! ai-statistics (`ai-statistics-<version>`), and the route plugins an event may bind (`route.plugins`).
//! A plugin is validated only when its parser is ported here ([`is_ported`]).

use super::{Broken, Entry, Problem};
use serde_json::Value;

/// Whether the plugin's config parser is ported here (with conformance cases in
/// `tests/fixtures/gateway/<plugin>.yaml`).
pub fn is_ported(_plugin: &str) -> bool {
    false
}

/// The plugin's `defaultConfig` as its parser reads the global config; `None` when not ported.
pub fn global_problems(_plugin: &str, _default_config: &Value) -> Option<Vec<Broken>> {
    None
}

/// A matchRule's config, combined with `defaultConfig` as the plugin combines them; `None` when not ported.
pub fn rule_problems(_plugin: &str, _rule_config: &Value, _default_config: &Value) -> Option<Vec<Broken>> {
    None
}

/// Every problem of the whole config; `None` when not ported.
pub fn check(plugin: &str, default_config: &Value, rules: &[(Entry, &Value)]) -> Option<Vec<Problem>> {
    let mut problems: Vec<Problem> = global_problems(plugin, default_config)?
        .into_iter()
        .map(|broken| Problem {
            entry: Entry::Global,
            broken,
        })
        .collect();
    for (entry, config) in rules {
        problems.extend(
            rule_problems(plugin, config, default_config)?
                .into_iter()
                .map(|broken| Problem {
                    entry: entry.clone(),
                    broken,
                }),
        );
    }
    Some(problems)
}
