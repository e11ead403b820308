//! The tests of the dispatch in `ops/mod.rs` (an index kept across all kinds of edit, redaction), and
//! the plugin object the families' tests edit.

use super::annotations::route_revisions_text;
use super::*;

pub(super) fn plugin(spec: Value) -> Value {
    json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin", "metadata": {"name": "x"}, "spec": spec})
}

/// An index kept up to date across many edits answers as one built afresh for each edit (and,
/// in debug builds, as the scans it replaces).
#[test]
fn edits_through_a_kept_index_equal_edits_on_a_fresh_one() {
    let start = plugin(json!({
        "defaultConfig": {"consumers": [{"name": "z", "credentials": ["k-z", "k-z"]}, {"name": "a", "credential": "k-a"}],
                          "providers": [{"id": "p1"}]},
        "registries": [{"name": "r1", "domain": "x"}],
        "matchRules": [
            {"config": {"activeProviderId": "p1"}, "configDisable": false, "service": ["s1"]},
            {"config": {"allow": ["a"]}, "configDisable": false, "ingress": ["i5", "i5"]},
            {"config": {"allow": ["z"]}, "configDisable": false, "ingress": ["i2"]}
        ]
    }));
    let rule = |ingress: &str, allow: &str| Targets::ingress(ingress).rule(json!({"allow": [allow]}), true);
    let consumer = |name: &str, key: &str| json!({"name": name, "credentials": [key]});
    let user = |provider: &str, route: &str| Op::AddProviderUser {
        provider: provider.into(),
        route: route.into(),
        revision: 1,
    };
    let mut ops = vec![
        Op::UpsertRule(rule("i3", "a")),
        Op::UpsertRule(rule("i5", "b")),
        Op::InsertRuleIfAbsent(rule("i2", "c")),
        Op::InsertRuleIfAbsent(rule("i1", "c")),
        Op::UpsertConsumer(consumer("b", "k-b")),
        Op::UpsertConsumer(consumer("b", "k-b2")),
        Op::UpsertConsumer(consumer("c", "k-z")),
        Op::UpsertConsumer(consumer("c", "k-b")),
        Op::UpsertProviderServiceRule {
            provider: "p2".into(),
            service: "s1".into(),
        },
        Op::UpsertProviderServiceRule {
            provider: "p1".into(),
            service: "s0".into(),
        },
        Op::UpsertProviderServiceRule {
            provider: "p2".into(),
            service: "s2".into(),
        },
        Op::UpsertProvider(json!({"id": "p2"})),
        Op::UpsertProvider(json!({"id": "p1", "type": "openai"})),
        Op::UpsertRegistry(json!({"name": "r2", "domain": "y"})),
        Op::UpsertRegistry(json!({"name": "r1", "domain": "z"})),
        user("p1", "m1"),
        user("p1", "m2"),
        user("p2", "m1"),
        Op::RemoveProviderUser {
            provider: "p1".into(),
            route: "m1".into(),
            revision: 1,
        },
        Op::RemoveRule(Targets::ingress("i3")),
        Op::UpsertRule(rule("i4", "a")),
        Op::RemoveIngressTarget("i2".into()),
        Op::InsertRuleIfAbsent(rule("i2", "d")),
        Op::IfProviderUnused {
            provider: "p2".into(),
            then: Box::new(Op::RemoveProvider("p2".into())),
        },
        Op::RemoveProviderUser {
            provider: "p2".into(),
            route: "m1".into(),
            revision: 1,
        },
        Op::IfProviderUnused {
            provider: "p2".into(),
            then: Box::new(Op::RemoveProvider("p2".into())),
        },
        Op::UpsertConsumer(consumer("d", "k-d")),
        // Route records: appended, rewritten for a newer revision, kept for an older one,
        // forgotten, guarded edits.
        Op::RecordRoute {
            route: "m2".into(),
            revision: 1,
        },
        Op::RecordRoute {
            route: "m1".into(),
            revision: 2,
        },
        Op::RecordRoute {
            route: "m2".into(),
            revision: 3,
        },
        Op::RecordRoute {
            route: "m1".into(),
            revision: 1,
        },
        Op::IfRouteNotNewer {
            route: "m2".into(),
            revision: 2,
            then: Box::new(Op::RemoveIngressTarget("i4".into())),
        },
        Op::ForgetRoute {
            route: "m2".into(),
            revision: 2,
        },
        Op::ForgetRoute {
            route: "m1".into(),
            revision: 2,
        },
        Op::RecordRoute {
            route: "m\"3".into(),
            revision: 1,
        },
        Op::ForgetRoute {
            route: "m2".into(),
            revision: 3,
        },
        Op::ForgetRoute {
            route: "m\"3".into(),
            revision: 1,
        },
        Op::RecordRoute {
            route: "m4".into(),
            revision: 4,
        },
    ];
    ops.extend((0..40).rev().map(|i| Op::UpsertRule(rule(&format!("n{i:02}"), "a"))));
    ops.extend((0..40).map(|i| Op::RecordRoute {
        route: format!("r{i}"),
        revision: i,
    }));
    let (mut kept, mut fresh) = (start.clone(), start);
    let mut index = EntryIndex::default();
    for op in &ops {
        let through_kept = op.apply_indexed(&mut kept, &mut index);
        let through_fresh = op.apply(&mut fresh);
        assert_eq!(through_kept, through_fresh, "{op:?}");
        assert_eq!(kept, fresh, "{op:?}");
        // The records' text, appended to in place, is what serde_json writes of them.
        if let Some(text) = route_revisions_text(&kept) {
            let records: Map<String, Value> = serde_json::from_str(text).unwrap();
            assert_eq!(text, serde_json::to_string(&records).unwrap(), "{op:?}");
        }
    }
    let records = route_revisions_text(&kept).unwrap();
    assert!(records.starts_with(r#"{"m4":4,"r0":0,"r1":1,"#), "{records}");
    let rules = kept["spec"]["matchRules"].as_array().unwrap();
    assert!(rules.len() > 40);
    assert_eq!(
        kept["spec"]["defaultConfig"]["providers"],
        json!([{"id": "p1", "type": "openai"}])
    );
}

#[test]
fn rule_edits_do_not_show_a_plugin_password() {
    let rule = Targets::ingress("a").rule(
        json!({"redis": {"service_name": "r.dns", "password": "p-hidden"}}),
        true,
    );
    for op in [Op::UpsertRule(rule.clone()), Op::InsertRuleIfAbsent(rule)] {
        let text = format!("{op:?}");
        assert!(!text.contains("p-hidden") && text.contains("r.dns"), "{text}");
    }
}

/// Users added and removed in any order, through a kept index and its in-place edits of the
/// provider-users text: the text is always what serializing the records afresh makes (providers in
/// the order first recorded, each one's routes sorted), and it holds exactly the users left.
#[test]
fn provider_users_removed_in_place_leave_the_text_a_render_would_make() {
    let mut object = plugin(json!({}));
    let mut index = EntryIndex::default();
    let mut users: indexmap::IndexMap<String, std::collections::BTreeMap<String, u64>> = indexmap::IndexMap::new();
    // A fixed pseudo-random walk (an LCG): the same sequence every run.
    let mut seed: u64 = 7;
    let mut next = |below: u64| {
        seed = seed
            .wrapping_mul(6_364_136_223_846_793_005)
            .wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % below
    };
    for step in 0..3000 {
        let provider = format!("p{}", next(4));
        let route = format!("r{}", next(12));
        let revision = next(3);
        let (op, changed) = if next(5) < 3 {
            let recorded = users.get(&provider).and_then(|r| r.get(&route)).copied();
            if recorded.is_none_or(|r| r < revision) {
                users
                    .entry(provider.clone())
                    .or_default()
                    .insert(route.clone(), revision);
            }
            let op = Op::AddProviderUser {
                provider,
                route,
                revision,
            };
            (op, recorded.is_none_or(|r| r < revision))
        } else {
            let recorded = users.get(&provider).and_then(|r| r.get(&route)).copied();
            let removed = recorded.is_some_and(|r| r <= revision);
            if removed {
                let routes = users.get_mut(&provider).unwrap();
                routes.remove(&route);
                if routes.is_empty() {
                    users.shift_remove(&provider);
                }
            }
            let op = Op::RemoveProviderUser {
                provider,
                route,
                revision,
            };
            (op, removed)
        };
        assert_eq!(
            op.apply_indexed(&mut object, &mut index),
            Ok(changed),
            "step {step}: {op:?}"
        );
        let expected: Map<String, Value> = users
            .iter()
            .map(|(provider, routes)| {
                let entries = routes
                    .iter()
                    .map(|(route, &revision)| match revision {
                        0 => json!(route),
                        _ => json!(format!("{route}@{revision}")),
                    })
                    .collect();
                (provider.clone(), Value::Array(entries))
            })
            .collect();
        let text = object["metadata"]["annotations"][crate::higress::names::ANNOTATION_PROVIDER_USERS].as_str();
        let expected = (!expected.is_empty()).then(|| serde_json::to_string(&expected).unwrap());
        assert_eq!(text, expected.as_deref(), "step {step}: {op:?}");
    }
}

/// A provider-users text written by hand (spaces) is not cut where the parts say: it is written again,
/// as a render makes it, and later removals cut that text in place.
#[test]
fn a_provider_users_text_written_by_hand_is_written_again_not_cut() {
    let users = crate::higress::names::ANNOTATION_PROVIDER_USERS;
    let mut object = plugin(json!({}));
    object["metadata"]["annotations"] = json!({users: r#"{"p": ["a@1", "b@2"], "q": ["c@1", "d@1"]}"#});
    let mut index = EntryIndex::default();
    let remove = |provider: &str, route: &str| Op::RemoveProviderUser {
        provider: provider.into(),
        route: route.into(),
        revision: 2,
    };
    assert_eq!(remove("p", "b").apply_indexed(&mut object, &mut index), Ok(true));
    assert_eq!(
        object["metadata"]["annotations"][users],
        json!(r#"{"p":["a@1"],"q":["c@1","d@1"]}"#)
    );
    assert_eq!(remove("q", "c").apply_indexed(&mut object, &mut index), Ok(true));
    assert_eq!(
        object["metadata"]["annotations"][users],
        json!(r#"{"p":["a@1"],"q":["d@1"]}"#)
    );
}
