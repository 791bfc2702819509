//! The only module that speaks to Docker (bollard). The rest of the orchestrator talks in
//! its own terms: a [`ContainerSpec`] to run, a [`ContainerInfo`] listed by label, a
//! [`StatsPoint`] per second.

pub mod endpoint;
pub mod set;
pub mod tar;

pub use endpoint::Endpoint;
pub use set::{Docker, EngineFacts};

use std::collections::HashMap;
use std::time::Duration;

use bollard::models::{ContainerCreateBody, HealthConfig, HostConfig, ResourcesUlimits};
use bollard::query_parameters::{
    BuildImageOptionsBuilder, CommitContainerOptionsBuilder, CreateContainerOptionsBuilder,
    CreateImageOptionsBuilder, ListContainersOptionsBuilder, LogsOptionsBuilder,
    RemoveContainerOptionsBuilder, StatsOptionsBuilder, TagImageOptionsBuilder,
    WaitContainerOptionsBuilder,
};
use futures_util::{Stream, StreamExt};

/// Errors talking to the Docker engine.
#[derive(Debug, thiserror::Error)]
pub enum DockerError {
    #[error("the Docker engine isn't reachable at {endpoint}: {reason}. Start it with `sudo systemctl start docker` (or `sudo service docker start`; `sudo dockerd &` where there is no init system), check that you may use it (`docker info`), or point DOCKER_HOST (the local engine) or the .env.benchmark LAB_ENGINE_* setting that names it at a running engine")]
    Unreachable { endpoint: String, reason: String },
    #[error("docker: {what}: {source}")]
    Api {
        what: String,
        source: bollard::errors::Error,
    },
    #[error("docker: {what}: {message}")]
    Failed { what: String, message: String },
}

impl DockerError {
    /// A name already taken (HTTP 409 Conflict).
    pub fn is_conflict(&self) -> bool {
        matches!(
            self,
            DockerError::Api {
                source: bollard::errors::Error::DockerResponseServerError {
                    status_code: 409,
                    ..
                },
                ..
            }
        )
    }

    fn api(what: impl Into<String>) -> impl FnOnce(bollard::errors::Error) -> Self {
        let what = what.into();
        move |source| DockerError::Api { what, source }
    }
}

/// A start that runc refused because a `ulimits:` value is above the Docker daemon's own
/// hard limit says so, and which setting to lower.
fn rlimit_hint(name: &str, source: bollard::errors::Error) -> DockerError {
    let text = source.to_string();
    if text.contains("error setting rlimit") {
        return DockerError::Failed {
            what: format!("start container {name}"),
            message: format!(
                "a `ulimits:` value is above the Docker daemon's own hard limit (see `grep 'open files' /proc/$(pidof dockerd)/limits`): lower LAB_NOFILE in .env.benchmark ({text})"
            ),
        };
    }
    DockerError::api(format!("start container {name}"))(source)
}

/// Is this a "no such container/image" answer?
fn is_not_found(e: &bollard::errors::Error) -> bool {
    matches!(
        e,
        bollard::errors::Error::DockerResponseServerError {
            status_code: 404,
            ..
        }
    )
}

/// An in-container healthcheck (durations in nanoseconds).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HealthSpec {
    /// `None` disables the image's own healthcheck.
    pub test: Option<Vec<String>>,
    pub interval_ns: Option<i64>,
    pub timeout_ns: Option<i64>,
    pub retries: Option<i64>,
    pub start_period_ns: Option<i64>,
}

/// What to run: always host networking, no swap.
#[derive(Debug, Clone, Default)]
pub struct ContainerSpec {
    pub name: String,
    pub image: String,
    pub entrypoint: Option<Vec<String>>,
    pub cmd: Option<Vec<String>>,
    pub env: Vec<String>,
    /// `host:container[:ro]`.
    pub binds: Vec<String>,
    pub cpuset: Option<String>,
    pub memory_bytes: Option<i64>,
    pub privileged: bool,
    pub labels: HashMap<String, String>,
    pub healthcheck: Option<HealthSpec>,
    /// `(name, soft, hard)` resource limits (`nofile`).
    pub ulimits: Vec<(String, u64, u64)>,
    /// The signal `docker stop` sends (default SIGTERM).
    pub stop_signal: Option<String>,
}

/// A container found by label.
#[derive(Debug, Clone)]
pub struct ContainerInfo {
    pub id: String,
    pub name: String,
    pub image: String,
    pub state: String,
    pub status: String,
    pub labels: HashMap<String, String>,
    /// Index of the engine it runs on (in [`Docker`]'s order; 0 is the local one).
    pub engine: usize,
}

/// A container's state from inspect.
#[derive(Debug, Clone)]
pub struct ContainerState {
    pub running: bool,
    pub exit_code: Option<i64>,
    pub oom_killed: bool,
    /// `starting`, `healthy`, `unhealthy`, or `none` without a healthcheck.
    pub health: String,
    /// Output of the latest healthcheck run, trimmed (empty when none ran or it printed nothing).
    pub health_output: String,
    pub cpuset: Option<String>,
    pub memory_bytes: Option<i64>,
    pub image_id: Option<String>,
    /// Host pid of the container's first process (0 or `None` when not running).
    pub pid: Option<i64>,
}

/// One reading of the stats API, reduced to what the lab records.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct StatsPoint {
    /// Percent of one core over the interval since the previous reading.
    pub cpu_percent: f64,
    /// Memory in use, page cache excluded (as `docker stats` shows it).
    pub memory_bytes: u64,
    pub throttled_periods: u64,
    pub throttled_time_ns: u64,
    /// Cumulative CPU time of the container (cAdvisor's `container_cpu_usage_seconds_total`).
    pub cpu_total_ns: u64,
    /// CFS periods elapsed (cumulative), the denominator of the throttled share.
    pub cfs_periods: u64,
    /// Memory usage including page cache.
    pub usage_bytes: u64,
    /// Anonymous memory (cgroup v1 `total_rss`, v2 `anon`).
    pub rss_bytes: u64,
}

/// A connection to one Docker engine, its API version negotiated. The lab talks to its
/// engines through [`Docker`], which routes each container to its engine.
#[derive(Clone)]
pub struct Engine {
    inner: bollard::Docker,
    label: String,
}

/// Seconds bollard waits for any one answer (image loads and builds are slow).
const API_TIMEOUT_SECS: u64 = 600;

fn open(ep: &Endpoint) -> Result<bollard::Docker, bollard::errors::Error> {
    let v = bollard::API_DEFAULT_VERSION;
    match ep {
        Endpoint::Local => bollard::Docker::connect_with_defaults(),
        Endpoint::Unix(p) => {
            bollard::Docker::connect_with_unix(&p.to_string_lossy(), API_TIMEOUT_SECS, v)
        }
        Endpoint::Tcp { addr, tls: None } => {
            bollard::Docker::connect_with_http(addr, API_TIMEOUT_SECS, v)
        }
        Endpoint::Tcp { addr, tls: Some(t) } => bollard::Docker::connect_with_ssl(
            addr,
            &t.dir.join("key.pem"),
            &t.dir.join("cert.pem"),
            &t.dir.join("ca.pem"),
            API_TIMEOUT_SECS,
            v,
        ),
        Endpoint::Ssh(addr) => bollard::Docker::connect_with_ssh(addr, API_TIMEOUT_SECS, v),
    }
}

impl Engine {
    /// Connects, negotiates the API version (Debian's engine speaks 1.41) and pings; an
    /// engine that does not answer is a clear error naming it.
    pub async fn connect_to(ep: &Endpoint) -> Result<Self, DockerError> {
        let label = ep.label();
        let unreachable = |reason: String| DockerError::Unreachable {
            endpoint: label.clone(),
            reason,
        };
        let docker = open(ep)
            .map_err(|e| unreachable(e.to_string()))?
            .with_timeout(Duration::from_secs(API_TIMEOUT_SECS));
        let docker = tokio::time::timeout(Duration::from_secs(10), docker.negotiate_version())
            .await
            .map_err(|_| unreachable("no answer within 10 s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        tokio::time::timeout(Duration::from_secs(10), docker.ping())
            .await
            .map_err(|_| unreachable("no answer to ping within 10 s".into()))?
            .map_err(|e| unreachable(e.to_string()))?;
        Ok(Self {
            inner: docker,
            label,
        })
    }

    /// The endpoint as shown to people.
    pub fn label(&self) -> &str {
        &self.label
    }

    /// The engine's version, e.g. `20.10.24+dfsg1 (API 1.41)`.
    pub async fn version(&self) -> Result<String, DockerError> {
        let v = self
            .inner
            .version()
            .await
            .map_err(DockerError::api("version"))?;
        Ok(format!(
            "{} (API {})",
            v.version.unwrap_or_default(),
            v.api_version.unwrap_or_default()
        ))
    }

    /// The id of a local image, `None` when absent.
    pub async fn image_id(&self, image: &str) -> Result<Option<String>, DockerError> {
        match self.inner.inspect_image(image).await {
            Ok(i) => Ok(i.id),
            Err(e) if is_not_found(&e) => Ok(None),
            Err(e) => Err(DockerError::Api {
                what: format!("inspect image {image}"),
                source: e,
            }),
        }
    }

    /// Pulls an image; gives up after `timeout` (no registry answering is the common case
    /// on lab machines, and must not hang).
    pub async fn pull(&self, image: &str, timeout: Duration) -> Result<(), DockerError> {
        let opts = CreateImageOptionsBuilder::new().from_image(image).build();
        let mut stream = self.inner.create_image(Some(opts), None, None);
        let pull = async {
            while let Some(item) = stream.next().await {
                item.map_err(DockerError::api(format!("pull {image}")))?;
            }
            Ok(())
        };
        tokio::time::timeout(timeout, pull)
            .await
            .map_err(|_| DockerError::Failed {
                what: format!("pull {image}"),
                message: format!("no registry answered within {} s", timeout.as_secs()),
            })?
    }

    /// Builds an image from a build context tar (with its Dockerfile at the root).
    pub async fn build_from_tar(&self, tag: &str, context: Vec<u8>) -> Result<(), DockerError> {
        let opts = BuildImageOptionsBuilder::new()
            .dockerfile("Dockerfile")
            .t(tag)
            .rm(true)
            .forcerm(true)
            .build();
        let mut stream =
            self.inner
                .build_image(opts, None, Some(bollard::body_full(context.into())));
        while let Some(item) = stream.next().await {
            let info = item.map_err(DockerError::api(format!("build {tag}")))?;
            if let Some(err) = info.error {
                return Err(DockerError::Failed {
                    what: format!("build {tag}"),
                    message: err,
                });
            }
        }
        Ok(())
    }

    /// Imports a root filesystem tar as an image (`docker import`).
    pub async fn import_rootfs(
        &self,
        repo: &str,
        tag: &str,
        rootfs: impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<(), DockerError> {
        let opts = CreateImageOptionsBuilder::new()
            .from_src("-")
            .repo(repo)
            .tag(tag)
            .build();
        let body = bollard::body_try_stream(rootfs);
        let mut stream = self.inner.create_image(Some(opts), Some(body), None);
        while let Some(item) = stream.next().await {
            item.map_err(DockerError::api(format!("import {repo}:{tag}")))?;
        }
        Ok(())
    }

    /// Adds a tag to an image.
    pub async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<(), DockerError> {
        let opts = TagImageOptionsBuilder::new().repo(repo).tag(tag).build();
        self.inner
            .tag_image(image, Some(opts))
            .await
            .map_err(DockerError::api(format!("tag {image} as {repo}:{tag}")))
    }

    /// Runs a build step to completion (host networking, no limits), then commits the
    /// container as `repo:tag` with the given Dockerfile `changes` (ENTRYPOINT, CMD…).
    /// The step's container is removed either way.
    pub async fn run_and_commit(
        &self,
        spec: &ContainerSpec,
        repo: &str,
        tag: &str,
        changes: &str,
    ) -> Result<(), DockerError> {
        self.remove(&spec.name).await?;
        self.create(spec).await?;
        let result = async {
            self.start(&spec.name).await?;
            let code = self.wait(&spec.name).await?;
            if code != 0 {
                let logs = self.logs_tail(&spec.name, 30).await.unwrap_or_default();
                return Err(DockerError::Failed {
                    what: format!("build step {} for {repo}:{tag}", spec.name),
                    message: format!("exit code {code}; last output:\n{}", logs.join("\n")),
                });
            }
            let opts = CommitContainerOptionsBuilder::new()
                .container(&spec.name)
                .repo(repo)
                .tag(tag)
                .changes(changes)
                .build();
            self.inner
                .commit_container(opts, bollard::models::ContainerConfig::default())
                .await
                .map_err(DockerError::api(format!("commit {repo}:{tag}")))?;
            Ok(())
        }
        .await;
        self.remove(&spec.name).await?;
        result
    }

    /// Creates a container (host networking, memory = memory + swap: no swap).
    pub async fn create(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        let healthcheck = spec.healthcheck.as_ref().map(|h| HealthConfig {
            test: Some(h.test.clone().unwrap_or_else(|| vec!["NONE".to_string()])),
            interval: h.interval_ns,
            timeout: h.timeout_ns,
            retries: h.retries,
            start_period: h.start_period_ns,
            start_interval: None,
        });
        let body = ContainerCreateBody {
            image: Some(spec.image.clone()),
            entrypoint: spec.entrypoint.clone(),
            cmd: spec.cmd.clone(),
            env: Some(spec.env.clone()),
            labels: Some(spec.labels.clone()),
            stop_signal: spec.stop_signal.clone(),
            healthcheck,
            host_config: Some(HostConfig {
                network_mode: Some("host".into()),
                cpuset_cpus: spec.cpuset.clone(),
                memory: spec.memory_bytes,
                memory_swap: spec.memory_bytes,
                binds: Some(spec.binds.clone()),
                privileged: Some(spec.privileged),
                ulimits: (!spec.ulimits.is_empty()).then(|| {
                    spec.ulimits
                        .iter()
                        .map(|(name, soft, hard)| ResourcesUlimits {
                            name: Some(name.clone()),
                            soft: Some(i64::try_from(*soft).unwrap_or(i64::MAX)),
                            hard: Some(i64::try_from(*hard).unwrap_or(i64::MAX)),
                        })
                        .collect()
                }),
                init: None,
                ..Default::default()
            }),
            ..Default::default()
        };
        let opts = CreateContainerOptionsBuilder::new()
            .name(&spec.name)
            .build();
        let resp = self
            .inner
            .create_container(Some(opts), body)
            .await
            .map_err(DockerError::api(format!("create container {}", spec.name)))?;
        Ok(resp.id)
    }

    pub async fn start(&self, name: &str) -> Result<(), DockerError> {
        self.inner
            .start_container(
                name,
                None::<bollard::query_parameters::StartContainerOptions>,
            )
            .await
            .map_err(|source| rlimit_hint(name, source))
    }

    /// Waits for a container to exit and returns its exit code.
    pub async fn wait(&self, name: &str) -> Result<i64, DockerError> {
        let opts = WaitContainerOptionsBuilder::new()
            .condition("not-running")
            .build();
        let mut stream = self.inner.wait_container(name, Some(opts));
        let mut code = 0;
        while let Some(item) = stream.next().await {
            match item {
                Ok(r) => code = r.status_code,
                // bollard reports a non-zero exit as an error carrying the code.
                Err(bollard::errors::Error::DockerContainerWaitError { code: c, .. }) => code = c,
                Err(e) => {
                    return Err(DockerError::Api {
                        what: format!("wait for {name}"),
                        source: e,
                    })
                }
            }
        }
        Ok(code)
    }

    /// Removes a container (stopping it first); absent is fine.
    pub async fn remove(&self, name: &str) -> Result<(), DockerError> {
        let opts = RemoveContainerOptionsBuilder::new()
            .force(true)
            .v(true)
            .build();
        match self.inner.remove_container(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            // "removal already in progress"
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 409, ..
            }) => Ok(()),
            Err(e) => Err(DockerError::Api {
                what: format!("remove container {name}"),
                source: e,
            }),
        }
    }

    /// Stops a container gracefully (SIGTERM, then SIGKILL after `grace`).
    pub async fn stop(&self, name: &str, grace: Duration) -> Result<(), DockerError> {
        let opts = bollard::query_parameters::StopContainerOptionsBuilder::new()
            .t(grace.as_secs() as i32)
            .build();
        match self.inner.stop_container(name, Some(opts)).await {
            Ok(()) => Ok(()),
            Err(e) if is_not_found(&e) => Ok(()),
            Err(bollard::errors::Error::DockerResponseServerError {
                status_code: 304, ..
            }) => Ok(()),
            Err(e) => Err(DockerError::Api {
                what: format!("stop container {name}"),
                source: e,
            }),
        }
    }

    /// Every container (running or not) whose label `key` equals `value`.
    pub async fn list_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<ContainerInfo>, DockerError> {
        let mut filters = HashMap::new();
        filters.insert("label", vec![format!("{key}={value}")]);
        let opts = ListContainersOptionsBuilder::new()
            .all(true)
            .filters(&filters)
            .build();
        let list = self
            .inner
            .list_containers(Some(opts))
            .await
            .map_err(DockerError::api("list containers"))?;
        Ok(list
            .into_iter()
            .map(|c| ContainerInfo {
                id: c.id.unwrap_or_default(),
                name: c
                    .names
                    .and_then(|n| n.into_iter().next())
                    .unwrap_or_default()
                    .trim_start_matches('/')
                    .to_string(),
                image: c.image.unwrap_or_default(),
                state: c.state.map(|s| s.to_string()).unwrap_or_default(),
                status: c.status.unwrap_or_default(),
                labels: c.labels.unwrap_or_default(),
                engine: 0,
            })
            .collect())
    }

    /// A container's state; `None` when it does not exist.
    pub async fn state(&self, name: &str) -> Result<Option<ContainerState>, DockerError> {
        let c = match self
            .inner
            .inspect_container(
                name,
                None::<bollard::query_parameters::InspectContainerOptions>,
            )
            .await
        {
            Ok(c) => c,
            Err(e) if is_not_found(&e) => return Ok(None),
            Err(e) => {
                return Err(DockerError::Api {
                    what: format!("inspect {name}"),
                    source: e,
                })
            }
        };
        let st = c.state.unwrap_or_default();
        let health_output = st
            .health
            .as_ref()
            .and_then(|h| h.log.as_ref())
            .and_then(|l| l.last())
            .and_then(|r| r.output.as_deref())
            .map(|o| o.trim().to_string())
            .unwrap_or_default();
        let health = st
            .health
            .and_then(|h| h.status)
            .map(|s| s.to_string())
            .filter(|s| !s.is_empty())
            .unwrap_or_else(|| "none".into());
        let hc = c.host_config.unwrap_or_default();
        Ok(Some(ContainerState {
            running: st.running.unwrap_or(false),
            exit_code: st.exit_code,
            oom_killed: st.oom_killed.unwrap_or(false),
            health,
            health_output,
            cpuset: hc.cpuset_cpus,
            memory_bytes: hc.memory,
            image_id: c.image,
            pid: st.pid,
        }))
    }

    /// The last `n` lines of a container's output (stdout and stderr).
    pub async fn logs_tail(&self, name: &str, n: usize) -> Result<Vec<String>, DockerError> {
        let opts = LogsOptionsBuilder::new()
            .stdout(true)
            .stderr(true)
            .tail(&n.to_string())
            .build();
        let mut stream = self.inner.logs(name, Some(opts));
        let mut text = String::new();
        while let Some(item) = stream.next().await {
            match item {
                Ok(out) => text.push_str(&String::from_utf8_lossy(&out.into_bytes())),
                Err(e) if is_not_found(&e) => break,
                Err(e) => {
                    return Err(DockerError::Api {
                        what: format!("logs of {name}"),
                        source: e,
                    })
                }
            }
        }
        let lines: Vec<String> = text
            .lines()
            .filter(|l| !l.trim().is_empty())
            .map(str::to_string)
            .collect();
        let skip = lines.len().saturating_sub(n);
        Ok(lines.into_iter().skip(skip).collect())
    }

    /// Copies a tar archive into a container (created, not necessarily started) at `dir`.
    pub async fn upload(&self, name: &str, dir: &str, tar: Vec<u8>) -> Result<(), DockerError> {
        let opts = bollard::query_parameters::UploadToContainerOptionsBuilder::new()
            .path(dir)
            .build();
        self.inner
            .upload_to_container(name, Some(opts), bollard::body_full(tar.into()))
            .await
            .map_err(DockerError::api(format!("copy files into {name}:{dir}")))
    }

    /// One regular file out of a container (it may have exited).
    pub async fn download_file(&self, name: &str, path: &str) -> Result<Vec<u8>, DockerError> {
        let opts = bollard::query_parameters::DownloadFromContainerOptionsBuilder::new()
            .path(path)
            .build();
        let mut stream = self.inner.download_from_container(name, Some(opts));
        let mut archive = Vec::new();
        while let Some(chunk) = stream.next().await {
            archive.extend_from_slice(
                &chunk.map_err(DockerError::api(format!("copy {name}:{path}")))?,
            );
        }
        tar::first_file(&archive).ok_or_else(|| DockerError::Failed {
            what: format!("copy {name}:{path}"),
            message: "the archive holds no regular file".into(),
        })
    }

    /// An image as a `docker save` tar stream.
    pub fn export_image(
        &self,
        image: &str,
    ) -> impl Stream<Item = Result<bytes::Bytes, bollard::errors::Error>> + Send + 'static {
        let docker = self.inner.clone();
        let image = image.to_string();
        futures_util::stream::once(async move { docker.export_image(&image) }).flatten()
    }

    /// Loads a `docker save` stream (`docker load`).
    pub async fn load_image(
        &self,
        what: &str,
        tar: impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<(), DockerError> {
        let opts = bollard::query_parameters::ImportImageOptionsBuilder::new()
            .quiet(true)
            .build();
        let mut stream = self
            .inner
            .import_image(opts, bollard::body_try_stream(tar), None);
        while let Some(item) = stream.next().await {
            let info = item.map_err(DockerError::api(format!("load {what}")))?;
            if let Some(err) = info.error {
                return Err(DockerError::Failed {
                    what: format!("load {what}"),
                    message: err,
                });
            }
        }
        Ok(())
    }

    /// The engine's `/info` and the time it reports, with the local clock before and after.
    pub async fn info_timed(
        &self,
    ) -> Result<
        (
            bollard::models::SystemInfo,
            std::time::SystemTime,
            std::time::SystemTime,
        ),
        DockerError,
    > {
        let before = std::time::SystemTime::now();
        let info = self.inner.info().await.map_err(DockerError::api("info"))?;
        Ok((info, before, std::time::SystemTime::now()))
    }

    /// A stream of per-second stats readings for a running container; ends when the
    /// container stops.
    pub fn stats_stream(&self, name: &str) -> impl Stream<Item = StatsPoint> + Send + 'static {
        let opts = StatsOptionsBuilder::new()
            .stream(true)
            .one_shot(false)
            .build();
        let docker = self.inner.clone();
        let name = name.to_string();
        async_stream(docker, name, opts)
    }
}

/// Maps bollard's stats stream to [`StatsPoint`]s (own function so the returned stream
/// owns its client).
fn async_stream(
    docker: bollard::Docker,
    name: String,
    opts: bollard::query_parameters::StatsOptions,
) -> impl Stream<Item = StatsPoint> + Send + 'static {
    futures_util::stream::once(async move { docker.stats(&name, Some(opts)) })
        .flatten()
        .take_while(|r| futures_util::future::ready(r.is_ok()))
        .filter_map(|r| futures_util::future::ready(r.ok().and_then(|s| to_point(&s))))
}

/// Reduces one stats reading the way `docker stats` does.
fn to_point(s: &bollard::models::ContainerStatsResponse) -> Option<StatsPoint> {
    let cpu = s.cpu_stats.as_ref()?;
    let pre = s.precpu_stats.as_ref();
    let total = cpu.cpu_usage.as_ref()?.total_usage?;
    let pre_total = pre
        .and_then(|p| p.cpu_usage.as_ref())
        .and_then(|u| u.total_usage)
        .unwrap_or(0);
    let system = cpu.system_cpu_usage.unwrap_or(0);
    let pre_system = pre.and_then(|p| p.system_cpu_usage).unwrap_or(0);
    let online = cpu
        .online_cpus
        .map(f64::from)
        .or_else(|| {
            cpu.cpu_usage
                .as_ref()
                .and_then(|u| u.percpu_usage.as_ref())
                .map(|v| v.len() as f64)
        })
        .unwrap_or(1.0);
    let cpu_delta = total.saturating_sub(pre_total) as f64;
    let sys_delta = system.saturating_sub(pre_system) as f64;
    // The first reading of a stream has no previous one to compare with: skip it.
    if pre_total == 0 || sys_delta <= 0.0 {
        return None;
    }
    let cpu_percent = cpu_delta / sys_delta * online * 100.0;
    let mem = s.memory_stats.as_ref();
    let usage = mem.and_then(|m| m.usage).unwrap_or(0);
    let cache = mem
        .and_then(|m| m.stats.as_ref())
        .and_then(|st| {
            st.get("total_inactive_file")
                .or_else(|| st.get("inactive_file"))
                .or_else(|| st.get("cache"))
                .copied()
        })
        .unwrap_or(0);
    let rss = mem
        .and_then(|m| m.stats.as_ref())
        .and_then(|st| st.get("total_rss").or_else(|| st.get("anon")).copied())
        .unwrap_or(0);
    let thr = cpu.throttling_data.as_ref();
    Some(StatsPoint {
        cpu_percent,
        memory_bytes: usage.saturating_sub(cache),
        throttled_periods: thr.and_then(|t| t.throttled_periods).unwrap_or(0),
        throttled_time_ns: thr.and_then(|t| t.throttled_time).unwrap_or(0),
        cpu_total_ns: total,
        cfs_periods: thr.and_then(|t| t.periods).unwrap_or(0),
        usage_bytes: usage,
        rss_bytes: rss,
    })
}
