//! One lab run per Docker engine, across machines: the machine-wide `flock` of
//! [`crate::lab::lock`] only guards this host, while an engine may be shared by
//! orchestrators on several. A run holds, on each of its engines, a created (never
//! started) container `<lab>-lock` from an empty image; container names are unique per
//! engine, so creating it is the lock. A lock whose owner is a dead process of this host
//! is stale and taken over; `orchestrator stop` removes every lock.

use std::collections::HashMap;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::docker::{ContainerSpec, Docker, Engine};

/// Label carrying the lab's name on its lock containers (not `lab`: the sweep of a run's
/// leftovers must not remove the run's own lock).
pub const LOCK_LABEL: &str = "lab.lock";
const OWNER_LABEL: &str = "lab.lock.owner";
const LOCK_IMAGE: &str = "lab/lock:1";

/// The locks a run holds; [`EngineLocks::release`] gives them back.
pub struct EngineLocks {
    docker: Docker,
    name: String,
}

fn owner() -> String {
    let host = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap_or_default();
    format!("{}:{}", host.trim(), std::process::id())
}

/// Is `owner` a process of this host that no longer runs?
fn is_stale(owner: &str) -> bool {
    let me = self::owner();
    let (Some((host, pid)), Some((my_host, _))) = (owner.rsplit_once(':'), me.rsplit_once(':'))
    else {
        return false;
    };
    host == my_host && !std::path::Path::new(&format!("/proc/{pid}")).exists()
}

/// Takes the lock on every engine of `docker`, waiting up to `wait` for each.
pub async fn acquire(docker: &Docker, lab: &str, wait: Duration) -> anyhow::Result<EngineLocks> {
    for e in docker.engines() {
        lock_one(e, lab, wait)
            .await
            .with_context(|| format!("locking the Docker engine {}", e.label()))?;
    }
    Ok(EngineLocks {
        docker: docker.clone(),
        name: lab.to_string(),
    })
}

impl EngineLocks {
    pub async fn release(self) -> anyhow::Result<()> {
        release_engines(&self.docker, &self.name).await
    }
}

/// Removes the lab's lock containers on every engine (whoever holds them).
pub async fn release_engines(docker: &Docker, lab: &str) -> anyhow::Result<()> {
    let (_, failed) = docker.sweep(LOCK_LABEL, lab).await;
    match failed.into_iter().next() {
        Some(e) => Err(anyhow::Error::new(e).context("releasing the engine locks")),
        None => Ok(()),
    }
}

async fn lock_one(e: &Engine, lab: &str, wait: Duration) -> anyhow::Result<()> {
    if e.image_id(LOCK_IMAGE).await?.is_none() {
        let empty = futures_util::stream::iter([Ok(bytes::Bytes::from(vec![0u8; 1024]))]);
        e.import_rootfs("lab/lock", "1", empty).await?;
    }
    let spec = ContainerSpec {
        name: format!("{lab}-lock"),
        image: LOCK_IMAGE.into(),
        entrypoint: Some(vec!["/held-by-a-lab-run".into()]),
        labels: HashMap::from([
            (LOCK_LABEL.to_string(), lab.to_string()),
            (OWNER_LABEL.to_string(), owner()),
        ]),
        ..ContainerSpec::default()
    };
    let start = Instant::now();
    let mut told = false;
    loop {
        match e.create(&spec).await {
            Ok(_) => return Ok(()),
            Err(err) if err.is_conflict() => {}
            Err(other) => return Err(other.into()),
        }
        let holder = e
            .list_labelled(LOCK_LABEL, lab)
            .await?
            .into_iter()
            .find_map(|c| c.labels.get(OWNER_LABEL).cloned())
            .unwrap_or_default();
        if is_stale(&holder) {
            crate::note!(
                "lock   {}: taking over the lock of a dead run ({holder})",
                e.label()
            );
            e.remove(&spec.name).await?;
            continue;
        }
        if !told {
            crate::note!(
                "waiting for another lab run ({holder}) on the engine {} (up to {} s)",
                e.label(),
                wait.as_secs()
            );
            told = true;
        }
        anyhow::ensure!(
            start.elapsed() < wait,
            "another lab run ({holder}) holds the engine; waited {} s (`orchestrator stop` removes a lock left behind)",
            wait.as_secs()
        );
        tokio::time::sleep(Duration::from_secs(1)).await;
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn only_a_dead_process_of_this_host_is_stale() {
        let me = owner();
        assert!(!is_stale(&me), "this process runs");
        let host = me.rsplit_once(':').unwrap().0;
        assert!(is_stale(&format!("{host}:4000000000")));
        assert!(!is_stale("another-host:4000000000"));
        assert!(!is_stale(""));
    }
}
