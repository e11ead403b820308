//! Fences at scale: 20,000 retirements inside the tombstone window spread over the fence shards,
//! each shard stays far below the 1 MiB a ConfigMap's data may hold, and pruning still removes
//! retirements once they are older than the window. Pure: the mapping's own plans and simulation.

use higress_route_worker::contract;
use higress_route_worker::event;
use higress_route_worker::higress::fence::FenceEntry;
use higress_route_worker::higress::{self, names, Decision, Kind, Settings, State};
use serde_json::{json, Value};

/// What a real API server allows a ConfigMap's data (keys and values) to hold.
const CONFIG_MAP_DATA_LIMIT: usize = 1024 * 1024;

fn retire(model: &str) -> event::LifecycleEvent {
    let event = json!({"specversion": "1.0", "id": format!("retire-{model}"), "source": "tests", "type": event::RETIRED_TYPE,
        "data": {"model": model, "revision": 2, "deleteProvider": true, "deleteConsumers": true}});
    contract::parse(event.to_string().as_bytes()).unwrap_or_else(|e| panic!("{e}"))
}

/// Applies the events one by one, as a worker does, at `now`.
fn apply(state: &mut State, events: impl Iterator<Item = event::LifecycleEvent>, now: chrono::DateTime<chrono::Utc>) {
    let settings = Settings::default();
    for event in events {
        match higress::plan(&event, state, &settings, now).unwrap() {
            Decision::Apply(plan) => {
                higress::simulate(state, &plan).unwrap();
            }
            Decision::Stale { seen } => panic!("{} is stale (seen {seen})", event.model()),
        }
    }
}

fn shards(state: &State) -> Vec<(String, usize, usize)> {
    state
        .of_kind(Kind::ConfigMap)
        .filter(|(name, _)| names::is_fence(name))
        .map(|(name, shard)| {
            let data = shard["data"].as_object().unwrap();
            let bytes = data.iter().map(|(k, v)| k.len() + v.as_str().unwrap().len()).sum();
            (name.to_string(), data.len(), bytes)
        })
        .collect()
}

#[test]
fn twenty_thousand_retirements_stay_under_the_config_map_limit_and_are_pruned_after_the_window() {
    const RETIRED: usize = 20_000;
    // Each retired route used a provider and a consumer of its own: its entry records them.
    let model = |i: usize| format!("model-with-a-realistic-name-{i:05}");
    let mut state = State::new();
    for i in 0..RETIRED {
        let name = names::fence(&model(i));
        let entry = FenceEntry {
            providers: vec![format!("provider-{i:05}")],
            consumers: vec![format!("consumer-{i:05}")],
            ..FenceEntry::deployed(1)
        };
        if state.get_named(Kind::ConfigMap, &name).is_none() {
            state.insert_object(higress::fence::new_fence(&name, names::DEFAULT_NAMESPACE));
        }
        let mut shard = state
            .take(&higress::ObjectKey::new(Kind::ConfigMap, name.clone()))
            .unwrap();
        shard["data"][model(i)] = Value::String(entry.to_json());
        state.insert_object(shard);
    }
    let retired_at = chrono::Utc::now();
    apply(&mut state, (0..RETIRED).map(|i| retire(&model(i))), retired_at);

    let sizes = shards(&state);
    assert_eq!(sizes.len(), names::FENCE_SHARDS as usize);
    assert_eq!(sizes.iter().map(|(_, n, _)| n).sum::<usize>(), RETIRED);
    let largest = sizes.iter().map(|(_, _, bytes)| *bytes).max().unwrap();
    println!("largest fence shard after {RETIRED} retirements: {largest} bytes");
    assert!(
        largest < CONFIG_MAP_DATA_LIMIT / 2,
        "the largest shard holds {largest} bytes: {sizes:?}"
    );
    let entry = state.fence_entry(&model(7)).unwrap();
    assert!(entry.is_retired());
    assert_eq!(
        entry.providers,
        ["provider-00007"],
        "a retirement keeps what its route used"
    );

    // Within the window nothing is pruned; past it, the next edit of each shard prunes it.
    let settings = Settings::default();
    let within = retired_at + settings.tombstone_ttl - chrono::Duration::hours(1);
    apply(&mut state, (0..16).map(|i| retire(&format!("within-{i}"))), within);
    assert_eq!(state.fence_entry(&model(7)).map(|e| e.revision), Some(2));
    let later = retired_at + settings.tombstone_ttl + chrono::Duration::hours(1);
    let mut newcomers = Vec::new();
    let mut touched = std::collections::BTreeSet::new();
    for i in 0.. {
        let newcomer = format!("later-{i}");
        if touched.insert(names::fence(&newcomer)) {
            newcomers.push(newcomer);
        }
        if touched.len() == names::FENCE_SHARDS as usize {
            break;
        }
    }
    apply(&mut state, newcomers.iter().map(|m| retire(m)), later);
    let left: usize = shards(&state).iter().map(|(_, n, _)| n).sum();
    assert_eq!(
        left,
        16 + newcomers.len(),
        "only the retirements inside the window are left: {:?}",
        shards(&state)
    );
    assert_eq!(state.fence_entry(&model(7)), None);
    assert!(state.fence_entry("within-3").is_some());
}
