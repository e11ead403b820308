//! Failure injection: latency, error responses, forced conflicts and dropped
//! connections, switched on and off at run time through a shared handle.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::http::Method;

use crate::sync::lock;

/// An error response to inject, and which requests it applies to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FaultSpec {
    /// HTTP status of the injected response, e.g. 500, 503 or 429.
    pub status: u16,
    /// Sent as the `Retry-After` header and `details.retryAfterSeconds`.
    pub retry_after: Option<u64>,
    /// Only requests with this method; any method when `None`.
    pub method: Option<Method>,
    /// Only requests whose path contains this text; any path when `None`.
    pub path_contains: Option<String>,
    /// For `fail_next`: this many matching requests pass before the rule's failures begin.
    pub after: usize,
}

impl FaultSpec {
    /// A fault with the given status for every request.
    pub fn new(status: u16) -> Self {
        FaultSpec {
            status,
            retry_after: None,
            method: None,
            path_contains: None,
            after: 0,
        }
    }

    pub fn with_retry_after(mut self, seconds: u64) -> Self {
        self.retry_after = Some(seconds);
        self
    }

    pub fn for_method(mut self, method: Method) -> Self {
        self.method = Some(method);
        self
    }

    pub fn for_path(mut self, fragment: impl Into<String>) -> Self {
        self.path_contains = Some(fragment.into());
        self
    }

    /// For `fail_next`: let the first `n` matching requests through (e.g. the read before a write,
    /// to fail only the read after it).
    pub fn after(mut self, n: usize) -> Self {
        self.after = n;
        self
    }

    fn matches(&self, method: &Method, path: &str) -> bool {
        request_matches(self.method.as_ref(), self.path_contains.as_deref(), method, path)
    }
}

fn request_matches(wanted_method: Option<&Method>, fragment: Option<&str>, method: &Method, path: &str) -> bool {
    wanted_method.is_none_or(|wanted| wanted == method) && fragment.is_none_or(|f| path.contains(f))
}

/// Consumes one of the first rule of `rules` that matches the request; false if none does.
fn take_counted(rules: &mut Vec<(usize, Option<Method>, Option<String>)>, method: &Method, path: &str) -> bool {
    let found = rules
        .iter_mut()
        .find(|(left, m, fragment)| *left > 0 && request_matches(m.as_ref(), fragment.as_deref(), method, path));
    let Some((left, ..)) = found else {
        return false;
    };
    *left -= 1;
    rules.retain(|(left, ..)| *left > 0);
    true
}

/// What the server does instead of answering a request.
#[derive(Debug, PartialEq)]
pub(crate) enum Injected {
    /// Close the connection without any response.
    Drop,
    /// Serve the request (a write is stored), then close the connection without the response: a
    /// client cannot tell whether its write happened.
    LoseAnswer,
    Error {
        status: u16,
        retry_after: Option<u64>,
    },
}

/// Handle to the fault rules of one [`crate::Sim`]; clones share the rules.
/// Rules apply to every request except those to the `/_sim` control API.
#[derive(Clone)]
pub struct Faults {
    rules: Arc<Mutex<Rules>>,
}

struct Rules {
    latency: Duration,
    jitter: Duration,
    delay_reads: bool,
    error_rate: Option<(f64, FaultSpec)>,
    fail_next: Vec<(usize, FaultSpec)>,
    drop_next: Vec<(usize, Option<Method>, Option<String>)>,
    lose_answer_next: Vec<(usize, Option<Method>, Option<String>)>,
    /// Remaining forced conflicts by (resource plural, object name).
    conflict_next: HashMap<(String, String), usize>,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            latency: Duration::ZERO,
            jitter: Duration::ZERO,
            delay_reads: true,
            error_rate: None,
            fail_next: Vec::new(),
            drop_next: Vec::new(),
            lose_answer_next: Vec::new(),
            conflict_next: HashMap::new(),
        }
    }
}

impl Faults {
    /// No rules; only a [`crate::Sim`] hands out a handle that takes effect.
    pub(crate) fn new() -> Self {
        Faults { rules: Arc::default() }
    }

    /// Delays each request by `base` plus a uniformly random part of `jitter`.
    pub fn set_latency(&self, base: Duration, jitter: Duration) {
        let mut rules = lock(&self.rules);
        rules.latency = base;
        rules.jitter = jitter;
    }

    /// Whether GET requests (reads and discovery) are delayed too; they are by default.
    pub fn set_delay_reads(&self, delay_reads: bool) {
        lock(&self.rules).delay_reads = delay_reads;
    }

    /// Answers each matching request with `fault` with the given probability
    /// (0 switches this off). Replaces any earlier rate rule.
    ///
    /// # Panics
    /// If `probability` is not within 0..=1.
    pub fn set_error_rate(&self, probability: f64, fault: FaultSpec) {
        assert!(
            (0.0..=1.0).contains(&probability),
            "error rate {probability} is not a probability"
        );
        lock(&self.rules).error_rate = (probability > 0.0).then_some((probability, fault));
    }

    /// Answers the next `n` matching requests with `fault`. Rules queue up;
    /// each request consumes at most one, the oldest that matches.
    pub fn fail_next(&self, n: usize, fault: FaultSpec) {
        lock(&self.rules).fail_next.push((n, fault));
    }

    /// Fails the next `n` updates and patches of the named object (any namespace)
    /// with 409 Conflict, as if another writer had just modified it.
    pub fn conflict_next(&self, resource: &str, name: &str, n: usize) {
        *lock(&self.rules)
            .conflict_next
            .entry((resource.to_string(), name.to_string()))
            .or_default() += n;
    }

    /// Closes the connection of the next `n` matching requests without answering.
    pub fn drop_next(&self, n: usize, method: Option<Method>, path_contains: Option<&str>) {
        lock(&self.rules)
            .drop_next
            .push((n, method, path_contains.map(str::to_string)));
    }

    /// Serves the next `n` matching requests (a write is stored) but closes the connection instead of
    /// answering: the write's answer is lost, as when a client's timeout or a proxy cuts it off.
    pub fn lose_answer_next(&self, n: usize, method: Option<Method>, path_contains: Option<&str>) {
        lock(&self.rules)
            .lose_answer_next
            .push((n, method, path_contains.map(str::to_string)));
    }

    /// How many counted injections (`drop_next`, `lose_answer_next`, `fail_next`, `conflict_next`)
    /// are still to come: 0 once every one has met its request.
    pub fn pending(&self) -> usize {
        let rules = lock(&self.rules);
        let counted = |list: &[(usize, Option<Method>, Option<String>)]| list.iter().map(|r| r.0).sum::<usize>();
        counted(&rules.drop_next)
            + counted(&rules.lose_answer_next)
            + rules.fail_next.iter().map(|r| r.0).sum::<usize>()
            + rules.conflict_next.values().sum::<usize>()
    }

    /// Removes every rule: no latency, no injected failures.
    pub fn clear(&self) {
        *lock(&self.rules) = Rules::default();
    }

    pub(crate) fn latency_for(&self, method: &Method) -> Duration {
        let rules = lock(&self.rules);
        if !rules.delay_reads && method == Method::GET {
            return Duration::ZERO;
        }
        let jitter = if rules.jitter.is_zero() {
            Duration::ZERO
        } else {
            rand::random_range(Duration::ZERO..=rules.jitter)
        };
        rules.latency + jitter
    }

    /// Decides, and consumes, what to inject for this request: drops first, then lost answers,
    /// then counted failures, then the random failure rate.
    pub(crate) fn take_injection(&self, method: &Method, path: &str) -> Option<Injected> {
        let mut rules = lock(&self.rules);
        if take_counted(&mut rules.drop_next, method, path) {
            return Some(Injected::Drop);
        }
        if take_counted(&mut rules.lose_answer_next, method, path) {
            return Some(Injected::LoseAnswer);
        }
        // A rule still letting requests through counts this one and lets it pass to the next rules.
        let mut counted = None;
        for (left, fault) in rules.fail_next.iter_mut() {
            if *left == 0 || !fault.matches(method, path) {
                continue;
            }
            if fault.after > 0 {
                fault.after -= 1;
                continue;
            }
            counted = Some((left, fault));
            break;
        }
        let fault = match counted {
            Some((left, fault)) => {
                *left -= 1;
                let fault = fault.clone();
                rules.fail_next.retain(|(left, _)| *left > 0);
                fault
            }
            None => match &rules.error_rate {
                Some((rate, fault)) if fault.matches(method, path) && rand::random_bool(*rate) => fault.clone(),
                _ => return None,
            },
        };
        Some(Injected::Error {
            status: fault.status,
            retry_after: fault.retry_after,
        })
    }

    /// Whether this update or patch must fail with a forced conflict.
    pub(crate) fn take_conflict(&self, resource: &str, name: &str) -> bool {
        let mut rules = lock(&self.rules);
        let key = (resource.to_string(), name.to_string());
        match rules.conflict_next.get_mut(&key) {
            Some(left) if *left > 0 => {
                *left -= 1;
                true
            }
            _ => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counted_failures_match_method_and_path_and_run_out() {
        let faults = Faults::new();
        faults.fail_next(2, FaultSpec::new(503).for_method(Method::PUT).for_path("/configmaps/"));
        let put = |path| faults.take_injection(&Method::PUT, path);
        assert_eq!(
            faults.take_injection(&Method::GET, "/api/v1/namespaces/a/configmaps/x"),
            None
        );
        assert_eq!(put("/api/v1/namespaces/a/secrets/x"), None);
        let unavailable = Some(Injected::Error {
            status: 503,
            retry_after: None,
        });
        assert_eq!(put("/api/v1/namespaces/a/configmaps/x"), unavailable);
        assert_eq!(put("/api/v1/namespaces/a/configmaps/x"), unavailable);
        assert_eq!(put("/api/v1/namespaces/a/configmaps/x"), None);
    }

    #[test]
    fn a_counted_failure_after_n_lets_the_first_n_matching_requests_through() {
        let faults = Faults::new();
        faults.fail_next(1, FaultSpec::new(500).for_method(Method::GET).for_path("/x").after(2));
        let get = |path| faults.take_injection(&Method::GET, path);
        assert_eq!(get("/y"), None, "not matching: not counted");
        assert_eq!(get("/x"), None);
        assert_eq!(get("/x"), None);
        let failed = Some(Injected::Error {
            status: 500,
            retry_after: None,
        });
        assert_eq!(get("/x"), failed);
        assert_eq!(get("/x"), None, "its one failure is spent");
    }

    #[test]
    fn drops_come_before_failures() {
        let faults = Faults::new();
        faults.fail_next(1, FaultSpec::new(500));
        faults.drop_next(1, None, Some("/apis/"));
        assert_eq!(faults.take_injection(&Method::GET, "/apis/x"), Some(Injected::Drop));
        assert!(matches!(
            faults.take_injection(&Method::GET, "/apis/x"),
            Some(Injected::Error { status: 500, .. })
        ));
        assert_eq!(faults.take_injection(&Method::GET, "/apis/x"), None);
    }

    #[test]
    fn error_rate_extremes() {
        let faults = Faults::new();
        faults.set_error_rate(1.0, FaultSpec::new(429).with_retry_after(1));
        for _ in 0..10 {
            let injected = faults.take_injection(&Method::GET, "/");
            assert_eq!(
                injected,
                Some(Injected::Error {
                    status: 429,
                    retry_after: Some(1)
                })
            );
        }
        faults.set_error_rate(0.0, FaultSpec::new(429));
        assert_eq!(faults.take_injection(&Method::GET, "/"), None);
    }

    #[test]
    fn conflicts_are_per_object() {
        let faults = Faults::new();
        faults.conflict_next("configmaps", "a", 1);
        assert!(!faults.take_conflict("configmaps", "b"));
        assert!(!faults.take_conflict("secrets", "a"));
        assert!(faults.take_conflict("configmaps", "a"));
        assert!(!faults.take_conflict("configmaps", "a"));
    }

    #[test]
    fn latency_with_jitter_and_exempt_reads() {
        let faults = Faults::new();
        faults.set_latency(Duration::from_millis(10), Duration::from_millis(5));
        let delay = faults.latency_for(&Method::GET);
        assert!(delay >= Duration::from_millis(10) && delay <= Duration::from_millis(15));
        faults.set_delay_reads(false);
        assert_eq!(faults.latency_for(&Method::GET), Duration::ZERO);
        assert!(faults.latency_for(&Method::PUT) >= Duration::from_millis(10));
        faults.clear();
        assert_eq!(faults.latency_for(&Method::PUT), Duration::ZERO);
    }
}
