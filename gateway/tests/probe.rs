//! `gateway --probe URL`, the image's healthcheck, against the real binary: no config
//! needed, exit 0 on a 2xx answer, exit 1 with a message naming what failed otherwise.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod common;

use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::*;

/// Runs `gateway --probe URL` (no config in the environment either), bounded to 15 s;
/// returns the exit code and stderr.
fn probe(url: &str) -> (i32, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .args(["--probe", url])
        .env_remove("GATEWAY_CONFIG")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .unwrap();
    let t0 = Instant::now();
    let status = loop {
        if let Some(s) = child.try_wait().unwrap() {
            break s;
        }
        if t0.elapsed() > Duration::from_secs(15) {
            let _ = child.kill();
            panic!("gateway --probe {url} did not finish within 15 s");
        }
        std::thread::sleep(Duration::from_millis(20));
    };
    let mut err = String::new();
    std::io::Read::read_to_string(&mut child.stderr.take().unwrap(), &mut err).unwrap();
    (status.code().expect("exit code"), err)
}

#[test]
fn probe_of_a_running_gateway_succeeds() {
    let gw = Gateway::start(&config(dead_port()));
    let (code, err) = probe(&gw.url("/health"));
    assert_eq!(code, 0, "stderr: {err}");
    assert!(err.is_empty(), "{err}");
}

#[test]
fn probe_of_a_non_2xx_path_fails_with_the_status() {
    let gw = Gateway::start(&config(dead_port()));
    let (code, err) = probe(&gw.url("/no-such-path"));
    assert_eq!(code, 1, "stderr: {err}");
    assert!(
        err.starts_with("Error: ") && err.contains("not 2xx"),
        "{err}"
    );
}

#[test]
fn probe_of_a_closed_port_fails_naming_the_address() {
    let port = dead_port();
    let (code, err) = probe(&format!("http://127.0.0.1:{port}/health"));
    assert_eq!(code, 1, "stderr: {err}");
    assert!(
        err.starts_with(&format!("Error: cannot connect to 127.0.0.1:{port}")),
        "{err}"
    );
    assert_eq!(
        err.matches("os error").count(),
        1,
        "cause printed once: {err}"
    );
}

#[test]
fn probe_rejects_a_non_http_url() {
    let (code, err) = probe("https://127.0.0.1:1/health");
    assert_eq!(code, 1, "stderr: {err}");
    assert!(err.contains("only http:// is supported"), "{err}");
    let (code, err) = probe("127.0.0.1:1/health");
    assert_eq!(code, 1, "stderr: {err}");
    assert!(err.contains("want http://HOST:PORT/PATH"), "{err}");
}

#[test]
fn without_probe_the_config_is_still_required() {
    let out = Command::new(env!("CARGO_BIN_EXE_gateway"))
        .env_remove("GATEWAY_CONFIG")
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("--config"), "{err}");
}
