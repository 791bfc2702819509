//! `orchestrator compare`: the change per figure as markdown, exit code 2 on a regression
//! beyond the threshold, 0 within it.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fixtures/gen.rs"]
mod gen;

use std::process::{Command, Output};

fn compare(results: &std::path::Path, extra: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["compare", "run-a", "run-b", "--results"])
        .arg(results)
        .args(extra)
        .output()
        .unwrap()
}

#[test]
fn a_regression_beyond_the_threshold_exits_2_and_is_listed() {
    let results = gen::temp_dir("compare-bad");
    gen::write_run(&results, "run-a", false, 1.0);
    // Gateway 30 % slower: latencies x1.3, throughput / 1.3 (-23 %).
    gen::write_run(&results, "run-b", false, 1.3);
    let out_file = results.join("cmp.md");
    let out = compare(
        &results,
        &["--threshold", "10", "--out", out_file.to_str().unwrap()],
    );
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{stdout}\n{stderr}");
    // Baseline has three repeats (±4 %) in both runs: the permutation test decides.
    assert!(
        stdout.contains("- ⛔ gateway/baseline: p99 rose 611 µs ± 21.4 µs → 794 µs ± 27.8 µs (+30.0 %), beyond 10.0 % (permutation p = 0.050)"),
        "{stdout}"
    );
    // The other suites' windows are steady: zero-width intervals, apart after the change.
    assert!(
        stdout.contains("- ⛔ gateway/streaming: p99 rose 24.4 ms ± 0 µs → 31.8 ms ± 0 µs (+30.0 %), beyond 10.0 % (95 % intervals apart)"),
        "{stdout}"
    );
    // The ramp's interval comes from the noise around its stages (±1 %): apart.
    assert!(
        stdout.contains("- ⛔ gateway/throughput: ok requests/s fell 26,946 ± 278 → 20,728 ± 214 (-23.1 %), beyond 10.0 % (95 % intervals apart)"),
        "{stdout}"
    );
    assert!(!stdout.contains("litellm/baseline:"), "{stdout}");
    assert!(stderr.contains("regression(s) beyond 10 %"), "{stderr}");
    // The table cell carries the change and the marker.
    let row = stdout
        .lines()
        .skip_while(|l| !l.starts_with("## Suite `baseline`"))
        .find(|l| l.starts_with("| p99 |"))
        .unwrap();
    assert_eq!(
        row,
        "| p99 | 520 µs ± 18.2 µs → 520 µs ± 18.2 µs (±0 %) | 560 µs ± 19.6 µs → 560 µs ± 19.6 µs (±0 %) | 611 µs ± 21.4 µs → 794 µs ± 27.8 µs (+30.0 %) ⛔ | 410 ms ± 14.3 ms → 410 ms ± 14.3 ms (±0 %) |"
    );
    assert_eq!(std::fs::read_to_string(&out_file).unwrap(), stdout);

    // The same runs with a looser threshold pass.
    let out = compare(&results, &["--threshold", "35"]);
    assert_eq!(
        out.status.code(),
        Some(0),
        "{}",
        String::from_utf8_lossy(&out.stdout)
    );
}

#[test]
fn a_change_within_the_threshold_exits_0() {
    let results = gen::temp_dir("compare-ok");
    gen::write_run(&results, "run-a", false, 1.0);
    gen::write_run(&results, "run-b", false, 1.05);
    let out = compare(&results, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("No regression beyond the threshold."));
    assert!(
        stdout.contains("- `run-a`: profile quick, commit abc1234"),
        "{stdout}"
    );
    assert!(!stdout.contains("differs"), "{stdout}");
    assert!(!stdout.contains("— → —"), "{stdout}");
    assert!(
        stdout.contains("611 µs ± 0 µs → 642 µs ± 0 µs (+5.00 %)"),
        "{stdout}"
    );
}

#[test]
fn a_target_lost_in_run_b_is_a_regression() {
    let results = gen::temp_dir("compare-lost");
    gen::write_run(&results, "run-a", false, 1.0);
    gen::write_run(&results, "run-b", true, 1.0);
    let out = compare(&results, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("litellm/streaming: measured in run-a but no result in run-b"),
        "{stdout}"
    );
}

#[test]
fn a_broken_run_is_named() {
    let results = gen::temp_dir("compare-broken");
    gen::write_run(&results, "run-a", false, 1.0);
    let out = compare(&results, &[]);
    assert_eq!(out.status.code(), Some(1));
    assert!(String::from_utf8_lossy(&out.stderr).contains("run-b/manifest.json"));
    let out = compare(&results, &["--threshold=-5"]);
    assert_eq!(out.status.code(), Some(1));
}

#[test]
fn runs_made_differently_are_flagged() {
    let results = gen::temp_dir("compare-caveat");
    gen::write_run(&results, "run-a", false, 1.0);
    let b = gen::write_run(&results, "run-b", false, 1.0);
    let path = b.join("manifest.json");
    let m = std::fs::read_to_string(&path)
        .unwrap()
        .replace("\"profile\": \"quick\"", "\"profile\": \"full\"");
    std::fs::write(&path, m).unwrap();
    let out = compare(&results, &[]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("- ⚠ profile differs: quick → full"),
        "{stdout}"
    );
}

#[test]
fn a_change_within_the_noise_is_not_a_regression() {
    let results = gen::temp_dir("compare-noisy");
    // Seconds varying by up to ±40 %: the intervals are wider than a 12 % change.
    gen::write_noisy_run(&results, "run-a", 1.0, 0.4, 1);
    gen::write_noisy_run(&results, "run-b", 1.12, 0.4, 11);
    let out = compare(&results, &["--threshold", "10"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("No regression beyond the threshold."),
        "{stdout}"
    );
    assert!(
        stdout.contains("- gateway/baseline: p99 rose 611 µs ± ")
            && stdout
                .contains("(+12.0 %), beyond 10.0 % but within noise (95 % intervals overlap)"),
        "{stdout}"
    );
    assert!(
        stdout.contains("gateway/baseline: ok requests/s fell"),
        "{stdout}"
    );
    let row = stdout.lines().find(|l| l.starts_with("| p99 |")).unwrap();
    assert!(row.contains("(+12.0 %) (within noise)"), "{row}");
    assert!(row.contains("unstable"), "{row}");
}

#[test]
fn a_clean_change_beyond_the_noise_is_a_regression() {
    let results = gen::temp_dir("compare-clean");
    // Seconds varying by up to ±2 %: narrow intervals, far apart after a 30 % change.
    gen::write_noisy_run(&results, "run-a", 1.0, 0.02, 1);
    gen::write_noisy_run(&results, "run-b", 1.3, 0.02, 11);
    let out = compare(&results, &["--threshold", "10"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("- ⛔ gateway/baseline: p99 rose 611 µs ± ")
            && stdout.contains("(+30.0 %), beyond 10.0 % (95 % intervals apart)"),
        "{stdout}"
    );
    assert!(!stdout.contains("within noise ("), "{stdout}");
}

#[test]
fn a_run_compared_with_itself_has_no_regression() {
    let results = gen::temp_dir("compare-self");
    gen::write_noisy_run(&results, "run-a", 1.0, 0.4, 1);
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["compare", "run-a", "run-a", "--threshold", "0", "--results"])
        .arg(&results)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("No regression beyond the threshold."),
        "{stdout}"
    );
    assert!(!stdout.contains("within noise ("), "{stdout}");
    assert!(stdout.contains("(±0 %)"), "{stdout}");
}

#[test]
fn with_three_repeats_compare_uses_a_permutation_test() {
    let results = gen::temp_dir("compare-repeats");
    // Repeats spread ±10 %: a 12 % slower gateway mixes with them.
    gen::write_repeated_run(&results, "run-a", 1.0, &[1.0, 1.1, 0.9]);
    gen::write_repeated_run(&results, "run-b", 1.12, &[0.9, 1.0, 1.1]);
    let out = compare(&results, &["--threshold", "10"]);
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(0), "{stdout}");
    assert!(
        stdout.contains("beyond 10.0 % but within noise (permutation p = "),
        "{stdout}"
    );
    // Repeats spread ±1 %, 30 % slower: every repeat of b is worse than every one of a,
    // the smallest p three against three can give (1 in 20).
    gen::write_repeated_run(&results, "run-c", 1.0, &[1.0, 1.01, 0.99]);
    gen::write_repeated_run(&results, "run-d", 1.3, &[0.99, 1.0, 1.01]);
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args([
            "compare",
            "run-c",
            "run-d",
            "--threshold",
            "10",
            "--results",
        ])
        .arg(&results)
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert_eq!(out.status.code(), Some(2), "{stdout}");
    assert!(
        stdout.contains("- ⛔ gateway/baseline: p99 rose")
            && stdout.contains("(permutation p = 0.050)"),
        "{stdout}"
    );
}
