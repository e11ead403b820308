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
