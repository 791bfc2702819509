//! Bad configurations stop the real binary with a clear message and a non-zero exit.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{config, dead_port, temp_config};

/// Runs the binary on `text`; returns (exit code, stderr). Bounded to 20 s.
fn run_bad(text: &str) -> (Option<i32>, String) {
    let path = temp_config(text);
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .arg("--config")
        .arg(&path)
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(20) {
            let _ = child.kill();
            panic!("gateway did not exit on a bad config");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    let _ = std::fs::remove_file(path);
    (status.code(), err)
}

#[test]
fn unknown_key_is_named() {
    let text = config(dead_port()).replace("forward_headers:", "forward_header:");
    let (code, err) = run_bad(&text);
    assert_eq!(code, Some(1));
    assert!(err.starts_with("Error: "), "{err}");
    assert!(err.contains("forward_header"), "{err}");

    let text = config(dead_port()).replace("max_body_bytes:", "max_body:");
    let (code, err) = run_bad(&text);
    assert_eq!(code, Some(1));
    assert!(err.contains("limits") && err.contains("max_body"), "{err}");
}

#[test]
fn validation_errors_are_clear() {
    let text = config(dead_port()).replace("provider: local}", "provider: nowhere}");
    let (code, err) = run_bad(&text);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("models[4].provider") && err.contains("nowhere"),
        "{err}"
    );

    let text = config(dead_port()).replace("{name: plain,", "{name: gpt,");
    let (code, err) = run_bad(&text);
    assert_eq!(code, Some(1));
    assert!(err.contains("duplicate model name \"gpt\""), "{err}");

    let text = config(dead_port()).replace(
        "base_url: \"http://127.0.0.1:",
        "base_url: \"htp://127.0.0.1:",
    );
    let (code, err) = run_bad(&text);
    assert_eq!(code, Some(1));
    assert!(err.contains("base_url") && err.contains("scheme"), "{err}");

    let text = config(dead_port()).replace(
        "api_key: \"up-key\"",
        "api_key_env: GATEWAY_TEST_SURELY_UNSET",
    );
    let (code, err) = run_bad(&text);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("GATEWAY_TEST_SURELY_UNSET is not set"),
        "{err}"
    );

    let text = config(dead_port()).replace("type: loopback", "type: carrier-pigeon");
    let (code, err) = run_bad(&text);
    assert_eq!(code, Some(1));
    assert!(
        err.contains("providers.local") && err.contains("carrier-pigeon"),
        "{err}"
    );
}

#[test]
fn missing_file_is_named() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--config", "/nonexistent/gw.yaml"])
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("/nonexistent/gw.yaml"), "{err}");
}
