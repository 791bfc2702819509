//! Links from the report into the lab's Prometheus: per suite and target, one graph page
//! covering the window that target ran the suite, with the recording rules of
//! `prometheus/rules.yml` (requests/s, p99, error ratio, container CPU and memory).
//! They answer while the lab's Prometheus runs (`run --keep` keeps it up): its data lives
//! in its container.

use chrono::{DateTime, Duration, Utc};
use serde::Serialize;

use super::data::RunData;

/// One graph link: the target it shows and the URL.
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct PromLink {
    pub target: String,
    pub url: String,
}

/// Seconds added on both sides of a suite's window, so its edges show.
const MARGIN_S: i64 = 5;

/// The scrape job and container service of a target (`direct` is the mock).
fn job_and_service(target: &str) -> (&str, &str) {
    match target {
        "direct" => ("mock-upstream", "mock-upstream"),
        t => (t, t),
    }
}

/// The expressions graphed for a target, one panel each.
fn exprs(target: &str) -> Vec<String> {
    let (job, service) = job_and_service(target);
    let mut out = vec![format!("job:lab_requests:rate10s{{job=\"{job}\"}}")];
    if target != "direct" {
        out.push(format!("job:lab_latency_seconds:p99_10s{{job=\"{job}\"}}"));
        out.push(format!("job:lab_errors:ratio_rate10s{{job=\"{job}\"}}"));
    }
    out.push(format!(
        "name:container_cpu_usage:rate10s{{name=~\".+-{service}\"}}"
    ));
    out.push(format!(
        "name:container_memory_working_set_bytes:max{{name=~\".+-{service}\"}}"
    ));
    out
}

/// A `/graph` URL of `prometheus` showing `exprs` from `start` to `end`.
pub fn graph_url(
    prometheus: &str,
    exprs: &[String],
    start: DateTime<Utc>,
    end: DateTime<Utc>,
) -> Option<String> {
    let start = start - Duration::seconds(MARGIN_S);
    let end = end + Duration::seconds(MARGIN_S);
    let range = format!("{}s", (end - start).num_seconds().max(1));
    let end_input = end.format("%Y-%m-%d %H:%M:%S").to_string();
    let mut params = Vec::new();
    for (i, e) in exprs.iter().enumerate() {
        params.push((format!("g{i}.expr"), e.clone()));
        params.push((format!("g{i}.tab"), "0".to_string()));
        params.push((format!("g{i}.range_input"), range.clone()));
        params.push((format!("g{i}.end_input"), end_input.clone()));
    }
    let base = format!("{}/graph", prometheus.trim_end_matches('/'));
    reqwest::Url::parse_with_params(&base, &params)
        .ok()
        .map(String::from)
}

/// The Prometheus URL of the run, when its Prometheus had an image.
fn prometheus_of(run: &RunData) -> Option<&str> {
    run.manifest
        .services
        .iter()
        .find(|s| s.name == "prometheus" && s.available)
        .and_then(|s| s.url.as_deref())
}

/// One link per target that has a result for `suite`.
pub fn suite_links(run: &RunData, suite: &str) -> Vec<PromLink> {
    let Some(prom) = prometheus_of(run) else {
        return Vec::new();
    };
    run.entries
        .iter()
        .filter(|e| e.suite == suite)
        .filter_map(|e| {
            let r = e.result.as_ref()?;
            let url = graph_url(prom, &exprs(&e.target), r.started_at, r.finished_at)?;
            Some(PromLink {
                target: e.target.clone(),
                url,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn graph_url_covers_the_window_with_every_panel() {
        let start = "2026-12-02T08:00:00Z".parse::<DateTime<Utc>>().unwrap();
        let end = start + Duration::seconds(50);
        let url = graph_url("http://127.0.0.1:9090", &exprs("gateway"), start, end).unwrap();
        let parsed = reqwest::Url::parse(&url).unwrap();
        assert_eq!(parsed.path(), "/graph");
        let q: Vec<(String, String)> = parsed.query_pairs().into_owned().collect();
        let get = |k: &str| q.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone());
        assert_eq!(
            get("g0.expr").as_deref(),
            Some("job:lab_requests:rate10s{job=\"gateway\"}")
        );
        assert_eq!(get("g0.range_input").as_deref(), Some("60s"));
        assert_eq!(get("g0.end_input").as_deref(), Some("2026-12-02 08:00:55"));
        assert!(get("g4.expr").unwrap().contains("memory_working_set"));
        // `direct` has no gateway histogram: requests, CPU and memory only.
        assert_eq!(exprs("direct").len(), 3);
        assert!(exprs("direct")[0].contains("mock-upstream"));
    }
}
