//! YAML configuration: parsing (unknown keys rejected with their path), `${VAR}`
//! expansion for secrets, and a `validate()` step that turns the raw file into the
//! resolved [`Settings`] the server runs on.

use std::collections::{BTreeMap, HashSet};
use std::net::SocketAddr;
use std::path::Path;

use serde::Deserialize;

/// Everything that can be wrong with a configuration file.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: String,
        source: std::io::Error,
    },
    #[error("invalid config at `{path}`: {message}")]
    Parse { path: String, message: String },
    #[error("invalid config at `{path}`: {message}")]
    Invalid { path: String, message: String },
}

fn invalid(path: impl Into<String>, message: impl Into<String>) -> ConfigError {
    ConfigError::Invalid {
        path: path.into(),
        message: message.into(),
    }
}

/// The configuration file as written (see `config.example.yaml`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    /// Address to listen on; `--listen` overrides it.
    #[serde(default = "default_listen")]
    pub listen: String,
    /// Runtime worker threads; absent means the machine's available parallelism.
    #[serde(default)]
    pub threads: Option<usize>,
    /// Microseconds the runtime keeps polling after request activity instead of
    /// sleeping (lower latency at low load for some CPU); 0 (default) turns it off.
    #[serde(default)]
    pub busy_poll_us: u64,
    /// Accepted bearer keys; empty (and no `keys`) means no authentication.
    #[serde(default)]
    pub api_keys: Vec<String>,
    /// Named keys with optional limits and model restrictions.
    #[serde(default)]
    pub keys: Vec<KeyConfig>,
    #[serde(default)]
    pub limits: Limits,
    /// Request header name prefixes copied to upstream requests (e.g. `x-mock-`).
    #[serde(default)]
    pub forward_headers: Vec<String>,
    /// Gateway-wide routing, retry and breaker defaults (each model may override some).
    #[serde(default)]
    pub resilience: Resilience,
    pub providers: BTreeMap<String, ProviderConfig>,
    pub models: Vec<ModelConfig>,
}

fn default_listen() -> String {
    "127.0.0.1:8080".to_string()
}

/// Size and time limits.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    /// Largest accepted request body; larger ones get 413.
    #[serde(default = "default_max_body")]
    pub max_body_bytes: usize,
    /// Upper bound for a whole non-streaming upstream exchange, for a stream's
    /// response headers, and for the silence between two stream chunks; then 504.
    #[serde(default = "default_timeout_ms")]
    pub upstream_timeout_ms: u64,
    /// Upper bound for opening a TCP connection to an upstream; then 502.
    #[serde(default = "default_connect_timeout_ms")]
    pub connect_timeout_ms: u64,
    /// Upper bound for receiving a request body; then 408.
    #[serde(default = "default_client_body_timeout_ms")]
    pub client_body_timeout_ms: u64,
    /// Deepest nesting of arrays and objects accepted in a request body; then 400.
    #[serde(default = "default_max_json_depth")]
    pub max_json_depth: usize,
}

fn default_max_json_depth() -> usize {
    64
}

fn default_max_body() -> usize {
    1024 * 1024
}
fn default_timeout_ms() -> u64 {
    60_000
}
fn default_connect_timeout_ms() -> u64 {
    5_000
}
fn default_client_body_timeout_ms() -> u64 {
    30_000
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_body_bytes: default_max_body(),
            upstream_timeout_ms: default_timeout_ms(),
            connect_timeout_ms: default_connect_timeout_ms(),
            client_body_timeout_ms: default_client_body_timeout_ms(),
            max_json_depth: default_max_json_depth(),
        }
    }
}

/// A named API key: the name shows in metrics and logs, the secret never does.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KeyConfig {
    pub name: String,
    /// The secret; may use `${VAR}`.
    pub key: String,
    /// Requests per minute.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens (input + output) per minute.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Models this key may use; absent = all. Others answer 404 as unknown.
    #[serde(default)]
    pub models: Option<Vec<String>>,
}

/// A model's answer cache.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CacheConfig {
    /// How long an answer is served from the cache, ms.
    #[serde(default = "default_cache_ttl")]
    pub ttl_ms: u64,
    #[serde(default = "default_cache_entries")]
    pub max_entries: usize,
    /// Bytes of answers and request bodies held.
    #[serde(default = "default_cache_bytes")]
    pub max_bytes: usize,
}

fn default_cache_ttl() -> u64 {
    60_000
}
fn default_cache_entries() -> usize {
    1024
}
fn default_cache_bytes() -> usize {
    16 * 1024 * 1024
}

/// One upstream provider, tagged by `type`.
#[derive(Debug, Clone, Deserialize)]
#[serde(tag = "type", rename_all = "lowercase", deny_unknown_fields)]
pub enum ProviderConfig {
    /// Any OpenAI-compatible API; `base_url` includes the version (`…/v1`).
    Openai {
        base_url: String,
        #[serde(default)]
        api_key: Option<String>,
        #[serde(default)]
        api_key_env: Option<String>,
    },
    /// Anthropic's Messages API; `base_url` without `/v1` (e.g. `https://api.anthropic.com`).
    Anthropic {
        base_url: String,
        #[serde(default)]
        api_key: Option<String>,
        #[serde(default)]
        api_key_env: Option<String>,
        /// `max_tokens` sent when an OpenAI request has none (Anthropic requires it).
        #[serde(default = "default_max_tokens")]
        default_max_tokens: u32,
    },
    /// Answers in process with a fixed-size reply: measures the gateway's own cost.
    Loopback {
        #[serde(default = "default_loopback_tokens")]
        output_tokens: u32,
    },
}

fn default_max_tokens() -> u32 {
    4096
}
fn default_loopback_tokens() -> u32 {
    16
}

/// How a model picks among its deployments.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Default)]
#[serde(rename_all = "snake_case")]
pub enum Strategy {
    /// Random, proportional to `weight`.
    #[default]
    Weighted,
    /// Fewest requests in flight.
    LeastBusy,
    /// Power of two choices over a peak EWMA of upstream time to first byte.
    Latency,
}

/// Circuit breaker settings; every field absent in a model inherits the gateway default.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BreakerConfig {
    /// `false` turns the breaker off (a deployment is never skipped).
    #[serde(default)]
    pub enabled: Option<bool>,
    /// Opens after this many failures in a row.
    #[serde(default)]
    pub consecutive_failures: Option<u32>,
    /// Opens when failures / requests over the window reach this ratio (0..1]...
    #[serde(default)]
    pub failure_ratio: Option<f64>,
    /// ...provided the window holds at least this many requests.
    #[serde(default)]
    pub min_requests: Option<u32>,
    /// Length of the sliding window, ms.
    #[serde(default)]
    pub window_ms: Option<u64>,
    /// How long an open breaker skips its deployment before a probe, ms.
    #[serde(default)]
    pub cooldown_ms: Option<u64>,
    /// When a 429 trips the breaker, its `retry-after` (capped by
    /// `resilience.retry_after_max_ms`) is the cooldown.
    #[serde(default)]
    pub cooldown_from_retry_after: Option<bool>,
}

/// The retry budget: retries may add at most `percent` % of the requests seen over
/// `window_ms`, and at least `min_per_second` retries per second are always allowed.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RetryBudget {
    #[serde(default = "default_budget_percent")]
    pub percent: f64,
    #[serde(default = "default_budget_min")]
    pub min_per_second: f64,
    #[serde(default = "default_budget_window")]
    pub window_ms: u64,
}

fn default_budget_percent() -> f64 {
    20.0
}
fn default_budget_min() -> f64 {
    10.0
}
fn default_budget_window() -> u64 {
    10_000
}

impl Default for RetryBudget {
    fn default() -> Self {
        RetryBudget {
            percent: default_budget_percent(),
            min_per_second: default_budget_min(),
            window_ms: default_budget_window(),
        }
    }
}

/// Gateway-wide defaults for routing, retries and breakers.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Resilience {
    #[serde(default)]
    pub routing: Strategy,
    /// Attempts after the first, per model (fallback models get their own).
    #[serde(default = "default_retries")]
    pub retries: u32,
    /// Full-jitter exponential backoff before retrying the same deployment:
    /// a random wait in 0..min(backoff_max_ms, backoff_base_ms * 2^n).
    #[serde(default = "default_backoff_base")]
    pub backoff_base_ms: u64,
    #[serde(default = "default_backoff_max")]
    pub backoff_max_ms: u64,
    /// Longest upstream `retry-after` the gateway waits for before retrying the same
    /// deployment; a longer one ends the retries (the client gets the 429 with it).
    #[serde(default = "default_retry_after_max")]
    pub retry_after_max_ms: u64,
    #[serde(default)]
    pub retry_budget: RetryBudget,
    #[serde(default)]
    pub breaker: BreakerConfig,
    /// Decay time of the `latency` strategy's EWMA, ms.
    #[serde(default = "default_ewma_decay")]
    pub latency_decay_ms: u64,
}

fn default_retries() -> u32 {
    2
}
fn default_backoff_base() -> u64 {
    25
}
fn default_backoff_max() -> u64 {
    1_000
}
fn default_retry_after_max() -> u64 {
    5_000
}
fn default_ewma_decay() -> u64 {
    10_000
}

impl Default for Resilience {
    fn default() -> Self {
        Resilience {
            routing: Strategy::default(),
            retries: default_retries(),
            backoff_base_ms: default_backoff_base(),
            backoff_max_ms: default_backoff_max(),
            retry_after_max_ms: default_retry_after_max(),
            retry_budget: RetryBudget::default(),
            breaker: BreakerConfig::default(),
            latency_decay_ms: default_ewma_decay(),
        }
    }
}

/// One deployment of a model: a provider and the model name it knows.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct DeploymentConfig {
    pub provider: String,
    #[serde(default)]
    pub upstream_model: Option<String>,
    /// Share of `weighted` routing (default 1; 0 = only when the others are open).
    #[serde(default = "default_weight")]
    pub weight: u32,
}

fn default_weight() -> u32 {
    1
}

/// A model name clients use, and where it goes: one `provider` (with an optional
/// `upstream_model`) or a list of `deployments`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    #[serde(default)]
    pub provider: Option<String>,
    /// Model name sent upstream when it differs from `name`.
    #[serde(default)]
    pub upstream_model: Option<String>,
    #[serde(default)]
    pub deployments: Option<Vec<DeploymentConfig>>,
    #[serde(default)]
    pub routing: Option<Strategy>,
    #[serde(default)]
    pub retries: Option<u32>,
    /// Models tried in order once this one's deployments are exhausted.
    #[serde(default)]
    pub fallbacks: Vec<String>,
    #[serde(default)]
    pub breaker: Option<BreakerConfig>,
    /// Requests per minute for this model, all clients together.
    #[serde(default)]
    pub rpm: Option<u64>,
    /// Tokens per minute for this model, all clients together.
    #[serde(default)]
    pub tpm: Option<u64>,
    /// Identical concurrent non-streaming requests share one upstream call.
    #[serde(default)]
    pub coalesce: bool,
    /// Exact-match answer cache (non-streaming requests); absent = off.
    #[serde(default)]
    pub cache: Option<CacheConfig>,
}

/// Parses YAML text; errors name the offending key's path.
pub fn parse(text: &str) -> Result<Config, ConfigError> {
    let de = serde_yaml::Deserializer::from_str(text);
    serde_path_to_error::deserialize(de).map_err(|e| {
        let path = e.path().to_string();
        ConfigError::Parse {
            path,
            message: e.into_inner().to_string(),
        }
    })
}

/// Reads and parses a config file.
pub fn load(path: &Path) -> Result<Config, ConfigError> {
    let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
        path: path.display().to_string(),
        source,
    })?;
    parse(&text)
}

/// A resolved provider: secrets read, URLs checked.
#[derive(Debug, Clone)]
pub struct ProviderSettings {
    pub name: String,
    pub kind: ProviderKind,
}

/// Resolved provider variants.
#[derive(Debug, Clone)]
pub enum ProviderKind {
    Openai {
        base_url: String,
        api_key: Option<String>,
    },
    Anthropic {
        base_url: String,
        api_key: Option<String>,
        default_max_tokens: u32,
    },
    Loopback {
        output_tokens: u32,
    },
}

impl ProviderKind {
    /// The provider type as written in the config.
    pub fn type_name(&self) -> &'static str {
        match self {
            ProviderKind::Openai { .. } => "openai",
            ProviderKind::Anthropic { .. } => "anthropic",
            ProviderKind::Loopback { .. } => "loopback",
        }
    }
}

/// A resolved deployment.
#[derive(Debug, Clone)]
pub struct DeploymentSettings {
    /// Index into [`Settings::providers`].
    pub provider: usize,
    /// Upstream model name when it differs from the model's.
    pub upstream_model: Option<String>,
    pub weight: u32,
}

/// Resolved breaker settings.
#[derive(Debug, Clone, PartialEq)]
pub struct BreakerSettings {
    pub enabled: bool,
    pub consecutive_failures: u32,
    pub failure_ratio: f64,
    pub min_requests: u32,
    pub window_ms: u64,
    pub cooldown_ms: u64,
    pub cooldown_from_retry_after: bool,
}

/// Gateway-wide retry settings.
#[derive(Debug, Clone)]
pub struct RetrySettings {
    pub backoff_base_ms: u64,
    pub backoff_max_ms: u64,
    pub retry_after_max_ms: u64,
    pub budget: RetryBudget,
    pub latency_decay_ms: u64,
}

/// A resolved key.
#[derive(Debug, Clone)]
pub struct KeySettings {
    pub name: String,
    pub key: String,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    /// Indexes into [`Settings::models`]; `None` = every model.
    pub models: Option<Vec<usize>>,
}

/// Resolved cache bounds.
#[derive(Debug, Clone, PartialEq)]
pub struct CacheSettings {
    pub ttl_ms: u64,
    pub max_entries: usize,
    pub max_bytes: usize,
}

/// A resolved model route.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub name: String,
    pub deployments: Vec<DeploymentSettings>,
    pub routing: Strategy,
    pub retries: u32,
    /// Indexes into [`Settings::models`], in order.
    pub fallbacks: Vec<usize>,
    pub breaker: BreakerSettings,
    pub rpm: Option<u64>,
    pub tpm: Option<u64>,
    pub coalesce: bool,
    pub cache: Option<CacheSettings>,
}

/// The validated configuration the server runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub threads: Option<usize>,
    pub busy_poll_us: u64,
    /// Every accepted key: the named `keys`, then `api_keys` (named `api_keys[N]`).
    pub keys: Vec<KeySettings>,
    pub limits: Limits,
    pub forward_headers: Vec<String>,
    pub providers: Vec<ProviderSettings>,
    pub models: Vec<ModelSettings>,
    pub retry: RetrySettings,
}

/// Largest number of deployments of one model (tried ones are kept in a bit set).
pub const MAX_DEPLOYMENTS: usize = 64;

/// Expands `${VAR}`, `${VAR:-default}`, `${VAR-default}` and `$$` in a config value
/// ([`config_text`] semantics); an unset variable without a default is an error naming it.
pub fn expand_env(value: &str, path: &str) -> Result<String, ConfigError> {
    expand_with(value, path, |k| std::env::var(k).ok())
}

fn expand_with(
    value: &str,
    path: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    config_text::expand(value, config_text::Dialect::Values, lookup)
        .map_err(|e| invalid(path, e.to_string()))
}

fn check_base_url(url: &str, path: &str) -> Result<String, ConfigError> {
    let uri: http::Uri = url
        .parse()
        .map_err(|e| invalid(path, format!("bad URL {url:?}: {e}")))?;
    match uri.scheme_str() {
        Some("http") | Some("https") => {}
        _ => {
            return Err(invalid(
                path,
                format!("bad URL {url:?}: scheme must be http or https"),
            ))
        }
    }
    if uri.host().unwrap_or_default().is_empty() {
        return Err(invalid(path, format!("bad URL {url:?}: no host")));
    }
    if uri.query().is_some() {
        return Err(invalid(path, format!("bad URL {url:?}: no query allowed")));
    }
    Ok(url.trim_end_matches('/').to_string())
}

fn resolve_key(
    api_key: &Option<String>,
    api_key_env: &Option<String>,
    path: &str,
) -> Result<Option<String>, ConfigError> {
    match (api_key, api_key_env) {
        (Some(_), Some(_)) => Err(invalid(path, "set only one of `api_key` and `api_key_env`")),
        (Some(k), None) => Ok(Some(expand_env(k, &format!("{path}.api_key"))?)),
        (None, Some(var)) => std::env::var(var).map(Some).map_err(|_| {
            invalid(
                format!("{path}.api_key_env"),
                format!("environment variable {var} is not set"),
            )
        }),
        (None, None) => Ok(None),
    }
}

impl Config {
    /// Checks cross-references and values, reads secrets, and resolves the routes.
    pub fn validate(&self) -> Result<Settings, ConfigError> {
        let listen: SocketAddr = self.listen.parse().map_err(|e| {
            invalid(
                "listen",
                format!("bad address {:?}: {e} (want IP:PORT)", self.listen),
            )
        })?;
        if self.threads == Some(0) {
            return Err(invalid("threads", "must be at least 1"));
        }
        if self.busy_poll_us > 1_000_000 {
            return Err(invalid("busy_poll_us", "at most 1000000 (one second)"));
        }
        if self.limits.max_body_bytes == 0 {
            return Err(invalid("limits.max_body_bytes", "must be above 0"));
        }
        if self.limits.upstream_timeout_ms == 0 {
            return Err(invalid("limits.upstream_timeout_ms", "must be above 0"));
        }
        if self.limits.connect_timeout_ms == 0 {
            return Err(invalid("limits.connect_timeout_ms", "must be above 0"));
        }
        if !(2..=1024).contains(&self.limits.max_json_depth) {
            return Err(invalid("limits.max_json_depth", "must be in 2..1024"));
        }
        if self.limits.client_body_timeout_ms == 0 {
            return Err(invalid("limits.client_body_timeout_ms", "must be above 0"));
        }
        for (i, p) in self.forward_headers.iter().enumerate() {
            let ok = !p.is_empty()
                && p.bytes()
                    .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_');
            if !ok {
                return Err(invalid(
                    format!("forward_headers[{i}]"),
                    format!("{p:?} is not a header name prefix"),
                ));
            }
        }
        let forward_headers = self
            .forward_headers
            .iter()
            .map(|p| p.to_ascii_lowercase())
            .collect();

        let mut providers = Vec::with_capacity(self.providers.len());
        for (name, p) in &self.providers {
            let path = format!("providers.{name}");
            let kind = match p {
                ProviderConfig::Openai {
                    base_url,
                    api_key,
                    api_key_env,
                } => ProviderKind::Openai {
                    base_url: check_base_url(
                        &expand_env(base_url, &format!("{path}.base_url"))?,
                        &format!("{path}.base_url"),
                    )?,
                    api_key: resolve_key(api_key, api_key_env, &path)?,
                },
                ProviderConfig::Anthropic {
                    base_url,
                    api_key,
                    api_key_env,
                    default_max_tokens,
                } => {
                    if *default_max_tokens == 0 {
                        return Err(invalid(
                            format!("{path}.default_max_tokens"),
                            "must be above 0",
                        ));
                    }
                    ProviderKind::Anthropic {
                        base_url: check_base_url(
                            &expand_env(base_url, &format!("{path}.base_url"))?,
                            &format!("{path}.base_url"),
                        )?,
                        api_key: resolve_key(api_key, api_key_env, &path)?,
                        default_max_tokens: *default_max_tokens,
                    }
                }
                ProviderConfig::Loopback { output_tokens } => ProviderKind::Loopback {
                    output_tokens: *output_tokens,
                },
            };
            providers.push(ProviderSettings {
                name: name.clone(),
                kind,
            });
        }

        let models = self.resolve_models(&providers)?;
        Ok(Settings {
            listen,
            threads: self.threads,
            busy_poll_us: self.busy_poll_us,
            keys: self.resolve_keys()?,
            limits: self.limits.clone(),
            forward_headers,
            providers,
            models,
            retry: self.retry_settings()?,
        })
    }

    /// The named keys, then the plain `api_keys` (named by their place in the list).
    fn resolve_keys(&self) -> Result<Vec<KeySettings>, ConfigError> {
        let mut out: Vec<KeySettings> = Vec::with_capacity(self.keys.len() + self.api_keys.len());
        for (i, k) in self.keys.iter().enumerate() {
            let path = format!("keys[{i}]");
            if k.name.is_empty() || out.iter().any(|o| o.name == k.name) {
                return Err(invalid(
                    format!("{path}.name"),
                    "empty or duplicate key name",
                ));
            }
            for (field, v) in [("rpm", k.rpm), ("tpm", k.tpm)] {
                if v == Some(0) {
                    return Err(invalid(format!("{path}.{field}"), "must be above 0"));
                }
            }
            let models = match &k.models {
                None => None,
                Some(list) => Some(self.model_indexes(list, &format!("{path}.models"))?),
            };
            out.push(KeySettings {
                name: k.name.clone(),
                key: expand_env(&k.key, &format!("{path}.key"))?,
                rpm: k.rpm,
                tpm: k.tpm,
                models,
            });
        }
        for (i, k) in self.api_keys.iter().enumerate() {
            let path = format!("api_keys[{i}]");
            out.push(KeySettings {
                key: expand_env(k, &path)?,
                name: path,
                rpm: None,
                tpm: None,
                models: None,
            });
        }
        for (i, k) in out.iter().enumerate() {
            let path = self.key_path(i);
            if k.key.is_empty() {
                return Err(invalid(path, "empty API key"));
            }
            if out[..i].iter().any(|o| o.key == k.key) {
                return Err(invalid(path, "the same secret is listed twice"));
            }
        }
        Ok(out)
    }

    /// Where key `i` of the resolved list is written.
    fn key_path(&self, i: usize) -> String {
        match i.checked_sub(self.keys.len()) {
            None => format!("keys[{i}].key"),
            Some(j) => format!("api_keys[{j}]"),
        }
    }

    fn model_indexes(&self, names: &[String], path: &str) -> Result<Vec<usize>, ConfigError> {
        names
            .iter()
            .enumerate()
            .map(|(j, n)| {
                self.models
                    .iter()
                    .position(|m| m.name == *n)
                    .ok_or_else(|| invalid(format!("{path}[{j}]"), format!("unknown model {n:?}")))
            })
            .collect()
    }

    fn retry_settings(&self) -> Result<RetrySettings, ConfigError> {
        let r = &self.resilience;
        if r.backoff_base_ms > r.backoff_max_ms {
            return Err(invalid(
                "resilience.backoff_base_ms",
                "must not exceed resilience.backoff_max_ms",
            ));
        }
        let b = &r.retry_budget;
        if !(0.0..=1000.0).contains(&b.percent) {
            return Err(invalid(
                "resilience.retry_budget.percent",
                "must be in 0..1000",
            ));
        }
        if !(b.min_per_second >= 0.0 && b.min_per_second.is_finite()) {
            return Err(invalid(
                "resilience.retry_budget.min_per_second",
                "must be 0 or more",
            ));
        }
        if b.window_ms < 100 {
            return Err(invalid(
                "resilience.retry_budget.window_ms",
                "must be at least 100",
            ));
        }
        if r.latency_decay_ms == 0 {
            return Err(invalid("resilience.latency_decay_ms", "must be above 0"));
        }
        Ok(RetrySettings {
            backoff_base_ms: r.backoff_base_ms,
            backoff_max_ms: r.backoff_max_ms,
            retry_after_max_ms: r.retry_after_max_ms,
            budget: b.clone(),
            latency_decay_ms: r.latency_decay_ms,
        })
    }

    fn resolve_models(
        &self,
        providers: &[ProviderSettings],
    ) -> Result<Vec<ModelSettings>, ConfigError> {
        if self.models.is_empty() {
            return Err(invalid("models", "no models configured"));
        }
        let defaults = resolve_breaker(
            &BreakerConfig::default(),
            &self.resilience.breaker,
            "resilience.breaker",
        )?;
        let mut seen = HashSet::new();
        let mut models = Vec::with_capacity(self.models.len());
        for (i, m) in self.models.iter().enumerate() {
            let path = format!("models[{i}]");
            if m.name.is_empty() {
                return Err(invalid(format!("{path}.name"), "empty model name"));
            }
            if !seen.insert(m.name.as_str()) {
                return Err(invalid(
                    format!("{path}.name"),
                    format!("duplicate model name {:?}", m.name),
                ));
            }
            let breaker = match &m.breaker {
                Some(b) => {
                    resolve_breaker(b, &self.resilience.breaker, &format!("{path}.breaker"))?
                }
                None => defaults.clone(),
            };
            models.push(ModelSettings {
                name: m.name.clone(),
                deployments: resolve_deployments(m, providers, &path)?,
                routing: m.routing.unwrap_or(self.resilience.routing),
                retries: m.retries.unwrap_or(self.resilience.retries),
                fallbacks: Vec::new(),
                breaker,
                rpm: positive(m.rpm, &format!("{path}.rpm"))?,
                tpm: positive(m.tpm, &format!("{path}.tpm"))?,
                coalesce: m.coalesce,
                cache: resolve_cache(m.cache.as_ref(), &format!("{path}.cache"))?,
            });
        }
        for (i, m) in self.models.iter().enumerate() {
            models[i].fallbacks = self.resolve_fallbacks(m, i)?;
        }
        Ok(models)
    }

    fn resolve_fallbacks(&self, m: &ModelConfig, i: usize) -> Result<Vec<usize>, ConfigError> {
        let mut out = Vec::with_capacity(m.fallbacks.len());
        for (j, f) in m.fallbacks.iter().enumerate() {
            let path = format!("models[{i}].fallbacks[{j}]");
            let idx = self
                .models
                .iter()
                .position(|x| x.name == *f)
                .ok_or_else(|| invalid(&path, format!("unknown model {f:?}")))?;
            if idx == i {
                return Err(invalid(&path, "a model cannot fall back to itself"));
            }
            if out.contains(&idx) {
                return Err(invalid(&path, format!("{f:?} is listed twice")));
            }
            out.push(idx);
        }
        Ok(out)
    }
}

fn provider_index(
    providers: &[ProviderSettings],
    name: &str,
    model: &str,
    path: &str,
) -> Result<usize, ConfigError> {
    providers
        .iter()
        .position(|p| p.name == name)
        .ok_or_else(|| {
            let known: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
            invalid(
                path,
                format!(
                    "model {model:?} points to unknown provider {name:?} (known: {})",
                    known.join(", ")
                ),
            )
        })
}

fn upstream_name(
    u: &Option<String>,
    model: &str,
    path: &str,
) -> Result<Option<String>, ConfigError> {
    if u.as_deref() == Some("") {
        return Err(invalid(path, "empty upstream model name"));
    }
    Ok(u.clone().filter(|u| u != model))
}

/// The deployments of a model, from its one-provider form or its `deployments` list.
fn resolve_deployments(
    m: &ModelConfig,
    providers: &[ProviderSettings],
    path: &str,
) -> Result<Vec<DeploymentSettings>, ConfigError> {
    match (&m.provider, &m.deployments) {
        (Some(p), None) => Ok(vec![DeploymentSettings {
            provider: provider_index(providers, p, &m.name, &format!("{path}.provider"))?,
            upstream_model: upstream_name(
                &m.upstream_model,
                &m.name,
                &format!("{path}.upstream_model"),
            )?,
            weight: 1,
        }]),
        (None, Some(list)) => {
            if m.upstream_model.is_some() {
                return Err(invalid(
                    format!("{path}.upstream_model"),
                    "with `deployments`, set upstream_model on each deployment",
                ));
            }
            if list.is_empty() || list.len() > MAX_DEPLOYMENTS {
                return Err(invalid(
                    format!("{path}.deployments"),
                    format!("between 1 and {MAX_DEPLOYMENTS} deployments"),
                ));
            }
            let mut out = Vec::with_capacity(list.len());
            for (j, d) in list.iter().enumerate() {
                let dp = format!("{path}.deployments[{j}]");
                out.push(DeploymentSettings {
                    provider: provider_index(
                        providers,
                        &d.provider,
                        &m.name,
                        &format!("{dp}.provider"),
                    )?,
                    upstream_model: upstream_name(
                        &d.upstream_model,
                        &m.name,
                        &format!("{dp}.upstream_model"),
                    )?,
                    weight: d.weight,
                });
            }
            if out.iter().all(|d| d.weight == 0) {
                return Err(invalid(
                    format!("{path}.deployments"),
                    "at least one deployment needs a weight above 0",
                ));
            }
            Ok(out)
        }
        (Some(_), Some(_)) => Err(invalid(
            path,
            "set either `provider` or `deployments`, not both",
        )),
        (None, None) => Err(invalid(
            format!("{path}.provider"),
            "missing: set `provider` or `deployments`",
        )),
    }
}

/// A limit that must be above 0 when set.
fn positive(v: Option<u64>, path: &str) -> Result<Option<u64>, ConfigError> {
    match v {
        Some(0) => Err(invalid(path, "must be above 0")),
        v => Ok(v),
    }
}

fn resolve_cache(
    c: Option<&CacheConfig>,
    path: &str,
) -> Result<Option<CacheSettings>, ConfigError> {
    let Some(c) = c else { return Ok(None) };
    for (field, v) in [
        ("ttl_ms", c.ttl_ms),
        ("max_entries", c.max_entries as u64),
        ("max_bytes", c.max_bytes as u64),
    ] {
        if v == 0 {
            return Err(invalid(format!("{path}.{field}"), "must be above 0"));
        }
    }
    Ok(Some(CacheSettings {
        ttl_ms: c.ttl_ms,
        max_entries: c.max_entries,
        max_bytes: c.max_bytes,
    }))
}

/// Merges a breaker section over the gateway defaults and checks the result.
fn resolve_breaker(
    b: &BreakerConfig,
    d: &BreakerConfig,
    path: &str,
) -> Result<BreakerSettings, ConfigError> {
    let s = BreakerSettings {
        enabled: b.enabled.or(d.enabled).unwrap_or(true),
        consecutive_failures: b
            .consecutive_failures
            .or(d.consecutive_failures)
            .unwrap_or(5),
        failure_ratio: b.failure_ratio.or(d.failure_ratio).unwrap_or(0.5),
        min_requests: b.min_requests.or(d.min_requests).unwrap_or(20),
        window_ms: b.window_ms.or(d.window_ms).unwrap_or(10_000),
        cooldown_ms: b.cooldown_ms.or(d.cooldown_ms).unwrap_or(5_000),
        cooldown_from_retry_after: b
            .cooldown_from_retry_after
            .or(d.cooldown_from_retry_after)
            .unwrap_or(true),
    };
    if s.consecutive_failures == 0 {
        return Err(invalid(
            format!("{path}.consecutive_failures"),
            "must be above 0",
        ));
    }
    if !(s.failure_ratio > 0.0 && s.failure_ratio <= 1.0) {
        return Err(invalid(
            format!("{path}.failure_ratio"),
            "must be in (0, 1]",
        ));
    }
    if s.window_ms < 100 {
        return Err(invalid(format!("{path}.window_ms"), "must be at least 100"));
    }
    if s.cooldown_ms == 0 {
        return Err(invalid(format!("{path}.cooldown_ms"), "must be above 0"));
    }
    Ok(s)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    const GOOD: &str = r#"
listen: 127.0.0.1:0
api_keys: [k1]
providers:
  up: {type: openai, base_url: "http://127.0.0.1:9/v1"}
  cl: {type: anthropic, base_url: "http://127.0.0.1:9", api_key: "x"}
  lo: {type: loopback}
models:
  - {name: a, provider: up}
  - {name: b, provider: cl, upstream_model: b-2024}
  - {name: c, provider: lo}
"#;

    /// Each edit of `base` must fail parsing or validation with `path` in the error.
    fn assert_bad_edits(base: &str, bad: &[(&str, &str, &str)]) {
        for (from, to, path) in bad {
            let t = base.replace(from, to);
            let e = match parse(&t) {
                Err(e) => e.to_string(),
                Ok(c) => c.validate().unwrap_err().to_string(),
            };
            assert!(e.contains(path), "{to}: {e}");
        }
    }

    #[test]
    fn good_config_validates() {
        let s = parse(GOOD).unwrap().validate().unwrap();
        assert_eq!(s.models.len(), 3);
        let d = &s.models[1].deployments[0];
        assert_eq!(s.providers[d.provider].name, "cl");
        assert_eq!(d.upstream_model.as_deref(), Some("b-2024"));
        assert_eq!(s.models[0].retries, 2);
        assert_eq!(s.models[0].routing, Strategy::Weighted);
    }

    #[test]
    fn unknown_key_is_named_with_path() {
        let text = GOOD.replace("api_keys: [k1]", "api_keys: [k1]\nlimits: {max_body: 3}");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("limits") && e.contains("max_body"), "{e}");
        let text = GOOD.replace("base_url: \"http://127.0.0.1:9/v1\"", "bas_url: x");
        let e = parse(&text).unwrap_err().to_string();
        assert!(e.contains("bas_url") && e.contains("providers.up"), "{e}");
    }

    #[test]
    fn validate_errors_are_clear() {
        let t = GOOD.replace("{name: c, provider: lo}", "{name: c, provider: nope}");
        let e = parse(&t).unwrap().validate().unwrap_err().to_string();
        assert!(
            e.contains("models[2].provider") && e.contains("nope"),
            "{e}"
        );
        let t = GOOD.replace("{name: c, provider: lo}", "{name: a, provider: lo}");
        let e = parse(&t).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains("duplicate model name \"a\""), "{e}");
        let t = GOOD.replace("http://127.0.0.1:9/v1", "ftp://x");
        let e = parse(&t).unwrap().validate().unwrap_err().to_string();
        assert!(
            e.contains("providers.up.base_url") && e.contains("scheme"),
            "{e}"
        );
    }

    #[test]
    fn deployments_and_resilience_keys_are_checked_by_path() {
        let base = GOOD.replace(
            "  - {name: c, provider: lo}",
            "  - {name: c, deployments: [{provider: up, weight: 2}, {provider: lo}], routing: latency, retries: 1, fallbacks: [a], breaker: {cooldown_ms: 100}}",
        );
        let s = parse(&base).unwrap().validate().unwrap();
        let c = &s.models[2];
        assert_eq!((c.deployments.len(), c.deployments[0].weight), (2, 2));
        assert_eq!(
            (c.routing, c.retries, c.fallbacks.clone()),
            (Strategy::Latency, 1, vec![0])
        );
        assert_eq!(
            (c.breaker.cooldown_ms, c.breaker.consecutive_failures),
            (100, 5)
        );
        let bad = [
            (
                "provider: lo}], routing",
                "provider: nope}], routing",
                "models[2].deployments[1].provider",
            ),
            ("routing: latency", "routing: fastest", "models[2].routing"),
            (
                "fallbacks: [a]",
                "fallbacks: [zz]",
                "models[2].fallbacks[0]",
            ),
            ("fallbacks: [a]", "fallbacks: [c]", "models[2].fallbacks[0]"),
            ("cooldown_ms: 100", "cooldown: 100", "models[2].breaker"),
            (
                "{name: c, deployments",
                "{name: c, provider: up, deployments",
                "models[2]",
            ),
            (
                "weight: 2}, {provider: lo}",
                "weight: 0}, {provider: lo, weight: 0}",
                "models[2].deployments",
            ),
        ];
        assert_bad_edits(&base, &bad);
        let t = format!("resilience: {{retry_budget: {{percent: 20, floor: 1}}}}\n{GOOD}");
        let e = parse(&t).unwrap_err().to_string();
        assert!(
            e.contains("resilience.retry_budget") && e.contains("floor"),
            "{e}"
        );
    }

    #[test]
    fn example_config_is_valid() {
        let text = include_str!("../config.example.yaml");
        let s = parse(text).unwrap().validate().unwrap();
        assert_eq!(s.models.len(), 4);
        assert_eq!(s.models[3].deployments.len(), 2);
        assert_eq!(s.models[3].fallbacks, [1]);
        assert_eq!(s.forward_headers, ["x-mock-"]);
        assert_eq!(s.keys.len(), 2);
        assert_eq!(
            (s.keys[0].name.as_str(), s.keys[0].rpm),
            ("team-a", Some(600))
        );
        assert_eq!(s.keys[0].models, Some(vec![0, 2]));
        assert_eq!(s.keys[1].name, "api_keys[0]");
        // The commented per-model keys are valid once uncommented.
        let on = ["rpm", "tpm", "coalesce", "cache"]
            .iter()
            .fold(text.replace("\n    #   ", "\n      "), |t, k| {
                t.replace(&format!("\n    # {k}"), &format!("\n    {k}"))
            });
        let m = &parse(&on).unwrap().validate().unwrap().models[3];
        assert_eq!((m.rpm, m.tpm, m.coalesce), (Some(1000), Some(500000), true));
        assert_eq!(m.cache.as_ref().map(|c| c.max_bytes), Some(16777216));
        let busy = text.replace("busy_poll_us: 0", "busy_poll_us: 2000000");
        let e = parse(&busy).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains("busy_poll_us"), "{e}");
    }

    #[test]
    fn keys_and_governance_keys_are_checked_by_path() {
        let base = GOOD.replace(
            "api_keys: [k1]",
            "api_keys: [k1]\nkeys: [{name: n, key: s, rpm: 5, models: [c]}]",
        );
        let s = parse(&base).unwrap().validate().unwrap();
        assert_eq!(s.keys.len(), 2);
        assert_eq!(
            (s.keys[0].models.clone(), s.keys[1].name.as_str()),
            (Some(vec![2]), "api_keys[0]")
        );
        let bad = [
            ("models: [c]", "models: [zz]", "keys[0].models[0]"),
            ("rpm: 5", "rpm: 0", "keys[0].rpm"),
            ("rpm: 5", "rps: 5", "keys[0]"),
            ("key: s,", "key: k1,", "api_keys[0]"),
            (
                "{name: c, provider: lo}",
                "{name: c, provider: lo, tpm: 0}",
                "models[2].tpm",
            ),
            (
                "{name: c, provider: lo}",
                "{name: c, provider: lo, cache: {max_entries: 0}}",
                "models[2].cache.max_entries",
            ),
            (
                "{name: c, provider: lo}",
                "{name: c, provider: lo, cache: {ttl: 1}}",
                "models[2].cache",
            ),
        ];
        assert_bad_edits(&base, &bad);
    }

    #[test]
    fn env_expansion() {
        let f = |k: &str| (k == "SET").then(|| "v".to_string());
        assert_eq!(expand_with("a${SET}b", "p", f).unwrap(), "avb");
        assert_eq!(expand_with("${UNSET:-d}", "p", f).unwrap(), "d");
        let e = expand_with("${UNSET}", "p", f).unwrap_err().to_string();
        assert!(e.contains("UNSET is not set") && e.contains("`p`"), "{e}");
        let e = expand_with("${SET", "keys[0].key", f)
            .unwrap_err()
            .to_string();
        assert!(
            e.contains("unterminated") && e.contains("keys[0].key"),
            "{e}"
        );
        assert_eq!(expand_with("pa$$word$", "p", f).unwrap(), "pa$word$");
    }
}
