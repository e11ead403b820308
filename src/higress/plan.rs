//! What the mapping produces: the steps that bring the cluster from the objects it has to the
//! desired state — whole owned objects to put or delete, entry-level edits of shared objects — and
//! the one write order they are applied in. The types only: [`super::decide::plan`] builds a plan. Pure: no I/O.

use super::names;
use super::ops::{EditRefused, Op};
use super::plugins::{BuiltinPlugin, ConsoleVersion};
use super::state::{Kind, ObjectKey};
use super::{fence, provider};
use crate::reason::Reason;
use serde_json::Value;
use std::sync::Arc;

/// How the mapping writes, beyond the event itself.
#[derive(Clone, Debug)]
pub struct Settings {
    pub namespace: String,
    pub console: ConsoleVersion,
    pub ingress_class: String,
    /// Bind new routes to ai-statistics, as the console does by default (`AI_ROUTE_AUTO_ENABLE_AI_STATS`).
    pub ai_statistics: bool,
    /// Enable model-router for routes with model predicates (`AI_ROUTE_AUTO_ENABLE_MODEL_ROUTER`).
    pub model_router: bool,
    /// How long a retired model's fence entry is kept.
    pub tombstone_ttl: chrono::Duration,
    /// Secrets an event may refer to without carrying the label [`names::LABEL_READABLE`].
    pub readable_secrets: Vec<String>,
    /// Route plugins accepted in `route.plugins` although their parser is not ported
    /// (`crate::gateway::is_ported`): the operator's risk.
    pub unvalidated_plugins: Vec<String>,
}

/// How long a retired model stays fenced, unless configured otherwise.
pub const DEFAULT_TOMBSTONE_DAYS: i64 = 7;

impl Default for Settings {
    fn default() -> Self {
        Self {
            namespace: names::DEFAULT_NAMESPACE.into(),
            console: ConsoleVersion::default(),
            ingress_class: names::INGRESS_CLASS.into(),
            ai_statistics: true,
            model_router: true,
            tombstone_ttl: chrono::Duration::days(DEFAULT_TOMBSTONE_DAYS),
            readable_secrets: Vec::new(),
            unvalidated_plugins: Vec::new(),
        }
    }
}

#[derive(Clone, Debug, PartialEq)]
pub enum Action {
    /// Entry-level edits of a shared object; `template` creates it when missing.
    Edit {
        template: Option<Template>,
        ops: Vec<Op>,
    },
    /// An owned object, written whole. Shared with the state the plan is simulated on, which holds
    /// the same object while it is absent from the cluster: a batch holds many.
    Put(Arc<Value>),
    /// Created when missing, left alone when present (domain ConfigMaps: existing settings win).
    CreateIfMissing(Value),
    Delete,
}

#[derive(Clone, Debug, PartialEq)]
pub struct Step {
    pub key: ObjectKey,
    pub action: Action,
}

impl Step {
    pub fn rank(&self) -> u8 {
        write_rank(&self.key, self.action == Action::Delete)
    }
}

/// The write order, the only one: the plan is sorted by it and the engine writes a batch rank by
/// rank with it. Traffic reaches a route only through its Ingress, so: the fence first; a retired
/// route's Ingresses before anything they use; domains, providers, consumers and plugin rules (auth!)
/// before a new Ingress; the route's ConfigMap last, whether written or deleted — the console lists
/// routes by it, and a retirement cut short still finds in it what it has to clean up.
pub fn write_rank(key: &ObjectKey, deleting: bool) -> u8 {
    match key.kind {
        Kind::ConfigMap if names::is_fence(&key.name) => 0,
        Kind::Ingress | Kind::EnvoyFilter if deleting => 1,
        Kind::ConfigMap if names::is_route_config_map(&key.name) => 12,
        _ if deleting => 2,
        Kind::ConfigMap if names::is_domain_config_map(&key.name) => 3,
        // The shared objects side by side: each edit stands alone (a provider goes only when McpBridge
        // and ai-proxy, each as written, record no route using it), and all of them precede the Ingress.
        Kind::McpBridge | Kind::WasmPlugin => 4,
        Kind::Ingress => 10,
        _ => 11,
    }
}

#[derive(Clone, Debug, Default, PartialEq)]
pub struct Plan {
    pub steps: Vec<Step>,
    pub warnings: Vec<String>,
    /// For a deploy its model's retirement has made stale: the revision that retired it. The plan
    /// then only removes what of the route is still there (see [`plan`]).
    pub stale: Option<u64>,
}

impl Plan {
    pub(super) fn edit(&mut self, key: ObjectKey, template: Option<Template>, op: Op) {
        if let Some(Step {
            action: Action::Edit { template: t, ops },
            ..
        }) = self.steps.iter_mut().find(|s| s.key == key)
        {
            if t.is_none() {
                *t = template;
            }
            ops.push(op);
            return;
        }
        self.steps.push(Step {
            key,
            action: Action::Edit {
                template,
                ops: vec![op],
            },
        });
    }

    /// An edit of a route's entries in a shared object, made only if the object records no newer
    /// revision of the route (`Op::IfRouteNotNewer`); the object's record is updated with it, once.
    pub(super) fn route_edit(&mut self, key: ObjectKey, template: Option<Template>, writer: RouteWriter, op: Op) {
        self.route_record(key.clone(), template.clone(), writer);
        self.edit(
            key,
            template,
            Op::IfRouteNotNewer {
                route: writer.route.to_string(),
                revision: writer.revision,
                then: Box::new(op),
            },
        );
    }

    /// The route's record in a shared object: a deploy records its revision, a retirement removes
    /// the record (up to its revision). Either order with the guarded edits gives the same object.
    pub(super) fn route_record(&mut self, key: ObjectKey, template: Option<Template>, writer: RouteWriter) {
        let (route, revision) = (writer.route.to_string(), writer.revision);
        let record = if writer.retiring {
            Op::ForgetRoute { route, revision }
        } else {
            Op::RecordRoute { route, revision }
        };
        let recorded = self
            .steps
            .iter()
            .any(|s| s.key == key && matches!(&s.action, Action::Edit { ops, .. } if ops.contains(&record)));
        if !recorded {
            self.edit(key, template, record);
        }
    }

    pub(super) fn put(&mut self, object: Value) {
        self.push(object, |object| Action::Put(Arc::new(object)))
    }

    pub(super) fn push(&mut self, object: Value, action: impl FnOnce(Value) -> Action) {
        let kind = Kind::from_api(
            object["apiVersion"].as_str().unwrap_or_default(),
            object["kind"].as_str().unwrap_or_default(),
        )
        .expect("the mapping only builds known kinds");
        let key = ObjectKey::new(kind, object["metadata"]["name"].as_str().unwrap_or_default());
        self.steps.push(Step {
            key,
            action: action(object),
        });
    }

    pub(super) fn delete(&mut self, kind: Kind, name: String) {
        self.steps.push(Step {
            key: ObjectKey::new(kind, name),
            action: Action::Delete,
        });
    }

    /// Steps in write order (stable: the mapping's order within a rank).
    pub fn sorted(mut self) -> Self {
        self.steps.sort_by_key(Step::rank);
        self
    }
}

/// The event whose route entries an edit touches (see [`Plan::route_edit`]).
#[derive(Clone, Copy, Debug)]
pub(super) struct RouteWriter<'a> {
    pub route: &'a str,
    pub revision: u64,
    pub retiring: bool,
}

/// How a missing shared object is created: described, and built only when needed (a batch holds
/// thousands of steps).
#[derive(Clone, Debug, PartialEq)]
pub enum Template {
    Plugin {
        plugin: BuiltinPlugin,
        console: ConsoleVersion,
        namespace: String,
    },
    McpBridge {
        namespace: String,
    },
    Fence {
        name: String,
        namespace: String,
    },
}

impl Template {
    pub fn build(&self) -> Value {
        match self {
            Template::Plugin {
                plugin,
                console,
                namespace,
            } => plugin.new_cr(*console, namespace),
            Template::McpBridge { namespace } => provider::new_mcp_bridge(namespace),
            Template::Fence { name, namespace } => fence::new_fence(name, namespace),
        }
    }

    pub(super) fn plugin(plugin: BuiltinPlugin, settings: &Settings) -> Option<Template> {
        Some(Template::Plugin {
            plugin,
            console: settings.console,
            namespace: settings.namespace.clone(),
        })
    }
}

/// What the mapping decided for an event.
#[derive(Clone, Debug, PartialEq)]
pub enum Decision {
    Apply(Plan),
    /// The route has already seen a newer revision (or the model was retired at a newer one).
    Stale {
        seen: u64,
    },
}

/// Why the event cannot be applied; nothing is written.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Refusal {
    pub reason: Reason,
    pub message: String,
}

impl Refusal {
    pub fn new(reason: Reason, message: impl Into<String>) -> Self {
        Self {
            reason,
            message: message.into(),
        }
    }
}

impl From<EditRefused> for Refusal {
    fn from(refused: EditRefused) -> Self {
        Refusal::new(refused.0, refused.1)
    }
}
