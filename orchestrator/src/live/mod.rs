//! What people watch while `run` goes, served by the orchestrator itself on 127.0.0.1:
//! - the live lab page (`LAB_LIVE_PORT`): current target, suite, phase and time left, and
//!   per-second charts of every target measured so far in the current suite, polled from
//!   `/state` each second; when the run ends it links to the report ([`state`]);
//! - the cAdvisor stand-in on cAdvisor's port when its image cannot be had ([`exporter`]).
//!
//! Both are plain HTTP servers on the run's runtime ([`server`]); the page has no external
//! scripts, styles or fonts, so it works offline.

pub mod exporter;
pub mod server;
pub mod state;

use std::net::SocketAddr;
use std::sync::Arc;

use bytes::Bytes;

use crate::docker::Docker;
pub use server::{Reply, Server};
pub use state::{Links, Live, PlanItem};

/// Failures of the live servers (the run goes on without them).
#[derive(Debug, thiserror::Error)]
pub enum LiveError {
    #[error("cannot listen on {addr}: {source}")]
    Bind {
        addr: SocketAddr,
        #[source]
        source: std::io::Error,
    },
    #[error("rendering the live page: {0}")]
    Page(#[from] crate::report::ReportError),
}

/// Template of the live page (shares `style.css` with `report.html`).
pub const LIVE_TEMPLATE: &str = "live.html.j2";

/// The page's HTML: static; everything that changes comes from `/state`.
pub fn page_html(run_id: &str) -> Result<String, LiveError> {
    let env = crate::report::environment()?;
    let ctx = serde_json::json!({ "run_id": run_id, "poll_ms": 1000 });
    Ok(crate::report::render(&env, LIVE_TEMPLATE, &ctx)?)
}

/// Serves the live page for `live` on `addr`: `/`, `/state`, and `/report.html` once the
/// run has one.
pub async fn serve_page(addr: SocketAddr, live: Live) -> Result<Server, LiveError> {
    let page = Bytes::from(page_html(&live.run_id())?);
    let handler: server::Handler = Arc::new(move |path: &str| match path {
        "/" | "/index.html" => Reply::ok("text/html; charset=utf-8", page.clone()),
        "/state" => Reply::ok("application/json", live.snapshot_json()),
        "/report.html" => live
            .report_path()
            .and_then(|p| std::fs::read(p).ok())
            .map_or_else(Reply::not_found, |b| {
                Reply::ok("text/html; charset=utf-8", b)
            }),
        // Browsers ask for one; a 404 would be the console's only error.
        "/favicon.ico" => Reply {
            status: 204,
            content_type: "image/x-icon",
            body: Bytes::new(),
        },
        _ => Reply::not_found(),
    });
    server::serve(addr, handler).await
}

/// The cAdvisor stand-in on `addr` (`/metrics`, `/healthz`), following every running
/// container labelled `key=value`. Stops when the returned server is dropped.
pub async fn serve_exporter(
    addr: SocketAddr,
    docker: Docker,
    key: &str,
    value: &str,
) -> Result<(Server, tokio::task::JoinHandle<()>), LiveError> {
    let readings = exporter::Readings::default();
    let watcher = tokio::spawn(exporter::watch(
        docker,
        key.to_string(),
        value.to_string(),
        readings.clone(),
    ));
    let handler: server::Handler = Arc::new(move |path: &str| {
        match path {
        "/metrics" => {
            let all = readings.all();
            let text = exporter::render(&all, |r| {
                r.pid.map(exporter::net_dev_of).unwrap_or_default()
            });
            Reply::ok("text/plain; version=0.0.4; charset=utf-8", text)
        }
        "/healthz" => Reply::ok("text/plain; charset=utf-8", "ok"),
        "/" => Reply::ok(
            "text/plain; charset=utf-8",
            "cAdvisor stand-in (the lab orchestrator): Docker stats under cAdvisor's metric names at /metrics\n",
        ),
        _ => Reply::not_found(),
    }
    });
    match server::serve(addr, handler).await {
        Ok(s) => Ok((s, watcher)),
        Err(e) => {
            watcher.abort();
            Err(e)
        }
    }
}
