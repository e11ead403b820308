//! Object names, label keys and fixed strings exactly as the Higress console uses them (spec sections 1, 4, 5).

pub const DEFAULT_NAMESPACE: &str = "higress-system";
pub const DEFAULT_DOMAIN: &str = "higress-default-domain";
pub const INGRESS_CLASS: &str = "higress";
pub const MCP_BRIDGE: &str = "default";

pub const LABEL_DEFINER: &str = "higress.io/resource-definer";
pub const LABEL_INTERNAL: &str = "higress.io/internal";
pub const LABEL_CONFIG_MAP_TYPE: &str = "higress.io/config-map-type";
/// Selects everything the console manages (`higress.io/resource-definer=higress`).
pub const SELECT_CONSOLE: &str = "higress.io/resource-definer=higress";
/// Selects the console's AI route ConfigMaps.
pub const SELECT_AI_ROUTES: &str = "higress.io/resource-definer=higress,higress.io/config-map-type=ai-route";
pub const ANNOTATION_COMMENT: &str = "higress.io/comment";
pub const COMMENT: &str = "PLEASE DO NOT EDIT DIRECTLY. This resource is managed by Higress.";

/// The prefix of our own annotations and labels.
pub const OUR_PREFIX: &str = "higress-route-worker.io/";
/// Annotation on McpBridge `default` and `ai-proxy.internal`: the routes of ours using each provider.
pub const ANNOTATION_PROVIDER_USERS: &str = "higress-route-worker.io/provider-users";
/// Annotation on the plugin CRs holding rules of our routes: the revision of the event that last wrote
/// each route's rules there (see `index::RouteRevisions`).
pub const ANNOTATION_ROUTE_REVISIONS: &str = "higress-route-worker.io/route-revisions";
/// Annotation on `ai-proxy.internal` and `key-auth.internal`: which event last wrote each provider's
/// tokens or consumer's credentials from a Secret (`{"provider/p": "route@revision"}`; an event that
/// writes the entry inline removes the record). Rotation writes a Secret's new value only where the
/// record names the route's current event: not over another route's (or a failed redeploy's) entry.
pub const ANNOTATION_SECRET_SOURCES: &str = "higress-route-worker.io/secret-sources";

/// The key of a provider's record in [`ANNOTATION_SECRET_SOURCES`].
pub fn secret_source_of_provider(provider: &str) -> String {
    format!("provider/{provider}")
}

/// The key of a consumer's record in [`ANNOTATION_SECRET_SOURCES`].
pub fn secret_source_of_consumer(consumer: &str) -> String {
    format!("consumer/{consumer}")
}

/// Annotation on a route's own objects (Ingresses, fallback EnvoyFilter, AI route ConfigMap): the
/// revision of the event that wrote them. Every deploy writes them with it, so an older event's
/// delete or replace, conditional on the version it read, meets a 409 and then finds the newer
/// revision in the model's fence (`cluster::Engine::write`).
pub const ANNOTATION_REVISION: &str = "higress-route-worker.io/revision";
/// Label on a route's own objects the worker writes (its Ingresses and AI route ConfigMap): the
/// route's name. A batch reads its routes' objects by it (those labelled with one of them) and every
/// one not labelled (the console's own, one the console saved since, one written before the label
/// was), not every route's: see `reads::route_lists`. A console save rebuilds the object without it.
pub const LABEL_ROUTE: &str = "higress-route-worker.io/route";
/// Selects the console's Ingresses the worker did not label with their route ([`LABEL_ROUTE`]).
pub const SELECT_UNLABELLED_INGRESSES: &str = "higress.io/resource-definer=higress,!higress-route-worker.io/route";
/// Selects the console's AI route ConfigMaps the worker did not label with their route.
pub const SELECT_UNLABELLED_AI_ROUTES: &str =
    "higress.io/resource-definer=higress,higress.io/config-map-type=ai-route,!higress-route-worker.io/route";

/// Narrows `selector` to the objects labelled with one of `routes` ([`LABEL_ROUTE`]).
pub fn select_routes<'a>(selector: &str, routes: impl IntoIterator<Item = &'a str>) -> String {
    let routes: Vec<&str> = routes.into_iter().collect();
    format!("{selector},{LABEL_ROUTE} in ({})", routes.join(","))
}

/// Label an operator puts on a Secret that events may refer to (`"true"`); other Secrets are refused.
pub const LABEL_READABLE: &str = "higress-route-worker.io/readable";
/// Label on the objects only this worker owns (the fence ConfigMaps).
pub const LABEL_MANAGED_BY: &str = "app.kubernetes.io/managed-by";
pub const MANAGER: &str = "higress-route-worker";
/// Selects the fence ConfigMaps.
pub const SELECT_FENCES: &str = "app.kubernetes.io/managed-by=higress-route-worker";
const FENCE_PREFIX: &str = "higress-route-worker-fence-";
/// Fence entries are spread over this many ConfigMaps, so none nears the 1 MiB limit: at about 100
/// bytes an entry, 16 shards hold some 160,000 models.
pub const FENCE_SHARDS: u32 = 16;

/// The fence ConfigMap holding a model's entry. FNV-1a: stable across versions and platforms.
pub fn fence(model: &str) -> String {
    let hash = model.bytes().fold(0x811c_9dc5_u32, |hash, byte| {
        (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193)
    });
    format!("{FENCE_PREFIX}{:02x}", hash % FENCE_SHARDS)
}

pub fn is_fence(name: &str) -> bool {
    name.starts_with(FENCE_PREFIX)
}

/// `*.a.com` → `wildcard.a.com` (`KubernetesUtil.normalizeDomainName`).
pub fn normalize_domain(domain: &str) -> String {
    match domain.strip_prefix('*') {
        Some(rest) => format!("wildcard{rest}"),
        None => domain.to_string(),
    }
}

const DOMAIN_CONFIG_MAP_PREFIX: &str = "domain-";
const ROUTE_CONFIG_MAP_PREFIX: &str = "ai-route-";

pub fn domain_config_map(domain: &str) -> String {
    format!("{DOMAIN_CONFIG_MAP_PREFIX}{}", normalize_domain(domain))
}

pub fn is_domain_config_map(name: &str) -> bool {
    name.starts_with(DOMAIN_CONFIG_MAP_PREFIX)
}

pub fn domain_label_key(domain: &str) -> String {
    format!("higress.io/domain_{}", normalize_domain(domain))
}

pub fn route_config_map(route: &str) -> String {
    format!("{ROUTE_CONFIG_MAP_PREFIX}{route}")
}

pub fn is_route_config_map(name: &str) -> bool {
    name.starts_with(ROUTE_CONFIG_MAP_PREFIX)
}

pub fn route_ingress(route: &str) -> String {
    format!("ai-route-{route}.internal")
}

pub fn fallback_ingress(route: &str) -> String {
    format!("ai-route-{route}.fallback.internal")
}

/// The fallback EnvoyFilter shares the main Ingress's name.
pub fn fallback_envoy_filter(route: &str) -> String {
    route_ingress(route)
}

pub fn registry(provider: &str) -> String {
    format!("llm-{provider}.internal")
}

/// `KubernetesUtil.isInternalResource`.
pub fn is_internal(name: &str) -> bool {
    name.ends_with(".internal")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wildcard_domains_are_normalised_for_names_and_labels() {
        assert_eq!(domain_config_map("*.a.com"), "domain-wildcard.a.com");
        assert_eq!(domain_label_key("*.a.com"), "higress.io/domain_wildcard.a.com");
        assert_eq!(domain_config_map("zimomo.com"), "domain-zimomo.com");
    }

    #[test]
    fn fences_spread_models_over_a_fixed_set_of_shards() {
        let shards: std::collections::BTreeSet<String> = (0..1000).map(|i| fence(&format!("m{i}"))).collect();
        assert_eq!(shards.len(), FENCE_SHARDS as usize);
        assert!(shards.iter().all(|s| is_fence(s)));
        // FNV-1a("chat") = 0xa24bf9ab, 11 mod 16 (computed outside Rust): stable across versions.
        assert_eq!(fence("chat"), "higress-route-worker-fence-0b");
    }

    /// A look reads our annotations by this prefix; the route label is ours too (`cluster::api`): every one of them carries it.
    #[test]
    fn our_annotations_share_our_prefix() {
        for name in [
            ANNOTATION_PROVIDER_USERS,
            ANNOTATION_ROUTE_REVISIONS,
            ANNOTATION_SECRET_SOURCES,
            ANNOTATION_REVISION,
            LABEL_ROUTE,
        ] {
            assert!(name.starts_with(OUR_PREFIX), "{name}");
        }
    }

    #[test]
    fn the_unlabelled_objects_are_the_consoles_without_our_route_label() {
        assert_eq!(SELECT_UNLABELLED_INGRESSES, format!("{SELECT_CONSOLE},!{LABEL_ROUTE}"));
        assert_eq!(
            SELECT_UNLABELLED_AI_ROUTES,
            format!("{SELECT_AI_ROUTES},!{LABEL_ROUTE}")
        );
        assert_eq!(
            select_routes(SELECT_CONSOLE, ["a", "b.c"]),
            "higress.io/resource-definer=higress,higress-route-worker.io/route in (a,b.c)"
        );
    }

    #[test]
    fn route_and_provider_names_follow_the_console() {
        assert_eq!(route_config_map("chat"), "ai-route-chat");
        assert_eq!(route_ingress("chat"), "ai-route-chat.internal");
        assert_eq!(fallback_ingress("chat"), "ai-route-chat.fallback.internal");
        assert_eq!(registry("openai-main"), "llm-openai-main.internal");
        assert!(is_internal("ai-route-chat.internal"));
        assert!(!is_internal("domain-a.com"));
    }
}
