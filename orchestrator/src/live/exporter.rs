//! The cAdvisor stand-in: when cAdvisor's image cannot be had, the orchestrator serves the
//! Docker stats of every running lab container as Prometheus metrics under cAdvisor's
//! names and labels (`name`, `image`, `id`), on cAdvisor's port, so the scrape job, the
//! recording rules and the consoles are the same with or without cAdvisor.
//!
//! CPU, memory and CFS figures come from the Docker stats API (one stream per container,
//! as cAdvisor samples about once a second); network counters from the container's
//! `/proc/<pid>/net/dev`, which is where cAdvisor reads them too (with host networking,
//! the host's interfaces).

use std::collections::BTreeMap;
use std::fmt::Write;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use futures_util::StreamExt;

use crate::docker::{ContainerInfo, Docker, StatsPoint};

/// The latest reading of one container.
#[derive(Debug, Clone)]
pub struct Reading {
    pub id: String,
    pub name: String,
    pub image: String,
    pub memory_limit_bytes: Option<i64>,
    pub pid: Option<i64>,
    pub stats: StatsPoint,
    pub seen: SystemTime,
}

/// Counters of one network interface, from `/proc/<pid>/net/dev`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct NetDev {
    pub interface: String,
    pub rx_bytes: u64,
    pub rx_packets: u64,
    pub rx_errors: u64,
    pub rx_dropped: u64,
    pub tx_bytes: u64,
    pub tx_packets: u64,
    pub tx_errors: u64,
    pub tx_dropped: u64,
}

/// Latest readings by container id, shared by the watchers (writers) and the server.
#[derive(Clone, Default)]
pub struct Readings(Arc<Mutex<BTreeMap<String, Reading>>>);

impl Readings {
    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Reading>> {
        self.0.lock().unwrap_or_else(|e| e.into_inner())
    }
    pub fn update(&self, r: Reading) {
        self.lock().insert(r.id.clone(), r);
    }
    pub fn remove(&self, id: &str) {
        self.lock().remove(id);
    }
    pub fn all(&self) -> Vec<Reading> {
        self.lock().values().cloned().collect()
    }
}

/// Follows every running container labelled `key=value`: a stats stream each, started as
/// containers appear (checked every 2 s), ended when they stop. Runs until aborted.
pub async fn watch(docker: Docker, key: String, value: String, readings: Readings) {
    let mut followed: BTreeMap<String, tokio::task::JoinHandle<()>> = BTreeMap::new();
    loop {
        followed.retain(|_, task| !task.is_finished());
        if let Ok(list) = docker.list_labelled(&key, &value).await {
            for c in list.into_iter().filter(|c| c.state == "running") {
                if let std::collections::btree_map::Entry::Vacant(slot) =
                    followed.entry(c.id.clone())
                {
                    slot.insert(tokio::spawn(follow(docker.clone(), c, readings.clone())));
                }
            }
        }
        tokio::time::sleep(Duration::from_secs(2)).await;
    }
}

async fn follow(docker: Docker, c: ContainerInfo, readings: Readings) {
    let state = docker.state(&c.id).await.ok().flatten();
    let mut stream = Box::pin(docker.stats_stream(&c.id));
    while let Some(stats) = stream.next().await {
        readings.update(Reading {
            id: c.id.clone(),
            name: c.name.clone(),
            image: c.image.clone(),
            memory_limit_bytes: state.as_ref().and_then(|s| s.memory_bytes),
            pid: state.as_ref().and_then(|s| s.pid).filter(|p| *p > 0),
            stats,
            seen: SystemTime::now(),
        });
    }
    readings.remove(&c.id);
}

/// Parses `/proc/<pid>/net/dev`: two header lines, then `iface: rx(8 fields) tx(8 fields)`.
pub fn parse_net_dev(text: &str) -> Vec<NetDev> {
    text.lines()
        .filter_map(|line| {
            let (name, rest) = line.split_once(':')?;
            let v: Vec<u64> = rest
                .split_whitespace()
                .map(|f| f.parse().ok())
                .collect::<Option<_>>()?;
            (v.len() >= 12).then(|| NetDev {
                interface: name.trim().to_string(),
                rx_bytes: v[0],
                rx_packets: v[1],
                rx_errors: v[2],
                rx_dropped: v[3],
                tx_bytes: v[8],
                tx_packets: v[9],
                tx_errors: v[10],
                tx_dropped: v[11],
            })
        })
        .collect()
}

/// The network counters of a process's network namespace (empty when unreadable).
pub fn net_dev_of(pid: i64) -> Vec<NetDev> {
    std::fs::read_to_string(format!("/proc/{pid}/net/dev"))
        .map(|t| parse_net_dev(&t))
        .unwrap_or_default()
}

/// Escapes a label value for the text exposition format.
fn label(v: &str) -> String {
    v.replace('\\', "\\\\")
        .replace('"', "\\\"")
        .replace('\n', "\\n")
}

type Value = fn(&Reading) -> Option<f64>;

/// cAdvisor's container metrics: name, type, help and how to read it from a reading.
const METRICS: &[(&str, &str, &str, Value)] = &[
    (
        "container_cpu_usage_seconds_total",
        "counter",
        "Cumulative cpu time consumed in seconds.",
        |r| Some(r.stats.cpu_total_ns as f64 / 1e9),
    ),
    (
        "container_cpu_cfs_periods_total",
        "counter",
        "Number of elapsed enforcement period intervals.",
        |r| Some(r.stats.cfs_periods as f64),
    ),
    (
        "container_cpu_cfs_throttled_periods_total",
        "counter",
        "Number of throttled period intervals.",
        |r| Some(r.stats.throttled_periods as f64),
    ),
    (
        "container_cpu_cfs_throttled_seconds_total",
        "counter",
        "Total time duration the container has been throttled.",
        |r| Some(r.stats.throttled_time_ns as f64 / 1e9),
    ),
    (
        "container_memory_working_set_bytes",
        "gauge",
        "Current working set in bytes.",
        |r| Some(r.stats.memory_bytes as f64),
    ),
    (
        "container_memory_usage_bytes",
        "gauge",
        "Current memory usage in bytes, including all memory regardless of when it was accessed.",
        |r| Some(r.stats.usage_bytes as f64),
    ),
    (
        "container_memory_rss",
        "gauge",
        "Size of RSS in bytes.",
        |r| Some(r.stats.rss_bytes as f64),
    ),
    (
        "container_spec_memory_limit_bytes",
        "gauge",
        "Memory limit for the container.",
        |r| r.memory_limit_bytes.map(|m| m as f64),
    ),
    (
        "container_last_seen",
        "gauge",
        "Last time a container was seen by the exporter.",
        |r| {
            r.seen
                .duration_since(UNIX_EPOCH)
                .ok()
                .map(|d| d.as_secs() as f64)
        },
    ),
];

type NetValue = fn(&NetDev) -> u64;

const NET_METRICS: &[(&str, &str, NetValue)] = &[
    (
        "container_network_receive_bytes_total",
        "Cumulative count of bytes received",
        |n| n.rx_bytes,
    ),
    (
        "container_network_receive_packets_total",
        "Cumulative count of packets received",
        |n| n.rx_packets,
    ),
    (
        "container_network_receive_errors_total",
        "Cumulative count of errors encountered while receiving",
        |n| n.rx_errors,
    ),
    (
        "container_network_receive_packets_dropped_total",
        "Cumulative count of packets dropped while receiving",
        |n| n.rx_dropped,
    ),
    (
        "container_network_transmit_bytes_total",
        "Cumulative count of bytes transmitted",
        |n| n.tx_bytes,
    ),
    (
        "container_network_transmit_packets_total",
        "Cumulative count of packets transmitted",
        |n| n.tx_packets,
    ),
    (
        "container_network_transmit_errors_total",
        "Cumulative count of errors encountered while transmitting",
        |n| n.tx_errors,
    ),
    (
        "container_network_transmit_packets_dropped_total",
        "Cumulative count of packets dropped while transmitting",
        |n| n.tx_dropped,
    ),
];

/// The text exposition of `readings`, cAdvisor-style (`cpu="total"` on CPU usage, as
/// cAdvisor without per-CPU metrics). `net` gives a reading's interfaces.
pub fn render(readings: &[Reading], net: impl Fn(&Reading) -> Vec<NetDev>) -> String {
    let mut o = String::new();
    let base = |r: &Reading| {
        format!(
            "id=\"/docker/{}\",image=\"{}\",name=\"{}\"",
            label(&r.id),
            label(&r.image),
            label(&r.name)
        )
    };
    for (name, kind, help, value) in METRICS {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} {kind}");
        for r in readings {
            let Some(v) = value(r) else { continue };
            let cpu = if *name == "container_cpu_usage_seconds_total" {
                "cpu=\"total\","
            } else {
                ""
            };
            let _ = writeln!(o, "{name}{{{cpu}{}}} {v}", base(r));
        }
    }
    let nets: Vec<(String, Vec<NetDev>)> = readings.iter().map(|r| (base(r), net(r))).collect();
    for (name, help, value) in NET_METRICS {
        let _ = writeln!(o, "# HELP {name} {help}\n# TYPE {name} counter");
        for (labels, devs) in &nets {
            for d in devs {
                let iface = label(&d.interface);
                let _ = writeln!(o, "{name}{{{labels},interface=\"{iface}\"}} {}", value(d));
            }
        }
    }
    o
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    const NET_DEV: &str = "Inter-|   Receive                                                |  Transmit
 face |bytes    packets errs drop fifo frame compressed multicast|bytes    packets errs drop fifo colls carrier compressed
    lo: 1234567     890    0    0    0     0          0         0  1234567     890    0    0    0     0       0          0
  eth0:   98765      43    1    2    0     0          0         0    54321      21    3    4    0     0       0          0
";

    #[test]
    fn net_dev_gives_every_interface_with_receive_and_transmit_counters() {
        let devs = parse_net_dev(NET_DEV);
        assert_eq!(devs.len(), 2);
        assert_eq!(devs[0].interface, "lo");
        assert_eq!((devs[0].rx_bytes, devs[0].tx_packets), (1_234_567, 890));
        assert_eq!(
            (
                devs[1].rx_errors,
                devs[1].rx_dropped,
                devs[1].tx_errors,
                devs[1].tx_dropped
            ),
            (1, 2, 3, 4)
        );
        assert!(parse_net_dev("garbage\nlo: 1 2\n").is_empty());
    }

    #[test]
    fn exposition_uses_cadvisor_names_and_labels() {
        let r = Reading {
            id: "abc123".into(),
            name: "lab-gateway".into(),
            image: "lab/gateway:latest".into(),
            memory_limit_bytes: Some(1 << 30),
            pid: Some(1),
            stats: StatsPoint {
                cpu_percent: 50.0,
                memory_bytes: 10 << 20,
                throttled_periods: 7,
                throttled_time_ns: 2_500_000_000,
                cpu_total_ns: 3_000_000_000,
                cfs_periods: 100,
                usage_bytes: 12 << 20,
                rss_bytes: 9 << 20,
            },
            seen: UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        };
        let text = render(&[r], |_| parse_net_dev(NET_DEV));
        let labels = r#"id="/docker/abc123",image="lab/gateway:latest",name="lab-gateway""#;
        for line in [
            format!(r#"container_cpu_usage_seconds_total{{cpu="total",{labels}}} 3"#),
            format!(
                "container_memory_working_set_bytes{{{labels}}} {}",
                10 << 20
            ),
            format!("container_memory_rss{{{labels}}} {}", 9 << 20),
            format!("container_cpu_cfs_throttled_periods_total{{{labels}}} 7"),
            format!("container_cpu_cfs_throttled_seconds_total{{{labels}}} 2.5"),
            format!(
                "container_spec_memory_limit_bytes{{{labels}}} {}",
                1u64 << 30
            ),
            format!(r#"container_network_receive_bytes_total{{{labels},interface="lo"}} 1234567"#),
            format!(r#"container_network_transmit_errors_total{{{labels},interface="eth0"}} 3"#),
        ] {
            assert!(text.contains(&line), "missing `{line}` in\n{text}");
        }
        assert!(text.contains("# TYPE container_cpu_usage_seconds_total counter"));
        // Every sample line is `name{labels} value` with a number for the value.
        for l in text.lines().filter(|l| !l.starts_with('#')) {
            let (_, v) = l.rsplit_once(' ').unwrap();
            assert!(v.parse::<f64>().is_ok(), "{l}");
        }
        assert_eq!(label("a\"b\\c"), r#"a\"b\\c"#);
    }
}
