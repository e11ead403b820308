//! The fence ConfigMap's edit: a model's entry (refused when a newer one is there) and the pruning of
//! old retirements; the entries themselves are [`crate::higress::fence`]'s.

use super::json::object_at;
use super::EditRefused;
use crate::higress::fence::FenceEntry;
use crate::higress::index::{self, EntryIndex};
use crate::reason::Reason;
use serde_json::Value;

/// [`super::Op::SetFence`] is refused when the model's entry is newer than `entry`.
pub(super) fn check_fence(object: &Value, model: &str, entry: &FenceEntry) -> Result<(), EditRefused> {
    let current = object
        .pointer("/data")
        .and_then(|d| d.get(model))
        .and_then(FenceEntry::parse);
    match current.filter(|c| c.supersedes(entry)) {
        Some(current) => Err(EditRefused(
            Reason::Superseded,
            format!("model {model} has meanwhile seen revision {}", current.revision),
        )),
        None => Ok(()),
    }
}

/// Records the model's entry and drops other models' retirements older than `prune_before`; says
/// whether the fence changed.
pub(super) fn set_fence(
    object: &mut Value,
    model: &str,
    entry: &FenceEntry,
    prune_before: &str,
    index: &mut EntryIndex,
) -> bool {
    // The shard's entries are looked at only when a retirement may be due for pruning.
    let may_prune = index.retirements(object).may_prune(prune_before);
    let data = object_at(object, "data");
    let before = data.len();
    if may_prune {
        data.retain(|key, other| key == model || index::retired_at(other).is_none_or(|at| at.as_str() >= prune_before));
    }
    let pruned = data.len() != before;
    // A replayed retirement keeps the first retirement's time. A retirement also keeps what
    // the entry it replaces says the route uses: a deploy may have recorded it after the
    // retirement was planned, and the retirement's replay must still release it.
    let current = data.get(model).and_then(FenceEntry::parse);
    let mut entry = entry.clone();
    if let (Some(current), true) = (&current, entry.is_retired()) {
        for (ours, theirs) in [
            (&mut entry.providers, &current.providers),
            (&mut entry.consumers, &current.consumers),
        ] {
            for name in theirs {
                if !ours.contains(name) {
                    ours.push(name.clone());
                }
            }
        }
    }
    let same = current.as_ref().is_some_and(|c| {
        c.revision == entry.revision
            && c.is_retired() == entry.is_retired()
            && c.providers == entry.providers
            && c.consumers == entry.consumers
            && c.secrets == entry.secrets
    });
    if !same {
        if let Some(first) = current.filter(|c| c.revision == entry.revision && c.is_retired()) {
            entry.retired_at = first.retired_at;
        }
        data.insert(model.to_string(), Value::String(entry.to_json()));
    }
    if may_prune {
        index.forget_retirements();
    } else {
        let retired_at = entry.retired_at.as_deref().filter(|_| !same);
        index.retirement_written(data.len(), retired_at);
    }
    pruned || !same
}

#[cfg(test)]
mod tests {
    use super::super::Op;
    use super::*;
    use serde_json::json;

    #[test]
    fn fences_record_entries_refuse_older_ones_and_prune_old_retirements() {
        let retired = |revision, at: &str| FenceEntry {
            retired_at: Some(at.into()),
            delete_provider: true,
            ..FenceEntry::deployed(revision)
        };
        let mut fence = json!({"data": {"old": retired(1, "2026-01-01T00:00:00Z").to_json()}});
        let set = |entry: FenceEntry| Op::SetFence {
            model: "m".into(),
            entry,
            prune_before: "2026-11-18T00:00:00Z".into(),
        };
        assert_eq!(set(retired(7, "2026-11-25T00:00:00Z")).apply(&mut fence), Ok(true));
        let entry = |fence: &Value, model: &str| fence["data"].get(model).and_then(FenceEntry::parse);
        assert_eq!(entry(&fence, "m").map(|e| e.revision), Some(7));
        assert_eq!(entry(&fence, "old"), None, "pruned");
        // A replay keeps the first retirement's time; a deploy of the retired revision is refused.
        assert_eq!(set(retired(7, "2026-11-26T00:00:00Z")).apply(&mut fence), Ok(false));
        let deployed = FenceEntry::deployed(7);
        assert_eq!(set(deployed.clone()).check(&fence).unwrap_err().0, Reason::Superseded);
        assert_eq!(set(FenceEntry::deployed(8)).apply(&mut fence), Ok(true));
        assert!(!entry(&fence, "m").unwrap().is_retired());
    }
}
