//! Raw JSON access to the objects of one namespace. Objects stay `serde_json::Value`s end to end, so
//! every field of a shared object, modelled or not, is written back exactly as it was read.

use crate::higress::{names, Kind, ObjectKey};
use crate::telemetry;
use kube::core::params::{DeleteParams, GetParams, ListParams, PostParams};
use kube::core::Request;
use serde::Deserialize;
use serde_json::value::RawValue;
use serde_json::{json, Value};
use tracing::Instrument;

#[derive(Clone)]
pub struct Api {
    client: kube::Client,
    namespace: String,
}

impl Api {
    pub fn new(client: kube::Client, namespace: &str) -> Self {
        Self {
            client,
            namespace: namespace.to_string(),
        }
    }

    pub fn client(&self) -> &kube::Client {
        &self.client
    }

    fn request(&self, kind: Kind) -> Request {
        let path = match kind.group() {
            "" => format!("/api/v1/namespaces/{}/{}", self.namespace, kind.plural()),
            group => format!(
                "/apis/{group}/{}/namespaces/{}/{}",
                kind.version(),
                self.namespace,
                kind.plural()
            ),
        };
        Request::new(path)
    }

    /// Parsed here rather than by kube-client, which logs a body it cannot parse — and shared objects
    /// hold API tokens. serde's own error names a position, never content.
    async fn send(&self, key: &ObjectKey, request: http::Request<Vec<u8>>) -> Result<Value, kube::Error> {
        let text = self.answer(("get", key.kind, Some(&key.name)), request, 200).await?;
        let Read(object) = serde_json::from_str(&text).map_err(kube::Error::SerdeError)?;
        Ok(object)
    }

    /// The answer's body; the request has a span of its own when spans are exported (what: the
    /// verb, the kind and the object's name; `success`: the status a success answers with).
    async fn answer(
        &self,
        (verb, kind, name): (&'static str, Kind, Option<&str>),
        request: http::Request<Vec<u8>>,
        success: u16,
    ) -> Result<String, kube::Error> {
        let span = telemetry::request_span(verb, kind.plural(), name);
        let answer = self.client.request_text(request).instrument(span.clone()).await;
        telemetry::record_answer(&span, &answer, success);
        answer
    }

    /// `None` when the object does not exist.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Value>, kube::Error> {
        let request = self
            .request(key.kind)
            .get(&key.name, &GetParams::default())
            .map_err(kube::Error::BuildRequest)?;
        match self.send(key, request).await {
            Ok(object) => Ok(Some(object)),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Items of a list, each with its `apiVersion` and `kind` (lists leave them out of items). A
    /// body that cannot be parsed is looked at item by item, to name the objects that cannot be.
    pub async fn list(&self, kind: Kind, label_selector: &str) -> Result<Vec<Value>, ListError> {
        let request = self
            .request(kind)
            .list(&ListParams::default().labels(label_selector))
            .map_err(kube::Error::BuildRequest)?;
        let text = self.answer(("list", kind, None), request, 200).await?;
        #[derive(Deserialize)]
        struct List {
            items: Option<Vec<Read>>,
        }
        let list: List = serde_json::from_str(&text).map_err(|error| match unparseable_items(kind, &text) {
            Some((objects, error)) => ListError {
                error: kube::Error::SerdeError(error),
                objects: Some(objects),
            },
            None => kube::Error::SerdeError(error).into(),
        })?;
        Ok(list
            .items
            .unwrap_or_default()
            .into_iter()
            .map(|Read(mut item)| {
                item["apiVersion"] = Value::String(kind.api_version());
                item["kind"] = Value::String(kind.kind().to_string());
                item
            })
            .collect())
    }

    /// An object's `metadata.resourceVersion`, read as `PartialObjectMetadata` (without its body);
    /// `None` when the object does not exist.
    pub async fn resource_version(&self, key: &ObjectKey) -> Result<Option<String>, kube::Error> {
        let request = self
            .request(key.kind)
            .get_metadata(&key.name, &GetParams::default())
            .map_err(kube::Error::BuildRequest)?;
        match self.answer(("get", key.kind, Some(&key.name)), request, 200).await {
            Ok(text) => Ok(Some(resource_version_of(&text)?)),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// `(name, resourceVersion)` of each item of a list, read as `PartialObjectMetadataList`.
    pub async fn list_versions(&self, kind: Kind, label_selector: &str) -> Result<Vec<(String, String)>, kube::Error> {
        let items: Vec<Versioned> = self.metadata_items(kind, label_selector).await?;
        Ok(items
            .into_iter()
            .map(|item| (item.metadata.name, item.metadata.resource_version))
            .collect())
    }

    /// The objects of a kind with a label selector, metadata only (`PartialObjectMetadataList`): each
    /// as `apiVersion`, `kind` and the part of `metadata` a look reads ([`LookMetadata`]).
    pub async fn list_metadata(&self, kind: Kind, label_selector: &str) -> Result<Vec<Value>, kube::Error> {
        #[derive(Deserialize)]
        struct Item {
            metadata: LookMetadata,
        }
        let items: Vec<Item> = self.metadata_items(kind, label_selector).await?;
        Ok(items
            .into_iter()
            .map(|item| json!({"apiVersion": kind.api_version(), "kind": kind.kind(), "metadata": item.metadata.0}))
            .collect())
    }

    /// The items of a `PartialObjectMetadataList`, each read as `T`.
    async fn metadata_items<T: serde::de::DeserializeOwned>(
        &self,
        kind: Kind,
        label_selector: &str,
    ) -> Result<Vec<T>, kube::Error> {
        #[derive(Deserialize)]
        #[serde(bound = "T: serde::de::DeserializeOwned")]
        struct List<T> {
            /// `null` when the list is empty (a real API server's PartialObjectMetadataList).
            items: Option<Vec<T>>,
        }
        let request = self
            .request(kind)
            .list_metadata(&ListParams::default().labels(label_selector))
            .map_err(kube::Error::BuildRequest)?;
        let text = self.answer(("list", kind, None), request, 200).await?;
        let list: List<T> = serde_json::from_str(&text).map_err(kube::Error::SerdeError)?;
        Ok(list.items.unwrap_or_default())
    }

    /// The object the server answers with is read for its new `resourceVersion` only: a shared
    /// object is large.
    pub async fn create(&self, kind: Kind, object: &Value) -> Result<Written, kube::Error> {
        let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
        let sent = body.len();
        let request = self
            .request(kind)
            .create(&PostParams::default(), body)
            .map_err(kube::Error::BuildRequest)?;
        let name = object.pointer("/metadata/name").and_then(Value::as_str);
        let text = self.answer(("create", kind, name), request, 201).await?;
        Written::of(sent, &text)
    }

    /// PUT carrying the object's `metadata.resourceVersion`: 409 when someone wrote since. The
    /// answer is read as for [`Api::create`].
    pub async fn replace(&self, key: &ObjectKey, object: &Value) -> Result<Written, kube::Error> {
        let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
        let sent = body.len();
        let request = self
            .request(key.kind)
            .replace(&key.name, &PostParams::default(), body)
            .map_err(kube::Error::BuildRequest)?;
        let text = self.answer(("update", key.kind, Some(&key.name)), request, 200).await?;
        Written::of(sent, &text)
    }

    /// Deleting what is already gone succeeds. With `resource_version`, only that version is deleted:
    /// 409 when someone wrote since.
    pub async fn delete(&self, key: &ObjectKey, resource_version: Option<&str>) -> Result<(), kube::Error> {
        let params = DeleteParams {
            preconditions: resource_version.map(|version| kube::api::Preconditions {
                resource_version: Some(version.to_string()),
                uid: None,
            }),
            ..DeleteParams::default()
        };
        let request = self
            .request(key.kind)
            .delete(&key.name, &params)
            .map_err(kube::Error::BuildRequest)?;
        // The answer's body is not needed: reading it could only turn a delete made into an error.
        match self.answer(("delete", key.kind, Some(&key.name)), request, 200).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}

/// What a create or replace wrote.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Written {
    /// The size of what was sent.
    pub bytes: usize,
    /// The object's `metadata.resourceVersion` after the write, as the server answered (`None`: the
    /// answer did not say; the write is done all the same).
    pub resource_version: Option<String>,
}

impl Written {
    fn of(bytes: usize, answer: &str) -> Result<Self, kube::Error> {
        Ok(Written {
            bytes,
            resource_version: resource_version_of(answer).ok(),
        })
    }
}

#[derive(Deserialize)]
struct Versioned {
    metadata: VersionedMetadata,
}

#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct VersionedMetadata {
    #[serde(default)]
    name: String,
    resource_version: String,
}

/// `metadata.resourceVersion` of an object's JSON, without building the rest of it.
fn resource_version_of(object: &str) -> Result<String, kube::Error> {
    let versioned: Versioned = serde_json::from_str(object).map_err(kube::Error::SerdeError)?;
    Ok(versioned.metadata.resource_version)
}

/// A list that could not be read. `objects` names the items that cannot be parsed (`WasmPlugin/<name>`),
/// when the body is a list whose items could be told apart.
#[derive(Debug)]
pub struct ListError {
    pub error: kube::Error,
    pub objects: Option<String>,
}

impl From<kube::Error> for ListError {
    fn from(error: kube::Error) -> Self {
        ListError { error, objects: None }
    }
}

/// The items of a list body that cannot be parsed (typically nested deeper than serde_json's
/// recursion limit), by `Kind/name`, with the first one's parse error; `None` when the body is not a
/// list of JSON values at all or every item parses. The items are first taken as raw JSON text, which
/// needs no recursion; each is then parsed at the depth it had in the list. Neither pass keeps or
/// reports any content but the names; serde's errors give positions only.
fn unparseable_items(kind: Kind, body: &str) -> Option<(String, serde_json::Error)> {
    #[derive(Deserialize)]
    struct RawList<'a> {
        #[serde(borrow)]
        items: Vec<&'a RawValue>,
    }
    #[derive(Deserialize)]
    struct Named {
        metadata: Metadata,
    }
    #[derive(Deserialize)]
    struct Metadata {
        name: String,
    }
    let list: RawList = serde_json::from_str(body).ok()?;
    let mut names = Vec::new();
    let mut first = None;
    for (i, item) in list.items.iter().enumerate() {
        // As deep as it was in the list (`{"items": [item]}`), so it fails here as it failed there.
        let error = match serde_json::from_str::<Value>(&format!("{{\"items\":[{}]}}", item.get())) {
            Ok(_) => continue,
            Err(error) => error,
        };
        names.push(match serde_json::from_str::<Named>(item.get()) {
            Ok(named) => format!("{}/{}", kind.kind(), named.metadata.name),
            Err(_) => format!("{}[{i}]", kind.plural()),
        });
        first.get_or_insert(error);
    }
    Some((names.join(", "), first?))
}

/// An object as read, without its `managedFields`: nothing here reads them, they are most of an
/// object's metadata (a batch of retirements lists thousands of metadata), and a whole-object write
/// that carries none keeps the server's. They are skipped while the answer is parsed, never built.
struct Read(Value);

/// An object's `metadata`, without its `managedFields`.
struct ReadMetadata(Value);

/// What a look reads of an object's `metadata`: its name, namespace, uid, version, deletion and labels,
/// and our own annotations (`higress-route-worker.io/…`: the revision that wrote it). The rest (the
/// console's annotations, `managedFields`) is skipped while the answer is parsed: a batch of
/// retirements on a large cluster looks at thousands of Ingresses, megabytes of metadata each time.
struct LookMetadata(Value);

const LOOK_FIELDS: [&str; 6] = [
    "name",
    "namespace",
    "uid",
    "resourceVersion",
    "deletionTimestamp",
    "labels",
];

impl<'de> Deserialize<'de> for LookMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Metadata;
        impl<'de> serde::de::Visitor<'de> for Metadata {
            type Value = Value;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("an object's metadata")
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
                let mut fields = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key == "annotations" {
                        let OurAnnotations(ours) = map.next_value()?;
                        if !ours.is_empty() {
                            fields.insert(key, Value::Object(ours));
                        }
                    } else if LOOK_FIELDS.contains(&key.as_str()) {
                        fields.insert(key, map.next_value()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(Value::Object(fields))
            }
        }
        deserializer.deserialize_map(Metadata).map(LookMetadata)
    }
}

/// The annotations named `higress-route-worker.io/…`, the others skipped.
struct OurAnnotations(serde_json::Map<String, Value>);

impl<'de> Deserialize<'de> for OurAnnotations {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Annotations;
        impl<'de> serde::de::Visitor<'de> for Annotations {
            type Value = serde_json::Map<String, Value>;
            fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
                formatter.write_str("annotations")
            }
            fn visit_unit<E>(self) -> Result<Self::Value, E> {
                Ok(serde_json::Map::new())
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
                let mut ours = serde_json::Map::new();
                while let Some(key) = map.next_key::<String>()? {
                    if key.starts_with(names::OUR_PREFIX) {
                        ours.insert(key, map.next_value()?);
                    } else {
                        map.next_value::<serde::de::IgnoredAny>()?;
                    }
                }
                Ok(ours)
            }
        }
        deserializer.deserialize_any(Annotations).map(OurAnnotations)
    }
}

impl<'de> Deserialize<'de> for Read {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer.deserialize_map(Fields { skip: None }).map(Read)
    }
}

impl<'de> Deserialize<'de> for ReadMetadata {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        deserializer
            .deserialize_map(Fields {
                skip: Some("managedFields"),
            })
            .map(ReadMetadata)
    }
}

/// A JSON object's fields, as `Value`s, but `metadata` read as [`ReadMetadata`] and the field `skip`
/// passed over.
struct Fields {
    skip: Option<&'static str>,
}

impl<'de> serde::de::Visitor<'de> for Fields {
    type Value = Value;

    fn expecting(&self, formatter: &mut std::fmt::Formatter) -> std::fmt::Result {
        formatter.write_str("a JSON object")
    }

    fn visit_map<A: serde::de::MapAccess<'de>>(self, mut map: A) -> Result<Value, A::Error> {
        let mut fields = serde_json::Map::new();
        while let Some(key) = map.next_key::<String>()? {
            if Some(key.as_str()) == self.skip {
                map.next_value::<serde::de::IgnoredAny>()?;
                continue;
            }
            let value = match (self.skip, key.as_str()) {
                (None, "metadata") => map.next_value::<ReadMetadata>()?.0,
                _ => map.next_value::<Value>()?,
            };
            fields.insert(key, value);
        }
        Ok(Value::Object(fields))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn nested(levels: usize) -> String {
        format!("{}{}", "[".repeat(levels), "]".repeat(levels))
    }

    #[test]
    fn managed_fields_are_not_read_and_the_rest_stays_in_order() {
        let body = r#"{"apiVersion":"v1","kind":"ConfigMap","metadata":{"name":"a","labels":{"x":"y"},
            "managedFields":[{"manager":"console","fieldsV1":{"f:data":{}}}],"resourceVersion":"7"},
            "data":{"metadata":"{\"managedFields\":1}","k":"v"},"spec":{"metadata":{"managedFields":[]}}}"#;
        let Read(object) = serde_json::from_str(body).unwrap();
        let raw: Value = serde_json::from_str(body).unwrap();
        let mut expected = raw.clone();
        expected["metadata"]
            .as_object_mut()
            .unwrap()
            .shift_remove("managedFields");
        assert_eq!(object, expected);
        let keys: Vec<&String> = object["metadata"].as_object().unwrap().keys().collect();
        assert_eq!(keys, ["name", "labels", "resourceVersion"]);
        // Only the object's own metadata loses them.
        assert_eq!(object["spec"]["metadata"]["managedFields"], json!([]));
        let ReadMetadata(metadata) = serde_json::from_value(raw["metadata"].clone()).unwrap();
        assert_eq!(metadata, expected["metadata"]);
    }

    /// A look keeps what the engine's looks read (the revision annotation above all) and nothing of
    /// the console's annotations or `managedFields`.
    #[test]
    fn a_look_reads_names_versions_labels_and_our_annotations_only() {
        let metadata = json!({
            "name": "ai-route-m.internal", "namespace": "higress-system", "uid": "u-1", "resourceVersion": "42",
            "generation": 3, "creationTimestamp": "2026-12-07T00:00:00Z",
            "labels": {"higress.io/resource-definer": "higress"},
            "annotations": {"higress.io/destination": "llm-p.internal.dns:443",
                            names::ANNOTATION_REVISION: "7", "higress.io/comment": "x"},
            "managedFields": [{"manager": "console"}],
        });
        let LookMetadata(look) = serde_json::from_value(metadata.clone()).unwrap();
        assert_eq!(
            look,
            json!({"name": "ai-route-m.internal", "namespace": "higress-system", "uid": "u-1",
                   "resourceVersion": "42", "labels": {"higress.io/resource-definer": "higress"},
                   "annotations": {names::ANNOTATION_REVISION: "7"}})
        );
        // No annotation of ours (or `null`): none at all, as a look of an object without them reads.
        for annotations in [json!({"higress.io/comment": "x"}), Value::Null] {
            let mut metadata = metadata.clone();
            metadata["annotations"] = annotations;
            let LookMetadata(look) = serde_json::from_value(metadata).unwrap();
            assert_eq!(look.get("annotations"), None);
        }
    }

    #[test]
    fn a_list_too_deep_to_parse_names_the_items_that_are() {
        let item = |name: &str, levels: usize| {
            format!(
                r#"{{"metadata":{{"name":"{name}"}},"spec":{{"apiTokens":["sk-hidden"],"deep":{}}}}}"#,
                nested(levels)
            )
        };
        let body = format!(
            r#"{{"kind":"WasmPluginList","items":[{},{},{}]}}"#,
            item("ok", 3),
            item("ai-proxy.internal", 200),
            item("other", 130)
        );
        assert!(serde_json::from_str::<Value>(&body).is_err());
        let (objects, error) = unparseable_items(Kind::WasmPlugin, &body).expect("named");
        assert_eq!(objects, "WasmPlugin/ai-proxy.internal, WasmPlugin/other");
        assert!(error.to_string().contains("recursion limit"), "{error}");
        assert!(!error.to_string().contains("sk-hidden"));
        // Just past the limit only inside the list: still named.
        let edge = (120..128)
            .map(|levels| format!(r#"{{"items":[{}]}}"#, item("edge", levels)))
            .find(|body| serde_json::from_str::<Value>(body).is_err())
            .expect("some depth fails");
        assert_eq!(unparseable_items(Kind::WasmPlugin, &edge).unwrap().0, "WasmPlugin/edge");
        // An item without a name is named by its place; a body that is no list names nothing.
        let unnamed = format!(r#"{{"items":[{{"spec":{}}}]}}"#, nested(200));
        assert_eq!(
            unparseable_items(Kind::WasmPlugin, &unnamed).unwrap().0,
            "wasmplugins[0]"
        );
        assert!(unparseable_items(Kind::WasmPlugin, "{\"items\": [").is_none());
        assert!(unparseable_items(Kind::WasmPlugin, r#"{"items":[{"metadata":{"name":"a"}}]}"#).is_none());
    }
}
