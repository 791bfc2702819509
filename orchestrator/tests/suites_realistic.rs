//! The `realistic` and `prompt-sizes` suites through `orchestrator bench` against the
//! mock's server on port 0: every level yields its figures (per-rate unary phases, per
//! stream level TTFT and inter-token latency, per prompt size), and nothing is charged
//! to the generator's own limits.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::net::SocketAddr;
use std::path::PathBuf;
use std::process::Command;

use load_support::start_mock_upstream as start_mock;
use orchestrator::load::SuiteResult;

mod load_support;

fn bench(addr: SocketAddr, suites: &str, out: &PathBuf) {
    let o = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args([
            "bench",
            "--url",
            &format!("http://{addr}"),
            "--suite",
            suites,
        ])
        .args(["--profile", "quick", "--target", "direct", "--out"])
        .arg(out)
        .output()
        .unwrap();
    assert!(
        o.status.success(),
        "bench failed: {}\n{}",
        String::from_utf8_lossy(&o.stdout),
        String::from_utf8_lossy(&o.stderr)
    );
}

fn result(out: &std::path::Path, suite: &str) -> SuiteResult {
    let path = out.join(format!("direct-{suite}.json"));
    let text = std::fs::read_to_string(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    serde_json::from_str(&text).unwrap()
}

#[test]
fn realistic_and_prompt_sizes_report_every_level() {
    let addr = start_mock();
    let out = std::env::temp_dir().join(format!("realistic-{}", std::process::id()));
    bench(addr, "realistic,prompt-sizes", &out);

    let r = result(&out, "realistic");
    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "unary-100rps",
            "unary-500rps",
            "unary-1000rps",
            "unary-2000rps",
            "streams"
        ]
    );
    for p in &r.phases[..4] {
        assert!(
            !p.stream && p.requests.ok > 0,
            "{}: {:?}",
            p.name,
            p.requests
        );
        // The mock's 10 ms upstream latency is in every answer.
        assert!(p.latency_ms.p50 >= 10.0, "{}: {:?}", p.name, p.latency_ms);
        assert_eq!(p.requests.rig_refused, 0, "{}", p.name);
    }
    let streams = &r.phases[4];
    assert!(streams.stream);
    let levels: Vec<u64> = streams.stages.iter().map(|s| s.target_vus).collect();
    assert_eq!(levels, [100, 500, 1000, 2000], "{:?}", streams.stages);
    for s in &streams.stages {
        assert!(s.requests > 0 && s.start_s.is_some(), "{s:?}");
        let (ttft, itl) = (s.ttft_ms.as_ref().unwrap(), s.itl_ms.as_ref().unwrap());
        // 50 ms TTFT and 20 ms gaps at the mock: at least that, per level.
        assert!(ttft.count > 0 && ttft.p99 >= 50.0, "{s:?}");
        assert!(itl.count > 0 && itl.p99 >= 15.0, "{s:?}");
        assert_eq!(s.rig_refused, 0, "{s:?}");
    }
    // 2,000 streams were really open at once.
    assert!(
        streams.stages[3].peak_active_vus >= 1900,
        "{:?}",
        streams.stages[3]
    );

    let r = result(&out, "prompt-sizes");
    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["prompt-1k", "prompt-10k"]);
    for p in &r.phases {
        assert!(
            p.requests.ok > 0 && p.requests.error_percent == 0.0,
            "{}: {:?}",
            p.name,
            p.requests
        );
    }
    let _ = std::fs::remove_dir_all(&out);
}
