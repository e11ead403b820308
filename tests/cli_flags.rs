//! Flags refused at parse time, before anything connects anywhere.

use std::process::Command;

fn run_with(args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_higress-route-worker"))
        .arg("run")
        .args(args)
        // Nothing listens there: a flag that got past parsing would fail later, differently.
        .args(["--brokers", "127.0.0.1:1", "--kubeconfig", "/nonexistent"])
        .output()
        .unwrap()
}

#[test]
fn tombstone_days_must_be_at_least_one() {
    // 0 or less would let a late or replayed deploy bring a retired model back at once.
    for days in ["0", "-1", "-30"] {
        let output = run_with(&[&format!("--tombstone-days={days}")]);
        let stderr = String::from_utf8_lossy(&output.stderr);
        // clap's usage error: exit 2, naming the flag and the accepted range.
        assert_eq!(output.status.code(), Some(2), "{days}: {stderr}");
        assert!(
            stderr.contains(&format!(
                "invalid value '{days}' for '--tombstone-days <TOMBSTONE_DAYS>'"
            )),
            "{stderr}"
        );
        assert!(stderr.contains(&format!("{days} is not in 1..=36500")), "{stderr}");
    }
}

#[test]
fn tombstone_days_from_the_environment_is_checked_too() {
    let output = Command::new(env!("CARGO_BIN_EXE_higress-route-worker"))
        .args(["render", "--event", "/nonexistent.json"])
        .env("HRW_TOMBSTONE_DAYS", "0")
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("0 is not in 1..=36500"), "{stderr}");
}

#[test]
fn more_tombstone_days_than_a_duration_holds_are_refused() {
    // chrono panics on a TimeDelta of i64::MAX days; the flag must stop it first.
    let output = run_with(&["--tombstone-days", "9223372036854775807"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(2), "{stderr}");
    assert!(stderr.contains("is not in 1..=36500"), "{stderr}");
}

#[test]
fn a_valid_tombstone_days_gets_past_parsing() {
    // Parsing passes; the run then fails on the missing kubeconfig (exit 1, not clap's 2).
    let output = run_with(&["--tombstone-days", "30"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(!stderr.contains("--tombstone-days"), "{stderr}");
}

#[test]
fn an_event_deadline_the_consumer_group_would_not_wait_for_is_refused_at_start() {
    // A batch is never in flight while the consumer polls: if one could outlast max.poll.interval.ms
    // (librdkafka's default: 300 s), the group would give its partitions to another replica while it
    // still writes. 400 s of event deadline cannot fit; the default 120 s does.
    let dir = tempfile::tempdir().unwrap();
    let kubeconfig = dir.path().join("kubeconfig");
    std::fs::write(
        &kubeconfig,
        "apiVersion: v1\nkind: Config\nclusters: [{name: c, cluster: {server: 'http://127.0.0.1:1'}}]\n\
         users: [{name: u, user: {}}]\ncontexts: [{name: x, context: {cluster: c, user: u}}]\ncurrent-context: x\n",
    )
    .unwrap();
    let output = Command::new(env!("CARGO_BIN_EXE_higress-route-worker"))
        .args(["run", "--brokers", "127.0.0.1:1", "--metrics-addr", "127.0.0.1:0"])
        .args([
            "--kubeconfig",
            kubeconfig.to_str().unwrap(),
            "--event-deadline-secs",
            "400",
        ])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("max.poll.interval.ms (300000 ms)"), "{stderr}");
    // The results' delivery counts too: librdkafka's own default (300 s) would not fit beside the
    // default deadline; the worker's (60 s) does.
    let output = Command::new(env!("CARGO_BIN_EXE_higress-route-worker"))
        .args(["run", "--brokers", "127.0.0.1:1", "--metrics-addr", "127.0.0.1:0"])
        .args(["--kubeconfig", kubeconfig.to_str().unwrap()])
        .args(["--kafka-producer-config", "message.timeout.ms=300000"])
        .output()
        .unwrap();
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(stderr.contains("message.timeout.ms, 300000 ms"), "{stderr}");
    assert!(stderr.contains("max.poll.interval.ms (300000 ms)"), "{stderr}");
}

#[test]
fn a_kafka_setting_cut_at_a_comma_is_refused_without_showing_it() {
    // A password with a comma, given where commas separate settings: its tail is no key=value.
    let output = run_with(&["--kafka-config", "sasl.password=first-part,second-part-of-the-secret"]);
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert_eq!(output.status.code(), Some(1), "{stderr}");
    assert!(
        stderr.contains("--kafka-config: setting 2 is not key=value"),
        "{stderr}"
    );
    assert!(stderr.contains("--kafka-config-file"), "{stderr}");
    assert!(!stderr.contains("second-part-of-the-secret"), "{stderr}");
}
