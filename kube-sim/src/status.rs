//! Failures as the API server reports them: `Status` objects with the real
//! reasons, codes, messages and details, so clients' error handling is exercised.

use std::fmt;

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use serde_json::{json, Map, Value};

use crate::resources::ResourceType;

const OBJECT_MODIFIED: &str =
    "the object has been modified; please apply your changes to the latest version and try again";

/// A failed request, as the Kubernetes API reports it in a `Status` object.
#[derive(Debug, Clone, PartialEq)]
pub struct ApiError {
    /// HTTP status code, also `Status.code`.
    pub code: u16,
    /// `Status.reason`: `NotFound`, `AlreadyExists`, `Conflict`, `Invalid`, `BadRequest`, ...
    pub reason: String,
    pub message: String,
    /// Boxed: errors travel in every `Result` of the store, keep them small.
    details: Option<Box<Map<String, Value>>>,
}

/// One entry of an `Invalid` error, rendered like Kubernetes' field errors.
pub(crate) struct FieldError {
    pub(crate) field: String,
    reason: &'static str,
    message: String,
}

impl FieldError {
    /// `value` is already rendered the way the API server shows it (quoted strings, `0x0`).
    pub(crate) fn invalid(field: impl Into<String>, value: &str, detail: &str) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueInvalid",
            message: format!("Invalid value: {value}: {detail}"),
        }
    }

    pub(crate) fn too_long(field: impl Into<String>, limit: usize) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueTooLong",
            message: format!("Too long: must have at most {limit} bytes"),
        }
    }

    pub(crate) fn required(field: impl Into<String>, detail: &str) -> Self {
        FieldError {
            field: field.into(),
            reason: "FieldValueRequired",
            message: format!("Required value: {detail}"),
        }
    }
}

impl ApiError {
    fn new(code: u16, reason: &str, message: String) -> Self {
        ApiError {
            code,
            reason: reason.to_string(),
            message,
            details: None,
        }
    }

    fn about(mut self, group: &str, kind: &str, name: &str) -> Self {
        let mut details = Map::new();
        if !name.is_empty() {
            details.insert("name".into(), name.into());
        }
        if !group.is_empty() {
            details.insert("group".into(), group.into());
        }
        details.insert("kind".into(), kind.into());
        self.details = Some(Box::new(details));
        self
    }

    pub(crate) fn not_found(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" not found", rt.qualified_plural());
        Self::new(404, "NotFound", message).about(rt.group, rt.plural, name)
    }

    pub(crate) fn already_exists(rt: &ResourceType, name: &str) -> Self {
        let message = format!("{} \"{name}\" already exists", rt.qualified_plural());
        Self::new(409, "AlreadyExists", message).about(rt.group, rt.plural, name)
    }

    pub(crate) fn conflict(rt: &ResourceType, name: &str, why: &str) -> Self {
        let message = format!(
            "Operation cannot be fulfilled on {} \"{name}\": {why}",
            rt.qualified_plural()
        );
        Self::new(409, "Conflict", message).about(rt.group, rt.plural, name)
    }

    /// The optimistic-concurrency failure: the writer's resourceVersion is not the stored one.
    pub(crate) fn stale(rt: &ResourceType, name: &str) -> Self {
        Self::conflict(rt, name, OBJECT_MODIFIED)
    }

    pub(crate) fn invalid(rt: &ResourceType, name: &str, errors: Vec<FieldError>) -> Self {
        let messages: Vec<String> = errors.iter().map(|e| format!("{}: {}", e.field, e.message)).collect();
        let summary = match messages.as_slice() {
            [one] => one.clone(),
            many => format!("[{}]", many.join(", ")),
        };
        // As recorded from kube-apiserver 1.24: a custom resource is named by
        // its resource, an Ingress by its legacy group `extensions`.
        let (group, kind) = match rt.plural {
            _ if rt.custom => (rt.group, rt.plural),
            "ingresses" => ("extensions", rt.kind),
            _ => (rt.group, rt.kind),
        };
        let qualified = if group.is_empty() {
            kind.to_string()
        } else {
            format!("{kind}.{group}")
        };
        let message = format!("{qualified} \"{name}\" is invalid: {summary}");
        let causes: Vec<Value> = errors
            .iter()
            .map(|e| json!({"reason": e.reason, "message": e.message, "field": e.field}))
            .collect();
        let mut error = Self::new(422, "Invalid", message).about(group, kind, name);
        if let Some(details) = error.details.as_mut() {
            details.insert("causes".into(), causes.into());
        }
        error
    }

    /// A JSON patch that cannot be applied (failed `test`, missing path): 422 as in
    /// the API server, with the patch library's message as the cause.
    pub(crate) fn patch_not_applicable(detail: String) -> Self {
        let mut error = Self::new(
            422,
            "Invalid",
            "the server rejected our request due to an error in our request".to_string(),
        );
        error.details = Some(Box::new(Map::from_iter([(
            "causes".to_string(),
            json!([{ "message": detail }]),
        )])));
        error
    }

    pub(crate) fn bad_request(message: impl Into<String>) -> Self {
        Self::new(400, "BadRequest", message.into())
    }

    pub(crate) fn method_not_allowed(message: impl Into<String>) -> Self {
        Self::new(405, "MethodNotAllowed", message.into())
    }

    pub(crate) fn unsupported_media_type(message: impl Into<String>) -> Self {
        Self::new(415, "UnsupportedMediaType", message.into())
    }

    /// No media type of the request's `Accept` header can be served.
    pub(crate) fn not_acceptable() -> Self {
        Self::new(
            406,
            "NotAcceptable",
            "only the following media types are accepted: application/json, \
             application/json;as=PartialObjectMetadata;g=meta.k8s.io;v=v1, \
             application/json;as=PartialObjectMetadataList;g=meta.k8s.io;v=v1"
                .to_string(),
        )
    }

    pub(crate) fn internal(message: impl Into<String>) -> Self {
        Self::new(500, "InternalError", message.into())
    }

    /// A request body over the API server's limit (`limit` bytes).
    pub(crate) fn request_too_large(limit: usize) -> Self {
        Self::new(
            413,
            "RequestEntityTooLarge",
            format!("Request entity too large: limit is {limit}"),
        )
    }

    /// etcd refused the write: the API server passes etcd's error on as a
    /// 500 without a reason, which clients must not take for a transient failure.
    pub(crate) fn etcd_request_too_large() -> Self {
        Self::new(500, "", "etcdserver: request is too large".to_string())
    }

    /// What the API server answers for a path it does not serve.
    pub(crate) fn path_not_found() -> Self {
        let mut error = Self::new(
            404,
            "NotFound",
            "the server could not find the requested resource".to_string(),
        );
        error.details = Some(Box::default());
        error
    }

    /// A failure injected through [`crate::Faults`], with the reason the API
    /// server gives that status code and client-go's message for it.
    pub(crate) fn injected(code: u16, retry_after: Option<u64>) -> Self {
        let (reason, what) = match code {
            400 => ("BadRequest", "the server rejected our request for an unknown reason"),
            401 => (
                "Unauthorized",
                "the server has asked for the client to provide credentials",
            ),
            403 => (
                "Forbidden",
                "the server does not allow access to the requested resource",
            ),
            404 => ("NotFound", "the server could not find the requested resource"),
            405 => (
                "MethodNotAllowed",
                "the server does not allow this method on the requested resource",
            ),
            409 => ("Conflict", "the server reported a conflict"),
            413 => (
                "RequestEntityTooLarge",
                "the server has rejected the request because it is too large",
            ),
            415 => (
                "UnsupportedMediaType",
                "the server has rejected the request because of its media type",
            ),
            422 => (
                "Invalid",
                "the server rejected our request due to an error in our request",
            ),
            429 => (
                "TooManyRequests",
                "the server has received too many requests and has asked us to try again later",
            ),
            500 => (
                "InternalError",
                "an error on the server has prevented the request from succeeding",
            ),
            503 => (
                "ServiceUnavailable",
                "the server is currently unable to handle the request",
            ),
            504 => (
                "Timeout",
                "the server was unable to return a response in the time allotted",
            ),
            // The API server's StatusReasonUnknown is the empty reason.
            _ => ("", "an error on the server has prevented the request from succeeding"),
        };
        let mut error = Self::new(code, reason, format!("{what} (injected by kube-sim)"));
        if let Some(seconds) = retry_after {
            error.details = Some(Box::new(Map::from_iter([(
                "retryAfterSeconds".to_string(),
                seconds.into(),
            )])));
        }
        error
    }

    /// The `Status` object sent as the response body.
    pub(crate) fn to_status(&self) -> Value {
        let mut status = json!({
            "kind": "Status",
            "apiVersion": "v1",
            "metadata": {},
            "status": "Failure",
            "message": self.message,
        });
        if !self.reason.is_empty() {
            status["reason"] = self.reason.clone().into();
        }
        if let Some(details) = &self.details {
            status["details"] = Value::Object(details.as_ref().clone());
        }
        status["code"] = self.code.into();
        status
    }

    fn retry_after(&self) -> Option<u64> {
        self.details.as_ref()?.get("retryAfterSeconds")?.as_u64()
    }
}

impl fmt::Display for ApiError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} ({} {})", self.message, self.code, self.reason)
    }
}

impl std::error::Error for ApiError {}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let code = StatusCode::from_u16(self.code).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
        let mut response = (code, axum::Json(self.to_status())).into_response();
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_name;

    #[test]
    fn not_found_matches_the_api_server() {
        let cm = by_name("configmaps").unwrap();
        assert_eq!(
            ApiError::not_found(cm, "x").to_status(),
            json!({"kind":"Status","apiVersion":"v1","metadata":{},"status":"Failure",
                   "message":"configmaps \"x\" not found","reason":"NotFound",
                   "details":{"name":"x","kind":"configmaps"},"code":404})
        );
        let ingress = by_name("ingresses").unwrap();
        let status = ApiError::not_found(ingress, "y").to_status();
        assert_eq!(status["details"]["group"], "networking.k8s.io");
        assert_eq!(status["message"], "ingresses.networking.k8s.io \"y\" not found");
    }

    #[test]
    fn invalid_names_the_kind_and_lists_causes() {
        let wasm = by_name("wasmplugins").unwrap();
        let error = ApiError::invalid(
            wasm,
            "p",
            vec![FieldError::invalid(
                "metadata.resourceVersion",
                "0x0",
                "must be specified for an update",
            )],
        );
        assert_eq!(error.code, 422);
        assert_eq!(
            error.message,
            "wasmplugins.extensions.higress.io \"p\" is invalid: metadata.resourceVersion: \
             Invalid value: 0x0: must be specified for an update"
        );
        let status = error.to_status();
        assert_eq!(status["details"]["kind"], "wasmplugins");
        assert_eq!(status["details"]["causes"][0]["field"], "metadata.resourceVersion");
    }

    #[test]
    fn injected_failures_have_the_standard_reasons() {
        assert_eq!(ApiError::injected(403, None).reason, "Forbidden");
        assert_eq!(ApiError::injected(504, None).reason, "Timeout");
        let unknown = ApiError::injected(502, None).to_status();
        assert!(unknown.get("reason").is_none(), "{unknown}");
        assert_eq!(unknown["code"], 502);
    }

    #[test]
    fn injected_429_carries_retry_after() {
        let response = ApiError::injected(429, Some(3)).into_response();
        assert_eq!(response.status(), 429);
        assert_eq!(response.headers()[header::RETRY_AFTER], "3");
    }
}
