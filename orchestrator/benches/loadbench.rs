//! Benchmark of the generator's HTTP client choice: the same closed-model load (N kept-alive
//! connections on ONE current-thread runtime, same request bytes, same duration) sent first
//! through hyper 1's `client::conn::http1` and then through the load generator itself.
//! Prints requests/s and CPU time per request for both. Run by `bench/loadgen.sh`.
//!
//! `cargo bench -p orchestrator --bench loadbench -- --url http://127.0.0.1:PORT [--conns 64] [--secs 5]`

use std::time::{Duration, Instant};

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use orchestrator::load::{
    run_phase, EngineOpts, LoadShape, PhasePlan, PreparedRequest, RequestSpec,
};

fn arg(name: &str, default: &str) -> String {
    let args: Vec<String> = std::env::args().collect();
    args.iter()
        .position(|a| a == name)
        .and_then(|i| args.get(i + 1).cloned())
        .unwrap_or_else(|| default.to_string())
}

fn cpu_now() -> f64 {
    let mut ru = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage writes into the zeroed struct we own.
    #[allow(unsafe_code)]
    let ru = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, ru.as_mut_ptr());
        ru.assume_init()
    };
    let t = |tv: libc::timeval| tv.tv_sec as f64 + tv.tv_usec as f64 / 1e6;
    t(ru.ru_utime) + t(ru.ru_stime)
}

#[derive(serde::Deserialize)]
struct Completion {
    #[allow(dead_code)]
    choices: serde::de::IgnoredAny,
}

async fn hyper_conn(req: PreparedRequest, body: Bytes, until: Instant) -> anyhow::Result<u64> {
    let stream = tokio::net::TcpStream::connect(req.endpoint.addr).await?;
    stream.set_nodelay(true)?;
    let (mut send, conn) =
        hyper::client::conn::http1::handshake(hyper_util::rt::TokioIo::new(stream)).await?;
    tokio::task::spawn_local(conn);
    let mut n = 0;
    while Instant::now() < until {
        let r = http::Request::post(req.endpoint.path.as_str())
            .header(
                "host",
                format!("{}:{}", req.endpoint.host, req.endpoint.port),
            )
            .header("content-type", "application/json")
            .body(Full::new(body.clone()))?;
        let resp = send.send_request(r).await?;
        let ok = resp.status().is_success();
        let bytes = resp.into_body().collect().await?.to_bytes();
        // The same validation the generator does: a JSON object with `choices`.
        let _: Completion = serde_json::from_slice(&bytes)?;
        if ok {
            n += 1;
        }
    }
    Ok(n)
}

fn main() -> anyhow::Result<()> {
    let url = arg("--url", "http://127.0.0.1:9000");
    let conns: u64 = arg("--conns", "64").parse().context("--conns")?;
    let secs: f64 = arg("--secs", "5").parse().context("--secs")?;
    let spec = RequestSpec::default();
    let req = PreparedRequest::new(&spec, &url)?;
    let body = Bytes::from(serde_json::to_vec(&spec.body_json())?);

    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()?;
    let local = tokio::task::LocalSet::new();
    let (c0, t0) = (cpu_now(), Instant::now());
    let until = t0 + Duration::from_secs_f64(secs);
    let total: u64 = local.block_on(&rt, async {
        let tasks: Vec<_> = (0..conns)
            .map(|_| tokio::task::spawn_local(hyper_conn(req.clone(), body.clone(), until)))
            .collect();
        let mut total = 0;
        for t in tasks {
            total += t.await??;
        }
        anyhow::Ok(total)
    })?;
    let (cpu, wall) = (cpu_now() - c0, t0.elapsed().as_secs_f64());
    println!(
        "hyper client::conn::http1: {:.0} requests/s, {:.2} µs CPU/request",
        total as f64 / wall,
        cpu * 1e6 / total as f64
    );

    let plan = PhasePlan {
        name: "bench".into(),
        shape: LoadShape::constant_vus(conns, Duration::from_secs_f64(secs)),
        requests: vec![("bench".into(), req)],
        timeout: Duration::from_secs(10),
        warmup: false,
    };
    let c0 = cpu_now();
    let out = run_phase(
        &plan,
        &EngineOpts {
            threads: 1,
            ..EngineOpts::default()
        },
    )?;
    let cpu = cpu_now() - c0;
    let r = &out.results[0];
    println!(
        "orchestrator load client:  {:.0} requests/s, {:.2} µs CPU/request",
        r.throughput.requests_per_s,
        cpu * 1e6 / r.requests.ok.max(1) as f64
    );
    Ok(())
}
