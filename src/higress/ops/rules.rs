//! `matchRules` of the plugins: rule upserts in the console's order, removals of rules and of their
//! targets, and ai-proxy's service rule of each provider.

use super::json::{retain_in, retain_indexed, spec_list};
use super::EditRefused;
use crate::higress::index::{list_at, rule_provider, EntryIndex, Table};
use crate::higress::plugins::{target_list, Targets};
use crate::reason::Reason;
use serde_json::{json, Value};

/// [`super::Op::UpsertProviderServiceRule`]: a rule of another provider on `service` refuses it.
pub(super) fn check_service_rule(
    object: &Value,
    provider: &str,
    service: &str,
    index: &mut EntryIndex,
) -> Result<(), EditRefused> {
    if !index.rules(object).service_taken(service, provider) {
        return Ok(());
    }
    let rules = object.pointer("/spec/matchRules").and_then(Value::as_array);
    let taken = rules
        .into_iter()
        .flatten()
        .find(|r| Targets::is_exactly(r, "service", service) && rule_provider(r) != Some(provider));
    match taken {
        Some(other) => Err(EditRefused(
            Reason::EntryTaken,
            format!(
                "service {service} is already bound to provider {:?} in ai-proxy.internal",
                rule_provider(other).unwrap_or_default()
            ),
        )),
        None => Ok(()),
    }
}

/// The provider's service rule `{service: [s], config: {activeProviderId: p}}`; rules of the same
/// provider on another service go.
pub(super) fn upsert_provider_service_rule(
    object: &mut Value,
    provider: &str,
    service: &str,
    index: &mut EntryIndex,
) -> bool {
    // Rules of the provider on other services go (usually there are none to look for).
    let moved = !index.rules(object).provider_only_on(provider, service)
        && retain_in(object, "/spec/matchRules", |r| {
            rule_provider(r) != Some(provider) || Targets::is_exactly(r, "service", service)
        });
    if moved {
        index.forget_rules();
    }
    let rule = Targets::service(service).rule(json!({"activeProviderId": provider}), true);
    upsert_rule(object, rule, false, index) | moved
}

/// Removes the provider's upstream service (the `service` of the rules naming it) from every rule.
pub(super) fn remove_provider_service(object: &mut Value, provider: &str, index: &mut EntryIndex) -> bool {
    let rules = index.rules(object);
    if !rules.has_provider(provider) {
        return false;
    }
    if let Some(services) = rules.services_of(provider).map(<[String]>::to_vec) {
        debug_assert_eq!(
            {
                let mut indexed = services.clone();
                indexed.sort();
                indexed
            },
            {
                let mut scanned: Vec<String> = list_at(object, "/spec/matchRules")
                    .iter()
                    .filter(|rule| rule_provider(rule) == Some(provider))
                    .flat_map(|rule| target_list(rule, "service").map(str::to_string))
                    .collect();
                scanned.sort();
                scanned
            },
            "rules index out of step"
        );
        let mut changed = false;
        for service in &services {
            changed |= remove_target(object, "service", service, index);
        }
        return changed;
    }
    let services: Vec<String> = list_at(object, "/spec/matchRules")
        .iter()
        .filter(|rule| rule_provider(rule) == Some(provider))
        .filter_map(|rule| rule.get("service").and_then(Value::as_array))
        .flatten()
        .filter_map(|service| service.as_str().map(str::to_string))
        .collect();
    let mut changed = false;
    for service in &services {
        changed |= remove_target(object, "service", service, index);
    }
    changed
}

/// Replaces the rule with equal targets in place, or inserts before the first rule that sorts after it,
/// so a list in the console's order stays in it and nobody else's rule moves relative to another.
pub(super) fn upsert_rule(object: &mut Value, rule: Value, only_if_absent: bool, index: &mut EntryIndex) -> bool {
    let rules = index.rules(object);
    let targets = Targets::of(&rule);
    let list = list_at(object, "/spec/matchRules");
    let found = rules.find(list, &rule, |r| targets.matches(r));
    match found {
        Some(at) => {
            if only_if_absent || list[at] == rule {
                return false;
            }
            rules.replaced(&list[at], &rule);
            spec_list(object, "matchRules")[at] = rule;
        }
        None => {
            let at = rules.place(list, &rule);
            rules.added(&rule);
            spec_list(object, "matchRules").insert(at, rule);
        }
    }
    true
}

/// Removes the rules whose targets are `targets`.
pub(super) fn remove_rule(object: &mut Value, targets: &Targets, index: &mut EntryIndex) -> bool {
    index.rules(object);
    retain_indexed(object, "/spec/matchRules", |r| !targets.matches(r), index, Table::Rules)
}

/// Removes a target from every rule's list; a rule whose list empties goes. A missing list stays missing.
/// The rules index follows.
pub(super) fn remove_target(object: &mut Value, list_key: &str, target: &str, index: &mut EntryIndex) -> bool {
    let list = list_at(object, "/spec/matchRules");
    let sole = index.rules(object).sole_rule_naming(list, list_key, target);
    let narrowed: Vec<(usize, Value)> = match sole {
        Some(at) => at.map(|at| (at, list[at].clone())).into_iter().collect(),
        None => list
            .iter()
            .enumerate()
            .filter(|(_, rule)| target_list(rule, list_key).any(|t| t == target))
            .map(|(at, rule)| (at, rule.clone()))
            .collect(),
    };
    if narrowed.is_empty() {
        return false;
    }
    let rules = spec_list(object, "matchRules");
    for (at, _) in &narrowed {
        if let Some(list) = rules[*at].get_mut(list_key).and_then(Value::as_array_mut) {
            list.retain(|t| t.as_str() != Some(target));
        }
    }
    let list = list_at(object, "/spec/matchRules");
    let table = index.rules(object);
    for (at, old) in &narrowed {
        table.replaced(old, &list[*at]);
    }
    // Rules left without a target of this kind go; the others stay where they are.
    let emptied: Vec<usize> = narrowed
        .iter()
        .map(|(at, _)| *at)
        .filter(|at| target_list_is_empty(&list[*at], list_key))
        .collect();
    let mut position = 0;
    retain_indexed(
        object,
        "/spec/matchRules",
        |_| {
            let keep = emptied.binary_search(&position).is_err();
            position += 1;
            keep
        },
        index,
        Table::Rules,
    );
    let list = list_at(object, "/spec/matchRules");
    for (at, _) in narrowed.iter().filter(|(at, _)| emptied.binary_search(at).is_err()) {
        let now_at = at - emptied.partition_point(|e| e < at);
        index.rules(object).moved_in_place(list, now_at);
    }
    true
}

fn target_list_is_empty(rule: &Value, list_key: &str) -> bool {
    rule.get(list_key).and_then(Value::as_array).is_some_and(Vec::is_empty)
}

#[cfg(test)]
mod tests {
    use super::super::tests::plugin;
    use super::super::Op;
    use super::*;

    /// A retirement decides on ai-proxy as it is at write time: the service of the provider's rule
    /// goes from every rule, even when that rule came after the batch read (another writer's deploy).
    #[test]
    fn a_provider_service_goes_from_every_rule_as_the_object_is_at_write_time() {
        let mut object = plugin(json!({"matchRules": [
            {"config": {"activeProviderId": "p"}, "configDisable": false, "service": ["llm-p.internal.dns"]},
            {"config": {"x": 1}, "configDisable": false, "service": ["llm-p.internal.dns", "other.dns"]},
            {"config": {"activeProviderId": "q"}, "configDisable": false, "service": ["llm-q.internal.dns"]},
            {"config": {}, "configDisable": false, "ingress": ["route"]}
        ]}));
        let unused = Op::IfProviderUnused {
            provider: "p".into(),
            then: Box::new(Op::RemoveProviderService("p".into())),
        };
        assert_eq!(unused.apply(&mut object), Ok(true));
        assert_eq!(
            object["spec"]["matchRules"],
            json!([
                {"config": {"x": 1}, "configDisable": false, "service": ["other.dns"]},
                {"config": {"activeProviderId": "q"}, "configDisable": false, "service": ["llm-q.internal.dns"]},
                {"config": {}, "configDisable": false, "ingress": ["route"]}
            ])
        );
        assert_eq!(unused.apply(&mut object), Ok(false), "nothing left to remove");
    }

    #[test]
    fn provider_service_rule_moves_with_the_service_and_refuses_a_taken_service() {
        let mut ai_proxy = plugin(json!({"matchRules": [
            {"config": {"activeProviderId": "a"}, "configDisable": false, "service": ["llm-a.internal.dns"]},
            {"config": {"activeProviderId": "b"}, "configDisable": false, "service": ["llm-b.internal.dns"]}
        ]}));
        Op::UpsertProviderServiceRule {
            provider: "a".into(),
            service: "llm-a.internal.static".into(),
        }
        .apply(&mut ai_proxy)
        .unwrap();
        let services: Vec<&str> = ai_proxy["spec"]["matchRules"]
            .as_array()
            .unwrap()
            .iter()
            .map(|r| r["service"][0].as_str().unwrap())
            .collect();
        assert_eq!(services, ["llm-a.internal.static", "llm-b.internal.dns"]);
        let taken = Op::UpsertProviderServiceRule {
            provider: "c".into(),
            service: "llm-b.internal.dns".into(),
        };
        assert!(taken
            .apply(&mut ai_proxy)
            .unwrap_err()
            .1
            .contains("already bound to provider \"b\""));
    }

    #[test]
    fn rule_upsert_replaces_equal_targets_and_inserts_in_console_order() {
        let mut key_auth = plugin(json!({"matchRules": [
            {"config": {"allow": ["x"]}, "configDisable": false, "ingress": ["a"]},
            {"config": {"allow": ["y"]}, "configDisable": false, "ingress": ["c"]},
            {"config": {"allow": ["z"]}, "configDisable": false, "domain": ["d.com"]}
        ]}));
        Op::UpsertRule(Targets::ingress("b").rule(json!({"allow": ["n"]}), true))
            .apply(&mut key_auth)
            .unwrap();
        Op::UpsertRule(Targets::ingress("a").rule(json!({"allow": ["x2"]}), false))
            .apply(&mut key_auth)
            .unwrap();
        let rules = key_auth["spec"]["matchRules"].as_array().unwrap();
        let ingresses: Vec<&str> = rules.iter().filter_map(|r| r["ingress"][0].as_str()).collect();
        assert_eq!(ingresses, ["a", "b", "c"]);
        assert_eq!(rules[0]["config"]["allow"], json!(["x2"]));
        assert_eq!(rules[0]["configDisable"], true);
        assert_eq!(rules[3]["domain"], json!(["d.com"]));
    }

    #[test]
    fn insert_if_absent_leaves_an_existing_rule_alone() {
        let mut stats =
            plugin(json!({"matchRules": [{"config": {"custom": 1}, "configDisable": false, "ingress": ["a"]}]}));
        Op::InsertRuleIfAbsent(Targets::ingress("a").rule(json!({"use_default_response_attributes": true}), true))
            .apply(&mut stats)
            .unwrap();
        assert_eq!(
            stats["spec"]["matchRules"],
            json!([{"config": {"custom": 1}, "configDisable": false, "ingress": ["a"]}])
        );
    }

    #[test]
    fn removing_an_ingress_target_drops_only_emptied_rules() {
        let mut mapper = plugin(json!({"matchRules": [
            {"config": {}, "configDisable": false, "ingress": ["a"], "service": ["s"]},
            {"config": {}, "configDisable": false, "ingress": ["a", "b"]},
            {"config": {}, "configDisable": false, "ingress": ["c"]}
        ]}));
        Op::RemoveIngressTarget("a".into()).apply(&mut mapper).unwrap();
        assert_eq!(
            mapper["spec"]["matchRules"],
            json!([{"config": {}, "configDisable": false, "ingress": ["b"]}, {"config": {}, "configDisable": false, "ingress": ["c"]}])
        );
    }
}
