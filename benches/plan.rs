//! Planning micro-benchmark: the CPU side of a burst, without broker or API latency. Batches of new
//! deploy events are planned (`cluster::batch::plan`) against exactly what the engine would read from a
//! cluster that already holds R routes, and what they change is written back for the next batch.
//! Reads and writes go through JSON as on the wire, so decoding and encoding are measured too.
//!
//! `cargo bench --bench plan -- --existing-routes 5000 --events 256 --batches 4 --providers 10`
//! (`--existing-providers`, `--existing-consumers`: as in `burst`). `--retire 1` then retires the
//! models deployed, in batches of the same size (`deleteConsumers: true`), and measures that too.
//!
//! Wall-clock figures are noisy on a shared machine; for repeatable counts run the binary under
//! `valgrind --tool=callgrind` (instructions) with a smaller `--existing-routes`.

#[path = "support/seed.rs"]
mod seed;

use higress_route_worker::cluster::{batch, DEFAULT_SHARED_OBJECT_BUDGET};
use higress_route_worker::contract;
use higress_route_worker::event::LifecycleEvent;
use higress_route_worker::higress::{self, ObjectKey, ReadSet, Settings, State};
use serde_json::{json, Value};
use std::time::{Duration, Instant};

struct Options {
    existing_routes: usize,
    existing_providers: usize,
    existing_consumers: usize,
    events: usize,
    batches: usize,
    providers: usize,
    retire: bool,
}

fn options() -> Options {
    let mut o = Options {
        existing_routes: 5000,
        existing_providers: 0,
        existing_consumers: 0,
        events: 256,
        batches: 4,
        providers: 0,
        retire: false,
    };
    let args: Vec<String> = std::env::args().skip(1).filter(|a| a != "--bench").collect();
    for pair in args.chunks(2) {
        let value = || {
            pair.get(1)
                .unwrap_or_else(|| panic!("{} needs a value", pair[0]))
                .parse::<usize>()
                .unwrap()
        };
        match pair[0].as_str() {
            "--existing-routes" => o.existing_routes = value(),
            "--existing-providers" => o.existing_providers = value(),
            "--existing-consumers" => o.existing_consumers = value(),
            "--events" => o.events = value(),
            "--batches" => o.batches = value(),
            "--providers" => o.providers = value(),
            "--retire" => o.retire = value() != 0,
            other => panic!("unknown flag {other}"),
        }
    }
    if o.providers == 0 {
        o.providers = o.events * o.batches;
    }
    // As `burst`: one provider and one consumer per five existing routes unless told otherwise.
    if o.existing_providers == 0 {
        o.existing_providers = (o.existing_routes / 5).max(1);
    }
    if o.existing_consumers == 0 {
        o.existing_consumers = (o.existing_routes / 5).max(1);
    }
    o
}

/// What reading `set` returns from `whole`, through JSON as an API list would carry it.
fn read(whole: &State, set: &ReadSet) -> (State, usize, usize) {
    let objects: Vec<&Value> = whole
        .iter()
        .filter(|(key, object)| set.covers(key, object))
        .map(|(_, object)| object)
        .collect();
    let body = serde_json::to_vec(&objects).expect("objects serialize");
    let decoded: Vec<Value> = serde_json::from_slice(&body).expect("objects parse");
    let mut state = State::new();
    let count = decoded.len();
    for object in decoded {
        state.insert_object(object);
    }
    (state, count, body.len())
}

/// Plans each batch against what the engine would read from `whole`, and writes its changes back.
fn run_phase(phase: &str, batches: &[Vec<LifecycleEvent>], whole: &mut State, settings: &Settings, per_batch: usize) {
    let (mut read_total, mut plan_total, mut write_total) = (Duration::ZERO, Duration::ZERO, Duration::ZERO);
    for (b, events) in batches.iter().enumerate() {
        let started = Instant::now();
        let (mut state, mut count, mut bytes) = read(whole, &higress::reads(events));
        let more = higress::reads::follow_up_reads(events, &state);
        if !more.is_empty() {
            let (extra, extra_count, extra_bytes) = read(whole, &more);
            count += extra_count;
            bytes += extra_bytes;
            for (key, object) in extra.into_objects() {
                state.set(key, Some(object));
            }
        }
        let read_in = started.elapsed();
        let started = Instant::now();
        let planned = batch::plan(events, settings, DEFAULT_SHARED_OBJECT_BUDGET, state);
        let plan_in = started.elapsed();
        let rejected = planned.results.iter().filter(|r| r.error.is_some()).count();
        // The writes: every changed object encoded once, as the engine sends it.
        let started = Instant::now();
        let mut written = 0;
        let changed: Vec<ObjectKey> = planned.to_write().map(|(key, _)| key.clone()).collect();
        for key in changed {
            let now = planned.state.get(&key);
            written += now.map_or(0, |o| serde_json::to_vec(o).expect("serializes").len());
            whole.set(key, now.cloned());
        }
        let write_in = started.elapsed();
        println!(
            "{phase} batch {b}: read {:.1} ms ({} objects, {:.1} MB), plan {:.1} ms ({:.0} µs/event), write {:.1} ms ({:.1} MB), rejected {rejected}",
            ms(read_in),
            count,
            bytes as f64 / 1e6,
            ms(plan_in),
            ms(plan_in) * 1000.0 / per_batch as f64,
            ms(write_in),
            written as f64 / 1e6,
        );
        read_total += read_in;
        plan_total += plan_in;
        write_total += write_in;
    }
    let events = (per_batch * batches.len()) as f64;
    println!(
        "{phase} total: read {:.0} ms, plan {:.0} ms, write {:.0} ms = {:.0} µs of CPU per event",
        ms(read_total),
        ms(plan_total),
        ms(write_total),
        ms(read_total + plan_total + write_total) * 1000.0 / events
    );
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1000.0
}

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if !args.iter().any(|a| a == "--bench") {
        println!("plan: run with `cargo bench --bench plan`; skipped");
        return;
    }
    let o = options();
    let seeding = Instant::now();
    let mut whole = seed::existing_state(o.existing_routes, o.existing_providers, o.existing_consumers);
    println!(
        "existing cluster: {} routes ({} providers, {} consumers), seeded in {:.1} s",
        o.existing_routes,
        o.existing_providers,
        o.existing_consumers,
        seeding.elapsed().as_secs_f64()
    );
    let settings = Settings::default();
    let deploys: Vec<Vec<LifecycleEvent>> = (0..o.batches)
        .map(|b| {
            (0..o.events)
                .map(|i| seed::deploy_with("batched", b * o.events + i, o.providers, 1).1)
                .map(|event| contract::parse(event.to_string().as_bytes()).expect("a valid deploy event"))
                .collect()
        })
        .collect();
    run_phase("deploy", &deploys, &mut whole, &settings, o.events);
    if o.retire {
        let retirements: Vec<Vec<LifecycleEvent>> = deploys
            .iter()
            .map(|batch| {
                batch
                    .iter()
                    .map(|deploy| {
                        let event = json!({"specversion": "1.0", "id": format!("{}-2", deploy.model()), "source": "bench",
                            "type": "io.higress.model.retired.v1",
                            "data": {"model": deploy.model(), "revision": 2, "deleteConsumers": true}});
                        contract::parse(event.to_string().as_bytes()).expect("a valid retire event")
                    })
                    .collect()
            })
            .collect();
        run_phase("retire", &retirements, &mut whole, &settings, o.events);
    }
    for (key, object) in whole
        .iter()
        .filter(|(k, _)| k.kind != higress::Kind::ConfigMap && k.kind != higress::Kind::Ingress)
    {
        println!(
            "  {key}: {} bytes",
            higress_route_worker::cluster::admission::serialized_size(Some(object))
        );
    }
}
