//! The entry point of the mapping: the fence decides whether an event still applies, then
//! [`super::deploy`] or [`super::retire`] build its steps. Apart from the plan's types
//! ([`super::plan`]), which deploy and retire use, so that no module imports the one importing it.

use super::fence::{self, FenceEntry};
use super::names;
use super::plan::{Decision, Refusal, Settings};
use super::state::{Kind, State};
use super::{deploy, retire};
use crate::event::{Lifecycle, LifecycleEvent, ModelRetired};

/// What the mapping decides for an event against the objects it read.
pub fn plan(
    event: &LifecycleEvent,
    state: &State,
    settings: &Settings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<Decision, Refusal> {
    if let Some(seen) = fence::stale(event, state.fence_entry(event.model())) {
        // A deploy its model's retirement outranks, with the route's own objects still there: a
        // deploy that passed the fence before the retirement landed wrote them after it, and its
        // settle did not get to remove them. The retirement is applied again, as that settle would.
        let retired = state.fence_entry(event.model()).filter(FenceEntry::is_retired);
        let remnants = [
            (Kind::Ingress, names::route_ingress(event.model())),
            (Kind::ConfigMap, names::route_config_map(event.model())),
        ]
        .iter()
        .any(|(kind, name)| state.get_named(*kind, name).is_some());
        if let (Lifecycle::Deployed(_), Some(entry), true) = (&event.body, retired, remnants) {
            let retirement = ModelRetired {
                model: event.model().to_string(),
                revision: entry.revision,
                delete_provider: entry.delete_provider,
                delete_consumers: entry.delete_consumers,
            };
            let mut plan = retire::plan_retire(&retirement, state, settings, now);
            plan.warnings.push(format!(
                "model {} was retired at revision {seen}; what of its route was left was removed again",
                event.model()
            ));
            plan.stale = Some(seen);
            return Ok(Decision::Apply(plan.sorted()));
        }
        return Ok(Decision::Stale { seen });
    }
    let plan = match &event.body {
        Lifecycle::Deployed(deployed) => deploy::plan_deploy(deployed, state, settings, now)?,
        Lifecycle::Retired(retired) => retire::plan_retire(retired, state, settings, now),
    };
    Ok(Decision::Apply(plan.sorted()))
}
