//! ai-proxy providers (`defaultConfig.providers`), the routes of ours that use each (the provider-users
//! annotation), and the checks that a provider a route relies on is still there, where it was.

use super::annotations::write_annotation;
use super::json::{
    default_config, default_config_entry, entry_named, list_in, name_of, remove_keyed, set_default_config_disable,
    upsert_at,
};
use super::EditRefused;
use crate::gateway::Written;
use crate::higress::index::{list_at, EntryIndex, Table, Users};
use crate::higress::names;
use crate::higress::plugins::field;
use crate::higress::provider::{self, ExistingUpstream};
use crate::reason::Reason;
use serde_json::{json, Map, Value};
use std::collections::{BTreeMap, BTreeSet};

/// Replaces `defaultConfig.providers[id]` or appends, and enables the global config.
pub(super) fn upsert_provider(object: &mut Value, entry: &Value, index: &mut EntryIndex) -> bool {
    let positions = index.providers(object);
    let at = positions.find(list_at(object, "/spec/defaultConfig/providers"), field(entry, "id"));
    if at.is_none() {
        positions.pushed(entry);
    }
    let changed = upsert_at(list_in(default_config(object), "providers"), at, entry);
    set_default_config_disable(object, false) | changed
}

/// Removes the provider entry; the last one out leaves `{providers: []}` and disables the global config.
pub(super) fn remove_provider(object: &mut Value, id: &str, index: &mut EntryIndex) -> bool {
    let removed = remove_keyed(
        object,
        "/spec/defaultConfig/providers",
        ("id", id),
        index,
        Table::Providers,
    );
    let empty = object
        .pointer("/spec/defaultConfig/providers")
        .and_then(Value::as_array)
        .is_some_and(Vec::is_empty);
    if removed && empty {
        *default_config(object) = Map::from_iter([("providers".to_string(), json!([]))]);
        set_default_config_disable(object, true);
    }
    removed
}

/// Sets the `apiTokens` of provider `provider`, if it is there.
pub(super) fn set_provider_tokens(object: &mut Value, provider: &str, tokens: &[String]) -> bool {
    let tokens = json!(tokens);
    entry_named(object, "/spec/defaultConfig/providers", "id", provider)
        .is_some_and(|entry| entry.insert("apiTokens".into(), tokens.clone()).as_ref() != Some(&tokens))
}

/// What [`super::Op::SetProviderTokens`] writes: the provider's entry with the new tokens, if `object`
/// has it.
pub(super) fn tokens_written(object: Option<&Value>, provider: &str, tokens: &[String]) -> Vec<Written> {
    default_config_entry(object, "providers", "id", provider)
        .map(|mut entry| {
            entry.insert("apiTokens".into(), json!(tokens));
            Written::Provider(Value::Object(entry))
        })
        .into_iter()
        .collect()
}

/// [`super::Op::RequireProvider`] (`object`: ai-proxy) and [`super::Op::RequireRegistry`] (`in_registry`,
/// `object`: the McpBridge): the object still holds the provider, served where the route relies on it.
pub(super) fn require_provider(
    object: &Value,
    provider: &str,
    upstream: &ExistingUpstream,
    in_registry: bool,
    index: &mut EntryIndex,
) -> Result<(), EditRefused> {
    let (served_as_relied, what) = if in_registry {
        let found = provider::registry_upstream(object, index, provider);
        (found.map(|found| &found == upstream), "its registry")
    } else {
        let relied = match &upstream.registry {
            Some(_) => None,
            None => Some((upstream.service.clone(), upstream.port)),
        };
        let custom = provider::custom_service(object, index, provider);
        (custom.map(|custom| custom == relied), "it")
    };
    match served_as_relied {
        Some(true) => Ok(()),
        Some(false) => Err(provider_moved(provider, object, upstream)),
        None => Err(provider_gone(provider, object, what)),
    }
}

/// [`super::Op::RequireNoOtherUsers`]: no route but `route` uses the provider.
pub(super) fn require_no_other_users(
    object: &Value,
    provider: &str,
    route: &str,
    index: &mut EntryIndex,
) -> Result<(), EditRefused> {
    let users = index.users(provider_users_text(object));
    let others: Vec<&String> = users
        .map()
        .get(provider)
        .into_iter()
        .flat_map(BTreeMap::keys)
        .filter(|user| *user != route)
        .collect();
    match others.is_empty() {
        true => Ok(()),
        false => Err(provider_in_use(provider, &others)),
    }
}

/// Whether a route of ours uses the provider, according to the object as it is now.
pub(super) fn provider_used(object: &Value, provider: &str, index: &mut EntryIndex) -> bool {
    index
        .users(provider_users_text(object))
        .map()
        .get(provider)
        .is_some_and(|routes| !routes.is_empty())
}

/// Records that the route's event at `revision` uses the provider (a newer record stays).
pub(super) fn add_user(object: &mut Value, provider: &str, route: &str, revision: u64, index: &mut EntryIndex) -> bool {
    let users = index.users(provider_users_text(object));
    let edit = users.add(provider, route, revision);
    write_annotation(object, names::ANNOTATION_PROVIDER_USERS, edit, users)
}

/// Removes the route's record of using the provider if it is of `revision` or earlier.
pub(super) fn remove_user(
    object: &mut Value,
    provider: &str,
    route: &str,
    revision: u64,
    index: &mut EntryIndex,
) -> bool {
    let users = index.users(provider_users_text(object));
    let edit = users.remove(provider, route, revision);
    write_annotation(object, names::ANNOTATION_PROVIDER_USERS, edit, users)
}

/// The routes of ours that use each provider, from the object's annotation.
pub fn provider_users(object: &Value) -> BTreeMap<String, BTreeSet<String>> {
    Users::parse(provider_users_text(object))
        .map()
        .iter()
        .map(|(provider, routes)| (provider.clone(), routes.keys().cloned().collect()))
        .collect()
}

fn provider_users_text(object: &Value) -> Option<&str> {
    object
        .pointer("/metadata/annotations")
        .and_then(|a| a.get(names::ANNOTATION_PROVIDER_USERS))
        .and_then(Value::as_str)
}

/// A route relies on another route's provider that `object` no longer holds (`what`: the provider, or
/// its registry): the console's "Unknown provider", found at the write.
fn provider_gone(provider: &str, object: &Value, what: &str) -> EditRefused {
    let name = name_of(object);
    EditRefused(
        Reason::UnknownProvider,
        format!("data.route: Unknown provider {provider:?}: {name} no longer holds {what} (removed meanwhile, as its route was retired)"),
    )
}

/// A route relies on another route's provider that `object` now serves elsewhere.
fn provider_moved(provider: &str, object: &Value, upstream: &ExistingUpstream) -> EditRefused {
    let name = name_of(object);
    EditRefused(
        Reason::UnknownProvider,
        format!(
            "data.route: provider {provider:?} is no longer served at {}:{} in {name} (moved meanwhile by its own route's redeploy)",
            upstream.service, upstream.port
        ),
    )
}

/// Routes other than the event's use the provider it would move.
pub fn provider_in_use(provider: &str, others: &[impl AsRef<str>]) -> EditRefused {
    let others: Vec<&str> = others.iter().map(AsRef::as_ref).take(5).collect();
    EditRefused(
        Reason::EntryTaken,
        format!(
            "data.provider: provider {provider:?} also serves routes {others:?}: moving it to another service or \
             port would leave their Ingresses at the old one; give this route its own provider, or redeploy \
             those routes with another provider first"
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::super::tests::plugin;
    use super::super::{EditRefused, Op};
    use super::*;

    #[test]
    fn a_required_provider_or_registry_changes_nothing_and_refuses_the_write_once_gone_or_moved() {
        let mut ai_proxy = plugin(json!({"defaultConfig": {"providers": [{"id": "a"}]}}));
        ai_proxy["metadata"] = json!({"name": "ai-proxy.internal"});
        let before = ai_proxy.clone();
        let upstream = |port: u16| ExistingUpstream {
            service: "llm-a.internal.dns".into(),
            port,
            registry: Some("llm-a.internal".into()),
        };
        let require = |provider: &str| Op::RequireProvider {
            provider: provider.into(),
            upstream: upstream(443),
        };
        assert_eq!(require("a").apply(&mut ai_proxy), Ok(false));
        assert_eq!(ai_proxy, before);
        let EditRefused(reason, message) = require("b").apply(&mut ai_proxy).unwrap_err();
        assert_eq!(reason, Reason::UnknownProvider);
        assert!(
            message.contains("Unknown provider \"b\": ai-proxy.internal no longer holds it"),
            "{message}"
        );
        // Served by an in-cluster service now, not by its registry.
        ai_proxy["spec"]["defaultConfig"]["providers"][0]["openaiCustomServiceName"] = json!("in-cluster.svc");
        ai_proxy["spec"]["defaultConfig"]["providers"][0]["openaiCustomServicePort"] = json!(8000);
        let EditRefused(_, message) = require("a").apply(&mut ai_proxy).unwrap_err();
        assert!(
            message.contains("no longer served at llm-a.internal.dns:443"),
            "{message}"
        );

        let mut bridge = json!({"metadata": {"name": "default"}, "spec": {"registries": [
            {"name": "llm-a.internal", "type": "dns", "domain": "a.example.com", "port": 443}]}});
        let require = |provider: &str, port: u16| Op::RequireRegistry {
            provider: provider.into(),
            upstream: upstream(port),
        };
        assert_eq!(require("a", 443).apply(&mut bridge), Ok(false));
        let EditRefused(reason, message) = require("a", 8443).apply(&mut bridge).unwrap_err();
        assert_eq!(reason, Reason::UnknownProvider);
        assert!(
            message.contains("no longer served at llm-a.internal.dns:8443"),
            "{message}"
        );
        let EditRefused(_, message) = require("b", 443).apply(&mut bridge).unwrap_err();
        assert!(
            message.contains("Unknown provider \"b\": default no longer holds its registry"),
            "{message}"
        );
    }

    #[test]
    fn a_provider_moves_only_while_no_other_route_uses_it() {
        let mut ai_proxy = plugin(json!({}));
        ai_proxy["metadata"]["annotations"] =
            json!({names::ANNOTATION_PROVIDER_USERS: r#"{"p":["a@1"],"q":["a@1","b@2"]}"#});
        let alone = |provider: &str| Op::RequireNoOtherUsers {
            provider: provider.into(),
            route: "a".into(),
        };
        assert_eq!(alone("p").apply(&mut ai_proxy), Ok(false));
        assert_eq!(alone("unused").apply(&mut ai_proxy), Ok(false));
        let EditRefused(reason, message) = alone("q").apply(&mut ai_proxy).unwrap_err();
        assert_eq!(reason, Reason::EntryTaken);
        assert!(
            message.contains("provider \"q\" also serves routes [\"b\"]"),
            "{message}"
        );
    }

    #[test]
    fn removing_the_last_provider_disables_the_global_config() {
        let mut ai_proxy =
            plugin(json!({"defaultConfig": {"providers": [{"id": "a"}]}, "defaultConfigDisable": false}));
        Op::RemoveProvider("a".into()).apply(&mut ai_proxy).unwrap();
        assert_eq!(ai_proxy["spec"]["defaultConfig"], json!({"providers": []}));
        assert_eq!(ai_proxy["spec"]["defaultConfigDisable"], true);
    }

    #[test]
    fn a_provider_is_removed_only_when_no_route_of_ours_uses_it_as_the_object_says() {
        let mut ai_proxy = plugin(json!({"defaultConfig": {"providers": [{"id": "p"}]}}));
        let add = |route: &str, revision: u64| Op::AddProviderUser {
            provider: "p".into(),
            route: route.into(),
            revision,
        };
        let remove = |route: &str, revision: u64| Op::RemoveProviderUser {
            provider: "p".into(),
            route: route.into(),
            revision,
        };
        let if_unused = Op::IfProviderUnused {
            provider: "p".into(),
            then: Box::new(Op::RemoveProvider("p".into())),
        };
        add("a", 1).apply(&mut ai_proxy).unwrap();
        add("b", 3).apply(&mut ai_proxy).unwrap();
        remove("a", 2).apply(&mut ai_proxy).unwrap();
        assert_eq!(if_unused.apply(&mut ai_proxy), Ok(false), "b still uses p");
        // An older retirement of b, landing after b's newer deploy, leaves b's record.
        assert_eq!(remove("b", 2).apply(&mut ai_proxy), Ok(false));
        assert_eq!(
            if_unused.apply(&mut ai_proxy),
            Ok(false),
            "b's deploy at 3 still uses p"
        );
        // An older deploy landing late does not lower the record.
        assert_eq!(add("b", 1).apply(&mut ai_proxy), Ok(false));
        assert_eq!(remove("b", 3).apply(&mut ai_proxy), Ok(true));
        assert_eq!(if_unused.apply(&mut ai_proxy), Ok(true));
        assert_eq!(ai_proxy["spec"]["defaultConfig"]["providers"], json!([]));
        assert!(
            ai_proxy["metadata"].get("annotations").is_none(),
            "no empty annotation is left"
        );
    }

    /// Annotations written before revisions were recorded (plain route names) still count, and any
    /// retirement of theirs removes them; a record with its revision is a `route@revision` string, so
    /// an older replica still reads it as a user.
    #[test]
    fn provider_users_written_without_revisions_still_count() {
        let mut bridge = plugin(json!({}));
        bridge["metadata"]["annotations"] = json!({names::ANNOTATION_PROVIDER_USERS: r#"{"p":["a","b"]}"#});
        let remove = Op::RemoveProviderUser {
            provider: "p".into(),
            route: "a".into(),
            revision: 1,
        };
        assert_eq!(remove.apply(&mut bridge), Ok(true));
        assert_eq!(
            bridge["metadata"]["annotations"][names::ANNOTATION_PROVIDER_USERS],
            r#"{"p":["b"]}"#
        );
        assert_eq!(provider_users(&bridge)["p"].iter().collect::<Vec<_>>(), ["b"]);
        let add = Op::AddProviderUser {
            provider: "p".into(),
            route: "b".into(),
            revision: 4,
        };
        assert_eq!(add.apply(&mut bridge), Ok(true));
        let text = bridge["metadata"]["annotations"][names::ANNOTATION_PROVIDER_USERS]
            .as_str()
            .unwrap();
        assert_eq!(text, r#"{"p":["b@4"]}"#);
        // What a replica of the version before revisions reads: still a user of p.
        let before_revisions: BTreeMap<String, Vec<String>> = serde_json::from_str(text).unwrap();
        assert_eq!(before_revisions["p"].len(), 1);
    }
}
