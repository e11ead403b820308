//! Applying a plan to objects in memory: what the engine writes is what this makes of what it read,
//! and a batch is planned by simulating its events one after the other.

use super::index::EntryIndex;
use super::ops::{EditRefused, Op};
use super::plan::{Action, Plan, Refusal, Step};
use super::state::{ObjectKey, State, SERVER_FIELDS};
use serde_json::Value;
use std::sync::Arc;

/// How one step changed an object.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Operation {
    Created,
    Updated,
    Deleted,
}

impl Operation {
    pub fn as_str(self) -> &'static str {
        match self {
            Operation::Created => "created",
            Operation::Updated => "updated",
            Operation::Deleted => "deleted",
        }
    }
}

/// Brings an object (`None`: absent) to what a step makes of it; says whether it changed.
pub fn apply_step(step: &Step, object: &mut Option<Value>) -> Result<bool, EditRefused> {
    apply_step_indexed(step, object, &mut EntryIndex::default())
}

/// [`apply_step`] with the object's index, kept up to date: several steps applied to one object
/// share it.
pub fn apply_step_indexed(
    step: &Step,
    object: &mut Option<Value>,
    index: &mut EntryIndex,
) -> Result<bool, EditRefused> {
    if !matches!(step.action, Action::Edit { .. }) {
        index.reset();
    }
    match &step.action {
        Action::Delete => Ok(object.take().is_some()),
        Action::CreateIfMissing(new) => Ok(object.is_none() && object.replace(new.clone()).is_none()),
        Action::Put(desired) => {
            let desired = merge_server_fields(desired, object.as_ref());
            let changed = object.as_ref() != Some(&desired);
            *object = Some(desired);
            Ok(changed)
        }
        Action::Edit { template, ops } => {
            let mut changed = false;
            if object.is_none() {
                let Some(template) = template else { return Ok(false) };
                *object = Some(template.build());
                index.reset();
                changed = true;
            }
            let current = object.as_mut().expect("present");
            for op in ops {
                changed |= op.apply_indexed(current, index)?;
            }
            Ok(changed)
        }
    }
}

/// A whole-object write keeps what the API server owns, so comparing it with the current object
/// shows only real differences.
fn merge_server_fields(desired: &Value, current: Option<&Value>) -> Value {
    let mut desired = desired.clone();
    let Some(current) = current else { return desired };
    for field in SERVER_FIELDS {
        if let Some(value) = current.pointer(&format!("/metadata/{field}")) {
            desired["metadata"][field] = value.clone();
        }
    }
    if let Some(status) = current.get("status") {
        desired["status"] = status.clone();
    }
    desired
}

/// Applies a plan to an in-memory state and says which objects changed, in write order. On a refused
/// edit nothing is applied.
pub fn simulate(state: &mut State, plan: &Plan) -> Result<Vec<(ObjectKey, Operation)>, Refusal> {
    // Check every edit first, so a refusal leaves the state untouched without copying it: batches
    // simulate many events against large shared objects.
    // The objects' indexes make both passes independent of how many entries the objects hold.
    for step in &plan.steps {
        if let Action::Edit { ops, .. } = &step.action {
            Op::check_together(ops)?;
            state
                .inspect(&step.key, |object, index| {
                    ops.iter().try_for_each(|op| op.check_indexed(object, index))
                })
                .transpose()?;
        }
    }
    let mut changes = Vec::new();
    for step in &plan.steps {
        // A new object is the step's own, shared rather than copied.
        if let Action::Put(desired) = &step.action {
            if state.get(&step.key).is_none() {
                state.put_shared(step.key.clone(), Arc::clone(desired));
                changes.push((step.key.clone(), Operation::Created));
                continue;
            }
        }
        // Unreachable after the checks, which also check a step's edits against each other: an
        // edit refused here would leave the steps before it applied.
        let (existed, applied, exists) = state.edit(&step.key, |object, index| {
            let existed = object.is_some();
            let applied = apply_step_indexed(step, object, index);
            (existed, applied, object.is_some())
        });
        debug_assert!(applied.is_ok(), "{} refused after the checks: {applied:?}", step.key);
        if applied? {
            let operation = match (existed, exists) {
                (false, _) => Operation::Created,
                (true, false) => Operation::Deleted,
                (true, true) => Operation::Updated,
            };
            changes.push((step.key.clone(), operation));
        }
    }
    Ok(changes)
}
