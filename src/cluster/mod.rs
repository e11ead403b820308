//! The apply engine: reads what the mapping declares it needs ([`higress::reads`]), plans the events
//! with the pure mapping, and writes the difference beside other writers — entry-level edits of
//! shared objects by read-modify-write with `resourceVersion`, re-read and re-applied on 409; owned
//! objects created, replaced or deleted — in the mapping's write order ([`higress::write_rank`]).
//! Every request is retried by the one [`RetryPolicy`], and nothing outlives the event deadline.
//!
//! Events are applied in batches: all events of a batch are planned in order against one read of the
//! cluster, and each object is written once with every event's edits (coalescing). A batch of one is
//! the console's one-event-at-a-time behaviour.

pub mod admission;
pub mod api;
pub mod batch;
mod cache;
pub mod error;

pub use crate::retry::RetryPolicy;
pub use api::Api;
pub use error::ApplyError;

use crate::event::{Lifecycle, LifecycleEvent, ModelRetired};
use crate::higress::fence::FenceEntry;
use crate::higress::index::EntryIndex;
use crate::higress::simulate::apply_step_indexed;
use crate::higress::{self, names, reads, Action, Kind, ObjectKey, Operation, ReadSet, Settings, State, Step};
use crate::metrics::Metrics;
use crate::reason::Reason;
use crate::result::{Change, Outcome, RouteResult};
use backon::Retryable;
use batch::{Before, Write};
use cache::Use;
use futures::StreamExt;
use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use tokio::time::Instant;

/// The client's timeout for one request; an attempt started before the event deadline ends within it.
pub const REQUEST_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(15);

/// Object writes of one rank in flight at once, unless configured otherwise: a batch's owned objects
/// (two per new route) go in a few rounds, well below a kube-apiserver's default limit of 200
/// mutating requests in flight.
pub const DEFAULT_WRITE_CONCURRENCY: usize = 64;

/// Largest serialized size of a shared object an event may leave, unless configured otherwise: below
/// etcd's request limit (1.5 MiB), with room for what the API server adds (managedFields).
pub const DEFAULT_SHARED_OBJECT_BUDGET: usize = 1_400_000;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub settings: Settings,
    pub retry: RetryPolicy,
    /// Object writes of the same rank in flight at once.
    pub write_concurrency: usize,
    /// Largest serialized size, in bytes, of a shared object an event may leave.
    pub shared_object_budget: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            settings: Settings::default(),
            retry: RetryPolicy::DEFAULT,
            write_concurrency: DEFAULT_WRITE_CONCURRENCY,
            shared_object_budget: DEFAULT_SHARED_OBJECT_BUDGET,
        }
    }
}

/// Whether a write whose answer was lost was made, by the object read again (`current`) and, for an
/// update, what the write's steps make of it (`None`: unknown, e.g. a newer event moved the object
/// on). A delete was made if the object it deleted (by uid) is gone; a create if the object is
/// there and is what the steps make it; an update if nothing is left to write. Otherwise the retry
/// writes, and its answer tells; or, with no retry to come, the write may have been made.
fn lost_write_made(
    operation: Operation,
    deleted_uid: Option<&Value>,
    current: &Option<Value>,
    desired: Option<&Option<Value>>,
) -> bool {
    match operation {
        Operation::Deleted => match current {
            None => true,
            Some(now) => deleted_uid.is_some_and(|uid| now.pointer("/metadata/uid") != Some(uid)),
        },
        Operation::Created | Operation::Updated => current.is_some() && desired == Some(current),
    }
}

/// What removing route Ingresses did: removed, may have removed (its answer lost, a look could not
/// tell), and the error that stopped it; each Ingress with the index of its event.
#[derive(Default)]
struct Removal {
    removed: Vec<(usize, ObjectKey)>,
    unknown: Vec<(usize, ObjectKey)>,
    error: Option<ApplyError>,
}

/// Reads made, at most, to learn whether a write whose answer was lost was made.
const LOOKS_AFTER_A_LOST_ANSWER: usize = 3;

/// Requests, conflicts and successful writes of one batch.
#[derive(Default)]
struct Tally {
    attempts: AtomicU32,
    conflicts: AtomicU32,
    written: Mutex<Vec<(ObjectKey, Operation)>>,
    /// Each object written, with its new `resourceVersion` and the size sent when the batch's first
    /// attempt wrote it (then the server stores the object as planned); `None` after a retry or a delete.
    versions: Mutex<BTreeMap<ObjectKey, Option<(String, usize)>>>,
    /// Writes whose answers were lost and that a read could neither confirm nor rule out.
    unknown: Mutex<Vec<(ObjectKey, Operation)>>,
}

impl Tally {
    fn written(&self) -> Vec<(ObjectKey, Operation)> {
        self.written.lock().expect("not poisoned").clone()
    }

    fn unknown(&self) -> Vec<(ObjectKey, Operation)> {
        self.unknown.lock().expect("not poisoned").clone()
    }

    /// How a batch that failed here ends: the error, and what was and may have been written.
    fn failure(&self, error: ApplyError, touched: Vec<BTreeSet<ObjectKey>>) -> BatchFailure {
        BatchFailure {
            error,
            written: self.written(),
            unknown: self.unknown(),
            touched,
        }
    }
}

/// A batch that failed part-way: the error, what was written before it, and what may have been.
struct BatchFailure {
    error: ApplyError,
    written: Vec<(ObjectKey, Operation)>,
    unknown: Vec<(ObjectKey, Operation)>,
    touched: Vec<BTreeSet<ObjectKey>>,
}

pub struct Engine {
    api: Api,
    config: EngineConfig,
    metrics: Arc<Metrics>,
    shared: cache::SharedObjects,
}

impl Engine {
    pub fn new(client: kube::Client, config: EngineConfig, metrics: Arc<Metrics>) -> Self {
        let api = Api::new(client, &config.settings.namespace);
        metrics
            .shared_object_budget
            .set(i64::try_from(config.shared_object_budget).unwrap_or(i64::MAX));
        Self {
            api,
            config,
            metrics,
            shared: cache::SharedObjects::default(),
        }
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    pub fn retry_policy(&self) -> &RetryPolicy {
        &self.config.retry
    }

    pub async fn apply(&self, event: &LifecycleEvent) -> RouteResult {
        self.apply_batch(std::slice::from_ref(event)).await.remove(0)
    }

    /// [`Engine::apply_batch_until`] with the policy's event deadline from now.
    pub async fn apply_batch(&self, events: &[LifecycleEvent]) -> Vec<RouteResult> {
        let deadline = Instant::now() + self.config.retry.event_deadline;
        self.apply_batch_until(events, deadline).await
    }

    /// One result per event, in order; no request outlives `deadline`. When a write of a batch fails,
    /// each event is applied again on its own, so one event's failure does not fail the others.
    pub async fn apply_batch_until(&self, events: &[LifecycleEvent], deadline: Instant) -> Vec<RouteResult> {
        let started = Instant::now();
        let tally = Tally::default();
        let (mut results, planned_fences) = match self.try_batch(events, &tally, deadline).await {
            Ok(done) => done,
            Err(failure) if events.len() == 1 => {
                let mut result = RouteResult::for_event(&events[0]);
                let written: Vec<Change> = failure.written.iter().map(|(k, op)| Change::new(k, *op)).collect();
                fail(&mut result, &failure.error, written);
                result.add_unknown_writes(failure.unknown.iter().map(|(k, op)| Change::new(k, *op)));
                (vec![result], vec![None])
            }
            Err(failure) => {
                tracing::warn!(error = %failure.error, events = events.len(), "batch write failed; applying its events again in halves");
                return self.in_halves(events, failure, deadline).await;
            }
        };
        self.settle_fences(events, &mut results, &planned_fences, deadline)
            .await;
        let elapsed = started.elapsed();
        self.metrics.apply_duration.observe(elapsed.as_secs_f64());
        results
            .into_iter()
            .map(|mut result| {
                result.attempts = tally.attempts.load(Ordering::Relaxed);
                result.conflicts = tally.conflicts.load(Ordering::Relaxed);
                result.duration_ms = u64::try_from(elapsed.as_millis()).unwrap_or(u64::MAX);
                result
            })
            .collect()
    }

    /// Fencing across writers. The fence is written first and refuses an older revision, but a deploy
    /// that passed it can still be writing when another writer retires the model. So each side looks
    /// again once its own writes are done: a deploy reads its model's fence, and if a retirement has
    /// come, applies that retirement (its fence entry says what to clean up); a retirement reads the
    /// route's Ingress, and if a route is there, applies itself again. Whichever of the two looks
    /// last sees the other's writes, so no route outlives its retirement. A retirement also applies
    /// itself again when its fence entry, as written, names more than it planned to release: a deploy
    /// cut short recorded them there after the retirement read the fence (the entry's write merges
    /// them), and they are released now rather than at the retirement's next delivery.
    /// `planned_fences`: each retirement's fence entry as planned (`None` for other events).
    async fn settle_fences(
        &self,
        events: &[LifecycleEvent],
        results: &mut [RouteResult],
        planned_fences: &[Option<FenceEntry>],
        deadline: Instant,
    ) {
        // A write that may have been made counts: it may have exposed a route a retirement took meanwhile.
        let wrote: Vec<usize> = (0..events.len())
            .filter(|&i| !results[i].changes.is_empty() || !results[i].unknown_writes.is_empty())
            .collect();
        if wrote.is_empty() {
            return;
        }
        let retired_routes = wrote
            .iter()
            .filter(|&&i| matches!(events[i].body, Lifecycle::Retired(_)) && results[i].outcome != Outcome::Stale)
            .map(|&i| events[i].model());
        let reads = reads::fence_look(wrote.iter().map(|&i| events[i].model()))
            .union(reads::ingress_look(retired_routes, false));
        let now = match self.fetch(&reads, Use::Look, deadline).await {
            Ok(state) => state,
            Err(error) => {
                // Unchecked, a retirement that landed meanwhile could leave the route live: the event is
                // applied again (a deploy then finds its model retired, and applies that retirement).
                tracing::warn!(%error, "fence not checked after the writes; the events are applied again");
                for &i in &wrote {
                    let written = std::mem::take(&mut results[i].changes);
                    let message = format!("the model's fence was not checked after the writes: {error}");
                    results[i].fail(Outcome::Failed, Reason::Unavailable, message, true);
                    results[i].changes = written;
                }
                return;
            }
        };
        let mut again: Vec<(usize, LifecycleEvent, String)> = Vec::new();
        for (i, event) in wrote.iter().map(|&i| (i, &events[i])) {
            let Some(entry) = now.fence_entry(event.model()).filter(FenceEntry::is_retired) else {
                continue;
            };
            let (event_again, note) = match &event.body {
                Lifecycle::Deployed(_) if Owner::of(event).fenced_past(&entry) => {
                    let retirement = LifecycleEvent {
                        envelope: event.envelope.clone(),
                        body: Lifecycle::Retired(ModelRetired {
                            model: event.model().to_string(),
                            revision: entry.revision,
                            delete_provider: entry.delete_provider,
                            delete_consumers: entry.delete_consumers,
                        }),
                    };
                    results[i].outcome = Outcome::Stale;
                    let note = format!(
                        "retired at revision {} by another writer while this deploy was applied; its route was removed again",
                        entry.revision
                    );
                    (retirement, note)
                }
                Lifecycle::Retired(_)
                    if entry.revision == event.revision()
                        && now
                            .get_named(Kind::Ingress, &names::route_ingress(event.model()))
                            .is_some() =>
                {
                    (
                        event.clone(),
                        "a route another writer deployed meanwhile was removed".to_string(),
                    )
                }
                Lifecycle::Retired(_)
                    if entry.revision == event.revision()
                        && planned_fences[i].as_ref().is_some_and(|planned| {
                            let beyond = |now: &[String], planned: &[String]| now.iter().any(|n| !planned.contains(n));
                            beyond(&entry.providers, &planned.providers) || beyond(&entry.consumers, &planned.consumers)
                        }) =>
                {
                    (
                        event.clone(),
                        "released what a deploy cut short recorded meanwhile".to_string(),
                    )
                }
                _ => continue,
            };
            again.push((i, event_again, note));
        }
        // Applied again as one batch (its reads and writes shared), each result merged into its event's.
        if !again.is_empty() {
            let batch: Vec<LifecycleEvent> = again.iter().map(|(_, event, _)| event.clone()).collect();
            let settled = Box::pin(self.apply_batch_until(&batch, deadline)).await;
            for ((i, _, note), settled) in again.into_iter().zip(settled) {
                for change in settled.changes {
                    if !results[i].changes.contains(&change) {
                        results[i].changes.push(change);
                    }
                }
                results[i].add_unknown_writes(settled.unknown_writes);
                results[i].warnings.push(note);
                if let Some(error) = settled.error {
                    results[i].outcome = Outcome::Failed;
                    results[i].error = Some(error);
                }
            }
        }
        self.leave_to_newer_deploys(events, results, &now, deadline).await;
        drop_aside(now);
    }

    /// A deploy overtaken by a newer deploy of its model: a retirement may have landed between its
    /// last look at the fence and its Ingress write, taken the route's key-auth rule, and then been
    /// written over in the fence by the newer deploy, so the fence cannot tell. The newer deploy
    /// writes the rule before its Ingress; until it does, this deploy's Ingress could be open to
    /// anyone. So its Ingresses, while still its own (their revision), go: the route waits for the
    /// newer deploy (a replace of an Ingress deleted meanwhile creates it again).
    async fn leave_to_newer_deploys(
        &self,
        events: &[LifecycleEvent],
        results: &mut [RouteResult],
        fences: &State,
        deadline: Instant,
    ) {
        let overtaken: Vec<usize> = (0..events.len())
            .filter(|&i| {
                let event = &events[i];
                matches!(event.body, Lifecycle::Deployed(_))
                    && results[i]
                        .changes
                        .iter()
                        .chain(&results[i].unknown_writes)
                        .any(|c| c.kind == Kind::Ingress.kind() && c.operation != Operation::Deleted.as_str())
                    && fences
                        .fence_entry(event.model())
                        .is_some_and(|entry| !entry.is_retired() && entry.revision > event.revision())
            })
            .collect();
        if overtaken.is_empty() {
            return;
        }
        // Only its own: an Ingress of another revision is the newer deploy's, or a retirement's
        // business.
        let own = |i: usize, revision: u64| revision == events[i].revision();
        let Removal {
            removed,
            unknown,
            error,
        } = self.remove_route_ingresses(events, &overtaken, own, deadline).await;
        for (i, key) in unknown {
            results[i].add_unknown_writes([Change::new(&key, Operation::Deleted)]);
        }
        for (i, key) in removed {
            results[i].changes.push(Change::new(&key, Operation::Deleted));
            results[i].outcome = Outcome::Stale;
            results[i].warnings.push(format!(
                "{key} left to a newer deploy of the model, which came meanwhile (a retirement between them may have taken its key-auth rule)"
            ));
        }
        if let Some(error) = error {
            for &i in &overtaken {
                let written = std::mem::take(&mut results[i].changes);
                let message = format!(
                    "a newer deploy of the model came meanwhile; this deploy's Ingress was not removed: {error}"
                );
                results[i].fail(Outcome::Failed, Reason::Unavailable, message, true);
                results[i].changes = written;
            }
        }
    }

    /// The route Ingresses (main and fallback) of the events `of` that are there now and whose
    /// revision `removable` accepts (0: none recorded), deleted each on the version read; one
    /// rewritten or removed since is left to whoever did it. What it removed, and the error that
    /// stopped it, if one did (what it removed before still counts: results must list it).
    async fn remove_route_ingresses(
        &self,
        events: &[LifecycleEvent],
        of: &[usize],
        removable: impl Fn(usize, u64) -> bool,
        deadline: Instant,
    ) -> Removal {
        let ingresses = |model: &str| reads::route_ingresses(model).map(|name| ObjectKey::new(Kind::Ingress, name));
        let mut removal = Removal::default();
        if of.is_empty() {
            return removal;
        }
        let reads = reads::ingress_look(of.iter().map(|&i| events[i].model()), true);
        let now = match self.fetch(&reads, Use::Look, deadline).await {
            Ok(now) => now,
            Err(error) => {
                removal.error = Some(error);
                return removal;
            }
        };
        for &i in of {
            for key in ingresses(events[i].model()) {
                let Some(ingress) = now.get(&key) else { continue };
                let revision = ingress["metadata"]["annotations"][names::ANNOTATION_REVISION]
                    .as_str()
                    .and_then(|r| r.parse::<u64>().ok())
                    .unwrap_or(0);
                if !removable(i, revision) {
                    continue;
                }
                let version = ingress.pointer("/metadata/resourceVersion").and_then(Value::as_str);
                let Err(error) = self.api.delete(&key, version).await else {
                    removal.removed.push((i, key));
                    continue;
                };
                let lost = ApplyError::answer_lost(&error);
                match ApplyError::classify(error, &key.to_string()) {
                    ApplyError::Conflict { .. } | ApplyError::Permanent { code: 404, .. } => {}
                    error if lost => {
                        let uid = ingress.pointer("/metadata/uid");
                        match self.look_again(&key).await {
                            Ok(current) if lost_write_made(Operation::Deleted, uid, &current, None) => {
                                removal.removed.push((i, key));
                            }
                            Ok(_) => {
                                removal.error = Some(error);
                                return removal;
                            }
                            Err(_) => {
                                removal.unknown.push((i, key));
                                removal.error = Some(error);
                                return removal;
                            }
                        }
                    }
                    error => {
                        removal.error = Some(error);
                        return removal;
                    }
                }
            }
        }
        drop_aside(now);
        removal
    }

    /// The fallback after a failed batch: its events are applied again in halves, each half as a
    /// batch (a half that fails is halved again), in order. One event that fails for good is found in
    /// about 2·log2(n) batches, not n single applies: at 5,000 routes (0.5–1 s each) those outlived
    /// the event deadline, and the batch's last events failed with it. A model's earlier event that a
    /// later one of the batch supersedes is not applied (the live route never steps back); a model
    /// whose earlier event must be retried waits for it, so order per model holds. Each event's
    /// result also lists what the failed batch wrote of the objects its plan touched.
    async fn in_halves(&self, events: &[LifecycleEvent], failure: BatchFailure, deadline: Instant) -> Vec<RouteResult> {
        let mut results: Vec<Option<RouteResult>> = vec![None; events.len()];
        for (i, event) in events.iter().enumerate() {
            let superseded = events[i + 1..]
                .iter()
                .filter(|later| later.model() == event.model())
                .map(LifecycleEvent::revision)
                .max()
                .filter(|&later| later > event.revision());
            if let Some(later) = superseded {
                let mut result = RouteResult::for_event(event);
                result.outcome = Outcome::Stale;
                result
                    .warnings
                    .push(format!("superseded by revision {later} of the same batch"));
                results[i] = Some(result);
            }
        }
        let pending: Vec<usize> = (0..events.len()).filter(|&i| results[i].is_none()).collect();
        let (front, back) = pending.split_at(pending.len().div_ceil(2));
        for half in [front, back] {
            let mut go = Vec::with_capacity(half.len());
            for &i in half {
                let event = &events[i];
                let waiting = results.iter().flatten().any(|r| {
                    r.model.as_deref() == Some(event.model()) && r.outcome == Outcome::Failed && is_retryable(r)
                });
                if waiting {
                    let mut result = RouteResult::for_event(event);
                    let message = format!("waits for an earlier event of model {}", event.model());
                    result.fail(Outcome::Failed, Reason::Blocked, message, true);
                    results[i] = Some(result);
                } else if Instant::now() >= deadline {
                    let mut result = RouteResult::for_event(event);
                    let message = "event deadline passed".into();
                    result.fail(Outcome::Failed, Reason::Unavailable, message, true);
                    results[i] = Some(result);
                } else {
                    go.push(i);
                }
            }
            if go.is_empty() {
                continue;
            }
            let part: Vec<LifecycleEvent> = go.iter().map(|&i| events[i].clone()).collect();
            let applied = Box::pin(self.apply_batch_until(&part, deadline)).await;
            for (i, result) in go.into_iter().zip(applied) {
                results[i] = Some(result);
            }
        }
        results
            .into_iter()
            .zip(&failure.touched)
            .map(|(result, touched)| {
                let mut result = result.expect("every event has a result");
                let of_its_objects = |writes: &[(ObjectKey, Operation)]| -> Vec<Change> {
                    writes
                        .iter()
                        .filter(|(key, _)| touched.contains(key))
                        .map(|(key, operation)| Change::new(key, *operation))
                        .collect()
                };
                result.add_earlier_writes(of_its_objects(&failure.written));
                result.add_unknown_writes(of_its_objects(&failure.unknown));
                result
            })
            .collect()
    }

    /// Writes the current value of every Secret a live route was built from where the deploy put it,
    /// and returns one `applied` result (reason `secret-rotated`) per route that changed.
    ///
    /// Rotation must never undo a deploy that changed where a route's tokens come from. So it reads
    /// the fences, then the Secrets and the objects they went into, then the fences again, and skips
    /// any model whose entry changed in between; and it writes only over the objects exactly as it
    /// read them: on a 409 it gives up this round rather than re-apply (the next round re-reads).
    /// A deploy writes its fence entry before its entries, so every interleaving leaves the deploy's.
    pub async fn rotate_secrets(&self) -> Result<Vec<RouteResult>, ApplyError> {
        let started = Instant::now();
        let deadline = started + self.config.retry.event_deadline;
        let settings = &self.config.settings;
        let users =
            higress::rotate::secret_users(&self.fetch(&higress::reads::fence_reads(), Use::Look, deadline).await?);
        if users.is_empty() {
            return Ok(Vec::new());
        }
        let (objects, secrets) = higress::reads::rotation_reads(&users, settings.console);
        let mut read = self.fetch(&objects, Use::Look, deadline).await?;
        for (key, secret) in self.fetch(&secrets, Use::Look, deadline).await?.into_objects() {
            read.set(key, Some(secret));
        }
        let fences_after = self.fetch(&higress::reads::fence_reads(), Use::Look, deadline).await?;
        let mut state = read.clone();
        let mut rotated: Vec<(RouteResult, Vec<ObjectKey>)> = Vec::new();
        for (model, entry) in &higress::rotate::unchanged_since(users, &fences_after) {
            let (plan, unusable) = higress::rotate::plan_rotation(model, entry, &state, settings);
            for refusal in unusable {
                self.metrics.secret_rotation(refusal.reason.as_str());
                tracing::warn!(model = %model, reason = %refusal.reason, message = %refusal.message, "a Secret of the route not rotated");
            }
            for warning in &plan.warnings {
                tracing::info!(model = %model, %warning, "entry not rotated");
            }
            let mut trial = state.clone();
            match higress::simulate(&mut trial, &plan) {
                Ok(changes) if !changes.is_empty() => {
                    state = trial;
                    let keys = changes.into_iter().map(|(key, _)| key).collect();
                    rotated.push((RouteResult::for_rotation(model, entry.revision), keys));
                }
                Ok(_) => {}
                Err(refusal) => {
                    self.metrics.secret_rotation(refusal.reason.as_str());
                    tracing::warn!(model = %model, reason = %refusal.reason, message = %refusal.message, "route's Secret values not rotated");
                }
            }
        }
        let mut keys: Vec<&ObjectKey> = rotated.iter().flat_map(|(_, keys)| keys).collect();
        keys.sort_by_key(|key| (higress::write_rank(key, false), (*key).clone()));
        keys.dedup();
        let mut written = BTreeSet::new();
        let mut maybe_written = BTreeSet::new();
        // Each object on its own: one that cannot be written (another writer's, past the budget)
        // leaves the others to rotate.
        for key in keys {
            let (Some(before), Some(desired)) = (read.get(key), state.get(key)) else {
                continue;
            };
            // Two routes' edits of one entry can undo each other (entries written before their
            // sources were recorded): nothing to write, and nothing to report.
            if before == desired {
                continue;
            }
            let what = key.to_string();
            let budget = self.config.shared_object_budget;
            if let Err(refusal) = admission::admit_object(key, Some(before), Some(desired), budget) {
                self.metrics.secret_rotation(refusal.reason.as_str());
                tracing::warn!(object = %what, message = %refusal.message, "Secret values not rotated there");
                continue;
            }
            // A replace whose answer was lost may have been made: then its retry meets a 409 (the
            // version moved), and only a look tells.
            let lost = std::sync::atomic::AtomicBool::new(false);
            let attempt = || async {
                self.api
                    .replace(key, desired)
                    .await
                    .map(drop)
                    .inspect_err(|e| {
                        if ApplyError::answer_lost(e) {
                            lost.store(true, Ordering::Relaxed);
                        }
                    })
                    .map_err(|e| match ApplyError::classify(e, &what) {
                        // Someone wrote since our read: not ours to merge into. The next round re-reads.
                        ApplyError::Conflict { .. } => ApplyError::Refused(higress::Refusal::new(
                            Reason::Superseded,
                            format!("{what} changed while its Secret values were rotated"),
                        )),
                        other => other,
                    })
            };
            match self.retried(&what, attempt, deadline).await {
                Ok(()) => {
                    written.insert(key.clone());
                }
                Err(error) if lost.load(Ordering::Relaxed) => {
                    let as_sent = |object: &Value| higress::state::without_server_fields(object);
                    match self.look_again(key).await {
                        Ok(Some(current)) if as_sent(&current) == as_sent(desired) => {
                            written.insert(key.clone());
                        }
                        _ => {
                            tracing::info!(%error, "Secret values may have been rotated there: the answer was lost");
                            maybe_written.insert(key.clone());
                        }
                    }
                }
                Err(error) => {
                    self.metrics.secret_rotation(error.reason().as_str());
                    tracing::info!(%error, "Secret values not rotated there; the next round tries again");
                }
            }
        }
        let elapsed = u64::try_from(started.elapsed().as_millis()).unwrap_or(u64::MAX);
        Ok(rotated
            .into_iter()
            .filter_map(|(mut result, keys)| {
                result.changes = keys
                    .iter()
                    .filter(|key| written.contains(*key))
                    .map(|key| Change::new(key, Operation::Updated))
                    .collect();
                result.add_unknown_writes(
                    keys.iter()
                        .filter(|key| maybe_written.contains(*key))
                        .map(|key| Change::new(key, Operation::Updated)),
                );
                result.duration_ms = elapsed;
                (!result.changes.is_empty() || !result.unknown_writes.is_empty()).then(|| {
                    self.metrics.secret_rotation(Reason::SecretRotated.as_str());
                    result
                })
            })
            .collect())
    }

    /// Plans the events without writing: their results and the state they would leave.
    pub async fn dry_run(&self, events: &[LifecycleEvent]) -> Result<(Vec<RouteResult>, State), ApplyError> {
        let deadline = Instant::now() + self.config.retry.event_deadline;
        let planned = batch::plan(
            events,
            &self.config.settings,
            self.config.shared_object_budget,
            self.read_state(events, Use::Look, deadline).await?,
        );
        Ok((planned.results, planned.state))
    }

    async fn try_batch(
        &self,
        events: &[LifecycleEvent],
        tally: &Tally,
        deadline: Instant,
    ) -> Result<(Vec<RouteResult>, Vec<Option<FenceEntry>>), BatchFailure> {
        let started = Instant::now();
        let initial = self
            .read_state(events, Use::Take, deadline)
            .await
            .map_err(|error| tally.failure(error, vec![BTreeSet::new(); events.len()]))?;
        let read_in = started.elapsed();
        let mut planned = batch::plan(events, &self.config.settings, self.config.shared_object_budget, initial);
        for (key, problems) in &planned.gateway_problems {
            self.metrics.gateway_problems_of(key, problems.len());
        }
        let planned_in = started.elapsed() - read_in;
        let (before, after, steps) = (&planned.before, &planned.state, &planned.steps);

        // Write each changed object once, rank by rank: the mapping's write order across the batch.
        let mut writes: Vec<(u8, &ObjectKey)> = planned
            .to_write()
            .map(|(key, _)| (higress::write_rank(key, after.get(key).is_none()), key))
            .collect();
        writes.sort();
        let owners = owners(events, &planned);
        let ranks: BTreeSet<u8> = writes.iter().map(|(rank, _)| *rank).collect();
        let exposing = higress::write_rank(&ObjectKey::new(Kind::Ingress, ""), false);
        let shared = higress::write_rank(&ObjectKey::new(Kind::WasmPlugin, ""), false);
        let mut left_to_newer: Option<BTreeSet<String>> = None;
        let mut taken_late: Vec<(usize, ObjectKey)> = Vec::new();
        // Late Ingresses whose delete lost its answer and a look could not tell: touched all the same.
        let mut maybe_taken_late: Vec<(usize, ObjectKey)> = Vec::new();
        let mut touched_late: Vec<(usize, ObjectKey)> = Vec::new();
        for rank in ranks {
            let rank_started = Instant::now();
            // Before a retirement takes its route's key-auth rule, the route's Ingresses once more:
            // an older deploy that passed the fence before the retirement may have created one since
            // the batch read. It goes first, so the route is never live without the rule.
            if rank == shared {
                let error;
                (taken_late, maybe_taken_late, error) = self
                    .take_late_ingresses(events, &planned.results, tally, deadline)
                    .await;
                touched_late = [&taken_late[..], &maybe_taken_late[..]].concat();
                if let Some(error) = error {
                    return Err(tally.failure(error, with_taken(&planned.touched, &touched_late)));
                }
            }
            // Before the first route is exposed, the fences once more: a model fenced past the event
            // that wrote its route's objects (a retirement, or a newer deploy, since the batch read)
            // owns the route now, and this batch's Ingresses and ConfigMaps of it are not written. A
            // retirement may have taken the route's key-auth rule meanwhile: its Ingress must not
            // come back without it. (The deploy's settle then applies that retirement, if it was one.)
            if rank >= exposing && left_to_newer.is_none() {
                let fenced = self
                    .fenced_past(owners.values().copied(), deadline)
                    .await
                    .map_err(|error| tally.failure(error, with_taken(&planned.touched, &touched_late)))?;
                left_to_newer = Some(fenced);
            }
            let skipped = |key: &ObjectKey| {
                left_to_newer
                    .as_ref()
                    .zip(owners.get(key))
                    .is_some_and(|(fenced, owner)| fenced.contains(owner.model))
            };
            // Built eagerly: a lazily mapping stream would make this future not `Send` for every lifetime.
            let writes_of_rank: Vec<_> = writes
                .iter()
                .filter(|(r, key)| *r == rank && !skipped(key))
                .map(|(_, key)| {
                    self.write(
                        key,
                        &before[*key],
                        after.get(key),
                        (&steps[*key], owners.get(*key).copied()),
                        tally,
                        deadline,
                    )
                })
                .collect();
            // Every write of the rank runs to its end, even after one fails: a write cut off in flight
            // might have been made without our knowing, and the result must say what was written.
            // The error reported is the first in write order, whichever failed first.
            let outcomes: Vec<Result<(), ApplyError>> = futures::stream::iter(writes_of_rank)
                .buffered(self.config.write_concurrency.max(1))
                .collect()
                .await;
            tracing::trace!(rank, writes = outcomes.len(), took = ?rank_started.elapsed(), "rank written");
            if let Some(error) = outcomes.into_iter().find_map(Result::err) {
                return Err(tally.failure(error, with_taken(&planned.touched, &touched_late)));
            }
        }
        tracing::debug!(
            events = events.len(),
            ?read_in,
            ?planned_in,
            written_in = ?(started.elapsed() - read_in - planned_in),
            "batch written"
        );
        // What each event changed, as written: the write may have met another writer's change (a
        // create that became a replace after a 409), or found its work already done.
        let written: BTreeMap<ObjectKey, Operation> = tally.written().into_iter().collect();
        let unknown = tally.unknown();
        let planned_fences = events
            .iter()
            .map(|event| match event.body {
                Lifecycle::Retired(_) => planned.state.fence_entry(event.model()),
                Lifecycle::Deployed(_) => None,
            })
            .collect();
        self.keep_shared(&mut planned.state, tally);
        let mut results = std::mem::take(&mut planned.results);
        for (result, changed) in results.iter_mut().zip(&planned.changed) {
            result.changes = changed
                .iter()
                .filter_map(|key| written.get(key).map(|op| Change::new(key, *op)))
                .collect();
            if result.outcome == Outcome::Applied && result.changes.is_empty() {
                result.outcome = Outcome::Unchanged;
            }
            result.add_unknown_writes(
                unknown
                    .iter()
                    .filter(|(key, _)| changed.contains(key))
                    .map(|(key, operation)| Change::new(key, *operation)),
            );
        }
        for (i, key) in maybe_taken_late {
            results[i].add_unknown_writes([Change::new(&key, Operation::Deleted)]);
        }
        for (i, key) in taken_late {
            results[i].changes.push(Change::new(&key, Operation::Deleted));
            results[i].outcome = Outcome::Applied;
            results[i].warnings.push(format!(
                "{key}, which an older deploy created after this retirement read the route, was removed"
            ));
        }
        for (result, event) in results.iter_mut().zip(events) {
            let left = left_to_newer
                .as_ref()
                .is_some_and(|models| models.contains(event.model()));
            if left && result.outcome != Outcome::Rejected {
                result.outcome = Outcome::Stale;
                result.warnings.push(format!(
                    "model {} was fenced at a newer revision while this event was applied; its route's own objects were left to that event",
                    event.model()
                ));
            }
        }
        drop_aside(planned);
        Ok((results, planned_fences))
    }

    /// The Ingresses (main and fallback) of the batch's retiring routes that are there now though the
    /// batch read none, or another one, of an event no newer than the retirement: deleted, each on
    /// the version read. A newer deploy's Ingress stays (it wrote the key-auth rule first, which the
    /// retirement's edit, guarded by the route's revision, then leaves). Returns those removed, those
    /// whose delete may have been made (its answer lost), and the error that stopped it.
    async fn take_late_ingresses(
        &self,
        events: &[LifecycleEvent],
        planned: &[RouteResult],
        tally: &Tally,
        deadline: Instant,
    ) -> (Vec<(usize, ObjectKey)>, Vec<(usize, ObjectKey)>, Option<ApplyError>) {
        let retiring: Vec<usize> = (0..events.len())
            .filter(|&i| matches!(events[i].body, Lifecycle::Retired(_)) && planned[i].outcome == Outcome::Applied)
            .collect();
        let no_newer = |i: usize, revision: u64| revision <= events[i].revision();
        let Removal {
            removed: taken,
            unknown,
            error,
        } = self.remove_route_ingresses(events, &retiring, no_newer, deadline).await;
        let mut written = tally.written.lock().expect("not poisoned");
        written.extend(taken.iter().map(|(_, key)| (key.clone(), Operation::Deleted)));
        let mut maybe = tally.unknown.lock().expect("not poisoned");
        maybe.extend(unknown.iter().map(|(_, key)| (key.clone(), Operation::Deleted)));
        tally
            .attempts
            .fetch_add(u32::try_from(taken.len()).unwrap_or(u32::MAX), Ordering::Relaxed);
        (taken, unknown, error)
    }

    /// `planned` is what the batch's simulation made of `initial`: the first attempt writes it as is.
    /// `owner`: for a route's own object (put or deleted whole), the newest event of the batch
    /// writing it. A retry of such a write (after a 409 or a transient error: someone may have written
    /// it since our read) first asks the model's fence: when a newer event of the model has fenced it
    /// meanwhile (or a retirement of the deploy's own revision), that event owns the route and writes
    /// it, and this write is dropped — an older deploy or retirement still in flight never overwrites
    /// or deletes a newer deploy's Ingress or ConfigMap, nor brings back a route retired meanwhile.
    async fn write(
        &self,
        key: &ObjectKey,
        initial: &Before,
        planned: Option<&Value>,
        (steps, owner): (&[Step], Option<Owner<'_>>),
        tally: &Tally,
        deadline: Instant,
    ) -> Result<(), ApplyError> {
        let object = key.to_string();
        // The first attempt writes what the batch read and planned (borrowed: shared objects are
        // large); a retry reads afresh and applies the steps again.
        let first = std::sync::atomic::AtomicBool::new(true);
        // An attempt whose answer never came (its operation, and the uid of the object it deleted):
        // the server may have made it. See `lost_write_made`.
        let lost: Mutex<Option<(Operation, Option<Value>)>> = Mutex::new(None);
        let settle_lost = |current: &Option<Value>, desired: Option<&Option<Value>>| {
            let mut lost = lost.lock().expect("not poisoned");
            if let Some((operation, _)) =
                lost.take_if(|(operation, uid)| lost_write_made(*operation, uid.as_ref(), current, desired))
            {
                tally.versions.lock().expect("not poisoned").insert(key.clone(), None);
                tally
                    .written
                    .lock()
                    .expect("not poisoned")
                    .push((key.clone(), operation));
            }
        };
        // The object as the steps make it of `current` (unless they no longer fit it).
        let desired_of = |current: &Option<Value>| {
            let mut desired = current.clone();
            let mut index = EntryIndex::default();
            steps
                .iter()
                .try_for_each(|step| apply_step_indexed(step, &mut desired, &mut index).map(drop))
                .map(|()| desired)
                .map_err(|refused| ApplyError::Refused(refused.into()))
        };
        // No write follows to settle it: a lost write still unsettled may have been made.
        let give_up_lost = || {
            if let Some((operation, _)) = lost.lock().expect("not poisoned").take() {
                tally
                    .unknown
                    .lock()
                    .expect("not poisoned")
                    .push((key.clone(), operation));
            }
        };
        let attempt = || async {
            let fresh: (Before, Option<Value>);
            let as_planned = first.swap(false, Ordering::Relaxed);
            let (current, desired) = if as_planned {
                (initial, planned)
            } else {
                if let Some(owner) = owner {
                    if !self.fenced_past([owner], deadline).await?.is_empty() {
                        tracing::debug!(%object, "left to a newer event of the model, which wrote it meanwhile");
                        if lost.lock().expect("not poisoned").is_some() {
                            // A route's own object carries its event's revision: found as ours, the
                            // newer event has not written over it yet, and ours was made.
                            if let Ok(current) = self.look_again(key).await {
                                settle_lost(&current, desired_of(&current).ok().as_ref());
                            }
                            give_up_lost();
                        }
                        return Ok(());
                    }
                }
                let current = self.api.get(key).await.map_err(|e| ApplyError::classify(e, &object))?;
                let desired = desired_of(&current)?;
                // The batch measured its edits against the object as it read it; another writer's
                // entries since may leave no room for them.
                if matches!(steps.first().map(|step| &step.action), Some(Action::Edit { .. })) {
                    let budget = self.config.shared_object_budget;
                    admission::admit_object(key, current.as_ref(), desired.as_ref(), budget)
                        .map_err(ApplyError::Refused)?;
                }
                settle_lost(&current, Some(&desired));
                fresh = (Before::Whole(current.map(Arc::new)), desired);
                (&fresh.0, fresh.1.as_ref())
            };
            let Some(request) = current.write_to(desired) else {
                // Nothing to write, and a lost write not found made (e.g. the object deleted since).
                give_up_lost();
                return Ok(());
            };
            let operation = match request {
                Write::Delete(_) => Operation::Deleted,
                Write::Create(_) => Operation::Created,
                Write::Replace(_) => Operation::Updated,
            };
            // A lost write not found made: this write, of the same kind, reports for both; of
            // another kind (a lost create found changed since, now replaced), it may have been made.
            let same_kind = lost
                .lock()
                .expect("not poisoned")
                .take_if(|(lost, _)| *lost == operation);
            if same_kind.is_none() {
                give_up_lost();
            }
            tally.attempts.fetch_add(1, Ordering::Relaxed);
            let written = match request {
                Write::Delete(version) => self.api.delete(key, version.as_deref()).await.map(|()| None),
                Write::Create(new) => self.api.create(key.kind, new).await.map(Some),
                Write::Replace(changed) => self.api.replace(key, changed).await.map(Some),
            };
            match written {
                Ok(written) => {
                    let bytes = written.as_ref().map_or(0, |w| w.bytes);
                    let version = written.and_then(|w| w.resource_version);
                    tally.versions.lock().expect("not poisoned").insert(
                        key.clone(),
                        version.clone().filter(|_| as_planned).map(|version| (version, bytes)),
                    );
                    // The server stores nothing for a write that changes nothing, and keeps the
                    // version: an edit undone by a later event of the batch. Nothing was written.
                    let unchanged = operation == Operation::Updated
                        && version.is_some()
                        && version.as_deref()
                            == desired
                                .and_then(|d| d.pointer("/metadata/resourceVersion"))
                                .and_then(Value::as_str);
                    if unchanged {
                        return Ok(());
                    }
                    if let (
                        Some(_),
                        Some(Step {
                            action: Action::Edit { .. },
                            ..
                        }),
                    ) = (&desired, steps.first())
                    {
                        self.metrics.shared_object_size(key, bytes);
                    }
                    tally
                        .written
                        .lock()
                        .expect("not poisoned")
                        .push((key.clone(), operation));
                    Ok(())
                }
                Err(e) => {
                    if ApplyError::answer_lost(&e) {
                        let uid = match current {
                            Before::Whole(Some(object)) => object.pointer("/metadata/uid").cloned(),
                            _ => None,
                        };
                        *lost.lock().expect("not poisoned") = Some((operation, uid));
                    }
                    let error = match ApplyError::classify(e, &object) {
                        // A replace of an object someone deleted since our read: as a 409, re-read
                        // (then create it, unless a newer event of the model has taken the route).
                        ApplyError::Permanent { code: 404, .. } if operation == Operation::Updated => {
                            ApplyError::Conflict { object: object.clone() }
                        }
                        other => other,
                    };
                    if matches!(error, ApplyError::Conflict { .. }) {
                        tally.conflicts.fetch_add(1, Ordering::Relaxed);
                        self.metrics.conflicts.inc();
                    }
                    Err(error)
                }
            }
        };
        let outcome = self.retried(&object, attempt, deadline).await;
        debug_assert!(
            outcome.is_err() || lost.lock().expect("not poisoned").is_none(),
            "a lost write of {object} left unsettled"
        );
        if outcome.is_err() && lost.lock().expect("not poisoned").is_some() {
            // The retries stopped before they could look (the deadline, a refusal): one read, even
            // past the deadline, tells whether the lost write was made, so the result can say so.
            if let Ok(current) = self.look_again(key).await {
                settle_lost(&current, desired_of(&current).ok().as_ref());
            }
            give_up_lost();
        }
        outcome
    }

    /// An object read to learn whether a write whose answer was lost was made, also past the event
    /// deadline: a few quick attempts, so one transient error does not leave a result unsure of
    /// what was written, all within one request timeout (the worker's poll-interval check counts it).
    async fn look_again(&self, key: &ObjectKey) -> Result<Option<Value>, ApplyError> {
        let object = key.to_string();
        let retries = self
            .config
            .retry
            .backoff()
            .with_max_times(LOOKS_AFTER_A_LOST_ANSWER - 1);
        let looks = (|| async { self.api.get(key).await.map_err(|e| ApplyError::classify(e, &object)) })
            .retry(retries)
            .when(ApplyError::is_retryable);
        tokio::time::timeout(REQUEST_TIMEOUT, looks).await.unwrap_or_else(|_| {
            Err(ApplyError::Transient {
                object: object.clone(),
                message: "no answer to a look after a lost answer within the request timeout".into(),
                retry_after: None,
            })
        })
    }

    /// The models among `(model, revision)` pairs whose fence entry, read now, is of a newer revision
    /// than the newest pair of the model.
    async fn fenced_past<'m>(
        &self,
        owners: impl IntoIterator<Item = Owner<'m>>,
        deadline: Instant,
    ) -> Result<BTreeSet<String>, ApplyError> {
        let newest: BTreeMap<&str, Owner> = owners.into_iter().fold(BTreeMap::new(), |mut newest, owner| {
            let seen = newest.entry(owner.model).or_insert(owner);
            if owner.rank() > seen.rank() {
                *seen = owner;
            }
            newest
        });
        if newest.is_empty() {
            return Ok(BTreeSet::new());
        }
        let reads = reads::fence_look(newest.keys().copied());
        let now = self.fetch(&reads, Use::Look, deadline).await?;
        Ok(newest
            .into_iter()
            .filter(|(model, owner)| now.fence_entry(model).is_some_and(|entry| owner.fenced_past(&entry)))
            .map(|(model, _)| model.to_string())
            .collect())
    }

    /// Runs a request under the retry policy. No attempt starts after the request's deadline (its own
    /// budget, never past the event's), but one that has started is not cut off: a write the server
    /// made is then always known, and reported. The client's own timeouts bound an attempt.
    async fn retried<T, F, Fut>(&self, what: &str, attempt: F, deadline: Instant) -> Result<T, ApplyError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, ApplyError>>,
    {
        let policy = &self.config.retry;
        let stop_at = policy.request_deadline(deadline);
        if Instant::now() >= stop_at {
            return Err(ApplyError::Transient {
                object: what.to_string(),
                message: "not attempted: the event deadline has passed".into(),
                retry_after: None,
            });
        }
        attempt
            .retry(policy.backoff())
            .when(ApplyError::is_retryable)
            .adjust(move |error: &ApplyError, delay| {
                RetryPolicy::jitter(error.retry_after(), delay).filter(|pause| Instant::now() + *pause < stop_at)
            })
            .notify(|error, delay| {
                self.metrics.retried(error.label());
                tracing::debug!(%error, ?delay, "retrying request");
            })
            .await
    }

    /// Reads a read set, concurrently, into a state.
    /// `use_`: what to do with kept copies found current (see [`cache`]).
    async fn fetch(&self, reads: &ReadSet, use_: Use, deadline: Instant) -> Result<State, ApplyError> {
        let (got, listed, metadata) = tokio::try_join!(
            futures::future::try_join_all(reads.gets.iter().map(|key| self.fetch_one(key, use_, deadline))),
            futures::future::try_join_all(
                reads
                    .lists
                    .iter()
                    .map(|(kind, selector)| self.fetch_list(*kind, selector, use_, deadline))
            ),
            futures::future::try_join_all(
                reads
                    .metadata_lists
                    .iter()
                    .map(|(kind, selector)| self.fetch_metadata_list(*kind, selector, deadline))
            ),
        )?;
        let mut state = State::new();
        let metadata = metadata.into_iter().flatten().map(Read::Whole);
        for read in got
            .into_iter()
            .flatten()
            .chain(listed.into_iter().flatten())
            .chain(metadata)
        {
            match read {
                Read::Whole(object) => {
                    state.insert_object(object);
                }
                Read::Kept(key, kept) => state.insert_indexed(key, kept.object, kept.index, kept.size),
            }
        }
        Ok(state)
    }

    /// One object by name (`None`: absent). A shared object this engine keeps is asked for its
    /// metadata first, and read whole only if it moved since.
    async fn fetch_one(&self, key: &ObjectKey, use_: Use, deadline: Instant) -> Result<Option<Read>, ApplyError> {
        let what = key.to_string();
        if cache::is_kept(key) && self.shared.holds(key) {
            let attempt = || async {
                self.api
                    .resource_version(key)
                    .await
                    .map_err(|e| ApplyError::classify(e, &what))
            };
            let version = self.retried(&what, attempt, deadline).await?;
            if let Some(kept) = self.shared.current(key, version.as_deref(), use_) {
                return Ok(Some(Read::Kept(key.clone(), Box::new(kept))));
            }
            if version.is_none() {
                return Ok(None);
            }
        }
        let attempt = || async { self.api.get(key).await.map_err(|e| ApplyError::classify(e, &what)) };
        let object = self.retried(&what, attempt, deadline).await?;
        Ok(object.map(|mut object| {
            // Some servers leave apiVersion/kind out of a GET; the key says what it is.
            object["apiVersion"] = Value::String(key.kind.api_version());
            object["kind"] = Value::String(key.kind.kind().to_string());
            Read::Whole(object)
        }))
    }

    /// The objects of a kind with a label selector. Of a kind this engine keeps, the list is read as
    /// metadata, and only the objects that moved since are read whole; or the whole list again, when
    /// more than a quarter moved (one request rather than many: other replicas write the same objects).
    async fn fetch_list(
        &self,
        kind: Kind,
        selector: &str,
        use_: Use,
        deadline: Instant,
    ) -> Result<Vec<Read>, ApplyError> {
        let what = kind.plural();
        if cache::is_kept_list(kind, selector) && self.shared.holds_any(kind) {
            let attempt = || async {
                self.api
                    .list_versions(kind, selector)
                    .await
                    .map_err(|e| ApplyError::classify(e, what))
            };
            let versions = self.retried(what, attempt, deadline).await?;
            self.shared
                .keep_only_listed(kind, versions.iter().map(|(name, _)| name.as_str()));
            let moved = versions
                .iter()
                .filter(|(name, version)| !self.shared.is_current(&ObjectKey::new(kind, name.as_str()), version))
                .count();
            if moved * 4 > versions.len() {
                return self.fetch_whole_list(kind, selector, deadline).await;
            }
            let reads = futures::future::try_join_all(versions.into_iter().map(|(name, version)| async move {
                let key = ObjectKey::new(kind, name);
                match self.shared.current(&key, Some(&version), use_) {
                    Some(kept) => Ok(Some(Read::Kept(key, Box::new(kept)))),
                    None => self.fetch_one(&key, use_, deadline).await,
                }
            }))
            .await?;
            return Ok(reads.into_iter().flatten().collect());
        }
        self.fetch_whole_list(kind, selector, deadline).await
    }

    /// The metadata of the objects of a kind with a label selector, for a look.
    async fn fetch_metadata_list(
        &self,
        kind: Kind,
        selector: &str,
        deadline: Instant,
    ) -> Result<Vec<Value>, ApplyError> {
        let what = kind.plural();
        let attempt = || async {
            self.api
                .list_metadata(kind, selector)
                .await
                .map_err(|e| ApplyError::classify(e, what))
        };
        self.retried(what, attempt, deadline).await
    }

    async fn fetch_whole_list(&self, kind: Kind, selector: &str, deadline: Instant) -> Result<Vec<Read>, ApplyError> {
        let what = kind.plural();
        let attempt = || async {
            // An item that cannot be parsed is named (`WasmPlugin/ai-proxy.internal`), not the list.
            self.api
                .list(kind, selector)
                .await
                .map_err(|e| ApplyError::classify(e.error, e.objects.as_deref().unwrap_or(what)))
        };
        let listed = self.retried(what, attempt, deadline).await?;
        if cache::is_kept_list(kind, selector) {
            self.shared.keep_only_listed(
                kind,
                listed
                    .iter()
                    .filter_map(|object| object.pointer("/metadata/name").and_then(Value::as_str)),
            );
        }
        Ok(listed.into_iter().map(Read::Whole).collect())
    }

    /// After a batch written in full: its shared objects are kept for the next batch, each as the
    /// server now stores it (see [`cache`]).
    fn keep_shared(&self, state: &mut State, tally: &Tally) {
        let versions = tally.versions.lock().expect("not poisoned");
        let keys: Vec<ObjectKey> = state
            .iter()
            .map(|(key, _)| key)
            .filter(|key| cache::is_kept(key))
            .cloned()
            .collect();
        for key in keys {
            let (version, size) = match versions.get(&key) {
                Some(written) => (
                    written.as_ref().map(|(version, _)| version.clone()),
                    written.as_ref().map(|(_, size)| *size),
                ),
                // Not written: as read (its size known if it was so when read).
                None => (
                    state
                        .get(&key)
                        .and_then(|object| object.pointer("/metadata/resourceVersion"))
                        .and_then(Value::as_str)
                        .map(str::to_string),
                    state.known_size(&key),
                ),
            };
            if let (Some(version), Some((object, index))) = (version, state.take_indexed(&key)) {
                self.shared.keep(key, cache::Kept { object, index, size }, &version);
            }
        }
    }

    /// Everything the mapping declares it may read for these events.
    async fn read_state(&self, events: &[LifecycleEvent], use_: Use, deadline: Instant) -> Result<State, ApplyError> {
        let mut state = self.fetch(&higress::reads(events), use_, deadline).await?;
        let more = higress::reads::follow_up_reads(events, &state);
        if !more.is_empty() {
            for (key, object) in self.fetch(&more, use_, deadline).await?.into_objects() {
                state.set(key, Some(object));
            }
        }
        Ok(state)
    }
}

/// An object as a read found it: read whole, or a kept copy (with its index) that is still current.
enum Read {
    Whole(Value),
    Kept(ObjectKey, Box<cache::Kept>),
}

/// The newest event of a batch writing a route's own object: its model, revision, and whether it
/// retires the model (a retirement outranks a deploy of its own revision, [`FenceEntry::supersedes`]).
#[derive(Clone, Copy, Debug)]
struct Owner<'a> {
    model: &'a str,
    revision: u64,
    retiring: bool,
}

impl Owner<'_> {
    fn of(event: &LifecycleEvent) -> Owner<'_> {
        Owner {
            model: event.model(),
            revision: event.revision(),
            retiring: matches!(event.body, Lifecycle::Retired(_)),
        }
    }

    fn rank(&self) -> (u64, bool) {
        (self.revision, self.retiring)
    }

    /// Whether the model's fence entry, as read now, belongs to a newer event.
    fn fenced_past(&self, entry: &FenceEntry) -> bool {
        entry.supersedes_event(self.revision, self.retiring)
    }
}

/// Frees what a batch read and planned off its path: the state of a large cluster (thousands of
/// objects) takes tens of milliseconds to drop, time the batch's results would otherwise wait for.
fn drop_aside<T: Send + 'static>(value: T) {
    tokio::task::spawn_blocking(move || drop(value));
}

/// The objects each event touched, with the Ingresses its retirement took late (so a failed batch's
/// results list them).
fn with_taken(touched: &[BTreeSet<ObjectKey>], taken: &[(usize, ObjectKey)]) -> Vec<BTreeSet<ObjectKey>> {
    let mut touched = touched.to_vec();
    for (i, key) in taken {
        touched[*i].insert(key.clone());
    }
    touched
}

/// The route objects of the batch that are put or deleted whole, each with the newest event of the
/// batch touching it (see [`Engine::write`]).
fn owners<'a>(events: &'a [LifecycleEvent], planned: &'a batch::Planned) -> BTreeMap<&'a ObjectKey, Owner<'a>> {
    let mut owners: BTreeMap<&ObjectKey, Owner> = BTreeMap::new();
    for (event, touched) in events.iter().zip(&planned.touched) {
        for key in touched {
            let whole = planned.steps[key]
                .iter()
                .all(|step| matches!(step.action, Action::Put(_) | Action::Delete));
            if !whole {
                continue;
            }
            let owner = owners.entry(key).or_insert(Owner::of(event));
            if Owner::of(event).rank() > owner.rank() {
                *owner = Owner::of(event);
            }
        }
    }
    owners
}

/// A failed event's result: `failed` when something was written before the error or it may succeed
/// when applied again, `rejected` (nothing written) otherwise; `written` is what did get written.
fn fail(result: &mut RouteResult, error: &ApplyError, written: Vec<Change>) {
    let retryable = error.is_retryable();
    let outcome = if retryable || !written.is_empty() {
        Outcome::Failed
    } else {
        Outcome::Rejected
    };
    result.fail(outcome, error.reason(), error.to_string(), retryable);
    result.changes = written;
}

/// Whether a failed result may succeed when applied again.
pub fn is_retryable(result: &RouteResult) -> bool {
    result.error.as_ref().is_some_and(|e| e.retryable)
}

/// A client for the cluster of `kubeconfig`, else the standard discovery (`KUBECONFIG`, `~/.kube/config`,
/// in-cluster service account), with timeouts so a hung API server becomes a retryable error.
pub async fn connect(kubeconfig: Option<&std::path::Path>) -> anyhow::Result<kube::Client> {
    let mut config = match kubeconfig {
        Some(path) => {
            let kubeconfig = kube::config::Kubeconfig::read_from(path)?;
            kube::Config::from_custom_kubeconfig(kubeconfig, &kube::config::KubeConfigOptions::default()).await?
        }
        None => kube::Config::infer().await?,
    };
    config.connect_timeout = Some(std::time::Duration::from_secs(5));
    config.read_timeout = Some(REQUEST_TIMEOUT);
    config.write_timeout = Some(REQUEST_TIMEOUT);
    // One retry policy, ours: it also re-reads after conflicts, honours Retry-After, and counts retries.
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}
