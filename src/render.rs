//! `render`: the dry run. Loads objects from YAML, plans an event against them and prints what would
//! be written, as multi-document YAML.

use crate::event::LifecycleEvent;
use crate::higress::{self, Decision, Operation, Settings, State};
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
/// change, and a comment line per deleted one.
pub fn render(
    event: &LifecycleEvent,
    state: &State,
    settings: &Settings,
    now: chrono::DateTime<chrono::Utc>,
) -> Result<String, higress::Refusal> {
    let mut out = String::new();
    let plan = match higress::plan(event, state, settings, now)? {
        Decision::Stale { seen } => {
            return Ok(format!(
                "# stale: route {} has seen revision {seen}, event has {}\n",
                event.model(),
                event.revision()
            ))
        }
        Decision::Apply(plan) => plan,
    };
    if let Some(seen) = plan.stale {
        out.push_str(&format!(
            "# stale: route {} has seen revision {seen}, event has {}\n",
            event.model(),
            event.revision()
        ));
    }
    let mut after = state.clone();
    let changes = higress::simulate(&mut after, &plan)?;
    for warning in &plan.warnings {
        out.push_str(&format!("# warning: {warning}\n"));
    }
    for (key, operation) in changes {
        match operation {
            Operation::Deleted => out.push_str(&format!("# deleted: {key}\n")),
            _ => {
                let object = higress::state::without_server_fields(after.get(&key).expect("changed objects exist"));
                out.push_str(&format!("---\n# {}: {key}\n", operation.as_str()));
                out.push_str(&crate::yaml::to_yaml(&object));
            }
        }
    }
    Ok(out)
}
