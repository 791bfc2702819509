//! One lab at a time per machine: every service uses host networking on fixed ports, so
//! two runs (say two `cargo test --workspace` at once) would collide. `run` and `start`
//! take an exclusive `flock` on a machine-wide file and wait for it, saying so.

use std::fs::File;
use std::os::unix::io::AsRawFd;
use std::path::PathBuf;
use std::time::{Duration, Instant};

/// Set by a caller that already holds the lock for the orchestrator it starts (the Docker
/// test holds it across `run` and `stop`).
pub const HELD_VAR: &str = "LAB_LOCK_HELD";

/// The lock file: `LAB_LOCK_FILE`, else `/tmp/llm-gateway-lab.lock`.
pub fn path() -> PathBuf {
    std::env::var_os("LAB_LOCK_FILE")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/tmp/llm-gateway-lab.lock"))
}

/// Held until dropped (the kernel releases it when the process ends, even on a crash).
#[derive(Debug)]
pub struct LabLock {
    _file: Option<File>,
}

/// Takes the lock, waiting up to `wait`; a no-op when [`HELD_VAR`] is set.
pub fn acquire(wait: Duration) -> anyhow::Result<LabLock> {
    if std::env::var_os(HELD_VAR).is_some() {
        return Ok(LabLock { _file: None });
    }
    let path = path();
    let file = File::options()
        .create(true)
        .truncate(false)
        .write(true)
        .open(&path)
        .map_err(|e| anyhow::anyhow!("opening the lab lock {}: {e}", path.display()))?;
    let start = Instant::now();
    let mut told = false;
    loop {
        if try_lock(&file)? {
            return Ok(LabLock { _file: Some(file) });
        }
        if !told {
            crate::note!(
                "waiting for another lab run on this machine to finish (lock {}; up to {} s)",
                path.display(),
                wait.as_secs()
            );
            told = true;
        }
        if start.elapsed() > wait {
            anyhow::bail!(
                "another lab run holds {} (ports are shared on this machine); waited {} s",
                path.display(),
                wait.as_secs()
            );
        }
        std::thread::sleep(Duration::from_secs(1));
    }
}

#[allow(unsafe_code)]
fn try_lock(file: &File) -> anyhow::Result<bool> {
    // SAFETY: flock on a descriptor this process owns for the call's duration.
    let rc = unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) };
    if rc == 0 {
        return Ok(true);
    }
    let err = std::io::Error::last_os_error();
    if err.raw_os_error() == Some(libc::EWOULDBLOCK) {
        Ok(false)
    } else {
        Err(anyhow::anyhow!("locking {}: {err}", path().display()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn a_second_holder_waits_then_gives_up() {
        let f = std::env::temp_dir().join(format!("lab-lock-{}", std::process::id()));
        let a = File::options()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&f)
            .unwrap();
        assert!(try_lock(&a).unwrap());
        let b = File::options().write(true).open(&f).unwrap();
        assert!(!try_lock(&b).unwrap());
        drop(a);
        assert!(try_lock(&b).unwrap());
        std::fs::remove_file(&f).unwrap();
    }
}
