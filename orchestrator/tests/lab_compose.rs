//! The lab's compose file is valid for docker-compose itself, and the orchestrator reads
//! it the same way (images, commands, cpusets, memory limits).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::{Path, PathBuf};
use std::process::Command;

use orchestrator::lab::stack::{Lab, LabOpts};

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("..")
}

#[test]
fn docker_compose_accepts_the_file_and_agrees_with_the_orchestrator() {
    let out = Command::new("docker-compose")
        .current_dir(repo_root())
        .args([
            "--env-file",
            ".env.benchmark",
            "-f",
            "docker-compose.benchmark.yml",
            "config",
        ])
        .output()
        .expect("docker-compose (v1.29) is needed: apt-get install docker-compose");
    assert!(
        out.status.success(),
        "docker-compose config failed:\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let theirs: serde_yaml::Value = serde_yaml::from_slice(&out.stdout).unwrap();
    let lab = Lab::load(&LabOpts {
        root: Some(repo_root()),
        ..LabOpts::default()
    })
    .unwrap();
    let services = theirs["services"].as_mapping().unwrap();
    assert_eq!(services.len(), lab.compose.services.len());
    for (name, ours) in &lab.compose.services {
        let t = &theirs["services"][name.as_str()];
        assert_eq!(t["image"].as_str(), Some(ours.image.as_str()), "{name}");
        assert_eq!(t["network_mode"].as_str(), Some("host"), "{name}");
        let cmd: Option<Vec<String>> = t["command"]
            .as_sequence()
            .map(|s| s.iter().map(|v| v.as_str().unwrap().to_string()).collect());
        assert_eq!(cmd, ours.command, "{name}");
        let hc_test: Option<Vec<String>> = t["healthcheck"]["test"]
            .as_sequence()
            .map(|s| s.iter().map(|v| v.as_str().unwrap().to_string()).collect());
        assert_eq!(
            hc_test,
            ours.healthcheck.as_ref().and_then(|h| h.test.clone()),
            "{name} healthcheck"
        );
        assert_eq!(
            t["labels"]["lab"].as_str(),
            ours.labels.get("lab").map(String::as_str),
            "{name}"
        );
    }
}
