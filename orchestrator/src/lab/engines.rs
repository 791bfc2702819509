//! Which Docker engine runs each role, and at which address the others reach it
//! (`LAB_ENGINE_*`, `LAB_ADDR_*` in .env.benchmark). All empty: everything on the local
//! engine, reached on 127.0.0.1, as on one machine.

use anyhow::Context;

use crate::docker::{Docker, Endpoint};
use crate::lab::compose::{ComposeFile, Role, Vars};
use crate::rundir::EngineRecord;

/// The address a role is reached at when its `LAB_ADDR_*` is empty.
pub const LOOPBACK: &str = "127.0.0.1";

/// Engines and addresses per role.
#[derive(Debug, Clone, PartialEq)]
pub struct EnginePlan {
    pub target: Endpoint,
    pub mock: Endpoint,
    pub monitoring: Endpoint,
    /// Engines that run load generator containers, one container per entry (an engine
    /// named twice runs two). Empty: the orchestrator generates the load itself.
    pub generators: Vec<Endpoint>,
    pub target_addr: String,
    pub mock_addr: String,
    pub monitoring_addr: String,
}

impl EnginePlan {
    /// Reads the plan; a malformed value names its variable.
    pub fn from_vars(vars: &Vars) -> anyhow::Result<Self> {
        let engine = |key: &str| -> anyhow::Result<Endpoint> {
            Endpoint::parse(&vars.get_or(key, ""))
                .with_context(|| format!("{key} in .env.benchmark"))
        };
        let generators = vars
            .get_or("LAB_ENGINE_GENERATORS", "")
            .split(',')
            .map(str::trim)
            .filter(|s| !s.is_empty())
            .map(|s| Endpoint::parse(s).with_context(|| "LAB_ENGINE_GENERATORS in .env.benchmark"))
            .collect::<anyhow::Result<Vec<_>>>()?;
        let addr = |key: &str| -> anyhow::Result<String> {
            let a = vars.get_or(key, LOOPBACK);
            anyhow::ensure!(
                !a.contains(['/', ' ']) && !a.is_empty(),
                "{key} in .env.benchmark must be a host name or an IP address, got `{a}`"
            );
            Ok(a)
        };
        Ok(Self {
            target: engine("LAB_ENGINE_TARGET")?,
            mock: engine("LAB_ENGINE_MOCK")?,
            monitoring: engine("LAB_ENGINE_MONITORING")?,
            generators,
            target_addr: addr("LAB_ADDR_TARGET")?,
            mock_addr: addr("LAB_ADDR_MOCK")?,
            monitoring_addr: addr("LAB_ADDR_MONITORING")?,
        })
    }

    /// The engine of a role (backing stores run beside the targets that use them).
    pub fn engine_of(&self, role: Role) -> &Endpoint {
        match role {
            Role::Target | Role::Backing => &self.target,
            Role::Mock => &self.mock,
            Role::Monitoring => &self.monitoring,
        }
    }

    /// The address the other roles reach a role at.
    pub fn addr_of(&self, role: Role) -> &str {
        match role {
            Role::Target | Role::Backing => &self.target_addr,
            Role::Mock => &self.mock_addr,
            Role::Monitoring => &self.monitoring_addr,
        }
    }

    /// Every engine, the local one first (images are built there).
    pub fn endpoints(&self) -> Vec<Endpoint> {
        let mut all = vec![Endpoint::Local];
        all.extend([&self.target, &self.mock, &self.monitoring].map(Clone::clone));
        all.extend(self.generators.iter().cloned());
        all
    }

    /// Whether any role leaves the local engine.
    pub fn is_spread(&self) -> bool {
        let local = Endpoint::Local.label();
        self.endpoints().iter().any(|e| e.label() != local)
    }

    /// Points every readiness URL at its role's address (they are written with 127.0.0.1).
    pub fn apply_addresses(&self, compose: &mut ComposeFile) {
        for svc in compose.services.values_mut() {
            let addr = self.addr_of(svc.role);
            if addr != LOOPBACK {
                svc.health_url = with_host(&svc.health_url, addr);
            }
        }
    }
}

/// `scheme://HOST:port/path` with HOST replaced.
pub fn with_host(url: &str, host: &str) -> String {
    let Some((scheme, rest)) = url.split_once("://") else {
        return url.to_string();
    };
    let (hostport, path) = rest.split_at(rest.find('/').unwrap_or(rest.len()));
    let port = hostport.rsplit_once(':').map(|(_, p)| p);
    let host = if host.contains(':') {
        format!("[{host}]")
    } else {
        host.to_string()
    };
    match port {
        Some(p) => format!("{scheme}://{host}:{p}{path}"),
        None => format!("{scheme}://{host}{path}"),
    }
}

/// Connects to every engine of the lab and places each service's container on its role's.
pub async fn connect(lab: &crate::lab::stack::Lab) -> anyhow::Result<Docker> {
    let docker = Docker::connect_all(&lab.engines.endpoints()).await?;
    for (name, svc) in &lab.compose.services {
        let engine = docker.index_of(lab.engines.engine_of(svc.role));
        docker.place(&lab.container_name(name), engine);
    }
    Ok(docker)
}

/// Ships each service's image (and the generator's) to the engine that runs it, then
/// measures every engine: the manifest's record of them.
pub async fn prepare(
    docker: &Docker,
    lab: &crate::lab::stack::Lab,
    images: &[(String, String)],
) -> anyhow::Result<Vec<EngineRecord>> {
    let mut records: Vec<EngineRecord> = docker
        .facts()
        .await?
        .into_iter()
        .map(|f| EngineRecord {
            endpoint: f.endpoint,
            roles: Vec::new(),
            host: f.host,
            cores: f.cores,
            memory_bytes: f.memory_bytes,
            version: f.version,
            clock_offset_ms: f.clock_offset_ms,
            clock_rtt_ms: f.clock_rtt_ms.is_finite().then_some(f.clock_rtt_ms),
            images: Default::default(),
        })
        .collect();
    let p = &lab.engines;
    let roles = [
        ("target", &p.target),
        ("mock", &p.mock),
        ("monitoring", &p.monitoring),
    ];
    for (role, ep) in roles
        .into_iter()
        .chain(p.generators.iter().map(|g| ("generator", g)))
    {
        let r = &mut records[docker.index_of(ep)].roles;
        if !r.iter().any(|x| x == role) {
            r.push(role.to_string());
        }
    }
    for (container, image) in images {
        let engine = docker.engine_of(container);
        let id = docker.ship_image(image, engine).await?;
        records[engine].images.insert(image.clone(), id);
    }
    Ok(records)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use std::collections::BTreeMap;

    fn vars(pairs: &[(&str, &str)]) -> Vars {
        Vars {
            process: BTreeMap::new().into_iter().collect(),
            file: pairs
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect(),
            computed: BTreeMap::new(),
        }
    }

    #[test]
    fn empty_means_everything_local_on_loopback() {
        let p = EnginePlan::from_vars(&vars(&[])).unwrap();
        assert_eq!(p.target, Endpoint::Local);
        assert!(p.generators.is_empty());
        assert_eq!(p.addr_of(Role::Mock), LOOPBACK);
        assert!(!p.is_spread());
    }

    #[test]
    fn roles_get_their_engines_and_bad_values_name_the_key() {
        let p = EnginePlan::from_vars(&vars(&[
            ("LAB_ENGINE_TARGET", "unix:///tmp/d2/docker.sock"),
            ("LAB_ENGINE_GENERATORS", "local, local"),
            ("LAB_ADDR_TARGET", "10.0.0.2"),
        ]))
        .unwrap();
        assert_eq!(
            p.engine_of(Role::Backing),
            &Endpoint::Unix("/tmp/d2/docker.sock".into())
        );
        assert_eq!(p.generators, vec![Endpoint::Local, Endpoint::Local]);
        assert!(p.is_spread());
        assert_eq!(p.addr_of(Role::Target), "10.0.0.2");
        let e = EnginePlan::from_vars(&vars(&[("LAB_ENGINE_MOCK", "tcp://nohost")])).unwrap_err();
        assert!(format!("{e:#}").contains("LAB_ENGINE_MOCK"), "{e:#}");
        let e = EnginePlan::from_vars(&vars(&[("LAB_ADDR_MOCK", "http://x/")])).unwrap_err();
        assert!(e.to_string().contains("LAB_ADDR_MOCK"), "{e}");
    }

    #[test]
    fn urls_move_to_the_role_address() {
        assert_eq!(
            with_host("http://127.0.0.1:8080/health", "10.0.0.2"),
            "http://10.0.0.2:8080/health"
        );
        assert_eq!(with_host("tcp://127.0.0.1:6379", "gw"), "tcp://gw:6379");
        assert_eq!(
            with_host("http://127.0.0.1:9000/h", "fd00::2"),
            "http://[fd00::2]:9000/h"
        );
    }
}
