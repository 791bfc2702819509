//! Bad lab input gives a clear error naming what is wrong (no Docker needed: each fails
//! before or at the connection to the engine).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

/// Runs the orchestrator with a time limit.
fn orchestrator(args: &[&str], env: &[(&str, &str)]) -> Output {
    let mut cmd = Command::new(env!("CARGO_BIN_EXE_orchestrator"));
    cmd.args(args).current_dir(repo_root());
    for (k, v) in env {
        cmd.env(k, v);
    }
    let mut child = cmd
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    let start = std::time::Instant::now();
    while child.try_wait().unwrap().is_none() {
        if start.elapsed() > Duration::from_secs(60) {
            let _ = child.kill();
            panic!("orchestrator {args:?} did not finish within 60 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    child.wait_with_output().unwrap()
}

fn stderr(o: &Output) -> String {
    String::from_utf8_lossy(&o.stderr).into_owned()
}

fn temp_dir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("lab-errors-{name}-{}", std::process::id()));
    std::fs::create_dir_all(&d).unwrap();
    d
}

#[test]
fn an_unsupported_compose_key_is_named() {
    let dir = temp_dir("compose");
    let text = std::fs::read_to_string(repo_root().join("docker-compose.benchmark.yml")).unwrap();
    let text = text.replacen(
        "    network_mode: host\n",
        "    network_mode: host\n    ports: [\"9000:9000\"]\n",
        1,
    );
    let file = dir.join("compose.yml");
    std::fs::write(&file, text).unwrap();
    let out = orchestrator(&["status", "--compose", file.to_str().unwrap()], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("services.mock-upstream"), "{err}");
    assert!(err.contains("ports"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn a_cpuset_beyond_the_host_cores_is_refused() {
    let out = orchestrator(&["status"], &[("LAB_CPUSET_TARGET", "0-4095")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("LAB_CPUSET_TARGET"), "{err}");
    assert!(err.contains("this host has"), "{err}");
}

#[test]
fn a_dead_docker_engine_is_explained() {
    let dir = temp_dir("docker");
    let sock = dir.join("docker.sock");
    let out = orchestrator(
        &["status"],
        &[("DOCKER_HOST", &format!("unix://{}", sock.display()))],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("Docker engine isn't reachable"), "{err}");
    assert!(err.contains(&sock.display().to_string()), "{err}");
    assert!(err.contains("systemctl start docker"), "{err}");
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn an_unknown_target_is_named() {
    let out = orchestrator(&["run", "baseline", "--targets", "direct,bifrost"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("unknown target `bifrost`"), "{err}");
    // Every `x-lab-role: target` service of the compose file is offered, the floor included.
    assert!(
        err.contains(
            "(targets: direct, gateway, gateway-governed, litellm, litellm-governed, nginx)"
        ),
        "{err}"
    );
}

#[test]
fn a_lane_with_nothing_to_govern_or_an_unknown_lane_is_named() {
    let out = orchestrator(
        &[
            "run",
            "baseline",
            "--targets",
            "direct,nginx",
            "--lane",
            "governed",
        ],
        &[],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains("--lane governed: none of the targets (direct,nginx) has a governed variant"),
        "{err}"
    );
    let out = orchestrator(&["run", "baseline", "--lane", "audited"], &[]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(64), "{err}");
    assert!(err.contains("audited"), "{err}");
    let out = orchestrator(&["run", "baseline"], &[("LAB_LANE", "audited")]);
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(err.contains("unknown lane `audited`"), "{err}");
}

#[test]
fn a_taken_port_stops_the_run_before_anything_starts() {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = listener.local_addr().unwrap().port().to_string();
    let lab = format!("lab-test-ports-{}", std::process::id());
    let results = temp_dir("ports");
    let out = orchestrator(
        &[
            "run",
            "baseline",
            "--targets",
            "direct",
            "--results",
            results.to_str().unwrap(),
        ],
        // Fails before anything starts: no need to wait for the machine-wide lab lock.
        &[
            ("MOCK_PORT", &port),
            ("LAB_NAME", &lab),
            ("LAB_LOCK_HELD", "1"),
        ],
    );
    let err = stderr(&out);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert!(
        err.contains(&format!(
            "port {port} for `mock-upstream` is already in use"
        )),
        "{err}"
    );
    assert!(
        err.contains("MOCK_PORT") || err.contains(".env.benchmark"),
        "{err}"
    );
    drop(listener);
    std::fs::remove_dir_all(&results).unwrap();
}
