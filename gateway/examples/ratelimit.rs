//! Rate-limit accuracy: a gateway in process (loopback provider, one key at `RPM`
//! requests per minute), 64 concurrent clients sending as fast as they can for
//! `DURATION` seconds; prints the requests admitted against the most the limit allows
//! (`rpm * duration / 60 + burst`, the burst being one minute's allowance).
//!
//! `cargo run --release -p gateway --example ratelimit` (env: DURATION=60, RPM=6000,
//! CLIENTS=64).
use std::sync::atomic::{AtomicU64, Ordering::Relaxed};
use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context as _;
use gateway::{config, server};

fn env_u64(name: &str, default: u64) -> anyhow::Result<u64> {
    match std::env::var(name) {
        Ok(v) => v
            .parse()
            .with_context(|| format!("{name}={v:?} is not a number")),
        Err(_) => Ok(default),
    }
}

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    let duration = env_u64("DURATION", 60)?;
    let rpm = env_u64("RPM", 6000)?;
    let clients = env_u64("CLIENTS", 64)?;
    let text = format!(
        "listen: 127.0.0.1:0\nkeys: [{{name: bench, key: sk-bench, rpm: {rpm}}}]\n\
         providers: {{lo: {{type: loopback, output_tokens: 4}}}}\n\
         models: [{{name: loop, provider: lo}}]\n"
    );
    let settings = config::parse(&text)?.validate()?;
    let state = Arc::new(server::State::new(&settings, None)?);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await?;
    let url = format!("http://{}/v1/chat/completions", listener.local_addr()?);
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let server = tokio::spawn(server::serve(listener, state, async {
        let _ = stop_rx.await;
    }));

    let (admitted, refused, other) = (
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
        Arc::new(AtomicU64::new(0)),
    );
    let http = reqwest::Client::new();
    let body = r#"{"model":"loop","messages":[{"role":"user","content":"hi"}]}"#;
    let t0 = Instant::now();
    let end = t0 + Duration::from_secs(duration);
    let tasks: Vec<_> = (0..clients)
        .map(|_| {
            let (http, url) = (http.clone(), url.clone());
            let counts = (admitted.clone(), refused.clone(), other.clone());
            tokio::spawn(async move {
                while Instant::now() < end {
                    let r = http
                        .post(&url)
                        .bearer_auth("sk-bench")
                        .header("content-type", "application/json")
                        .body(body)
                        .send()
                        .await;
                    let counter = match r.as_ref().map(|r| r.status().as_u16()) {
                        Ok(200) => &counts.0,
                        Ok(429) => &counts.1,
                        _ => &counts.2,
                    };
                    counter.fetch_add(1, Relaxed);
                }
            })
        })
        .collect();
    for t in tasks {
        t.await?;
    }
    let secs = t0.elapsed().as_secs_f64();
    let _ = stop_tx.send(());
    server.await?;

    let admitted = admitted.load(Relaxed);
    let expected = rpm as f64 * secs / 60.0 + rpm as f64;
    println!("clients {clients}, rpm {rpm}, burst {rpm}, ran {secs:.2} s");
    println!(
        "admitted {admitted}, refused {}, other {}",
        refused.load(Relaxed),
        other.load(Relaxed)
    );
    println!(
        "expected at most {expected:.0} (rpm*duration/60 + burst); admitted/expected = {:.4} ({:+.2} %)",
        admitted as f64 / expected,
        (admitted as f64 / expected - 1.0) * 100.0
    );
    // The burst is a fixed count; the rate is what the clock decides.
    let refilled = rpm as f64 * secs / 60.0;
    println!(
        "beyond the burst: {} of {refilled:.0} refilled ({:+.2} %)",
        admitted.saturating_sub(rpm),
        (admitted.saturating_sub(rpm) as f64 / refilled - 1.0) * 100.0
    );
    Ok(())
}
