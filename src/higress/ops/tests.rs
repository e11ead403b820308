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
