//! Where per-second points go besides the results files: an InfluxDB v2 write endpoint
//! (`/api/v2/write`, line protocol) through the influxdb2 crate. Offline, the sink is
//! VictoriaMetrics on the same URL, which stores `<measurement>_<field>` series.
//!
//! Measurements (every point tagged `run_id`, `target`, `suite`):
//! - `lab_load` (also tagged `phase`): the load generator's per-second points — fields
//!   `requests`, `ok`, `errors`, `dropped`, `requests_per_s`, `p50_ms`, `p99_ms`,
//!   `ttft_p50_ms`, `output_tokens`, `active_vus`, `target_rate_per_s`.
//! - `lab_container` (also tagged `container`): the target container's per-second
//!   resource use from the Docker stats API — fields `cpu_percent`, `memory_bytes`,
//!   `throttled_periods`, `throttled_time_ns`.

use chrono::{DateTime, Utc};
use influxdb2::models::DataPoint;

use crate::load::result::TimePoint;
use crate::rundir::ContainerStats;

pub const LOAD_MEASUREMENT: &str = "lab_load";
pub const CONTAINER_MEASUREMENT: &str = "lab_container";

#[derive(Debug, thiserror::Error)]
pub enum SinkError {
    #[error("invalid point for {measurement}: {message}")]
    Point {
        measurement: String,
        message: String,
    },
    #[error("writing to InfluxDB at {url}: {message}")]
    Write { url: String, message: String },
}

/// An InfluxDB v2 write target.
pub struct InfluxSink {
    client: influxdb2::Client,
    url: String,
    bucket: String,
}

/// Tags common to every point of one (run, target, suite).
#[derive(Debug, Clone)]
pub struct SeriesTags {
    pub run_id: String,
    pub target: String,
    pub suite: String,
    /// Repeat of the suite (1-based), a tag so that repeats stay apart.
    pub repeat: u32,
}

impl InfluxSink {
    pub fn new(url: &str, org: &str, bucket: &str, token: &str) -> Self {
        Self {
            client: influxdb2::Client::new(url, org, token),
            url: url.to_string(),
            bucket: bucket.to_string(),
        }
    }

    pub fn url(&self) -> &str {
        &self.url
    }

    /// Writes points; returns how many.
    pub async fn write(&self, points: Vec<DataPoint>) -> Result<usize, SinkError> {
        let n = points.len();
        if n == 0 {
            return Ok(0);
        }
        self.client
            .write(&self.bucket, futures_util::stream::iter(points))
            .await
            .map_err(|e| SinkError::Write {
                url: self.url.clone(),
                message: e.to_string(),
            })?;
        Ok(n)
    }
}

fn ns(t: DateTime<Utc>) -> i64 {
    t.timestamp_nanos_opt().unwrap_or(0)
}

fn point_err(
    measurement: &str,
) -> impl Fn(influxdb2::models::data_point::DataPointError) -> SinkError + '_ {
    move |e| SinkError::Point {
        measurement: measurement.to_string(),
        message: e.to_string(),
    }
}

/// One per-second point of the load generator, stamped `at` (the end of its second).
pub fn load_point(
    tags: &SeriesTags,
    phase: &str,
    at: DateTime<Utc>,
    p: &TimePoint,
) -> Result<DataPoint, SinkError> {
    DataPoint::builder(LOAD_MEASUREMENT)
        .tag("run_id", tags.run_id.as_str())
        .tag("target", tags.target.as_str())
        .tag("suite", tags.suite.as_str())
        .tag("repeat", tags.repeat.to_string())
        .tag("phase", phase)
        .field("requests", p.requests as i64)
        .field("ok", p.ok as i64)
        .field("errors", p.errors as i64)
        .field("dropped", p.dropped as i64)
        .field("requests_per_s", p.requests_per_s)
        .field("p50_ms", p.p50_ms)
        .field("p99_ms", p.p99_ms)
        .field("ttft_p50_ms", p.ttft_p50_ms)
        .field("output_tokens", p.output_tokens as i64)
        .field("active_vus", p.active_vus as i64)
        .field("target_rate_per_s", p.target_rate_per_s)
        .timestamp(ns(at))
        .build()
        .map_err(point_err(LOAD_MEASUREMENT))
}

/// The container's per-second stats, stamped from `started_at` (the suite's start).
pub fn container_points(
    tags: &SeriesTags,
    started_at: DateTime<Utc>,
    stats: &ContainerStats,
) -> Result<Vec<DataPoint>, SinkError> {
    stats
        .samples
        .iter()
        .map(|s| {
            DataPoint::builder(CONTAINER_MEASUREMENT)
                .tag("run_id", tags.run_id.as_str())
                .tag("target", tags.target.as_str())
                .tag("suite", tags.suite.as_str())
                .tag("repeat", tags.repeat.to_string())
                .tag("container", stats.container.as_str())
                .field("cpu_percent", s.cpu_percent)
                .field("memory_bytes", s.memory_bytes as i64)
                .field("throttled_periods", s.throttled_periods as i64)
                .field("throttled_time_ns", s.throttled_time_ns as i64)
                .timestamp(ns(
                    started_at + chrono::Duration::microseconds((s.t * 1e6) as i64)
                ))
                .build()
                .map_err(point_err(CONTAINER_MEASUREMENT))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;
    use crate::rundir::StatsSample;
    use influxdb2::models::WriteDataPoint;

    #[test]
    fn container_points_carry_tags_and_fields() {
        let tags = SeriesTags {
            run_id: "20261124-090000".into(),
            target: "gateway".into(),
            suite: "baseline".into(),
            repeat: 1,
        };
        let stats = ContainerStats {
            target: "gateway".into(),
            suite: "baseline".into(),
            container: "lab-gateway".into(),
            samples: vec![StatsSample {
                t: 1.0,
                cpu_percent: 42.5,
                memory_bytes: 1000,
                throttled_periods: 2,
                throttled_time_ns: 30,
                cpu_total_ns: None,
            }],
        };
        let t0 = DateTime::parse_from_rfc3339("2026-11-24T09:00:00Z")
            .unwrap()
            .with_timezone(&Utc);
        let pts = container_points(&tags, t0, &stats).unwrap();
        let mut buf = Vec::new();
        pts[0].write_data_point_to(&mut buf).unwrap();
        let line = String::from_utf8(buf).unwrap();
        assert!(line.starts_with("lab_container,"), "{line}");
        assert!(line.contains("run_id=20261124-090000"), "{line}");
        assert!(line.contains("cpu_percent=42.5"), "{line}");
        assert!(line.contains("memory_bytes=1000i"), "{line}");
        assert!(line.trim_end().ends_with(" 1795510801000000000"), "{line}");
    }
}
