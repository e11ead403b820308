//! Hostile input through the real broker (Tansu) and the in-memory API server: over a thousand records
//! an attacker or a broken pipeline could send, in a dozen families. Each must end as a bounded dead
//! letter or a `rejected` result with its reason, the worker must stay up throughout, nothing may be
//! written to the cluster, and a valid event right after them must be applied.

#[path = "support/broker.rs"]
mod broker;
#[path = "support/worker.rs"]
mod worker;

use broker::Record;
use serde_json::{json, Value};
use std::collections::BTreeMap;
use std::time::Duration;
use worker::{header, Fixture, DLQ, NS};

/// librdkafka's default `message.max.bytes`, which both the test producer and the worker use.
const MESSAGE_MAX_BYTES: usize = 1_000_000;
/// The worker's bounds on what it writes (src/result.rs, src/worker/mod.rs).
const MAX_MESSAGE_BYTES: usize = 4096;
const MAX_HEADERS: usize = 32 + 8;
/// No log line may be longer: a message (4 KiB) plus its fields and span.
const MAX_LOG_LINE_BYTES: usize = 16 * 1024;

#[derive(Clone, Debug)]
enum Expect {
    /// Dead-lettered with this `hrw_dlq_reason`.
    DeadLetter(&'static str),
    /// A `rejected` result with this error reason, nothing dead-lettered.
    Rejected(&'static str),
}

struct Case {
    family: &'static str,
    key: String,
    payload: Vec<u8>,
    headers: Vec<(String, Vec<u8>)>,
    expect: Expect,
    /// Needs the contract limits of issue #12 (paths, bidi, depth) or the Secret allow list.
    needs_contract: bool,
}

fn event(id: &str, kind: &str, data: Value) -> Vec<u8> {
    json!({"specversion": "1.0", "id": id, "source": "hostile", "type": kind, "data": data})
        .to_string()
        .into_bytes()
}

const DEPLOYED: &str = "io.higress.model.deployed.v1";

fn deploy_data(model: &str) -> Value {
    json!({"model": model, "revision": 1,
           "provider": {"name": format!("p-{model}"), "type": "openai", "url": "https://llm.example.com/v1", "apiTokens": ["sk-x"]},
           "route": {"path": format!("/{model}")}})
}

/// A small deterministic generator, so that a failure can be replayed.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self
            .0
            .wrapping_mul(6364136223846793005)
            .wrapping_add(1442695040888963407);
        self.0 >> 33
    }

    fn bytes(&mut self, len: usize) -> Vec<u8> {
        (0..len).map(|_| self.next() as u8).collect()
    }
}

fn cases() -> Vec<Case> {
    let mut rng = Lcg(12);
    let mut cases = Vec::new();
    let mut add = |family: &'static str,
                   i: usize,
                   payload: Vec<u8>,
                   headers: Vec<(String, Vec<u8>)>,
                   expect: Expect,
                   needs_contract: bool| {
        cases.push(Case {
            family,
            key: format!("{family}-{i}"),
            payload,
            headers,
            expect,
            needs_contract,
        })
    };
    for i in 0..150 {
        // 0xff never starts a JSON text.
        let mut payload = vec![0xff];
        let len = 1 + rng.next() as usize % 2000;
        payload.extend(rng.bytes(len));
        add("not-json", i, payload, vec![], Expect::DeadLetter("not-json"), false);
    }
    for i in 0..100 {
        let payload = match i % 5 {
            0 => json!([1, 2, i]),
            1 => json!(i),
            2 => json!(format!("a string {i}")),
            3 => json!({"hello": i}),
            _ => json!({"specversion": "1.0", "id": i, "source": "s", "type": DEPLOYED}),
        };
        add(
            "not-cloudevent",
            i,
            payload.to_string().into_bytes(),
            vec![],
            Expect::DeadLetter("not-cloudevent"),
            false,
        );
    }
    for i in 0..100 {
        let kind = if i % 2 == 0 {
            format!("io.evil.type.{i}")
        } else {
            format!("{}{i}", "t".repeat(10_000))
        };
        add(
            "unknown-type",
            i,
            event(&format!("u{i}"), &kind, json!({"model": format!("u{i}")})),
            vec![],
            Expect::DeadLetter("unknown-type"),
            false,
        );
    }
    for i in 0..100 {
        let revision = [
            json!(-1),
            json!(1.5),
            json!("1"),
            Value::Null,
            json!(1e30),
            json!(true),
            json!(18446744073709551616_f64),
        ][i % 7]
            .clone();
        let mut data = deploy_data(&format!("rev{i}"));
        data["revision"] = revision;
        add(
            "bad-revision",
            i,
            event(&format!("r{i}"), DEPLOYED, data),
            vec![],
            Expect::DeadLetter("schema-violation"),
            false,
        );
    }
    for i in 0..100 {
        let name = match i % 8 {
            0 => format!("Bad_Name{i}"),
            1 => "a".repeat(64 + i),
            2 => format!("../../etc/passwd{i}"),
            3 => format!("x\ny{i}"),
            4 => format!("ünïcode{i}"),
            5 => format!("-lead{i}"),
            6 => String::new(),
            _ => format!("sp {i}"),
        };
        add(
            "hostile-names",
            i,
            event(&format!("n{i}"), DEPLOYED, deploy_data(&name)),
            vec![],
            Expect::DeadLetter("schema-violation"),
            false,
        );
    }
    for i in 0..100 {
        let mut data = deploy_data(&format!("nl{i}"));
        data["route"]["path"] = json!(format!("/x\n---\nkind: Secret\nmetadata: {{name: s{i}}}"));
        add(
            "newline-paths",
            i,
            event(&format!("nl{i}"), DEPLOYED, data),
            vec![],
            Expect::DeadLetter("schema-violation"),
            true,
        );
    }
    for i in 0..20 {
        // The crash-loop poison of issue #12: 20,000 problems, one per number.
        let mut data = deploy_data(&format!("tokens{i}"));
        data["provider"]["apiTokens"] = json!(vec![7; 20_000]);
        add(
            "huge-api-tokens",
            i,
            event(&format!("t{i}"), DEPLOYED, data),
            vec![],
            Expect::DeadLetter("schema-violation"),
            false,
        );
    }
    for i in 0..30 {
        let mut deep = json!([]);
        for _ in 0..120 {
            deep = json!([deep]);
        }
        let mut data = deploy_data(&format!("deep{i}"));
        data["provider"]["config"] = json!({ "nested": deep });
        add(
            "deep-nesting",
            i,
            event(&format!("d{i}"), DEPLOYED, data),
            vec![],
            Expect::DeadLetter("schema-violation"),
            true,
        );
    }
    for i in 0..100 {
        let mut data = deploy_data(&format!("bidi{i}"));
        match i % 2 {
            0 => data["route"]["path"] = json!(format!("/v1/\u{202e}{i}cod.exe")),
            _ => data["route"]["domains"] = json!([format!("pay\u{2067}{i}.example.com")]),
        }
        add(
            "bidi",
            i,
            event(&format!("b{i}"), DEPLOYED, data),
            vec![],
            Expect::DeadLetter("schema-violation"),
            true,
        );
    }
    for i in 0..100 {
        let data = deploy_data(&format!("hdr{i}")).to_string().into_bytes();
        let mut headers: Vec<(String, Vec<u8>)> = vec![
            ("ce_specversion".into(), b"1.0".to_vec()),
            ("ce_id".into(), format!("h{i}").into_bytes()),
            ("ce_source".into(), b"hostile".to_vec()),
            ("ce_type".into(), DEPLOYED.as_bytes().to_vec()),
            // Not ours to judge, but only its first KiB may be copied into the dead letter.
            ("x-junk".into(), vec![b'j'; 50_000]),
        ];
        if i % 2 == 0 {
            headers.push(("ce_subject".into(), vec![b's'; 5_000 + i * 100]));
        } else {
            headers.extend((0..40).map(|n| (format!("ce_ext{n}"), b"v".to_vec())));
        }
        add(
            "oversize-headers",
            i,
            data,
            headers,
            Expect::DeadLetter("oversize"),
            false,
        );
    }
    for i in 0..8 {
        // As large as the test producer may send: the dead letter, with its headers, cannot keep it all.
        // About 999,400 bytes: the producer's framing fits in the rest, the dead letter's headers do not.
        let pad = "x".repeat(MESSAGE_MAX_BYTES - 700);
        let payload = event(
            &format!("big{i}"),
            DEPLOYED,
            json!({"model": format!("big{i}"), "pad": pad}),
        );
        add(
            "huge-payload",
            i,
            payload,
            vec![],
            Expect::DeadLetter("oversize"),
            false,
        );
    }
    for i in 0..60 {
        // Regular expressions the gateway would refuse with its whole route table, or that are too
        // costly to compile: too long, invalid, or a compiled size that explodes from a short text.
        let pattern = match i % 4 {
            0 => "(a|b)*c".repeat(200 + i),
            1 => format!("([{i}"),
            2 => format!("((x{{100}}){{100}}){{100}}{i}"),
            _ => format!("^{}$", "(?:(?:a+)+)+".repeat(100)),
        };
        let mut data = deploy_data(&format!("regex{i}"));
        let predicate = json!([{"key": "x-team", "matchType": "REGULAR", "matchValue": pattern}]);
        let list = if i % 2 == 0 {
            "headerPredicates"
        } else {
            "urlParamPredicates"
        };
        data["route"][list] = predicate;
        add(
            "hostile-regex",
            i,
            event(&format!("x{i}"), DEPLOYED, data),
            vec![],
            Expect::DeadLetter("schema-violation"),
            true,
        );
    }
    for i in 0..100 {
        // Issue #12 (3): the console's admin password, sent to a host the event chose.
        let mut data = deploy_data(&format!("steal{i}"));
        data["provider"] = json!({"name": format!("steal{i}"), "type": "openai", "url": "https://attacker.example.com/v1",
                                  "apiTokensSecretRef": {"name": "higress-console", "key": "adminPassword"}});
        add(
            "foreign-secret",
            i,
            event(&format!("s{i}"), DEPLOYED, data),
            vec![],
            Expect::Rejected("secret-not-allowed"),
            true,
        );
    }
    cases
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_thousand_hostile_records_are_each_refused_and_the_worker_lives_on() {
    let fixture = Fixture::start().await;
    // A Secret the gateway must never hand out: present, but not marked readable by the operator.
    fixture
        .sim
        .insert(json!({"apiVersion": "v1", "kind": "Secret",
                       "metadata": {"name": "higress-console", "namespace": NS},
                       "data": {"adminPassword": "YWRtaW4tcGFzc3dvcmQtOTk="}}))
        .unwrap();
    // Short deadlines: a hostile record that reached the cluster and failed must not hold the stream
    // for the default two minutes.
    let mut worker = fixture.worker(
        "w",
        "info",
        &["--event-deadline-secs", "3", "--retry-deadline-secs", "1"],
    );
    let deadline = tokio::time::Instant::now() + Duration::from_secs(60);
    while worker.http_get("/readyz").await.0 != 200 {
        worker.assert_alive();
        assert!(
            tokio::time::Instant::now() < deadline,
            "not ready; log:\n{}",
            worker.log()
        );
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    fixture.sim.clear_audit();

    let cases = cases();
    assert!(cases.len() >= 1000);
    let families: BTreeMap<&str, usize> = cases.iter().fold(BTreeMap::new(), |mut counts, case| {
        *counts.entry(case.family).or_default() += 1;
        counts
    });
    assert!(families.len() >= 10, "{families:?}");
    // Interleaved, so that every batch mixes families.
    let mut order: Vec<&Case> = cases.iter().collect();
    order.sort_by_key(|case| {
        (
            case.key.rsplit('-').next().unwrap().parse::<usize>().unwrap(),
            case.family,
        )
    });
    let producer = &fixture;
    for chunk in order.chunks(32) {
        futures::future::join_all(chunk.iter().map(|case| {
            let headers: Vec<(&str, &[u8])> = case.headers.iter().map(|(k, v)| (k.as_str(), v.as_slice())).collect();
            async move { producer.produce(&case.key, &case.payload, &headers).await }
        }))
        .await;
        worker.assert_alive();
    }

    let expected_letters: Vec<&str> = cases
        .iter()
        .filter(|c| matches!(c.expect, Expect::DeadLetter(_)))
        .map(|c| c.key.as_str())
        .collect();
    let dead = wait_for_dead_letters(&fixture, &expected_letters).await;
    let rejected: Vec<String> = cases
        .iter()
        .filter(|c| matches!(c.expect, Expect::Rejected(_)))
        .map(|c| c.key.clone())
        .collect();
    let results = wait_for_results(&fixture, &rejected.iter().map(|k| event_id_of(k)).collect::<Vec<_>>()).await;
    worker.assert_alive();

    let mut failures: BTreeMap<&str, Vec<String>> = BTreeMap::new();
    let letters: BTreeMap<&str, &Record> = dead.iter().filter_map(|r| Some((r.key.as_deref()?, r))).collect();
    let result_of: BTreeMap<&str, &Value> = results
        .iter()
        .filter_map(|r| Some((r["inputEventId"].as_str()?, r)))
        .collect();
    for case in &cases {
        let problem = check_case(
            case,
            letters.get(case.key.as_str()).copied(),
            result_of.get(event_id_of(&case.key).as_str()).copied(),
        );
        if let Some(problem) = problem {
            failures
                .entry(case.family)
                .or_default()
                .push(format!("{}: {problem}", case.key));
        }
    }
    for letter in &dead {
        if let Some(problem) = unbounded(letter) {
            failures.entry("bounds").or_default().push(problem);
        }
    }

    // Nothing hostile wrote anything.
    let writes = fixture.sim.audit();
    if !writes.is_empty() {
        let written: Vec<String> = writes
            .iter()
            .map(|w| format!("{} {}/{}", w.verb, w.resource, w.name))
            .collect();
        failures.entry("cluster-writes").or_default().extend(written);
    }

    // The worker lives on: a valid event right after them is applied.
    let valid = event("after-1", DEPLOYED, deploy_data("after"));
    fixture.produce("after", &valid, &[]).await;
    let after = wait_for_results(&fixture, &["after-1".to_string()]).await;
    let outcome = after
        .iter()
        .find(|r| r["inputEventId"] == "after-1")
        .map(|r| r["outcome"].clone());
    if outcome != Some(json!("applied")) || fixture.sim.get("ingresses", NS, "ai-route-after.internal").is_none() {
        failures
            .entry("valid-after")
            .or_default()
            .push(format!("outcome {outcome:?}"));
    }
    worker.assert_alive();

    // Metric labels from a closed set: no input type became a series.
    let (_, metrics) = worker.http_get("/metrics").await;
    for line in metrics
        .lines()
        .filter(|l| l.starts_with("higress_route_worker_events_total{"))
    {
        let label = line
            .split("type=\"")
            .nth(1)
            .and_then(|rest| rest.split('"').next())
            .unwrap_or_default();
        if !["io.higress.model.deployed.v1", "io.higress.model.retired.v1", "unknown"].contains(&label) {
            failures
                .entry("metric-labels")
                .or_default()
                .push(line.chars().take(200).collect());
        }
    }
    assert!(
        metrics.contains(r#"higress_route_worker_events_total{type="unknown",outcome="rejected"}"#),
        "{metrics}"
    );

    let log = worker.log();
    assert!(!log.contains("worker stopped"), "{log}");
    if let Some(long) = log.lines().find(|l| l.len() > MAX_LOG_LINE_BYTES) {
        failures
            .entry("log-lines")
            .or_default()
            .push(format!("a line of {} bytes: {}…", long.len(), &long[..200]));
    }

    let needs_contract: BTreeMap<&str, bool> = cases.iter().map(|c| (c.family, c.needs_contract)).collect();
    if !failures.is_empty() {
        let report: Vec<String> = failures
            .iter()
            .map(|(family, problems)| {
                let marker = if needs_contract.get(family) == Some(&true) {
                    " (needs the contract limits / Secret allow list)"
                } else {
                    ""
                };
                format!(
                    "{family}{marker}: {} failed, e.g.\n    {}",
                    problems.len(),
                    problems.iter().take(3).cloned().collect::<Vec<_>>().join("\n    ")
                )
            })
            .collect();
        panic!("families {families:?}\n{}", report.join("\n"));
    }
    assert!(worker.terminate().success());
}

/// The CloudEvents id the generator gave the record with this key.
fn event_id_of(key: &str) -> String {
    let (family, index) = key.rsplit_once('-').unwrap();
    match family {
        "foreign-secret" => format!("s{index}"),
        _ => key.to_string(),
    }
}

/// What is wrong with how `case` ended, if anything.
fn check_case(case: &Case, letter: Option<&Record>, result: Option<&Value>) -> Option<String> {
    match &case.expect {
        Expect::DeadLetter(reason) => {
            let Some(letter) = letter else {
                return Some(format!(
                    "not dead-lettered (result: {})",
                    result.map_or("none".into(), |r| r["outcome"].to_string())
                ));
            };
            let found = header(letter, "hrw_dlq_reason").unwrap_or_default();
            if found != *reason {
                return Some(format!(
                    "reason {found}, expected {reason}: {}",
                    header(letter, "hrw_dlq_message").unwrap_or_default()
                ));
            }
            let truncated = header(letter, "hrw_truncated").as_deref() == Some("true");
            if case.family == "huge-payload" {
                // Cut to what fits, and says so.
                let original = header(letter, "hrw_original_size").unwrap_or_default();
                if !truncated
                    || original != case.payload.len().to_string()
                    || !case.payload.starts_with(&letter.payload)
                {
                    return Some(format!(
                        "not cut as announced: truncated {truncated}, original size {original:?}, {} bytes",
                        letter.payload.len()
                    ));
                }
            } else if truncated || letter.payload != case.payload {
                return Some("the original bytes were not kept".into());
            }
            if case.family == "huge-api-tokens" {
                let message = header(letter, "hrw_dlq_message").unwrap_or_default();
                if !message.ends_with(" more") {
                    return Some(format!("problems not capped: {message}"));
                }
            }
            if case.family == "oversize-headers" && header(letter, "x-junk").map(|v| v.len()) != Some(1024) {
                return Some("the junk header was not cut to 1 KiB".into());
            }
            None
        }
        Expect::Rejected(reason) => {
            if letter.is_some() {
                return Some("dead-lettered".into());
            }
            let Some(result) = result else {
                return Some("no result".into());
            };
            let found = (&result["outcome"], &result["error"]["reason"]);
            (found != (&json!("rejected"), &json!(reason))).then(|| format!("{found:?}, expected rejected/{reason}"))
        }
    }
}

/// A dead letter larger than the bounds, described.
fn unbounded(letter: &Record) -> Option<String> {
    let key = letter.key.clone().unwrap_or_default();
    let size = letter.payload.len() + key.len() + letter.headers.iter().map(|(k, v)| k.len() + v.len()).sum::<usize>();
    if size > MESSAGE_MAX_BYTES {
        return Some(format!("{key}: {size} bytes"));
    }
    if letter.headers.len() > MAX_HEADERS {
        return Some(format!("{key}: {} headers", letter.headers.len()));
    }
    let long = letter
        .headers
        .iter()
        .find(|(k, v)| k.starts_with("hrw_") && v.len() > MAX_MESSAGE_BYTES);
    long.map(|(k, v)| format!("{key}: header {k} of {} bytes", v.len()))
}

/// All results so far, once every one of `ids` has one (or two minutes passed).
async fn wait_for_results(fixture: &Fixture, ids: &[String]) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(120);
    loop {
        let results = fixture.results(100_000, Duration::from_secs(2)).await;
        let seen = |id: &String| results.iter().any(|r| r["inputEventId"] == id.as_str());
        if ids.iter().all(seen) || tokio::time::Instant::now() > deadline {
            return results;
        }
    }
}

/// A record the broker refuses for good (here: larger than the producer's `message.max.bytes`, set to
/// librdkafka's minimum) does not stop the worker: it is logged, counted, and the input is
/// dead-lettered in a form cut to fit.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn records_the_broker_refuses_are_counted_and_dead_lettered_small() {
    let fixture = Fixture::start().await;
    let mut worker = fixture.worker("w", "info", &["--kafka-producer-config", "message.max.bytes=1000"]);
    let mut poison = deploy_data("poison");
    poison["provider"]["apiTokens"] = json!(vec![7; 20_000]);
    // Long property names make the ten listed problems long: the bounded dead letter's message
    // (about 3 KiB) does not fit in 1000 bytes, its minimal form does.
    for i in 0..20 {
        poison[format!("{}{i}", "a".repeat(500))] = json!(1);
    }
    let poison = event("poison-1", DEPLOYED, poison);
    let after = event("after-1", DEPLOYED, deploy_data("after"));
    fixture.produce("poison", &poison, &[]).await;
    fixture.produce("after", &after, &[]).await;

    // The poison's dead letter, and one per result too large to publish: the poison's and after's.
    let dead = fixture.read(DLQ, 3, Duration::from_secs(60)).await;
    worker.assert_alive();
    let mut reasons: Vec<(String, String)> = dead
        .iter()
        .map(|r| {
            (
                r.key.clone().unwrap_or_default(),
                header(r, "hrw_dlq_reason").unwrap_or_default(),
            )
        })
        .collect();
    // Deliveries of one batch run concurrently: their order is not fixed.
    reasons.sort();
    assert_eq!(
        reasons,
        [
            ("after".to_string(), "result-undeliverable".to_string()),
            ("poison".to_string(), "result-undeliverable".to_string()),
            ("poison".to_string(), "schema-violation".to_string()),
        ],
        "log:\n{}",
        worker.log()
    );
    for letter in &dead {
        // Nothing of the payload fits beside the headers in 1000 bytes.
        assert_eq!(header(letter, "hrw_truncated").as_deref(), Some("true"));
        assert!(letter.payload.is_empty());
        let original = if letter.key.as_deref() == Some("poison") {
            &poison
        } else {
            &after
        };
        assert_eq!(header(letter, "hrw_original_size"), Some(original.len().to_string()));
    }
    // The valid event was applied all the same; only its result could not be told.
    assert!(fixture.sim.get("ingresses", NS, "ai-route-after.internal").is_some());
    let (_, metrics) = worker.http_get("/metrics").await;
    // Two results refused, and the poison's bounded dead letter (its 4 KiB message) before its minimal form.
    for expected in [
        r#"higress_route_worker_undeliverable_total{output="results",error="message-too-large"} 2"#,
        r#"higress_route_worker_undeliverable_total{output="dead-letters",error="message-too-large"} 1"#,
        "higress_route_worker_dead_letters_truncated_total 3",
    ] {
        assert!(metrics.contains(expected), "{expected}\n{metrics}");
    }
    let log = worker.log();
    assert!(
        log.contains("result refused by the broker") && log.contains("dead-letter refused by the broker"),
        "{log}"
    );
    assert!(worker.terminate().success());
}

/// All dead letters so far, once each of `keys` has one (or four minutes passed).
async fn wait_for_dead_letters(fixture: &Fixture, keys: &[&str]) -> Vec<Record> {
    let deadline = tokio::time::Instant::now() + Duration::from_secs(240);
    loop {
        let dead = fixture.read(DLQ, keys.len(), Duration::from_secs(5)).await;
        let seen = |key: &&str| dead.iter().any(|r| r.key.as_deref() == Some(*key));
        if keys.iter().all(seen) || tokio::time::Instant::now() > deadline {
            return dead;
        }
    }
}

/// A header name need not be UTF-8 on the wire: librdkafka and other clients send any bytes, and the
/// broker stores them. The Rust client cannot produce one, so the test renames a header in the broker's
/// own storage before the worker starts: the record must be applied (the header is no CloudEvents
/// attribute), and the worker must not stop at it (unguarded, it stopped at every start).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_header_name_that_is_not_utf8_neither_stops_the_worker_nor_loses_its_event() {
    let fixture = Fixture::start().await;
    let binary = deploy_data("binary");
    let binary_data = binary.to_string();
    fixture
        .produce(
            "binary",
            binary_data.as_bytes(),
            &[
                ("ce_specversion", b"1.0"),
                ("ce_id", b"binary-1"),
                ("ce_source", b"hostile"),
                ("ce_type", DEPLOYED.as_bytes()),
                ("x-renamed", b"v"),
            ],
        )
        .await;
    fixture
        .produce(
            "structured",
            &event("structured-1", DEPLOYED, deploy_data("structured")),
            &[("x-renamed", b"v")],
        )
        .await;
    // `x-renamed` becomes 0xff 'x': not UTF-8.
    fixture
        .broker
        .sql("update header set k = X'ff78' where k = CAST('x-renamed' AS BLOB) or k = 'x-renamed';");
    let renamed = fixture.broker.sql("select count(*) from header where k = X'ff78';");
    assert_eq!(renamed.trim(), "2", "both headers renamed in the broker's storage");

    let mut worker = fixture.worker("w", "info", &[]);
    let results = wait_for_results(&fixture, &["binary-1".to_string(), "structured-1".to_string()]).await;
    worker.assert_alive();
    for result in &results {
        assert_eq!(result["outcome"], "applied", "{result}\nlog:\n{}", worker.log());
    }
    for model in ["binary", "structured"] {
        assert!(fixture
            .sim
            .get("ingresses", NS, &format!("ai-route-{model}.internal"))
            .is_some());
    }
    assert!(
        worker.log().contains("headers whose name is not UTF-8 left out"),
        "{}",
        worker.log()
    );
    assert!(worker.terminate().success());
}
