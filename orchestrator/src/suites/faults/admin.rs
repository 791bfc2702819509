//! The mocks' admin API (`/__mock/faults`, `/__mock/stats`, see mock-upstream/README.md),
//! one base URL per deployment.

use std::time::Duration;

use serde::Deserialize;

use crate::load::LoadError;
use crate::suites::def::FaultSet;

/// The counters of `GET /__mock/stats` this suite reads (the mock sends more).
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct MockStats {
    pub completions: Completions,
    pub open_streams: u64,
    pub in_flight_requests: u64,
}

#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
pub struct Completions {
    pub total: u64,
}

/// Admin clients of the deployments, in order (A, B).
#[derive(Clone)]
pub struct MockAdmin {
    client: reqwest::Client,
    pub urls: Vec<String>,
}

impl MockAdmin {
    pub fn new(urls: &[String]) -> Result<Self, LoadError> {
        // No pooled connections: the client is used from several short-lived runtimes.
        let client = reqwest::Client::builder()
            .pool_max_idle_per_host(0)
            .timeout(Duration::from_secs(10))
            .build()
            .map_err(|e| LoadError::MockAdmin {
                url: urls.join(", "),
                why: e.to_string(),
            })?;
        Ok(Self {
            client,
            urls: urls
                .iter()
                .map(|u| u.trim_end_matches('/').into())
                .collect(),
        })
    }

    async fn send(&self, req: reqwest::RequestBuilder, url: &str) -> Result<String, LoadError> {
        let err = |why: String| LoadError::MockAdmin {
            url: url.to_string(),
            why,
        };
        let resp = req.send().await.map_err(|e| err(e.to_string()))?;
        let status = resp.status();
        let body = resp.text().await.map_err(|e| err(e.to_string()))?;
        if !status.is_success() {
            return Err(err(format!("answered {status}: {body}")));
        }
        Ok(body)
    }

    /// Sets deployment `i`'s faults (a partial update); an empty set changes nothing.
    pub async fn set(&self, i: usize, faults: &FaultSet) -> Result<(), LoadError> {
        if faults.is_empty() {
            return Ok(());
        }
        let url = format!("{}/__mock/faults", self.urls[i]);
        self.send(self.client.put(&url).json(faults), &url).await?;
        Ok(())
    }

    /// Restores every deployment's startup faults (no outage).
    pub async fn reset_all(&self) -> Result<(), LoadError> {
        for base in &self.urls {
            let url = format!("{base}/__mock/faults/reset");
            self.send(self.client.post(&url), &url).await?;
        }
        Ok(())
    }

    /// Every deployment's counters, in order.
    pub async fn stats(&self) -> Result<Vec<MockStats>, LoadError> {
        let mut out = Vec::with_capacity(self.urls.len());
        for base in &self.urls {
            let url = format!("{base}/__mock/stats");
            let body = self.send(self.client.get(&url), &url).await?;
            out.push(
                serde_json::from_str(&body).map_err(|e| LoadError::MockAdmin {
                    url: url.clone(),
                    why: format!("unexpected stats: {e}"),
                })?,
            );
        }
        Ok(out)
    }
}

/// A current-thread runtime for the admin calls and probes of one step.
pub fn runtime() -> Result<tokio::runtime::Runtime, LoadError> {
    tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(LoadError::Runtime)
}

/// Resets every deployment's faults when dropped: after each phase, and on an error,
/// a panic or an interruption, so later suites see healthy upstreams.
pub struct ResetOnDrop(pub MockAdmin);

impl Drop for ResetOnDrop {
    fn drop(&mut self) {
        if let Ok(rt) = runtime() {
            let _ = rt.block_on(self.0.reset_all());
        }
    }
}
