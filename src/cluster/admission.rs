//! Admission, the one place that decides whether an edit of a shared object may be written: the
//! shared-object budget (etcd's limits) and what the gateway's plugin accepts (`crate::gateway`). Every
//! path goes through it: batch planning ([`admit_plan`] before an event is simulated, the budget after),
//! a 409's re-apply and Secret rotation ([`admit_object`]), and so `render` and `apply --dry-run`, which
//! plan a batch.

use crate::gateway::{self, Problem};
use crate::higress::plan::Template;
use crate::higress::{Action, Kind, ObjectKey, Refusal, State, Step};
use crate::reason::Reason;
use serde_json::Value;

/// How many problems a message or warning names before it counts the rest: what we emit is bounded.
const NAMED: usize = 3;

/// The problems listed, at most [`NAMED`] of them, then how many more.
pub fn list(problems: &[Problem]) -> String {
    let mut text = problems
        .iter()
        .take(NAMED)
        .map(Problem::to_string)
        .collect::<Vec<_>>()
        .join("; ");
    if problems.len() > NAMED {
        text.push_str(&format!("; and {} more", problems.len() - NAMED));
    }
    text
}

/// The `gateway-refuses` refusal of an edit of `key` that would add `added`.
pub fn gateway_refusal(key: &ObjectKey, plugin: &str, added: &[Problem]) -> Refusal {
    Refusal::new(
        Reason::GatewayRefuses,
        format!(
            "the gateway's {plugin} plugin would refuse {key} as this event leaves it, and with it every \
             route it configures: {}",
            list(added)
        ),
    )
}

/// The plugin reading a WasmPlugin CR written by a step, whether the CR exists yet or not.
fn plugin_of(key: &ObjectKey, object: Option<&Value>, step: &Step) -> Option<String> {
    if key.kind != Kind::WasmPlugin {
        return None;
    }
    if let Some(plugin) = object.and_then(gateway::plugin_of) {
        return Some(plugin.to_string());
    }
    match &step.action {
        Action::Edit {
            template: Some(Template::Plugin { plugin, .. }),
            ..
        } => Some(plugin.plugin_name().to_string()),
        _ => None,
    }
}

/// Before a plan is simulated: the problems its edits would add to the plugin CRs they touch, as
/// `state` holds them. An event that adds any is refused before it changes anything.
pub fn admit_plan(steps: &[Step], state: &State) -> Result<(), Refusal> {
    for step in steps {
        let Action::Edit { ops, .. } = &step.action else {
            continue;
        };
        let object = state.get(&step.key);
        let Some(plugin) = plugin_of(&step.key, object, step) else {
            continue;
        };
        let written: Vec<gateway::Written> = ops.iter().flat_map(|op| op.gateway_writes(object)).collect();
        if written.is_empty() {
            continue;
        }
        let list = |path: &[&str]| object.and_then(|o| gateway::at_path(o, path)).and_then(Value::as_array);
        let entry_list = match plugin.as_str() {
            "ai-proxy" => list(&["spec", "defaultConfig", "providers"]),
            "key-auth" => list(&["spec", "defaultConfig", "consumers"]),
            _ => None,
        };
        let admit = |before: bool| {
            let (entries, rules) = state
                .gateway_positions(&step.key, &plugin, &written, before)
                .unwrap_or_default();
            let entries: Vec<&Value> = entries.iter().filter_map(|&at| entry_list?.get(at)).collect();
            let rules: Vec<&Value> = rules
                .iter()
                .filter_map(|&at| list(&["spec", "matchRules"])?.get(at))
                .collect();
            let found = gateway::Found {
                object,
                entries: &entries,
                rules: &rules,
            };
            gateway::admit(&plugin, found, &written)
        };
        // The writes as written first; what they replace only when something is wrong with them.
        let mut added = admit(false);
        if !added.is_empty() {
            added = admit(true);
        }
        if !added.is_empty() {
            return Err(gateway_refusal(&step.key, &plugin, &added));
        }
    }
    Ok(())
}

/// A shared object about to be written whole over what the server holds (a 409's re-apply, a Secret
/// rotation): within the budget, and no problem the gateway did not have with it before.
pub fn admit_object(
    key: &ObjectKey,
    before: Option<&Value>,
    after: Option<&Value>,
    budget: usize,
) -> Result<(), Refusal> {
    let (over, _) = grown_past_limits(key, before, after, budget);
    if let Some(refusal) = capacity_refusal(&over, budget) {
        return Err(refusal);
    }
    if key.kind == Kind::WasmPlugin {
        let had = before.map(gateway::check).unwrap_or_default();
        let added: Vec<Problem> = after
            .map(gateway::check)
            .unwrap_or_default()
            .into_iter()
            .filter(|problem| !had.contains(problem))
            .collect();
        if !added.is_empty() {
            let plugin = after.or(before).and_then(gateway::plugin_of).unwrap_or_default();
            return Err(gateway_refusal(key, plugin, &added));
        }
    }
    Ok(())
}

/// What an API server allows an object's annotations to hold, keys and values together
/// (`metadata.annotations: Too long: must have at most 262144 bytes`). Ours (provider users, route
/// revisions) grow with the routes.
pub const ANNOTATIONS_LIMIT: usize = 256 * 1024;

/// The bytes of an object's annotations as the API server counts them: keys and values.
pub fn annotation_bytes(object: Option<&Value>) -> usize {
    object
        .and_then(|o| o.pointer("/metadata/annotations"))
        .and_then(Value::as_object)
        .map_or(0, |annotations| {
            annotations
                .iter()
                .map(|(key, value)| key.len() + value.as_str().map_or(0, str::len))
                .sum()
        })
}

pub fn serialized_size(object: Option<&Value>) -> usize {
    /// Counts what serde_json writes without keeping it: shared objects are large.
    struct Counter(usize);
    impl std::io::Write for Counter {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut counter = Counter(0);
    match object.map(|o| serde_json::to_writer(&mut counter, o)) {
        Some(Ok(())) => counter.0,
        _ => 0,
    }
}

/// How a shared object's edit took it past a limit it was within, or had not grown past: the
/// shared-object budget, and the annotations an API server allows. Also its size after the edit.
pub fn grown_past_limits(
    key: &ObjectKey,
    before: Option<&Value>,
    after: Option<&Value>,
    budget: usize,
) -> (Vec<String>, usize) {
    let mut over = Vec::new();
    let (annotations, annotations_before) = (annotation_bytes(after), annotation_bytes(before));
    if annotations > ANNOTATIONS_LIMIT && annotations > annotations_before {
        over.push(format!(
            "{key}'s annotations would grow from {annotations_before} to {annotations} bytes, past \
             the {ANNOTATIONS_LIMIT} an API server allows"
        ));
    }
    let (size, size_before) = (serialized_size(after), serialized_size(before));
    if size > budget && size > size_before {
        over.push(format!("{key} would grow from {size_before} to {size} bytes"));
    }
    (over, size)
}

/// The `capacity` refusal for what grew past its limits ([`grown_past_limits`]), if anything did.
pub fn capacity_refusal(over: &[String], budget: usize) -> Option<Refusal> {
    (!over.is_empty()).then(|| {
        Refusal::new(
            Reason::Capacity,
            format!(
                "{}, past the shared-object budget of {budget} bytes (etcd refuses objects over 1.5 MiB): \
                 share providers or consumers between routes, or run with --no-ai-statistics",
                over.join("; ")
            ),
        )
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ai_proxy(providers: Value, rules: Value) -> Value {
        json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
               "metadata": {"name": "ai-proxy.internal", "labels": {"higress.io/wasm-plugin-name": "ai-proxy"}},
               "spec": {"defaultConfig": {"providers": providers}, "defaultConfigDisable": false, "matchRules": rules}})
    }

    /// What a 409's re-apply and a rotation write whole: refused when it adds a problem, not for one that
    /// was there; and the budget, as before.
    #[test]
    fn a_whole_object_is_admitted_unless_it_adds_a_problem_or_outgrows_the_budget() {
        let key = ObjectKey::new(Kind::WasmPlugin, "ai-proxy.internal");
        let ghost = json!({"id": "ghost", "type": "qwen", "protocol": "openai"});
        let fine = json!({"id": "fine", "type": "openai", "protocol": "openai", "apiTokens": ["sk-fine"]});
        let rule = |id: &str| json!({"service": [format!("{id}.dns")], "config": {"activeProviderId": id}});
        // The broken provider is selected by no rule: the plugin never validates it.
        let before = ai_proxy(json!([ghost, fine]), json!([rule("fine")]));
        assert!(gateway::check(&before).is_empty());
        let selecting = ai_proxy(json!([ghost, fine]), json!([rule("fine"), rule("ghost")]));
        let refused = admit_object(&key, Some(&before), Some(&selecting), 1 << 20).unwrap_err();
        assert_eq!(refused.reason, Reason::GatewayRefuses);
        assert!(
            refused.message.contains(r#"provider "ghost""#) && refused.message.contains("apiTokens"),
            "{}",
            refused.message
        );
        // Once selected (someone else's doing), writing the object again adds nothing.
        let mut again = selecting.clone();
        again["spec"]["matchRules"][0]["config"]["note"] = json!("x");
        assert_eq!(admit_object(&key, Some(&selecting), Some(&again), 1 << 20), Ok(()));
        // The budget holds as before.
        let refused = admit_object(&key, Some(&before), Some(&selecting), 64).unwrap_err();
        assert_eq!(refused.reason, Reason::Capacity);
    }
}
