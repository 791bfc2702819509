//! The dashboards of a lab run: the live page on `LAB_LIVE_PORT`, the cAdvisor stand-in on
//! cAdvisor's port when cAdvisor has no image, and the URLs printed when the run starts.
//! Neither may stop a run: when a port is taken the run goes on with a warning.

use std::collections::BTreeMap;
use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use crate::docker::Docker;
use crate::lab::image_source::ImageChoice;
use crate::lab::stack::{self, Lab};
use crate::live::{self, Links, Live, PlanItem, Server};
use crate::suites::{Profile, SuiteDef};

/// Path of the lab's Prometheus console (prometheus/consoles/lab.html).
pub const CONSOLE_PATH: &str = "/consoles/lab.html";
/// What the services table shows as cAdvisor's image when the stand-in served.
pub const STAND_IN_IMAGE: &str = "cAdvisor stand-in (the orchestrator)";
/// Default of `LAB_LIVE_PORT`.
pub const LIVE_PORT: &str = "8090";

/// The running dashboards; [`Watch::finish`] points the page at the report.
pub struct Watch {
    pub live: Live,
    /// `http://127.0.0.1:PORT/` when the page is served.
    pub page_url: Option<String>,
    /// Where the stand-in serves cAdvisor's metrics, when it runs.
    pub stand_in_url: Option<String>,
    /// Why a dashboard could not start (for the manifest's warnings).
    pub problems: Vec<String>,
    page: Option<Server>,
    exporter: Option<(Server, tokio::task::JoinHandle<()>)>,
}

/// Every (target, suite, repeat) in run order (rounds of repeats interleave the
/// targets), with its estimated duration.
pub fn plan_items(targets: &[String], suites: &[SuiteDef], profile: Profile) -> Vec<PlanItem> {
    let rounds = crate::suites::def::rounds(suites);
    (1..=rounds)
        .flat_map(|round| {
            targets.iter().flat_map(move |t| {
                suites
                    .iter()
                    .filter(move |s| s.repeats >= round)
                    .map(move |s| PlanItem {
                        target: t.clone(),
                        suite: repeat_label(&s.name, round, s.repeats),
                        estimate_s: s.estimated_duration(profile).as_secs_f64(),
                    })
            })
        })
        .collect()
}

/// A suite's name on the console and the live page: `overhead #2/3` for repeat 2 of 3,
/// the bare name when the suite runs once.
pub fn repeat_label(suite: &str, repeat: u32, repeats: u32) -> String {
    if repeats > 1 {
        format!("{suite} #{repeat}/{repeats}")
    } else {
        suite.to_string()
    }
}

fn loopback(port: u16) -> SocketAddr {
    SocketAddr::from((Ipv4Addr::LOCALHOST, port))
}

/// Starts the live page and, when cAdvisor is unavailable, the stand-in.
pub async fn start(
    lab: &Lab,
    docker: &Docker,
    choices: &BTreeMap<String, ImageChoice>,
    live: Live,
) -> Watch {
    let mut w = Watch {
        live: live.clone(),
        page_url: None,
        stand_in_url: None,
        problems: Vec::new(),
        page: None,
        exporter: None,
    };
    let cadvisor = lab.compose.services.get("cadvisor");
    let cadvisor_missing = choices
        .get("cadvisor")
        .is_some_and(|c| c.unavailable.is_some());
    if let Some(port) = cadvisor
        .and_then(stack::port_of)
        .filter(|_| cadvisor_missing)
    {
        match live::serve_exporter(loopback(port), docker.clone(), stack::LABEL, &lab.name).await {
            Ok(e) => {
                w.stand_in_url = Some(format!("http://127.0.0.1:{port}/metrics"));
                w.exporter = Some(e);
            }
            Err(e) => w.problems.push(format!("cAdvisor stand-in: {e}")),
        }
    }
    let port = lab.vars.get_or("LAB_LIVE_PORT", LIVE_PORT);
    match port.parse::<u16>() {
        Ok(p) => match live::serve_page(loopback(p), live.clone()).await {
            Ok(s) => {
                w.page_url = Some(format!("http://127.0.0.1:{}/", s.addr.port()));
                w.page = Some(s);
            }
            Err(e) => w.problems.push(format!("live page: {e}")),
        },
        Err(_) => w
            .problems
            .push(format!("LAB_LIVE_PORT: `{port}` is not a port number")),
    }
    live.set_links(links(lab, &w, cadvisor_missing));
    w
}

fn links(lab: &Lab, w: &Watch, cadvisor_missing: bool) -> Links {
    let url = |svc: &str| lab.compose.services.get(svc).and_then(stack::base_url);
    let prometheus = url("prometheus");
    let (cadvisor, cadvisor_by) = match (&w.stand_in_url, cadvisor_missing) {
        (Some(u), _) => (Some(u.clone()), Some("cAdvisor stand-in".to_string())),
        (None, false) => (
            url("cadvisor").map(|u| format!("{u}/containers/")),
            Some("cAdvisor".to_string()),
        ),
        (None, true) => (None, None),
    };
    Links {
        console: prometheus.as_ref().map(|p| format!("{p}{CONSOLE_PATH}")),
        prometheus,
        cadvisor,
        cadvisor_by,
    }
}

impl Watch {
    /// The lines printed when the run starts: where to watch it.
    pub fn banner(&self, lab: &Lab) -> Vec<String> {
        let mut out = Vec::new();
        if let Some(u) = &self.page_url {
            out.push(format!("live page:          {u}"));
        }
        if let Some(p) = lab
            .compose
            .services
            .get("prometheus")
            .and_then(stack::base_url)
        {
            out.push(format!("Prometheus console: {p}{CONSOLE_PATH}"));
            out.push(format!("Prometheus UI:      {p}/graph"));
        }
        if let Some(u) = &self.stand_in_url {
            out.push(format!(
                "container metrics:  {u} (cAdvisor stand-in: Docker stats under cAdvisor's names)"
            ));
        }
        out
    }

    /// The run is over: the page shows its status and links to the report, and stays
    /// up for `linger` so an open page can pick that up before the process exits.
    pub async fn finish(self, status: &str, report: Option<&Path>, linger: Duration) {
        self.live.finished(status, report);
        if self.page.is_some() {
            tokio::time::sleep(linger).await;
        }
        if let Some((_, watcher)) = &self.exporter {
            watcher.abort();
        }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;
    use crate::suites::SuitesFile;

    #[test]
    fn repeats_run_in_rounds_that_interleave_the_targets() {
        let file = SuitesFile::builtin().unwrap();
        let suites: Vec<SuiteDef> = ["baseline", "sustained", "overhead"]
            .iter()
            .map(|n| file.suite(n).unwrap())
            .collect();
        assert_eq!(
            suites.iter().map(|s| s.repeats).collect::<Vec<_>>(),
            [3, 1, 3]
        );
        let targets = vec!["direct".to_string(), "gateway".to_string()];
        let items = plan_items(&targets, &suites, Profile::Quick);
        let order: Vec<String> = items
            .iter()
            .map(|i| format!("{}/{}", i.target, i.suite))
            .collect();
        assert_eq!(
            order,
            [
                "direct/baseline #1/3",
                "direct/sustained",
                "direct/overhead #1/3",
                "gateway/baseline #1/3",
                "gateway/sustained",
                "gateway/overhead #1/3",
                "direct/baseline #2/3",
                "direct/overhead #2/3",
                "gateway/baseline #2/3",
                "gateway/overhead #2/3",
                "direct/baseline #3/3",
                "direct/overhead #3/3",
                "gateway/baseline #3/3",
                "gateway/overhead #3/3",
            ]
        );
    }
}
