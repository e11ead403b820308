//! The apply engine: reads the objects events touch, plans them with the pure mapping, and writes
//! the difference beside other writers — entry-level edits of shared objects by read-modify-write
//! with `resourceVersion`, re-read and re-applied on 409; owned objects created, replaced or deleted.
//!
//! Events are applied in batches: all events of a batch are planned in order against one read of the
//! cluster, and each object is written once with every event's edits (coalescing). A batch of one is
//! the console's one-event-at-a-time behaviour.

pub mod api;
pub mod error;

pub use api::Api;
pub use error::{ApplyError, RetryPolicy};

use crate::event::{Lifecycle, LifecycleEvent};
use crate::higress::plan::{apply_step, Step};
use crate::higress::{self, names, Action, Decision, Kind, ObjectKey, Settings, State};
use crate::metrics::Metrics;
use crate::result::{Change, Outcome, RouteResult};
use backon::Retryable;
use futures::{StreamExt, TryStreamExt};
use serde_json::Value;
use std::collections::BTreeMap;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Instant;

#[derive(Clone, Debug)]
pub struct EngineConfig {
    pub settings: Settings,
    pub retry: RetryPolicy,
    /// Object writes of the same rank in flight at once.
    pub write_concurrency: usize,
}

impl Default for EngineConfig {
    fn default() -> Self {
        Self {
            settings: Settings::default(),
            retry: RetryPolicy::default(),
            write_concurrency: 16,
        }
    }
}

/// A batch, planned.
#[derive(Default)]
struct Planned {
    results: Vec<RouteResult>,
    steps: BTreeMap<ObjectKey, Vec<Step>>,
    /// Each touched object as it was before the batch (`None`: absent).
    before: BTreeMap<ObjectKey, Option<Value>>,
    state: State,
}

/// Requests and conflicts of one batch.
#[derive(Default)]
struct Tally {
    attempts: AtomicU32,
    conflicts: AtomicU32,
}

pub struct Engine {
    api: Api,
    config: EngineConfig,
    metrics: Arc<Metrics>,
}

impl Engine {
    pub fn new(client: kube::Client, config: EngineConfig, metrics: Arc<Metrics>) -> Self {
        let api = Api::new(client, &config.settings.namespace);
        Self { api, config, metrics }
    }

    pub fn api(&self) -> &Api {
        &self.api
    }

    pub async fn apply(&self, event: &LifecycleEvent) -> RouteResult {
        self.apply_batch(std::slice::from_ref(event)).await.remove(0)
    }

    /// One result per event, in order. When a write of a batch fails, each event is applied again on
    /// its own, so one event's failure does not fail the others.
    pub async fn apply_batch(&self, events: &[LifecycleEvent]) -> Vec<RouteResult> {
        let started = Instant::now();
        let tally = Tally::default();
        let results = match self.try_batch(events, &tally).await {
            Ok(results) => results,
            Err(error) if events.len() == 1 => {
                let mut result = RouteResult::for_event(&events[0]);
                let outcome = if error.is_retryable() {
                    Outcome::Failed
                } else {
                    Outcome::Rejected
                };
                result.fail(outcome, &error.reason(), error.to_string(), error.is_retryable());
                vec![result]
            }
            Err(error) => {
                tracing::warn!(error = %error, events = events.len(), "batch write failed; applying its events one by one");
                let mut results: Vec<RouteResult> = Vec::with_capacity(events.len());
                for event in events {
                    // A model whose earlier event must be retried waits for it: order per model holds.
                    let waiting = results.iter().any(|r| {
                        r.model.as_deref() == Some(event.model()) && r.outcome == Outcome::Failed && is_retryable(r)
                    });
                    if waiting {
                        let mut result = RouteResult::for_event(event);
                        let message = format!("waits for an earlier event of model {}", event.model());
                        result.fail(Outcome::Failed, "Blocked", message, true);
                        results.push(result);
                        continue;
                    }
                    results.push(Box::pin(self.apply_batch(std::slice::from_ref(event))).await.remove(0));
                }
                return results;
            }
        };
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

    /// Plans the events without writing: their results and the state they would leave.
    pub async fn dry_run(&self, events: &[LifecycleEvent]) -> Result<(Vec<RouteResult>, State), ApplyError> {
        let planned = self.plan_batch(events, self.read_state(events).await?);
        Ok((planned.results, planned.state))
    }

    async fn try_batch(&self, events: &[LifecycleEvent], tally: &Tally) -> Result<Vec<RouteResult>, ApplyError> {
        let planned = self.plan_batch(events, self.read_state(events).await?);
        let (before, after, steps) = (&planned.before, &planned.state, &planned.steps);

        // Write each changed object once, rank by rank: the mapping's write order across the batch.
        let mut writes: Vec<(u8, &ObjectKey)> = before
            .iter()
            .filter(|(key, was)| was.as_ref() != after.get(key) && steps.contains_key(key))
            .map(|(key, _)| {
                let rank = match after.get(key) {
                    None => Step {
                        key: key.clone(),
                        action: Action::Delete,
                    }
                    .rank(),
                    Some(_) => steps[key].last().map(Step::rank).unwrap_or_default(),
                };
                (rank, key)
            })
            .collect();
        writes.sort();
        for rank in writes
            .iter()
            .map(|(rank, _)| *rank)
            .collect::<std::collections::BTreeSet<_>>()
        {
            // Built eagerly: a lazily mapping stream would make this future not `Send` for every lifetime.
            let writes_of_rank: Vec<_> = writes
                .iter()
                .filter(|(r, _)| *r == rank)
                .map(|(_, key)| self.write(key, before[*key].as_ref(), after.get(key), &steps[*key], tally))
                .collect();
            futures::stream::iter(writes_of_rank)
                .buffer_unordered(self.config.write_concurrency.max(1))
                .try_collect::<Vec<()>>()
                .await?;
        }
        Ok(planned.results)
    }

    /// Plans every event in order against the state its predecessors leave. Returns the results, the
    /// steps per object, the objects as they were before the batch touched them, and the state after.
    fn plan_batch(&self, events: &[LifecycleEvent], initial: State) -> Planned {
        let now = chrono::Utc::now();
        let mut planned = Planned {
            state: initial,
            ..Planned::default()
        };
        for event in events {
            let mut result = RouteResult::for_event(event);
            match higress::plan(event, &planned.state, &self.config.settings, now) {
                Err(refusal) => result.fail(Outcome::Rejected, refusal.reason, refusal.message, false),
                Ok(Decision::Stale { seen }) => {
                    result.outcome = Outcome::Stale;
                    result
                        .warnings
                        .push(format!("route {} has already seen revision {seen}", event.model()));
                }
                Ok(Decision::Apply(plan)) => {
                    // Keep what each object was before the batch, not a copy of the whole state.
                    for step in &plan.steps {
                        if !planned.before.contains_key(&step.key) {
                            planned
                                .before
                                .insert(step.key.clone(), planned.state.get(&step.key).cloned());
                        }
                    }
                    match higress::simulate(&mut planned.state, &plan) {
                        Err(refusal) => result.fail(Outcome::Rejected, refusal.reason, refusal.message, false),
                        Ok(changes) => {
                            result.outcome = if changes.is_empty() {
                                Outcome::Unchanged
                            } else {
                                Outcome::Applied
                            };
                            result.changes = changes.iter().map(|(key, op)| Change::new(key, *op)).collect();
                            result.warnings = plan.warnings;
                            for step in plan.steps {
                                planned.steps.entry(step.key.clone()).or_default().push(step);
                            }
                        }
                    }
                }
            }
            planned.results.push(result);
        }
        planned
    }

    /// `planned` is what the batch's simulation made of `initial`: the first attempt writes it as is.
    async fn write(
        &self,
        key: &ObjectKey,
        initial: Option<&Value>,
        planned: Option<&Value>,
        steps: &[Step],
        tally: &Tally,
    ) -> Result<(), ApplyError> {
        let object = key.to_string();
        // `Some(current)` for the first attempt (what the batch read), `None` to read afresh.
        let known: Mutex<Option<(Option<Value>, Option<Value>)>> =
            Mutex::new(Some((initial.cloned(), planned.cloned())));
        let attempt = || async {
            let cached = known.lock().expect("not poisoned").take();
            let (current, desired) = match cached {
                Some(first) => first,
                None => {
                    let current = self.api.get(key).await.map_err(|e| ApplyError::classify(e, &object))?;
                    let mut desired = current.clone();
                    for step in steps {
                        apply_step(step, &mut desired).map_err(|refused| ApplyError::Refused(refused.into()))?;
                    }
                    (current, desired)
                }
            };
            if desired == current {
                return Ok(());
            }
            tally.attempts.fetch_add(1, Ordering::Relaxed);
            let written = match (&current, &desired) {
                (Some(_), None) => self.api.delete(key).await,
                (None, Some(new)) => self.api.create(key.kind, new).await.map(drop),
                (Some(_), Some(changed)) => self.api.replace(key, changed).await.map(drop),
                (None, None) => Ok(()),
            };
            written.map_err(|e| {
                let error = ApplyError::classify(e, &object);
                if matches!(error, ApplyError::Conflict { .. }) {
                    tally.conflicts.fetch_add(1, Ordering::Relaxed);
                    self.metrics.conflicts.inc();
                }
                error
            })
        };
        let retried = attempt
            .retry(self.config.retry.backoff())
            .when(ApplyError::is_retryable)
            .adjust(RetryPolicy::adjust)
            .notify(|error, delay| {
                self.metrics.retried(error.label());
                tracing::debug!(%error, ?delay, "retrying write");
            });
        match tokio::time::timeout(self.config.retry.max_elapsed, retried).await {
            Ok(result) => result,
            Err(_) => Err(ApplyError::Transient {
                object,
                message: format!("gave up after {:?}", self.config.retry.max_elapsed),
                retry_after: None,
            }),
        }
    }

    async fn read<T, F, Fut>(&self, what: &str, read: F) -> Result<T, ApplyError>
    where
        F: FnMut() -> Fut,
        Fut: std::future::Future<Output = Result<T, kube::Error>>,
    {
        let mut read = read;
        let attempt = || {
            let fut = read();
            async move { fut.await.map_err(|e| ApplyError::classify(e, what)) }
        };
        let retried = attempt
            .retry(self.config.retry.backoff())
            .when(ApplyError::is_retryable)
            .adjust(RetryPolicy::adjust)
            .notify(|error, _| self.metrics.retried(error.label()));
        tokio::time::timeout(self.config.retry.max_elapsed, retried)
            .await
            .unwrap_or_else(|_| {
                Err(ApplyError::Transient {
                    object: what.into(),
                    message: "read timed out".into(),
                    retry_after: None,
                })
            })
    }

    /// Reads objects by name and by list, concurrently, into a state.
    async fn fetch(&self, gets: &[ObjectKey], lists: &[(Kind, &str)]) -> Result<State, ApplyError> {
        let api = &self.api;
        let (got, listed) =
            tokio::try_join!(
                futures::future::try_join_all(gets.iter().map(|key| {
                    let what = key.to_string();
                    async move { self.read(&what, || api.get(key)).await.map(|object| (key, object)) }
                })),
                futures::future::try_join_all(lists.iter().map(|(kind, selector)| async move {
                    self.read(kind.plural(), || api.list(*kind, selector)).await
                })),
            )?;
        let mut state = State::new();
        for (key, object) in got {
            if let Some(mut object) = object {
                // Some servers leave apiVersion/kind out of a GET; the key says what it is.
                object["apiVersion"] = Value::String(key.kind.api_version());
                object["kind"] = Value::String(key.kind.kind().to_string());
                state.insert_object(object);
            }
        }
        for object in listed.into_iter().flatten() {
            state.insert_object(object);
        }
        Ok(state)
    }

    /// Everything the mapping may read for these events: shared objects, the routes and domains they
    /// touch, the tombstones, and the Secrets they refer to. A few events read their own objects by
    /// name; a larger batch lists them, so a batch costs a fixed number of reads.
    pub async fn read_state(&self, events: &[LifecycleEvent]) -> Result<State, ApplyError> {
        const CONSOLE: &str = "higress.io/resource-definer=higress";
        const AI_ROUTES: &str = "higress.io/resource-definer=higress,higress.io/config-map-type=ai-route";
        const TARGETED_UP_TO: usize = 4;
        const LIST_INGRESSES_ABOVE: usize = 32;
        let mut models: Vec<&str> = events.iter().map(LifecycleEvent::model).collect();
        models.sort_unstable();
        models.dedup();
        let targeted = models.len() <= TARGETED_UP_TO;
        let retiring: Vec<&str> = events
            .iter()
            .filter(|e| matches!(e.body, Lifecycle::Retired(_)))
            .map(LifecycleEvent::model)
            .collect();

        let mut gets = vec![
            ObjectKey::new(Kind::McpBridge, names::MCP_BRIDGE),
            ObjectKey::new(Kind::ConfigMap, names::TOMBSTONES),
        ];
        let mut lists = vec![(Kind::WasmPlugin, CONSOLE)];
        if targeted {
            for model in &models {
                gets.push(ObjectKey::new(Kind::ConfigMap, names::route_config_map(model)));
                gets.push(ObjectKey::new(Kind::Ingress, names::route_ingress(model)));
                gets.push(ObjectKey::new(Kind::Ingress, names::fallback_ingress(model)));
            }
            let mut domains = vec![names::DEFAULT_DOMAIN.to_string()];
            for event in events {
                if let Lifecycle::Deployed(deployed) = &event.body {
                    domains.extend(deployed.route.domains.iter().cloned());
                }
            }
            domains.sort_unstable();
            domains.dedup();
            gets.extend(
                domains
                    .iter()
                    .map(|d| ObjectKey::new(Kind::ConfigMap, names::domain_config_map(d))),
            );
            gets.extend(
                retiring
                    .iter()
                    .map(|m| ObjectKey::new(Kind::EnvoyFilter, names::fallback_envoy_filter(m))),
            );
            if !retiring.is_empty() {
                // Providers are deleted only when no remaining route uses them.
                lists.push((Kind::ConfigMap, AI_ROUTES));
            }
        } else {
            lists.push((Kind::ConfigMap, CONSOLE));
            if !retiring.is_empty() {
                lists.push((Kind::EnvoyFilter, CONSOLE));
            }
        }
        let mut secrets: Vec<&str> = events.iter().flat_map(secret_names).collect();
        secrets.sort_unstable();
        secrets.dedup();
        gets.extend(secrets.iter().map(|name| ObjectKey::new(Kind::Secret, *name)));

        let mut state = self.fetch(&gets, &lists).await?;
        if !targeted {
            // Only routes that exist (or are retired) can have Ingresses: read those, not every route's.
            // A new route's Ingress is created; should one exist after all, the 409 makes it a replace.
            let existing: Vec<&str> = models
                .iter()
                .copied()
                .filter(|m| {
                    retiring.contains(m) || state.get_named(Kind::ConfigMap, &names::route_config_map(m)).is_some()
                })
                .collect();
            let (gets, lists) = if existing.len() <= LIST_INGRESSES_ABOVE {
                let gets = existing
                    .iter()
                    .flat_map(|m| [names::route_ingress(m), names::fallback_ingress(m)])
                    .map(|name| ObjectKey::new(Kind::Ingress, name))
                    .collect();
                (gets, Vec::new())
            } else {
                (Vec::new(), vec![(Kind::Ingress, CONSOLE)])
            };
            for (key, object) in self.fetch(&gets, &lists).await?.into_objects() {
                state.set(key, Some(object));
            }
        }
        Ok(state)
    }
}

/// Whether a failed result may succeed when applied again.
pub fn is_retryable(result: &RouteResult) -> bool {
    result.error.as_ref().is_some_and(|e| e.retryable)
}

fn secret_names(event: &LifecycleEvent) -> Vec<&str> {
    let Lifecycle::Deployed(deployed) = &event.body else {
        return Vec::new();
    };
    let provider = deployed.provider.api_tokens_secret_ref.iter();
    let consumers = deployed
        .auth
        .iter()
        .flat_map(|a| a.consumers.iter())
        .filter_map(|c| c.credentials_secret_ref.as_ref());
    provider.chain(consumers).map(|r| r.name.as_str()).collect()
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
    config.read_timeout = Some(std::time::Duration::from_secs(15));
    config.write_timeout = Some(std::time::Duration::from_secs(15));
    // One retry policy, ours: it also re-reads after conflicts, honours Retry-After, and counts retries.
    config.default_retry = false;
    Ok(kube::Client::try_from(config)?)
}
