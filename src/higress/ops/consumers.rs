//! key-auth consumers (`defaultConfig.consumers`) and the global config they need: upserts that
//! refuse a credential another consumer holds, credential rotation, and removal while unused.

use super::json::{
    default_config, default_config_entry, entry_named, list_in, remove_keyed, set_default_config_disable, upsert_at,
};
use super::EditRefused;
use crate::gateway::Written;
use crate::higress::index::{credentials_of, list_at, EntryIndex, Table};
use crate::higress::plugins::field;
use crate::reason::Reason;
use serde_json::{json, Value};

/// [`super::Op::UpsertConsumer`], [`super::Op::SetConsumerCredentials`]: no other consumer holds a
/// credential of `consumer`.
pub(super) fn check_credentials(object: &Value, consumer: &Value, index: &mut EntryIndex) -> Result<(), EditRefused> {
    let name = consumer.get("name").and_then(Value::as_str).unwrap_or_default();
    if !index.consumers(object).credential_taken(consumer, name) {
        return Ok(());
    }
    let consumers = object
        .pointer("/spec/defaultConfig/consumers")
        .and_then(Value::as_array);
    // The key-auth plugin rejects its whole config when a credential string is used twice.
    let taken = consumers.into_iter().flatten().find(|c| {
        field(c, "name").and_then(Value::as_str) != Some(name)
            && credentials_of(c).any(|v| credentials_of(consumer).any(|ours| ours == v))
    });
    match taken {
        Some(other) => Err(EditRefused(
            Reason::EntryTaken,
            format!(
                "a credential of consumer {name:?} is already used by consumer {:?}",
                other.get("name").and_then(Value::as_str).unwrap_or_default()
            ),
        )),
        None => Ok(()),
    }
}

/// [`super::Op::check_together`]: consumers written together must not share a credential.
pub(super) fn refuse_shared_credentials<'a>(written: impl Iterator<Item = &'a Value>) -> Result<(), EditRefused> {
    let consumers: Vec<(&str, &Value)> = written
        .map(|consumer| {
            (
                field(consumer, "name").and_then(Value::as_str).unwrap_or_default(),
                consumer,
            )
        })
        .collect();
    for (i, (name, consumer)) in consumers.iter().enumerate() {
        let shared = consumers[..i].iter().find(|(other, earlier)| {
            other != name && credentials_of(earlier).any(|v| credentials_of(consumer).any(|ours| ours == v))
        });
        if let Some((other, _)) = shared {
            return Err(EditRefused(
                Reason::EntryTaken,
                format!("consumers {other:?} and {name:?} would share a credential"),
            ));
        }
    }
    Ok(())
}

/// Replaces `defaultConfig.consumers[name]` or appends, in an enabled global config with `global_auth` off.
pub(super) fn upsert_consumer(object: &mut Value, consumer: &Value, index: &mut EntryIndex) -> bool {
    let mut changed = ensure_key_auth_global(object);
    let consumers = index.consumers(object);
    let list = list_at(object, "/spec/defaultConfig/consumers");
    let at = consumers.names.find(list, field(consumer, "name"));
    match at {
        Some(at) => consumers.replaced(&list[at], consumer),
        None => consumers.added(consumer),
    }
    let config = default_config(object);
    changed |= upsert_at(list_in(config, "consumers"), at, consumer);
    changed | (config.insert("global_auth".into(), Value::Bool(false)) != Some(Value::Bool(false)))
}

/// Removes the consumer unless an allow list still names it: the global one, or a rule's through
/// the rules index (a batch of retirements asks this of a key-auth CR with thousands of rules).
pub(super) fn remove_consumer_if_unused(object: &mut Value, name: &str, index: &mut EntryIndex) -> bool {
    let named = allow_names(object.pointer("/spec/defaultConfig"), name) || index.rules(object).allow(name);
    debug_assert_eq!(named, allow_lists_name(object, name), "rules index out of step");
    !named
        && remove_keyed(
            object,
            "/spec/defaultConfig/consumers",
            ("name", name),
            index,
            Table::Consumers,
        )
}

/// Sets the `credentials` of the consumer named in `consumer`, if it is there.
pub(super) fn set_consumer_credentials(object: &mut Value, consumer: &Value) -> bool {
    let name = consumer.get("name").and_then(Value::as_str).unwrap_or_default();
    let credentials = consumer.get("credentials").cloned().unwrap_or_else(|| json!([]));
    entry_named(object, "/spec/defaultConfig/consumers", "name", name)
        .is_some_and(|entry| entry.insert("credentials".into(), credentials.clone()).as_ref() != Some(&credentials))
}

/// What [`super::Op::SetConsumerCredentials`] writes: the consumer's entry with the new credentials,
/// if `object` has it.
pub(super) fn credentials_written(object: Option<&Value>, consumer: &Value) -> Vec<Written> {
    let name = field(consumer, "name").and_then(Value::as_str).unwrap_or_default();
    default_config_entry(object, "consumers", "name", name)
        .map(|mut entry| {
            let credentials = consumer.get("credentials").cloned().unwrap_or_else(|| json!([]));
            entry.insert("credentials".into(), credentials);
            Written::Consumer(Value::Object(entry))
        })
        .into_iter()
        .collect()
}

/// Creates the key-auth global config with the console's defaults when it is missing or empty, and
/// enables it; says whether anything changed.
pub(super) fn ensure_key_auth_global(object: &mut Value) -> bool {
    let config = default_config(object);
    // "The plugin requires at least one global key": defaults only for a missing or empty global config.
    let created = config.is_empty();
    if created {
        config.insert("global_auth".into(), Value::Bool(false));
        config.insert("allow".into(), json!([]));
        config.insert("keys".into(), json!(["x-higress-dummy-key"]));
        config.insert("consumers".into(), json!([]));
    }
    set_default_config_disable(object, false) | created
}

/// What [`super::Op::EnsureKeyAuthGlobal`] writes into the key-auth CR `object` as it is before the edit.
pub(super) fn key_auth_global_written(object: Option<&Value>) -> Vec<Written> {
    let present = object
        .and_then(|o| o.pointer("/spec/defaultConfig"))
        .and_then(Value::as_object)
        .is_some_and(|config| !config.is_empty());
    if present {
        // The edit leaves a global config that is there alone.
        return Vec::new();
    }
    let mut probe = json!({"spec": {}});
    ensure_key_auth_global(&mut probe);
    // With its (empty) consumer list: the plugin requires one.
    let config = probe["spec"]["defaultConfig"].as_object().cloned().unwrap_or_default();
    vec![Written::Global(Value::Object(config))]
}

/// Whether any allow list of a key-auth CR (global or any rule, enabled or not) names the consumer.
pub fn allow_lists_name(object: &Value, consumer: &str) -> bool {
    allow_names(object.pointer("/spec/defaultConfig"), consumer)
        || object
            .pointer("/spec/matchRules")
            .and_then(Value::as_array)
            .is_some_and(|rules| rules.iter().any(|r| allow_names(field(r, "config"), consumer)))
}

/// Whether a key-auth config's `allow` names the consumer.
fn allow_names(config: Option<&Value>, consumer: &str) -> bool {
    config
        .and_then(|c| c.get("allow"))
        .and_then(Value::as_array)
        .is_some_and(|allow| allow.iter().any(|a| a.as_str() == Some(consumer)))
}

#[cfg(test)]
mod tests {
    use super::super::tests::plugin;
    use super::super::Op;
    use super::*;

    #[test]
    fn consumers_get_console_defaults_and_duplicate_credentials_are_refused() {
        let mut key_auth = plugin(json!({}));
        let alice = json!({"name": "alice", "keys": ["Authorization"], "in_header": true, "in_query": false, "credentials": ["Bearer k1"]});
        Op::UpsertConsumer(alice).apply(&mut key_auth).unwrap();
        assert_eq!(
            key_auth["spec"]["defaultConfig"],
            json!({"global_auth": false, "allow": [], "keys": ["x-higress-dummy-key"], "consumers": [
                {"name": "alice", "keys": ["Authorization"], "in_header": true, "in_query": false, "credentials": ["Bearer k1"]}]})
        );
        assert_eq!(key_auth["spec"]["defaultConfigDisable"], false);
        let bob = json!({"name": "bob", "keys": ["Authorization"], "in_header": true, "in_query": false, "credentials": ["Bearer k1"]});
        let refused = Op::UpsertConsumer(bob).apply(&mut key_auth).unwrap_err();
        assert!(refused.1.contains("already used by consumer \"alice\""));
        assert!(!refused.1.contains("k1"), "the credential never appears in the error");
    }

    #[test]
    fn a_consumer_named_by_an_allow_list_is_kept() {
        let mut key_auth = plugin(json!({
            "defaultConfig": {"consumers": [{"name": "alice"}, {"name": "bob"}]},
            "matchRules": [{"config": {"allow": ["alice"]}, "configDisable": true, "ingress": ["x"]}]
        }));
        Op::RemoveConsumerIfUnused("alice".into()).apply(&mut key_auth).unwrap();
        Op::RemoveConsumerIfUnused("bob".into()).apply(&mut key_auth).unwrap();
        assert_eq!(
            key_auth["spec"]["defaultConfig"]["consumers"],
            json!([{"name": "alice"}])
        );
        // With the index kept across edits (as in a batch): the rule goes, and alice with it.
        let mut index = EntryIndex::default();
        let again = Op::RemoveConsumerIfUnused("alice".into());
        assert_eq!(again.apply_indexed(&mut key_auth, &mut index), Ok(false));
        let rule_goes = Op::RemoveIngressTarget("x".into());
        assert_eq!(rule_goes.apply_indexed(&mut key_auth, &mut index), Ok(true));
        assert_eq!(again.apply_indexed(&mut key_auth, &mut index), Ok(true));
        assert_eq!(key_auth["spec"]["defaultConfig"]["consumers"], json!([]));
    }
}
