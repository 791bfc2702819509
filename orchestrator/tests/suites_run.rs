//! Running suites in process against test servers: warm-up, overhead, frontier, observer.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "load_support/mod.rs"]
mod load_support;

use std::sync::Arc;
use std::time::Duration;

use load_support::{start, Reply};
use orchestrator::load::result::{ResultWarning, ResultWarningKind, RungFail, RungSearch};
use orchestrator::load::settle::{self, Settle};
use orchestrator::load::{ChannelObserver, Event};
use orchestrator::suites::{
    probe_request, run_suite, run_suite_blocking, Profile, RunOpts, SuitesFile, TargetSpec,
};

const SUITES: &str = r#"
profiles:
  full:  {scale: 1.0, warmup: 300ms}
  quick: {scale: 0.5, warmup: 200ms}
defaults:
  request: {api: openai, model: m, max_tokens: 16}
  timeout: 5s
  max_in_flight: 1000
suites:
  - name: base
    description: d
    closed: {vus: 1, iterations: 20}
  - name: ramp
    description: d
    closed:
      stages: [{duration: 1s, target: 3}, {duration: 1s, target: 3}]
  - name: steps
    description: d
    phases:
      - name: unary
        open: {rates: [20, 40, 80], step: 500ms, stop_error_percent: 25}
      - name: held
        closed:
          start_vus: 2
          stages: [{duration: 1s, target: 2}, {duration: 0s, target: 4}, {duration: 1s, target: 4}]
  - name: over
    description: d
    overhead: {duration: 2s}
  - name: front
    description: d
    frontier:
      rates: [50, 100, 200, 400]
      step: 1s
      bounds_ms: [1, 200, 1000]
      max_error_percent: 0.1
      stop_error_percent: 5
      min_samples: 50
  - name: front-tight
    description: d
    frontier:
      rates: [50, 100, 200, 400]
      step: 1s
      bounds_ms: [1, 10, 30]
      max_error_percent: 0.1
      stop_error_percent: 5
      min_samples: 50
  - name: front-queue
    description: d
    frontier:
      rates: [100, 300]
      step: 1s
      bounds_ms: [5000]
      max_error_percent: 0.1
      stop_error_percent: 5
      min_samples: 100
      max_bisections: 3
"#;

#[test]
fn overhead_reports_added_latency() {
    let target = start(Arc::new(|_| Reply::ok(4)));
    let direct = start(Arc::new(|_| Reply::ok(1)));
    let f = SuitesFile::parse(SUITES, "t.yaml").unwrap();
    let mut t = TargetSpec::new("gw", &target.url());
    t.direct_url = Some(direct.url());
    let r = run_suite_blocking(
        &f.suite("over").unwrap(),
        &t,
        &RunOpts {
            profile: Profile::Full,
            ..RunOpts::default()
        },
        None,
    )
    .unwrap();
    // Target, direct and the control (direct again), interleaved.
    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["target", "direct", "control"]);
    let o = r.overhead.unwrap();
    assert!(o.samples > 50, "{o:?}");
    // 4 ms vs 1 ms injected: about 3000 µs added.
    assert!(o.added_p50_us > 1500.0 && o.added_p50_us < 5000.0, "{o:?}");
    // Paired: the same, with an interval around it, well above the resolution that
    // direct against itself shows.
    let pd = o.paired.unwrap();
    assert!(pd.pairs + 1 >= o.samples, "{pd:?}");
    let p50 = &pd.p50;
    assert!(p50.added_us > 1500.0 && p50.added_us < 5000.0, "{pd:?}");
    assert!(
        p50.ci_us[0] <= p50.added_us && p50.added_us <= p50.ci_us[1],
        "{pd:?}"
    );
    assert!(p50.control_us.abs() < 1000.0, "{pd:?}");
    assert!(!p50.below_resolution, "{pd:?}");
    // Interleaved: every side got as many requests (within one).
    let (a, b) = (r.phases[0].requests.total, r.phases[1].requests.total);
    assert!(a.abs_diff(b) <= 1, "{a} {b}");
    // Warm-up requests are not counted.
    let served = target.count.load(std::sync::atomic::Ordering::SeqCst);
    assert!(served > a + 10, "server saw {served}, counted {a}");

    let no_direct = TargetSpec::new("gw", &target.url());
    let err = run_suite_blocking(
        &f.suite("over").unwrap(),
        &no_direct,
        &RunOpts::default(),
        None,
    )
    .unwrap_err();
    assert!(err.to_string().contains("--direct-url"), "{err}");
}

#[test]
fn frontier_finds_the_rate_under_each_bound() {
    // The server answers in 5 ms: a 1 ms bound is never met, generous bounds always are.
    let server = start(Arc::new(|_| Reply::ok(5)));
    let f = SuitesFile::parse(SUITES, "t.yaml").unwrap();
    let r = run_suite_blocking(
        &f.suite("front").unwrap(),
        &TargetSpec::new("s", &server.url()),
        &RunOpts {
            profile: Profile::Full,
            threads: 1,
            ..RunOpts::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(r.phases.len(), 4, "all steps ran");
    let fr = r.frontier.unwrap();
    assert_eq!(fr.len(), 3);
    assert_eq!(fr[0].max_rate_per_s, None, "{fr:?}");
    assert_eq!(fr[1].max_rate_per_s, Some(400.0), "{fr:?}");
    assert_eq!(fr[2].max_rate_per_s, Some(400.0), "{fr:?}");
    assert_eq!(fr[2].phase.as_deref(), Some("rate-400"));
    assert!(fr[1].p99_ms.unwrap() >= 5.0);
    assert!(
        (fr[1].achieved_rate_per_s.unwrap() - 400.0).abs() < 20.0,
        "{fr:?}"
    );
}

/// A server that serves one request at a time in 4 ms (250/s), queueing the rest: at
/// 300/s its latency climbs through the rung while p99 stays far under the 5 s bound, so
/// only the saturation check fails the rung; bisection then finds the rate below 250/s.
#[test]
fn frontier_fails_a_saturated_rung_and_bisects_below_it() {
    use std::sync::Mutex;
    use std::time::Instant;
    let service = Duration::from_millis(4);
    let free_at = Arc::new(Mutex::new(Instant::now()));
    let server = start(Arc::new(move |_| {
        let mut free = free_at.lock().unwrap();
        let now = Instant::now();
        let done = (*free).max(now) + service;
        *free = done;
        Reply::Json {
            delay: done - now,
            status: 200,
            body: None,
        }
    }));
    let f = SuitesFile::parse(SUITES, "t.yaml").unwrap();
    let r = run_suite_blocking(
        &f.suite("front-queue").unwrap(),
        &TargetSpec::new("s", &server.url()),
        &RunOpts {
            profile: Profile::Full,
            threads: 1,
            ..RunOpts::default()
        },
        None,
    )
    .unwrap();
    let search = r.frontier_search.unwrap();
    let top = search.rungs.iter().find(|g| g.rate_per_s == 300.0).unwrap();
    assert_eq!(top.fails, [RungFail::Saturated], "{top:?}");
    assert!(top.p99_ms.unwrap() < 5000.0, "{top:?}");
    assert!(
        top.last_quarter_p50_ms.unwrap() > 2.0 * top.first_quarter_p50_ms.unwrap(),
        "{top:?}"
    );
    let bisect: Vec<f64> = search
        .rungs
        .iter()
        .filter(|g| g.search == RungSearch::Bisect)
        .map(|g| g.rate_per_s)
        .collect();
    assert_eq!(bisect.len(), 3, "{search:?}");
    assert_eq!(bisect[0], 173.0, "the geometric middle of 100 and 300");
    let fr = &r.frontier.unwrap()[0];
    let found = fr.max_rate_per_s.unwrap();
    assert!((170.0..250.0).contains(&found), "{fr:?}");
    let failed = fr.failed_rate_per_s.unwrap();
    assert!(failed > found && failed <= 300.0, "{fr:?}");
    assert!(fr.failed_because.contains(&RungFail::Saturated), "{fr:?}");
    // Every rung is a phase, and the rung lasted long enough for 100 samples (1 s).
    assert_eq!(r.phases.len(), search.rungs.len());
    assert!(search.rungs.iter().all(|g| g.duration_s == 1.0));
    assert!(!fr.under_sampled && fr.samples.unwrap() >= 100, "{fr:?}");
}

#[test]
fn frontier_stops_early_when_p99_exceeds_the_largest_bound() {
    let server = start(Arc::new(|_| Reply::ok(40)));
    let f = SuitesFile::parse(SUITES, "t.yaml").unwrap();
    let r = run_suite_blocking(
        &f.suite("front-tight").unwrap(),
        &TargetSpec::new("s", &server.url()),
        &RunOpts {
            profile: Profile::Quick,
            threads: 1,
            ..RunOpts::default()
        },
        None,
    )
    .unwrap();
    assert_eq!(r.phases.len(), 1, "stopped after the first step");
    assert!(r
        .frontier
        .unwrap()
        .iter()
        .all(|p| p.max_rate_per_s.is_none()));
}

#[test]
fn run_suite_from_a_runtime_reports_points() {
    let server = start(Arc::new(|_| Reply::ok(1)));
    let f = SuitesFile::parse(SUITES, "t.yaml").unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(1)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let (obs, mut rx) = ChannelObserver::new();
        let def = f.suite("ramp").unwrap();
        let r = run_suite(
            &def,
            &TargetSpec::new("s", &server.url()),
            &RunOpts {
                profile: Profile::Full,
                ..RunOpts::default()
            },
            Some(Arc::new(obs)),
        )
        .await
        .unwrap();
        assert_eq!(r.suite, "ramp");
        assert_eq!(r.profile, "full");
        assert!(!r.interrupted);
        let mut points = 0;
        let mut started = (0, 0);
        let mut finished = 0;
        while let Ok(ev) = rx.try_recv() {
            match ev {
                Event::Point { phase, .. } => {
                    assert_eq!(phase, "ramp");
                    points += 1;
                }
                Event::PhaseStarted { warmup, .. } => {
                    if warmup {
                        started.0 += 1
                    } else {
                        started.1 += 1
                    }
                }
                Event::PhaseFinished { .. } => finished += 1,
                Event::Note { .. } => {}
            }
        }
        assert_eq!(started, (1, 1));
        assert_eq!(finished, 1);
        assert_eq!(points, r.phases[0].timeseries.len());
        assert!(points >= 2);
    });
}

#[test]
fn cancel_stops_the_suite_and_keeps_what_was_measured() {
    let server = start(Arc::new(|_| Reply::ok(1)));
    let f = SuitesFile::parse(SUITES, "t.yaml").unwrap();
    let opts = RunOpts {
        profile: Profile::Full,
        ..RunOpts::default()
    };
    let cancel = opts.cancel.clone();
    std::thread::spawn(move || {
        std::thread::sleep(Duration::from_millis(1200));
        cancel.cancel();
    });
    let started = std::time::Instant::now();
    let r = run_suite_blocking(
        &f.suite("front").unwrap(),
        &TargetSpec::new("s", &server.url()),
        &opts,
        None,
    )
    .unwrap();
    assert!(r.interrupted);
    assert!(started.elapsed() < Duration::from_secs(3));
    assert!(r.phases.len() <= 1);
}

#[test]
fn iteration_suite_runs_exactly_its_iterations() {
    let server = start(Arc::new(|_| Reply::ok(0)));
    let f = SuitesFile::parse(SUITES, "t.yaml").unwrap();
    let r = run_suite_blocking(
        &f.suite("base").unwrap(),
        &TargetSpec::new("s", &server.url()),
        &RunOpts::default(),
        None,
    )
    .unwrap();
    assert_eq!(r.phases[0].requests.ok, 20);
    assert!(lab_warnings(&r).is_empty(), "{:?}", r.warnings);
}

#[test]
fn phases_suites_step_rates_and_stop_once_overwhelmed() {
    let f = SuitesFile::parse(SUITES, "t.yaml").unwrap();
    let def = f.suite("steps").unwrap();
    let opts = RunOpts {
        profile: Profile::Full,
        threads: 1,
        ..RunOpts::default()
    };
    let ok = start(Arc::new(|_| Reply::ok(1)));
    let r = run_suite_blocking(&def, &TargetSpec::new("s", &ok.url()), &opts, None).unwrap();
    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    assert_eq!(names, ["unary-20rps", "unary-40rps", "unary-80rps", "held"]);
    assert_eq!(r.phases[2].target_rate_per_s, Some(80.0));
    // The held levels are stages of one closed phase; the jump between them has none.
    let held: Vec<u64> = r.phases[3].stages.iter().map(|s| s.target_vus).collect();
    assert_eq!(held, [2, 4], "{:?}", r.phases[3].stages);
    assert_eq!(r.phases[3].stages[1].start_s, Some(1.0));
    // A phase carries the machine's CPU over it (/proc/stat: this is Linux); the 2 s one
    // surely has the 100 ticks that takes (the 500 ms steps are at the edge on 2 cores).
    let cpu = r.phases[3].host_cpu.expect("no host CPU over 2 s");
    assert!(
        cpu.busy_percent > 0.0 && cpu.busy_percent <= 100.0,
        "{cpu:?}"
    );
    assert!((0.0..=100.0).contains(&cpu.steal_percent), "{cpu:?}");

    let failing = start(Arc::new(|_| Reply::Json {
        delay: Duration::from_millis(1),
        status: 500,
        body: None,
    }));
    let r = run_suite_blocking(&def, &TargetSpec::new("s", &failing.url()), &opts, None).unwrap();
    let names: Vec<&str> = r.phases.iter().map(|p| p.name.as_str()).collect();
    // Every answer a 500: the first rate is the last; the closed phase still runs.
    assert_eq!(names, ["unary-20rps", "held"]);
}

/// A server that answers in 40 ms until `busy_for` has passed since it started, then at once.
fn busy_then_idle(busy_for: Duration) -> load_support::Server {
    let t0 = std::time::Instant::now();
    start(Arc::new(move |_| {
        if t0.elapsed() < busy_for {
            Reply::ok(40)
        } else {
            Reply::ok(0)
        }
    }))
}

/// Suite `base` against `url`, waiting for it to settle as `settle` says.
fn base_settled(url: &str, settle: Settle) -> orchestrator::load::SuiteResult {
    let f = SuitesFile::parse(SUITES, "t.yaml").unwrap();
    let opts = RunOpts {
        profile: Profile::Full,
        threads: 1,
        settle: Some(settle),
        ..RunOpts::default()
    };
    run_suite_blocking(
        &f.suite("base").unwrap(),
        &TargetSpec::new("s", url),
        &opts,
        None,
    )
    .unwrap()
}

/// The result's warnings but `host_steal`: the VM's neighbours are not the test's.
fn lab_warnings(r: &orchestrator::load::SuiteResult) -> Vec<&ResultWarning> {
    let steal = ResultWarningKind::HostSteal;
    r.warnings.iter().filter(|w| w.kind != steal).collect()
}

#[test]
fn a_phase_waits_for_the_target_to_settle_and_says_how_long() {
    let idle_1ms = Settle::new(Duration::from_millis(1));
    let server = busy_then_idle(Duration::from_millis(1500));
    let r = base_settled(&server.url(), idle_1ms);
    let w = lab_warnings(&r);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].kind, ResultWarningKind::SettleWait, "{w:?}");
    assert_eq!(w[0].phase.as_deref(), Some("base"));
    assert!(w[0].message.starts_with("waited 1."), "{w:?}");
    // Measured once idle: none of the 40 ms answers is in the phase.
    let p = &r.phases[0];
    assert!(p.latency_ms.max < 30.0, "{:?}", p.latency_ms);

    // Idle from the start: no warning.
    let idle = start(Arc::new(|_| Reply::ok(0)));
    let r = base_settled(&idle.url(), idle_1ms);
    assert!(lab_warnings(&r).is_empty(), "{:?}", r.warnings);
}

#[test]
fn a_target_still_busy_after_the_longest_wait_is_measured_and_flagged() {
    let server = start(Arc::new(|_| Reply::ok(40)));
    let settle = Settle {
        idle: Duration::from_millis(1),
        max_wait: Duration::from_millis(800),
    };
    let r = base_settled(&server.url(), settle);
    let w = lab_warnings(&r);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].kind, ResultWarningKind::Unsettled, "{w:?}");
    assert!(w[0].message.contains("last probe: 4"), "{w:?}");
    assert_eq!(r.phases[0].requests.ok, 20);
}

#[test]
fn a_wait_made_before_the_suite_counts_as_its_first_phases() {
    // Slow throughout: a phase that probed again would wait 800 ms and flag it unsettled.
    let server = start(Arc::new(|_| Reply::ok(40)));
    let f = SuitesFile::parse(SUITES, "t.yaml").unwrap();
    let opts = RunOpts {
        profile: Profile::Full,
        threads: 1,
        settle: Some(Settle {
            idle: Duration::from_millis(1),
            max_wait: Duration::from_millis(800),
        }),
        settled: Some(settle::Settled::Idle {
            waited: Duration::from_millis(2500),
            probes: 40,
        }),
        ..RunOpts::default()
    };
    let target = TargetSpec::new("s", &server.url());
    let r = run_suite_blocking(&f.suite("base").unwrap(), &target, &opts, None).unwrap();
    let w = lab_warnings(&r);
    assert_eq!(w.len(), 1, "{w:?}");
    assert_eq!(w[0].kind, ResultWarningKind::SettleWait, "{w:?}");
    assert!(
        w[0].message.starts_with("waited 2.5 s (40 probes)"),
        "{w:?}"
    );
}

#[test]
fn the_idle_latency_is_the_probes_median_and_a_failing_probe_is_an_error() {
    let server = start(Arc::new(|_| Reply::ok(3)));
    let probe = probe_request(&TargetSpec::new("s", &server.url())).unwrap();
    let idle = settle::idle_latency(&probe).unwrap();
    assert!(
        idle >= Duration::from_millis(3) && idle < Duration::from_millis(50),
        "{idle:?}"
    );

    let failing = start(Arc::new(|_| Reply::Json {
        delay: Duration::ZERO,
        status: 500,
        body: None,
    }));
    let probe = probe_request(&TargetSpec::new("s", &failing.url())).unwrap();
    let err = settle::idle_latency(&probe).unwrap_err();
    assert!(err.to_string().contains("6 of its probes failed"), "{err}");
}
