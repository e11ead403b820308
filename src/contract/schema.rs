//! Validation against the published JSON Schemas in `schemas/` (draft 2020-12), the event contract
//! users read. Each schema is compiled once, with `format` asserted.
//!
//! Every validation error becomes a [`Problem`]: the dotted JSON path of the offending value
//! (`data.route.upstreams[0].weight`; the root is `$`; a missing or unexpected property is named in
//! the path) and the rule broken, in plain words built from the schema's expectation only. Problems
//! never quote instance values (only property names, in paths), so secrets (`apiTokens`,
//! `credentials`, values in `config`) cannot leak through a problem.

use super::Problem;
use jsonschema::error::{TypeKind, ValidationErrorKind};
use jsonschema::{ValidationError, Validator};
use serde_json::{Map, Value};
use std::sync::LazyLock;

/// The published schemas, one per message type.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Schema {
    /// `schemas/model-deployed.schema.json`, type `io.higress.model.deployed.v1`.
    Deployed,
    /// `schemas/model-retired.schema.json`, type `io.higress.model.retired.v1`.
    Retired,
    /// `schemas/route-result.schema.json`, type `io.higress.model.route.result.v1`.
    Result,
}

struct Compiled {
    document: Value,
    validator: Validator,
}

fn compile(name: &str, text: &str) -> Compiled {
    let document: Value = serde_json::from_str(text).unwrap_or_else(|e| panic!("schemas/{name} is not JSON: {e}"));
    let validator = jsonschema::draft202012::options()
        .should_validate_formats(true)
        .build(&document)
        .unwrap_or_else(|e| panic!("schemas/{name} is not a valid draft 2020-12 schema: {e}"));
    Compiled { document, validator }
}

static DEPLOYED: LazyLock<Compiled> = LazyLock::new(|| {
    compile(
        "model-deployed.schema.json",
        include_str!("../../schemas/model-deployed.schema.json"),
    )
});
static RETIRED: LazyLock<Compiled> = LazyLock::new(|| {
    compile(
        "model-retired.schema.json",
        include_str!("../../schemas/model-retired.schema.json"),
    )
});
static RESULT: LazyLock<Compiled> = LazyLock::new(|| {
    compile(
        "route-result.schema.json",
        include_str!("../../schemas/route-result.schema.json"),
    )
});

impl Schema {
    fn compiled(self) -> &'static Compiled {
        match self {
            Self::Deployed => &DEPLOYED,
            Self::Retired => &RETIRED,
            Self::Result => &RESULT,
        }
    }
}

/// Validates `value` against `schema`; no problems means valid. Sorted by path, without duplicates.
pub fn validate(schema: Schema, value: &Value) -> Vec<Problem> {
    let compiled = schema.compiled();
    let mut problems = Vec::new();
    for error in compiled.validator.iter_errors(value) {
        describe(&error, value, &compiled.document, &mut problems);
    }
    problems.sort_by(|a, b| (&a.path, &a.rule).cmp(&(&b.path, &b.rule)));
    problems.dedup();
    problems
}

/// Turns one validation error into problems; `schema` is the document the error's schema path is in.
fn describe(error: &ValidationError<'_>, instance: &Value, schema: &Value, out: &mut Vec<Problem>) {
    let path = dotted(instance, error.instance_path().as_str());
    let schema_path = error.schema_path().as_str();
    // Along the evaluation path, which goes through `$ref`: a `then` may apply a `$defs` schema.
    let condition = condition(schema, error.evaluation_path().as_str());
    let mut push = |path: String, rule: String| out.push(Problem::new(path, format!("{rule}{condition}")));
    match error.kind() {
        ValidationErrorKind::Required { property } => push(child(&path, &plain(property)), "required".into()),
        ValidationErrorKind::AdditionalProperties { unexpected }
        | ValidationErrorKind::UnevaluatedProperties { unexpected } => {
            for name in unexpected {
                push(child(&path, name), "is not an allowed property here".into());
            }
        }
        ValidationErrorKind::FalseSchema => push(path, "is not allowed".into()),
        ValidationErrorKind::Not { schema: negated } => match required_list(negated).as_deref() {
            Some([name]) => push(child(&path, name), "is not allowed".into()),
            Some(names) => push(path, format!("{} are mutually exclusive", and_list(names))),
            None => push(path, negated_rule(negated)),
        },
        ValidationErrorKind::OneOfNotValid { context } => {
            let rule = match required_alternatives(schema, schema_path) {
                Some(names) => format!("one of {} is required", or_list(&names)),
                None => format!(
                    "must match exactly one of {} alternatives, but matches none{}",
                    context.len(),
                    alternatives_reasons(context, instance, schema)
                ),
            };
            push(path, rule);
        }
        ValidationErrorKind::OneOfMultipleValid { .. } => {
            let rule = match required_alternatives(schema, schema_path) {
                Some(names) => format!("{} are mutually exclusive: give only one", and_list(&names)),
                None => "must match exactly one alternative, but matches several".into(),
            };
            push(path, rule);
        }
        ValidationErrorKind::AnyOf { context } => {
            let rule = match required_alternatives(schema, schema_path) {
                Some(names) => format!("one of {} is required", or_list(&names)),
                None => format!(
                    "must match at least one of {} alternatives, but matches none{}",
                    context.len(),
                    alternatives_reasons(context, instance, schema)
                ),
            };
            push(path, rule);
        }
        ValidationErrorKind::PropertyNames { error: inner } => {
            let mut nested = Vec::new();
            describe(inner, &Value::Null, schema, &mut nested);
            let name = inner.instance().as_str().map(str::to_string);
            for problem in nested {
                match &name {
                    Some(name) => push(
                        child(&path, name),
                        format!("is not an allowed property name: {}", problem.rule),
                    ),
                    None => push(path.clone(), format!("property names: {}", problem.rule)),
                }
            }
        }
        kind => push(path, simple_rule(kind)),
    }
}

/// The rule of a `not` that is more than a list of required properties: its description, which the
/// schema words as a rule (`must not contain two '.' in a row`), or else the schema itself.
fn negated_rule(negated: &Value) -> String {
    match negated.get("description").and_then(Value::as_str) {
        Some(description) => description.trim_end_matches('.').to_string(),
        None => format!("must not match the schema {}", compact(negated)),
    }
}

/// Rules that only depend on the keyword and the schema's expectation.
fn simple_rule(kind: &ValidationErrorKind) -> String {
    match kind {
        ValidationErrorKind::Type { kind } => match kind {
            TypeKind::Single(ty) => format!("must be {}", with_article(ty.as_str())),
            TypeKind::Multiple(types) => {
                let names: Vec<String> = types.iter().map(|t| t.as_str().to_string()).collect();
                format!("must be of type {}", or_list(&names))
            }
        },
        ValidationErrorKind::Constant { expected_value } => format!("must be {}", compact(expected_value)),
        ValidationErrorKind::Enum { options } => {
            let names: Vec<String> = options
                .as_array()
                .map(|o| o.iter().map(plain).collect())
                .unwrap_or_default();
            format!("must be one of {}", names.join(", "))
        }
        ValidationErrorKind::Pattern { pattern } => format!("must match {pattern}"),
        ValidationErrorKind::BacktrackLimitExceeded { .. } | ValidationErrorKind::RegexEngineFailure { .. } => {
            "could not be checked against its pattern".into()
        }
        ValidationErrorKind::Format { format } => match format.as_str() {
            "date-time" => "must be an RFC 3339 date-time, e.g. 2025-06-15T08:00:00Z".into(),
            "uri" => "must be an absolute URI".into(),
            "uri-reference" => "must be a URI reference".into(),
            other => format!("must be a valid {other}"),
        },
        ValidationErrorKind::MinLength { limit: 1 } => "must not be empty".into(),
        ValidationErrorKind::MinLength { limit } => format!("must be at least {limit} characters long"),
        ValidationErrorKind::MaxLength { limit } => format!("must be at most {limit} characters long"),
        ValidationErrorKind::MinItems { limit: 1 } => "must not be empty".into(),
        ValidationErrorKind::MinItems { limit } => format!("must have at least {limit} items"),
        ValidationErrorKind::MaxItems { limit } => format!("must have at most {limit} items"),
        ValidationErrorKind::MinProperties { limit } => format!("must have at least {limit} properties"),
        ValidationErrorKind::MaxProperties { limit } => format!("must have at most {limit} properties"),
        ValidationErrorKind::Minimum { limit } => format!("must be at least {limit}"),
        ValidationErrorKind::Maximum { limit } => format!("must be at most {limit}"),
        ValidationErrorKind::ExclusiveMinimum { limit } => format!("must be greater than {limit}"),
        ValidationErrorKind::ExclusiveMaximum { limit } => format!("must be less than {limit}"),
        ValidationErrorKind::MultipleOf { multiple_of } => format!("must be a multiple of {multiple_of}"),
        ValidationErrorKind::UniqueItems => "must not contain the same item twice".into(),
        ValidationErrorKind::Contains => "must contain an item of the required shape".into(),
        ValidationErrorKind::AdditionalItems { limit } => format!("must have at most {limit} items"),
        ValidationErrorKind::UnevaluatedItems { .. } => "has items that are not allowed".into(),
        ValidationErrorKind::ContentEncoding { content_encoding } => format!("must be {content_encoding}-encoded"),
        ValidationErrorKind::FromUtf8 { .. } => "must decode to UTF-8 text".into(),
        ValidationErrorKind::ContentMediaType { content_media_type } => {
            format!("must be of media type {content_media_type}")
        }
        ValidationErrorKind::Custom { keyword, .. } => format!("breaks the rule {keyword}"),
        ValidationErrorKind::Referencing(_) => "could not be checked: the schema has an unresolvable reference".into(),
        other => format!("breaks the rule {}", other.keyword()),
    }
}

/// The problems of the first alternative that failed, as a hint to why none matched.
fn alternatives_reasons(context: &[Vec<ValidationError<'static>>], instance: &Value, schema: &Value) -> String {
    let mut reasons = Vec::new();
    for error in context.iter().flatten() {
        describe(error, instance, schema, &mut reasons);
    }
    if reasons.is_empty() {
        return String::new();
    }
    let listed: Vec<String> = reasons.iter().map(ToString::to_string).collect();
    format!(" ({})", listed.join("; "))
}

/// `" when source is HEADER or QUERY"` for an error raised inside `then` (`" unless …"` for `else`),
/// `" together with upstreams"` inside `dependentSchemas/upstreams`; empty otherwise. From the
/// innermost such keyword in `schema_path`, an evaluation path (local `$ref`s are followed).
fn condition(schema: &Value, schema_path: &str) -> String {
    let segments: Vec<String> = schema_path.split('/').skip(1).map(unescape).collect();
    let mut found = None;
    let mut expect = Expect::Keyword;
    for (i, segment) in segments.iter().enumerate() {
        expect = match expect {
            Expect::Keyword => match segment.as_str() {
                "properties" | "patternProperties" | "$defs" | "definitions" => Expect::Name(false),
                "dependentSchemas" => Expect::Name(true),
                "allOf" | "anyOf" | "oneOf" | "prefixItems" => Expect::Index,
                "then" | "else" => {
                    found = Some((i, false));
                    Expect::Keyword
                }
                _ => Expect::Keyword,
            },
            Expect::Name(dependent) => {
                if dependent {
                    found = Some((i, true));
                }
                Expect::Keyword
            }
            Expect::Index => Expect::Keyword,
        };
    }
    let Some((at, dependent)) = found else {
        return String::new();
    };
    if dependent {
        return format!(" together with {}", segments[at]);
    }
    let parent = segments[..at].iter().try_fold(schema, |node, segment| {
        if segment == "$ref" {
            resolve(schema, node)
        } else {
            step(node, segment)
        }
    });
    let Some(when) = parent.and_then(|p| p.get("if")).and_then(describe_if) else {
        return String::new();
    };
    if segments[at] == "then" {
        format!(" when {when}")
    } else {
        format!(" unless {when}")
    }
}

enum Expect {
    Keyword,
    /// A property or definition name; `true` after `dependentSchemas`.
    Name(bool),
    Index,
}

/// The condition of an `if` schema in words, e.g. `source is HEADER or QUERY`: its `description`
/// when it has one (the schema words a condition the keywords below cannot name, such as `type is
/// vertex and no API token is given`), else read from its `pattern`, `const` and `enum`.
fn describe_if(schema: &Value) -> Option<String> {
    if let Some(description) = schema.get("description").and_then(Value::as_str) {
        return Some(description.trim_end_matches('.').to_string());
    }
    let mut parts = Vec::new();
    if let Some(pattern) = schema.get("pattern").and_then(Value::as_str) {
        parts.push(format!("it matches {pattern}"));
    }
    if let Some(properties) = schema.get("properties").and_then(Value::as_object) {
        for (name, property) in properties {
            if let Some(value) = property.get("const") {
                parts.push(format!("{name} is {}", plain(value)));
            } else if let Some(options) = property.get("enum").and_then(Value::as_array) {
                let names: Vec<String> = options.iter().map(plain).collect();
                parts.push(format!("{name} is {}", or_list(&names)));
            }
        }
    }
    (!parts.is_empty()).then(|| parts.join(" and "))
}

/// For a `oneOf` or `anyOf` whose alternatives each only require one property: those properties.
fn required_alternatives(schema: &Value, schema_path: &str) -> Option<Vec<String>> {
    let node = schema_path
        .split('/')
        .skip(1)
        .map(unescape)
        .try_fold(schema, |n, s| step(n, &s))?;
    let mut names = Vec::new();
    for alternative in node.as_array()? {
        match required_list(alternative)?.as_slice() {
            [name] => names.push(name.clone()),
            _ => return None,
        }
    }
    Some(names)
}

/// The names of a schema that only says `required` (annotations aside).
fn required_list(schema: &Value) -> Option<Vec<String>> {
    let object: &Map<String, Value> = schema.as_object()?;
    let annotation = |k: &str| matches!(k, "title" | "description" | "$comment");
    if object.keys().any(|k| k != "required" && !annotation(k)) {
        return None;
    }
    let names: Vec<String> = object.get("required")?.as_array()?.iter().map(plain).collect();
    (!names.is_empty()).then_some(names)
}

/// The schema a local `$ref` of `node` points at, in `document`.
fn resolve<'a>(document: &'a Value, node: &Value) -> Option<&'a Value> {
    let target = node.get("$ref")?.as_str()?.strip_prefix('#')?;
    document.pointer(target)
}

fn step<'a>(node: &'a Value, segment: &str) -> Option<&'a Value> {
    match node {
        Value::Object(map) => map.get(segment),
        Value::Array(items) => items.get(segment.parse::<usize>().ok()?),
        _ => None,
    }
}

fn unescape(segment: &str) -> String {
    segment.replace("~1", "/").replace("~0", "~")
}

/// `/data/route/upstreams/0/weight` in `instance` → `data.route.upstreams[0].weight`; `` → `$`.
/// The instance decides whether a numeric segment is an array index or an object key.
fn dotted(instance: &Value, pointer: &str) -> String {
    let mut path = String::from("$");
    let mut node = Some(instance);
    for segment in pointer.split('/').skip(1).map(unescape) {
        match node {
            Some(Value::Array(items)) if segment.parse::<usize>().is_ok() => {
                let index: usize = segment.parse().unwrap_or_default();
                path.push_str(&format!("[{index}]"));
                node = items.get(index);
            }
            _ => {
                path = child(&path, &segment);
                node = node.and_then(|n| n.get(segment.as_str()));
            }
        }
    }
    path
}

/// The path of property `name` of the value at `path`: `a.b`, or `a["x.y"]` for a name that is
/// not a plain identifier.
pub(crate) fn child(path: &str, name: &str) -> String {
    let identifier = name.chars().next().is_some_and(|c| c.is_ascii_alphabetic() || c == '_')
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_');
    match (path == "$", identifier) {
        (true, true) => name.to_string(),
        (false, true) => format!("{path}.{name}"),
        (true, false) => format!("${}", bracket(name)),
        (false, false) => format!("{path}{}", bracket(name)),
    }
}

/// `["name"]`, with the characters no object may hold written as `\uXXXX`, so that a path never
/// carries a control or bidi character into a log or a result.
fn bracket(name: &str) -> String {
    let quoted = Value::String(name.to_string()).to_string();
    let mut out = String::with_capacity(quoted.len() + 2);
    out.push('[');
    for c in quoted.chars() {
        if super::rules::is_forbidden_char(c) {
            for unit in c.encode_utf16(&mut [0; 2]) {
                out.push_str(&format!("\\u{unit:04x}"));
            }
        } else {
            out.push(c);
        }
    }
    out.push(']');
    out
}

/// A schema value in words: strings bare, anything else as compact JSON.
fn plain(value: &Value) -> String {
    match value {
        Value::String(s) => s.clone(),
        other => other.to_string(),
    }
}

fn compact(value: &Value) -> String {
    value.to_string()
}

fn with_article(type_name: &str) -> String {
    match type_name {
        "null" => "null".into(),
        "array" | "integer" | "object" => format!("an {type_name}"),
        other => format!("a {other}"),
    }
}

fn or_list(names: &[String]) -> String {
    join_last(names, "or")
}

fn and_list(names: &[String]) -> String {
    join_last(names, "and")
}

fn join_last(names: &[String], word: &str) -> String {
    match names {
        [] => String::new(),
        [only] => only.clone(),
        [init @ .., last] => format!("{} {word} {last}", init.join(", ")),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn paths_are_dotted_with_indices_and_quoted_odd_keys() {
        let instance =
            json!({"data": {"route": {"upstreams": [{"weight": 1}], "modelMapping": {"gpt-4o": "x", "0": "y"}}}});
        assert_eq!(dotted(&instance, ""), "$");
        assert_eq!(
            dotted(&instance, "/data/route/upstreams/0/weight"),
            "data.route.upstreams[0].weight"
        );
        assert_eq!(
            dotted(&instance, "/data/route/modelMapping/gpt-4o"),
            r#"data.route.modelMapping["gpt-4o"]"#
        );
        assert_eq!(
            dotted(&instance, "/data/route/modelMapping/0"),
            r#"data.route.modelMapping["0"]"#
        );
        assert_eq!(child("$", "a.b"), r#"$["a.b"]"#);
    }

    #[test]
    fn lists_read_as_english() {
        let names = |v: &[&str]| v.iter().map(|s| s.to_string()).collect::<Vec<_>>();
        assert_eq!(or_list(&names(&["HEADER", "QUERY"])), "HEADER or QUERY");
        assert_eq!(and_list(&names(&["a", "b", "c"])), "a, b and c");
    }

    #[test]
    fn conditions_name_the_if_they_come_from() {
        let schema = json!({"properties": {"x": {"if": {"properties": {"mode": {"enum": ["on", "force"]}}}, "then": {"required": ["cert"]}}},
                            "dependentSchemas": {"upstreams": {"not": {"required": ["modelMapping"]}}}});
        assert_eq!(
            condition(&schema, "/properties/x/then/required"),
            " when mode is on or force"
        );
        assert_eq!(
            condition(&schema, "/dependentSchemas/upstreams/not"),
            " together with upstreams"
        );
        assert_eq!(condition(&schema, "/properties/then/type"), "");
        // An `if` with a description is described by it: its keywords may say more than const and enum.
        let worded = json!({"allOf": [{"if": {"description": "type is vertex and no API token is given.",
                                              "properties": {"type": {"const": "vertex"}}, "not": {"required": ["apiTokens"]}},
                                       "then": {"required": ["config"]}}]});
        assert_eq!(
            condition(&worded, "/allOf/0/then/required"),
            " when type is vertex and no API token is given"
        );
        // Through a `$ref` before the `then`, and after it.
        let referred = json!({"items": {"$ref": "#/$defs/c"}, "$defs": {"c": {"allOf": [{"if": {"properties": {"s": {"const": "H"}}},
                               "then": {"properties": {"k": {"$ref": "#/$defs/k"}}}}]}, "k": {"minLength": 1}}});
        assert_eq!(
            condition(&referred, "/items/$ref/allOf/0/then/properties/k/$ref/minLength"),
            " when s is H"
        );
    }

    #[test]
    fn alternatives_that_each_require_one_property_read_as_a_choice() {
        let schema = json!({"properties": {"p": {"anyOf": [{"required": ["a"]}, {"title": "B", "required": ["b"]}]}}});
        let validator = jsonschema::draft202012::new(&schema).unwrap();
        let instance = json!({"p": {}});
        let mut found = Vec::new();
        for error in validator.iter_errors(&instance) {
            describe(&error, &instance, &schema, &mut found);
        }
        assert_eq!(found, [Problem::new("p", "one of a or b is required")]);
    }
}
