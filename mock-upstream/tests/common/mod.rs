//! Starts the real `mock-upstream` binary on port 0 and talks to it.

#![allow(dead_code, clippy::unwrap_used, clippy::expect_used)]

use std::io::{BufRead, BufReader};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

/// A running mock; killed on drop.
pub struct Mock {
    child: Child,
    /// `http://127.0.0.1:PORT`.
    pub base: String,
    /// Where the admin endpoints are: the `--admin-listen` address if given, else `base`.
    pub admin_base: String,
}

impl Mock {
    /// Starts the mock with extra command-line arguments; with `--admin-listen`, also
    /// reads the `admin listening on` line.
    pub fn start(args: &[&str]) -> Mock {
        let mut child = Command::new(env!("CARGO_BIN_EXE_mock-upstream"))
            .args(["--listen", "127.0.0.1:0", "--threads", "1"])
            .args(args)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit())
            .spawn()
            .expect("spawn mock-upstream");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout"));
        let base = format!("http://{}", read_addr(&mut stdout, "listening on "));
        let admin_base = if args.contains(&"--admin-listen") {
            format!("http://{}", read_addr(&mut stdout, "admin listening on "))
        } else {
            base.clone()
        };
        Mock {
            child,
            base,
            admin_base,
        }
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    /// `host:port` of the main port.
    pub fn addr(&self) -> &str {
        self.base.trim_start_matches("http://")
    }

    pub fn admin_url(&self, path: &str) -> String {
        format!("{}{path}", self.admin_base)
    }

    /// `PUT /__mock/faults` with `body`; the status and the JSON answer.
    pub async fn put_faults(&self, body: serde_json::Value) -> (u16, serde_json::Value) {
        let resp = client()
            .put(self.admin_url("/__mock/faults"))
            .json(&body)
            .send()
            .await
            .unwrap();
        (resp.status().as_u16(), resp.json().await.unwrap())
    }

    /// `GET /__mock/faults`.
    pub async fn faults(&self) -> serde_json::Value {
        get_json(&self.admin_url("/__mock/faults")).await
    }

    /// `GET /__mock/stats`.
    pub async fn stats(&self) -> serde_json::Value {
        get_json(&self.admin_url("/__mock/stats")).await
    }

    /// Value of one metrics line (`name{labels}`), 0 if absent.
    pub async fn metric(&self, series: &str) -> f64 {
        let text = client()
            .get(self.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .find_map(|l| {
                l.strip_prefix(series)
                    .and_then(|rest| rest.strip_prefix(' '))
            })
            .map_or(0.0, |v| v.trim().parse().unwrap())
    }
}

impl Drop for Mock {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Reads one stdout line and returns what follows `prefix`.
fn read_addr(stdout: &mut impl BufRead, prefix: &str) -> String {
    let mut line = String::new();
    stdout.read_line(&mut line).expect("read stdout");
    line.trim()
        .strip_prefix(prefix)
        .unwrap_or_else(|| panic!("expected a line starting {prefix:?}, got {line:?}"))
        .to_owned()
}

async fn get_json(url: &str) -> serde_json::Value {
    let resp = client().get(url).send().await.unwrap();
    assert_eq!(resp.status(), 200, "GET {url}");
    resp.json().await.unwrap()
}

/// A client with a bound on every request.
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .timeout(Duration::from_secs(10))
        .build()
        .unwrap()
}

/// A minimal chat body with the given extra JSON fields.
pub fn chat_body(extra: serde_json::Value) -> serde_json::Value {
    let mut body = serde_json::json!({
        "model": "gpt-4o-mini",
        "messages": [{"role": "user", "content": "say something nice"}]
    });
    if let (Some(b), Some(e)) = (body.as_object_mut(), extra.as_object()) {
        for (k, v) in e {
            b.insert(k.clone(), v.clone());
        }
    }
    body
}

/// Splits an SSE text into events (blank-line separated, empty ones dropped).
pub fn sse_events(text: &str) -> Vec<&str> {
    text.split("\n\n")
        .filter(|e| !e.trim().is_empty())
        .collect()
}
