//! The live page in headless Chromium, without Docker: the load generator runs a real
//! suite against an in-process server, its events feed the live state as the lab's run
//! feeds it, and this process's own CPU and memory (from /proc, every second) stand in for
//! a container's. While the second target runs, the page must chart both targets with no
//! JavaScript error; once the run is over it must link to the report, which the server
//! serves. Fails when `chromium` is not installed (`.ci/run` installs it).
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "load_support/mod.rs"]
mod load_support;

#[path = "fixtures/chromium.rs"]
mod chromium;

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::sync::oneshot;

use load_support::{start, Reply};
use orchestrator::live::{Live, PlanItem};
use orchestrator::load::{ChannelObserver, Observer};
use orchestrator::rundir::StatsSample;
use orchestrator::suites::{run_suite, Profile, RunOpts, SuitesFile, TargetSpec};

const SUITES: &str = r#"
profiles:
  full:  {scale: 1.0, warmup: 300ms}
  quick: {scale: 1.0, warmup: 300ms}
defaults:
  request: {api: openai, model: m, max_tokens: 16}
  timeout: 5s
  max_in_flight: 1000
suites:
  - name: steady
    description: d
    closed: {vus: 4, duration: 6s}
"#;

/// CPU (percent of one core) and resident memory of this process, from /proc/self.
fn self_usage(last: &mut (f64, Instant)) -> (f64, u64) {
    let stat = std::fs::read_to_string("/proc/self/stat").unwrap();
    let after_comm = &stat[stat.rfind(')').unwrap() + 2..];
    let f: Vec<&str> = after_comm.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of stat (11 and 12 after the state field).
    let ticks: f64 = f[11].parse::<f64>().unwrap() + f[12].parse::<f64>().unwrap();
    // /proc reports clock ticks in USER_HZ, 100 on Linux whatever the kernel tick.
    let hz = 100.0;
    let secs = ticks / hz;
    let cpu = (secs - last.0) / last.1.elapsed().as_secs_f64() * 100.0;
    *last = (secs, Instant::now());
    let statm = std::fs::read_to_string("/proc/self/statm").unwrap();
    let rss_pages: u64 = statm.split_whitespace().nth(1).unwrap().parse().unwrap();
    (cpu.max(0.0), rss_pages * 4096)
}

/// Runs `suite` against `url` as `target`, feeding the live state like the lab does.
/// With `hold`, the suite is reported done only once it fires, so a slow browser start
/// on a loaded machine still finds the suite running.
async fn measure(live: &Live, target: &str, url: &str, hold: Option<oneshot::Receiver<()>>) {
    let file = SuitesFile::parse(SUITES, "live.yaml").unwrap();
    let def = file.suite("steady").unwrap();
    live.suite_started(
        target,
        "steady",
        def.estimated_duration(Profile::Quick).as_secs_f64(),
    );
    let (observer, mut rx) = ChannelObserver::new();
    let fed = live.clone();
    let events = tokio::spawn(async move {
        while let Some(ev) = rx.recv().await {
            fed.on_event(&ev);
        }
    });
    let sampled = live.clone();
    let sampler = tokio::spawn(async move {
        let t0 = Instant::now();
        let mut last = (0.0, Instant::now());
        self_usage(&mut last);
        loop {
            tokio::time::sleep(Duration::from_secs(1)).await;
            let (cpu_percent, memory_bytes) = self_usage(&mut last);
            sampled.container_sample(&StatsSample {
                t: t0.elapsed().as_secs_f64(),
                cpu_percent,
                memory_bytes,
                throttled_periods: 0,
                throttled_time_ns: 0,
                cpu_total_ns: None,
            });
        }
    });
    let observer: Arc<dyn Observer> = Arc::new(observer);
    let opts = RunOpts {
        profile: Profile::Quick,
        threads: 1,
        ..RunOpts::default()
    };
    let result = run_suite(&def, &TargetSpec::new(target, url), &opts, Some(observer))
        .await
        .unwrap();
    sampler.abort();
    let _ = events.await;
    assert!(result.phases[0].requests.ok > 0);
    if let Some(hold) = hold {
        let _ = hold.await;
    }
    let k = orchestrator::report::figures::KeyFigures {
        requests_per_s: Some(result.phases[0].throughput.requests_per_s),
        ..Default::default()
    };
    live.suite_done(target, "steady", &k);
}

fn attr<'a>(dom: &'a str, chart: &str) -> &'a str {
    let at = dom
        .find(&format!("data-chart=\"{chart}\""))
        .unwrap_or_else(|| panic!("no {chart} chart in\n{dom}"));
    &dom[at..at + dom[at..].find("</figure>").unwrap()]
}

fn points_of(figure: &str) -> u64 {
    let start = figure.find("data-points=\"").unwrap() + "data-points=\"".len();
    figure[start..start + figure[start..].find('"').unwrap()]
        .parse()
        .unwrap()
}

#[test]
fn live_page_charts_every_target_of_a_running_suite_and_links_the_report() {
    let server = start(Arc::new(|_| Reply::ok(2)));
    let tmp = std::env::temp_dir().join(format!("live-page-{}", std::process::id()));
    std::fs::create_dir_all(&tmp).unwrap();
    let rt = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    rt.block_on(async {
        let targets = vec!["direct".to_string(), "gateway".to_string()];
        let plan = targets
            .iter()
            .map(|t| PlanItem {
                target: t.clone(),
                suite: "steady".into(),
                estimate_s: 6.3,
            })
            .collect();
        let live = Live::new("live-test", "quick", &targets, plan);
        let page = orchestrator::live::serve_page("127.0.0.1:0".parse().unwrap(), live.clone())
            .await
            .unwrap();
        let url = format!("http://{}/", page.addr);
        measure(&live, "direct", &server.url(), None).await;

        // The second target runs while the browser looks.
        let (l, u) = (live.clone(), server.url());
        let (looked, hold) = oneshot::channel();
        let running = tokio::spawn(async move { measure(&l, "gateway", &u, Some(hold)).await });
        tokio::time::sleep(Duration::from_secs(4)).await;
        let (profile, page_url) = (tmp.join("during"), url.clone());
        let (status, dom, stderr) = tokio::task::spawn_blocking(move || {
            chromium::chromium(
                &profile,
                &[
                    "--dump-dom",
                    "--virtual-time-budget=3000",
                    "--enable-logging=stderr",
                    "--v=0",
                ],
                &page_url,
            )
        })
        .await
        .unwrap();
        assert!(status.success(), "{stderr}");
        assert!(
            dom.contains("data-js-errors=\"0\""),
            "JavaScript errors:\n{stderr}"
        );
        assert_eq!(chromium::console_errors(&stderr), Vec::<String>::new());
        assert!(dom.contains("suite <strong>steady</strong>"), "{dom}");
        assert!(
            dom.contains("target <strong>gateway</strong> (2/2)"),
            "{dom}"
        );
        for chart in ["rps", "latency", "errors", "cpu", "memory"] {
            let fig = attr(&dom, chart);
            assert!(fig.contains("<svg"), "{chart}: no chart drawn");
            // Both targets are drawn: the measured one beside the running one.
            assert!(
                fig.contains("#6b7280") && fig.contains("#2563eb"),
                "{chart}: {fig}"
            );
        }
        assert!(points_of(attr(&dom, "rps")) >= 6, "{}", attr(&dom, "rps"));
        assert!(points_of(attr(&dom, "cpu")) >= 3, "{}", attr(&dom, "cpu"));
        assert!(attr(&dom, "rps").matches("<polyline").count() >= 2);
        // The measured target's figures are in the table.
        assert!(
            dom.contains("<th scope=\"row\">direct</th><td>steady</td>"),
            "{dom}"
        );
        let _ = looked.send(());
        running.await.unwrap();

        // The run ends: the page links to the report, which the server serves.
        let report = tmp.join("report.html");
        std::fs::write(&report, "<html><body>the report</body></html>").unwrap();
        live.finished("complete", Some(&report));
        let (profile, page_url) = (tmp.join("after"), url.clone());
        let (status, dom, stderr) = tokio::task::spawn_blocking(move || {
            chromium::chromium(
                &profile,
                &["--dump-dom", "--virtual-time-budget=2000"],
                &page_url,
            )
        })
        .await
        .unwrap();
        assert!(status.success(), "{stderr}");
        assert!(
            dom.contains("id=\"report-link\" href=\"/report.html\""),
            "{dom}"
        );
        let served = reqwest::get(format!("{url}report.html")).await.unwrap();
        assert_eq!(served.status(), 200);
        assert!(served.text().await.unwrap().contains("the report"));
    });
    std::fs::remove_dir_all(&tmp).unwrap();
}
