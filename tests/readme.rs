//! The README's flags table of `run` against what the binary says of itself (`run --help`): every row's
//! environment variable and default as clap has them, and every flag of `run` in the table.

use std::collections::BTreeMap;
use std::path::PathBuf;
use std::process::Command;

/// One flag as `run --help` describes it.
#[derive(Debug)]
struct Flag {
    /// Whether the flag takes a value (`--brokers <BROKERS>`); a switch does not.
    takes_value: bool,
    env: Option<String>,
    default: Option<String>,
    /// Its help text, `[env: …]` and `[default: …]` included.
    text: String,
}

/// One row of the README's table, with its line number.
struct Row {
    line: usize,
    text: String,
    flags: Vec<String>,
    envs: Vec<String>,
    default: String,
}

fn help() -> String {
    let mut command = Command::new(env!("CARGO_BIN_EXE_higress-route-worker"));
    command.args(["run", "--help"]);
    // clap shows an environment variable's value in the help when it is set.
    for (name, _) in std::env::vars_os() {
        if name.to_string_lossy().starts_with("HRW_") {
            command.env_remove(name);
        }
    }
    let output = command.output().expect("the binary runs");
    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
    String::from_utf8(output.stdout).expect("UTF-8 help")
}

/// The text inside `[name: …]` (a `=value` after an environment variable's name left out).
fn bracketed(text: &str, name: &str) -> Option<String> {
    let start = text.find(&format!("[{name}: "))? + name.len() + 3;
    let end = start + text[start..].find(']')?;
    let inside = &text[start..end];
    Some(match name {
        "env" => inside.split('=').next().unwrap_or_default().to_string(),
        _ => inside.to_string(),
    })
}

/// The flags of `run --help`, by long name (`--help` left out).
fn flags_of_help(help: &str) -> BTreeMap<String, Flag> {
    // (long name, the option's own words, its whole text)
    let mut blocks: Vec<(String, String, String)> = Vec::new();
    for line in help.lines() {
        let trimmed = line.trim_start();
        let indent = line.len() - trimmed.len();
        // Options are indented 2 (`-h, --help`) or 6 (`--brokers`); their help text further.
        if trimmed.starts_with('-') && (1..=6).contains(&indent) {
            let usage = trimmed.split("  ").next().unwrap_or_default().to_string();
            let long = usage
                .split_whitespace()
                .map(|word| word.trim_end_matches(','))
                .find(|word| word.starts_with("--"))
                .unwrap_or_else(|| panic!("an option without a long name in --help: {line}"))
                .to_string();
            blocks.push((long, usage, trimmed.to_string()));
        } else if let Some((_, _, text)) = blocks.last_mut() {
            text.push(' ');
            text.push_str(trimmed);
        }
    }
    blocks
        .into_iter()
        .filter(|(long, _, _)| long != "--help")
        .map(|(long, usage, text)| {
            let flag = Flag {
                takes_value: usage.contains('<'),
                env: bracketed(&text, "env"),
                default: bracketed(&text, "default"),
                text,
            };
            (long, flag)
        })
        .collect()
}

/// The cells of a Markdown table row; a `|` inside backticks is no separator.
fn cells(line: &str) -> Vec<String> {
    let mut cells = Vec::new();
    let mut cell = String::new();
    let mut in_code = false;
    for c in line.trim().trim_start_matches('|').trim_end_matches('|').chars() {
        match c {
            '`' => {
                in_code = !in_code;
                cell.push(c);
            }
            '|' if !in_code => cells.push(std::mem::take(&mut cell).trim().to_string()),
            _ => cell.push(c),
        }
    }
    cells.push(cell.trim().to_string());
    cells
}

/// The backticked parts of a cell.
fn code_spans(cell: &str) -> Vec<String> {
    cell.split('`').skip(1).step_by(2).map(str::to_string).collect()
}

/// The rows of the table that follows the `| flag | env | default | |` header.
fn readme_rows() -> Vec<Row> {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("README.md");
    let readme = std::fs::read_to_string(&path).expect("README.md");
    let lines: Vec<&str> = readme.lines().collect();
    let header = lines
        .iter()
        .position(|line| cells(line)[..] == ["flag", "env", "default", ""])
        .expect("README.md has the flags table of `run` (| flag | env | default | |)");
    lines[header + 2..]
        .iter()
        .enumerate()
        .take_while(|(_, line)| line.starts_with('|'))
        .map(|(i, line)| {
            let cells = cells(line);
            assert_eq!(cells.len(), 4, "README.md:{}: four cells: {line}", header + 3 + i);
            Row {
                line: header + 3 + i,
                text: line.to_string(),
                // `--kafka-config key=value`: the flag is the first word.
                flags: code_spans(&cells[0])
                    .iter()
                    .map(|span| span.split_whitespace().next().unwrap_or_default().to_string())
                    .collect(),
                envs: code_spans(&cells[1]),
                default: cells[2].clone(),
            }
        })
        .collect()
}

/// What a row says of each of its flags, checked against `run --help`; the problems found.
fn check_row(row: &Row, help: &BTreeMap<String, Flag>) -> Vec<String> {
    let mut problems = Vec::new();
    let mut problem = |what: String| problems.push(format!("README.md:{}: {what}\n    {}", row.line, row.text));
    if row.flags.is_empty() || row.flags.len() != row.envs.len() {
        problem(format!(
            "{} flag(s) and {} environment variable(s)",
            row.flags.len(),
            row.envs.len()
        ));
        return problems;
    }
    let spans = code_spans(&row.default);
    let plain = row.default.replace('`', "");
    for (i, (name, env)) in row.flags.iter().zip(&row.envs).enumerate() {
        let Some(flag) = help.get(name) else {
            problem(format!("{name} is not a flag of `run` (`run --help`)"));
            continue;
        };
        if flag.env.as_deref() != Some(env.as_str()) {
            problem(format!("{name}: env {env}, but `run --help` says {:?}", flag.env));
        }
        if row.text.contains("(repeatable)") && !flag.text.contains("repeatable") {
            problem(format!("{name}: repeatable, but `run --help` does not say so"));
        }
        if row.default.is_empty() {
            // No default: clap must show none.
            if let Some(default) = &flag.default {
                problem(format!(
                    "{name}: no default, but `run --help` says [default: {default}]"
                ));
            }
        } else if row.default == "off" {
            // A switch: off unless given.
            if flag.takes_value || flag.default.is_some() {
                problem(format!(
                    "{name}: a switch (off), but `run --help` shows a value or a default: {}",
                    flag.text
                ));
            }
        } else if !spans.is_empty() && plain == spans.join(", ") && spans.len() == row.flags.len() {
            // One literal default per flag, in the order of the flags.
            if flag.default.as_deref() != Some(spans[i].as_str()) {
                problem(format!(
                    "{name}: default {}, but `run --help` says {:?}",
                    spans[i], flag.default
                ));
            }
        } else {
            // A default found at run time (`--kubeconfig`): clap has none, the help text names each part.
            if let Some(default) = &flag.default {
                problem(format!(
                    "{name}: default decided at run time, but `run --help` says [default: {default}]"
                ));
            }
            for part in plain.split(',').map(str::trim) {
                if !flag.text.contains(part) {
                    problem(format!("{name}: default {part:?}, not in `run --help`: {}", flag.text));
                }
            }
        }
    }
    problems
}

#[test]
fn the_flags_table_of_run_says_what_run_help_says() {
    let help = flags_of_help(&help());
    assert!(
        help.len() > 20,
        "`run --help` parsed into {} flags: {help:?}",
        help.len()
    );
    let rows = readme_rows();
    let mut problems: Vec<String> = rows.iter().flat_map(|row| check_row(row, &help)).collect();
    for (name, flag) in &help {
        if !rows.iter().any(|row| row.flags.contains(name)) {
            problems.push(format!(
                "{name} (`run --help`: {}) has no row in README.md's flags table",
                flag.text
            ));
        }
    }
    assert!(problems.is_empty(), "\n{}", problems.join("\n"));
}

/// The checks above do catch a wrong row: each edit of a real row is found.
#[test]
fn a_wrong_row_is_named() {
    let help = flags_of_help(&help());
    let rows = readme_rows();
    let row = |flag: &str| rows.iter().find(|r| r.flags[0] == flag).unwrap();
    let edited = |flag: &str, from: &str, to: &str| {
        let original = row(flag);
        let text = original.text.replacen(from, to, 1);
        assert_ne!(text, original.text, "{from} in the row of {flag}");
        let cells = cells(&text);
        Row {
            line: original.line,
            flags: code_spans(&cells[0])
                .iter()
                .map(|span| span.split_whitespace().next().unwrap_or_default().to_string())
                .collect(),
            envs: code_spans(&cells[1]),
            default: cells[2].clone(),
            text,
        }
    };
    // (the row's first flag, an edit of the row, the flag the problem must name)
    for (first, from, to, named) in [
        ("--linger-ms", "`20`", "`25`", "--linger-ms: default 25"),
        (
            "--brokers",
            "`HRW_BROKERS`",
            "`HRW_BROKER`",
            "--brokers: env HRW_BROKER,",
        ),
        ("--retry-base-ms", "`2000`", "`3000`", "--retry-cap-ms: default 3000"),
        (
            "--no-ai-statistics",
            "| off |",
            "| `true` |",
            "--no-ai-statistics: default true",
        ),
        ("--kafka-config", "| |", "| `x` |", "--kafka-config: default x"),
        (
            "--kubeconfig",
            "in-cluster",
            "in-pod",
            "--kubeconfig: default \"in-pod\"",
        ),
    ] {
        let problems = check_row(&edited(first, from, to), &help);
        let at = format!("README.md:{}: {named}", row(first).line);
        assert!(
            problems.iter().any(|p| p.starts_with(&at)),
            "{first} with {to} instead of {from}: no problem starting {at:?} in {problems:?}"
        );
    }
}
