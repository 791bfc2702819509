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
    /// Accepted bearer keys; empty means no authentication.
    #[serde(default)]
    pub api_keys: Vec<String>,
    #[serde(default)]
    pub limits: Limits,
    /// Request header name prefixes copied to upstream requests (e.g. `x-mock-`).
    #[serde(default)]
    pub forward_headers: Vec<String>,
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
        }
    }
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

/// A model name clients use, and where it goes.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ModelConfig {
    pub name: String,
    pub provider: String,
    /// Model name sent upstream when it differs from `name`.
    #[serde(default)]
    pub upstream_model: Option<String>,
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

/// A resolved model route.
#[derive(Debug, Clone)]
pub struct ModelSettings {
    pub name: String,
    /// Index into [`Settings::providers`].
    pub provider: usize,
    pub upstream_model: Option<String>,
}

/// The validated configuration the server runs on.
#[derive(Debug, Clone)]
pub struct Settings {
    pub listen: SocketAddr,
    pub threads: Option<usize>,
    pub busy_poll_us: u64,
    pub api_keys: Vec<String>,
    pub limits: Limits,
    pub forward_headers: Vec<String>,
    pub providers: Vec<ProviderSettings>,
    pub models: Vec<ModelSettings>,
}

/// Expands `${VAR}` and `${VAR:-default}` in a string; an unset variable without a
/// default is an error naming it.
pub fn expand_env(value: &str, path: &str) -> Result<String, ConfigError> {
    expand_with(value, path, |k| std::env::var(k).ok())
}

fn expand_with(
    value: &str,
    path: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, ConfigError> {
    let mut out = String::with_capacity(value.len());
    let mut rest = value;
    while let Some(start) = rest.find("${") {
        out.push_str(&rest[..start]);
        let after = &rest[start + 2..];
        let end = after
            .find('}')
            .ok_or_else(|| invalid(path, format!("unterminated `${{` in {value:?}")))?;
        let expr = &after[..end];
        let (name, default) = match expr.split_once(":-") {
            Some((n, d)) => (n, Some(d)),
            None => (expr, None),
        };
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(invalid(path, format!("bad variable name `{name}`")));
        }
        match (lookup(name), default) {
            (Some(v), _) => out.push_str(&v),
            (None, Some(d)) => out.push_str(d),
            (None, None) => {
                return Err(invalid(
                    path,
                    format!("environment variable {name} is not set"),
                ))
            }
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok(out)
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
        if self.limits.client_body_timeout_ms == 0 {
            return Err(invalid("limits.client_body_timeout_ms", "must be above 0"));
        }
        let mut api_keys = Vec::with_capacity(self.api_keys.len());
        for (i, k) in self.api_keys.iter().enumerate() {
            let path = format!("api_keys[{i}]");
            let k = expand_env(k, &path)?;
            if k.is_empty() {
                return Err(invalid(path, "empty API key"));
            }
            api_keys.push(k);
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

        if self.models.is_empty() {
            return Err(invalid("models", "no models configured"));
        }
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
            let provider = providers
                .iter()
                .position(|p| p.name == m.provider)
                .ok_or_else(|| {
                    let known: Vec<&str> = providers.iter().map(|p| p.name.as_str()).collect();
                    invalid(
                        format!("{path}.provider"),
                        format!(
                            "model {:?} points to unknown provider {:?} (known: {})",
                            m.name,
                            m.provider,
                            known.join(", ")
                        ),
                    )
                })?;
            if m.upstream_model.as_deref() == Some("") {
                return Err(invalid(
                    format!("{path}.upstream_model"),
                    "empty upstream model name",
                ));
            }
            models.push(ModelSettings {
                name: m.name.clone(),
                provider,
                upstream_model: m.upstream_model.clone().filter(|u| *u != m.name),
            });
        }
        Ok(Settings {
            listen,
            threads: self.threads,
            busy_poll_us: self.busy_poll_us,
            api_keys,
            limits: self.limits.clone(),
            forward_headers,
            providers,
            models,
        })
    }
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

    #[test]
    fn good_config_validates() {
        let s = parse(GOOD).unwrap().validate().unwrap();
        assert_eq!(s.models.len(), 3);
        assert_eq!(s.providers[s.models[1].provider].name, "cl");
        assert_eq!(s.models[1].upstream_model.as_deref(), Some("b-2024"));
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
    fn example_config_is_valid() {
        let text = include_str!("../config.example.yaml");
        let s = parse(text).unwrap().validate().unwrap();
        assert_eq!(s.models.len(), 3);
        assert_eq!(s.forward_headers, ["x-mock-"]);
        let busy = text.replace("busy_poll_us: 0", "busy_poll_us: 2000000");
        let e = parse(&busy).unwrap().validate().unwrap_err().to_string();
        assert!(e.contains("busy_poll_us"), "{e}");
    }

    #[test]
    fn env_expansion() {
        let f = |k: &str| (k == "SET").then(|| "v".to_string());
        assert_eq!(expand_with("a${SET}b", "p", f).unwrap(), "avb");
        assert_eq!(expand_with("${UNSET:-d}", "p", f).unwrap(), "d");
        let e = expand_with("${UNSET}", "p", f).unwrap_err().to_string();
        assert!(e.contains("UNSET is not set") && e.contains("`p`"), "{e}");
    }
}
