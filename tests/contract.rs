//! The published contract in `schemas/`: the schemas are valid draft 2020-12 and documented, every
//! valid example passes (and parses into the typed model), every invalid example fails with the
//! problem its `.expect` file names, and no problem ever shows a secret.

use higress_route_worker::contract::{self, validate, InvalidReason, Problem, Schema};
use higress_route_worker::event::{self, HttpsMode, KeySource, Lifecycle};
use serde_json::{json, Value};
use std::collections::BTreeSet;
use std::fs;
use std::path::{Path, PathBuf};

const CANARY: &str = "LEAK-CANARY";

fn schemas_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("schemas")
}

/// The files in `schemas/<dir>` ending in `extension`, sorted.
fn files(dir: &str, extension: &str) -> Vec<PathBuf> {
    let dir = schemas_dir().join(dir);
    let mut found: Vec<PathBuf> = fs::read_dir(&dir)
        .unwrap_or_else(|e| panic!("{}: {e}", dir.display()))
        .map(|entry| entry.expect("directory entry").path())
        .filter(|path| path.to_string_lossy().ends_with(extension))
        .collect();
    found.sort();
    found
}

fn read_json(path: &Path) -> Value {
    let text = fs::read_to_string(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap_or_else(|e| panic!("{}: not JSON: {e}", path.display()))
}

fn name(path: &Path) -> String {
    path.file_name().expect("file name").to_string_lossy().into_owned()
}

fn schema_for_type(event_type: &str) -> Option<Schema> {
    match event_type {
        event::DEPLOYED_TYPE => Some(Schema::Deployed),
        event::RETIRED_TYPE => Some(Schema::Retired),
        event::RESULT_TYPE => Some(Schema::Result),
        _ => None,
    }
}

fn schema_named(name: &str) -> Schema {
    match name {
        "deployed" => Schema::Deployed,
        "retired" => Schema::Retired,
        "result" => Schema::Result,
        other => panic!("unknown schema {other:?} (deployed, retired or result)"),
    }
}

fn render(problems: &[Problem]) -> String {
    problems
        .iter()
        .map(ToString::to_string)
        .collect::<Vec<_>>()
        .join("\n  ")
}

fn valid_examples() -> Vec<(PathBuf, Value)> {
    files("examples/valid", ".json")
        .into_iter()
        .map(|p| (p.clone(), read_json(&p)))
        .collect()
}

fn example(name: &str) -> Value {
    read_json(&schemas_dir().join("examples/valid").join(name))
}

// ---------------------------------------------------------------- the schemas themselves

const PUBLISHED: [(&str, Schema, &str); 3] = [
    ("model-deployed.schema.json", Schema::Deployed, event::DEPLOYED_TYPE),
    ("model-retired.schema.json", Schema::Retired, event::RETIRED_TYPE),
    ("route-result.schema.json", Schema::Result, event::RESULT_TYPE),
];

#[test]
fn published_schemas_are_valid_draft_2020_12() {
    let mut ids = BTreeSet::new();
    for (file, _, event_type) in PUBLISHED {
        let schema = read_json(&schemas_dir().join(file));
        if let Err(error) = jsonschema::draft202012::meta::validate(&schema) {
            panic!("{file} is not a valid draft 2020-12 schema: {error}");
        }
        assert_eq!(
            schema["$schema"], "https://json-schema.org/draft/2020-12/schema",
            "{file}: $schema"
        );
        let id = schema["$id"].as_str().unwrap_or_else(|| panic!("{file}: no $id"));
        assert!(ids.insert(id.to_string()), "{file}: $id {id} used twice");
        assert_eq!(schema["properties"]["type"]["const"], event_type, "{file}: type const");
        assert_eq!(
            schema["properties"]["specversion"]["const"], "1.0",
            "{file}: specversion const"
        );
        jsonschema::draft202012::options()
            .should_validate_formats(true)
            .build(&schema)
            .unwrap_or_else(|e| panic!("{file} does not compile: {e}"));
    }
    // The meta-validation above can fail: a schema with a wrongly typed keyword is refused.
    assert!(jsonschema::draft202012::meta::validate(&json!({"type": 5})).is_err());
    assert!(jsonschema::draft202012::meta::validate(&json!({"required": "model"})).is_err());
    // No file in schemas/ but the three is a schema nobody tests.
    let all: Vec<String> = files("", ".schema.json").iter().map(|p| name(p)).collect();
    assert_eq!(all, PUBLISHED.map(|(file, _, _)| file.to_string()).to_vec());
}

/// Every property, definition and item schema a user reads has a title and a description.
#[test]
fn every_field_has_a_title_and_a_description() {
    fn walk(node: &Value, at: &str, missing: &mut Vec<String>) {
        let Some(object) = node.as_object() else { return };
        for keyword in ["properties", "$defs"] {
            for (key, child) in object.get(keyword).and_then(Value::as_object).into_iter().flatten() {
                let here = format!("{at}/{keyword}/{key}");
                if child.is_object() && child.as_object().is_some_and(|c| !c.is_empty()) {
                    for annotation in ["title", "description"] {
                        // A bare `{"$ref": ...}` inherits its target's annotations.
                        let only_ref = child
                            .as_object()
                            .is_some_and(|c| c.len() == 1 && c.contains_key("$ref"));
                        if child.get(annotation).is_none() && !only_ref {
                            missing.push(format!("{here}: no {annotation}"));
                        }
                    }
                }
                walk(child, &here, missing);
            }
        }
        // Not `if`: its properties are conditions, not fields.
        for keyword in ["items", "additionalProperties", "not", "then", "else", "propertyNames"] {
            if let Some(child) = object.get(keyword) {
                walk(child, &format!("{at}/{keyword}"), missing);
            }
        }
        for keyword in ["allOf", "anyOf", "oneOf"] {
            for (i, child) in object
                .get(keyword)
                .and_then(Value::as_array)
                .into_iter()
                .flatten()
                .enumerate()
            {
                walk(child, &format!("{at}/{keyword}/{i}"), missing);
            }
        }
        for (key, child) in object
            .get("dependentSchemas")
            .and_then(Value::as_object)
            .into_iter()
            .flatten()
        {
            walk(child, &format!("{at}/dependentSchemas/{key}"), missing);
        }
    }
    let mut fields = 0;
    for (file, _, _) in PUBLISHED {
        let schema = read_json(&schemas_dir().join(file));
        for annotation in ["title", "description"] {
            assert!(
                schema[annotation].as_str().is_some_and(|s| !s.is_empty()),
                "{file}: no {annotation}"
            );
        }
        let mut missing = Vec::new();
        walk(&schema, file, &mut missing);
        assert!(missing.is_empty(), "undocumented fields:\n{}", missing.join("\n"));
        fields += schema.to_string().matches("\"description\"").count();
    }
    assert!(
        fields > 80,
        "only {fields} descriptions: has the walk stopped finding fields?"
    );
}

// ---------------------------------------------------------------- valid examples

#[test]
fn valid_examples_have_no_problems() {
    let examples = valid_examples();
    let mut seen = BTreeSet::new();
    for (path, value) in &examples {
        let event_type = value["type"]
            .as_str()
            .unwrap_or_else(|| panic!("{}: no type", path.display()));
        let schema =
            schema_for_type(event_type).unwrap_or_else(|| panic!("{}: unknown type {event_type}", path.display()));
        seen.insert(format!("{schema:?}"));
        let problems = validate(schema, value);
        assert!(
            problems.is_empty(),
            "{} should be valid:\n  {}",
            name(path),
            render(&problems)
        );
    }
    assert!(examples.len() >= 14, "only {} valid examples", examples.len());
    assert_eq!(seen.len(), 3, "valid examples of every schema: {seen:?}");
    for required in [
        "seed-deployed.json",
        "seed-retired.json",
        "weighted-upstreams.json",
        "model-predicates.json",
        "secret-refs.json",
        "provider-vllm.json",
        "provider-ollama.json",
        "provider-qwen.json",
        "provider-azure.json",
        "provider-deepseek.json",
        "result-applied.json",
        "result-rejected.json",
    ] {
        assert!(
            examples.iter().any(|(p, _)| name(p) == required),
            "missing valid example {required}"
        );
    }
}

/// The typed model in `src/event.rs` accepts everything the schemas accept in the examples.
#[test]
fn valid_lifecycle_examples_parse_into_the_typed_model() {
    let mut parsed = 0;
    for (path, value) in valid_examples() {
        if value["type"] == event::RESULT_TYPE {
            continue;
        }
        let bytes = fs::read(&path).expect("example");
        let lifecycle = contract::parse(&bytes).unwrap_or_else(|e| panic!("{} does not parse: {e}", name(&path)));
        assert_eq!(lifecycle.model(), value["data"]["model"], "{}", name(&path));
        assert_eq!(
            Some(lifecycle.revision()),
            value["data"]["revision"].as_u64(),
            "{}",
            name(&path)
        );
        assert_eq!(lifecycle.envelope.id, value["id"], "{}", name(&path));
        parsed += 1;
    }
    assert!(parsed >= 10, "only {parsed} lifecycle examples parsed");
}

#[test]
fn seed_examples_say_what_the_issue_says() {
    let seed = example("seed-deployed.json");
    let lifecycle = contract::parse(seed.to_string().as_bytes()).expect("seed parses");
    let Lifecycle::Deployed(deployed) = &lifecycle.body else {
        panic!("seed is a deployment")
    };
    assert_eq!(deployed.model, "zimomo2lololo");
    assert_eq!(deployed.revision, 1);
    assert_eq!(deployed.provider_name(), "lololo");
    assert_eq!(deployed.provider.provider_type, "openai");
    assert_eq!(deployed.provider.url.as_deref(), Some("https://lololo.com/v1"));
    assert_eq!(deployed.route.domains, ["zimomo.com"]);
    assert_eq!(deployed.route.https.as_ref().map(|h| h.mode), Some(HttpsMode::Off));
    assert_eq!(deployed.route.path, "/v1");
    let auth = deployed.auth.as_ref().expect("auth");
    assert!(auth.enabled);
    assert_eq!(auth.allow_list(), ["labubu"]);
    assert_eq!(auth.consumers.len(), 1);
    assert_eq!(auth.consumers[0].name, "labubu");
    assert_eq!(auth.consumers[0].source, KeySource::Bearer);
    let credentials: Vec<&str> = auth.consumers[0].credentials.iter().map(|c| c.expose()).collect();
    assert_eq!(credentials, ["123456-xxx"]);

    let retired = contract::parse(example("seed-retired.json").to_string().as_bytes()).expect("retirement parses");
    let Lifecycle::Retired(retired) = &retired.body else {
        panic!("seed-retired is a retirement")
    };
    assert_eq!((retired.model.as_str(), retired.revision), ("zimomo2lololo", 2));
    assert!(retired.delete_provider, "deleteProvider defaults to true");
    assert!(!retired.delete_consumers, "deleteConsumers defaults to false");
}

#[test]
fn result_examples_cover_applied_and_rejected() {
    let applied = example("result-applied.json");
    assert_eq!(applied["data"]["outcome"], "applied");
    assert!(applied["data"]["changes"].as_array().is_some_and(|c| !c.is_empty()));
    let rejected = example("result-rejected.json");
    assert_eq!(rejected["data"]["outcome"], "rejected");
    assert_eq!(rejected["data"]["error"]["retryable"], false);
    // The rejected example's message is what the worker says about such an event.
    let mut bad = example("seed-deployed.json");
    bad["data"]["provider"]["type"] = json!("hunyuan");
    let problems = validate(Schema::Deployed, &bad);
    assert_eq!(problems.len(), 1, "{}", render(&problems));
    assert_eq!(rejected["data"]["error"]["message"], problems[0].to_string());
    // A rejection must say why.
    let mut silent = rejected.clone();
    silent["data"].as_object_mut().expect("data").remove("error");
    let problems = validate(Schema::Result, &silent);
    assert_eq!(
        render(&problems),
        "data.error: required when outcome is rejected or failed"
    );
}

// ---------------------------------------------------------------- invalid examples

struct Expectation {
    schema: Schema,
    path: String,
    rule: String,
    /// The schema accepts the example; the rules checked after it (`contract::rules`) reject it.
    after_schema: bool,
}

fn expectation(json_path: &Path) -> Expectation {
    let path = json_path.with_extension("expect");
    let text = fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let optional = |key: &str| {
        text.lines()
            .find_map(|line| line.strip_prefix(key).and_then(|rest| rest.strip_prefix(": ")))
            .map(str::to_string)
    };
    let field = |key: &str| optional(key).unwrap_or_else(|| panic!("{}: no `{key}: ` line", path.display()));
    let after_schema = match optional("stage").as_deref() {
        None => false,
        Some("rules") => true,
        Some(other) => panic!("{}: unknown stage {other:?} (rules)", path.display()),
    };
    Expectation {
        schema: schema_named(&field("schema")),
        path: field("path"),
        rule: field("rule"),
        after_schema,
    }
}

#[test]
fn invalid_examples_break_exactly_the_expected_rule() {
    let examples = files("examples/invalid", ".json");
    assert!(examples.len() >= 40, "only {} invalid examples", examples.len());
    let readme = fs::read_to_string(schemas_dir().join("examples/invalid/README.md")).expect("invalid/README.md");
    let mut after_schema = 0;
    for path in &examples {
        let expect = expectation(path);
        let mut problems = validate(expect.schema, &read_json(path));
        if expect.after_schema {
            assert!(
                problems.is_empty(),
                "{}: the schema should accept it, but:\n  {}",
                name(path),
                render(&problems)
            );
            problems = contract::parse(&fs::read(path).expect("example"))
                .expect_err("rejected after the schema")
                .problems;
            after_schema += 1;
        }
        assert!(
            problems.len() == 1 && problems[0].path == expect.path && problems[0].rule.contains(&expect.rule),
            "{}: expected exactly `{}: …{}…`, got:\n  {}",
            name(path),
            expect.path,
            expect.rule,
            render(&problems)
        );
        let stem = name(path).trim_end_matches(".json").to_string();
        assert!(
            readme.contains(&format!("`{stem}`")),
            "invalid/README.md does not list {stem}"
        );
    }
    assert!(after_schema >= 1, "no example of a rule checked after the schema");
    // Every expectation has its example.
    for expect in files("examples/invalid", ".expect") {
        assert!(
            expect.with_extension("json").exists(),
            "{} has no example",
            expect.display()
        );
    }
}

/// What the schema rejects, `contract::parse` rejects too, with the problem the example's `.expect`
/// file names.
#[test]
fn invalid_lifecycle_examples_are_rejected_by_parse() {
    let mut checked = 0;
    let mut compared = 0;
    for path in files("examples/invalid", ".json") {
        let expect = expectation(&path);
        if expect.schema == Schema::Result {
            continue;
        }
        let value = read_json(&path);
        let invalid = match contract::parse(&fs::read(&path).expect("example")) {
            Ok(_) => panic!("{} parses, but breaks {}: {}", name(&path), expect.path, expect.rule),
            Err(invalid) => invalid,
        };
        let own_schema = value["type"].as_str().and_then(schema_for_type) == Some(expect.schema);
        if invalid.reason == InvalidReason::SchemaViolation && own_schema && !expect.after_schema {
            let problems = &invalid.problems;
            assert!(
                problems.len() == 1 && problems[0].path == expect.path && problems[0].rule.contains(&expect.rule),
                "{}: expected exactly `{}: …{}…`, got:\n  {}",
                name(&path),
                expect.path,
                expect.rule,
                render(problems)
            );
            assert_eq!(invalid.event_id.as_deref(), value["id"].as_str(), "{}", name(&path));
            compared += 1;
        }
        checked += 1;
    }
    assert!(checked >= 40, "only {checked} lifecycle examples checked");
    assert!(
        compared >= 80,
        "only {compared} schema violations compared with their `.expect`"
    );
}

// ---------------------------------------------------------------- secrets

/// Events with a secret (`apiTokens`, `credentials`) in a wrong place or shape.
fn leaky_events() -> Vec<(String, Value)> {
    let secret = format!("sk-{CANARY}-0042");
    let seed = example("seed-deployed.json");
    let edit = |label: &str, change: &dyn Fn(&mut Value)| {
        let mut value = seed.clone();
        change(&mut value);
        (label.to_string(), value)
    };
    let consumer = |c: Value| move |v: &mut Value| v["data"]["auth"]["consumers"] = json!([c]);
    let mut events = vec![
        edit("apiTokens is a string", &|v| {
            v["data"]["provider"]["apiTokens"] = json!(secret)
        }),
        edit("apiTokens is an object", &|v| {
            v["data"]["provider"]["apiTokens"] = json!({"token": secret})
        }),
        edit("apiTokens duplicates", &|v| {
            v["data"]["provider"]["apiTokens"] = json!([secret, secret, 7])
        }),
        edit("apiTokens and apiTokensSecretRef", &|v| {
            v["data"]["provider"]["apiTokens"] = json!([secret]);
            v["data"]["provider"]["apiTokensSecretRef"] = json!({"name": "s", "key": "k"});
        }),
        edit("provider type wrong next to tokens", &|v| {
            v["data"]["provider"]["apiTokens"] = json!([secret]);
            v["data"]["provider"]["type"] = json!(secret);
            v["data"]["provider"]["surprise"] = json!(true);
        }),
        edit("apiTokens in config", &|v| {
            v["data"]["provider"]["config"] = json!({"apiTokens": [secret]})
        }),
        edit("provider is a string", &|v| {
            v["data"]["provider"] = json!(format!("openai:{secret}"))
        }),
        edit(
            "credentials is a string",
            &consumer(json!({"name": "labubu", "source": "BEARER", "credentials": secret})),
        ),
        edit(
            "credentials duplicate",
            &consumer(json!({"name": "labubu", "source": "BEARER", "credentials": [secret, secret]})),
        ),
        edit(
            "credentials with credentialsSecretRef",
            &consumer(json!({"name": "labubu", "source": "BEARER", "credentials": [secret],
                             "credentialsSecretRef": {"name": "s", "key": "k"}})),
        ),
        edit(
            "credential of a consumer with a bad name and source",
            &consumer(
                json!({"name": "Labubu", "source": "BASIC", "key": "x", "credentials": [secret, ""], "extra": 1}),
            ),
        ),
        edit("consumer is a string", &|v| {
            v["data"]["auth"]["consumers"] = json!([secret])
        }),
        edit("whole data is a secret string", &|v| v["data"] = json!(secret)),
    ];
    for path in files("examples/invalid", ".json") {
        let value = read_json(&path);
        if value.to_string().contains(CANARY) {
            events.push((name(&path), value));
        }
    }
    events
}

#[test]
fn problems_never_show_a_secret() {
    let events = leaky_events();
    assert!(events.len() >= 20, "only {} events with secrets", events.len());
    let mut raw_leaks = 0;
    let raw = jsonschema::draft202012::new(&read_json(&schemas_dir().join("model-deployed.schema.json")))
        .expect("schema compiles");
    for (label, value) in &events {
        assert!(
            value.to_string().contains(CANARY),
            "{label}: the event carries no secret"
        );
        let problems = validate(Schema::Deployed, value);
        assert!(!problems.is_empty(), "{label}: should be invalid");
        for problem in &problems {
            assert!(
                !problem.to_string().contains(CANARY),
                "{label}: problem shows the secret: {problem}"
            );
        }
        if let Err(invalid) = contract::parse(value.to_string().as_bytes()) {
            assert!(
                !invalid.to_string().contains(CANARY),
                "{label}: parse error shows the secret: {invalid}"
            );
        } else {
            panic!("{label}: parse accepted an invalid event");
        }
        // The library's own messages would have leaked: this test would catch a naive conversion.
        raw_leaks += raw
            .iter_errors(value)
            .filter(|e| e.to_string().contains(CANARY))
            .count();
    }
    assert!(
        raw_leaks >= 5,
        "the library's messages leak only {raw_leaks} times: the cases test nothing"
    );
}

// ---------------------------------------------------------------- problem format

#[test]
fn problems_are_sorted_deduplicated_and_name_the_missing_property() {
    let mut value = example("seed-deployed.json");
    value.as_object_mut().expect("event").remove("source");
    let data = &mut value["data"];
    data.as_object_mut().expect("data").remove("revision");
    data["route"]["upstreams"] = json!([{"provider": "a", "weight": 101}, {"provider": "B", "weight": 50}]);
    data["route"]["domains"] = json!(["Zimomo.com", "zimomo.com", "zimomo.com"]);
    data["auth"]["consumers"][0]["source"] = json!("HEADER");
    let problems = validate(Schema::Deployed, &value);
    let lines: Vec<String> = problems.iter().map(ToString::to_string).collect();
    assert_eq!(
        lines,
        [
            "data.auth.consumers[0].key: required when source is HEADER or QUERY",
            "data.revision: required",
            "data.route.domains: must not contain the same item twice",
            r"data.route.domains[0]: must match ^(\*\.)?[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)+$",
            "data.route.upstreams[0].weight: must be at most 100",
            "data.route.upstreams[1].provider: must match ^[a-z0-9]([a-z0-9.-]{0,57}[a-z0-9])?$",
            "source: required",
        ]
    );
    let mut sorted = problems.clone();
    sorted.sort_by(|a, b| (&a.path, &a.rule).cmp(&(&b.path, &b.rule)));
    sorted.dedup();
    assert_eq!(problems, sorted);
}

#[test]
fn the_root_is_dollar_and_odd_keys_are_quoted() {
    assert_eq!(render(&validate(Schema::Retired, &json!([]))), "$: must be an object");
    let problems = validate(Schema::Retired, &json!({}));
    let paths: Vec<&str> = problems.iter().map(|p| p.path.as_str()).collect();
    assert_eq!(paths, ["data", "id", "source", "specversion", "type"]);
    assert!(problems.iter().all(|p| p.rule == "required"));
    let mut value = example("model-predicates.json");
    value["data"]["route"]["modelMapping"] = json!({"gpt-4o": 1, "a.b": "ok", "": "x"});
    assert_eq!(
        render(&validate(Schema::Deployed, &value)),
        [
            r#"data.route.modelMapping[""]: is not an allowed property name: must not be empty"#,
            r#"data.route.modelMapping["gpt-4o"]: must be a string"#
        ]
        .join("\n  ")
    );
}

#[test]
fn the_schemas_are_told_apart() {
    let retired = example("seed-retired.json");
    assert!(validate(Schema::Retired, &retired).is_empty());
    let as_deployed = render(&validate(Schema::Deployed, &retired));
    assert!(
        as_deployed.contains(r#"type: must be "io.higress.model.deployed.v1""#),
        "{as_deployed}"
    );
    assert!(as_deployed.contains("data.provider: required"), "{as_deployed}");
    let as_result = validate(Schema::Result, &retired);
    assert!(as_result
        .iter()
        .any(|p| p.path == "data.outcome" && p.rule == "required"));
}

// ---------------------------------------------------------------- results the worker writes

/// `result::RouteResult` (the producer of route-result events) writes what the published schema says.
#[test]
fn results_the_worker_publishes_follow_the_result_schema() {
    use higress_route_worker::result::{Change, Outcome, RouteResult};
    let source = "higress-route-worker";
    let check = |label: &str, result: &RouteResult| {
        let event = result.to_cloud_event(source);
        let problems = validate(Schema::Result, &event);
        assert!(problems.is_empty(), "{label}: {event}\n  {}", render(&problems));
    };
    let mut checked = 0;
    for (path, value) in valid_examples() {
        if value["type"] == event::RESULT_TYPE {
            continue;
        }
        let lifecycle = contract::parse(&fs::read(&path).expect("example")).expect("valid example parses");
        let mut result = RouteResult::for_event(&lifecycle);
        check(&name(&path), &result);
        result.outcome = Outcome::Applied;
        result.attempts = 1;
        result.duration_ms = 12;
        result.changes = vec![Change {
            api_version: "v1".into(),
            kind: "ConfigMap".into(),
            name: format!("ai-route-{}", lifecycle.model()),
            operation: "created",
        }];
        result.warnings = vec!["consumer alice does not exist".into()];
        check(&name(&path), &result);
        result.fail(
            Outcome::Failed,
            higress_route_worker::reason::Reason::Unavailable,
            "the API server is unavailable".into(),
            true,
        );
        check(&name(&path), &result);
        checked += 1;
    }
    let mut rotated = RouteResult::for_rotation("zimomo2lololo", 4);
    rotated.changes = vec![Change {
        api_version: "extensions.higress.io/v1alpha1".into(),
        kind: "WasmPlugin".into(),
        name: "ai-proxy.internal".into(),
        operation: "updated",
    }];
    check("secret rotation", &rotated);
    for path in files("examples/invalid", ".json") {
        if let Err(invalid) = contract::parse(&fs::read(&path).expect("example")) {
            check(&name(&path), &RouteResult::for_invalid(&invalid));
            checked += 1;
        }
    }
    for bytes in [&b"not json"[..], b"[]", b"{\"data\": {\"model\": 7, \"revision\": -1}}"] {
        let invalid = contract::parse(bytes).expect_err("not an event");
        check(&String::from_utf8_lossy(bytes), &RouteResult::for_invalid(&invalid));
        checked += 1;
    }
    assert!(checked >= 50, "only {checked} results checked");
    // And the check can fail: a failure without its error is refused.
    let invalid = contract::parse(b"[]").expect_err("not an event");
    let mut result = RouteResult::for_invalid(&invalid);
    result.error = None;
    assert!(!validate(Schema::Result, &result.to_cloud_event(source)).is_empty());
}

#[test]
fn the_schema_lists_exactly_the_route_plugins_of_the_catalogue_table() {
    let schema = read_json(&schemas_dir().join("model-deployed.schema.json"));
    let listed: Vec<&str> = schema
        .pointer("/properties/data/properties/route/properties/plugins/propertyNames/enum")
        .and_then(Value::as_array)
        .expect("route.plugins names an enum")
        .iter()
        .map(|n| n.as_str().unwrap())
        .collect();
    let table: Vec<&str> = higress_route_worker::higress::plugins::route_plugins()
        .map(|p| p.plugin_name())
        .collect();
    assert_eq!(
        listed, table,
        "schemas/model-deployed.schema.json and CATALOGUE in src/higress/plugins.rs"
    );
}

#[test]
fn a_domain_that_is_an_ip_address_is_refused_by_name() {
    // The host-name pattern lets an IPv4 address through; an Ingress host cannot be one.
    for (domains, refused) in [
        (json!(["10.0.0.1"]), Some(0)),
        (json!(["api.example.com", "010.001.002.003"]), Some(1)),
        (json!(["10.0.0.1.example.com", "1.2.3"]), None),
    ] {
        let mut value = example("seed-deployed.json");
        value["data"]["route"]["domains"] = domains.clone();
        match (contract::parse(value.to_string().as_bytes()), refused) {
            (Err(invalid), Some(i)) => assert_eq!(
                invalid.to_string(),
                format!(
                    "invalid event (schema-violation): data.route.domains[{i}]: must be a host name, not an IP address (an Ingress host cannot be one)"
                )
            ),
            (Ok(_), None) => {}
            (other, _) => panic!("{domains}: {other:?}"),
        }
    }
}

#[test]
fn a_model_named_like_another_models_fallback_is_refused_deployed_or_retired() {
    // `ai-route-chat.fallback.internal` is model chat's fallback Ingress: model `chat.fallback` would
    // overwrite it, or delete it when retired.
    let mut deployed = example("seed-deployed.json");
    deployed["data"]["model"] = json!("chat.fallback");
    let mut retired = example("seed-retired.json");
    retired["data"]["model"] = json!("chat.fallback");
    for value in [deployed, retired] {
        let invalid = contract::parse(value.to_string().as_bytes()).unwrap_err();
        assert!(
            invalid
                .to_string()
                .contains("data.model: must not end with \".fallback\""),
            "{invalid}"
        );
    }
    let mut fine = example("seed-retired.json");
    fine["data"]["model"] = json!("chat.fallbacks");
    assert!(contract::parse(fine.to_string().as_bytes()).is_ok());
}
