//! The lab's stack in the orchestrator's terms: the compose file read with its variables
//! and the cpuset plan, the container of each service, readiness, teardown.

use std::collections::{BTreeMap, HashMap};
use std::net::TcpListener;
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use anyhow::{bail, Context};

use crate::docker::{ContainerSpec, ContainerState, Docker, HealthSpec};
use crate::lab::compose::{self, ComposeFile, Healthcheck, Role, Service, Vars};
use crate::lab::copies;
use crate::lab::engines::EnginePlan;
use crate::lab::image_source::{ImageChoice, ImageMode};
use crate::lab::plan::{self, CpusetPlan};

pub const COMPOSE_FILE: &str = "docker-compose.benchmark.yml";
pub const ENV_FILE: &str = ".env.benchmark";
/// The label every lab container carries; its value is the lab's name (`LAB_NAME`).
pub const LABEL: &str = "lab";
/// The label naming the compose service of a container.
pub const SERVICE_LABEL: &str = "lab.service";

/// Where the lab's files are; shared by every lab subcommand.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct LabOpts {
    /// Repository root (holds docker-compose.benchmark.yml). Default: the nearest
    /// directory upwards from the current one that has it.
    #[arg(long, env = "LAB_ROOT")]
    pub root: Option<PathBuf>,
    /// Compose file. Default: <root>/docker-compose.benchmark.yml.
    #[arg(long)]
    pub compose: Option<PathBuf>,
    /// Env file. Default: <root>/.env.benchmark.
    #[arg(long)]
    pub env_file: Option<PathBuf>,
    /// Where images come from (overrides LAB_IMAGES).
    #[arg(long, value_enum)]
    pub images: Option<ImageMode>,
    /// Shorthand for `--images offline`: build every image locally, never pull.
    #[arg(long)]
    pub offline: bool,
}

/// The lab as configured: compose file, variables, cpuset plan.
#[derive(Debug, Clone)]
pub struct Lab {
    pub root: PathBuf,
    pub compose_path: PathBuf,
    pub env_path: PathBuf,
    pub vars: Vars,
    pub compose: ComposeFile,
    pub plan: CpusetPlan,
    /// Value of the `lab` label and prefix of container names.
    pub name: String,
    pub cores: usize,
    /// The Docker engine and address of each role (`LAB_ENGINE_*`, `LAB_ADDR_*`).
    pub engines: EnginePlan,
}

fn find_root() -> anyhow::Result<PathBuf> {
    let cwd = std::env::current_dir()?;
    for dir in cwd.ancestors() {
        if dir.join(COMPOSE_FILE).is_file() {
            return Ok(dir.to_path_buf());
        }
    }
    let built_in = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    if built_in.join(COMPOSE_FILE).is_file() {
        return Ok(built_in.canonicalize()?);
    }
    bail!(
        "no {COMPOSE_FILE} in {} or its parents: run from the repository or pass --root",
        cwd.display()
    )
}

impl Lab {
    /// Reads the env file, plans cpusets, then reads the compose file.
    pub fn load(opts: &LabOpts) -> anyhow::Result<Self> {
        let root = match &opts.root {
            Some(r) => r.clone(),
            None => find_root()?,
        };
        let compose_path = opts
            .compose
            .clone()
            .unwrap_or_else(|| root.join(COMPOSE_FILE));
        let env_path = opts.env_file.clone().unwrap_or_else(|| root.join(ENV_FILE));
        let mut vars = Vars {
            process: std::env::vars().collect(),
            file: compose::read_env_file(&env_path)?,
            computed: BTreeMap::new(),
        };
        let cores = plan::host_cores();
        let plan = CpusetPlan::resolve(cores, |v| vars.get(v))?;
        for (k, v) in plan.vars() {
            vars.computed.insert(k.to_string(), v);
        }
        vars.computed.insert(
            "LITELLM_WORKERS".into(),
            plan::count(&plan.target).max(1).to_string(),
        );
        let mut compose = compose::read_compose(&compose_path, &vars)?;
        let engines = EnginePlan::from_vars(&vars)?;
        engines.apply_addresses(&mut compose);
        let name = vars.get_or("LAB_NAME", "llm-gateway-lab");
        for (svc_name, svc) in &compose.services {
            if svc.labels.get(LABEL) != Some(&name) {
                bail!("{}: service `{svc_name}` must carry the label `{LABEL}: {name}` (LAB_NAME), so `stop` can find it", compose_path.display());
            }
            plan::validate(&format!("services.{svc_name}.cpuset"), &svc.cpuset, cores)?;
        }
        Ok(Self {
            root,
            compose_path,
            env_path,
            vars,
            compose,
            plan,
            name,
            cores,
            engines,
        })
    }

    /// Image mode from the options, else LAB_IMAGES.
    pub fn image_mode(&self, opts: &LabOpts) -> anyhow::Result<ImageMode> {
        if opts.offline {
            return Ok(ImageMode::Offline);
        }
        if let Some(m) = opts.images {
            return Ok(m);
        }
        self.vars
            .get_or("LAB_IMAGES", "auto")
            .parse()
            .map_err(anyhow::Error::msg)
    }

    /// How long `run` and `start` wait for another run's locks (`LAB_LOCK_WAIT_SECS`).
    pub fn lock_wait(&self) -> Duration {
        Duration::from_secs(
            self.vars
                .get_or("LAB_LOCK_WAIT_SECS", "1800")
                .parse()
                .unwrap_or(1800),
        )
    }

    pub fn pull_timeout(&self) -> Duration {
        Duration::from_secs(
            self.vars
                .get_or("LAB_PULL_TIMEOUT_SECS", "15")
                .parse()
                .unwrap_or(15),
        )
    }

    /// Labels for containers the orchestrator makes outside the compose services.
    pub fn labels(&self, service: &str) -> HashMap<String, String> {
        HashMap::from([
            (LABEL.to_string(), self.name.clone()),
            (SERVICE_LABEL.to_string(), service.to_string()),
        ])
    }

    pub fn container_name(&self, service: &str) -> String {
        format!("{}-{service}", self.name)
    }

    /// Workspace binaries that images are built from.
    pub fn rust_binaries(&self) -> Vec<String> {
        let mut bins: Vec<String> = self
            .compose
            .services
            .values()
            .filter_map(|s| s.build.clone())
            .collect();
        bins.sort();
        bins.dedup();
        bins
    }

    pub fn service(&self, name: &str) -> anyhow::Result<&Service> {
        self.compose
            .services
            .get(name)
            .with_context(|| format!("{} has no service `{name}`", self.compose_path.display()))
    }

    /// Plain target -> its governed variant (`x-lab-governed.of`).
    pub fn governed_variants(&self) -> BTreeMap<String, String> {
        self.compose
            .services
            .iter()
            .filter_map(|(n, s)| s.governed.as_ref().map(|g| (g.of.clone(), n.clone())))
            .collect()
    }

    /// The backing services (`depends_on`) any of `targets` needs, each once.
    pub fn backing_for(&self, targets: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for t in targets {
            let Some(svc) = self.compose.services.get(t) else {
                continue;
            };
            for d in &svc.depends_on {
                if !out.contains(d) {
                    out.push(d.clone());
                }
            }
        }
        out
    }

    /// Services of one role, in name order.
    pub fn by_role(&self, role: Role) -> Vec<(&str, &Service)> {
        self.compose
            .services
            .iter()
            .filter(|(_, s)| s.role == role)
            .map(|(n, s)| (n.as_str(), s))
            .collect()
    }

    /// The container spec of a service with the chosen image.
    pub fn spec(
        &self,
        name: &str,
        svc: &Service,
        choice: &ImageChoice,
    ) -> anyhow::Result<ContainerSpec> {
        let off = svc.offline.as_ref().filter(|_| choice.offline_variant);
        let entrypoint = off
            .and_then(|o| o.entrypoint.clone())
            .or_else(|| svc.entrypoint.clone());
        let cmd = off
            .and_then(|o| o.command.clone())
            .or_else(|| svc.command.clone());
        let hc = off
            .and_then(|o| o.healthcheck.as_ref())
            .or(svc.healthcheck.as_ref());
        let compose_dir = self
            .compose_path
            .parent()
            .map_or_else(|| self.root.clone(), Path::to_path_buf);
        let binds = svc
            .volumes
            .iter()
            .map(|v| resolve_bind(&compose_dir, v))
            .collect::<anyhow::Result<Vec<_>>>()
            .with_context(|| format!("service `{name}` volumes"))?;
        let memory = compose::parse_bytes(&svc.mem_limit)
            .map_err(|m| anyhow::anyhow!("service `{name}` mem_limit: {m}"))?;
        Ok(ContainerSpec {
            name: self.container_name(name),
            image: choice.image.clone(),
            entrypoint,
            cmd,
            env: svc
                .environment
                .to_pairs()
                .into_iter()
                .map(|(k, v)| format!("{k}={v}"))
                .collect(),
            binds,
            cpuset: Some(svc.cpuset.clone()),
            memory_bytes: Some(memory as i64),
            privileged: svc.privileged,
            stop_signal: None,
            labels: svc.labels.clone().into_iter().collect(),
            ulimits: svc
                .ulimits
                .as_ref()
                .map(|u| u.to_triples())
                .unwrap_or_default(),
            healthcheck: match svc.role {
                // A Docker healthcheck runs a process inside the container every few
                // seconds, on the measured core (LiteLLM's starts a Python interpreter):
                // measured services get none, and readiness comes from the host asking
                // their x-lab-health-url (the URL their healthcheck asks), while
                // `watch_target` notices a container that dies. Backing services (Redis)
                // share the mock's cores: no probe process there either.
                Role::Target | Role::Mock | Role::Backing => Some(HealthSpec::default()),
                Role::Monitoring => hc
                    .map(health_spec)
                    .transpose()
                    .with_context(|| format!("service `{name}`"))?,
            },
        })
    }

    /// The configuration used, secrets redacted: for the manifest.
    pub fn redacted_config(&self) -> serde_json::Value {
        let mut env = serde_json::Map::new();
        let keys: std::collections::BTreeSet<&String> = self
            .vars
            .file
            .keys()
            .chain(self.vars.computed.keys())
            .collect();
        for k in keys {
            let v = self.vars.get(k).unwrap_or_default();
            env.insert(k.clone(), serde_json::Value::String(redact(k, &v)));
        }
        let services: serde_json::Map<String, serde_json::Value> = self
            .compose
            .services
            .iter()
            .map(|(n, s)| {
                (
                    n.clone(),
                    serde_json::json!({
                        "image": s.image,
                        "command": s.command,
                        "cpuset": s.cpuset,
                        "mem_limit": s.mem_limit,
                        "environment": s.environment.to_pairs().into_iter()
                            .map(|(k, v)| (k.clone(), serde_json::Value::String(redact(&k, &v))))
                            .collect::<serde_json::Map<_, _>>(),
                    }),
                )
            })
            .collect();
        serde_json::json!({
            "compose_file": self.compose_path.display().to_string(),
            "env_file": self.env_path.display().to_string(),
            "env": env,
            "services": services,
            "cpuset_plan": {
                "target": self.plan.target,
                "mock": self.plan.mock,
                "generator": self.plan.generator,
                "monitoring": self.plan.monitoring,
            },
        })
    }
}

/// Hides values of variables that look like secrets.
pub fn redact(key: &str, value: &str) -> String {
    let k = key.to_ascii_uppercase();
    let secret = ["KEY", "TOKEN", "PASSWORD", "SECRET"]
        .iter()
        .any(|s| k.contains(s));
    if secret && !value.is_empty() {
        "<redacted>".into()
    } else {
        value.to_string()
    }
}

fn resolve_bind(base: &Path, v: &str) -> anyhow::Result<String> {
    let (host, rest) = v
        .split_once(':')
        .with_context(|| format!("`{v}`: only bind mounts `host:container[:ro]` are supported"))?;
    let host_path = if host.starts_with('/') {
        PathBuf::from(host)
    } else if host.starts_with('.') {
        base.join(host)
    } else {
        bail!("`{v}`: named volumes are not supported, use a bind mount (`./path:...`)");
    };
    if host.ends_with('/') && !host_path.exists() {
        std::fs::create_dir_all(&host_path)
            .with_context(|| format!("`{v}`: creating {}", host_path.display()))?;
    }
    if !host_path.exists() {
        bail!("`{v}`: {} does not exist", host_path.display());
    }
    let host_path = host_path.canonicalize()?;
    Ok(format!("{}:{rest}", host_path.display()))
}

fn health_spec(h: &Healthcheck) -> anyhow::Result<HealthSpec> {
    if h.disable {
        return Ok(HealthSpec::default());
    }
    // Docker takes healthcheck durations in nanoseconds.
    let d = |s: &Option<String>, key: &str| -> anyhow::Result<Option<i64>> {
        let Some(text) = s.as_deref() else {
            return Ok(None);
        };
        let ns = config_text::parse_duration(text)
            .map_err(anyhow::Error::new)
            .and_then(|d| Ok(i64::try_from(d.as_nanos())?))
            .with_context(|| format!("healthcheck.{key}"))?;
        Ok(Some(ns))
    };
    Ok(HealthSpec {
        test: h.test.clone(),
        interval_ns: d(&h.interval, "interval")?,
        timeout_ns: d(&h.timeout, "timeout")?,
        retries: h.retries.map(i64::from),
        start_period_ns: d(&h.start_period, "start_period")?,
    })
}

/// The port a service listens on, from its readiness URL.
pub fn port_of(svc: &Service) -> Option<u16> {
    let rest = svc.health_url.split_once("://")?.1;
    let hostport = rest.split('/').next()?;
    hostport.rsplit_once(':')?.1.parse().ok()
}

/// The base URL of a service (`http://HOST:PORT`, HOST its role's address).
pub fn base_url(svc: &Service) -> Option<String> {
    let rest = svc.health_url.split_once("://")?.1;
    let hostport = rest.split('/').next()?;
    port_of(svc)?;
    Some(format!("http://{hostport}"))
}

/// The host a service is reached at (its role's address), from its readiness URL.
pub fn host_of(svc: &Service) -> Option<String> {
    let rest = svc.health_url.split_once("://")?.1;
    let hostport = rest.split('/').next()?;
    Some(hostport.rsplit_once(':')?.0.to_string())
}

/// A service's `(name, host, port)` for [`check_ports_free`].
pub fn endpoint_of(name: &str, svc: &Service) -> Option<(String, String, u16)> {
    Some((name.to_string(), host_of(svc)?, port_of(svc)?))
}

/// Fails when a port is already in use, naming the service and the variable: on this
/// machine (127.0.0.1) a bind tells; on another host, a connection that is accepted.
pub fn check_ports_free(ports: &[(String, String, u16)]) -> anyhow::Result<()> {
    for (service, host, port) in ports {
        let taken = if host == crate::lab::engines::LOOPBACK {
            TcpListener::bind((host.as_str(), *port))
                .err()
                .map(|e| e.to_string())
        } else {
            let addr = format!("{}:{port}", host.trim_matches(['[', ']']));
            std::net::TcpStream::connect_timeout(
                &std::net::ToSocketAddrs::to_socket_addrs(&addr)?
                    .next()
                    .with_context(|| format!("{addr} resolves to no address"))?,
                Duration::from_secs(2),
            )
            .ok()
            .map(|_| "something accepts connections there".to_string())
        };
        if let Some(why) = taken {
            bail!(
                "port {port} for `{service}` is already in use on {host} ({why}): stop what listens there \
                 (`ss -ltnp 'sport = :{port}'`; a lab left running: `orchestrator stop`) or choose another port in .env.benchmark"
            );
        }
    }
    Ok(())
}

/// Why a service did not become ready.
#[derive(Debug, Clone)]
pub struct ServiceFailure {
    pub exit_code: Option<i64>,
    pub reason: String,
    pub last_log_lines: Vec<String>,
}

impl std::fmt::Display for ServiceFailure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}", self.reason)?;
        if let Some(c) = self.exit_code {
            write!(f, " (exit code {c})")?;
        }
        if !self.last_log_lines.is_empty() {
            write!(
                f,
                "; last log lines:\n  {}",
                self.last_log_lines.join("\n  ")
            )?;
        }
        Ok(())
    }
}

/// Checks that a container still runs; a dead one becomes a [`ServiceFailure`].
pub async fn check_alive(docker: &Docker, container: &str) -> Result<(), ServiceFailure> {
    running_state(docker, container).await.map(|_| ())
}

/// The state of a running container; a dead one becomes a [`ServiceFailure`].
async fn running_state(docker: &Docker, container: &str) -> Result<ContainerState, ServiceFailure> {
    match docker.state(container).await {
        Ok(Some(s)) if s.running => Ok(s),
        Ok(Some(s)) => Err(ServiceFailure {
            exit_code: s.exit_code,
            reason: if s.oom_killed {
                format!("container {container} was killed for exceeding its memory limit")
            } else {
                format!("container {container} exited")
            },
            last_log_lines: docker.logs_tail(container, 20).await.unwrap_or_default(),
        }),
        Ok(None) => Err(ServiceFailure {
            exit_code: None,
            reason: format!("container {container} disappeared"),
            last_log_lines: Vec::new(),
        }),
        Err(e) => Err(ServiceFailure {
            exit_code: None,
            reason: e.to_string(),
            last_log_lines: Vec::new(),
        }),
    }
}

/// How readiness is decided for a container, from its Docker health status.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Readiness {
    /// It has a healthcheck that passed: ready.
    Healthy,
    /// It has a healthcheck that has not passed yet: wait.
    Starting,
    /// Its healthcheck failed `retries` times in a row: give up.
    Unhealthy,
    /// No (or a disabled) healthcheck: ask the readiness URL from the host.
    HostProbe,
}

impl Readiness {
    /// Maps Docker's health status (`none` without a healthcheck).
    pub fn of(health: &str) -> Self {
        match health {
            "healthy" => Self::Healthy,
            "starting" => Self::Starting,
            "unhealthy" => Self::Unhealthy,
            _ => Self::HostProbe,
        }
    }
}

/// Waits until the container is ready while it runs: Docker says `healthy` when it has
/// an enabled healthcheck (the compose one, run inside the container), else `url`
/// answers 2xx from the host.
pub async fn wait_ready(
    docker: &Docker,
    container: &str,
    url: &str,
    timeout: Duration,
) -> Result<Duration, ServiceFailure> {
    let start = Instant::now();
    let client = reqwest::Client::builder()
        .timeout(Duration::from_secs(2))
        .no_proxy()
        .build()
        .map_err(|e| ServiceFailure {
            exit_code: None,
            reason: e.to_string(),
            last_log_lines: Vec::new(),
        })?;
    loop {
        let st = running_state(docker, container).await?;
        let mode = Readiness::of(&st.health);
        match mode {
            Readiness::Healthy => return Ok(start.elapsed()),
            Readiness::Unhealthy => {
                return Err(ServiceFailure {
                    exit_code: None,
                    reason: format!(
                        "{container}: its Docker healthcheck reports unhealthy (last probe output: {:?})",
                        st.health_output
                    ),
                    last_log_lines: docker.logs_tail(container, 20).await.unwrap_or_default(),
                })
            }
            Readiness::Starting => {}
            Readiness::HostProbe => {
                if probe(&client, url).await {
                    return Ok(start.elapsed());
                }
            }
        }
        if start.elapsed() > timeout {
            let waited = if mode == Readiness::Starting {
                format!(
                    "become healthy (Docker healthcheck; last probe output: {:?})",
                    st.health_output
                )
            } else {
                format!("answer {url}")
            };
            return Err(ServiceFailure {
                exit_code: None,
                reason: format!(
                    "{container} did not {waited} within {} s",
                    timeout.as_secs()
                ),
                last_log_lines: docker.logs_tail(container, 20).await.unwrap_or_default(),
            });
        }
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
}

/// One readiness probe from the host: a 2xx answer to an HTTP URL, or for a
/// `tcp://host:port` URL (a service that speaks no HTTP, e.g. Redis) an accepted connection.
async fn probe(client: &reqwest::Client, url: &str) -> bool {
    if let Some(addr) = url.strip_prefix("tcp://") {
        let connect = tokio::net::TcpStream::connect(addr.trim_end_matches('/'));
        return matches!(
            tokio::time::timeout(Duration::from_secs(2), connect).await,
            Ok(Ok(_))
        );
    }
    matches!(client.get(url).send().await, Ok(r) if r.status().is_success())
}

/// Creates and starts a service's container (replacing a leftover one of the same name).
pub async fn start_service(
    docker: &Docker,
    lab: &Lab,
    name: &str,
    choice: &ImageChoice,
) -> anyhow::Result<String> {
    let svc = lab.service(name)?;
    let mut spec = lab.spec(name, svc, choice)?;
    docker.remove(&spec.name).await?;
    if let Some(p) = endpoint_of(name, svc) {
        check_ports_free(&[p])?;
    }
    let remote = docker.engine_of(&spec.name) != 0;
    let repo = lab.root.canonicalize()?;
    let moved = copies::moved_ports(lab);
    let (binds, files) =
        copies::split_binds(std::mem::take(&mut spec.binds), &repo, remote, &moved)?;
    spec.binds = binds;
    docker.create(&spec).await?;
    for f in files {
        docker.upload(&spec.name, &f.dir, f.tar).await?;
    }
    docker.start(&spec.name).await?;
    Ok(spec.name)
}

/// Readiness timeout of a service: LiteLLM and Prometheus take a while to start.
pub fn ready_timeout(name: &str) -> Duration {
    if name.starts_with("litellm") {
        Duration::from_secs(240)
    } else {
        Duration::from_secs(90)
    }
}

/// Starts services in order and waits for each to answer its readiness URL.
pub async fn bring_up(
    docker: &Docker,
    lab: &Lab,
    choices: &BTreeMap<String, ImageChoice>,
    names: &[&str],
) -> anyhow::Result<()> {
    let ports: Vec<_> = names
        .iter()
        .filter(|n| choices.get(**n).is_some_and(|c| c.unavailable.is_none()))
        .filter_map(|n| lab.service(n).ok().and_then(|s| endpoint_of(n, s)))
        .collect();
    check_ports_free(&ports)?;
    for name in names {
        let choice = choices
            .get(*name)
            .with_context(|| format!("no image for `{name}`"))?;
        if let Some(why) = &choice.unavailable {
            crate::note!("skip   {name}: {why}");
            continue;
        }
        let container = start_service(docker, lab, name, choice).await?;
        let url = &lab.service(name)?.health_url;
        let waited = wait_ready(docker, &container, url, ready_timeout(name))
            .await
            .map_err(|f| anyhow::anyhow!("{name} did not become ready: {f}"))?;
        crate::note!("ready  {name:<14} {url} ({:.1} s)", waited.as_secs_f64());
    }
    Ok(())
}

/// The lab's runtime for Docker calls (the load generator runs its own threads).
pub fn runtime() -> anyhow::Result<tokio::runtime::Runtime> {
    tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .context("building the tokio runtime")
}

/// Stops and removes a container.
pub async fn stop_container(docker: &Docker, container: &str) -> anyhow::Result<()> {
    docker.stop(container, Duration::from_secs(5)).await?;
    docker.remove(container).await?;
    Ok(())
}

/// Removes every container carrying `lab=<name>` on every engine; returns their names.
/// An engine that fails does not keep the others from being swept; its error comes after.
pub async fn teardown(docker: &Docker, name: &str) -> anyhow::Result<Vec<String>> {
    let (removed, failed) = docker.sweep(LABEL, name).await;
    if let Some(first) = failed.into_iter().next() {
        return Err(anyhow::Error::new(first).context(format!(
            "removing the lab's containers (removed elsewhere: {})",
            if removed.is_empty() {
                "none".into()
            } else {
                removed.join(", ")
            }
        )));
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_taken_port_is_named_with_its_service() {
        let l = TcpListener::bind("127.0.0.1:0").unwrap();
        let port = l.local_addr().unwrap().port();
        let at = |p| [("gateway".to_string(), "127.0.0.1".to_string(), p)];
        let err = check_ports_free(&at(port)).unwrap_err();
        let msg = err.to_string();
        assert!(
            msg.contains(&format!("port {port} for `gateway` is already in use")),
            "{msg}"
        );
        drop(l);
        check_ports_free(&at(port)).unwrap();
    }

    #[test]
    fn docker_health_decides_readiness_only_with_a_healthcheck() {
        assert_eq!(Readiness::of("healthy"), Readiness::Healthy);
        assert_eq!(Readiness::of("starting"), Readiness::Starting);
        assert_eq!(Readiness::of("unhealthy"), Readiness::Unhealthy);
        assert_eq!(Readiness::of("none"), Readiness::HostProbe);
    }

    #[test]
    fn scratch_images_declare_a_healthcheck_that_runs_their_own_binary() {
        let lab = Lab::load(&LabOpts {
            root: Some(Path::new(env!("CARGO_MANIFEST_DIR")).join("..")),
            ..LabOpts::default()
        })
        .unwrap();
        let choice = ImageChoice {
            image: "x".into(),
            image_id: None,
            version: "0".into(),
            offline_variant: false,
            unavailable: None,
        };
        let mut checked = 0;
        for (name, svc) in &lab.compose.services {
            let Some(bin) = &svc.build else { continue };
            checked += 1;
            // For docker-compose users; the lab runs measured services without it.
            let hc = svc.healthcheck.as_ref().unwrap();
            let test = hc.test.clone().unwrap();
            // The image is `FROM scratch` with the binary at `/<bin>` (images.rs).
            assert_eq!(
                test[..3],
                ["CMD".to_string(), format!("/{bin}"), "--probe".into()],
                "{name}"
            );
            assert_eq!(
                test[3],
                format!("{}/health", base_url(svc).unwrap()),
                "{name}"
            );
            assert!(hc.interval.is_some() && hc.retries.is_some(), "{name}");
        }
        for (name, svc) in &lab.compose.services {
            let hc = lab.spec(name, svc, &choice).unwrap().healthcheck;
            match svc.role {
                Role::Target | Role::Mock | Role::Backing => {
                    assert_eq!(hc, Some(HealthSpec::default()), "{name}: disabled")
                }
                Role::Monitoring => assert!(hc.is_some() || svc.healthcheck.is_none(), "{name}"),
            }
        }
        assert_eq!(
            checked, 4,
            "gateway, gateway-governed and the two mock-upstream services are built from the workspace"
        );
        assert_eq!(lab.rust_binaries(), ["gateway", "mock-upstream"]);
    }

    #[test]
    fn secrets_are_redacted() {
        assert_eq!(redact("OPENAI_API_KEY", "sk-123"), "<redacted>");
        assert_eq!(redact("INFLUX_TOKEN", "t"), "<redacted>");
        assert_eq!(redact("OPENAI_API_KEY", ""), "");
        assert_eq!(redact("MOCK_PORT", "9000"), "9000");
    }

    #[test]
    fn binds_resolve_relative_to_the_compose_file() {
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let b = resolve_bind(&root, "./docker/litellm/config.yaml:/cfg/config.yaml:ro").unwrap();
        assert!(
            b.starts_with('/') && b.ends_with("docker/litellm/config.yaml:/cfg/config.yaml:ro"),
            "{b}"
        );
        assert!(resolve_bind(&root, "data:/data")
            .unwrap_err()
            .to_string()
            .contains("named volumes"));
        assert!(resolve_bind(&root, "./nope.yaml:/x")
            .unwrap_err()
            .to_string()
            .contains("does not exist"));
    }
}
