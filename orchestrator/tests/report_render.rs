//! Reports rendered from a fixture run directory: the numbers in the tables, the ratios,
//! warnings next to the figures they affect, failures shown as failures, and errors that
//! name the broken file.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fixtures/gen.rs"]
mod gen;

use orchestrator::report::{self, format, render_run, ReportError};

/// The markdown table row whose first cell is `label` inside the section of `suite`.
fn md_row<'a>(md: &'a str, suite: &str, label: &str) -> Vec<&'a str> {
    let start = md
        .find(&format!("## Suite `{suite}`"))
        .expect("suite section");
    let section = &md[start..];
    let end = section[3..]
        .find("\n## ")
        .map(|i| i + 3)
        .unwrap_or(section.len());
    let line = section[..end]
        .lines()
        .find(|l| {
            l.strip_prefix("| ").is_some_and(|r| {
                r.split(" | ")
                    .next()
                    .is_some_and(|c| c == label || c.starts_with(&format!("{label} ⚠")))
            })
        })
        .unwrap_or_else(|| panic!("row {label} in {suite}"));
    line.trim_matches('|').split(" | ").map(str::trim).collect()
}

fn column(md: &str, suite: &str, name: &str) -> usize {
    md_row(md, suite, "metric")
        .iter()
        .position(|c| *c == name)
        .unwrap()
}

/// Renders the fixture run; the first value keeps the directory alive.
fn render_fixture(litellm_failed: bool) -> (gen::TempDir, std::path::PathBuf, String, String) {
    let results = gen::temp_dir("render");
    let dir = gen::write_run(&results, "run-1", litellm_failed, 1.0);
    let paths = render_run(&dir).unwrap();
    let md = std::fs::read_to_string(&paths.summary_md).unwrap();
    let html = std::fs::read_to_string(&paths.report_html).unwrap();
    (results, dir, md, html)
}

#[test]
fn tables_show_the_fixture_numbers_side_by_side() {
    let (_tmp, _dir, md, html) = render_fixture(false);
    let gw = gen::suite_result("gateway", "baseline", 1.0);
    let lt = gen::suite_result("litellm", "baseline", 1.0);
    let g = &gw.phases[0];
    let l = &lt.phases[0];

    let p99 = md_row(&md, "baseline", "p99");
    let gcol = column(&md, "baseline", "gateway");
    let lcol = column(&md, "baseline", "litellm");
    // Baseline repeats three times (×1, ×1.04, ×0.97): the median (repeat 1's figure)
    // with its interval over the repeats, and the caption says so.
    assert_eq!(
        p99[gcol],
        format!("{} ± 21.4 µs", format::latency_ms(g.latency_ms.p99))
    );
    assert_eq!(p99[gcol], "611 µs ± 21.4 µs");
    assert_eq!(p99[lcol], "410 ms ± 14.3 ms");
    assert!(md.contains("gateway: phase `steady` (10 VUs, 10.0 s, × 3 repeats)"));
    assert!(
        md.contains("- Over repeats (rounds interleaving the targets): each figure is the median")
    );
    assert!(md.contains("| repeats | baseline × 3, in rounds interleaving the targets"));
    // Other suites ran once; their seconds are steady: zero-width intervals.
    assert_eq!(md_row(&md, "streaming", "p99")[gcol], "24.4 ms ± 0 µs");

    // Ratios: gateway vs litellm throughput, latency added over direct in µs.
    let rps = md_row(&md, "baseline", "requests/s");
    assert_eq!(rps[gcol], "18,000 ± 625");
    let vs = column(&md, "baseline", "gateway vs litellm");
    assert_eq!(
        rps[vs],
        format::ratio(g.throughput.requests_per_s / l.throughput.requests_per_s)
    );
    assert_eq!(rps[vs], "47.4x");
    let p50 = md_row(&md, "baseline", "p50");
    let vs_direct = column(&md, "baseline", "gateway vs direct");
    assert_eq!(p50[vs_direct], "+42 µs"); // 0.252 ms - 0.210 ms

    // Errors with their share, memory from the stats file, streaming rows only where streamed.
    let errors = md_row(&md, "baseline", "errors");
    // Summed over the three repeats (360 in repeat 1).
    assert_eq!(errors[gcol], "1,077 (0.200 %)");
    let mem = md_row(&md, "baseline", "peak memory");
    assert!(mem[gcol].starts_with("22.0 MiB"), "{mem:?}");
    assert!(md_row(&md, "streaming", "TTFT p50")[gcol].contains(" ms ± "));
    assert!(!md
        [md.find("## Suite `baseline`").unwrap()..md.find("## Suite `throughput`").unwrap()]
        .contains("| TTFT"));
    // The ramp's busiest second; no such row where the load was steady.
    assert_eq!(
        md_row(&md, "throughput", "peak requests/s (1 s)")[gcol],
        "54,000"
    );
    assert!(!md[..md.find("## Suite `throughput`").unwrap()].contains("peak requests/s"));
    // Frontier rows per p99 bound; a bound nobody met shows as missing, not 0.
    let f10 = md_row(&md, "frontier", "max rate @ p99 ≤ 10.0 ms");
    assert_eq!(f10[gcol], "18,000");
    // A ramp's interval comes from the noise around its stages, and the table says how.
    assert_eq!(
        md_row(&md, "throughput", "requests/s")[gcol],
        "27,000 ± 279"
    );
    assert!(md.contains("Ramps: ± is half a 95 % interval from a stratified bootstrap"));
    assert!(!md.contains("(a ramp"));
    assert_eq!(f10[lcol], format::MISSING);

    // Headline at the top.
    let head = &md[..md.find("## How this run was made").unwrap()];
    assert!(
        head.contains("gateway: 47.4x the throughput of litellm in `throughput` (27,000 ± 279 vs 570 ± 5.89 req/s), p99 1.22 ms ± 11.5 µs vs 820 ms ± 7.72 ms"),
        "{head}"
    );
    assert!(
        head.contains(
            "gateway: adds 42 µs ± 4 µs p50, 91 µs ± 7 µs p99 over direct (`overhead`, paired; says 17 µs p50)"
        ),
        "{head}"
    );
    assert!(
        head.contains("gateway: 189x the rate litellm sustains with p99 ≤ 1.00 s in `frontier` (18,000 vs 95.0 req/s)"),
        "{head}"
    );
    assert!(!head.contains("in `overhead` ("), "{head}");
    let gcol_o = column(&md, "overhead", "gateway");
    assert_eq!(
        md_row(&md, "overhead", "added p50 over direct")[gcol_o],
        "+42 µs ± 4 µs"
    );
    assert_eq!(
        md_row(&md, "overhead", "added p99 over direct")[column(&md, "overhead", "litellm")],
        "+409 ms ± 20.5 ms"
    );
    // The upstream against itself: inside the instrument's resolution.
    assert_eq!(
        md_row(&md, "overhead", "added p50 over direct")[column(&md, "overhead", "direct")],
        "+0 µs ± 2 µs below resolution"
    );
    assert!(md.contains("Added latency: quantiles of paired differences"));
    // The ramp per stage: where each target stops scaling.
    let stage5 = md_row(&md, "throughput", "stage 5 (to 50 VUs)");
    assert_eq!(stage5[gcol], "54,000 req/s · p99 1.71 ms");
    assert!(md.contains("Per stage of the ramp"));
    // CPU time per request from the containers' cumulative counters over the phase.
    let cost = md_row(
        &md,
        "baseline",
        "CPU per request (per stream when streaming)",
    );
    assert_eq!(cost[gcol], "51 µs");
    assert_eq!(cost[lcol], "2.76 ms");
    // What each target says of itself, beside; the mock says nothing.
    let claimed = md_row(&md, "overhead", "claimed overhead p50 (own header)");
    assert_eq!(claimed[gcol_o], "+17 µs");
    assert_eq!(claimed[column(&md, "overhead", "direct")], format::MISSING);
    assert!(
        !md[md.find("## Suite `baseline`").unwrap()..md.find("## Suite `overhead`").unwrap()]
            .contains("added p50")
    );

    // The same cells in the HTML.
    assert!(html.contains("<td class=\"ok\">611 µs ± 0 µs</td>"));
    assert!(html.contains("<td class=\"ratio\">47.4x</td>"));
    assert!(html.contains("Test CPU @ 2.0GHz, 2 cores, 24.0 GiB RAM"));
}

#[test]
fn thresholds_show_pass_and_fail_per_target() {
    let (_tmp, _dir, md, html) = render_fixture(false);
    // Columns of the thresholds table: the targets in run order, no ratios.
    let head = md_row(&md, "baseline", "threshold");
    assert_eq!(head, ["threshold", "direct", "nginx", "gateway", "litellm"]);
    let mem = md_row(&md, "baseline", "peak_memory < 20.0 MiB");
    assert_eq!(
        mem[1..],
        ["not measured", "✓ 4.0 MiB", "✓ 12.0 MiB", "✗ 310 MiB"]
    );
    let verdict = md_row(&md, "baseline", "verdict");
    assert_eq!(
        verdict[1..],
        ["not judged", "✓ pass", "✓ pass", "✗ fail (1 of 1)"]
    );
    // Added latency is not judged on direct, the mock itself.
    let added = md_row(&md, "overhead", "added_p99 < +5.00 ms");
    assert_eq!(added[1..], ["n/a", "✓ +40 µs", "✓ +91 µs", "✗ +409 ms"]);
    // Suites without thresholds have no such table.
    let streaming =
        &md[md.find("## Suite `streaming`").unwrap()..md.find("## Suite `overhead`").unwrap()];
    assert!(!streaming.contains("Thresholds"), "{streaming}");
    // One headline line with every target's verdict and what failed.
    let top = &md[..md.find("## How this run was made").unwrap()];
    assert!(
        top.contains("- thresholds: nginx ✓ 2 of 2 passed; gateway ✓ 2 of 2 passed; litellm ✗ 2 of 2 failed (`baseline` peak_memory 310 MiB, `overhead` added_p99 +409 ms)"),
        "{top}"
    );
    // The HTML: the same table, failures styled as failures.
    assert!(html.contains("<table class=\"thresholds\">"));
    assert!(html.contains("<td class=\"ok\">✓ pass</td>"));
    assert!(html.contains("<td class=\"failed\">✗ 310 MiB</td>"));
    assert!(html.contains("<td class=\"failed\">✗ fail (1 of 1)</td>"));
}

#[test]
fn warnings_sit_next_to_the_numbers_they_affect() {
    let (_tmp, _dir, md, html) = render_fixture(true);
    // ⚠1 cadvisor (run-wide): on the CPU and memory row labels of every suite table.
    for suite in gen::SUITES {
        assert!(
            md_row(&md, suite, "CPU (mean)")[0].ends_with("⚠1"),
            "{suite}"
        );
        assert!(md_row(&md, suite, "peak memory")[0].ends_with("⚠1"));
    }
    // ⚠2 litellm failed in streaming: its status cell there, with the reason, not zeros.
    let lcol = column(&md, "streaming", "litellm");
    let status = md_row(&md, "streaming", "status");
    assert_eq!(
        status[lcol],
        "✗ failed: container was OOM-killed (exit code 137) ⚠2"
    );
    assert_eq!(
        md_row(&md, "streaming", "requests/s")[lcol],
        format::MISSING
    );
    assert_eq!(md_row(&md, "streaming", "p99")[lcol], format::MISSING);
    let vs = column(&md, "streaming", "gateway vs litellm");
    assert_eq!(md_row(&md, "streaming", "requests/s")[vs], format::MISSING);
    // ⚠3 direct's load generator was the bottleneck in throughput: on its throughput and
    // latency cells, and explained under that table.
    let dcol = column(&md, "throughput", "direct");
    assert!(md_row(&md, "throughput", "requests/s")[dcol].ends_with("⚠3"));
    assert!(md_row(&md, "throughput", "p99")[dcol].ends_with("⚠3"));
    assert!(!md_row(&md, "baseline", "requests/s")[dcol].contains('⚠'));
    let tp =
        &md[md.find("## Suite `throughput`").unwrap()..md.find("## Suite `streaming`").unwrap()];
    assert!(tp.contains("> ⚠3 **direct · throughput** `load_generator_bound`: phase `ramp`: the load generator saturated"), "{tp}");
    // ⚠4 is about gateway's first frontier step, not the step the table shows: on its status
    // cell and on that step's row of the phases table, not on the figures of another step.
    let gcol = column(&md, "frontier", "gateway");
    assert_eq!(md_row(&md, "frontier", "status")[gcol], "ok ⚠4");
    assert_eq!(md_row(&md, "frontier", "requests/s")[gcol], "18,000 ± 0");
    // The step's errors are in its cell (the phases table shows errors per level).
    let step = &md_row(&md, "frontier", "rate-4500")[gcol];
    assert!(
        step.contains("4,500 req/s · p99 1.22 ms · ") && step.ends_with(" errors ⚠4"),
        "{step}"
    );
    // Direct has no stats file: missing, never 0.
    assert_eq!(md_row(&md, "baseline", "CPU (mean)")[dcol], format::MISSING);
    // HTML: the marker in the same cell.
    assert!(html.contains(
        "✗ failed: container was OOM-killed (exit code 137)<span class=\"warn\">⚠2</span>"
    ));
    assert!(md.contains("litellm failed: container was OOM-killed"));
}

#[test]
fn all_results_has_every_target_and_suite() {
    let (_tmp, dir, _, _) = render_fixture(true);
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.join("all_results.json")).unwrap())
            .unwrap();
    let all = all.as_array().unwrap();
    assert_eq!(all.len(), 20);
    let gw = all
        .iter()
        .find(|r| r["target_id"] == "gateway/baseline")
        .unwrap();
    assert_eq!(gw["metrics"]["p99_ms"], 0.611);
    assert_eq!(gw["metrics"]["status"], "ok");
    assert_eq!(gw["timestamp"], "2026-11-24T09:00:30+00:00");
    let failed = all
        .iter()
        .find(|r| r["target_id"] == "litellm/streaming")
        .unwrap();
    assert_eq!(failed["metrics"]["status"], "failed");
    assert_eq!(failed["metrics"]["reason"], "container was OOM-killed");
    assert!(failed["metrics"]["p99_ms"].is_null());
}

#[test]
fn a_broken_results_file_is_named_with_field_line_and_column() {
    let results = gen::temp_dir("broken");
    let dir = gen::write_run(&results, "run-1", false, 1.0);
    let raw = dir.join("raw/gateway-baseline.json");
    let text = std::fs::read_to_string(&raw).unwrap();
    let broken = text.replacen("\"p99\": 0.611", "\"p99\": \"fast\"", 1);
    assert_ne!(broken, text);
    std::fs::write(&raw, broken).unwrap();
    let err = render_run(&dir).unwrap_err();
    let msg = err.to_string();
    assert!(matches!(err, ReportError::Parse { .. }), "{msg}");
    assert!(msg.contains("raw/gateway-baseline.json"), "{msg}");
    assert!(msg.contains("phases[0].latency_ms.p99"), "{msg}");
    assert!(msg.contains("line ") && msg.contains("column "), "{msg}");

    // Truncated JSON: still the file and a position.
    std::fs::write(&raw, &text[..text.len() / 2]).unwrap();
    let msg = render_run(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("raw/gateway-baseline.json") && msg.contains("EOF"),
        "{msg}"
    );

    // An unknown field in a stats file.
    std::fs::write(&raw, &text).unwrap();
    let stats = dir.join("stats/litellm-throughput.json");
    let s = std::fs::read_to_string(&stats)
        .unwrap()
        .replacen("\"cpu_percent\"", "\"cpu_pct\"", 1);
    std::fs::write(&stats, s).unwrap();
    let msg = render_run(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("stats/litellm-throughput.json") && msg.contains("cpu_pct"),
        "{msg}"
    );
}

#[test]
fn a_missing_results_file_is_named_in_its_cell() {
    let results = gen::temp_dir("missing");
    let dir = gen::write_run(&results, "run-1", false, 1.0);
    std::fs::remove_file(dir.join("raw/gateway-throughput.json")).unwrap();
    let paths = render_run(&dir).unwrap();
    let md = std::fs::read_to_string(paths.summary_md).unwrap();
    let gcol = column(&md, "throughput", "gateway");
    assert_eq!(
        md_row(&md, "throughput", "status")[gcol],
        "no result: raw/gateway-throughput.json missing"
    );
    assert_eq!(md_row(&md, "throughput", "p99")[gcol], format::MISSING);

    std::fs::remove_file(dir.join("manifest.json")).unwrap();
    let msg = render_run(&dir).unwrap_err().to_string();
    assert!(
        msg.contains("manifest.json") && msg.contains("cannot read"),
        "{msg}"
    );
}

#[test]
fn templates_fail_loudly_on_a_missing_field() {
    let env = report::environment().unwrap();
    let err = report::render(
        &env,
        report::SUMMARY_TEMPLATE,
        &serde_json::json!({"run_id": "x"}),
    )
    .unwrap_err();
    assert!(err.to_string().contains("summary.md.j2"), "{err}");
    assert!(err.to_string().contains("undefined"), "{err}");
}

#[test]
fn report_command_renders_the_latest_run() {
    let results = gen::temp_dir("cli");
    gen::write_run(&results, "run-1", false, 1.0);
    std::os::unix::fs::symlink("run-1", results.join("latest")).unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["report", "--results"])
        .arg(&results)
        .output()
        .unwrap();
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(results.join("run-1/summary.md").exists());
    assert!(results.join("run-1/report.html").exists());
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["report", "nope", "--results"])
        .arg(&results)
        .output()
        .unwrap();
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("nope/manifest.json"));
}

/// `tests/fixtures/sample-run` is the generator's output, committed so a report can be
/// rendered by hand (`orchestrator report sample-run --results orchestrator/tests/fixtures`).
/// It must deserialize and match the generator; `UPDATE_FIXTURES=1` rewrites it.
#[test]
fn committed_sample_run_matches_the_generator() {
    let committed = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/fixtures");
    let fresh = gen::temp_dir("sample");
    let dir = gen::write_run(&fresh, "sample-run", true, 1.0);
    let mut files = Vec::new();
    for sub in ["", "raw", "stats"] {
        for f in std::fs::read_dir(dir.join(sub)).unwrap() {
            let p = f.unwrap().path();
            if p.extension().is_some_and(|e| e == "json") {
                files.push(p.strip_prefix(&dir).unwrap().to_path_buf());
            }
        }
    }
    // Baseline repeats three times: two more raw files per target, stats for all but direct.
    assert_eq!(files.len(), 1 + (18 + 2 * 4) + (13 + 2 * 3));
    for rel in files {
        let want = std::fs::read_to_string(dir.join(&rel)).unwrap();
        let path = committed.join("sample-run").join(&rel);
        if std::env::var_os("UPDATE_FIXTURES").is_some() {
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(&path, &want).unwrap();
            continue;
        }
        let have = std::fs::read_to_string(&path)
            .unwrap_or_else(|e| panic!("{}: {e} (UPDATE_FIXTURES=1 writes it)", path.display()));
        let parse = |s: &str| serde_json::from_str::<serde_json::Value>(s).unwrap();
        assert_eq!(
            parse(&have),
            parse(&want),
            "{} is stale (UPDATE_FIXTURES=1 rewrites it)",
            path.display()
        );
    }
    // And it reads as a run.
    let run = orchestrator::report::RunData::read(&committed.join("sample-run")).unwrap();
    assert_eq!(
        run.entries.iter().filter(|e| e.result.is_some()).count(),
        18
    );
}

/// A warning the lab raised (manifest) about one target and suite marks that target's
/// cells in that suite and the headline line built from them.
#[test]
fn a_manifest_warning_marks_its_cells_and_the_headline() {
    let results = gen::temp_dir("manifest-warning");
    let dir = gen::write_run(&results, "run-1", false, 1.0);
    let path = dir.join("manifest.json");
    let mut m: orchestrator::rundir::Manifest =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    m.warnings.push(orchestrator::rundir::Warning {
        kind: orchestrator::rundir::WarningKind::LoadGeneratorBound,
        target: Some("gateway".into()),
        suite: Some("throughput".into()),
        message: "generator at 99% CPU <b>".into(),
    });
    std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
    let paths = render_run(&dir).unwrap();
    let md = std::fs::read_to_string(&paths.summary_md).unwrap();
    let html = std::fs::read_to_string(&paths.report_html).unwrap();
    assert!(html.contains("generator at 99% CPU &lt;b&gt;") && !html.contains("CPU <b>"));
    // ⚠1 cadvisor, ⚠2 this one, then the results' own.
    let gcol = column(&md, "throughput", "gateway");
    assert_eq!(
        md_row(&md, "throughput", "requests/s")[gcol],
        "27,000 ± 279 ⚠2"
    );
    assert_eq!(
        md_row(&md, "throughput", "p99")[gcol],
        "1.22 ms ± 11.5 µs ⚠2"
    );
    assert_eq!(md_row(&md, "baseline", "requests/s")[gcol], "18,000 ± 625");
    let head = &md[..md.find("## How this run was made").unwrap()];
    assert!(
        head.contains("in `throughput` (27,000 ± 279 vs 570 ± 5.89 req/s), p99 1.22 ms ± 11.5 µs vs 820 ms ± 7.72 ms ⚠2\n"),
        "{head}"
    );
    assert!(head.contains(
        "in `baseline` (18,000 ± 625 vs 380 ± 13.2 req/s), p99 611 µs ± 21.4 µs vs 410 ms ± 14.3 ms\n"
    ));
}

/// A warning about a whole suite (no target) marks the headline line once, not once per
/// target compared in it.
#[test]
fn a_suite_wide_warning_marks_the_headline_once() {
    let results = gen::temp_dir("suite-warning");
    let dir = gen::write_run(&results, "run-1", false, 1.0);
    let path = dir.join("manifest.json");
    let mut m: orchestrator::rundir::Manifest =
        serde_json::from_str(&std::fs::read_to_string(&path).unwrap()).unwrap();
    m.warnings.push(orchestrator::rundir::Warning {
        kind: orchestrator::rundir::WarningKind::NoisyMachine,
        target: None,
        suite: Some("throughput".into()),
        message: "the generator shares the mock's core".into(),
    });
    std::fs::write(&path, serde_json::to_string(&m).unwrap()).unwrap();
    let md = std::fs::read_to_string(render_run(&dir).unwrap().summary_md).unwrap();
    let head = &md[..md.find("## How this run was made").unwrap()];
    let line = head
        .lines()
        .find(|l| l.contains("in `throughput`"))
        .unwrap_or_else(|| panic!("no throughput headline in {head}"));
    assert!(line.ends_with(" ⚠2"), "{line}");
    assert_eq!(line.matches("⚠2").count(), 1, "{line}");
}

/// Noisy seconds give intervals in both reports, `unstable` past a 5 % CV, the method under
/// the table, and the intervals in `all_results.json` for `compare`.
#[test]
fn figures_carry_their_interval() {
    let results = gen::temp_dir("noise");
    let dir = gen::write_noisy_run(&results, "run-1", 1.0, 0.4, 1);
    let paths = render_run(&dir).unwrap();
    let md = std::fs::read_to_string(&paths.summary_md).unwrap();
    let html = std::fs::read_to_string(&paths.report_html).unwrap();
    let gcol = column(&md, "baseline", "gateway");
    let cell = md_row(&md, "baseline", "requests/s")[gcol].to_string();
    let (value, rest) = cell.split_once(" ± ").unwrap();
    assert_eq!(value, "18,000");
    let half: f64 = rest
        .trim_end_matches(" unstable")
        .replace(',', "")
        .parse()
        .unwrap();
    assert!((200.0..4000.0).contains(&half), "{cell}");
    assert!(md_row(&md, "baseline", "p99")[gcol].ends_with(" unstable"));
    assert!(md.contains("- ± is half the width of a 95 % interval from a moving-block bootstrap"));
    assert!(
        html.contains(&format!("<td class=\"ok\">{cell}</td>")),
        "{cell}"
    );
    assert!(html.contains("<ul class=\"noise\">"));
    let all: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&paths.all_results).unwrap()).unwrap();
    let gw = all
        .as_array()
        .unwrap()
        .iter()
        .find(|r| r["target_id"] == "gateway/baseline")
        .unwrap();
    let n = &gw["metrics"]["noise"]["figures"]["p99"];
    assert_eq!(n["method"], "block_bootstrap");
    assert_eq!(
        (n["samples"].as_u64(), n["block"].as_u64()),
        (Some(10), Some(3))
    );
    assert!(n["lo"].as_f64().unwrap() < 0.611 && 0.611 < n["hi"].as_f64().unwrap());
}

/// The section of the report between `## Against the floor` and the next `## `.
fn floor_section(md: &str) -> &str {
    let start = md.find("## Against the floor").expect("floor section");
    let rest = &md[start..];
    let end = rest[3..].find("\n## ").map_or(rest.len(), |i| i + 3);
    &rest[..end]
}

#[test]
fn each_gateway_is_put_against_the_nginx_floor() {
    let (_tmp, _dir, md, html) = render_fixture(false);
    let floor = floor_section(&md);
    let rows: Vec<Vec<&str>> = floor
        .lines()
        .filter(|l| l.starts_with("| "))
        .map(|l| l.trim_matches('|').split(" | ").map(str::trim).collect())
        .collect();
    assert_eq!(
        rows[0],
        [
            "gateway",
            "requests/s × nginx (throughput)",
            "requests/s × nginx (baseline)",
            "added p50 × nginx (overhead)",
            "added p99 × nginx (overhead)"
        ],
        "{floor}"
    );
    // Neither direct nor nginx is a row; gateways in run order.
    let names: Vec<&str> = rows[1..].iter().map(|r| r[0]).collect();
    assert_eq!(names, ["gateway", "litellm"], "{floor}");
    let (g, n) = (gen::base("gateway"), gen::base("nginx"));
    // Baseline: 18,000 against 20,000 requests/s.
    assert_eq!(
        rows[1][2],
        format!("{} (18,000 vs 20,000)", format::ratio(g.0 / n.0))
    );
    assert_eq!(rows[1][2], "0.900x (18,000 vs 20,000)");
    // Throughput (the ramp at 1.5x the base rate).
    assert_eq!(rows[1][1], "0.900x (27,000 vs 30,000)");
    // Added over direct: gateway +42 µs p50, +91 µs p99; nginx +20 µs, +40 µs.
    assert_eq!(rows[1][3], "2.10x (+42 µs vs +20 µs)");
    assert_eq!(rows[1][4], "2.27x (+91 µs vs +40 µs)");
    assert_eq!(rows[2][4], "10237x (+409 ms vs +40 µs)");
    assert!(floor.contains("as a multiple of nginx's"), "{floor}");
    // The HTML has the same section and figures.
    let sec = &html[html.find("id=\"floor\"").unwrap()..];
    let sec = &sec[..sec.find("</section>").unwrap()];
    assert!(
        sec.contains("<td class=\"ratio\">2.10x (+42 µs vs +20 µs)</td>"),
        "{sec}"
    );
    // Per-suite tables compare the first gateway with the others and every target with
    // direct, the floor included; never the floor with a gateway.
    let head = md_row(&md, "baseline", "metric");
    assert_eq!(
        head[5..],
        [
            "gateway vs litellm",
            "nginx vs direct",
            "gateway vs direct",
            "litellm vs direct"
        ]
    );
    let top = &md[..md.find("## How this run was made").unwrap()];
    assert!(top.contains(
        "nginx: adds 20 µs ± 3 µs p50, 40 µs ± 4 µs p99 over direct (`overhead`, paired)\n"
    ));
    assert!(
        top.contains("- gateway against the floor: 0.900x nginx's requests/s in `throughput`, 2.27x the p99 nginx adds (`overhead`)"),
        "{top}"
    );
    assert!(top.contains("- litellm against the floor: "), "{top}");
}

#[test]
fn without_nginx_the_floor_section_says_why() {
    let results = gen::temp_dir("nofloor");
    let dir = gen::write_run(&results, "run-1", false, 1.0);
    let manifest = dir.join("manifest.json");
    let mut m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(&manifest).unwrap()).unwrap();
    m["targets"]
        .as_array_mut()
        .unwrap()
        .retain(|t| t["name"] != "nginx");
    std::fs::write(&manifest, serde_json::to_string(&m).unwrap()).unwrap();
    let paths = render_run(&dir).unwrap();
    let md = std::fs::read_to_string(&paths.summary_md).unwrap();
    let floor = floor_section(&md);
    assert!(
        floor.contains("Omitted: no `nginx` target in this run"),
        "{floor}"
    );
    assert!(!floor.contains("| gateway |"), "{floor}");
    assert!(
        !md.contains("against the floor:"),
        "no floor headline without nginx"
    );
    let html = std::fs::read_to_string(&paths.report_html).unwrap();
    let sec = &html[html.find("id=\"floor\"").unwrap()..];
    assert!(!sec[..sec.find("</section>").unwrap()].contains("<table"));
}

#[test]
fn the_frontier_search_shows_samples_misses_and_rough_rungs() {
    let (_keep, _dir, md, html) = render_fixture(false);
    // Columns of the search table are the targets, in the order of the suite table.
    let lcol = column(&md, "frontier", "litellm");
    let gcol = column(&md, "frontier", "gateway");
    // The rate found, its rung's p99 and samples, the rate that missed above it and why.
    let b10 = md_row(&md, "frontier", "p99 ≤ 10.0 ms");
    assert_eq!(
        b10[gcol],
        "18,000 req/s · p99 3.05 ms · 179,640 samples · 36,000 missed (saturated)"
    );
    // litellm's rungs rest on under 1,000 samples: said in the search table, in the suite
    // table's frontier row and in the phases table.
    let b1s = md_row(&md, "frontier", "p99 ≤ 1.00 s");
    assert!(
        b1s[lcol].starts_with("95.0 req/s · p99 ")
            && b1s[lcol].ends_with(" · 949 samples (under 1,000: rough) · 190 missed (p99)"),
        "{}",
        b1s[lcol]
    );
    assert_eq!(
        md_row(&md, "frontier", "max rate @ p99 ≤ 1.00 s")[lcol],
        "95.0 (949 samples)"
    );
    assert_eq!(
        md_row(&md, "frontier", "rungs under 1,000 samples")[lcol],
        "1 of 4 (95.0 req/s)"
    );
    assert_eq!(
        md_row(&md, "frontier", "rungs under 1,000 samples")[gcol],
        "none"
    );
    assert!(md_row(&md, "frontier", "rate-95")[lcol].ends_with(" · 949 samples"));
    assert!(md_row(&md, "frontier", "rate-760")[lcol].ends_with(" · ✗ saturated"));
    assert!(md_row(
        &md,
        "frontier",
        "saturated (median of first → last quarter)"
    )[gcol]
        .starts_with("36,000 (p50 "));
    assert!(html.contains("<h3>Frontier search</h3>"));
    // Every target's frontier on the one chart.
    let chart = &html[html.find("frontier: highest rate sustained").unwrap()..];
    let chart = &chart[..chart.find("</svg>").unwrap()];
    for t in ["direct", "nginx", "gateway", "litellm"] {
        assert!(
            chart.contains(&format!(">{t}<")),
            "{t} in the frontier chart"
        );
    }
}

#[test]
fn the_feature_tax_puts_each_governed_variant_beside_its_plain_twin() {
    let results = gen::temp_dir("tax");
    let dir = gen::write_governed_run(&results, "run-tax", 1.25);
    let paths = render_run(&dir).unwrap();
    let md = std::fs::read_to_string(&paths.summary_md).unwrap();
    let html = std::fs::read_to_string(&paths.report_html).unwrap();
    let start = md.find("## Feature tax").expect("feature tax section");
    let section = &md[start..];
    let section = &section[..section[3..].find("\n## ").map_or(section.len(), |i| i + 3)];
    let row = section
        .lines()
        .find(|l| l.starts_with("| gateway-governed vs gateway |"))
        .unwrap_or_else(|| panic!("{section}"));
    // Throughput divided by 1.25: 0.8x of the plain twin's requests/s.
    assert!(row.contains("0.800x (-20.0 %)"), "{row}");
    let cells: Vec<&str> = row.trim_matches('|').split(" | ").map(str::trim).collect();
    assert!(cells[4].starts_with('+'), "tax on added p50: {row}");
    assert!(section.contains("- gateway-governed (governed `gateway`): named key with rpm/tpm."));
    assert!(md.contains("feature tax of gateway-governed: 0.800x gateway's requests/s"));
    assert!(html.contains(r#"id="feature-tax""#), "html section");
    assert!(html.contains("gateway-governed vs gateway"), "html row");
    // A run without governed variants has no such section.
    let (_tmp, _dir, md, html) = render_fixture(false);
    assert!(!md.contains("Feature tax") && !html.contains("feature-tax"));
}
