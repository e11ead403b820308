//! The Kubernetes REST surface: which endpoint a request addresses, and the
//! answer to it.

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::Query;
use axum::http::{header, HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::Json;
use serde::Deserialize;
use serde_json::Value;

use crate::discovery;
use crate::managed;
use crate::observed::AuditEntry;
use crate::patch::Patch;
use crate::resources::{by_path, ResourceType};
use crate::selector::Selector;
use crate::shared::Shared;
use crate::status::ApiError;
use crate::store::{ListAnswer, Preconditions, Store};
use crate::sync::lock;

pub(crate) enum Endpoint {
    Discovery(Value),
    Resource(ResourceRequest),
}

pub(crate) struct ResourceRequest {
    verb: Verb,
    rt: &'static ResourceType,
    /// None for cluster-scoped types, and for lists across all namespaces.
    namespace: Option<String>,
    name: Option<String>,
    query: HashMap<String, String>,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Verb {
    Get,
    List,
    Watch,
    Create,
    Update,
    Patch,
    Delete,
    DeleteCollection,
}

impl Verb {
    /// The verb as Kubernetes authorization and audit name it.
    fn as_str(self) -> &'static str {
        match self {
            Verb::Get => "get",
            Verb::List => "list",
            Verb::Watch => "watch",
            Verb::Create => "create",
            Verb::Update => "update",
            Verb::Patch => "patch",
            Verb::Delete => "delete",
            Verb::DeleteCollection => "deletecollection",
        }
    }
}

impl Endpoint {
    /// For request counters: resource requests only.
    pub(crate) fn verb_and_resource(&self) -> Option<(&'static str, &'static str)> {
        match self {
            Endpoint::Resource(request) => Some((request.verb.as_str(), request.rt.plural)),
            Endpoint::Discovery(_) => None,
        }
    }
}

/// Maps a request line onto an endpoint, as the API server's routes do.
pub(crate) fn classify(method: &Method, uri: &Uri) -> Result<Endpoint, ApiError> {
    let segments: Vec<&str> = uri.path().split('/').filter(|s| !s.is_empty()).collect();
    let (group, version, rest) = match segments.as_slice() {
        ["version"] => return discovery_endpoint(method, Some(discovery::version())),
        ["api"] => return discovery_endpoint(method, Some(discovery::core_versions())),
        ["apis"] => return discovery_endpoint(method, Some(discovery::groups())),
        ["apis", group] => return discovery_endpoint(method, discovery::group(group)),
        ["api", version, rest @ ..] => ("", *version, rest),
        ["apis", group, version, rest @ ..] => (*group, *version, rest),
        _ => return Err(ApiError::path_not_found()),
    };
    let (namespace, plural, name) = match rest {
        [] => return discovery_endpoint(method, discovery::resources(group, version)),
        ["namespaces", namespace, plural] => (Some(*namespace), *plural, None),
        ["namespaces", namespace, plural, name] => (Some(*namespace), *plural, Some(*name)),
        [plural] => (None, *plural, None),
        [plural, name] => (None, *plural, Some(*name)),
        _ => return Err(ApiError::path_not_found()),
    };
    let rt = by_path(group, version, plural).ok_or_else(ApiError::path_not_found)?;
    // Namespaced objects live under a namespace (though they can be listed
    // across all of them); cluster-scoped ones never do.
    let addressable = match (rt.namespaced, namespace) {
        (true, Some(_)) => true,
        (true, None) => name.is_none(),
        (false, namespace) => namespace.is_none(),
    };
    if !addressable {
        return Err(ApiError::path_not_found());
    }
    let query = Query::<HashMap<String, String>>::try_from_uri(uri)
        .map_err(|error| ApiError::bad_request(error.body_text()))?
        .0;
    let watch = query.get("watch").is_some_and(|w| w == "true" || w == "1");
    let verb = match (name.is_some(), method.clone()) {
        (_, Method::GET) if watch => Verb::Watch,
        (false, Method::GET) => Verb::List,
        (false, Method::POST) => Verb::Create,
        (false, Method::DELETE) => Verb::DeleteCollection,
        (true, Method::GET) => Verb::Get,
        (true, Method::PUT) => Verb::Update,
        (true, Method::PATCH) => Verb::Patch,
        (true, Method::DELETE) => Verb::Delete,
        _ => return Err(method_not_allowed()),
    };
    // Across all namespaces, a namespaced type can only be listed (or watched).
    if rt.namespaced && namespace.is_none() && !matches!(verb, Verb::List | Verb::Watch) {
        return Err(method_not_allowed());
    }
    Ok(Endpoint::Resource(ResourceRequest {
        verb,
        rt,
        namespace: namespace.map(str::to_string),
        name: name.map(str::to_string),
        query,
    }))
}

fn method_not_allowed() -> ApiError {
    ApiError::method_not_allowed("the server does not allow this method on the requested resource")
}

fn discovery_endpoint(method: &Method, document: Option<Value>) -> Result<Endpoint, ApiError> {
    let document = document.ok_or_else(ApiError::path_not_found)?;
    if method != Method::GET {
        return Err(method_not_allowed());
    }
    Ok(Endpoint::Discovery(document))
}

/// What a request is answered with: one object, or a list written out from the stored objects.
enum Answer {
    Object(Arc<Value>),
    List(ListAnswer),
}

/// Answers an API request whose body has been read.
pub(crate) fn respond(shared: &Shared, endpoint: Endpoint, headers: &HeaderMap, body: &[u8]) -> Response {
    let answer = match endpoint {
        Endpoint::Discovery(document) => Ok((StatusCode::OK, Answer::Object(Arc::new(document)))),
        Endpoint::Resource(request) => serve(shared, request, headers, body),
    };
    match answer {
        Ok((status, Answer::Object(object))) => (status, Json(object.as_ref())).into_response(),
        Ok((status, Answer::List(list))) => (status, Json(list)).into_response(),
        Err(error) => error.into_response(),
    }
}

fn serve(
    shared: &Shared,
    request: ResourceRequest,
    headers: &HeaderMap,
    body: &[u8],
) -> Result<(StatusCode, Answer), ApiError> {
    let ResourceRequest {
        verb,
        rt,
        namespace,
        name,
        query,
    } = request;
    if query.contains_key("dryRun") {
        return Err(ApiError::bad_request("dryRun is not supported by kube-sim"));
    }
    let ns = namespace.as_deref().unwrap_or_default();
    let name = name.as_deref().unwrap_or_default();
    let user_agent = headers.get(header::USER_AGENT).and_then(|agent| agent.to_str().ok());
    let manager = managed::manager_name(query.get("fieldManager").map(String::as_str), user_agent);
    // A forced conflict advances the object's resourceVersion, as the concurrent
    // writer it stands for would, so the client has to re-read before retrying.
    let forced_conflict = || {
        if shared.faults.take_conflict(rt.plural, name) {
            lock(&shared.store).touch(rt, ns, name)?;
            return Err(ApiError::stale(rt, name));
        }
        Ok(())
    };
    let object = match verb {
        Verb::Get => {
            let object = match answer_form(headers, "PartialObjectMetadata")? {
                Form::Object => lock(&shared.store).get(rt, ns, name)?,
                Form::Metadata => {
                    lock(&shared.counters).record_metadata_only("get", rt.plural);
                    Arc::new(lock(&shared.store).get_metadata(rt, ns, name)?)
                }
            };
            Ok((StatusCode::OK, object))
        }
        Verb::List => {
            let metadata_only = answer_form(headers, "PartialObjectMetadataList")? == Form::Metadata;
            let selector = |key: &str| query.get(key).map_or("", String::as_str);
            let labels = Selector::parse_labels(selector("labelSelector")).map_err(ApiError::bad_request)?;
            let fields = Selector::parse_fields(selector("fieldSelector")).map_err(ApiError::bad_request)?;
            if metadata_only {
                lock(&shared.counters).record_metadata_only("list", rt.plural);
            }
            let list = lock(&shared.store).list_as(rt, namespace.as_deref(), &labels, &fields, metadata_only);
            lock(&shared.counters).record_listed(rt.plural, list.len());
            return Ok((StatusCode::OK, Answer::List(list)));
        }
        Verb::Create => {
            let object = json_body(headers, body)?;
            let created = audited(shared, verb, rt, ns, |store| store.create(rt, ns, object, &manager))?;
            Ok((StatusCode::CREATED, created))
        }
        Verb::Update => {
            forced_conflict()?;
            let object = json_body(headers, body)?;
            let updated = audited(shared, verb, rt, ns, |store| {
                store.update(rt, ns, name, object, &manager)
            })?;
            Ok((StatusCode::OK, updated))
        }
        Verb::Patch => {
            forced_conflict()?;
            let patch = patch_body(rt, headers, body)?;
            let patched = audited(shared, verb, rt, ns, |store| {
                store.patch(rt, ns, name, &patch, &manager)
            })?;
            Ok((StatusCode::OK, patched))
        }
        Verb::Delete => {
            let preconditions = delete_preconditions(body)?;
            let deleted = audited(shared, verb, rt, ns, |store| store.delete(rt, ns, name, &preconditions))?;
            Ok((StatusCode::OK, deleted))
        }
        Verb::Watch => Err(ApiError::method_not_allowed(
            "watch is not supported by kube-sim; poll with list instead",
        )),
        Verb::DeleteCollection => Err(ApiError::method_not_allowed(
            "deletecollection is not supported by kube-sim; delete objects one by one",
        )),
    };
    object.map(|(status, object)| (status, Answer::Object(object)))
}

/// What a GET or a LIST answers with.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Form {
    Object,
    /// Only metadata (`PartialObjectMetadata`, or `...List` for a list): how a client sees whether
    /// objects changed without reading them whole.
    Metadata,
}

/// The form the `Accept` header asks for: its first media type the server can serve, as the API
/// server chooses (kubectl asks for `as=Table` first, then plain JSON). `metadata_kind` is
/// `PartialObjectMetadata` for a GET, `PartialObjectMetadataList` for a LIST; any other `as=` is
/// passed over. 406 when nothing can be served.
fn answer_form(headers: &HeaderMap, metadata_kind: &str) -> Result<Form, ApiError> {
    let Some(accept) = headers.get(header::ACCEPT).and_then(|value| value.to_str().ok()) else {
        return Ok(Form::Object);
    };
    for media in accept.split(',') {
        let mut parts = media.split(';').map(str::trim);
        let media_type = parts.next().unwrap_or_default().to_ascii_lowercase();
        if !matches!(media_type.as_str(), "application/json" | "application/*" | "*/*") {
            continue;
        }
        let params: HashMap<String, &str> = parts
            .filter_map(|param| param.split_once('='))
            .map(|(key, value)| (key.trim().to_ascii_lowercase(), value.trim()))
            .collect();
        match params.get("as") {
            None => return Ok(Form::Object),
            Some(&wanted)
                if wanted == metadata_kind
                    && params.get("g") == Some(&"meta.k8s.io")
                    && params.get("v") == Some(&"v1") =>
            {
                return Ok(Form::Metadata)
            }
            Some(_) => {}
        }
    }
    Err(ApiError::not_acceptable())
}

/// Applies a write to the store and records it in the audit log, under the
/// store lock so the log is in resourceVersion order.
fn audited(
    shared: &Shared,
    verb: Verb,
    rt: &ResourceType,
    namespace: &str,
    apply: impl FnOnce(&mut Store) -> Result<Arc<Value>, ApiError>,
) -> Result<Arc<Value>, ApiError> {
    let mut store = lock(&shared.store);
    let object = apply(&mut store)?;
    let resource_version = match verb {
        Verb::Delete => store.revision().to_string(),
        _ => object["metadata"]["resourceVersion"]
            .as_str()
            .unwrap_or_default()
            .to_string(),
    };
    lock(&shared.audit).push(AuditEntry {
        verb: verb.as_str().to_string(),
        resource: rt.plural.to_string(),
        namespace: namespace.to_string(),
        name: object["metadata"]["name"].as_str().unwrap_or_default().to_string(),
        resource_version,
    });
    Ok(object)
}

/// The media type of the body, lower-cased, without parameters.
fn media_type(headers: &HeaderMap) -> Option<String> {
    let value = headers.get(header::CONTENT_TYPE)?.to_str().ok()?;
    let media = value.split(';').next().unwrap_or_default().trim();
    Some(media.to_ascii_lowercase())
}

fn parse_json(body: &[u8]) -> Result<Value, ApiError> {
    serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("the request body is not valid JSON: {error}")))
}

fn unsupported(got: &str, accepted: &str) -> ApiError {
    ApiError::unsupported_media_type(format!(
        "the body of the request was in an unknown format - accepted media types include: {accepted} (got {got:?})"
    ))
}

/// POST and PUT bodies: JSON only (no YAML, no protobuf).
fn json_body(headers: &HeaderMap, body: &[u8]) -> Result<Value, ApiError> {
    match media_type(headers).as_deref() {
        None | Some("application/json") => parse_json(body),
        Some(other) => Err(unsupported(other, "application/json")),
    }
}

/// Custom resources have no strategic merge patch, as with a real CRD.
/// Server-side apply (`application/apply-patch+yaml`) is not implemented.
fn patch_body(rt: &ResourceType, headers: &HeaderMap, body: &[u8]) -> Result<Patch, ApiError> {
    let media = media_type(headers).unwrap_or_default();
    match media.as_str() {
        "application/merge-patch+json" => Ok(Patch::Merge(parse_json(body)?)),
        "application/strategic-merge-patch+json" if !rt.custom => Ok(Patch::Strategic(parse_json(body)?)),
        "application/json-patch+json" => match parse_json(body)? {
            Value::Array(operations) => Ok(Patch::Json(operations)),
            _ => Err(ApiError::bad_request("a JSON patch must be an array of operations")),
        },
        other if rt.custom => Err(unsupported(
            other,
            "application/json-patch+json, application/merge-patch+json",
        )),
        other => Err(unsupported(
            other,
            "application/json-patch+json, application/merge-patch+json, application/strategic-merge-patch+json",
        )),
    }
}

/// The optional `DeleteOptions` body of a DELETE; only its preconditions matter here.
fn delete_preconditions(body: &[u8]) -> Result<Preconditions, ApiError> {
    #[derive(Deserialize)]
    struct DeleteOptions {
        preconditions: Option<Preconditions>,
    }
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Preconditions::default());
    }
    let options: DeleteOptions = serde_json::from_slice(body)
        .map_err(|error| ApiError::bad_request(format!("invalid DeleteOptions: {error}")))?;
    Ok(options.preconditions.unwrap_or_default())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn route(method: Method, uri: &str) -> Result<(String, Option<String>, Option<String>), u16> {
        match classify(&method, &uri.parse().unwrap()) {
            Ok(Endpoint::Resource(r)) => Ok((r.verb.as_str().to_string(), r.namespace, r.name)),
            Ok(Endpoint::Discovery(_)) => Ok(("discovery".to_string(), None, None)),
            Err(error) => Err(error.code),
        }
    }

    fn ok(
        verb: &str,
        namespace: Option<&str>,
        name: Option<&str>,
    ) -> Result<(String, Option<String>, Option<String>), u16> {
        Ok((verb.to_string(), namespace.map(String::from), name.map(String::from)))
    }

    #[test]
    fn resource_paths() {
        let cm = "/api/v1/namespaces/ns/configmaps";
        assert_eq!(route(Method::GET, cm), ok("list", Some("ns"), None));
        assert_eq!(route(Method::POST, cm), ok("create", Some("ns"), None));
        assert_eq!(route(Method::GET, &format!("{cm}/x")), ok("get", Some("ns"), Some("x")));
        assert_eq!(
            route(Method::PUT, &format!("{cm}/x")),
            ok("update", Some("ns"), Some("x"))
        );
        assert_eq!(
            route(Method::PATCH, &format!("{cm}/x")),
            ok("patch", Some("ns"), Some("x"))
        );
        assert_eq!(
            route(Method::DELETE, &format!("{cm}/x")),
            ok("delete", Some("ns"), Some("x"))
        );
        assert_eq!(
            route(Method::GET, &format!("{cm}?watch=true")),
            ok("watch", Some("ns"), None)
        );
        assert_eq!(route(Method::GET, "/api/v1/configmaps"), ok("list", None, None));
        assert_eq!(route(Method::GET, "/api/v1/namespaces/ns"), ok("get", None, Some("ns")));
        assert_eq!(route(Method::GET, "/api/v1/namespaces"), ok("list", None, None));
        let plugin = "/apis/extensions.higress.io/v1alpha1/namespaces/ns/wasmplugins/p";
        assert_eq!(route(Method::PUT, plugin), ok("update", Some("ns"), Some("p")));
        assert_eq!(
            route(Method::GET, "/apis/networking.k8s.io/v1/ingresses"),
            ok("list", None, None)
        );
    }

    #[test]
    fn refused_paths() {
        assert_eq!(route(Method::POST, "/api/v1/configmaps"), Err(405));
        assert_eq!(route(Method::GET, "/api/v1/configmaps/x"), Err(404));
        assert_eq!(
            route(Method::GET, "/api/v1/namespaces/ns/configmaps/x/status"),
            Err(404)
        );
        assert_eq!(route(Method::GET, "/api/v1/namespaces/ns/deployments"), Err(404));
        assert_eq!(
            route(Method::GET, "/apis/networking.k8s.io/v1/namespaces/ns/configmaps"),
            Err(404)
        );
        assert_eq!(route(Method::GET, "/openapi/v2"), Err(404));
        assert_eq!(route(Method::POST, "/api/v1/namespaces/ns/configmaps/x"), Err(405));
        assert_eq!(route(Method::POST, "/apis"), Err(405));
    }

    #[test]
    fn discovery_paths() {
        for path in [
            "/api",
            "/api/v1",
            "/apis",
            "/apis/networking.istio.io",
            "/apis/networking.istio.io/v1alpha3",
            "/version",
        ] {
            assert_eq!(route(Method::GET, path), ok("discovery", None, None), "{path}");
        }
        assert_eq!(route(Method::GET, "/apis/apps"), Err(404));
        assert_eq!(route(Method::GET, "/apis/apps/v1"), Err(404));
    }

    #[test]
    fn answer_forms() {
        let form = |accept: Option<&str>, kind: &str| {
            let mut headers = HeaderMap::new();
            if let Some(accept) = accept {
                headers.insert(header::ACCEPT, accept.parse().unwrap());
            }
            answer_form(&headers, kind).map_err(|error| error.code)
        };
        let get = "PartialObjectMetadata";
        assert_eq!(form(None, get), Ok(Form::Object));
        assert_eq!(form(Some("application/json"), get), Ok(Form::Object));
        assert_eq!(form(Some("*/*"), get), Ok(Form::Object));
        // What kube-rs's `get_metadata` and `list_metadata` send.
        let metadata = "application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1";
        assert_eq!(form(Some(metadata), get), Ok(Form::Metadata));
        let list = "application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1";
        assert_eq!(form(Some(list), "PartialObjectMetadataList"), Ok(Form::Metadata));
        // A list's form asked of a GET, or another version: not served.
        assert_eq!(form(Some(list), get), Err(406));
        assert_eq!(
            form(
                Some("application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1beta1"),
                get
            ),
            Err(406)
        );
        // kubectl: tables first, then plain JSON, which is what it gets.
        let kubectl = "application/json;as=Table;v=v1;g=meta.k8s.io,application/json;as=Table;v=v1beta1;g=meta.k8s.io,application/json";
        assert_eq!(form(Some(kubectl), "PartialObjectMetadataList"), Ok(Form::Object));
        assert_eq!(form(Some("application/yaml"), get), Err(406));
    }

    #[test]
    fn media_types() {
        let mut headers = HeaderMap::new();
        let crd = crate::resources::by_name("wasmplugins").unwrap();
        let core = crate::resources::by_name("configmaps").unwrap();
        headers.insert(
            header::CONTENT_TYPE,
            "application/strategic-merge-patch+json".parse().unwrap(),
        );
        assert!(patch_body(core, &headers, b"{}").is_ok());
        assert_eq!(patch_body(crd, &headers, b"{}").err().map(|e| e.code), Some(415));
        headers.insert(header::CONTENT_TYPE, "application/apply-patch+yaml".parse().unwrap());
        assert_eq!(patch_body(core, &headers, b"{}").err().map(|e| e.code), Some(415));
        headers.insert(header::CONTENT_TYPE, "application/json; charset=utf-8".parse().unwrap());
        assert!(json_body(&headers, b"{}").is_ok());
        headers.insert(header::CONTENT_TYPE, "application/yaml".parse().unwrap());
        assert_eq!(json_body(&headers, b"{}").err().map(|e| e.code), Some(415));
    }
}
