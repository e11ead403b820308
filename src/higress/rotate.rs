//! Secret rotation: a route built from a Secret (`apiTokensSecretRef`, `credentialsSecretRef`) keeps
//! the Secret's value in its shared entries, in clear, as the console writes them. When the Secret
//! changes, the worker writes the new value where the old one went. The deploy recorded where in the
//! model's fence entry ([`FenceEntry::secrets`]); this module turns those records and the Secrets as
//! they are now into entry-level edits. Pure: no I/O.

use super::deploy::secret_value;
use super::fence::{FenceEntry, SecretTarget};
use super::names;
use super::ops::{self, Op};
use super::plan::{Plan, Refusal, Settings};
use super::plugins::{self, BuiltinPlugin};
use super::state::{Kind, ObjectKey, State};
use crate::event::SecretRef;

/// Every live (not retired) model whose fence entry records Secret values, from the fence shards in
/// `state`; ordered by model.
pub fn secret_users(state: &State) -> Vec<(String, FenceEntry)> {
    let mut users: Vec<(String, FenceEntry)> = state
        .of_kind(Kind::ConfigMap)
        .filter(|(name, _)| names::is_fence(name))
        .filter_map(|(_, shard)| shard.get("data")?.as_object())
        .flatten()
        .filter_map(|(model, entry)| Some((model.clone(), FenceEntry::parse(entry)?)))
        .filter(|(_, entry)| !entry.is_retired() && !entry.secrets.is_empty())
        .collect();
    users.sort_by(|a, b| a.0.cmp(&b.0));
    users
}

/// The users whose fence entry is the same in `fences_now`, read after their Secrets: for any other, a
/// deploy or retirement is under way, and the next round sees what it leaves.
pub fn unchanged_since(users: Vec<(String, FenceEntry)>, fences_now: &State) -> Vec<(String, FenceEntry)> {
    users
        .into_iter()
        .filter(|(model, entry)| fences_now.fence_entry(model).as_ref() == Some(entry))
        .collect()
}

/// The edits that write the current values of the model's Secrets into its provider and consumer
/// entries, and the Secrets that could not be used (gone, no longer readable, no token: named, never
/// their value), whose entries keep their values while the model's other entries rotate. An entry
/// that is no longer there (deleted in the console) is left alone, and so is one whose object records
/// another event as its source (another route's deploy, or a later one written inline, or the
/// model's redeploy that failed before writing it): a plan warning says so.
pub fn plan_rotation(model: &str, entry: &FenceEntry, state: &State, settings: &Settings) -> (Plan, Vec<Refusal>) {
    let mut plan = Plan::default();
    let mut unusable = Vec::new();
    let ours = format!("{model}@{}", entry.revision);
    for (i, used) in entry.secrets.iter().enumerate() {
        let (object, source_key) = match &used.target {
            SecretTarget::Provider(provider) => (
                ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::AiProxy.cr_name(settings.console)),
                names::secret_source_of_provider(provider),
            ),
            SecretTarget::Consumer { name, .. } => (
                ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::KeyAuth.cr_name(settings.console)),
                names::secret_source_of_consumer(name),
            ),
        };
        if used.recorded {
            let source = state.get(&object).and_then(|o| ops::secret_source(o, &source_key));
            if source.as_deref() != Some(ours.as_str()) {
                let writer = source.map_or("an event that wrote it inline".to_string(), |s| format!("event {s}"));
                plan.warnings.push(format!(
                    "{source_key} in {object} was last written by {writer}, not route {model}'s revision {}: not rotated",
                    entry.revision
                ));
                continue;
            }
        }
        let reference = SecretRef {
            name: used.secret.clone(),
            key: used.key.clone(),
        };
        let value = match secret_value(state, settings, &reference, &format!("route {model}: secrets[{i}]")) {
            Ok(value) => value,
            Err(refusal) => {
                unusable.push(refusal);
                continue;
            }
        };
        let edit = match &used.target {
            SecretTarget::Provider(provider) => Op::SetProviderTokens {
                provider: provider.clone(),
                tokens: vec![value.expose().to_string()],
            },
            SecretTarget::Consumer { name, source, key } => {
                Op::SetConsumerCredentials(plugins::consumer_entry(name, *source, key.as_deref(), &[value]))
            }
        };
        plan.edit(object, None, edit);
    }
    (plan.sorted(), unusable)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::event::KeySource;
    use crate::higress::fence::SecretUse;
    use crate::higress::simulate;
    use serde_json::{json, Value};

    fn secret(name: &str, key: &str, value: &str, readable: bool) -> Value {
        use base64::Engine as _;
        let labels = if readable {
            json!({names::LABEL_READABLE: "true"})
        } else {
            json!({})
        };
        json!({"apiVersion": "v1", "kind": "Secret", "metadata": {"name": name, "labels": labels},
               "data": {key: base64::engine::general_purpose::STANDARD.encode(value)}})
    }

    /// The fence shards holding these entries, each in its model's shard.
    fn fences_with(entries: &[(&str, &FenceEntry)]) -> State {
        let mut state = State::new();
        for (model, entry) in entries {
            let key = ObjectKey::new(Kind::ConfigMap, names::fence(model));
            let mut shard = state.get(&key).cloned().unwrap_or_else(
                || json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": key.name}, "data": {}}),
            );
            shard["data"][*model] = Value::String(entry.to_json());
            state.set(key, Some(shard));
        }
        state
    }

    fn entry_using(secret: &str) -> FenceEntry {
        FenceEntry {
            secrets: vec![
                SecretUse {
                    secret: secret.into(),
                    key: "token".into(),
                    target: SecretTarget::Provider("p".into()),
                    recorded: false,
                },
                SecretUse {
                    secret: secret.into(),
                    key: "credential".into(),
                    target: SecretTarget::Consumer {
                        name: "alice".into(),
                        source: KeySource::Bearer,
                        key: None,
                    },
                    recorded: false,
                },
            ],
            ..FenceEntry::deployed(3)
        }
    }

    fn cluster(token: &str, credential: &str, readable: bool) -> State {
        let settings = Settings::default();
        let mut state = State::new();
        let mut keys = secret("keys", "token", token, readable);
        keys["data"]["credential"] = secret("x", "credential", credential, readable)["data"]["credential"].clone();
        state.insert_object(keys);
        let mut ai_proxy = BuiltinPlugin::AiProxy.new_cr(settings.console, "higress-system");
        ai_proxy["spec"]["defaultConfig"] = json!({"providers": [
            {"id": "p", "type": "openai", "apiTokens": ["old"], "protocol": "openai"},
            {"id": "theirs", "type": "qwen", "apiTokens": ["keep"]}]});
        state.insert_object(ai_proxy);
        let mut key_auth = BuiltinPlugin::KeyAuth.new_cr(settings.console, "higress-system");
        key_auth["spec"]["defaultConfig"] = json!({"consumers": [
            {"name": "alice", "keys": ["Authorization"], "in_header": true, "in_query": false, "credentials": ["Bearer old"]},
            {"name": "bob", "keys": ["Authorization"], "in_header": true, "in_query": false, "credentials": ["Bearer bob"]}]});
        state.insert_object(key_auth);
        state
    }

    #[test]
    fn live_models_with_secrets_are_found_and_retired_ones_are_not() {
        let retired = FenceEntry {
            retired_at: Some("2026-01-01T00:00:00Z".into()),
            ..entry_using("keys")
        };
        let plain = FenceEntry::deployed(1);
        let state = fences_with(&[("b", &entry_using("keys")), ("a", &retired), ("c", &plain)]);
        let users = secret_users(&state);
        assert_eq!(users, vec![("b".to_string(), entry_using("keys"))]);
    }

    #[test]
    fn a_model_whose_fence_moved_while_its_secrets_were_read_waits_for_the_next_round() {
        let before = fences_with(&[("m", &entry_using("keys")), ("n", &entry_using("keys"))]);
        let users = secret_users(&before);
        let redeployed = FenceEntry {
            revision: 4,
            ..entry_using("keys")
        };
        let now = fences_with(&[("m", &redeployed), ("n", &entry_using("keys"))]);
        let kept: Vec<String> = unchanged_since(users.clone(), &now)
            .into_iter()
            .map(|(m, _)| m)
            .collect();
        assert_eq!(kept, ["n"]);
        assert_eq!(unchanged_since(users, &before).len(), 2);
    }

    #[test]
    fn a_changed_secret_reaches_the_provider_and_the_consumer_and_nothing_else() {
        let settings = Settings::default();
        let mut state = cluster("sk-new", "cred-new", true);
        let plan = plan_rotation("m", &entry_using("keys"), &state, &settings).0;
        let changes = simulate(&mut state, &plan).unwrap();
        assert_eq!(changes.len(), 2, "{changes:?}");
        let ai_proxy = state.get_named(Kind::WasmPlugin, "ai-proxy.internal").unwrap();
        assert_eq!(
            ai_proxy["spec"]["defaultConfig"]["providers"],
            json!([{"id": "p", "type": "openai", "apiTokens": ["sk-new"], "protocol": "openai"},
                   {"id": "theirs", "type": "qwen", "apiTokens": ["keep"]}])
        );
        let key_auth = state.get_named(Kind::WasmPlugin, "key-auth.internal").unwrap();
        assert_eq!(
            key_auth["spec"]["defaultConfig"]["consumers"][0]["credentials"],
            json!(["Bearer cred-new"])
        );
        assert_eq!(
            key_auth["spec"]["defaultConfig"]["consumers"][1]["credentials"],
            json!(["Bearer bob"])
        );
        // Once written, the same Secrets change nothing.
        let again = plan_rotation("m", &entry_using("keys"), &state, &settings).0;
        assert!(simulate(&mut state, &again).unwrap().is_empty());
    }

    #[test]
    fn a_secret_no_longer_readable_is_named_without_its_value_and_its_entry_left() {
        let state = cluster("sk-secret-value", "cred", false);
        let (plan, unusable) = plan_rotation("m", &entry_using("keys"), &state, &Settings::default());
        assert!(plan.steps.is_empty(), "{plan:?}");
        assert_eq!(unusable.len(), 2);
        let refusal = &unusable[0];
        assert_eq!(refusal.reason, crate::reason::Reason::SecretNotAllowed);
        assert!(refusal.message.contains("\"keys\""), "{}", refusal.message);
        assert!(!refusal.message.contains("sk-secret-value"));
    }

    /// One Secret gone does not hold back the route's other Secrets.
    #[test]
    fn a_secret_gone_leaves_its_entry_and_the_routes_other_entries_rotate() {
        let mut entry = entry_using("keys");
        entry.secrets[1].secret = "gone".into();
        let mut state = cluster("sk-new", "cred-new", true);
        let (plan, unusable) = plan_rotation("m", &entry, &state, &Settings::default());
        assert_eq!(unusable.len(), 1);
        assert!(unusable[0].message.contains("\"gone\""), "{}", unusable[0].message);
        simulate(&mut state, &plan).unwrap();
        let ai_proxy = state.get_named(Kind::WasmPlugin, "ai-proxy.internal").unwrap();
        assert_eq!(
            ai_proxy["spec"]["defaultConfig"]["providers"][0]["apiTokens"],
            json!(["sk-new"])
        );
        let key_auth = state.get_named(Kind::WasmPlugin, "key-auth.internal").unwrap();
        assert_eq!(
            key_auth["spec"]["defaultConfig"]["consumers"][0]["credentials"],
            json!(["Bearer old"])
        );
    }

    /// An entry whose object records its source rotates only when the record names the model's
    /// current event: another route's deploy, an inline write, or a failed redeploy left it otherwise.
    #[test]
    fn a_recorded_entry_rotates_only_when_its_record_names_the_models_event() {
        let settings = Settings::default();
        let mut entry = entry_using("keys");
        for used in &mut entry.secrets {
            used.recorded = true;
        }
        let with_sources = |provider: Option<&str>, consumer: Option<&str>| {
            let mut state = cluster("sk-new", "cred-new", true);
            for (name, source) in [("ai-proxy.internal", provider), ("key-auth.internal", consumer)] {
                let key = ObjectKey::new(Kind::WasmPlugin, name);
                let mut object = state.get(&key).unwrap().clone();
                if let Some(source) = source {
                    let record = json!({"provider/p": source, "consumer/alice": source}).to_string();
                    object["metadata"]["annotations"] = json!({names::ANNOTATION_SECRET_SOURCES: record});
                }
                state.set(key, Some(object));
            }
            state
        };
        let rotated = |state: &mut State| {
            let (plan, unusable) = plan_rotation("m", &entry, state, &settings);
            assert!(unusable.is_empty());
            let warnings = plan.warnings.clone();
            let changed: Vec<String> = simulate(state, &plan)
                .unwrap()
                .into_iter()
                .map(|(k, _)| k.name)
                .collect();
            (changed, warnings)
        };

        let (changed, warnings) = rotated(&mut with_sources(Some("m@3"), Some("m@3")));
        assert_eq!(changed, ["ai-proxy.internal", "key-auth.internal"]);
        assert!(warnings.is_empty(), "{warnings:?}");

        let (changed, warnings) = rotated(&mut with_sources(Some("other@7"), Some("m@2")));
        assert!(changed.is_empty(), "{changed:?}");
        assert_eq!(warnings.len(), 2, "{warnings:?}");
        assert!(
            warnings[0].contains("provider/p in WasmPlugin/ai-proxy.internal was last written by event other@7"),
            "{warnings:?}"
        );
        assert!(
            warnings[1].contains("event m@2, not route m's revision 3"),
            "{warnings:?}"
        );

        let (changed, warnings) = rotated(&mut with_sources(None, Some("m@3")));
        assert_eq!(changed, ["key-auth.internal"]);
        assert!(warnings[0].contains("an event that wrote it inline"), "{warnings:?}");
    }

    #[test]
    fn an_entry_deleted_meanwhile_is_not_brought_back() {
        let settings = Settings::default();
        let mut state = cluster("sk-new", "cred-new", true);
        let key = ObjectKey::new(Kind::WasmPlugin, "key-auth.internal");
        let mut key_auth = state.get(&key).unwrap().clone();
        key_auth["spec"]["defaultConfig"]["consumers"] = json!([]);
        state.set(key.clone(), Some(key_auth.clone()));
        let plan = plan_rotation("m", &entry_using("keys"), &state, &settings).0;
        simulate(&mut state, &plan).unwrap();
        assert_eq!(state.get(&key), Some(&key_auth));
    }

    #[test]
    fn a_credential_taken_by_another_consumer_refuses_the_rotation() {
        let mut state = cluster("sk-new", "bob", true);
        let plan = plan_rotation("m", &entry_using("keys"), &state, &Settings::default()).0;
        let refusal = simulate(&mut state, &plan).unwrap_err();
        assert_eq!(refusal.reason, crate::reason::Reason::EntryTaken);
    }
}
