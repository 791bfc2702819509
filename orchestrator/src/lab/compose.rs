//! Reads `docker-compose.benchmark.yml` and `.env.benchmark` the way docker-compose does, so
//! one file describes the stack both for the orchestrator and for compose users.
//!
//! Only the compose keys the lab uses are accepted (`deny_unknown_fields`): an unsupported
//! key is an error naming it, instead of a setting silently ignored. Variables are
//! interpolated before parsing, as compose does ([`config_text::Dialect::Compose`]):
//! `${VAR}`, `${VAR:-default}` (default when unset or empty), `${VAR-default}` (default
//! when unset), `$VAR`, and `$$` for a literal `$`.

use std::collections::{BTreeMap, HashMap};
use std::path::{Path, PathBuf};

use serde::Deserialize;

/// Errors reading the compose file or the env file.
#[derive(Debug, thiserror::Error)]
pub enum ComposeError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path}: {source}")]
    Interpolation {
        path: PathBuf,
        source: config_text::ExpandError,
    },
    #[error("{path}: unsupported or invalid compose setting at `{field}`: {message}")]
    Parse {
        path: PathBuf,
        field: String,
        message: String,
    },
    #[error("{path} line {line}: expected NAME=value, got `{text}`")]
    EnvLine {
        path: PathBuf,
        line: usize,
        text: String,
    },
    #[error("service `{service}`: {message}")]
    Invalid { service: String, message: String },
}

/// The compose file: only what the lab uses.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ComposeFile {
    #[serde(default)]
    pub version: Option<String>,
    pub services: BTreeMap<String, Service>,
}

/// One service of the compose file.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Service {
    pub image: String,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub environment: Environment,
    #[serde(default)]
    pub volumes: Vec<String>,
    pub cpuset: String,
    pub mem_limit: String,
    pub memswap_limit: String,
    pub network_mode: String,
    #[serde(default)]
    pub privileged: bool,
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
    /// Resource limits; only `nofile` (open files: every connection is one).
    #[serde(default)]
    pub ulimits: Option<Ulimits>,
    #[serde(default)]
    pub labels: BTreeMap<String, String>,
    /// `target`, `mock` or `monitoring`.
    #[serde(rename = "x-lab-role")]
    pub role: Role,
    /// Built locally from the workspace binary of that name (a `FROM scratch` image).
    #[serde(rename = "x-lab-build", default)]
    pub build: Option<String>,
    /// Readiness URL probed from the host.
    #[serde(rename = "x-lab-health-url")]
    pub health_url: String,
    /// What to run when no registry answers.
    #[serde(rename = "x-lab-offline", default)]
    pub offline: Option<Offline>,
    /// Whether the target's config routes around mock A to mock B (default true). A
    /// target that proxies to mock A only (the `nginx` floor) says `false`: the `faults`
    /// suite then reports its raw faults without verdicts, as for `direct`.
    #[serde(rename = "x-lab-redundant", default = "yes")]
    pub redundant: bool,
    /// Services of role `backing` this one needs (compose's list form): started before it
    /// and stopped with it, so they run only while a target that needs them is measured.
    #[serde(default)]
    pub depends_on: Vec<String>,
    /// This target is the governed variant of another (`--lane governed|both`).
    #[serde(rename = "x-lab-governed", default)]
    pub governed: Option<Governed>,
}

/// `x-lab-governed`: which plain target this one governs, and what it turns on.
#[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Governed {
    /// The plain target (its lane-`plain` twin).
    pub of: String,
    /// What governance is on: keys, limits, metrics (shown in the report).
    pub features: String,
    /// What the lane asks for that this target cannot have here, and why.
    #[serde(default)]
    pub missing: Option<String>,
}

fn yes() -> bool {
    true
}

/// `ulimits:` of a service (compose syntax); other limits are rejected by name.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Ulimits {
    pub nofile: Option<Ulimit>,
}

/// One limit: `nofile: 65536` (soft = hard) or `nofile: {soft: N, hard: N}`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Ulimit {
    pub soft: u64,
    pub hard: u64,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SoftHard {
    soft: u64,
    hard: u64,
}

impl<'de> Deserialize<'de> for Ulimit {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        use serde::de::Error;
        let v = serde_yaml::Value::deserialize(d)?;
        if let Some(n) = v.as_u64() {
            return Ok(Ulimit { soft: n, hard: n });
        }
        let p: SoftHard = serde_yaml::from_value(v).map_err(D::Error::custom)?;
        if p.soft > p.hard {
            return Err(D::Error::custom(format!(
                "soft limit {} is above the hard limit {}",
                p.soft, p.hard
            )));
        }
        Ok(Ulimit {
            soft: p.soft,
            hard: p.hard,
        })
    }
}

impl Ulimits {
    /// `(name, soft, hard)` of each limit set, as Docker takes them.
    pub fn to_triples(&self) -> Vec<(String, u64, u64)> {
        self.nofile
            .iter()
            .map(|u| ("nofile".to_string(), u.soft, u.hard))
            .collect()
    }
}

/// The role of a service in a run.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Role {
    /// Measured in turn (gateway, litellm); started alone, on the target cpuset.
    Target,
    /// The upstream mock, up for the whole run; also the `direct` target.
    Mock,
    /// Prometheus, cAdvisor, the sink: up for the whole run.
    Monitoring,
    /// A store a target needs (Redis for shared limits): started with the targets that
    /// name it in `depends_on`, off the target cpuset, and stopped with them.
    Backing,
}

/// `environment:` as a map or as a list of `NAME=value`.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(untagged)]
pub enum Environment {
    #[default]
    Empty,
    Map(BTreeMap<String, String>),
    List(Vec<String>),
}

impl Environment {
    /// `NAME=value` pairs in a stable order.
    pub fn to_pairs(&self) -> Vec<(String, String)> {
        match self {
            Environment::Empty => Vec::new(),
            Environment::Map(m) => m.iter().map(|(k, v)| (k.clone(), v.clone())).collect(),
            Environment::List(l) => l
                .iter()
                .map(|s| match s.split_once('=') {
                    Some((k, v)) => (k.to_string(), v.to_string()),
                    None => (s.clone(), String::new()),
                })
                .collect(),
        }
    }
}

/// A compose healthcheck (durations in compose syntax: `5s`, `1m30s`, `500ms`).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Healthcheck {
    #[serde(default)]
    pub test: Option<Vec<String>>,
    #[serde(default)]
    pub interval: Option<String>,
    #[serde(default)]
    pub timeout: Option<String>,
    #[serde(default)]
    pub retries: Option<u32>,
    #[serde(default)]
    pub start_period: Option<String>,
    #[serde(default)]
    pub disable: bool,
}

/// `x-lab-offline`: the locally built variant of a service, or why there is none.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Offline {
    #[serde(default)]
    pub image: Option<String>,
    #[serde(default)]
    pub entrypoint: Option<Vec<String>>,
    #[serde(default)]
    pub command: Option<Vec<String>>,
    #[serde(default)]
    pub healthcheck: Option<Healthcheck>,
    /// The service cannot run offline; the reason is shown by `status` and in the manifest.
    #[serde(default)]
    pub unavailable: Option<String>,
    /// How to build `image` when it is missing: on the lab's Debian base image.
    #[serde(default)]
    pub build: Option<OfflineBuild>,
}

/// `x-lab-offline.build`: a recipe run in a host-networked container of the lab's Debian
/// base image (`lab/debian:bookworm`), whose result is committed as `x-lab-offline.image`
/// with `x-lab-offline.entrypoint` as its entrypoint.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OfflineBuild {
    /// Debian packages installed with apt from this machine's mirror (services' init
    /// scripts are kept from starting during the install).
    #[serde(default)]
    pub debian_packages: Vec<String>,
    /// Shell commands run in order after the install (`sh -c`, joined with `&&`).
    #[serde(default)]
    pub run: Vec<String>,
    /// Bind-mount the host's CA bundle at `/host-ca.crt` during the build (pip over HTTPS:
    /// `PIP_CERT=/host-ca.crt`).
    #[serde(default)]
    pub host_ca: bool,
    /// Environment variables committed into the image.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
}

/// Variables for interpolation: process environment over the env file over computed
/// values (the cpuset plan). Empty values count as unset for the computed layer.
#[derive(Debug, Clone, Default)]
pub struct Vars {
    /// From the process environment.
    pub process: HashMap<String, String>,
    /// From `.env.benchmark`.
    pub file: BTreeMap<String, String>,
    /// Computed by the orchestrator (cpusets, workers), used when the others leave a
    /// variable unset or empty.
    pub computed: BTreeMap<String, String>,
}

impl Vars {
    /// Looks a variable up: `None` when unset everywhere.
    pub fn get(&self, name: &str) -> Option<String> {
        let explicit = self
            .process
            .get(name)
            .or_else(|| self.file.get(name))
            .cloned();
        match explicit {
            Some(v) if !v.is_empty() => Some(v),
            other => self.computed.get(name).cloned().or(other),
        }
    }

    /// Looks a variable up, with a default when unset or empty.
    pub fn get_or(&self, name: &str, default: &str) -> String {
        match self.get(name) {
            Some(v) if !v.is_empty() => v,
            _ => default.to_string(),
        }
    }
}

/// Parses an env file: `NAME=value` lines, `#` comments, blank lines, optional quotes.
pub fn parse_env_file(path: &Path, text: &str) -> Result<BTreeMap<String, String>, ComposeError> {
    let mut vars = BTreeMap::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim();
        if line.is_empty() || line.starts_with('#') {
            continue;
        }
        let line = line.strip_prefix("export ").unwrap_or(line);
        let Some((name, value)) = line.split_once('=') else {
            return Err(ComposeError::EnvLine {
                path: path.to_path_buf(),
                line: i + 1,
                text: raw.to_string(),
            });
        };
        let name = name.trim();
        if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_') {
            return Err(ComposeError::EnvLine {
                path: path.to_path_buf(),
                line: i + 1,
                text: raw.to_string(),
            });
        }
        let value = value.trim();
        let value = if value.len() >= 2
            && ((value.starts_with('"') && value.ends_with('"'))
                || (value.starts_with('\'') && value.ends_with('\'')))
        {
            &value[1..value.len() - 1]
        } else {
            value
        };
        vars.insert(name.to_string(), value.to_string());
    }
    Ok(vars)
}

/// Reads the env file; a missing file is an empty set of variables.
pub fn read_env_file(path: &Path) -> Result<BTreeMap<String, String>, ComposeError> {
    match std::fs::read_to_string(path) {
        Ok(text) => parse_env_file(path, &text),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(BTreeMap::new()),
        Err(source) => Err(ComposeError::Read {
            path: path.to_path_buf(),
            source,
        }),
    }
}

/// Interpolates `${VAR}`, `${VAR:-d}`, `${VAR-d}`, `$VAR` and `$$` in `text`.
pub fn interpolate(text: &str, vars: &Vars) -> Result<String, config_text::ExpandError> {
    config_text::expand(text, config_text::Dialect::Compose, |name| vars.get(name))
}

/// Interpolates and parses compose text; errors name the offending field.
pub fn parse_compose(path: &Path, text: &str, vars: &Vars) -> Result<ComposeFile, ComposeError> {
    let text = interpolate(text, vars).map_err(|source| ComposeError::Interpolation {
        path: path.to_path_buf(),
        source,
    })?;
    let de = serde_yaml::Deserializer::from_str(&text);
    let file: ComposeFile =
        serde_path_to_error::deserialize(de).map_err(|e| ComposeError::Parse {
            path: path.to_path_buf(),
            field: e.path().to_string(),
            message: e.inner().to_string(),
        })?;
    for (name, svc) in &file.services {
        if svc.network_mode != "host" {
            return Err(ComposeError::Invalid {
                service: name.clone(),
                message: format!(
                    "network_mode must be `host` (load stays on 127.0.0.1), got `{}`",
                    svc.network_mode
                ),
            });
        }
        let mem = parse_bytes(&svc.mem_limit).map_err(|m| ComposeError::Invalid {
            service: name.clone(),
            message: format!("mem_limit: {m}"),
        })?;
        let swap = parse_bytes(&svc.memswap_limit).map_err(|m| ComposeError::Invalid {
            service: name.clone(),
            message: format!("memswap_limit: {m}"),
        })?;
        if let Some(o) = &svc.offline {
            validate_offline(o).map_err(|message| ComposeError::Invalid {
                service: name.clone(),
                message,
            })?;
        }
        validate_links(name, svc, &file.services)?;
        if swap != mem {
            return Err(ComposeError::Invalid {
                service: name.clone(),
                message: format!(
                    "memswap_limit ({}) must equal mem_limit ({}): the lab runs without swap",
                    svc.memswap_limit, svc.mem_limit
                ),
            });
        }
    }
    Ok(file)
}

/// `depends_on` names backing services, and `x-lab-governed` a target of role `target`
/// that is not itself governed.
fn validate_links(
    name: &str,
    svc: &Service,
    all: &BTreeMap<String, Service>,
) -> Result<(), ComposeError> {
    let invalid = |message: String| ComposeError::Invalid {
        service: name.to_string(),
        message,
    };
    for d in &svc.depends_on {
        if all.get(d).map(|s| s.role) != Some(Role::Backing) {
            return Err(invalid(format!(
                "depends_on: `{d}` is not a service with x-lab-role: backing"
            )));
        }
    }
    if let Some(g) = &svc.governed {
        if svc.role != Role::Target {
            return Err(invalid("x-lab-governed is for x-lab-role: target".into()));
        }
        let plain = all.get(&g.of);
        if !plain.is_some_and(|p| p.role == Role::Target && p.governed.is_none()) {
            return Err(invalid(format!(
                "x-lab-governed.of: `{}` is not a plain target (x-lab-role: target without x-lab-governed)",
                g.of
            )));
        }
    }
    Ok(())
}

/// An `x-lab-offline` that can be acted on: an image or a reason, a recipe only with an
/// image, package names apt accepts (they are written into a shell command).
fn validate_offline(o: &Offline) -> Result<(), String> {
    match (&o.image, &o.unavailable) {
        (None, None) => return Err("x-lab-offline needs `image` or `unavailable`".into()),
        (Some(_), Some(_)) => {
            return Err("x-lab-offline: `image` and `unavailable` exclude each other".into())
        }
        _ => {}
    }
    let Some(b) = &o.build else { return Ok(()) };
    if o.image.is_none() {
        return Err("x-lab-offline.build needs x-lab-offline.image (the tag it makes)".into());
    }
    if b.debian_packages.is_empty() && b.run.is_empty() {
        return Err("x-lab-offline.build: give `debian_packages` or `run`".into());
    }
    let ok = |p: &str| {
        p.chars().next().is_some_and(|c| c.is_ascii_alphanumeric())
            && p.chars()
                .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || "+-.:=~".contains(c))
    };
    if let Some(bad) = b.debian_packages.iter().find(|p| !ok(p)) {
        return Err(format!(
            "x-lab-offline.build.debian_packages: `{bad}` is not a Debian package name"
        ));
    }
    Ok(())
}

/// Reads and parses the compose file at `path`.
pub fn read_compose(path: &Path, vars: &Vars) -> Result<ComposeFile, ComposeError> {
    let text = std::fs::read_to_string(path).map_err(|source| ComposeError::Read {
        path: path.to_path_buf(),
        source,
    })?;
    parse_compose(path, &text, vars)
}

/// Parses a docker memory size (`512m`, `1g`, `1024k`, `1048576`, `1gb`) into bytes.
pub fn parse_bytes(s: &str) -> Result<u64, String> {
    let t = s.trim().to_ascii_lowercase();
    let t = t.strip_suffix('b').unwrap_or(&t);
    let (num, mult) = match t.chars().last() {
        Some('k') => (&t[..t.len() - 1], 1u64 << 10),
        Some('m') => (&t[..t.len() - 1], 1 << 20),
        Some('g') => (&t[..t.len() - 1], 1 << 30),
        Some(c) if c.is_ascii_digit() => (t, 1),
        _ => return Err(format!("invalid size `{s}` (examples: 512m, 1g)")),
    };
    let n: f64 = num
        .parse()
        .map_err(|_| format!("invalid size `{s}` (examples: 512m, 1g)"))?;
    if n <= 0.0 {
        return Err(format!("size `{s}` must be positive"));
    }
    Ok((n * mult as f64) as u64)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    fn vars(file: &[(&str, &str)], process: &[(&str, &str)]) -> Vars {
        Vars {
            process: process
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            file: file
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            computed: BTreeMap::new(),
        }
    }

    #[test]
    fn interpolation_forms() {
        let v = vars(&[("A", "1"), ("E", "")], &[]);
        assert_eq!(interpolate("${A}", &v).unwrap(), "1");
        assert_eq!(interpolate("$A-x", &v).unwrap(), "1-x");
        assert_eq!(interpolate("${B:-d}", &v).unwrap(), "d");
        assert_eq!(interpolate("${E:-d}", &v).unwrap(), "d");
        assert_eq!(interpolate("${E-d}", &v).unwrap(), "");
        assert_eq!(interpolate("${B-d}", &v).unwrap(), "d");
        assert_eq!(interpolate("${A:-d}", &v).unwrap(), "1");
        assert_eq!(interpolate("$${A}", &v).unwrap(), "${A}");
        assert_eq!(interpolate("${B}", &v).unwrap(), "");
        assert_eq!(interpolate("a $$ b", &v).unwrap(), "a $ b");
        assert_eq!(
            interpolate("${A:-http://x:1/y}", &vars(&[], &[])).unwrap(),
            "http://x:1/y"
        );
    }

    #[test]
    fn interpolation_errors_are_clear() {
        let v = vars(&[], &[]);
        let err = |text: &str| interpolate(text, &v).unwrap_err().to_string();
        assert!(err("x: ${A").contains("unterminated"));
        assert!(err("x: ${A:?err}").contains("unsupported substitution"));
        assert!(err("x: $ y").contains("$$"));
    }

    #[test]
    fn process_env_overrides_file_and_computed_fills_empty() {
        let mut v = vars(&[("P", "file"), ("C", "")], &[("P", "proc")]);
        v.computed.insert("C".into(), "0-1".into());
        v.computed.insert("P".into(), "computed".into());
        assert_eq!(v.get("P").as_deref(), Some("proc"));
        assert_eq!(v.get("C").as_deref(), Some("0-1"));
        assert_eq!(v.get("Z"), None);
    }

    #[test]
    fn env_file_parsing() {
        let p = Path::new(".env.benchmark");
        let m = parse_env_file(p, "# c\n\nA=1\nB = \"two words\"\nexport C='x'\nD=\n").unwrap();
        assert_eq!(m["A"], "1");
        assert_eq!(m["B"], "two words");
        assert_eq!(m["C"], "x");
        assert_eq!(m["D"], "");
        let err = parse_env_file(p, "A=1\nnot a line\n").unwrap_err();
        assert!(err.to_string().contains("line 2"), "{err}");
    }

    const MINI: &str = r#"
version: "2.4"
services:
  mock:
    image: ${IMG:-lab/mock:latest}
    cpuset: "${CPU:-0}"
    mem_limit: 512m
    memswap_limit: 512m
    network_mode: host
    labels: {lab: x}
    x-lab-role: mock
    x-lab-health-url: http://127.0.0.1:9000/health
"#;

    #[test]
    fn parses_a_service() {
        let f = parse_compose(Path::new("c.yml"), MINI, &vars(&[("CPU", "1")], &[])).unwrap();
        let s = &f.services["mock"];
        assert_eq!(s.image, "lab/mock:latest");
        assert_eq!(s.cpuset, "1");
        assert_eq!(s.role, Role::Mock);
    }

    #[test]
    fn unsupported_key_is_named() {
        let text = MINI.replace("    labels:", "    ports: [\"80:80\"]\n    labels:");
        let err = parse_compose(Path::new("c.yml"), &text, &vars(&[], &[])).unwrap_err();
        let msg = err.to_string();
        assert!(msg.contains("services.mock"), "{msg}");
        assert!(msg.contains("ports"), "{msg}");
    }

    #[test]
    fn swap_must_equal_memory() {
        let text = MINI.replace("memswap_limit: 512m", "memswap_limit: 1g");
        let err = parse_compose(Path::new("c.yml"), &text, &vars(&[], &[])).unwrap_err();
        assert!(err.to_string().contains("memswap_limit"), "{err}");
    }

    #[test]
    fn sizes() {
        assert_eq!(parse_bytes("512m").unwrap(), 512 << 20);
        assert_eq!(parse_bytes("1g").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("1GB").unwrap(), 1 << 30);
        assert_eq!(parse_bytes("1000").unwrap(), 1000);
        assert!(parse_bytes("lots").is_err());
    }

    #[test]
    fn the_repo_compose_file_parses() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let file = read_env_file(&root.join(".env.benchmark")).unwrap();
        let v = Vars {
            file,
            ..Default::default()
        };
        let f = read_compose(&root.join("docker-compose.benchmark.yml"), &v).unwrap();
        for name in [
            "gateway",
            "litellm",
            "nginx",
            "mock-upstream",
            "prometheus",
            "cadvisor",
            "influxdb",
        ] {
            let s = &f.services[name];
            assert_eq!(
                s.labels.get("lab").map(String::as_str),
                Some("llm-gateway-lab")
            );
            assert_eq!(s.labels.get("lab.service").map(String::as_str), Some(name));
        }
    }

    fn repo_env() -> BTreeMap<String, String> {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        read_env_file(&root.join(".env.benchmark")).unwrap()
    }

    /// nginx.conf cannot expand variables: its ports must be .env.benchmark's defaults.
    #[test]
    fn nginx_conf_names_the_env_ports() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let conf = std::fs::read_to_string(root.join("docker/nginx/nginx.conf")).unwrap();
        let env = repo_env();
        let directive = |name: &str| -> Vec<String> {
            conf.lines()
                .map(str::trim)
                .filter(|l| l.ends_with(';'))
                .filter_map(|l| l.strip_prefix(name))
                .filter_map(|l| l.split_whitespace().next())
                .map(|a| a.trim_end_matches(';').to_string())
                .collect()
        };
        assert_eq!(
            directive("server "),
            [format!("127.0.0.1:{}", env["MOCK_PORT"])],
            "the upstream in nginx.conf must be mock A at MOCK_PORT"
        );
        assert_eq!(
            directive("listen "),
            [format!("127.0.0.1:{}", env["NGINX_PORT"])],
            "nginx.conf must listen on NGINX_PORT"
        );
    }

    #[test]
    fn nginx_port_clashes_with_no_other_port() {
        let env = repo_env();
        let ports: Vec<(&String, &String)> = env
            .iter()
            .filter(|(k, v)| k.ends_with("_PORT") && !v.is_empty())
            .collect();
        for (k, v) in &ports {
            if *k != "NGINX_PORT" {
                assert_ne!(*v, &env["NGINX_PORT"], "NGINX_PORT clashes with {k}");
            }
        }
        assert!(ports.len() >= 10, "{ports:?}");
    }

    const OFFLINE: &str = "    x-lab-offline:\n      image: lab/x:1\n      build:\n";

    fn with_offline(recipe: &str) -> Result<ComposeFile, ComposeError> {
        let text = format!("{MINI}{OFFLINE}{recipe}");
        parse_compose(Path::new("c.yml"), &text, &vars(&[], &[]))
    }

    #[test]
    fn an_offline_recipe_parses_and_rejects_unknown_keys() {
        let f = with_offline("        debian_packages: [nginx-light]\n        run: [\"true\"]\n")
            .unwrap();
        let b = f.services["mock"].offline.as_ref().unwrap().build.clone();
        assert_eq!(b.unwrap().debian_packages, ["nginx-light"]);
        let err = with_offline("        debian_packages: [nginx-light]\n        dockerfile: x\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("x-lab-offline.build"), "{err}");
        assert!(err.contains("dockerfile"), "{err}");
        let err = with_offline("        debian_packages: [\"nginx; rm -rf /\"]\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("not a Debian package name"), "{err}");
        let err = with_offline("        env: {A: b}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("debian_packages` or `run`"), "{err}");
    }

    #[test]
    fn ulimits_take_both_compose_forms_and_reject_other_keys_by_name() {
        let with =
            |u: &str| parse_compose(Path::new("c.yml"), &format!("{MINI}{u}"), &vars(&[], &[]));
        let f = with("    ulimits: {nofile: 65536}\n").unwrap();
        let u = f.services["mock"].ulimits.as_ref().unwrap();
        assert_eq!(u.to_triples(), [("nofile".to_string(), 65536, 65536)]);
        let f = with("    ulimits:\n      nofile: {soft: 1024, hard: 4096}\n").unwrap();
        let u = f.services["mock"].ulimits.as_ref().unwrap();
        assert_eq!(
            u.nofile,
            Some(Ulimit {
                soft: 1024,
                hard: 4096
            })
        );
        let err = with("    ulimits: {nproc: 10}\n").unwrap_err().to_string();
        assert!(err.contains("ulimits") && err.contains("nproc"), "{err}");
        let err = with("    ulimits: {nofile: {soft: 1, hard: 2, max: 3}}\n")
            .unwrap_err()
            .to_string();
        assert!(
            err.contains("ulimits.nofile") && err.contains("max"),
            "{err}"
        );
        let err = with("    ulimits: {nofile: {soft: 9, hard: 2}}\n")
            .unwrap_err()
            .to_string();
        assert!(err.contains("above the hard limit"), "{err}");
    }

    #[test]
    fn governed_variants_and_backing_services_are_checked_by_name() {
        let svc = |name: &str, role: &str, extra: &str| {
            MINI.replace("  mock:", &format!("  {name}:"))
                .replace("x-lab-role: mock", &format!("x-lab-role: {role}"))
                .split_once("services:\n")
                .map(|(_, rest)| format!("{rest}{extra}"))
                .unwrap_or_default()
        };
        let file = |services: &[String]| format!("services:\n{}", services.concat());
        let parse = |t: &str| parse_compose(Path::new("c.yml"), t, &vars(&[], &[]));
        let gov = "    x-lab-governed: {of: gw, features: limits}\n";
        let ok = file(&[
            svc("gw", "target", ""),
            svc(
                "gw-gov",
                "target",
                &format!("{gov}    depends_on: [store]\n"),
            ),
            svc("store", "backing", ""),
        ]);
        let f = parse(&ok).unwrap();
        let g = f.services["gw-gov"].governed.clone().unwrap();
        assert_eq!((g.of.as_str(), g.missing), ("gw", None));
        assert_eq!(f.services["store"].role, Role::Backing);
        let err = |t: String| parse(&t).unwrap_err().to_string();
        let e = err(file(&[
            svc("gw", "target", ""),
            svc("gw-gov", "target", "    depends_on: [gw]\n"),
        ]));
        assert!(
            e.contains("gw-gov") && e.contains("`gw` is not a service with x-lab-role: backing"),
            "{e}"
        );
        let e = err(file(&[svc("gw-gov", "target", gov)]));
        assert!(
            e.contains("x-lab-governed.of: `gw` is not a plain target"),
            "{e}"
        );
        let e = err(file(&[svc("gw", "mock", ""), svc("gw-gov", "target", gov)]));
        assert!(e.contains("is not a plain target"), "{e}");
        let e = err(file(&[svc("gw", "target", ""), svc("m", "mock", gov)]));
        assert!(
            e.contains("x-lab-governed is for x-lab-role: target"),
            "{e}"
        );
        let e = err(file(&[svc(
            "gw",
            "target",
            "    x-lab-governed: {of: x, feature: y}\n",
        )]));
        assert!(e.contains("x-lab-governed") && e.contains("feature"), "{e}");
    }

    #[test]
    fn the_repo_governed_lane_pairs_each_gateway_and_starts_redis_with_litellm_only() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let v = Vars {
            file: repo_env(),
            ..Default::default()
        };
        let f = read_compose(&root.join("docker-compose.benchmark.yml"), &v).unwrap();
        let of = |n: &str| f.services[n].governed.as_ref().map(|g| g.of.clone());
        assert_eq!(of("gateway-governed").as_deref(), Some("gateway"));
        assert_eq!(of("litellm-governed").as_deref(), Some("litellm"));
        assert!(f.services["litellm-governed"]
            .governed
            .as_ref()
            .unwrap()
            .missing
            .is_some());
        for plain in ["direct", "nginx", "gateway", "litellm"] {
            assert!(f.services.get(plain).is_none_or(|s| s.governed.is_none()));
        }
        assert_eq!(f.services["litellm-governed"].depends_on, ["redis"]);
        assert!(f.services["gateway-governed"].depends_on.is_empty());
        assert!(f.services["litellm"].depends_on.is_empty());
        assert_eq!(f.services["redis"].role, Role::Backing);
        assert_eq!(f.services["redis"].health_url, "tcp://127.0.0.1:6379");
        // The variant runs the plain service's image, cpuset and limits.
        for (g, p) in [
            ("gateway-governed", "gateway"),
            ("litellm-governed", "litellm"),
        ] {
            let (g, p) = (&f.services[g], &f.services[p]);
            assert_eq!(
                (&g.image, &g.cpuset, &g.mem_limit, &g.build),
                (&p.image, &p.cpuset, &p.mem_limit, &p.build)
            );
            assert_eq!(
                g.offline.as_ref().map(|o| &o.image),
                p.offline.as_ref().map(|o| &o.image)
            );
        }
        // The LiteLLM governed config names the default REDIS_PORT, and Prometheus
        // scrapes both variants on their default ports.
        let env = repo_env();
        let text = std::fs::read_to_string(root.join("docker/litellm/governed.yaml")).unwrap();
        assert!(text.contains(&format!("redis_port: {}", env["REDIS_PORT"])));
        let prom = std::fs::read_to_string(root.join("prometheus/prometheus.yml")).unwrap();
        for var in ["GATEWAY_GOVERNED_PORT", "LITELLM_GOVERNED_PORT"] {
            assert!(prom.contains(&format!("127.0.0.1:{}", env[var])), "{var}");
        }
    }

    #[test]
    fn every_offline_image_of_the_repo_has_a_recipe_or_a_reason() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let v = Vars {
            file: repo_env(),
            ..Default::default()
        };
        let f = read_compose(&root.join("docker-compose.benchmark.yml"), &v).unwrap();
        for (name, s) in &f.services {
            if let Some(o) = &s.offline {
                assert!(o.build.is_some() || o.unavailable.is_some(), "{name}");
            }
        }
        assert!(!f.services["nginx"].redundant);
        assert!(f.services["gateway"].redundant);
        // Every measured service and mock may hold the realistic suite's 2,000 streams
        // (twice: client side and upstream side) without running out of descriptors, and
        // stays under the lab machines' dockerd hard limit (20,000), which runc cannot pass.
        for (name, s) in &f.services {
            if matches!(s.role, Role::Target | Role::Mock) {
                let n = s.ulimits.as_ref().and_then(|u| u.nofile);
                assert!(
                    n.is_some_and(|n| (8192..20000).contains(&n.hard)),
                    "{name}: {n:?}"
                );
            }
        }
    }
}
