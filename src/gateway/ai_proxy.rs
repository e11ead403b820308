//! ai-proxy (`plugins/wasm-go/extensions/ai-proxy/`): the `ai-proxy.internal` WasmPlugin. Its
//! `defaultConfig.providers[]` holds every provider; each service rule (`matchRules[].config`) names one by
//! `activeProviderId`.
//!
//! How the plugin reads its config (every path below is under `plugins/wasm-go/extensions/ai-proxy/`):
//! - `main.go` `parseGlobalConfig`: `PluginConfig.FromJson(defaultConfig)`, then `Validate`, then `Complete`.
//!   `parseOverrideRuleConfig`: the same on a copy of the global config, with the rule's JSON.
//! - `config/config.go` `PluginConfig.FromJson`: `providers` (only if it is a list) replaces the provider
//!   list; a legacy `provider` object replaces it with itself and is the active provider; otherwise the
//!   active provider is the first entry whose `id` equals `activeProviderId`, none if there is no such entry
//!   (not an error). `Validate` and `Complete` do nothing without an active provider: **only the active
//!   provider is ever validated**. An entry no rule names is never checked by the plugin; [`check`] still
//!   reports it (every entry is reported as if a rule named it, which the worker's rules do), and reports a
//!   broken entry again at each rule that selects it (there, it is the rule's parse that fails).
//! - `Validate` is `ProviderConfig.Validate` (provider/provider.go) of the active provider. `Complete` is
//!   `CreateProvider` (fails only for an unknown type or an azureServiceUrl `url.Parse` refuses, both
//!   already refused by `Validate`) and `SetApiTokensFailover` (shared-data writes; nothing a config can
//!   make fail).
//! - wasm-go `pkg/matcher/rule_matcher.go` `RuleMatcher.ParseRuleConfig`: a rule whose parse fails fails the
//!   whole plugin (ai-proxy does not enable rule-level config isolation). A global config whose parse fails
//!   is dropped when there are rules: every rule then starts from an empty config, with no providers, so no
//!   rule finds its provider; without rules the plugin fails to start.
//!
//! Values reach the plugin through a protobuf `Struct` (the WasmPlugin CR's `defaultConfig` and
//! `matchRules[].config`), so every number is a float64, and are read with gjson: [`gj`] ports its
//! coercions. URLs are read with Go's `net/url` (go1.24.4, the toolchain ai-proxy's go.mod names): [`go_url`]
//! ports what makes `url.Parse` fail and what `URL.Query()` keeps.

use super::{get, Broken, Entry, Problem, Source};
use serde_json::Value;

/// One `providers[]` entry as the plugin reads it when a rule (or `defaultConfig`) makes it the active
/// provider: `ProviderConfig.FromJson`, `Validate` and the type's `ValidateConfig`. Every rule the entry
/// breaks, not only the first `Validate` returns.
pub fn provider_problems(provider: &Value) -> Vec<Broken> {
    let mut problems = Vec::new();
    let field = |key: &str| get(provider, key);

    // provider.go ProviderConfig.FromJson: `protocol` defaults to "openai" when it reads as "".
    // ProviderConfig.Validate: `if c.protocol != protocolOpenAI && c.protocol != protocolOriginal`.
    let protocol = gj::string(field("protocol"));
    if !protocol.is_empty() && protocol != "openai" && protocol != "original" {
        problems.push(Broken::new(
            "protocol must be \"openai\" or \"original\" (absent or empty: openai)",
            PROVIDER_VALIDATE,
        ));
    }

    // FromJson: `if contextJson.Exists() { c.context = &ContextConfig{} ... }`; a JSON null exists too.
    // Validate: `if c.context != nil { c.context.Validate() }`.
    let context = field("context");
    if let Some(context) = context {
        context_problems(context, &mut problems);
    }

    // FromJson: `failover` read only if it exists, `enabled` defaults to false.
    // Validate: `if c.failover.enabled { c.failover.Validate() }`.
    if let Some(failover) = field("failover") {
        if gj::boolean(get(failover, "enabled")) && gj::string(get(failover, "healthCheckModel")).is_empty() {
            problems.push(Broken::new(
                "failover.healthCheckModel is required when failover is enabled",
                FAILOVER_VALIDATE,
            ));
        }
    }
    // `retryOnFailure` (provider/retry.go retryOnFailure.FromJson) only fills defaults: nothing to refuse.

    // Validate: `if c.typ == ""` then `initializer, has := providerInitializers[c.typ]; if !has`.
    let typ = gj::string(field("type"));
    if typ.is_empty() {
        problems.push(Broken::new("type is required", PROVIDER_VALIDATE));
    } else if let Some(initializer) = INITIALIZERS.iter().find(|i| i.typ == typ) {
        // Validate: `initializer.ValidateConfig(c)`.
        type_problems(initializer, provider, context.is_some(), &mut problems);
    } else {
        problems.push(Broken::new(
            "type must be one of the plugin's provider types (providerInitializers)",
            PROVIDER_VALIDATE,
        ));
    }
    problems
}

/// `defaultConfig` outside what [`provider_problems`] checks for each entry: the global config's own parse,
/// which validates a provider only if `defaultConfig` names one (`activeProviderId`, or a legacy `provider`
/// object). `providers` not a list, empty, or with an id twice, no `activeProviderId`, one that names no
/// entry: none of these is an error (`PluginConfig.FromJson` ignores a non-list, takes the first of
/// duplicates, leaves no active provider).
pub fn global_problems(default_config: &Value) -> Vec<Broken> {
    parsed_problems(&from_json(default_config, Vec::new()))
}

/// A matchRule's config, combined with `defaultConfig` as the plugin combines them: the rule's config is
/// read over the parsed global config, so its `activeProviderId` selects from `defaultConfig.providers`
/// (unless the rule has its own `providers` or `provider`). The selected entry's problems are the rule's
/// problems. An `activeProviderId` that selects nothing is not an error (the rule then proxies nothing).
pub fn rule_problems(rule_config: &Value, default_config: &Value) -> Vec<Broken> {
    let global = from_json(default_config, Vec::new());
    // wasm-go ParseRuleConfig: a global config whose parse fails is not kept; rules start from an empty one.
    let providers = if parsed_problems(&global).is_empty() {
        global.providers
    } else {
        Vec::new()
    };
    parsed_problems(&from_json(rule_config, providers))
}

/// Every problem of the whole config: `defaultConfig` (absent: `{}`) and each rule with its entry. As
/// the plugin does, a provider is validated only where it is selected (a rule's or the global
/// `activeProviderId`); its problems are named by the provider, once however many rules select it. The
/// global config is parsed once, and a rule finds its provider by id: ai-proxy CRs hold thousands.
pub fn check(default_config: &Value, rules: &[(Entry, &Value)]) -> Vec<Problem> {
    let global = from_json(default_config, Vec::new());
    let global_broken = parsed_problems(&global);
    let mut problems: Vec<Problem> = Vec::new();
    let mut seen = std::collections::BTreeSet::new();
    let mut of_provider = |problems: &mut Vec<Problem>, provider: &Value, fallback: &Entry| {
        let id = gj::string(get(provider, "id"));
        let entry = if id.is_empty() {
            fallback.clone()
        } else {
            Entry::Provider(id.clone())
        };
        if !id.is_empty() && !seen.insert(id) {
            return;
        }
        problems.extend(super::at(&entry, provider_problems(provider)));
    };
    match global.active {
        Some(active) if !global_broken.is_empty() => of_provider(&mut problems, active, &Entry::Global),
        _ => {}
    }
    // wasm-go ParseRuleConfig: a global config whose parse fails is not kept; rules start from an empty one.
    let providers = if global_broken.is_empty() {
        global.providers
    } else {
        Vec::new()
    };
    let mut by_id: std::collections::HashMap<String, &Value> = std::collections::HashMap::new();
    for provider in &providers {
        // The first entry with an id is the one selected.
        by_id.entry(gj::string(get(provider, "id"))).or_insert(provider);
    }
    for (entry, config) in rules {
        let own_list = get(config, "providers").is_some_and(Value::is_array)
            || get(config, "provider").is_some_and(Value::is_object);
        let active = if own_list {
            from_json(config, providers.clone()).active
        } else {
            let id = gj::string(get(config, "activeProviderId"));
            if id.is_empty() {
                None
            } else {
                by_id.get(&id).copied()
            }
        };
        if let Some(active) = active {
            of_provider(&mut problems, active, entry);
        }
    }
    problems
}

/// A `PluginConfig` after `FromJson`: its provider list and its active provider.
struct Parsed<'a> {
    providers: Vec<&'a Value>,
    active: Option<&'a Value>,
}

/// config/config.go `PluginConfig.FromJson` over a config whose provider list is `providers`.
fn from_json<'a>(json: &'a Value, mut providers: Vec<&'a Value>) -> Parsed<'a> {
    // `if providersJson := json.Get("providers"); providersJson.Exists() && providersJson.IsArray()`.
    if let Some(Value::Array(list)) = get(json, "providers") {
        providers = list.iter().collect();
    }
    // `if providerJson := json.Get("provider"); providerJson.Exists() && providerJson.IsObject()`: the
    // legacy single provider, which is the active one.
    if let Some(legacy @ Value::Object(_)) = get(json, "provider") {
        return Parsed {
            providers: vec![legacy],
            active: Some(legacy),
        };
    }
    // `activeProviderId := json.Get("activeProviderId").String()`; the first entry whose GetId() equals it.
    let id = gj::string(get(json, "activeProviderId"));
    let active = if id.is_empty() {
        None
    } else {
        providers
            .iter()
            .copied()
            .find(|provider| gj::string(get(provider, "id")) == id)
    };
    Parsed { providers, active }
}

/// config/config.go `PluginConfig.Validate` (and `Complete`, which refuses nothing `Validate` accepts):
/// the active provider's problems, none without one.
fn parsed_problems(parsed: &Parsed) -> Vec<Broken> {
    parsed.active.map(provider_problems).unwrap_or_default()
}

/// provider/provider.go `ProviderConfig.Validate`: the protocol, `type` present, `type` known.
const PROVIDER_VALIDATE: Source = Source {
    path: "plugins/wasm-go/extensions/ai-proxy/provider/provider.go",
    function: "ProviderConfig.Validate",
};

/// provider/context.go `ContextConfig.Validate`, on what `ContextConfig.FromJson` read: `fileUrl` (the key
/// is `fileUrl`, whatever the struct tag says), `serviceName`, `servicePort` (`.Int()`).
const CONTEXT_VALIDATE: Source = Source {
    path: "plugins/wasm-go/extensions/ai-proxy/provider/context.go",
    function: "ContextConfig.Validate",
};

fn context_problems(context: &Value, problems: &mut Vec<Broken>) {
    // `if c.fileUrl == ""` then `if fileUrlObj, err := url.Parse(c.fileUrl); err != nil`.
    let file_url = gj::string(get(context, "fileUrl"));
    if file_url.is_empty() {
        problems.push(Broken::new(
            "context.fileUrl is required when context is set (a null context counts as set)",
            CONTEXT_VALIDATE,
        ));
    } else if let Err(error) = go_url::parse(&file_url) {
        problems.push(Broken::new(
            format!(
                "context.fileUrl must parse with Go's net/url.Parse: {}",
                error.describe()
            ),
            CONTEXT_VALIDATE,
        ));
    }
    // `if c.serviceName == ""`.
    if gj::string(get(context, "serviceName")).is_empty() {
        problems.push(Broken::new(
            "context.serviceName is required when context is set",
            CONTEXT_VALIDATE,
        ));
    }
    // `if c.servicePort == 0`, servicePort read with `.Int()`.
    if gj::int(get(context, "servicePort")) == 0 {
        problems.push(Broken::new(
            "context.servicePort must be a non-zero integer when context is set",
            CONTEXT_VALIDATE,
        ));
    }
}

/// provider/failover.go `failover.Validate`: `if f.healthCheckModel == ""`, called by
/// `ProviderConfig.Validate` when `failover.enabled` (`.Bool()`).
const FAILOVER_VALIDATE: Source = Source {
    path: "plugins/wasm-go/extensions/ai-proxy/provider/failover.go",
    function: "failover.Validate",
};

/// What a type's `ValidateConfig` checks.
#[derive(Clone, Copy)]
enum Check {
    /// `return nil`.
    Nothing,
    /// `if len(config.apiTokens) == 0 { return errors.New("no apiToken found in provider config") }`
    /// (some spell it `config.apiTokens == nil || len(config.apiTokens) == 0`; FromJson never leaves it nil).
    ApiTokens,
    Qwen,
    Moonshot,
    Minimax,
    Azure,
    Ollama,
    Bedrock,
    Vertex,
    Hunyuan,
    Deepl,
}

/// One entry of provider/provider.go's `providerInitializers` map.
struct Initializer {
    typ: &'static str,
    source: Source,
    check: Check,
}

/// `<file>` under provider/, `<function>` its initializer's `ValidateConfig`.
macro_rules! validate_config {
    ($file:literal, $initializer:literal) => {
        Source {
            path: concat!("plugins/wasm-go/extensions/ai-proxy/provider/", $file),
            function: concat!($initializer, ".ValidateConfig"),
        }
    };
}

const QWEN: Source = validate_config!("qwen.go", "qwenProviderInitializer");
const MOONSHOT: Source = validate_config!("moonshot.go", "moonshotProviderInitializer");
const MINIMAX: Source = validate_config!("minimax.go", "minimaxProviderInitializer");
const AZURE: Source = validate_config!("azure.go", "azureProviderInitializer");
const OLLAMA: Source = validate_config!("ollama.go", "ollamaProviderInitializer");
const BEDROCK: Source = validate_config!("bedrock.go", "bedrockProviderInitializer");
const VERTEX: Source = validate_config!("vertex.go", "vertexProviderInitializer");
const HUNYUAN: Source = validate_config!("hunyuan.go", "hunyuanProviderInitializer");
const DEEPL: Source = validate_config!("deepl.go", "deeplProviderInitializer");

/// provider/provider.go `providerInitializers`: every type the plugin knows, each with its `ValidateConfig`.
const INITIALIZERS: &[Initializer] = &[
    Initializer {
        typ: "moonshot",
        source: MOONSHOT,
        check: Check::Moonshot,
    },
    Initializer {
        typ: "azure",
        source: AZURE,
        check: Check::Azure,
    },
    Initializer {
        typ: "ai360",
        source: validate_config!("ai360.go", "ai360ProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "github",
        source: validate_config!("github.go", "githubProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "qwen",
        source: QWEN,
        check: Check::Qwen,
    },
    Initializer {
        typ: "openai",
        source: validate_config!("openai.go", "openaiProviderInitializer"),
        check: Check::Nothing,
    },
    Initializer {
        typ: "groq",
        source: validate_config!("groq.go", "groqProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "grok",
        source: validate_config!("grok.go", "grokProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "baichuan",
        source: validate_config!("baichuan.go", "baichuanProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "yi",
        source: validate_config!("yi.go", "yiProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "deepseek",
        source: validate_config!("deepseek.go", "deepseekProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "zhipuai",
        source: validate_config!("zhipuai.go", "zhipuAiProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "ollama",
        source: OLLAMA,
        check: Check::Ollama,
    },
    Initializer {
        typ: "claude",
        source: validate_config!("claude.go", "claudeProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "baidu",
        source: validate_config!("baidu.go", "baiduProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "hunyuan",
        source: HUNYUAN,
        check: Check::Hunyuan,
    },
    Initializer {
        typ: "stepfun",
        source: validate_config!("stepfun.go", "stepfunProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "minimax",
        source: MINIMAX,
        check: Check::Minimax,
    },
    Initializer {
        typ: "cloudflare",
        source: validate_config!("cloudflare.go", "cloudflareProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "spark",
        source: validate_config!("spark.go", "sparkProviderInitializer"),
        check: Check::Nothing,
    },
    Initializer {
        typ: "gemini",
        source: validate_config!("gemini.go", "geminiProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "deepl",
        source: DEEPL,
        check: Check::Deepl,
    },
    Initializer {
        typ: "mistral",
        source: validate_config!("mistral.go", "mistralProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "cohere",
        source: validate_config!("cohere.go", "cohereProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "doubao",
        source: validate_config!("doubao.go", "doubaoProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "coze",
        source: validate_config!("coze.go", "cozeProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "together-ai",
        source: validate_config!("together_ai.go", "togetherAIProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "dify",
        source: validate_config!("dify.go", "difyProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "bedrock",
        source: BEDROCK,
        check: Check::Bedrock,
    },
    Initializer {
        typ: "vertex",
        source: VERTEX,
        check: Check::Vertex,
    },
    Initializer {
        typ: "triton",
        source: validate_config!("triton.go", "tritonProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "openrouter",
        source: validate_config!("openrouter.go", "openrouterProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "longcat",
        source: validate_config!("longcat.go", "longcatProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "fireworks",
        source: validate_config!("fireworks.go", "fireworksProviderInitializer"),
        check: Check::ApiTokens,
    },
    Initializer {
        typ: "vllm",
        source: validate_config!("vllm.go", "vllmProviderInitializer"),
        check: Check::Nothing,
    },
    Initializer {
        typ: "generic",
        source: validate_config!("generic.go", "genericProviderInitializer"),
        check: Check::Nothing,
    },
];

/// The type's `ValidateConfig`, every rule it enforces (the Go code returns the first).
fn type_problems(initializer: &Initializer, provider: &Value, has_context: bool, problems: &mut Vec<Broken>) {
    let field = |key: &str| get(provider, key);
    let text = |key: &str| gj::string(field(key));
    // ProviderConfig.FromJson: `for _, token := range json.Get("apiTokens").Array()`; gjson's Array() makes
    // a lone non-null value a list of one.
    let tokens = gj::array_len(field("apiTokens"));
    let source = initializer.source;
    let mut refuse = |rule: String| problems.push(Broken::new(rule, source));
    let no_tokens = |typ: &str| format!("apiTokens must not be empty for type {typ}");
    match initializer.check {
        Check::Nothing => {}
        Check::ApiTokens => {
            if tokens == 0 {
                refuse(no_tokens(initializer.typ));
            }
        }
        // qwen.go: `if len(config.qwenFileIds) != 0 && config.context != nil`, then the apiTokens check.
        Check::Qwen => {
            if gj::array_len(field("qwenFileIds")) != 0 && has_context {
                refuse("qwenFileIds and context must not both be set for type qwen".into());
            }
            if tokens == 0 {
                refuse(no_tokens("qwen"));
            }
        }
        // moonshot.go: `if config.moonshotFileId != "" && config.context != nil`, then the apiTokens check.
        Check::Moonshot => {
            if !text("moonshotFileId").is_empty() && has_context {
                refuse("moonshotFileId and context must not both be set for type moonshot".into());
            }
            if tokens == 0 {
                refuse(no_tokens("moonshot"));
            }
        }
        // minimax.go: `if minimaxApiTypePro == config.minimaxApiType && config.minimaxGroupId == ""` ("pro"),
        // then the apiTokens check.
        Check::Minimax => {
            if text("minimaxApiType") == "pro" && text("minimaxGroupId").is_empty() {
                refuse("minimaxGroupId is required when minimaxApiType is \"pro\"".into());
            }
            if tokens == 0 {
                refuse(no_tokens("minimax"));
            }
        }
        // azure.go: `if config.azureServiceUrl == ""`; `url.Parse(config.azureServiceUrl)` fails;
        // `!azureServiceUrl.Query().Has(queryAzureApiVersion)` ("api-version"); then the apiTokens check.
        Check::Azure => {
            let service_url = text("azureServiceUrl");
            if service_url.is_empty() {
                refuse("azureServiceUrl is required for type azure".into());
            } else {
                match go_url::parse(&service_url) {
                    Err(error) => refuse(format!(
                        "azureServiceUrl must parse with Go's net/url.Parse: {}",
                        error.describe()
                    )),
                    Ok(query) if !go_url::query_has(&query, "api-version") => refuse(
                        "azureServiceUrl must have an api-version query parameter as Go's URL.Query() reads it \
                         (a pair holding ';' or a bad %-escape is dropped; the name is case-sensitive; an empty \
                         value counts)"
                            .into(),
                    ),
                    Ok(_) => {}
                }
            }
            if tokens == 0 {
                refuse(no_tokens("azure"));
            }
        }
        // ollama.go: `if config.ollamaServerHost == ""`; `if config.ollamaServerPort == 0`, the port read in
        // FromJson as `uint32(json.Get("ollamaServerPort").Uint())`.
        Check::Ollama => {
            if text("ollamaServerHost").is_empty() {
                refuse("ollamaServerHost is required for type ollama".into());
            }
            if gj::uint(field("ollamaServerPort")) as u32 == 0 {
                refuse(
                    "ollamaServerPort must be a non-zero port for type ollama (read as gjson Uint() cut to uint32)"
                        .into(),
                );
            }
        }
        // bedrock.go: `hasAkSk := len(config.awsAccessKey) > 0 && len(config.awsSecretKey) > 0`,
        // `hasApiToken := len(config.apiTokens) > 0`, `if !hasAkSk && !hasApiToken`; `if len(config.awsRegion) == 0`.
        Check::Bedrock => {
            let has_ak_sk = !text("awsAccessKey").is_empty() && !text("awsSecretKey").is_empty();
            if !has_ak_sk && tokens == 0 {
                refuse("apiTokens, or both awsAccessKey and awsSecretKey, are required for type bedrock".into());
            }
            if text("awsRegion").is_empty() {
                refuse("awsRegion is required for type bedrock".into());
            }
        }
        // vertex.go: with apiTokens (Express Mode), `if config.vertexOpenAICompatible` is an error and nothing
        // else is checked; without, both the OpenAI-compatible and the standard mode require
        // `vertexAuthKey`, `vertexRegion` and `vertexProjectId`, `vertexAuthServiceName`.
        Check::Vertex => {
            if tokens > 0 {
                if gj::boolean(field("vertexOpenAICompatible")) {
                    refuse("vertexOpenAICompatible must not be true together with apiTokens (express mode)".into());
                }
            } else {
                if text("vertexAuthKey").is_empty() {
                    refuse("vertexAuthKey is required for type vertex without apiTokens".into());
                }
                if text("vertexRegion").is_empty() || text("vertexProjectId").is_empty() {
                    refuse("vertexRegion and vertexProjectId are required for type vertex without apiTokens".into());
                }
                if text("vertexAuthServiceName").is_empty() {
                    refuse("vertexAuthServiceName is required for type vertex without apiTokens".into());
                }
            }
        }
        // hunyuan.go: both empty is fine; else `len(hunyuanAuthId) != hunyuanAuthIdLen (36) ||
        // len(hunyuanAuthKey) != hunyuanAuthKeyLen (32)` (Go's len: bytes).
        Check::Hunyuan => {
            let (id, key) = (text("hunyuanAuthId"), text("hunyuanAuthKey"));
            if !(id.is_empty() && key.is_empty()) && (id.len() != 36 || key.len() != 32) {
                refuse("hunyuanAuthId and hunyuanAuthKey must be 36 and 32 bytes long when either is set".into());
            }
        }
        // deepl.go: `if config.targetLang == ""`.
        Check::Deepl => {
            if text("targetLang").is_empty() {
                refuse("targetLang is required for type deepl".into());
            }
        }
    }
}

/// gjson (v1.18.0, `gjson.go`) reading `json.Get(key)`: `None` is a missing key. Numbers arrive as
/// float64 (protobuf `Struct`), written by Go's JSON encoder: shortest digits, `e` notation from 1e21.
mod gj {
    use serde_json::{Number, Value};

    /// safeInt's bound: ±(2^53 − 1).
    const MAX_SAFE: f64 = 9_007_199_254_740_991.0;

    fn float(number: &Number) -> f64 {
        number.as_f64().unwrap_or_default()
    }

    /// The number's raw text, as Go's JSON encoder writes a float64 (only whether it is all digits matters).
    fn raw(f: f64) -> String {
        let abs = f.abs();
        if abs >= 1e21 || (abs != 0.0 && abs < 1e-6) {
            format!("{f:e}")
        } else {
            format!("{f}")
        }
    }

    /// `Result.String()`: "" for null/missing, "true"/"false", a number's shortest decimal digits
    /// (`strconv.FormatFloat(f, 'f', -1, 64)`, which Rust's `{}` also writes), an object's or a list's raw
    /// JSON (here serde_json's compact text: never empty, as the plugin's, which is all a check asks of it
    /// short of a URL given as an object).
    pub fn string(value: Option<&Value>) -> String {
        match value {
            None | Some(Value::Null) => String::new(),
            Some(Value::Bool(b)) => b.to_string(),
            Some(Value::Number(n)) => format!("{}", float(n)),
            Some(Value::String(s)) => s.clone(),
            Some(json) => json.to_string(),
        }
    }

    /// `Result.Bool()`: true, a string `strconv.ParseBool(strings.ToLower(s))` reads as true, a non-zero number.
    pub fn boolean(value: Option<&Value>) -> bool {
        match value {
            Some(Value::Bool(b)) => *b,
            Some(Value::String(s)) => matches!(s.to_lowercase().as_str(), "1" | "t" | "true"),
            Some(Value::Number(n)) => float(n) != 0.0,
            _ => false,
        }
    }

    /// `Result.Int()`.
    pub fn int(value: Option<&Value>) -> i64 {
        match value {
            Some(Value::Bool(true)) => 1,
            Some(Value::String(s)) => parse_int(s).unwrap_or(0),
            Some(Value::Number(n)) => {
                let f = float(n);
                if (-MAX_SAFE..=MAX_SAFE).contains(&f) {
                    f as i64
                } else {
                    // Go's `int64(t.Num)` saturates on wasm (i64.trunc_sat_f64_s), as Rust's `as` does.
                    parse_int(&raw(f)).unwrap_or(f as i64)
                }
            }
            _ => 0,
        }
    }

    /// `Result.Uint()`.
    pub fn uint(value: Option<&Value>) -> u64 {
        match value {
            Some(Value::Bool(true)) => 1,
            Some(Value::String(s)) => parse_uint(s).unwrap_or(0),
            Some(Value::Number(n)) => {
                let f = float(n);
                if (-MAX_SAFE..=MAX_SAFE).contains(&f) && f as i64 >= 0 {
                    f as i64 as u64
                } else {
                    // Go's `uint64(t.Num)` saturates on wasm (i64.trunc_sat_f64_u: negative → 0), as `as` does.
                    parse_uint(&raw(f)).unwrap_or(f as u64)
                }
            }
            _ => 0,
        }
    }

    /// `len(Result.Array())`: 0 for null/missing, a list's length, 1 for any other value.
    pub fn array_len(value: Option<&Value>) -> usize {
        match value {
            None | Some(Value::Null) => 0,
            Some(Value::Array(list)) => list.len(),
            Some(_) => 1,
        }
    }

    /// gjson's `parseInt`: an optional '-', then at least one digit and nothing else; wraps on overflow.
    fn parse_int(s: &str) -> Option<i64> {
        let (negative, digits) = match s.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, s),
        };
        let n = parse_digits(digits)? as i64;
        Some(if negative { n.wrapping_neg() } else { n })
    }

    /// gjson's `parseUint`: at least one digit and nothing else; wraps on overflow.
    fn parse_uint(s: &str) -> Option<u64> {
        parse_digits(s)
    }

    fn parse_digits(s: &str) -> Option<u64> {
        if s.is_empty() || !s.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        Some(
            s.bytes()
                .fold(0u64, |n, b| n.wrapping_mul(10).wrapping_add(u64::from(b - b'0'))),
        )
    }
}

/// Go's `net/url` (go1.24.4 `src/net/url/url.go`): what makes `url.Parse` fail, and which keys
/// `URL.Query()` keeps.
mod go_url {
    /// Why `url.Parse` refuses a URL (described without the URL).
    #[derive(Clone, Copy, Debug, PartialEq, Eq)]
    pub enum Error {
        ControlCharacter,
        MissingScheme,
        ColonInFirstSegment,
        MissingBracket,
        InvalidPort,
        InvalidHostCharacter,
        InvalidEscape,
        InvalidUserinfo,
    }

    impl Error {
        pub fn describe(self) -> &'static str {
            match self {
                Error::ControlCharacter => "it contains an ASCII control character before any '#'",
                Error::MissingScheme => "it starts with ':' (missing protocol scheme)",
                Error::ColonInFirstSegment => {
                    "it has no valid scheme and its first path segment contains ':' (e.g. a space before the scheme)"
                }
                Error::MissingBracket => "its host starts with '[' and has no ']'",
                Error::InvalidPort => "its port is not all digits",
                Error::InvalidHostCharacter => "its host contains a character not allowed in a host",
                Error::InvalidEscape => "it has a '%' not followed by two hex digits, or a %-escape its host forbids",
                Error::InvalidUserinfo => "its userinfo contains a character not allowed there",
            }
        }
    }

    #[derive(Clone, Copy, PartialEq, Eq)]
    enum Mode {
        Path,
        Host,
        Zone,
        UserPassword,
        QueryComponent,
        Fragment,
    }

    /// `url.Parse`: the URL's RawQuery, or why it is refused.
    pub fn parse(raw: &str) -> Result<String, Error> {
        // `u, frag, _ := strings.Cut(rawURL, "#")`; `parse(u, false)`; then `setFragment(frag)`.
        let (url, fragment) = raw.split_once('#').unwrap_or((raw, ""));
        let query = parse_reference(url)?;
        unescape(fragment, Mode::Fragment)?;
        Ok(query)
    }

    /// `parse(rawURL, viaRequest=false)`.
    fn parse_reference(raw: &str) -> Result<String, Error> {
        // `stringContainsCTLByte`: b < ' ' || b == 0x7f.
        if raw.bytes().any(|b| b < b' ' || b == 0x7f) {
            return Err(Error::ControlCharacter);
        }
        if raw == "*" {
            return Ok(String::new());
        }
        let (scheme, rest) = scheme(raw)?;
        let (rest, query) = if rest.ends_with('?') && rest.matches('?').count() == 1 {
            (&rest[..rest.len() - 1], "")
        } else {
            rest.split_once('?').unwrap_or((rest, ""))
        };
        if !rest.starts_with('/') {
            if !scheme.is_empty() {
                // Opaque: nothing more is checked.
                return Ok(query.to_string());
            }
            let segment = rest.split_once('/').map_or(rest, |(segment, _)| segment);
            if segment.contains(':') {
                return Err(Error::ColonInFirstSegment);
            }
        }
        let mut path = rest;
        if (!scheme.is_empty() || !rest.starts_with("///")) && rest.starts_with("//") {
            let authority = &rest[2..];
            let (authority, rest) = match authority.find('/') {
                Some(i) => (&authority[..i], &authority[i..]),
                None => (authority, ""),
            };
            parse_authority(authority)?;
            path = rest;
        }
        // `setPath`: `unescape(p, encodePath)`.
        unescape(path, Mode::Path)?;
        Ok(query.to_string())
    }

    /// `getScheme`: `[a-zA-Z][a-zA-Z0-9+.-]*` then ':'; anything else before a ':' means no scheme.
    fn scheme(raw: &str) -> Result<(&str, &str), Error> {
        for (i, c) in raw.bytes().enumerate() {
            match c {
                b'a'..=b'z' | b'A'..=b'Z' => {}
                b'0'..=b'9' | b'+' | b'-' | b'.' if i == 0 => return Ok(("", raw)),
                b'0'..=b'9' | b'+' | b'-' | b'.' => {}
                b':' if i == 0 => return Err(Error::MissingScheme),
                b':' => return Ok((&raw[..i], &raw[i + 1..])),
                _ => return Ok(("", raw)),
            }
        }
        Ok(("", raw))
    }

    /// `parseAuthority`: the host after the last '@', then the userinfo before it.
    fn parse_authority(authority: &str) -> Result<(), Error> {
        let at = authority.rfind('@');
        parse_host(at.map_or(authority, |i| &authority[i + 1..]))?;
        if let Some(i) = at {
            let userinfo = &authority[..i];
            if !valid_userinfo(userinfo) {
                return Err(Error::InvalidUserinfo);
            }
            match userinfo.split_once(':') {
                None => {
                    unescape(userinfo, Mode::UserPassword)?;
                }
                Some((username, password)) => {
                    unescape(username, Mode::UserPassword)?;
                    unescape(password, Mode::UserPassword)?;
                }
            }
        }
        Ok(())
    }

    /// `parseHost` (go1.24.4: an IP-literal's content is not checked to be an IPv6 address).
    fn parse_host(host: &str) -> Result<(), Error> {
        if host.starts_with('[') {
            let i = host.rfind(']').ok_or(Error::MissingBracket)?;
            if !valid_optional_port(&host[i + 1..]) {
                return Err(Error::InvalidPort);
            }
            if let Some(zone) = host[..i].find("%25") {
                unescape(&host[..zone], Mode::Host)?;
                unescape(&host[zone..i], Mode::Zone)?;
                unescape(&host[i..], Mode::Host)?;
                return Ok(());
            }
        } else if let Some(i) = host.rfind(':') {
            if !valid_optional_port(&host[i..]) {
                return Err(Error::InvalidPort);
            }
        }
        unescape(host, Mode::Host)?;
        Ok(())
    }

    /// `validOptionalPort`: "" or ':' then digits only.
    fn valid_optional_port(port: &str) -> bool {
        match port.strip_prefix(':') {
            None => port.is_empty(),
            Some(digits) => digits.bytes().all(|b| b.is_ascii_digit()),
        }
    }

    /// `validUserinfo`: unreserved, sub-delims, ':', '%', '@' (runes: anything non-ASCII is refused).
    fn valid_userinfo(userinfo: &str) -> bool {
        userinfo
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || "-._:~!$&'()*+,;=%@".contains(c))
    }

    /// `shouldEscape(c, encodeHost)` (the same for encodeZone).
    fn should_escape_in_host(c: u8) -> bool {
        !(c.is_ascii_alphanumeric() || b"!$&'()*+,;=:[]<>\"-_.~".contains(&c))
    }

    fn unhex(c: u8) -> u8 {
        match c {
            b'0'..=b'9' => c - b'0',
            b'a'..=b'f' => c - b'a' + 10,
            _ => c - b'A' + 10,
        }
    }

    /// `unescape(s, mode)`: the unescaped bytes, or why the escapes (or, in a host, the characters) are bad.
    fn unescape(s: &str, mode: Mode) -> Result<Vec<u8>, Error> {
        let b = s.as_bytes();
        let mut out = Vec::with_capacity(b.len());
        let mut i = 0;
        while i < b.len() {
            match b[i] {
                b'%' => {
                    if i + 2 >= b.len() || !b[i + 1].is_ascii_hexdigit() || !b[i + 2].is_ascii_hexdigit() {
                        return Err(Error::InvalidEscape);
                    }
                    let percent_25 = &b[i..i + 3] == b"%25";
                    let v = (unhex(b[i + 1]) << 4) | unhex(b[i + 2]);
                    // In a host, %-escapes only for non-ASCII bytes (or %25).
                    if mode == Mode::Host && unhex(b[i + 1]) < 8 && !percent_25 {
                        return Err(Error::InvalidEscape);
                    }
                    // In a zone, only escapes of bytes a host may hold (or %25, or a space).
                    if mode == Mode::Zone && !percent_25 && v != b' ' && should_escape_in_host(v) {
                        return Err(Error::InvalidEscape);
                    }
                    out.push(v);
                    i += 3;
                }
                b'+' => {
                    out.push(if mode == Mode::QueryComponent { b' ' } else { b'+' });
                    i += 1;
                }
                c => {
                    if matches!(mode, Mode::Host | Mode::Zone) && c < 0x80 && should_escape_in_host(c) {
                        return Err(Error::InvalidHostCharacter);
                    }
                    out.push(c);
                    i += 1;
                }
            }
        }
        Ok(out)
    }

    /// `URL.Query().Has(key)`: `ParseQuery` drops a pair holding ';' and a pair whose key or value has a bad
    /// %-escape; keys are unescaped ('+' is a space) and compared exactly.
    pub fn query_has(raw_query: &str, key: &str) -> bool {
        raw_query.split('&').any(|pair| {
            if pair.is_empty() || pair.contains(';') {
                return false;
            }
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            match (
                unescape(name, Mode::QueryComponent),
                unescape(value, Mode::QueryComponent),
            ) {
                (Ok(name), Ok(_)) => name == key.as_bytes(),
                _ => false,
            }
        })
    }

    #[cfg(test)]
    mod tests {
        use super::*;

        #[test]
        fn parse_matches_go() {
            let ok = [
                "https://x.openai.azure.com/openai/deployments/d/chat/completions?api-version=2024-02-01",
                "https://[::1]:443/x?api-version=1",
                "https://[fe80::1%25en0]/x",
                "https://[fe80::1%25%41]/x",
                "https://user:p%41ss@host/x",
                "https:opaque%zz?api-version=1",
                "relative/path",
                "*",
                "https://x/y#frag\twith-a-control-character-after-the-hash",
                "https://x/p ath",
                "https://x:/",
                "https://ex%C3%A4mple.com/",
            ];
            for url in ok {
                assert!(parse(url).is_ok(), "{url}");
            }
            let refused = [
                ("https://x/\n", Error::ControlCharacter),
                ("https://x/\u{7f}", Error::ControlCharacter),
                (":foo", Error::MissingScheme),
                (" https://x/", Error::ColonInFirstSegment),
                ("1https://x/", Error::ColonInFirstSegment),
                ("https://[::1/", Error::MissingBracket),
                ("https://x:8o/", Error::InvalidPort),
                ("https://[::1]x/", Error::InvalidPort),
                ("https://x y/", Error::InvalidHostCharacter),
                ("https://x%41/", Error::InvalidEscape),
                ("https://[fe80::1%25%2F]/", Error::InvalidEscape),
                ("https://x/%zz", Error::InvalidEscape),
                ("https://x/%4", Error::InvalidEscape),
                ("https://x/#%zz", Error::InvalidEscape),
                ("https://us er@x/", Error::InvalidUserinfo),
                ("https://us%zzer@x/", Error::InvalidEscape),
            ];
            for (url, error) in refused {
                assert_eq!(parse(url), Err(error), "{url:?}");
            }
        }

        #[test]
        fn query_matches_go() {
            let query = |url: &str| parse(url).unwrap();
            assert!(query_has(&query("https://x/?api-version="), "api-version"));
            assert!(query_has(&query("https://x/?a=1&api-version"), "api-version"));
            assert!(query_has(&query("https://x/?api%2Dversion=1"), "api-version"));
            assert!(query_has(&query("https://x/?api-version=1?x"), "api-version"));
            assert!(!query_has(&query("https://x/?api-version=1;a=b"), "api-version"));
            assert!(!query_has(&query("https://x/?a=b;api-version=1"), "api-version"));
            assert!(!query_has(&query("https://x/?api-version=%zz"), "api-version"));
            assert!(!query_has(&query("https://x/?API-VERSION=1"), "api-version"));
            assert!(!query_has(&query("https://x/?api+version=1"), "api-version"));
            assert!(!query_has(&query("https://x/?x#api-version=1"), "api-version"));
            assert!(!query_has(&query("https://x/api-version?"), "api-version"));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    /// Every string under an `apiTokens` key (or another secret-bearing key) anywhere in `value`.
    fn secrets(value: &Value, found: &mut Vec<String>) {
        const SECRET_KEYS: [&str; 5] = [
            "apiTokens",
            "awsAccessKey",
            "awsSecretKey",
            "vertexAuthKey",
            "hunyuanAuthKey",
        ];
        match value {
            Value::Object(map) => {
                for (key, member) in map {
                    if SECRET_KEYS.contains(&key.as_str()) {
                        match member {
                            Value::String(s) => found.push(s.clone()),
                            Value::Array(list) => found.extend(list.iter().filter_map(Value::as_str).map(String::from)),
                            _ => {}
                        }
                    }
                    secrets(member, found);
                }
            }
            Value::Array(list) => list.iter().for_each(|member| secrets(member, found)),
            _ => {}
        }
    }

    #[test]
    fn conformance_fixture() {
        let fixture: Value =
            serde_yaml_ng::from_str(include_str!("../../tests/fixtures/gateway/ai-proxy.yaml")).unwrap();
        let cases = fixture["cases"].as_array().expect("cases: a list");
        assert!(cases.len() > 50);
        let empty = json!({});
        for case in cases {
            let name = case["name"].as_str().expect("name");
            let source = case["source"].as_str().expect("source");
            let problems = match (case.get("provider"), case.get("rule")) {
                (Some(provider), None) => provider_problems(provider),
                (None, Some(rule)) => rule_problems(rule, case.get("default_config").unwrap_or(&empty)),
                _ => panic!("{name}: exactly one of provider, rule"),
            };
            match &case["expect"] {
                Value::String(accept) if accept == "accept" => {
                    assert!(
                        problems.is_empty(),
                        "{name}: accepted by the plugin, refused here: {problems:?}"
                    )
                }
                Value::Object(expect) => {
                    let refuse = expect["refuse"].as_str().expect("refuse: a substring");
                    assert!(
                        problems
                            .iter()
                            .any(|b| b.rule.contains(refuse) && b.source.to_string() == source),
                        "{name}: expected {refuse:?} from {source}, got {problems:?}"
                    );
                }
                other => panic!("{name}: expect is neither accept nor {{refuse}}: {other}"),
            }
            let mut found = Vec::new();
            secrets(case, &mut found);
            for secret in found.iter().filter(|s| !s.is_empty()) {
                for broken in &problems {
                    assert!(!broken.rule.contains(secret.as_str()), "{name}: a rule holds a secret");
                }
            }
        }
    }

    /// The provider types the worker writes.
    const WRITTEN_TYPES: [&str; 26] = crate::higress::provider::SUPPORTED_TYPES;

    #[test]
    fn every_written_type_is_known_and_has_an_accepted_case() {
        let fixture: Value =
            serde_yaml_ng::from_str(include_str!("../../tests/fixtures/gateway/ai-proxy.yaml")).unwrap();
        let accepted: Vec<&str> = fixture["cases"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|case| case["expect"] == "accept")
            .filter_map(|case| case.get("provider")?.get("type")?.as_str())
            .collect();
        for typ in WRITTEN_TYPES {
            assert!(INITIALIZERS.iter().any(|i| i.typ == typ), "{typ}");
            assert!(accepted.contains(&typ), "no accepted case for {typ}");
        }
        assert_eq!(INITIALIZERS.len(), 36);
    }

    #[test]
    fn global_config() {
        let good = json!({"id": "a", "type": "openai", "protocol": "openai", "apiTokens": ["sk-a"],
            "failover": {"enabled": false}, "retryOnFailure": {"enabled": false}});
        let bad = json!({"id": "b", "type": "qwen", "protocol": "openai"});
        // The worker's own defaultConfig: a list and nothing else validates nothing.
        assert!(global_problems(&json!({"providers": [good, bad]})).is_empty());
        assert!(global_problems(&json!({"providers": []})).is_empty());
        assert!(global_problems(&json!({})).is_empty());
        assert!(global_problems(&json!({"providers": "not a list"})).is_empty());
        assert!(global_problems(&json!({"providers": [bad, bad]})).is_empty());
        // A defaultConfig that names its active provider validates that one.
        let named = global_problems(&json!({"providers": [good, bad], "activeProviderId": "b"}));
        assert_eq!(named.len(), 1);
        assert_eq!(named[0].source, QWEN);
        assert!(global_problems(&json!({"providers": [good, bad], "activeProviderId": "a"})).is_empty());
        assert!(global_problems(&json!({"providers": [good], "activeProviderId": "missing"})).is_empty());
        // The legacy single provider is always active.
        assert_eq!(global_problems(&json!({"provider": bad}))[0].source, QWEN);

        // check(): the worker's real config, a rule per provider, nothing to report.
        let ollama = json!({"id": "o", "type": "ollama", "protocol": "openai", "ollamaServerHost": "10.0.0.1",
            "ollamaServerPort": 11434, "failover": {"enabled": false}, "retryOnFailure": {"enabled": false}});
        let default_config = json!({"providers": [good, ollama]});
        let (rule_a, rule_o) = (json!({"activeProviderId": "a"}), json!({"activeProviderId": "o"}));
        let rules = [
            (Entry::Rule("service a".into()), &rule_a),
            (Entry::Rule("service o".into()), &rule_o),
        ];
        assert!(check(&default_config, &rules).is_empty());
        // A broken entry no rule selects is never validated; one selected is reported once, at the entry,
        // however many rules select it.
        let default_config = json!({"providers": [good, bad]});
        assert!(check(&default_config, &rules[..1]).is_empty());
        let rule_b = json!({"activeProviderId": "b"});
        let rules = [
            (Entry::Rule("service a".into()), &rule_a),
            (Entry::Rule("service b".into()), &rule_b),
            (Entry::Rule("service b2".into()), &rule_b),
        ];
        let entries: Vec<Entry> = check(&default_config, &rules).into_iter().map(|p| p.entry).collect();
        assert_eq!(entries, [Entry::Provider("b".into())]);
    }

    #[test]
    fn gjson_coercions() {
        let get = |v: &Value| Some(v.clone());
        assert_eq!(gj::string(get(&json!(8080)).as_ref()), "8080");
        assert_eq!(gj::string(get(&json!(1.5)).as_ref()), "1.5");
        assert_eq!(gj::string(get(&json!(1e21)).as_ref()), "1000000000000000000000");
        assert_eq!(gj::string(get(&json!(false)).as_ref()), "false");
        assert_eq!(gj::string(get(&json!({"a": 1})).as_ref()), "{\"a\":1}");
        assert_eq!(gj::string(get(&json!(null)).as_ref()), "");
        assert_eq!(gj::uint(get(&json!("11434")).as_ref()), 11434);
        assert_eq!(gj::uint(get(&json!(" 11434")).as_ref()), 0);
        assert_eq!(gj::uint(get(&json!(-1)).as_ref()), 0);
        assert_eq!(gj::uint(get(&json!(0.5)).as_ref()), 0);
        assert_eq!(gj::uint(get(&json!(4294967296u64)).as_ref()) as u32, 0);
        assert_eq!(gj::uint(get(&json!(true)).as_ref()), 1);
        assert_eq!(gj::int(get(&json!("-8")).as_ref()), -8);
        assert_eq!(gj::int(get(&json!("+8")).as_ref()), 0);
        assert_eq!(gj::int(get(&json!(1e300)).as_ref()), i64::MAX);
        assert!(gj::boolean(get(&json!("TRUE")).as_ref()));
        assert!(gj::boolean(get(&json!("t")).as_ref()));
        assert!(!gj::boolean(get(&json!("yes")).as_ref()));
        assert!(gj::boolean(get(&json!(2)).as_ref()));
        assert_eq!(gj::array_len(get(&json!("one")).as_ref()), 1);
        assert_eq!(gj::array_len(get(&json!(null)).as_ref()), 0);
        assert_eq!(gj::array_len(None), 0);
        assert_eq!(gj::array_len(get(&json!([])).as_ref()), 0);
    }
}
