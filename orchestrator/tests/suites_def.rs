//! The suites file: parses, names unknown keys and bad values, quick is < 1/10 of full.
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::time::Duration;

use orchestrator::load::Api;
use orchestrator::suites::def::BUILTIN_SUITES;
use orchestrator::suites::{Profile, SuiteKind, SuitesFile};

#[test]
fn builtin_suites_parse() {
    let f = SuitesFile::builtin().unwrap();
    let names: Vec<&str> = f.suites.iter().map(|s| s.name.as_str()).collect();
    assert_eq!(
        names,
        [
            "baseline",
            "throughput",
            "sustained",
            "streaming",
            "messages",
            "messages-stream",
            "overhead",
            "frontier",
            "faults",
            "realistic",
            "prompt-sizes"
        ]
    );
    let streaming = f.suite("streaming").unwrap();
    assert!(streaming.request.stream);
    assert!(streaming
        .request
        .headers
        .contains(&("x-mock-token-delay-ms".to_string(), "10".to_string())));
    match &f.suite("throughput").unwrap().kind {
        SuiteKind::Closed(c) => {
            let stages = c.stages.as_ref().unwrap();
            assert_eq!(stages.len(), 7);
            assert_eq!(stages.iter().map(|s| s.target).max(), Some(50));
        }
        other => panic!("throughput is {other:?}"),
    }
    assert!(matches!(
        f.suite("frontier").unwrap().kind,
        SuiteKind::Frontier(_)
    ));
    assert!(matches!(
        f.suite("faults").unwrap().kind,
        SuiteKind::Faults(_)
    ));
    assert!(f.select("all").unwrap().len() == 11);
    // Seed 004's shape: unary steps with a 10 ms upstream, then held stream levels.
    let SuiteKind::Phases(ph) = &f.suite("realistic").unwrap().kind else {
        panic!("realistic is not a phases suite");
    };
    let rates = ph[0].def.open.as_ref().unwrap().rates.clone();
    assert_eq!(rates, [100.0, 500.0, 1000.0, 2000.0]);
    assert!(ph[0]
        .request
        .headers
        .contains(&("x-mock-latency-ms".to_string(), "10".to_string())));
    assert!(!ph[0].request.stream && ph[1].request.stream);
    let stages = ph[1].def.closed.as_ref().unwrap().stages.clone().unwrap();
    let held: Vec<u64> = stages
        .iter()
        .filter(|s| !s.duration.0.is_zero())
        .map(|s| s.target)
        .collect();
    assert_eq!(held, [100, 500, 1000, 2000]);
    let SuiteKind::Phases(ph) = &f.suite("prompt-sizes").unwrap().kind else {
        panic!("prompt-sizes is not a phases suite");
    };
    let sizes: Vec<usize> = ph.iter().map(|p| p.request.prompt.len()).collect();
    assert_eq!(sizes, [4_000, 40_000]);
    // The Anthropic API, plain and streaming.
    for name in ["messages", "messages-stream"] {
        assert_eq!(f.suite(name).unwrap().request.api, Api::Anthropic, "{name}");
    }
    assert!(f.suite("messages-stream").unwrap().request.stream);
    assert_eq!(f.select("baseline,overhead").unwrap().len(), 2);
    let err = f.suite("nope").unwrap_err().to_string();
    assert!(err.contains("nope") && err.contains("baseline"), "{err}");
}

#[test]
fn quick_takes_under_a_tenth_of_full() {
    let f = SuitesFile::builtin().unwrap();
    // The faults suite has its own quick scale: its phases cannot shrink below breaker
    // cooldowns and retry-after; it is held to about 2 minutes instead.
    let faults = f.suite("faults").unwrap();
    let quick_faults = faults.estimated_duration(Profile::Quick);
    assert!(
        quick_faults <= Duration::from_secs(130)
            && quick_faults * 2 < faults.estimated_duration(Profile::Full),
        "faults quick {quick_faults:?}"
    );
    let total = |p: Profile| -> Duration {
        f.suites
            .iter()
            .filter(|s| s.name != "faults")
            .map(|s| s.estimated_duration(p))
            .sum()
    };
    // The CI lab test runs every suite on four targets: the new ones stay short in quick,
    // and a few minutes per target in full.
    let est = |n: &str, p: Profile| f.suite(n).unwrap().estimated_duration(p);
    assert_eq!(
        est("realistic", Profile::Quick),
        Duration::from_millis(17_006)
    );
    assert_eq!(est("realistic", Profile::Full), Duration::from_secs(205));
    assert_eq!(
        est("prompt-sizes", Profile::Quick),
        Duration::from_millis(6_002)
    );
    assert_eq!(est("prompt-sizes", Profile::Full), Duration::from_secs(70));
    let (full, quick) = (total(Profile::Full), total(Profile::Quick));
    assert!(full > Duration::from_secs(20 * 60), "full {full:?}");
    assert!(quick * 10 < full, "quick {quick:?} vs full {full:?}");
    assert_eq!(
        f.suite("sustained")
            .unwrap()
            .estimated_duration(Profile::Full),
        Duration::from_secs(605)
    );
}

#[test]
fn unknown_key_is_named() {
    let text = BUILTIN_SUITES.replace(
        "closed: {vus: 10, duration: 10m}",
        "closed: {vus: 10, duraton: 10m}",
    );
    assert_ne!(text, BUILTIN_SUITES);
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(err.contains("duraton"), "{err}");
    assert!(err.contains("suites[2].closed"), "{err}");

    let text = BUILTIN_SUITES.replace("profiles:", "profiles:\n  extra: {scale: 1, warmup: 1s}");
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(err.contains("extra"), "{err}");
}

#[test]
fn fault_keys_and_values_are_named() {
    let text = BUILTIN_SUITES.replace("a: {error_rate: 0.2}", "a: {eror_rate: 0.2}");
    assert_ne!(text, BUILTIN_SUITES);
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(
        err.contains("eror_rate") && err.contains("faults.phases[1].a"),
        "{err}"
    );

    let text = BUILTIN_SUITES.replace("a: {reset_rate: 0.1}", "a: {reset_rate: 10}");
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(
        err.contains("resets") && err.contains("reset_rate"),
        "{err}"
    );

    let text = BUILTIN_SUITES.replace("a: {outage: refuse}", "a: {outage: sometimes}");
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(err.contains("outage") && err.contains("sometimes"), "{err}");
}

#[test]
fn bad_values_are_named() {
    let text = BUILTIN_SUITES.replace("step: 10s", "step: 10 parsecs");
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(
        err.contains("suites[7].frontier.step") && err.contains("parsecs"),
        "{err}"
    );

    let text = BUILTIN_SUITES.replace("closed: {vus: 1, iterations: 30}", "closed: {vus: 1}");
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(
        err.contains("baseline") && err.contains("iterations"),
        "{err}"
    );

    let text = BUILTIN_SUITES.replace(
        "overhead: {duration: 1m}",
        "overhead: {duration: 1m}\n    closed: {vus: 1, duration: 1s}",
    );
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(
        err.contains("overhead") && err.contains("only one"),
        "{err}"
    );

    // `phases:` entries: unknown keys and bad shapes are named with their phase.
    let text = BUILTIN_SUITES.replace(
        "request: {prompt_tokens: 1000}",
        "request: {prompt_tokns: 1000}",
    );
    assert_ne!(text, BUILTIN_SUITES);
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(
        err.contains("phases[0].request") && err.contains("prompt_tokns"),
        "{err}"
    );
    let text = BUILTIN_SUITES.replace(
        "{prompt_tokens: 1000}\n        closed: {vus: 10, duration: 30s}",
        "{prompt_tokens: 1000}\n        closed: {vus: 10}",
    );
    assert_ne!(text, BUILTIN_SUITES);
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(
        err.contains("prompt-sizes")
            && err.contains("phase `prompt-1k`")
            && err.contains("iterations"),
        "{err}"
    );
    let text = BUILTIN_SUITES.replace("rates: [100, 500, 1000, 2000]", "rates: [100, -5]");
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(
        err.contains("phase `unary`") && err.contains("positive"),
        "{err}"
    );
    let text = BUILTIN_SUITES.replace("name: prompt-10k", "name: prompt-1k");
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(err.contains("defined twice"), "{err}");

    let text = BUILTIN_SUITES.replace("api: openai", "api: grpc");
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(err.contains("defaults.request.api"), "{err}");

    let text = BUILTIN_SUITES.replace("resolution_percent: 10", "resolution_percent: 0");
    assert_ne!(text, BUILTIN_SUITES);
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(
        err.contains("frontier") && err.contains("resolution_percent"),
        "{err}"
    );
    let text = BUILTIN_SUITES.replace(
        "max_rung: 30s",
        "max_rung: 30s
      max_rungs: 3",
    );
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(err.contains("max_rungs"), "{err}");
}

#[test]
fn thresholds_parse_strictly_naming_suite_and_expression() {
    let f = SuitesFile::builtin().unwrap();
    let names = |s: &str| -> Vec<&'static str> {
        f.suite(s)
            .unwrap()
            .thresholds
            .iter()
            .map(|t| t.figure)
            .collect()
    };
    assert_eq!(names("baseline"), ["errors"]);
    assert_eq!(names("overhead"), ["added_p99", "peak_memory"]);

    let text = BUILTIN_SUITES.replace("\"added_p99 < 5ms\"", "\"added_p98 < 5ms\"");
    assert_ne!(text, BUILTIN_SUITES);
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(
        err.contains("suite `overhead`") && err.contains("`added_p98 < 5ms`"),
        "{err}"
    );
    let text = BUILTIN_SUITES.replace("\"peak_memory < 20MB\"", "\"peak_memory < 20 parsecs\"");
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(
        err.contains("suite `overhead`") && err.contains("parsecs"),
        "{err}"
    );
    // A key other than a list of expressions is named like any unknown key.
    let text = BUILTIN_SUITES.replace("thresholds: [\"added_p99", "threshold: [\"added_p99");
    let err = SuitesFile::parse(&text, "x.yaml").unwrap_err().to_string();
    assert!(err.contains("threshold"), "{err}");
}
