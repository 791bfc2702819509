//! Several generators on one target: two `orchestrator load` processes started together
//! (`--start-at`), each with half the rate, merged by `orchestrator merge`, agree with one
//! generator carrying the whole rate; the merged result names each generator.
#![allow(clippy::unwrap_used, clippy::expect_used)]

mod load_support;

use std::path::Path;
use std::process::{Child, Command, Output};
use std::sync::atomic::Ordering;
use std::sync::Arc;

use load_support::{start, Reply};
use orchestrator::load::result::SuiteResult;

fn orchestrator() -> Command {
    Command::new(env!("CARGO_BIN_EXE_orchestrator"))
}

/// `orchestrator load` at `rate` for 2 s, its result in `json`.
fn load(url: &str, rate: &str, json: &Path, start_at: Option<f64>) -> Child {
    let mut c = orchestrator();
    c.args(["load", "--url", url, "--rate", rate, "--duration", "2s"])
        .args(["--threads", "1", "--json", json.to_str().unwrap()]);
    if let Some(at) = start_at {
        c.args(["--start-at", &format!("{at:.3}")]);
    }
    c.stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap()
}

fn done(c: Child) -> Output {
    let out = c.wait_with_output().unwrap();
    assert!(
        out.status.success(),
        "{}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    out
}

fn read(path: &Path) -> SuiteResult {
    serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn epoch_now() -> f64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

#[test]
fn two_generators_started_together_merge_into_what_one_measures() {
    let server = start(Arc::new(|_| Reply::ok(2)));
    let url = server.url();
    let dir = std::env::temp_dir().join(format!("load-merge-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let (a, b, m, one) = (
        dir.join("gen-a.json"),
        dir.join("gen-b.json"),
        dir.join("merged.json"),
        dir.join("one.json"),
    );

    let at = epoch_now() + 1.5;
    let (ga, gb) = (
        load(&url, "100", &a, Some(at)),
        load(&url, "100", &b, Some(at)),
    );
    done(ga);
    done(gb);
    let out = done(
        orchestrator()
            .args(["merge", "--out", m.to_str().unwrap()])
            .args([a.to_str().unwrap(), b.to_str().unwrap()])
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .unwrap(),
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("gen-a: ") && text.contains("gen-b: "),
        "{text}"
    );
    let served = server.count.load(Ordering::Relaxed);
    done(load(&url, "200", &one, None));

    let merged = read(&m);
    let single = read(&one);
    let (mp, sp) = (&merged.phases[0], &single.phases[0]);
    // Every request both generators sent is in the merged count, and the server saw them.
    assert_eq!(mp.requests.total, served, "{:?}", mp.requests);
    let parts: Vec<u64> = mp.generators.iter().map(|g| g.requests).collect();
    assert_eq!(parts.iter().sum::<u64>(), mp.requests.total);
    assert_eq!(mp.latency_ms.count, mp.requests.ok);
    // The same open-model load: the same requests/s within 5 %, and latency of the same
    // 2 ms answers (p50 within a factor of 2: loopback on a shared machine).
    let ratio = mp.throughput.requests_per_s / sp.throughput.requests_per_s;
    assert!((0.95..1.05).contains(&ratio), "merged/single req/s {ratio}");
    let p50 = mp.latency_ms.p50 / sp.latency_ms.p50;
    assert!((0.5..2.0).contains(&p50), "merged/single p50 {p50}");
    assert!(mp.latency_ms.p50 >= 2.0, "{:?}", mp.latency_ms);
    // Both woke at the shared start, and say how late.
    for g in &mp.generators {
        let lag = g.generator.start_lag_ms.unwrap();
        assert!((0.0..1000.0).contains(&lag), "{}: {lag} ms late", g.name);
    }
    assert_eq!(sp.generator.start_lag_ms, None);
    std::fs::remove_dir_all(&dir).ok();
}

#[test]
fn a_start_time_that_is_not_a_time_is_refused_by_name() {
    let out = orchestrator()
        .args(["load", "--url", "http://127.0.0.1:9", "--rate", "1"])
        .args(["--start-at", "soon"])
        .output()
        .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(
        err.contains("`soon` is not a time in seconds since the Unix epoch"),
        "{err}"
    );
}
