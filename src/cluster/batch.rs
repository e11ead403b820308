//! Planning a batch, without I/O: every event in order against the state its predecessors leave,
//! each with its own result; what each object was before the batch and becomes after it; and the
//! capacity check, so an event that would take a shared object past its budget is refused before
//! anything is written.

use super::admission::{
    self, annotation_bytes, capacity_refusal, grown_past_limits, serialized_size, ANNOTATIONS_LIMIT,
};
use crate::event::LifecycleEvent;
use crate::gateway::{self, Problem};
use crate::higress::ops::Op;
use crate::higress::{self, Action, Decision, Kind, ObjectKey, Refusal, Settings, State, Step};
use crate::result::{Change, Outcome, RouteResult};
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::Arc;

/// A batch, planned.
#[derive(Default)]
pub struct Planned {
    pub results: Vec<RouteResult>,
    pub steps: BTreeMap<ObjectKey, Vec<Step>>,
    /// The objects each event's plan touches, by event index.
    pub touched: Vec<BTreeSet<ObjectKey>>,
    /// The objects each event's simulation changed, in write order, by event index.
    pub changed: Vec<Vec<ObjectKey>>,
    /// Each touched object as it was before the batch.
    pub before: BTreeMap<ObjectKey, Before>,
    /// The problems the gateway had with each plugin CR the batch touches, before the batch
    /// (`crate::gateway::check`): another writer's, or older; never a reason to refuse an event.
    pub gateway_problems: BTreeMap<ObjectKey, Vec<Problem>>,
    pub state: State,
}

/// A touched object as it was before the batch.
#[derive(Clone, Debug, PartialEq)]
pub enum Before {
    /// An object put or deleted whole (`None`: absent): a route's own. Shared with the state it was
    /// read into, not copied: a batch of retirements holds hundreds.
    Whole(Option<Arc<Value>>),
    /// An object edited entry by entry: a shared one, up to megabytes, so not copied. It changed
    /// when an event's simulation says so.
    Edited {
        existed: bool,
        resource_version: Option<String>,
    },
}

/// The request that writes an object.
#[derive(Debug, PartialEq)]
pub enum Write<'a> {
    Create(&'a Value),
    /// Carries the object's `resourceVersion`.
    Replace(&'a Value),
    /// Only of this `resourceVersion`, when known.
    Delete(Option<String>),
}

impl Before {
    /// The request that takes the object from this to `desired` (`None`: absent); `None` when there
    /// is nothing to write.
    pub fn write_to<'a>(&self, desired: Option<&'a Value>) -> Option<Write<'a>> {
        let (existed, version) = match self {
            Before::Whole(current) if current.as_deref() == desired => return None,
            Before::Whole(current) => (
                current.is_some(),
                current
                    .as_ref()
                    .and_then(|object| object.pointer("/metadata/resourceVersion"))
                    .and_then(Value::as_str),
            ),
            Before::Edited {
                existed,
                resource_version,
            } => (*existed, resource_version.as_deref()),
        };
        match (existed, desired) {
            (true, None) => Some(Write::Delete(version.map(str::to_string))),
            (false, Some(new)) => Some(Write::Create(new)),
            (true, Some(new)) => Some(Write::Replace(new)),
            (false, None) => None,
        }
    }
}

impl Planned {
    /// The objects the batch changes, each with what it was before.
    pub fn to_write(&self) -> impl Iterator<Item = (&ObjectKey, &Before)> {
        let changed: BTreeSet<&ObjectKey> = self.changed.iter().flatten().collect();
        self.before.iter().filter(move |(key, before)| {
            self.steps.contains_key(*key)
                && match before {
                    Before::Whole(was) => was.as_deref() != self.state.get(key),
                    Before::Edited { existed, .. } => {
                        changed.contains(key) && (*existed || self.state.get(key).is_some())
                    }
                }
        })
    }
}

/// Plans every event in order against the state its predecessors leave.
pub fn plan(events: &[LifecycleEvent], settings: &Settings, budget: usize, initial: State) -> Planned {
    let now = chrono::Utc::now();
    let mut planned = Planned {
        state: initial,
        ..Planned::default()
    };
    let mut sizes = SharedSizes::default();
    for event in events {
        let mut result = RouteResult::for_event(event);
        let mut touched = BTreeSet::new();
        let mut changed = Vec::new();
        match higress::plan(event, &planned.state, settings, now) {
            Err(refusal) => result.fail(Outcome::Rejected, refusal.reason, refusal.message, false),
            Ok(Decision::Stale { seen }) => {
                result.outcome = Outcome::Stale;
                result
                    .warnings
                    .push(format!("route {} has already seen revision {seen}", event.model()));
            }
            Ok(Decision::Apply(plan)) if let Err(refusal) = admission::admit_plan(&plan.steps, &planned.state) => {
                result.fail(Outcome::Rejected, refusal.reason, refusal.message, false)
            }
            Ok(Decision::Apply(plan)) => {
                for step in &plan.steps {
                    if step.key.kind == Kind::WasmPlugin && !planned.gateway_problems.contains_key(&step.key) {
                        // Measured when the batch first touches it: the events before added none.
                        let had = planned.state.get(&step.key).map(gateway::check).unwrap_or_default();
                        planned.gateway_problems.insert(step.key.clone(), had);
                    }
                }
                // Keep what each object was before the batch, not a copy of the whole state.
                for step in &plan.steps {
                    if !planned.before.contains_key(&step.key) {
                        let before = match step.action {
                            Action::Edit { .. } => {
                                let was = planned.state.get(&step.key);
                                Before::Edited {
                                    existed: was.is_some(),
                                    resource_version: was
                                        .and_then(|object| object.pointer("/metadata/resourceVersion"))
                                        .and_then(Value::as_str)
                                        .map(str::to_string),
                                }
                            }
                            _ => Before::Whole(planned.state.get_shared(&step.key)),
                        };
                        planned.before.insert(step.key.clone(), before);
                    }
                }
                let growth = edits(&plan, &planned.state);
                let near = sizes.near_the_budget(&growth, &planned.state, budget);
                // An event that may be refused for capacity is simulated over copies of everything its
                // plan touches, put back if it is: a refused event leaves nothing behind, in any object.
                let others: Vec<(ObjectKey, Option<Value>)> = match near.is_empty() {
                    true => Vec::new(),
                    false => plan
                        .steps
                        .iter()
                        .map(|step| &step.key)
                        .collect::<BTreeSet<_>>()
                        .into_iter()
                        .filter(|key| !near.iter().any(|(near, _)| near == *key))
                        .map(|key| (key.clone(), planned.state.get(key).cloned()))
                        .collect(),
                };
                let simulated = higress::simulate(&mut planned.state, &plan).and_then(|changes| {
                    let over = sizes.measure(&growth, &near, &planned.state, budget);
                    match over {
                        None => Ok(changes),
                        Some(refusal) => {
                            for (key, object) in near.into_iter().chain(others) {
                                planned.state.set(key, object);
                            }
                            Err(refusal)
                        }
                    }
                });
                match simulated {
                    Err(refusal) => result.fail(Outcome::Rejected, refusal.reason, refusal.message, false),
                    Ok(changes) => {
                        result.outcome = if changes.is_empty() {
                            Outcome::Unchanged
                        } else {
                            Outcome::Applied
                        };
                        result.changes = changes.iter().map(|(key, op)| Change::new(key, *op)).collect();
                        changed = changes.into_iter().map(|(key, _)| key).collect();
                        result.warnings = plan.warnings;
                        for key in plan.steps.iter().map(|step| &step.key).collect::<BTreeSet<_>>() {
                            if key.kind != Kind::WasmPlugin {
                                continue;
                            }
                            let had = &planned.gateway_problems[key];
                            if !had.is_empty() {
                                result.warnings.push(format!(
                                    "the gateway refuses {key} for problems that were there before this event \
                                     (run `higress-route-worker audit`): {}",
                                    admission::list(had)
                                ));
                            }
                        }
                        match plan.stale {
                            // Only what its model's retirement left was removed: no route to reach.
                            Some(_) => result.outcome = Outcome::Stale,
                            None => result.route = crate::result::RouteAccess::of(event, &planned.state),
                        }
                        for step in plan.steps {
                            touched.insert(step.key.clone());
                            planned.steps.entry(step.key.clone()).or_default().push(step);
                        }
                    }
                }
            }
        }
        planned.results.push(result);
        planned.touched.push(touched);
        planned.changed.push(changed);
    }
    planned
}

/// Serialized sizes of the shared objects a batch edits: exact once measured, then an upper bound
/// grown by each event's edits ([`Op::growth_bound`]), so objects are serialized again only when an
/// event could take them past the budget.
#[derive(Default)]
struct SharedSizes {
    bytes: BTreeMap<ObjectKey, usize>,
}

/// The shared objects a plan edits, each with a bound on how much it can grow them (`state`: the
/// objects before the plan; an object it creates from a template counts the template).
fn edits<'p>(plan: &'p higress::Plan, state: &State) -> Vec<(&'p ObjectKey, usize)> {
    plan.steps
        .iter()
        .filter_map(|step| match &step.action {
            Action::Edit { template, ops } => {
                let created = if template.is_some() && state.get(&step.key).is_none() {
                    4096
                } else {
                    0
                };
                Some((&step.key, created + ops.iter().map(Op::growth_bound).sum::<usize>()))
            }
            _ => None,
        })
        .collect()
}

impl SharedSizes {
    /// The objects this plan could take past the budget, as they are before it (to put back).
    fn near_the_budget(
        &mut self,
        edits: &[(&ObjectKey, usize)],
        state: &State,
        budget: usize,
    ) -> Vec<(ObjectKey, Option<Value>)> {
        let mut near = Vec::new();
        for &(key, growth) in edits {
            let size = *self
                .bytes
                .entry(key.clone())
                .or_insert_with(|| state.known_size(key).unwrap_or_else(|| serialized_size(state.get(key))));
            if size + growth > budget || annotation_bytes(state.get(key)) + growth > ANNOTATIONS_LIMIT {
                near.push((key.clone(), state.get(key).cloned()));
            }
        }
        near
    }

    /// After the plan is simulated: the objects near the budget measured exactly, the others' bound
    /// grown. A refusal when one grew past the budget.
    fn measure(
        &mut self,
        edits: &[(&ObjectKey, usize)],
        near: &[(ObjectKey, Option<Value>)],
        state: &State,
        budget: usize,
    ) -> Option<Refusal> {
        let mut over = Vec::new();
        for &(key, growth) in edits {
            match near.iter().find(|(k, _)| k == key) {
                Some((_, before)) => {
                    let after = state.get(key);
                    let (past, size) = grown_past_limits(key, before.as_ref(), after, budget);
                    if past.is_empty() {
                        self.bytes.insert(key.clone(), size);
                    }
                    over.extend(past);
                }
                None => *self.bytes.entry(key.clone()).or_default() += growth,
            }
        }
        capacity_refusal(&over, budget)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::higress::plan::Template;
    use crate::higress::Kind;
    use serde_json::json;

    #[test]
    fn a_template_counts_toward_the_growth_only_when_the_object_is_absent() {
        let key = ObjectKey::new(Kind::McpBridge, "default");
        let plan = higress::Plan {
            steps: vec![Step {
                key: key.clone(),
                action: Action::Edit {
                    template: Some(Template::McpBridge {
                        namespace: "higress-system".into(),
                    }),
                    ops: Vec::new(),
                },
            }],
            ..higress::Plan::default()
        };
        let mut state = State::new();
        assert_eq!(edits(&plan, &state), [(&key, 4096)]);
        state.set(key.clone(), Some(json!({"spec": {}})));
        assert_eq!(edits(&plan, &state), [(&key, 0)]);
    }

    #[test]
    fn an_edited_object_is_written_by_whether_it_existed_a_whole_one_by_comparison() {
        let object = json!({"metadata": {"resourceVersion": "7"}, "data": {"k": "v"}});
        let edited = Before::Edited {
            existed: true,
            resource_version: Some("7".into()),
        };
        assert_eq!(edited.write_to(Some(&object)), Some(Write::Replace(&object)));
        assert_eq!(edited.write_to(None), Some(Write::Delete(Some("7".into()))));
        let absent = Before::Edited {
            existed: false,
            resource_version: None,
        };
        assert_eq!(absent.write_to(Some(&object)), Some(Write::Create(&object)));
        assert_eq!(absent.write_to(None), None);
        let whole = Before::Whole(Some(Arc::new(object.clone())));
        assert_eq!(whole.write_to(Some(&object)), None, "unchanged");
        let changed = json!({"metadata": {"resourceVersion": "7"}, "data": {"k": "w"}});
        assert_eq!(whole.write_to(Some(&changed)), Some(Write::Replace(&changed)));
        assert_eq!(whole.write_to(None), Some(Write::Delete(Some("7".into()))));
    }
}
