//! Secret rotation: a route built from a Secret (`apiTokensSecretRef`, `credentialsSecretRef`) keeps
//! the Secret's value in its shared entries, in clear, as the console writes them. When the Secret
//! changes, the worker writes the new value where the old one went. The deploy recorded where in the
//! model's fence entry ([`FenceEntry::secrets`]); this module turns those records and the Secrets as
//! they are now into entry-level edits. Pure: no I/O.

use super::deploy::secret_value;
use super::fence::{FenceEntry, SecretTarget};
use super::names;
use super::ops::Op;
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
        .filter(|(model, entry)| super::fence::entry(fences_now, model).as_ref() == Some(entry))
        .collect()
}

/// The edits that write the current values of the model's Secrets into its provider and consumer
/// entries. An entry that is no longer there (deleted in the console) is left alone; a Secret that is
/// gone or no longer readable refuses the rotation, naming the reference and never the value.
pub fn plan_rotation(model: &str, entry: &FenceEntry, state: &State, settings: &Settings) -> Result<Plan, Refusal> {
    let mut plan = Plan::default();
    for (i, used) in entry.secrets.iter().enumerate() {
        let reference = SecretRef {
            name: used.secret.clone(),
            key: used.key.clone(),
        };
        let value = secret_value(state, settings, &reference, &format!("route {model}: secrets[{i}]"))?;
        match &used.target {
            SecretTarget::Provider(provider) => plan.edit(
                ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::AiProxy.cr_name(settings.console)),
                None,
                Op::SetProviderTokens {
                    provider: provider.clone(),
                    tokens: vec![value.expose().to_string()],
                },
            ),
            SecretTarget::Consumer { name, source, key } => plan.edit(
                ObjectKey::new(Kind::WasmPlugin, BuiltinPlugin::KeyAuth.cr_name(settings.console)),
                None,
                Op::SetConsumerCredentials(plugins::consumer_entry(name, *source, key.as_deref(), &[value])),
            ),
        }
    }
    Ok(plan.sorted())
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
                },
                SecretUse {
                    secret: secret.into(),
                    key: "credential".into(),
                    target: SecretTarget::Consumer {
                        name: "alice".into(),
                        source: KeySource::Bearer,
                        key: None,
                    },
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
        let plan = plan_rotation("m", &entry_using("keys"), &state, &settings).unwrap();
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
        let again = plan_rotation("m", &entry_using("keys"), &state, &settings).unwrap();
        assert!(simulate(&mut state, &again).unwrap().is_empty());
    }

    #[test]
    fn a_secret_no_longer_readable_refuses_without_its_value() {
        let state = cluster("sk-secret-value", "cred", false);
        let refusal = plan_rotation("m", &entry_using("keys"), &state, &Settings::default()).unwrap_err();
        assert_eq!(refusal.reason, crate::reason::Reason::SecretNotAllowed);
        assert!(refusal.message.contains("\"keys\""), "{}", refusal.message);
        assert!(!refusal.message.contains("sk-secret-value"));
    }

    #[test]
    fn an_entry_deleted_meanwhile_is_not_brought_back() {
        let settings = Settings::default();
        let mut state = cluster("sk-new", "cred-new", true);
        let key = ObjectKey::new(Kind::WasmPlugin, "key-auth.internal");
        let mut key_auth = state.get(&key).unwrap().clone();
        key_auth["spec"]["defaultConfig"]["consumers"] = json!([]);
        state.set(key.clone(), Some(key_auth.clone()));
        let plan = plan_rotation("m", &entry_using("keys"), &state, &settings).unwrap();
        simulate(&mut state, &plan).unwrap();
        assert_eq!(state.get(&key), Some(&key_auth));
    }

    #[test]
    fn a_credential_taken_by_another_consumer_refuses_the_rotation() {
        let mut state = cluster("sk-new", "bob", true);
        let plan = plan_rotation("m", &entry_using("keys"), &state, &Settings::default()).unwrap();
        let refusal = simulate(&mut state, &plan).unwrap_err();
        assert_eq!(refusal.reason, crate::reason::Reason::EntryTaken);
    }
}
