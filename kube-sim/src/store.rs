//! The object store and the API server's write rules: one global
//! resourceVersion counter, optimistic concurrency, server-owned metadata,
//! generation and status-subresource handling. Pure logic, no I/O.

use std::collections::BTreeMap;
use std::sync::Arc;

use serde::Deserialize;
use serde_json::{json, Map, Value};

use crate::managed;
use crate::patch::{Patch, PatchError};
use crate::resources::{ResourceType, NAMESPACES};
use crate::schema;
use crate::selector::Selector;
use crate::status::{ApiError, FieldError};
use crate::validation::{content_errors, metadata_errors};

/// etcd's default limit on one request (`--max-request-bytes`, 1.5 MiB): a
/// larger object cannot be stored.
pub(crate) const ETCD_MAX_REQUEST_BYTES: usize = 1536 * 1024;

/// Objects by resource plural, then by (namespace, name); the namespace is
/// empty for cluster-scoped types. Ordered as etcd lists keys.
#[derive(Default)]
pub(crate) struct Store {
    revision: u64,
    /// Shared with the answers that carry them: an object is large, and an answer need not copy it.
    objects: BTreeMap<&'static str, BTreeMap<(String, String), Arc<Value>>>,
}

/// `DeleteOptions.preconditions`.
#[derive(Debug, Default, Deserialize)]
#[serde(rename_all = "camelCase")]
pub(crate) struct Preconditions {
    pub(crate) resource_version: Option<String>,
    pub(crate) uid: Option<String>,
}

/// An object taken apart: `apiVersion` and `kind` are implied by the type.
struct Parts {
    /// Without `managedFields`, which are in `recorded_managers`.
    metadata: Map<String, Value>,
    /// The `managedFields` the request carried; empty when it sent none.
    recorded_managers: Vec<Value>,
    /// Everything else: `spec`, `data`, `status`, ...
    body: Map<String, Value>,
}

impl Store {
    /// The global resourceVersion: the number of writes so far.
    pub(crate) fn revision(&self) -> u64 {
        self.revision
    }

    fn stored(&self, rt: &ResourceType, namespace: &str, name: &str) -> Option<&Value> {
        self.objects
            .get(rt.plural)?
            .get(&(namespace.to_string(), name.to_string()))
            .map(Arc::as_ref)
    }

    pub(crate) fn get(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Arc<Value>, ApiError> {
        self.objects
            .get(rt.plural)
            .and_then(|table| table.get(&(namespace.to_string(), name.to_string())))
            .cloned()
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// GET answered as `PartialObjectMetadata`: the object's metadata only.
    pub(crate) fn get_metadata(&self, rt: &ResourceType, namespace: &str, name: &str) -> Result<Value, ApiError> {
        self.stored(rt, namespace, name)
            .map(|object| serde_json::to_value(PartialObjectMetadata(object)).expect("metadata serializes"))
            .ok_or_else(|| ApiError::not_found(rt, name))
    }

    /// A `...List` object; `namespace` None lists across all namespaces.
    pub(crate) fn list(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &Selector,
        fields: &Selector,
    ) -> Value {
        serde_json::to_value(self.list_as(rt, namespace, labels, fields, false)).expect("a list serializes")
    }

    /// `metadata_only`: answered as `PartialObjectMetadataList`, each item its object's metadata. The
    /// items are the stored objects themselves (shared, not copied): the answer is written out after
    /// the store's lock is released.
    pub(crate) fn list_as(
        &self,
        rt: &ResourceType,
        namespace: Option<&str>,
        labels: &Selector,
        fields: &Selector,
        metadata_only: bool,
    ) -> ListAnswer {
        let items: Vec<Arc<Value>> = self
            .objects
            .get(rt.plural)
            .into_iter()
            .flatten()
            .filter(|((ns, name), object)| {
                namespace.is_none_or(|wanted| wanted == ns)
                    && fields.matches(|field| match field {
                        "metadata.name" => Some(name.as_str()),
                        "metadata.namespace" => Some(ns.as_str()),
                        _ => None,
                    })
                    && labels.matches(|key| object["metadata"]["labels"].get(key)?.as_str())
            })
            .map(|(_, object)| Arc::clone(object))
            .collect();
        let (kind, api_version) = match metadata_only {
            true => ("PartialObjectMetadataList".to_string(), "meta.k8s.io/v1".to_string()),
            false => (rt.list_kind(), rt.api_version()),
        };
        ListAnswer {
            kind,
            api_version,
            resource_version: self.revision.to_string(),
            items,
            metadata_only,
        }
    }

    /// POST. `namespace` is the one in the request path (empty for
    /// cluster-scoped types); `manager` is the field manager of the write.
    pub(crate) fn create(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        object: Value,
        manager: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let Parts {
            mut metadata,
            recorded_managers,
            mut body,
        } = split(rt, object)?;
        scope_to_namespace(rt, namespace, &mut metadata)?;
        let name = match (text(&metadata, "name"), text(&metadata, "generateName")) {
            (Some(name), _) => name.to_string(),
            (None, Some(prefix)) => self.generate_name(rt, namespace, prefix),
            (None, None) => {
                let required = FieldError::required("metadata.name", "name or generateName is required");
                return Err(ApiError::invalid(rt, "", vec![required]));
            }
        };
        metadata.insert("name".into(), name.clone().into());
        validate(rt, &name, &metadata, &body)?;
        if rt.namespaced && self.stored(NAMESPACES, "", namespace).is_none() {
            return Err(ApiError::not_found(NAMESPACES, namespace));
        }
        if self.stored(rt, namespace, &name).is_some() {
            return Err(ApiError::already_exists(rt, &name));
        }
        if text(&metadata, "resourceVersion").is_some() {
            return Err(ApiError::internal(
                "resourceVersion should not be set on objects to be created",
            ));
        }
        metadata.insert("uid".into(), new_uid().into());
        // Set on commit; inserted here to take its place among the leading fields.
        metadata.insert("resourceVersion".into(), Value::Null);
        let now = now();
        metadata.insert("creationTimestamp".into(), now.clone().into());
        if rt.tracks_generation {
            metadata.insert("generation".into(), 1.into());
        } else {
            metadata.shift_remove("generation");
        }
        if rt.status_subresource {
            body.shift_remove("status");
        }
        apply_creation_defaults(rt, &mut body);
        normalize(rt, &name, &mut metadata, &mut body);
        let mut created = assemble(rt, metadata, body);
        let managers = managed::after_update(
            rt,
            &recorded_managers,
            &managed::empty_object(rt),
            &created,
            manager,
            &now,
        );
        set_managed_fields(&mut created, managers);
        check_stored_size(&created)?;
        Ok(self.commit(rt, namespace, &name, created))
    }

    /// PUT. Custom resources require `metadata.resourceVersion`; built-in types
    /// accept an unconditional replace.
    pub(crate) fn update(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        object: Value,
        manager: &str,
    ) -> Result<Arc<Value>, ApiError> {
        if self.stored(rt, namespace, name).is_none() {
            return Err(ApiError::not_found(rt, name));
        }
        let mut parts = split(rt, object)?;
        check_identity(rt, namespace, name, &mut parts.metadata)?;
        if rt.custom && text(&parts.metadata, "resourceVersion").is_none() {
            let error = FieldError::invalid("metadata.resourceVersion", "0x0", "must be specified for an update");
            return Err(ApiError::invalid(rt, name, vec![error]));
        }
        self.write(rt, namespace, name, parts, manager)
    }

    /// PATCH. The patched object keeps the stored resourceVersion unless the
    /// patch sets one, which then must be current.
    pub(crate) fn patch(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        patch: &Patch,
        manager: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let current = self
            .stored(rt, namespace, name)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let patched = patch.apply(current).map_err(|error| match error {
            PatchError::Malformed(message) => ApiError::bad_request(message),
            PatchError::NotApplicable(message) => ApiError::patch_not_applicable(message),
        })?;
        let mut parts = split(rt, patched)?;
        check_identity(rt, namespace, name, &mut parts.metadata)?;
        self.write(rt, namespace, name, parts, manager)
    }

    /// DELETE. Deleting a namespace deletes everything in it at once (there is
    /// no namespace controller and no `Terminating` phase).
    pub(crate) fn delete(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        preconditions: &Preconditions,
    ) -> Result<Arc<Value>, ApiError> {
        let current = self
            .stored(rt, namespace, name)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        for (field, label, wanted) in [
            ("uid", "UID", &preconditions.uid),
            ("resourceVersion", "ResourceVersion", &preconditions.resource_version),
        ] {
            let actual = current["metadata"][field].as_str().unwrap_or_default();
            if let Some(wanted) = wanted.as_deref().filter(|wanted| *wanted != actual) {
                let why =
                    format!("Precondition failed: {label} in precondition: {wanted}, {label} in object meta: {actual}");
                return Err(ApiError::conflict(rt, name, &why));
            }
        }
        let key = (namespace.to_string(), name.to_string());
        let removed = self
            .objects
            .get_mut(rt.plural)
            .and_then(|table| table.remove(&key))
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        if rt == NAMESPACES {
            for table in self.objects.values_mut() {
                table.retain(|(ns, _), _| ns != name);
            }
        }
        self.revision += 1;
        Ok(removed)
    }

    /// Advances an object's resourceVersion without changing it, standing in
    /// for a concurrent writer.
    pub(crate) fn touch(&mut self, rt: &ResourceType, namespace: &str, name: &str) -> Result<(), ApiError> {
        let key = (namespace.to_string(), name.to_string());
        let object = self
            .objects
            .get_mut(rt.plural)
            .and_then(|table| table.get_mut(&key))
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        self.revision += 1;
        Arc::make_mut(object)["metadata"]["resourceVersion"] = self.revision.to_string().into();
        Ok(())
    }

    /// The shared tail of PUT and PATCH: optimistic concurrency, server-owned
    /// fields, generation. A write that changes nothing is not stored and keeps
    /// the resourceVersion, as in the API server.
    fn write(
        &mut self,
        rt: &ResourceType,
        namespace: &str,
        name: &str,
        parts: Parts,
        manager: &str,
    ) -> Result<Arc<Value>, ApiError> {
        let Parts {
            mut metadata,
            recorded_managers,
            mut body,
        } = parts;
        let current = self
            .stored(rt, namespace, name)
            .ok_or_else(|| ApiError::not_found(rt, name))?;
        let current_version = current["metadata"]["resourceVersion"].as_str().unwrap_or_default();
        if text(&metadata, "resourceVersion").is_some_and(|version| version != current_version) {
            return Err(ApiError::stale(rt, name));
        }
        validate(rt, name, &metadata, &body)?;
        metadata.insert("resourceVersion".into(), current_version.into());
        for owned in ["uid", "creationTimestamp"] {
            match current["metadata"].get(owned) {
                Some(value) => metadata.insert(owned.into(), value.clone()),
                None => metadata.shift_remove(owned),
            };
        }
        if rt.status_subresource {
            match current.get("status") {
                Some(status) => body.insert("status".into(), status.clone()),
                None => body.shift_remove("status"),
            };
        }
        normalize(rt, name, &mut metadata, &mut body);
        if rt.tracks_generation {
            let generation = current["metadata"]["generation"].as_u64().unwrap_or(1);
            let changed = current.as_object().map(desired_state) != Some(desired_state(&body));
            let bump = u64::from(changed);
            metadata.insert("generation".into(), (generation + bump).into());
        } else {
            metadata.shift_remove("generation");
        }
        let mut updated = assemble(rt, metadata, body);
        // A request without managedFields keeps the stored ones.
        let recorded_managers = match recorded_managers.is_empty() {
            true => current["metadata"]["managedFields"]
                .as_array()
                .cloned()
                .unwrap_or_default(),
            false => recorded_managers,
        };
        let managers = managed::after_update(rt, &recorded_managers, current, &updated, manager, &now());
        set_managed_fields(&mut updated, managers);
        if &updated == current {
            return Ok(Arc::new(updated));
        }
        check_stored_size(&updated)?;
        Ok(self.commit(rt, namespace, name, updated))
    }

    /// Stores the object under the next resourceVersion.
    fn commit(&mut self, rt: &ResourceType, namespace: &str, name: &str, mut object: Value) -> Arc<Value> {
        self.revision += 1;
        object["metadata"]["resourceVersion"] = self.revision.to_string().into();
        let object = Arc::new(object);
        self.objects
            .entry(rt.plural)
            .or_default()
            .insert((namespace.to_string(), name.to_string()), Arc::clone(&object));
        object
    }

    fn generate_name(&self, rt: &ResourceType, namespace: &str, prefix: &str) -> String {
        const ALPHABET: &[u8] = b"bcdfghjklmnpqrstvwxz2456789";
        loop {
            let suffix: String = (0..5)
                .map(|_| char::from(ALPHABET[rand::random_range(0..ALPHABET.len())]))
                .collect();
            let name = format!("{prefix}{suffix}");
            if self.stored(rt, namespace, &name).is_none() {
                return name;
            }
        }
    }
}

/// A non-empty string field of metadata.
fn text<'a>(metadata: &'a Map<String, Value>, key: &str) -> Option<&'a str> {
    metadata.get(key)?.as_str().filter(|s| !s.is_empty())
}

fn split(rt: &ResourceType, object: Value) -> Result<Parts, ApiError> {
    let Value::Object(mut body) = object else {
        return Err(ApiError::bad_request(format!(
            "the object provided is unrecognized (must be of type {}): not a JSON object",
            rt.kind
        )));
    };
    let api_version = rt.api_version();
    match body.shift_remove("apiVersion") {
        Some(Value::String(given)) if given != api_version => {
            return Err(ApiError::bad_request(format!(
                "the API version in the data ({given}) does not match the expected API version ({api_version})"
            )))
        }
        _ => {}
    }
    match body.shift_remove("kind") {
        Some(Value::String(given)) if given != rt.kind => {
            return Err(ApiError::bad_request(format!(
                "the kind in the data ({given}) does not match the expected kind ({})",
                rt.kind
            )))
        }
        _ => {}
    }
    let mut metadata = match body.shift_remove("metadata") {
        None | Some(Value::Null) => Map::new(),
        Some(Value::Object(metadata)) => metadata,
        Some(_) => return Err(ApiError::bad_request("metadata must be a JSON object")),
    };
    let recorded_managers = match metadata.shift_remove("managedFields") {
        Some(Value::Array(entries)) => entries,
        _ => Vec::new(),
    };
    if let Some(schema) = schema::of(rt) {
        let mut pruned = Value::Object(body);
        schema::prune(&mut pruned, schema);
        body = match pruned {
            Value::Object(body) => body,
            _ => unreachable!("pruning keeps an object an object"),
        };
    }
    Ok(Parts {
        metadata,
        recorded_managers,
        body,
    })
}

/// Reassembles an object in the API server's field order.
fn assemble(rt: &ResourceType, metadata: Map<String, Value>, body: Map<String, Value>) -> Value {
    const LEADING: [&str; 7] = [
        "name",
        "generateName",
        "namespace",
        "uid",
        "resourceVersion",
        "generation",
        "creationTimestamp",
    ];
    let mut ordered: Map<String, Value> = LEADING
        .iter()
        .filter_map(|key| Some((key.to_string(), metadata.get(*key)?.clone())))
        .collect();
    ordered.extend(metadata.into_iter().filter(|(key, _)| !LEADING.contains(&key.as_str())));
    let mut object = Map::new();
    object.insert("apiVersion".into(), rt.api_version().into());
    object.insert("kind".into(), rt.kind.into());
    object.insert("metadata".into(), Value::Object(ordered));
    object.extend(body);
    Value::Object(object)
}

fn scope_to_namespace(rt: &ResourceType, namespace: &str, metadata: &mut Map<String, Value>) -> Result<(), ApiError> {
    if !rt.namespaced {
        metadata.shift_remove("namespace");
        return Ok(());
    }
    if text(metadata, "namespace").is_some_and(|given| given != namespace) {
        return Err(ApiError::bad_request(
            "the namespace of the provided object does not match the namespace sent on the request",
        ));
    }
    metadata.insert("namespace".into(), namespace.into());
    Ok(())
}

/// The body of a PUT or the result of a PATCH must still name the object in the URL.
fn check_identity(
    rt: &ResourceType,
    namespace: &str,
    name: &str,
    metadata: &mut Map<String, Value>,
) -> Result<(), ApiError> {
    let given = text(metadata, "name").unwrap_or_default();
    if given != name {
        return Err(ApiError::bad_request(format!(
            "the name of the object ({given}) does not match the name on the URL ({name})"
        )));
    }
    scope_to_namespace(rt, namespace, metadata)
}

fn validate(
    rt: &ResourceType,
    name: &str,
    metadata: &Map<String, Value>,
    body: &Map<String, Value>,
) -> Result<(), ApiError> {
    let mut errors = metadata_errors(rt, name, metadata);
    errors.extend(content_errors(rt, body));
    if errors.is_empty() {
        Ok(())
    } else {
        Err(ApiError::invalid(rt, name, errors))
    }
}

/// What `metadata.generation` tracks: everything but metadata and status.
fn desired_state(fields: &Map<String, Value>) -> BTreeMap<&str, &Value> {
    fields
        .iter()
        .filter(|(key, _)| !["apiVersion", "kind", "metadata", "status"].contains(&key.as_str()))
        .map(|(key, value)| (key.as_str(), value))
        .collect()
}

/// An object as `PartialObjectMetadata` (meta.k8s.io/v1): its whole `metadata`, nothing else.
/// A LIST's answer: `{kind, apiVersion, metadata: {resourceVersion}, items}`, its items written
/// straight from the stored objects (or, metadata only, as `PartialObjectMetadata` of each).
pub(crate) struct ListAnswer {
    kind: String,
    api_version: String,
    resource_version: String,
    items: Vec<Arc<Value>>,
    metadata_only: bool,
}

impl ListAnswer {
    pub(crate) fn len(&self) -> usize {
        self.items.len()
    }
}

impl serde::Serialize for ListAnswer {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::{SerializeMap, SerializeSeq};
        struct Items<'a>(&'a ListAnswer);
        impl serde::Serialize for Items<'_> {
            fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
                let mut seq = serializer.serialize_seq(Some(self.0.items.len()))?;
                for object in &self.0.items {
                    match self.0.metadata_only {
                        true => seq.serialize_element(&PartialObjectMetadata(object))?,
                        false => seq.serialize_element(object.as_ref())?,
                    }
                }
                seq.end()
            }
        }
        let mut map = serializer.serialize_map(Some(4))?;
        map.serialize_entry("kind", &self.kind)?;
        map.serialize_entry("apiVersion", &self.api_version)?;
        map.serialize_entry("metadata", &json!({"resourceVersion": self.resource_version}))?;
        // A real API server answers an empty PartialObjectMetadataList with `"items": null` (it builds
        // that list by appending to a nil slice); its typed and custom-resource lists say `[]`.
        match self.metadata_only && self.items.is_empty() {
            true => map.serialize_entry("items", &Value::Null)?,
            false => map.serialize_entry("items", &Items(self))?,
        }
        map.end()
    }
}

/// An object as `PartialObjectMetadata`: its metadata only.
struct PartialObjectMetadata<'a>(&'a Value);

impl serde::Serialize for PartialObjectMetadata<'_> {
    fn serialize<S: serde::Serializer>(&self, serializer: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        let mut map = serializer.serialize_map(Some(3))?;
        map.serialize_entry("kind", "PartialObjectMetadata")?;
        map.serialize_entry("apiVersion", "meta.k8s.io/v1")?;
        map.serialize_entry("metadata", &self.0["metadata"])?;
        map.end()
    }
}

/// `managedFields` go last in metadata, as in the API server's Go type; none at all when no manager owns a field.
fn set_managed_fields(object: &mut Value, managers: Vec<Value>) {
    if let Some(metadata) = object["metadata"].as_object_mut() {
        metadata.shift_remove("managedFields");
        if !managers.is_empty() {
            metadata.insert("managedFields".into(), managers.into());
        }
    }
}

/// What etcd would refuse. Sizes are of the object's JSON; the API server
/// stores built-in types as protobuf, a little smaller.
fn check_stored_size(object: &Value) -> Result<(), ApiError> {
    struct Count(usize);
    impl std::io::Write for Count {
        fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
            self.0 += bytes.len();
            Ok(bytes.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }
    let mut size = Count(0);
    serde_json::to_writer(&mut size, object).map_err(|error| ApiError::internal(error.to_string()))?;
    if size.0 > ETCD_MAX_REQUEST_BYTES {
        return Err(ApiError::etcd_request_too_large());
    }
    Ok(())
}

fn apply_creation_defaults(rt: &ResourceType, body: &mut Map<String, Value>) {
    match rt.plural {
        // The Ingress status the API server reports before any controller writes one.
        "ingresses" => {
            body.insert("status".into(), json!({"loadBalancer": {}}));
        }
        "namespaces" => {
            let spec = body.entry("spec").or_insert_with(|| json!({}));
            if let Value::Object(spec) = spec {
                spec.entry("finalizers").or_insert_with(|| json!(["kubernetes"]));
            }
            body.insert("status".into(), json!({"phase": "Active"}));
        }
        "secrets" => {
            body.entry("type").or_insert_with(|| "Opaque".into());
        }
        _ => {}
    }
}

/// What the API server does to every write of these types.
fn normalize(rt: &ResourceType, name: &str, metadata: &mut Map<String, Value>, body: &mut Map<String, Value>) {
    match rt.plural {
        "namespaces" => {
            let labels = metadata.entry("labels").or_insert_with(|| json!({}));
            if let Value::Object(labels) = labels {
                labels.insert("kubernetes.io/metadata.name".into(), name.into());
            }
        }
        // `stringData` is write-only: it is merged into `data`, base64-encoded.
        "secrets" => {
            if let Some(Value::Object(strings)) = body.shift_remove("stringData") {
                let data = body.entry("data").or_insert_with(|| json!({}));
                if let Value::Object(data) = data {
                    for (key, value) in strings {
                        if let Some(value) = value.as_str() {
                            data.insert(key, base64(value.as_bytes()).into());
                        }
                    }
                }
            }
        }
        _ => {}
    }
}

fn base64(bytes: &[u8]) -> String {
    const ALPHABET: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    let mut out = String::with_capacity(bytes.len().div_ceil(3) * 4);
    for chunk in bytes.chunks(3) {
        let n = chunk
            .iter()
            .enumerate()
            .fold(0u32, |n, (i, b)| n | u32::from(*b) << (16 - 8 * i));
        for i in 0..4 {
            if i <= chunk.len() {
                out.push(char::from(ALPHABET[(n >> (18 - 6 * i) & 63) as usize]));
            } else {
                out.push('=');
            }
        }
    }
    out
}

/// A random (version 4) UUID.
fn new_uid() -> String {
    let mut bytes: [u8; 16] = rand::random();
    bytes[6] = (bytes[6] & 0x0f) | 0x40;
    bytes[8] = (bytes[8] & 0x3f) | 0x80;
    let hex: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{}-{}-{}-{}-{}",
        &hex[..8],
        &hex[8..12],
        &hex[12..16],
        &hex[16..20],
        &hex[20..]
    )
}

fn now() -> String {
    chrono::Utc::now().format("%Y-%m-%dT%H:%M:%SZ").to_string()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::resources::by_name;

    const NS: &str = "higress-system";
    const MANAGER: &str = "test";

    fn store() -> Store {
        let mut store = Store::default();
        let namespace = json!({"apiVersion": "v1", "kind": "Namespace", "metadata": {"name": NS}});
        store.create(NAMESPACES, "", namespace, MANAGER).unwrap();
        store
    }

    fn rt(plural: &str) -> &'static ResourceType {
        by_name(plural).unwrap()
    }

    fn configmap(name: &str, data: Value) -> Value {
        json!({"apiVersion": "v1", "kind": "ConfigMap", "metadata": {"name": name}, "data": data})
    }

    fn wasmplugin(name: &str, spec: Value) -> Value {
        json!({"apiVersion": "extensions.higress.io/v1alpha1", "kind": "WasmPlugin",
               "metadata": {"name": name}, "spec": spec})
    }

    fn version(object: &Value) -> u64 {
        object["metadata"]["resourceVersion"].as_str().unwrap().parse().unwrap()
    }

    #[test]
    fn create_fills_in_server_owned_fields() {
        let mut store = store();
        let before = store.revision();
        let cm = store
            .create(
                rt("configmaps"),
                NS,
                json!({"metadata": {"name": "a", "uid": "mine"}}),
                MANAGER,
            )
            .unwrap();
        assert_eq!(cm["apiVersion"], "v1");
        assert_eq!(cm["kind"], "ConfigMap");
        assert_eq!(cm["metadata"]["namespace"], NS);
        assert_eq!(cm["metadata"]["uid"].as_str().unwrap().len(), 36);
        assert_ne!(cm["metadata"]["uid"], "mine");
        assert!(cm["metadata"]["creationTimestamp"].as_str().unwrap().ends_with('Z'));
        assert_eq!(version(&cm), before + 1);
        assert_eq!(store.revision(), before + 1);
        assert!(cm["metadata"].get("generation").is_none());

        let plugin = store
            .create(rt("wasmplugins"), NS, wasmplugin("p", json!({"x": 1})), MANAGER)
            .unwrap();
        assert_eq!(plugin["metadata"]["generation"], 1);
    }

    #[test]
    fn create_refusals() {
        let mut store = store();
        let cms = rt("configmaps");
        store.create(cms, NS, configmap("a", json!({})), MANAGER).unwrap();
        let reason = |result: Result<Arc<Value>, ApiError>| result.unwrap_err().reason;
        assert_eq!(
            reason(store.create(cms, NS, configmap("a", json!({})), MANAGER)),
            "AlreadyExists"
        );
        assert_eq!(
            reason(store.create(cms, "nowhere", configmap("b", json!({})), MANAGER)),
            "NotFound"
        );
        assert_eq!(
            reason(store.create(cms, NS, json!({"metadata": {}}), MANAGER)),
            "Invalid"
        );
        assert_eq!(
            reason(store.create(cms, NS, configmap("Bad_Name", json!({})), MANAGER)),
            "Invalid"
        );
        let elsewhere = json!({"metadata": {"name": "c", "namespace": "default"}});
        assert_eq!(reason(store.create(cms, NS, elsewhere, MANAGER)), "BadRequest");
        let wrong_kind = json!({"kind": "Secret", "metadata": {"name": "d"}});
        assert_eq!(reason(store.create(cms, NS, wrong_kind, MANAGER)), "BadRequest");
        let with_version = json!({"metadata": {"name": "e", "resourceVersion": "3"}});
        assert_eq!(reason(store.create(cms, NS, with_version, MANAGER)), "InternalError");
    }

    #[test]
    fn generate_name_appends_a_suffix() {
        let mut store = store();
        let cm = store
            .create(
                rt("configmaps"),
                NS,
                json!({"metadata": {"generateName": "gen-"}}),
                MANAGER,
            )
            .unwrap();
        let name = cm["metadata"]["name"].as_str().unwrap();
        assert!(name.starts_with("gen-") && name.len() == 9, "{name}");
    }

    #[test]
    fn update_enforces_optimistic_concurrency() {
        let mut store = store();
        let cms = rt("configmaps");
        let created = store
            .create(cms, NS, configmap("a", json!({"k": "1"})), MANAGER)
            .unwrap();
        let mut stale = Value::clone(&created);
        let mut fresh = Value::clone(&created);
        fresh["data"]["k"] = "2".into();
        let updated = store.update(cms, NS, "a", fresh, MANAGER).unwrap();
        assert_eq!(version(&updated), version(&created) + 1);
        assert_eq!(updated["metadata"]["uid"], created["metadata"]["uid"]);
        stale["data"]["k"] = "3".into();
        let conflict = store.update(cms, NS, "a", stale, MANAGER).unwrap_err();
        assert_eq!((conflict.code, conflict.reason.as_str()), (409, "Conflict"));

        // Built-in types accept a replace without resourceVersion.
        let unconditional = store
            .update(cms, NS, "a", configmap("a", json!({"k": "4"})), MANAGER)
            .unwrap();
        assert_eq!(unconditional["data"]["k"], "4");
        assert_eq!(
            unconditional["metadata"]["creationTimestamp"],
            created["metadata"]["creationTimestamp"]
        );

        let missing = store
            .update(cms, NS, "b", configmap("b", json!({})), MANAGER)
            .unwrap_err();
        assert_eq!(missing.code, 404);
        let renamed = store
            .update(cms, NS, "a", configmap("z", json!({})), MANAGER)
            .unwrap_err();
        assert_eq!(renamed.code, 400);
    }

    #[test]
    fn custom_resources_need_a_resource_version_and_track_generation() {
        let mut store = store();
        let plugins = rt("wasmplugins");
        let created = store
            .create(plugins, NS, wasmplugin("p", json!({"priority": 1})), MANAGER)
            .unwrap();
        let error = store
            .update(plugins, NS, "p", wasmplugin("p", json!({"priority": 2})), MANAGER)
            .unwrap_err();
        assert_eq!((error.code, error.reason.as_str()), (422, "Invalid"));

        let mut relabelled = Value::clone(&created);
        relabelled["metadata"]["labels"] = json!({"a": "b"});
        relabelled["status"] = json!({"ignored": true});
        let relabelled = store.update(plugins, NS, "p", relabelled, MANAGER).unwrap();
        assert_eq!(
            relabelled["metadata"]["generation"], 1,
            "metadata changes keep the generation"
        );
        assert!(relabelled.get("status").is_none(), "status is a subresource");

        let mut respecced = Value::clone(&relabelled);
        respecced["spec"]["priority"] = 2.into();
        let respecced = store.update(plugins, NS, "p", respecced, MANAGER).unwrap();
        assert_eq!(respecced["metadata"]["generation"], 2);
    }

    #[test]
    fn custom_resources_are_pruned_on_every_write() {
        let mut store = store();
        let plugins = rt("wasmplugins");
        let spec = json!({"priority": 1, "stray": 1, "defaultConfig": {"kept": 1}});
        let created = store.create(plugins, NS, wasmplugin("p", spec), MANAGER).unwrap();
        assert_eq!(created["spec"], json!({"priority": 1, "defaultConfig": {"kept": 1}}));
        let mut replaced = Value::clone(&created);
        replaced["spec"]["stray"] = 2.into();
        let replaced = store.update(plugins, NS, "p", replaced, MANAGER).unwrap();
        assert_eq!(replaced, created, "a PUT of only pruned fields changes nothing");
        let patch = Patch::Merge(json!({"spec": {"stray": 3, "pluginName": "x"}}));
        let patched = store.patch(plugins, NS, "p", &patch, MANAGER).unwrap();
        assert_eq!(
            patched["spec"],
            json!({"priority": 1, "defaultConfig": {"kept": 1}, "pluginName": "x"})
        );
    }

    #[test]
    fn objects_over_the_etcd_limit_are_refused_and_not_stored() {
        let mut store = store();
        let plugins = rt("wasmplugins");
        let created = store.create(plugins, NS, wasmplugin("p", json!({})), MANAGER).unwrap();
        let mut big = Value::clone(&created);
        big["spec"]["defaultConfig"] = json!({"blob": "x".repeat(ETCD_MAX_REQUEST_BYTES)});
        let error = store.update(plugins, NS, "p", big.clone(), MANAGER).unwrap_err();
        assert_eq!(error.to_status(), ApiError::etcd_request_too_large().to_status());
        assert_eq!(error.code, 500);
        assert_eq!(store.get(plugins, NS, "p").unwrap(), created);
        big["metadata"] = json!({"name": "q"});
        assert_eq!(store.create(plugins, NS, big, MANAGER).unwrap_err().code, 500);
        assert_eq!(store.get(plugins, NS, "q").unwrap_err().code, 404);
    }

    #[test]
    fn managed_fields_name_each_writer() {
        let mut store = store();
        let cms = rt("configmaps");
        let created = store
            .create(cms, NS, configmap("a", json!({"k": "1"})), "first")
            .unwrap();
        let mut changed = Value::clone(&created);
        changed["data"]["j"] = "2".into();
        changed["metadata"].as_object_mut().unwrap().remove("managedFields");
        let changed = store.update(cms, NS, "a", changed, "second").unwrap();
        let managers: Vec<(&str, &Value)> = changed["metadata"]["managedFields"]
            .as_array()
            .unwrap()
            .iter()
            .map(|e| (e["manager"].as_str().unwrap(), &e["fieldsV1"]))
            .collect();
        assert_eq!(
            managers,
            [
                ("first", &json!({"f:data": {".": {}, "f:k": {}}})),
                ("second", &json!({"f:data": {"f:j": {}}})),
            ]
        );
        let names = store.get(NAMESPACES, "", NS).unwrap();
        assert_eq!(
            names["metadata"]["managedFields"][0]["fieldsV1"],
            json!({"f:metadata": {"f:labels": {".": {}, "f:kubernetes.io/metadata.name": {}}}}),
            "defaults applied after tracking (spec.finalizers, status) are no one's"
        );
    }

    #[test]
    fn a_write_that_changes_nothing_keeps_the_resource_version() {
        let mut store = store();
        let cms = rt("configmaps");
        let created = store
            .create(cms, NS, configmap("a", json!({"k": "1"})), MANAGER)
            .unwrap();
        let before = store.revision();
        let same = store
            .update(cms, NS, "a", configmap("a", json!({"k": "1"})), MANAGER)
            .unwrap();
        assert_eq!(same, created);
        assert_eq!(store.revision(), before);
    }

    #[test]
    fn patches() {
        let mut store = store();
        let cms = rt("configmaps");
        let created = store
            .create(cms, NS, configmap("a", json!({"k": "1", "drop": "x"})), MANAGER)
            .unwrap();
        let merged = store
            .patch(
                cms,
                NS,
                "a",
                &Patch::Merge(json!({"data": {"k": "2", "drop": null}})),
                MANAGER,
            )
            .unwrap();
        assert_eq!(merged["data"], json!({"k": "2"}));
        assert_eq!(version(&merged), version(&created) + 1);

        let stale =
            json!({"metadata": {"resourceVersion": created["metadata"]["resourceVersion"]}, "data": {"k": "3"}});
        assert_eq!(
            store
                .patch(cms, NS, "a", &Patch::Merge(stale), MANAGER)
                .unwrap_err()
                .code,
            409
        );

        let failing = Patch::Json(vec![json!({"op": "test", "path": "/data/k", "value": "1"})]);
        assert_eq!(store.patch(cms, NS, "a", &failing, MANAGER).unwrap_err().code, 422);
        let rename = Patch::Merge(json!({"metadata": {"name": "b"}}));
        assert_eq!(store.patch(cms, NS, "a", &rename, MANAGER).unwrap_err().code, 400);
        let missing = Patch::Merge(json!({}));
        assert_eq!(store.patch(cms, NS, "zz", &missing, MANAGER).unwrap_err().code, 404);
    }

    #[test]
    fn delete_checks_preconditions_and_namespaces_cascade() {
        let mut store = store();
        let cms = rt("configmaps");
        let created = store.create(cms, NS, configmap("a", json!({})), MANAGER).unwrap();
        let stale = Preconditions {
            resource_version: Some("1".into()),
            uid: None,
        };
        assert_eq!(store.delete(cms, NS, "a", &stale).unwrap_err().code, 409);
        let before = store.revision();
        let deleted = store.delete(cms, NS, "a", &Preconditions::default()).unwrap();
        assert_eq!(deleted, created);
        assert_eq!(store.revision(), before + 1);
        assert_eq!(store.get(cms, NS, "a").unwrap_err().code, 404);
        assert_eq!(
            store.delete(cms, NS, "a", &Preconditions::default()).unwrap_err().code,
            404
        );

        store.create(cms, NS, configmap("b", json!({})), MANAGER).unwrap();
        store.delete(NAMESPACES, "", NS, &Preconditions::default()).unwrap();
        assert_eq!(store.get(cms, NS, "b").unwrap_err().code, 404);
    }

    #[test]
    fn list_filters_and_sorts() {
        let mut store = store();
        let default = json!({"metadata": {"name": "default"}});
        store.create(NAMESPACES, "", default, MANAGER).unwrap();
        let cms = rt("configmaps");
        for (ns, name, tier) in [(NS, "b", "web"), (NS, "a", "db"), ("default", "c", "web")] {
            let cm = json!({"metadata": {"name": name, "labels": {"tier": tier}}});
            store.create(cms, ns, cm, MANAGER).unwrap();
        }
        let names = |list: Value| -> Vec<String> {
            list["items"]
                .as_array()
                .unwrap()
                .iter()
                .map(|item| {
                    format!(
                        "{}/{}",
                        item["metadata"]["namespace"].as_str().unwrap(),
                        item["metadata"]["name"].as_str().unwrap()
                    )
                })
                .collect()
        };
        let everything = Selector::default();
        let list = store.list(cms, Some(NS), &everything, &everything);
        assert_eq!(list["kind"], "ConfigMapList");
        assert_eq!(list["metadata"]["resourceVersion"], store.revision().to_string());
        assert_eq!(names(list), ["higress-system/a", "higress-system/b"]);
        let web = Selector::parse_labels("tier=web").unwrap();
        assert_eq!(
            names(store.list(cms, None, &web, &everything)),
            ["default/c", "higress-system/b"]
        );
        let named = Selector::parse_fields("metadata.name=a").unwrap();
        assert_eq!(names(store.list(cms, None, &everything, &named)), ["higress-system/a"]);
    }

    #[test]
    fn defaults_for_namespaces_and_secrets() {
        let mut store = store();
        let namespace = store.get(NAMESPACES, "", NS).unwrap();
        assert_eq!(namespace["metadata"]["labels"]["kubernetes.io/metadata.name"], NS);
        assert_eq!(namespace["status"]["phase"], "Active");
        assert!(namespace["metadata"].get("namespace").is_none());

        let secret = json!({"metadata": {"name": "s"}, "stringData": {"token": "hello"}});
        let secret = store.create(rt("secrets"), NS, secret, MANAGER).unwrap();
        assert_eq!(secret["type"], "Opaque");
        assert_eq!(secret["data"]["token"], "aGVsbG8=");
        assert!(secret.get("stringData").is_none());
    }

    #[test]
    fn base64_pads() {
        assert_eq!(base64(b""), "");
        assert_eq!(base64(b"f"), "Zg==");
        assert_eq!(base64(b"fo"), "Zm8=");
        assert_eq!(base64(b"foo"), "Zm9v");
        assert_eq!(base64(b"foobar"), "Zm9vYmFy");
    }
}
