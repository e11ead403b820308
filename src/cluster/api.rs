//! Raw JSON access to the objects of one namespace. Objects stay `serde_json::Value`s end to end, so
//! every field of a shared object, modelled or not, is written back exactly as it was read.

use crate::higress::{Kind, ObjectKey};
use kube::core::params::{DeleteParams, GetParams, ListParams, PostParams};
use kube::core::Request;
use serde_json::Value;

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
    async fn send(&self, request: http::Request<Vec<u8>>) -> Result<Value, kube::Error> {
        let text = self.client.request_text(request).await?;
        serde_json::from_str(&text).map_err(kube::Error::SerdeError)
    }

    /// `None` when the object does not exist.
    pub async fn get(&self, key: &ObjectKey) -> Result<Option<Value>, kube::Error> {
        let request = self
            .request(key.kind)
            .get(&key.name, &GetParams::default())
            .map_err(kube::Error::BuildRequest)?;
        match self.send(request).await {
            Ok(object) => Ok(Some(object)),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// Items of a list, each with its `apiVersion` and `kind` (lists leave them out of items).
    pub async fn list(&self, kind: Kind, label_selector: &str) -> Result<Vec<Value>, kube::Error> {
        let request = self
            .request(kind)
            .list(&ListParams::default().labels(label_selector))
            .map_err(kube::Error::BuildRequest)?;
        let items = match self.send(request).await? {
            Value::Object(mut list) => match list.remove("items") {
                Some(Value::Array(items)) => items,
                _ => Vec::new(),
            },
            _ => Vec::new(),
        };
        Ok(items
            .into_iter()
            .map(|mut item| {
                item["apiVersion"] = Value::String(kind.api_version());
                item["kind"] = Value::String(kind.kind().to_string());
                item
            })
            .collect())
    }

    /// The object the server answers with is not parsed: nothing reads it, and a shared object
    /// is large. Returns the size of what was sent.
    pub async fn create(&self, kind: Kind, object: &Value) -> Result<usize, kube::Error> {
        let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
        let sent = body.len();
        let request = self
            .request(kind)
            .create(&PostParams::default(), body)
            .map_err(kube::Error::BuildRequest)?;
        self.client.request_text(request).await.map(|_| sent)
    }

    /// PUT carrying the object's `metadata.resourceVersion`: 409 when someone wrote since.
    /// The answer is not parsed, as for [`Api::create`]. Returns the size of what was sent.
    pub async fn replace(&self, key: &ObjectKey, object: &Value) -> Result<usize, kube::Error> {
        let body = serde_json::to_vec(object).map_err(kube::Error::SerdeError)?;
        let sent = body.len();
        let request = self
            .request(key.kind)
            .replace(&key.name, &PostParams::default(), body)
            .map_err(kube::Error::BuildRequest)?;
        self.client.request_text(request).await.map(|_| sent)
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
        match self.send(request).await {
            Ok(_) => Ok(()),
            Err(kube::Error::Api(status)) if status.code == 404 => Ok(()),
            Err(e) => Err(e),
        }
    }
}
