//! Added latency of the gateway at concurrency 1: the same request alternately to the
//! upstream directly and through the gateway, each over one kept-alive connection,
//! timed one by one. Prints percentiles of both and of the paired differences; with
//! `--also ADDR` a third target (another proxy) is timed in the same rounds.
//!
//! `cargo run --release -p gateway --example latency -- --direct 127.0.0.1:9000 --gateway 127.0.0.1:8080`
use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use anyhow::{bail, Context};
use clap::Parser;

#[derive(Parser)]
struct Args {
    /// Upstream address (HOST:PORT), measured directly.
    #[arg(long)]
    direct: String,
    /// Gateway address (HOST:PORT) in front of the same upstream.
    #[arg(long)]
    gateway: String,
    /// A second proxy (HOST:PORT, e.g. nginx) in front of the same upstream, timed in the
    /// same rounds (direct, gateway, this), so both proxies meet the same machine noise.
    #[arg(long)]
    also: Option<String>,
    /// Timed requests to each.
    #[arg(long, default_value_t = 20_000)]
    requests: usize,
    /// Untimed requests to each first.
    #[arg(long, default_value_t = 2_000)]
    warmup: usize,
    /// Model name in the request.
    #[arg(long, default_value = "gpt-4o-mini")]
    model: String,
    /// Bearer key.
    #[arg(long, default_value = "sk-lab-key")]
    key: String,
}

/// One kept-alive HTTP/1.1 connection that POSTs the same request.
struct Conn {
    stream: TcpStream,
    request: Vec<u8>,
    buf: Vec<u8>,
}

impl Conn {
    fn new(addr: &str, body: &str, key: &str) -> anyhow::Result<Self> {
        let stream = TcpStream::connect(addr).with_context(|| format!("connect {addr}"))?;
        stream.set_nodelay(true)?;
        stream.set_read_timeout(Some(Duration::from_secs(10)))?;
        let request = format!(
            "POST /v1/chat/completions HTTP/1.1\r\nhost: {addr}\r\nauthorization: Bearer {key}\r\n\
             content-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            body.len()
        )
        .into_bytes();
        Ok(Conn {
            stream,
            request,
            buf: vec![0; 64 * 1024],
        })
    }

    /// Sends the request and reads the whole answer; returns the round-trip time.
    fn round_trip(&mut self) -> anyhow::Result<Duration> {
        let t0 = Instant::now();
        self.stream.write_all(&self.request)?;
        let mut have = 0;
        loop {
            let n = self.stream.read(&mut self.buf[have..])?;
            if n == 0 {
                bail!("connection closed");
            }
            have += n;
            let Some(end) = find(&self.buf[..have], b"\r\n\r\n") else {
                continue;
            };
            let head = std::str::from_utf8(&self.buf[..end])?;
            if !head.starts_with("HTTP/1.1 200") {
                bail!("answer was not 200: {}", head.lines().next().unwrap_or(""));
            }
            let len: usize = head
                .lines()
                .find_map(|l| {
                    let (k, v) = l.split_once(':')?;
                    k.eq_ignore_ascii_case("content-length")
                        .then(|| v.trim().parse().ok())?
                })
                .context("answer without content-length")?;
            while have < end + 4 + len {
                let n = self.stream.read(&mut self.buf[have..])?;
                if n == 0 {
                    bail!("connection closed mid-body");
                }
                have += n;
            }
            return Ok(t0.elapsed());
        }
    }
}

fn find(hay: &[u8], needle: &[u8]) -> Option<usize> {
    hay.windows(needle.len()).position(|w| w == needle)
}

fn pct(sorted: &[f64], p: f64) -> f64 {
    let i = ((sorted.len() as f64 - 1.0) * p / 100.0).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn main() -> anyhow::Result<()> {
    let a = Args::parse();
    let body = format!(
        r#"{{"model":"{}","messages":[{{"role":"user","content":"Say hello to the benchmark in a few words."}}]}}"#,
        a.model
    );
    let mut conns = vec![
        Conn::new(&a.direct, &body, &a.key)?,
        Conn::new(&a.gateway, &body, &a.key)?,
    ];
    if let Some(also) = &a.also {
        conns.push(Conn::new(also, &body, &a.key)?);
    }
    for _ in 0..a.warmup {
        for c in &mut conns {
            c.round_trip()?;
        }
    }
    // Per target its round trips; per proxy its differences to the direct one before it.
    let mut rt = vec![Vec::with_capacity(a.requests); conns.len()];
    let mut diff = vec![Vec::with_capacity(a.requests); conns.len()];
    for _ in 0..a.requests {
        for (i, c) in conns.iter_mut().enumerate() {
            rt[i].push(c.round_trip()?.as_secs_f64() * 1e6);
        }
        for i in 1..conns.len() {
            let d = rt[i][rt[i].len() - 1] - rt[0][rt[0].len() - 1];
            diff[i].push(d);
        }
    }
    for v in rt.iter_mut().chain(diff.iter_mut()) {
        v.sort_by(f64::total_cmp);
    }
    let names = ["direct", "gateway", "also"];
    println!("series p50_us p90_us p99_us");
    let row = |name: &str, v: &[f64]| {
        println!(
            "{name} {:.0} {:.0} {:.0}",
            pct(v, 50.0),
            pct(v, 90.0),
            pct(v, 99.0)
        )
    };
    for (i, v) in rt.iter().enumerate() {
        row(names[i], v);
    }
    for i in 1..conns.len() {
        let paired = if i == 1 {
            "paired_diff"
        } else {
            "paired_diff_also"
        };
        row(paired, &diff[i]);
        let added = if i == 1 { "added" } else { "added_also" };
        println!(
            "{added} {:.0} {:.0} {:.0}",
            pct(&rt[i], 50.0) - pct(&rt[0], 50.0),
            pct(&rt[i], 90.0) - pct(&rt[0], 90.0),
            pct(&rt[i], 99.0) - pct(&rt[0], 99.0)
        );
    }
    Ok(())
}
