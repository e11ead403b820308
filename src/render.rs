//! `render`: the dry run. Loads objects from YAML, plans an event against them and prints what would
//! be written, as multi-document YAML.

use crate::cluster::batch;
use crate::event::LifecycleEvent;
use crate::higress::{self, Operation, Settings, State};
use crate::result::{Outcome, ResultError};
use serde::Deserialize;
use serde_json::Value;
use std::path::Path;

/// Reads every object of a YAML file (multi-document), or of every `.yaml`/`.yml`/`.json` file in a directory.
pub fn load_state(path: &Path) -> anyhow::Result<State> {
    let mut state = State::new();
    let files = if path.is_dir() {
        let mut files: Vec<_> = std::fs::read_dir(path)?
            .filter_map(Result::ok)
            .map(|e| e.path())
            .filter(|p| p.extension().is_some_and(|e| e == "yaml" || e == "yml" || e == "json"))
            .collect();
        files.sort();
        files
    } else {
        vec![path.to_path_buf()]
    };
    for file in files {
        let text = std::fs::read_to_string(&file)?;
        for document in serde_yaml_ng::Deserializer::from_str(&text) {
            let value = Value::deserialize(document).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
            let items = match value.get("items").and_then(Value::as_array) {
                Some(items) => items.clone(),
                None => vec![value],
            };
            for item in items.into_iter().filter(|v| !v.is_null()) {
                state.insert_object(item);
            }
        }
    }
    Ok(state)
}

/// What an event would do, as multi-document YAML: every created or changed object in full, after the
/// change, and a comment line per deleted one. Planned as `apply` plans a batch (`cluster::batch::plan`),
/// so it refuses what `apply` refuses, the shared-object budget and the gateway check included.
pub fn render(
    event: &LifecycleEvent,
    state: &State,
    settings: &Settings,
    budget: usize,
) -> Result<String, ResultError> {
    let planned = batch::plan(std::slice::from_ref(event), settings, budget, state.clone());
    let result = &planned.results[0];
    if let Some(error) = &result.error {
        return Err(error.clone());
    }
    let mut out = String::new();
    if result.outcome == Outcome::Stale {
        out.push_str(&format!(
            "# stale: route {}, event revision {}\n",
            event.model(),
            event.revision()
        ));
    }
    for warning in &result.warnings {
        out.push_str(&format!("# warning: {warning}\n"));
    }
    // The result's changes, in write order, are of the objects `changed` lists, in the same order.
    for (key, change) in planned.changed[0].iter().zip(&result.changes) {
        match planned.state.get(key) {
            None => out.push_str(&format!("# {}: {key}\n", Operation::Deleted.as_str())),
            Some(object) => {
                out.push_str(&format!("---\n# {}: {key}\n", change.operation));
                out.push_str(&crate::yaml::to_yaml(&higress::state::without_server_fields(object)));
            }
        }
    }
    Ok(out)
}
