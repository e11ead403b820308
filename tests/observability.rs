//! deploy/observability/, the dashboard and the alerts, speak only of what the worker exports: every PromQL
//! expression parses (promql-parser), and every metric and label it names is in the live /metrics of
//! real workers that have applied, replayed, rejected, failed and dead-lettered events, met a conflict,
//! rotated a Secret, measured their consumer lag and had a result refused by the broker. The kustomization renders them; the README explains
//! every alert and names every metric.

#[path = "support/broker.rs"]
mod broker;
#[path = "support/kustomize.rs"]
mod kustomize;
#[path = "support/worker.rs"]
mod process;

use base64::Engine as _;
use higress_route_worker::cluster::{connect, Api};
use higress_route_worker::higress::{Kind, ObjectKey};
use kube_sim::FaultSpec;
use process::{WorkerProcess, NS};
use promql_parser::label::{MatchOp, Matcher};
use promql_parser::parser::{self, Expr, LabelModifier, VectorMatchCardinality, VectorSelector};
use serde::Deserialize as _;
use serde_json::{json, Value};
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::time::Duration;

const WAIT: Duration = Duration::from_secs(60);

/// Labels Prometheus gives every series it scrapes (the target's): never in /metrics itself.
const TARGET_LABELS: [&str; 2] = ["instance", "job"];

fn repo() -> &'static Path {
    Path::new(env!("CARGO_MANIFEST_DIR"))
}

fn read(path: &str) -> String {
    std::fs::read_to_string(repo().join(path)).unwrap_or_else(|e| panic!("{path}: {e}"))
}

// --- What the worker exports ---------------------------------------------------------------------

/// A /metrics text (OpenMetrics) as names and labels.
#[derive(Debug, Default)]
struct Exported {
    /// Family name (`# TYPE` line) to its type.
    families: BTreeMap<String, String>,
    /// Sample name (`…_total`, `…_bucket`) to each label's values seen.
    samples: BTreeMap<String, BTreeMap<String, BTreeSet<String>>>,
}

impl Exported {
    fn parse(text: &str) -> Self {
        let mut exported = Exported::default();
        for line in text.lines() {
            if let Some(declared) = line.strip_prefix("# TYPE ") {
                let (name, kind) = declared.split_once(' ').expect("# TYPE name type");
                exported.families.insert(name.into(), kind.into());
            } else if !line.starts_with('#') && !line.is_empty() {
                let (name, labels) = sample(line);
                assert!(
                    name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_' || c == ':'),
                    "not a sample line: {line:?}"
                );
                let seen = exported.samples.entry(name).or_default();
                for (label, value) in labels {
                    seen.entry(label).or_default().insert(value);
                }
            }
        }
        exported
    }

    /// The family a sample name belongs to, as Prometheus stores it: a counter's `_total`, a
    /// histogram's `_bucket`, `_sum` and `_count`, a gauge's own name.
    fn family_of(&self, sample: &str) -> Option<&str> {
        self.families.iter().find_map(|(family, kind)| {
            let suffixes: &[&str] = match kind.as_str() {
                "counter" => &["_total"],
                "histogram" => &["_bucket", "_sum", "_count"],
                _ => &[""],
            };
            suffixes
                .iter()
                .any(|suffix| sample.strip_suffix(suffix) == Some(family.as_str()))
                .then_some(family.as_str())
        })
    }
}

/// The name and labels of a sample line, `name{a="x",b="y"} value`.
fn sample(line: &str) -> (String, Vec<(String, String)>) {
    let Some((name, rest)) = line.split_once('{') else {
        return (line.split_whitespace().next().unwrap().to_string(), Vec::new());
    };
    let mut labels = Vec::new();
    let mut chars = rest.chars();
    loop {
        let label: String = chars.by_ref().take_while(|c| *c != '=').collect();
        let label = label.trim_start_matches(',').to_string();
        if label.is_empty() || label.starts_with('}') {
            break;
        }
        assert_eq!(chars.next(), Some('"'), "{line}");
        let mut value = String::new();
        while let Some(c) = chars.next() {
            match c {
                '\\' => value.push(chars.next().expect("an escaped character")),
                '"' => break,
                c => value.push(c),
            }
        }
        labels.push((label, value));
    }
    (name.to_string(), labels)
}

// --- What the dashboard and the alerts ask ------------------------------------------------------

/// Where an expression comes from, and the expression.
struct Query {
    at: String,
    expr: String,
}

fn dashboard() -> Value {
    serde_json::from_str(&read("deploy/observability/dashboard.json")).expect("dashboard.json is JSON")
}

fn dashboard_queries(dashboard: &Value) -> Vec<Query> {
    let mut queries = Vec::new();
    let mut panels: Vec<&Value> = dashboard["panels"].as_array().expect("panels").iter().collect();
    while let Some(panel) = panels.pop() {
        // A row holds its panels when collapsed.
        panels.extend(panel["panels"].as_array().into_iter().flatten());
        if panel["type"] == "row" {
            continue;
        }
        let title = panel["title"].as_str().expect("every panel has a title");
        let targets = panel["targets"].as_array().map(Vec::as_slice).unwrap_or_default();
        assert!(!targets.is_empty(), "panel {title:?} has no query");
        for target in targets {
            let expr = target["expr"]
                .as_str()
                .unwrap_or_else(|| panic!("panel {title:?}: a target without expr"));
            queries.push(Query {
                at: format!("dashboard panel {title:?}"),
                expr: expr.to_string(),
            });
        }
    }
    queries
}

fn prometheus_rule() -> Value {
    let text = read("deploy/observability/prometheusrule.yaml");
    Value::deserialize(serde_yaml_ng::Deserializer::from_str(&text)).expect("prometheusrule.yaml is YAML")
}

fn alerts(rule: &Value) -> Vec<&Value> {
    rule["spec"]["groups"]
        .as_array()
        .expect("spec.groups")
        .iter()
        .flat_map(|group| group["rules"].as_array().expect("a group's rules"))
        .collect()
}

fn alert_queries(rule: &Value) -> Vec<Query> {
    alerts(rule)
        .into_iter()
        .map(|alert| Query {
            at: format!("alert {}", alert["alert"].as_str().expect("every rule is an alert")),
            expr: alert["expr"].as_str().expect("expr").to_string(),
        })
        .collect()
}

/// Grafana's interval variables, as Grafana would fill them in, so the rest parses as PromQL.
fn without_grafana_variables(expr: &str) -> String {
    expr.replace("$__rate_interval", "5m").replace("$__interval", "1m")
}

// --- The check ---------------------------------------------------------------------------------

/// Walks an expression: each metric it selects must be exported, each label it matches, groups by or
/// joins on must be on the series it applies to, and each value it matches exactly must have been seen.
struct Check<'a> {
    exported: &'a Exported,
    at: &'a str,
    problems: Vec<String>,
    /// Families the expression uses.
    used: BTreeSet<String>,
}

impl Check<'_> {
    fn problem(&mut self, what: String) {
        self.problems.push(format!("{}: {what}", self.at));
    }

    fn need(&mut self, label: &str, among: &BTreeSet<String>, what: &str) {
        if !among.contains(label) {
            self.problem(format!("{what} {label:?}, which its series do not carry ({among:?})"));
        }
    }

    /// The labels the series of `expr` may carry.
    fn labels(&mut self, expr: &Expr) -> BTreeSet<String> {
        match expr {
            Expr::VectorSelector(selector) => self.selector(selector),
            Expr::MatrixSelector(matrix) => self.selector(&matrix.vs),
            Expr::Aggregate(aggregate) => {
                if let Some(param) = &aggregate.param {
                    self.labels(param);
                }
                let inner = self.labels(&aggregate.expr);
                match &aggregate.modifier {
                    Some(LabelModifier::Include(by)) => {
                        for label in &by.labels {
                            self.need(label, &inner, "groups by");
                        }
                        by.labels.iter().cloned().collect()
                    }
                    Some(LabelModifier::Exclude(without)) => {
                        for label in &without.labels {
                            self.need(label, &inner, "aggregates without");
                        }
                        inner.into_iter().filter(|l| !without.labels.contains(l)).collect()
                    }
                    None => BTreeSet::new(),
                }
            }
            Expr::Binary(binary) => {
                let left = self.labels(&binary.lhs);
                let right = self.labels(&binary.rhs);
                if let Some(modifier) = &binary.modifier {
                    match &modifier.matching {
                        Some(LabelModifier::Include(on)) => {
                            for label in &on.labels {
                                self.need(label, &left, "matches on");
                                self.need(label, &right, "matches on");
                            }
                        }
                        Some(LabelModifier::Exclude(ignoring)) => {
                            let either = left.union(&right).cloned().collect();
                            for label in &ignoring.labels {
                                self.need(label, &either, "ignores");
                            }
                        }
                        None => {}
                    }
                    match &modifier.card {
                        VectorMatchCardinality::ManyToOne(extra) => {
                            for label in &extra.labels {
                                self.need(label, &right, "takes from the right");
                            }
                        }
                        VectorMatchCardinality::OneToMany(extra) => {
                            for label in &extra.labels {
                                self.need(label, &left, "takes from the left");
                            }
                        }
                        _ => {}
                    }
                }
                left.union(&right).cloned().collect()
            }
            Expr::Paren(paren) => self.labels(&paren.expr),
            Expr::Unary(unary) => self.labels(&unary.expr),
            Expr::Subquery(subquery) => self.labels(&subquery.expr),
            Expr::Call(call) => {
                let mut labels = BTreeSet::new();
                for arg in &call.args.args {
                    labels.extend(self.labels(arg));
                }
                labels
            }
            Expr::NumberLiteral(_) | Expr::StringLiteral(_) => BTreeSet::new(),
            Expr::Extension(_) => {
                self.problem("an extension expression".into());
                BTreeSet::new()
            }
        }
    }

    fn selector(&mut self, selector: &VectorSelector) -> BTreeSet<String> {
        let matchers: Vec<&Matcher> = selector
            .matchers
            .matchers
            .iter()
            .chain(selector.matchers.or_matchers.iter().flatten())
            .collect();
        let by_name = matchers
            .iter()
            .find(|m| m.name == "__name__" && m.op == MatchOp::Equal)
            .map(|m| m.value.clone());
        let Some(name) = selector.name.clone().or(by_name) else {
            self.problem("a selector without a metric name".into());
            return BTreeSet::new();
        };
        match self.exported.family_of(&name) {
            Some(family) => {
                self.used.insert(family.to_string());
            }
            None => self.problem(format!("{name} is not exported")),
        }
        let seen = self.exported.samples.get(&name).cloned().unwrap_or_default();
        let mut labels: BTreeSet<String> = seen.keys().cloned().collect();
        labels.extend(TARGET_LABELS.map(String::from));
        for matcher in matchers.into_iter().filter(|m| m.name != "__name__") {
            if TARGET_LABELS.contains(&matcher.name.as_str()) {
                continue;
            }
            match seen.get(&matcher.name) {
                None => self.problem(format!(
                    "{name} has no label {:?} (labels seen: {:?})",
                    matcher.name,
                    seen.keys().collect::<Vec<_>>()
                )),
                Some(values) if matcher.op == MatchOp::Equal && !values.contains(&matcher.value) => {
                    self.problem(format!(
                        "{name}{{{}={:?}}}: no such series (values seen: {values:?})",
                        matcher.name, matcher.value
                    ))
                }
                Some(_) => {}
            }
        }
        labels
    }
}

/// The problems of `queries` against `exported`, and the families they use.
fn check(queries: &[Query], exported: &Exported) -> (Vec<String>, BTreeSet<String>) {
    let mut problems = Vec::new();
    let mut used = BTreeSet::new();
    for query in queries {
        let expr = match parser::parse(&without_grafana_variables(&query.expr)) {
            Ok(expr) => expr,
            Err(error) => {
                problems.push(format!("{}: {:?} does not parse: {error}", query.at, query.expr));
                continue;
            }
        };
        let mut check = Check {
            exported,
            at: &query.at,
            problems: Vec::new(),
            used: BTreeSet::new(),
        };
        check.labels(&expr);
        problems.extend(check.problems);
        used.extend(check.used);
    }
    (problems, used)
}

// --- A worker with every series ------------------------------------------------------------------

fn b64(text: &str) -> String {
    base64::engine::general_purpose::STANDARD.encode(text)
}

fn secret(token: &str) -> Value {
    json!({"apiVersion": "v1", "kind": "Secret",
           "metadata": {"name": "llm-keys", "namespace": NS, "labels": {"higress-route-worker.io/readable": "true"}},
           "data": {"token": b64(token)}})
}

fn deploy(model: &str, id: &str, provider: Value) -> Vec<u8> {
    json!({"specversion": "1.0", "id": id, "source": "tests", "type": "io.higress.model.deployed.v1",
           "data": {"model": model, "revision": 1,
                    "provider": provider,
                    "route": {"path": format!("/{model}")},
                    "auth": {"consumers": [{"name": format!("c-{model}"), "source": "BEARER", "credentials": [format!("key-{model}")]}]}}})
    .to_string()
    .into_bytes()
}

fn inline_provider(model: &str) -> Value {
    json!({"name": format!("p-{model}"), "type": "openai", "url": format!("https://{model}.example.com/v1"),
           "apiTokens": [format!("sk-{model}")]})
}

/// The outcome of each result published so far, once there are `expected`.
async fn outcomes(fixture: &process::Fixture, worker: &WorkerProcess, expected: usize) -> Vec<String> {
    let results = fixture.results(expected, WAIT).await;
    assert_eq!(results.len(), expected, "{results:?}\nlog:\n{}", worker.log());
    results
        .iter()
        .map(|r| r["outcome"].as_str().unwrap().to_string())
        .collect()
}

/// /metrics of two workers: one that has been through each outcome it can easily reach: applied (from a Secret),
/// unchanged (a replay), rejected and dead-lettered (not JSON), a 409 on a shared object, failed after
/// transient errors, a Secret rotated, and its consumer lag measured; one whose result the broker refused.
async fn live_metrics() -> String {
    let fixture = process::Fixture::start().await;
    fixture.sim.insert(secret("sk-old")).unwrap();
    let worker = fixture.worker(
        "w",
        "info",
        &[
            "--secret-rotation-interval-secs",
            "1",
            "--lag-refresh-ms",
            "200",
            "--event-deadline-secs",
            "3",
            "--retry-deadline-secs",
            "1",
        ],
    );
    let by_reference = json!({"name": "p-m1", "type": "openai", "url": "https://llm.example.com/v1",
                              "apiTokensSecretRef": {"name": "llm-keys", "key": "token"}});
    fixture.produce("poison", b"this is not JSON", &[]).await;
    fixture
        .produce("m1", &deploy("m1", "deploy-m1", by_reference.clone()), &[])
        .await;
    let mut first_two = outcomes(&fixture, &worker, 2).await;
    first_two.sort();
    assert_eq!(first_two, ["applied", "rejected"]);
    // A replay, once the deploy is in place.
    fixture
        .produce("m1", &deploy("m1", "deploy-m1", by_reference), &[])
        .await;
    assert_eq!(outcomes(&fixture, &worker, 3).await[2], "unchanged");

    fixture
        .sim
        .faults()
        .conflict_next("wasmplugins", "ai-proxy.internal", 1);
    fixture
        .produce("m2", &deploy("m2", "deploy-m2", inline_provider("m2")), &[])
        .await;
    assert_eq!(outcomes(&fixture, &worker, 4).await[3], "applied");

    fixture
        .sim
        .faults()
        .set_error_rate(1.0, FaultSpec::new(503).for_path("ingresses"));
    fixture
        .produce("m3", &deploy("m3", "deploy-m3", inline_provider("m3")), &[])
        .await;
    assert_eq!(outcomes(&fixture, &worker, 5).await[4], "failed");
    fixture.sim.faults().clear();

    let client = connect(Some(&fixture.dir.path().join("kubeconfig"))).await.unwrap();
    let api = Api::new(client, NS);
    let key = ObjectKey::new(Kind::Secret, "llm-keys");
    let mut current = api.get(&key).await.unwrap().expect("the Secret");
    current["data"] = secret("sk-rotated")["data"].clone();
    api.replace(&key, &current).await.unwrap();

    let metrics = worker
        .metrics_once("a rotation, lag measured, ready", WAIT, |m| {
            m.contains(r#"higress_route_worker_secret_rotations_total{reason="secret-rotated"}"#)
                && m.contains("higress_route_worker_consumer_lag{")
                && m.contains("higress_route_worker_ready 1")
        })
        .await;
    assert!(worker.terminate().success());

    // A second worker, of its own group and topic, whose producer takes nothing over 1000 bytes
    // (librdkafka's least): the broker refuses its results for good, which only such a setting shows.
    let small = "model-lifecycle-small";
    fixture.broker.create_topics(&[(small, 1)]).await;
    let refusing = fixture.worker(
        "refusing",
        "info",
        &[
            "--group",
            "refusing",
            "--input-topic",
            small,
            "--kafka-producer-config",
            "message.max.bytes=1000",
        ],
    );
    let ready = refusing.wait_ready_status(200, WAIT).await;
    assert_eq!(ready, 200, "log:\n{}", refusing.log());
    let event = deploy("m4", "deploy-m4", inline_provider("m4"));
    fixture.broker.produce(small, Some("m4"), &event, &[]).await;
    let refused = refusing
        .metrics_once("a result refused by the broker", WAIT, |m| {
            m.contains("higress_route_worker_undeliverable_total{")
        })
        .await;
    assert!(refusing.terminate().success());
    body(&metrics).to_string() + body(&refused)
}

/// The body of an HTTP response.
fn body(response: &str) -> &str {
    response.split_once("\r\n\r\n").expect("an HTTP response").1
}

// --- Tests ---------------------------------------------------------------------------------------

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_dashboard_and_the_alerts_use_only_what_the_worker_exports() {
    let exported = Exported::parse(&live_metrics().await);
    let dashboard = dashboard();
    let rule = prometheus_rule();
    let (mut problems, on_dashboard) = check(&dashboard_queries(&dashboard), &exported);
    let (alert_problems, alerted) = check(&alert_queries(&rule), &exported);
    problems.extend(alert_problems);
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));

    // Every metric has a panel, so a new one gets one.
    let exported_families: BTreeSet<String> = exported.families.keys().cloned().collect();
    let without_panel: Vec<&String> = exported_families.difference(&on_dashboard).collect();
    assert!(without_panel.is_empty(), "metrics without a panel: {without_panel:?}");
    // The alerts the issue asks for: dead letters, failed results, lag, budget, readiness, gateway.
    for family in [
        "higress_route_worker_dead_lettered",
        "higress_route_worker_events",
        "higress_route_worker_consumer_lag",
        "higress_route_worker_shared_object_bytes",
        "higress_route_worker_ready",
        "higress_route_worker_gateway_problems",
    ] {
        assert!(alerted.contains(family), "no alert uses {family}: {alerted:?}");
    }
    // The README names every metric.
    let readme = read("README.md");
    for family in &exported_families {
        assert!(readme.contains(family.as_str()), "README.md does not name {family}");
    }
}

/// The check above finds what it is for: each of these wrong expressions is named.
#[test]
fn a_wrong_name_or_label_is_named() {
    let exported = Exported::parse(
        "# TYPE higress_route_worker_events counter\n\
         higress_route_worker_events_total{type=\"io.higress.model.deployed.v1\",outcome=\"applied\"} 1\n\
         # TYPE higress_route_worker_apply_duration_seconds histogram\n\
         higress_route_worker_apply_duration_seconds_bucket{le=\"0.001\"} 0\n\
         higress_route_worker_apply_duration_seconds_count 0\n\
         # TYPE higress_route_worker_consumer_lag gauge\n\
         higress_route_worker_consumer_lag{topic=\"model-lifecycle\",partition=\"0\"} 3\n\
         # EOF\n",
    );
    for (expr, named) in [
        ("rate(higress_route_worker_event_total[5m])", "higress_route_worker_event_total is not exported"),
        ("rate(higress_route_worker_events[5m])", "higress_route_worker_events is not exported"),
        ("higress_route_worker_consumer_lag_total", "higress_route_worker_consumer_lag_total is not exported"),
        ("sum by (reason) (rate(higress_route_worker_events_total[5m]))", "groups by \"reason\""),
        ("higress_route_worker_events_total{outcome=\"fail\"}", "no such series"),
        ("higress_route_worker_events_total{result=\"applied\"}", "has no label \"result\""),
        ("histogram_quantile(0.5, sum by (le) (rate(higress_route_worker_apply_duration_seconds_sum[5m])))", "groups by \"le\""),
        (
            "sum by (topic) (higress_route_worker_consumer_lag) > 0 and on (topic, partition) sum by (topic) (higress_route_worker_consumer_lag)",
            "matches on \"partition\"",
        ),
        ("sum(rate(higress_route_worker_events_total[5m]", "does not parse"),
    ] {
        let query = Query {
            at: "test".into(),
            expr: expr.into(),
        };
        let (problems, _) = check(&[query], &exported);
        assert!(
            problems.iter().any(|p| p.contains(named)),
            "{expr}: no problem naming {named:?} in {problems:?}"
        );
    }
    // And the right ones pass.
    for expr in [
        "sum by (outcome) (rate(higress_route_worker_events_total{type=\"io.higress.model.deployed.v1\"}[5m]))",
        "histogram_quantile(0.99, sum by (le) (rate(higress_route_worker_apply_duration_seconds_bucket[5m])))",
        "max by (topic, partition) (higress_route_worker_consumer_lag) > 0 and on (topic, partition) max by (topic, partition) (deriv(higress_route_worker_consumer_lag[10m])) > 0",
        "higress_route_worker_consumer_lag{instance=\"a:9090\"}",
    ] {
        let query = Query {
            at: "test".into(),
            expr: expr.into(),
        };
        let (problems, _) = check(&[query], &exported);
        assert!(problems.is_empty(), "{expr}: {problems:?}");
    }
}

#[test]
fn every_alert_has_a_severity_a_runbook_and_a_readme_entry() {
    let rule = prometheus_rule();
    assert_eq!(rule["apiVersion"], "monitoring.coreos.com/v1");
    assert_eq!(rule["kind"], "PrometheusRule");
    let readme = read("README.md");
    let operating = readme
        .split("\n## ")
        .find(|section| section.starts_with("Operating"))
        .expect("README.md has an \"Operating\" section");
    let alerts = alerts(&rule);
    assert!(!alerts.is_empty());
    let duration = regex::Regex::new(r"^\d+[smh]$").unwrap();
    for alert in alerts {
        let name = alert["alert"].as_str().unwrap();
        assert!(
            ["warning", "critical"].contains(&alert["labels"]["severity"].as_str().unwrap_or_default()),
            "{name}: severity"
        );
        let runbook = alert["annotations"]["runbook"].as_str().unwrap_or_default();
        assert!(
            runbook.contains(name),
            "{name}: its runbook annotation points to its README entry"
        );
        assert!(
            operating.contains(&format!("`{name}`")),
            "README.md, Operating, does not explain {name}"
        );
        if let Some(wait) = alert.get("for") {
            let wait = wait.as_str().unwrap();
            assert!(duration.is_match(wait), "{name}: for {wait}");
        }
    }
}

/// `kubectl kustomize deploy/observability` renders the rule and the dashboard's ConfigMap for Grafana's
/// sidecar, byte for byte; the default base `deploy/` stays free of them (it needs no Prometheus Operator).
#[test]
fn the_kustomization_renders_the_rule_and_the_dashboard_and_deploy_leaves_them_out() {
    let objects = kustomize::render("deploy/observability");
    let kinds: BTreeSet<&str> = objects.iter().map(|o| o["kind"].as_str().unwrap()).collect();
    assert_eq!(kinds, BTreeSet::from(["ConfigMap", "PrometheusRule"]));
    for object in &objects {
        assert_eq!(object["metadata"]["namespace"], "higress-route-worker", "{object}");
    }
    let config_map = objects.iter().find(|o| o["kind"] == "ConfigMap").unwrap();
    assert_eq!(config_map["metadata"]["labels"]["grafana_dashboard"], "1");
    assert_eq!(
        config_map["data"]["dashboard.json"].as_str(),
        Some(read("deploy/observability/dashboard.json").as_str())
    );
    let rule = objects.iter().find(|o| o["kind"] == "PrometheusRule").unwrap();
    assert_eq!(rule["spec"], prometheus_rule()["spec"]);

    let base = kustomize::render("deploy");
    assert!(
        base.iter()
            .all(|o| o["kind"] != "PrometheusRule" && o["metadata"]["name"] != config_map["metadata"]["name"]),
        "deploy/ renders deploy/observability's objects"
    );
}
