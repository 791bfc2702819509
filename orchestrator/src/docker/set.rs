//! The lab's engines as one: images are built on the first (local) engine and shipped to
//! the others; each container is placed on an engine by name, and every container call is
//! routed there. With one engine this is the plain local Docker of earlier versions.

use std::collections::HashMap;
use std::sync::{Arc, RwLock};
use std::time::{Duration, SystemTime};

use futures_util::{Stream, StreamExt};
use serde::Serialize;

use super::{
    ContainerInfo, ContainerSpec, ContainerState, DockerError, Endpoint, Engine, StatsPoint,
};

/// The lab's Docker engines; engine 0 is the local one, where images are built.
#[derive(Clone)]
pub struct Docker {
    engines: Arc<Vec<Engine>>,
    /// Container name → engine index; unplaced names are on engine 0.
    placed: Arc<RwLock<HashMap<String, usize>>>,
}

/// What the manifest records of an engine.
#[derive(Debug, Clone, Serialize)]
pub struct EngineFacts {
    pub endpoint: String,
    pub host: String,
    pub cores: i64,
    pub memory_bytes: i64,
    pub version: String,
    /// Engine clock minus the orchestrator's, ms, from the `/info` exchange with the
    /// shortest round trip (the offset is known to ± half of it).
    pub clock_offset_ms: f64,
    pub clock_rtt_ms: f64,
}

impl Docker {
    /// The local engine alone (DOCKER_HOST or the local socket).
    pub async fn connect() -> Result<Self, DockerError> {
        Self::connect_all(&[Endpoint::Local]).await
    }

    /// Connects to every endpoint (the first is where images are built); the same
    /// endpoint named twice is one engine.
    pub async fn connect_all(endpoints: &[Endpoint]) -> Result<Self, DockerError> {
        let mut engines: Vec<Engine> = Vec::new();
        for ep in endpoints {
            if engines.iter().any(|e| e.label() == ep.label()) {
                continue;
            }
            engines.push(Engine::connect_to(ep).await?);
        }
        if engines.is_empty() {
            engines.push(Engine::connect_to(&Endpoint::Local).await?);
        }
        Ok(Self {
            engines: Arc::new(engines),
            placed: Arc::default(),
        })
    }

    /// The index of the engine of `ep` (0 when it is not one of them).
    pub fn index_of(&self, ep: &Endpoint) -> usize {
        let label = ep.label();
        self.engines
            .iter()
            .position(|e| e.label() == label)
            .unwrap_or(0)
    }

    pub fn engines(&self) -> &[Engine] {
        &self.engines
    }

    /// Puts the container called `name` on engine `engine` for every later call.
    pub fn place(&self, name: &str, engine: usize) {
        let mut map = self.placed.write().unwrap_or_else(|e| e.into_inner());
        map.insert(name.to_string(), engine.min(self.engines.len() - 1));
    }

    /// The engine a container is placed on.
    pub fn engine_of(&self, name: &str) -> usize {
        let map = self.placed.read().unwrap_or_else(|e| e.into_inner());
        map.get(name).copied().unwrap_or(0)
    }

    fn at(&self, name: &str) -> &Engine {
        &self.engines[self.engine_of(name)]
    }

    fn local(&self) -> &Engine {
        &self.engines[0]
    }

    /// The local engine's version, e.g. `20.10.24+dfsg1 (API 1.41)`.
    pub async fn version(&self) -> Result<String, DockerError> {
        self.local().version().await
    }

    /// Host, cores, memory and clock offset of every engine.
    pub async fn facts(&self) -> Result<Vec<EngineFacts>, DockerError> {
        let mut out = Vec::new();
        for e in self.engines.iter() {
            out.push(facts_of(e).await?);
        }
        Ok(out)
    }

    /// Makes `image` (built on the local engine) present with the same id on `engine`,
    /// loading it there from a local `docker save` when it is absent or differs. Returns
    /// the id on that engine.
    pub async fn ship_image(&self, image: &str, engine: usize) -> Result<String, DockerError> {
        let missing = || DockerError::Failed {
            what: format!("ship {image}"),
            message: "the image is not on the local engine".into(),
        };
        let id = self.local().image_id(image).await?.ok_or_else(missing)?;
        let there = &self.engines[engine];
        if engine == 0 || there.image_id(image).await?.as_deref() == Some(id.as_str()) {
            return Ok(id);
        }
        crate::note!("ship   {image} to {}", there.label());
        let tar = self
            .local()
            .export_image(image)
            .map(|r| r.map_err(std::io::Error::other));
        there.load_image(image, tar).await?;
        match there.image_id(image).await? {
            Some(got) if got == id => Ok(got),
            got => Err(DockerError::Failed {
                what: format!("ship {image} to {}", there.label()),
                message: format!("loaded, but its id there is {got:?}, not {id}"),
            }),
        }
    }

    pub async fn image_id(&self, image: &str) -> Result<Option<String>, DockerError> {
        self.local().image_id(image).await
    }

    pub async fn pull(&self, image: &str, timeout: Duration) -> Result<(), DockerError> {
        self.local().pull(image, timeout).await
    }

    pub async fn build_from_tar(&self, tag: &str, context: Vec<u8>) -> Result<(), DockerError> {
        self.local().build_from_tar(tag, context).await
    }

    pub async fn import_rootfs(
        &self,
        repo: &str,
        tag: &str,
        rootfs: impl Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static,
    ) -> Result<(), DockerError> {
        self.local().import_rootfs(repo, tag, rootfs).await
    }

    pub async fn tag(&self, image: &str, repo: &str, tag: &str) -> Result<(), DockerError> {
        self.local().tag(image, repo, tag).await
    }

    pub async fn run_and_commit(
        &self,
        spec: &ContainerSpec,
        repo: &str,
        tag: &str,
        changes: &str,
    ) -> Result<(), DockerError> {
        self.local().run_and_commit(spec, repo, tag, changes).await
    }

    /// Creates a container on the engine its name is placed on.
    pub async fn create(&self, spec: &ContainerSpec) -> Result<String, DockerError> {
        self.at(&spec.name).create(spec).await
    }

    pub async fn start(&self, name: &str) -> Result<(), DockerError> {
        self.at(name).start(name).await
    }

    pub async fn wait(&self, name: &str) -> Result<i64, DockerError> {
        self.at(name).wait(name).await
    }

    pub async fn remove(&self, name: &str) -> Result<(), DockerError> {
        self.at(name).remove(name).await
    }

    /// Removes a container found by [`Docker::list_labelled`] on its own engine.
    pub async fn remove_listed(&self, c: &ContainerInfo) -> Result<(), DockerError> {
        self.engines[c.engine].remove(&c.id).await
    }

    pub async fn stop(&self, name: &str, grace: Duration) -> Result<(), DockerError> {
        self.at(name).stop(name, grace).await
    }

    pub async fn state(&self, name: &str) -> Result<Option<ContainerState>, DockerError> {
        self.at(name).state(name).await
    }

    pub async fn logs_tail(&self, name: &str, n: usize) -> Result<Vec<String>, DockerError> {
        self.at(name).logs_tail(name, n).await
    }

    pub async fn upload(&self, name: &str, dir: &str, tar: Vec<u8>) -> Result<(), DockerError> {
        self.at(name).upload(name, dir, tar).await
    }

    pub async fn download_file(&self, name: &str, path: &str) -> Result<Vec<u8>, DockerError> {
        self.at(name).download_file(name, path).await
    }

    pub fn stats_stream(&self, name: &str) -> impl Stream<Item = StatsPoint> + Send + 'static {
        self.at(name).stats_stream(name)
    }

    /// Removes every container labelled `key=value` on every engine that answers: an
    /// engine that does not keep the others from being swept. Returns the names removed
    /// and each engine's failure.
    pub async fn sweep(&self, key: &str, value: &str) -> (Vec<String>, Vec<DockerError>) {
        let (mut removed, mut failed) = (Vec::new(), Vec::new());
        for e in self.engines.iter() {
            let list = match e.list_labelled(key, value).await {
                Ok(l) => l,
                Err(err) => {
                    failed.push(err);
                    continue;
                }
            };
            for c in list {
                match e.remove(&c.id).await {
                    Ok(()) => removed.push(c.name),
                    Err(err) => failed.push(err),
                }
            }
        }
        (removed, failed)
    }

    /// Every container labelled `key=value` on every engine, each with its engine index
    /// (and its id placed there, so later calls by id find it). An engine that does not
    /// answer is an error naming it.
    pub async fn list_labelled(
        &self,
        key: &str,
        value: &str,
    ) -> Result<Vec<ContainerInfo>, DockerError> {
        let mut all = Vec::new();
        for (i, e) in self.engines.iter().enumerate() {
            let mut list = e.list_labelled(key, value).await?;
            for c in &mut list {
                c.engine = i;
                self.place(&c.id, i);
            }
            all.extend(list);
        }
        Ok(all)
    }
}

/// An engine's facts; the clock offset is the best of five `/info` exchanges.
async fn facts_of(e: &Engine) -> Result<EngineFacts, DockerError> {
    let mut best: Option<(f64, f64)> = None;
    let mut last = None;
    for _ in 0..5 {
        let (info, before, after) = e.info_timed().await?;
        let rtt = after.duration_since(before).unwrap_or_default();
        let mid = before + rtt / 2;
        if let Some(remote) = info
            .system_time
            .as_deref()
            .and_then(|t| chrono::DateTime::parse_from_rfc3339(t).ok())
        {
            let remote: SystemTime = remote.into();
            let offset = match remote.duration_since(mid) {
                Ok(d) => d.as_secs_f64() * 1e3,
                Err(e) => -e.duration().as_secs_f64() * 1e3,
            };
            let rtt_ms = rtt.as_secs_f64() * 1e3;
            if best.is_none_or(|(_, r)| rtt_ms < r) {
                best = Some((offset, rtt_ms));
            }
        }
        last = Some(info);
    }
    let info = last.unwrap_or_default();
    let (clock_offset_ms, clock_rtt_ms) = best.unwrap_or((0.0, f64::NAN));
    Ok(EngineFacts {
        endpoint: e.label().to_string(),
        host: info.name.unwrap_or_default(),
        cores: info.ncpu.unwrap_or(0),
        memory_bytes: info.mem_total.unwrap_or(0),
        version: info.server_version.unwrap_or_default(),
        clock_offset_ms,
        clock_rtt_ms,
    })
}
