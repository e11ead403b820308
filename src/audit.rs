//! `audit`: every problem the gateway's plugins have with the plugin CRs in the cluster, ours or
//! another writer's: the operator's answer to "why does every AI route answer 404".

use crate::gateway::{self, Problem};
use serde_json::{json, Value};

/// One problem, in the object that has it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Finding {
    pub object: String,
    pub problem: Problem,
}

/// The problems of each WasmPlugin CR given (as listed), by object name then entry. CRs of plugins
/// whose parser is not ported are not checked.
pub fn findings(plugins: &[Value]) -> Vec<Finding> {
    let mut findings: Vec<Finding> = plugins
        .iter()
        .flat_map(|object| {
            let name = object
                .pointer("/metadata/name")
                .and_then(Value::as_str)
                .unwrap_or_default();
            gateway::check(object).into_iter().map(move |problem| Finding {
                object: format!("WasmPlugin/{name}"),
                problem,
            })
        })
        .collect();
    findings.sort_by(|a, b| (&a.object, &a.problem).cmp(&(&b.object, &b.problem)));
    findings
}

/// The findings as a table: object, entry, rule, source.
pub fn table(findings: &[Finding]) -> String {
    let rows: Vec<[String; 4]> = findings
        .iter()
        .map(|f| {
            [
                f.object.clone(),
                f.problem.entry.to_string(),
                f.problem.broken.rule.clone(),
                f.problem.broken.source.to_string(),
            ]
        })
        .collect();
    let header = ["OBJECT", "ENTRY", "RULE", "SOURCE"].map(str::to_string);
    let mut widths = header.clone().map(|h| h.chars().count());
    for row in &rows {
        for (width, cell) in widths.iter_mut().zip(row) {
            *width = (*width).max(cell.chars().count());
        }
    }
    let mut out = String::new();
    for row in std::iter::once(&header).chain(&rows) {
        let cells: Vec<String> = row
            .iter()
            .zip(widths)
            .map(|(cell, width)| format!("{cell:<width$}"))
            .collect();
        out.push_str(cells.join("  ").trim_end());
        out.push('\n');
    }
    out
}

/// The findings as JSON: a list of `{object, entry, rule, source: {repository, commit, path, function}}`.
pub fn to_json(findings: &[Finding]) -> Value {
    Value::Array(
        findings
            .iter()
            .map(|f| {
                json!({
                    "object": f.object,
                    "entry": f.problem.entry.to_string(),
                    "rule": f.problem.broken.rule,
                    "source": {
                        "repository": "alibaba/higress",
                        "commit": gateway::HIGRESS_COMMIT,
                        "path": f.problem.broken.source.path,
                        "function": f.problem.broken.source.function,
                    },
                })
            })
            .collect(),
    )
}
