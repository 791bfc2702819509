//! One phase split over several `lab-generator` processes against the mock upstream on
//! port 0: the plan and output files as the lab ships them, the exact merge, and the
//! `ProcessRunner` hook behind `run_phase`, beside the same phase run in-process.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;
use std::sync::Arc;
use std::time::Duration;

use orchestrator::load::merge::decode;
use orchestrator::load::remote::{merge_outputs, share, OutputFile, PlanFile, ProcessRunner};
use orchestrator::load::{
    run_phase, EngineOpts, LoadShape, PhaseOutput, PhasePlan, PreparedRequest, RequestSpec,
};

mod load_support;

const GENERATOR: &str = env!("CARGO_BIN_EXE_lab-generator");

fn plan(url: &str, shape: LoadShape) -> PhasePlan {
    let spec = RequestSpec {
        // A fixed answer time, so throughput follows the VUs rather than the CPU.
        headers: vec![("x-mock-latency-ms".into(), "5".into())],
        ..RequestSpec::default()
    };
    PhasePlan {
        name: "split".into(),
        shape,
        requests: vec![("split".into(), PreparedRequest::new(&spec, url).unwrap())],
        timeout: Duration::from_secs(5),
        warmup: false,
    }
}

fn processes(n: usize) -> EngineOpts {
    EngineOpts {
        threads: 1,
        runner: Some(Arc::new(ProcessRunner::new(GENERATOR, n))),
        ..EngineOpts::default()
    }
}

/// Runs share `i` of `n` through the binary with files, as the lab does in a container.
fn run_generator(dir: &Path, plan: &PhasePlan, i: usize, n: usize, start_at: f64) -> PhaseOutput {
    let name = format!("gen-{i}");
    let (plan_path, out_path) = (
        dir.join(format!("{name}.plan")),
        dir.join(format!("{name}.out")),
    );
    let file = PlanFile::new(&share(plan, i, n), 1, Some(start_at), &name);
    std::fs::write(&plan_path, file.to_json().unwrap()).unwrap();
    let o = Command::new(GENERATOR)
        .arg("--plan")
        .arg(&plan_path)
        .arg("--out")
        .arg(&out_path)
        .output()
        .unwrap();
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let out = OutputFile::from_json(&std::fs::read_to_string(&out_path).unwrap()).unwrap();
    assert_eq!(out.generator, name);
    assert!(out.cost.start_lag_ms.is_some());
    out.output
}

#[test]
fn closed_split_merges_exactly_and_keeps_the_throughput() {
    let addr = load_support::start_mock_upstream();
    let url = format!("http://{addr}");
    let plan = plan(&url, LoadShape::constant_vus(8, Duration::from_secs(3)));
    let single = run_phase(
        &plan,
        &EngineOpts {
            threads: 1,
            ..EngineOpts::default()
        },
    )
    .unwrap();

    // The files and the binary, by hand: both generators start together.
    let dir = std::env::temp_dir().join(format!("generator-split-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let start_at = orchestrator::load::cli::epoch_now() + 1.5;
    let parts: Vec<(String, PhaseOutput)> = std::thread::scope(|s| {
        let runs: Vec<_> = (0..2)
            .map(|i| {
                let (dir, plan) = (&dir, &plan);
                s.spawn(move || (format!("gen-{i}"), run_generator(dir, plan, i, 2, start_at)))
            })
            .collect();
        runs.into_iter().map(|r| r.join().unwrap()).collect()
    });
    let _ = std::fs::remove_dir_all(&dir);
    for (_, p) in &parts {
        assert_eq!(p.results[0].vus, Some(4));
    }
    let merged = merge_outputs(parts.clone()).unwrap();
    let m = &merged.results[0];
    let sum = |f: fn(&PhaseOutput) -> u64| parts.iter().map(|(_, p)| f(p)).sum::<u64>();
    assert_eq!(m.requests.total, sum(|p| p.results[0].requests.total));
    assert_eq!(m.requests.ok, sum(|p| p.results[0].requests.ok));
    let hist = decode(&m.histograms.as_ref().unwrap().latency_us).unwrap();
    assert_eq!(hist.len(), m.requests.ok);
    assert_eq!(m.latency_ms.count, m.requests.ok);
    let names: Vec<&str> = m.generators.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["gen-0", "gen-1"]);
    assert_eq!(m.vus, Some(8));
    for (k, point) in m.timeseries.iter().enumerate() {
        let parts_k: u64 = parts
            .iter()
            .filter_map(|(_, p)| p.results[0].timeseries.get(k))
            .map(|t| t.requests)
            .sum();
        assert_eq!(point.requests, parts_k, "second {k}");
    }

    // The same through the hook: `run_phase` hands the phase to two processes.
    let hooked = run_phase(&plan, &processes(2)).unwrap();
    let h = &hooked.results[0];
    let names: Vec<&str> = h.generators.iter().map(|g| g.name.as_str()).collect();
    assert_eq!(names, ["local-1", "local-2"]);
    assert_eq!(
        h.requests.total,
        h.generators.iter().map(|g| g.requests).sum::<u64>()
    );
    assert!(!hooked.interrupted, "{:?}", hooked.warnings);
    let one = single.results[0].throughput.requests_per_s;
    for rate in [m.throughput.requests_per_s, h.throughput.requests_per_s] {
        assert!(
            rate > 0.5 * one && rate < 2.0 * one,
            "split {rate:.0}/s against in-process {one:.0}/s"
        );
    }
}

#[test]
fn open_split_sends_the_whole_schedule() {
    let addr = load_support::start_mock_upstream();
    let plan = plan(
        &format!("http://{addr}"),
        LoadShape::Open {
            rate_per_s: 200.0,
            duration: Duration::from_secs(2),
            max_in_flight: 100,
        },
    );
    let out = run_phase(&plan, &processes(2)).unwrap();
    let r = &out.results[0];
    assert_eq!(r.target_rate_per_s, Some(200.0));
    // Each generator schedules 100/s for 2 s: every due request is sent or dropped.
    assert_eq!(r.requests.total + r.requests.dropped, 400);
    assert_eq!(r.generators.len(), 2);
    for g in &r.generators {
        assert!(g.requests > 150, "{g:?}");
    }
    let hist = decode(&r.histograms.as_ref().unwrap().latency_us).unwrap();
    assert_eq!(hist.len(), r.requests.ok);
    // The quarters of the schedule merge too (the frontier's saturation check).
    assert_eq!(r.latency_by_due_ms.len(), 4);
    let by_due: u64 = r.latency_by_due_ms.iter().map(|s| s.count).sum();
    assert_eq!(by_due, r.requests.ok);
}

#[test]
fn failing_generators_are_reported() {
    let plan = plan(
        "http://127.0.0.1:1",
        LoadShape::constant_vus(1, Duration::from_millis(100)),
    );
    let opts = EngineOpts {
        runner: Some(Arc::new(ProcessRunner::new("/bin/false", 2))),
        ..EngineOpts::default()
    };
    let e = run_phase(&plan, &opts).unwrap_err().to_string();
    assert!(
        e.contains("every generator failed") && e.contains("local-2"),
        "{e}"
    );

    // One of two fails: the other's figures are kept, the failure is named.
    let dir = std::env::temp_dir().join(format!("generator-fail-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let wrapper = dir.join("half-broken");
    let script = format!(
        "#!/bin/sh\ncase \"$2\" in *local-2*) echo boom >&2; exit 3;; esac\nexec {GENERATOR} \"$@\"\n"
    );
    std::fs::write(&wrapper, script).unwrap();
    std::fs::set_permissions(
        &wrapper,
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let opts = EngineOpts {
        runner: Some(Arc::new(ProcessRunner::new(&wrapper, 2))),
        ..EngineOpts::default()
    };
    let out = run_phase(&plan, &opts).unwrap();
    let _ = std::fs::remove_dir_all(&dir);
    assert!(out.interrupted);
    let g = &out.results[0].generators;
    assert_eq!((g[0].name.as_str(), g[0].interrupted), ("local-1", false));
    assert_eq!((g[1].name.as_str(), g[1].interrupted), ("local-2", true));
    let failed = out
        .warnings
        .iter()
        .find(|w| w.message.contains("`local-2` failed"));
    assert!(
        failed.unwrap().message.contains("boom"),
        "{:?}",
        out.warnings
    );

    let probe = Command::new(GENERATOR).arg("--probe").status().unwrap();
    assert!(probe.success());
    let o = Command::new(GENERATOR)
        .args(["--plan", "/nonexistent/plan.json", "--out", "/tmp/x.json"])
        .output()
        .unwrap();
    assert_eq!(o.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&o.stderr).contains("/nonexistent/plan.json"));
}
