//! Where a Docker engine is: the local one, a unix socket, `tcp://` (TLS from
//! `DOCKER_CERT_PATH` when `DOCKER_TLS_VERIFY` or `DOCKER_CERT_PATH` is set), `ssh://`, or
//! the name of a `docker context`.

use std::path::{Path, PathBuf};

use super::DockerError;

/// The TLS files of a `tcp://` engine (`ca.pem`, `cert.pem`, `key.pem`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsFiles {
    pub dir: PathBuf,
}

/// One Docker engine's address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// `DOCKER_HOST`, else the local socket: the engine the orchestrator builds images on.
    Local,
    Unix(PathBuf),
    Tcp {
        addr: String,
        tls: Option<TlsFiles>,
    },
    Ssh(String),
}

impl Endpoint {
    /// Parses `""`/`local`, `unix://PATH`, `tcp://HOST:PORT`, `ssh://[USER@]HOST[:PORT]`,
    /// or a context name (looked up under `$DOCKER_CONFIG`, default `~/.docker`).
    pub fn parse(text: &str) -> Result<Self, DockerError> {
        let text = text.trim();
        let bad = |why: String| DockerError::Failed {
            what: format!("engine `{text}`"),
            message: why,
        };
        if text.is_empty() || text == "local" {
            return Ok(Endpoint::Local);
        }
        if let Some(path) = text.strip_prefix("unix://") {
            return Ok(Endpoint::Unix(PathBuf::from(path)));
        }
        if let Some(addr) = text.strip_prefix("tcp://") {
            if !addr.contains(':') {
                return Err(bad("a tcp:// engine needs a port (tcp://HOST:2376)".into()));
            }
            return Ok(Endpoint::Tcp {
                addr: addr.trim_end_matches('/').to_string(),
                tls: tls_from_env(),
            });
        }
        if text.starts_with("ssh://") {
            return Ok(Endpoint::Ssh(text.to_string()));
        }
        if text.contains("://") {
            return Err(bad(
                "use unix://, tcp://, ssh://, `local` or a docker context name".into(),
            ));
        }
        from_context(text, &docker_config_dir()).map_err(bad)
    }

    /// How the endpoint is shown in messages and the manifest.
    pub fn label(&self) -> String {
        match self {
            Endpoint::Local => std::env::var("DOCKER_HOST")
                .ok()
                .filter(|h| !h.is_empty())
                .unwrap_or_else(|| "unix:///var/run/docker.sock".into()),
            Endpoint::Unix(p) => format!("unix://{}", p.display()),
            Endpoint::Tcp { addr, tls } => {
                format!("tcp://{addr}{}", if tls.is_some() { " (TLS)" } else { "" })
            }
            Endpoint::Ssh(s) => s.clone(),
        }
    }
}

/// TLS for `tcp://` engines, as the docker CLI decides it.
fn tls_from_env() -> Option<TlsFiles> {
    let set = |k: &str| std::env::var(k).ok().filter(|v| !v.is_empty());
    if set("DOCKER_TLS_VERIFY").is_none() && set("DOCKER_CERT_PATH").is_none() {
        return None;
    }
    let dir = set("DOCKER_CERT_PATH")
        .map(PathBuf::from)
        .unwrap_or_else(docker_config_dir);
    Some(TlsFiles { dir })
}

fn docker_config_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("DOCKER_CONFIG").filter(|d| !d.is_empty()) {
        return PathBuf::from(d);
    }
    let home = std::env::var_os("HOME").unwrap_or_else(|| "/root".into());
    Path::new(&home).join(".docker")
}

/// Resolves a `docker context` by name: `contexts/meta/<id>/meta.json` holds its host,
/// `contexts/tls/<id>/docker/` its TLS files when it has some.
fn from_context(name: &str, config: &Path) -> Result<Endpoint, String> {
    let meta = config.join("contexts").join("meta");
    let entries = std::fs::read_dir(&meta).map_err(|e| {
        format!("not an engine URL, and no docker context directory at {} ({e}): use unix://, tcp://, ssh:// or `local`", meta.display())
    })?;
    for entry in entries.flatten() {
        let Ok(text) = std::fs::read_to_string(entry.path().join("meta.json")) else {
            continue;
        };
        let Ok(json) = serde_json::from_str::<serde_json::Value>(&text) else {
            continue;
        };
        if json["Name"].as_str() != Some(name) {
            continue;
        }
        let host = json["Endpoints"]["docker"]["Host"]
            .as_str()
            .ok_or_else(|| format!("docker context `{name}` names no docker host"))?;
        let mut ep = Endpoint::parse(host).map_err(|e| e.to_string())?;
        let tls = config
            .join("contexts")
            .join("tls")
            .join(entry.file_name())
            .join("docker");
        if let Endpoint::Tcp { tls: t, .. } = &mut ep {
            if tls.join("ca.pem").is_file() {
                *t = Some(TlsFiles { dir: tls });
            }
        }
        return Ok(ep);
    }
    Err(format!(
        "no docker context named `{name}` in {} (`docker context ls` lists them)",
        meta.display()
    ))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn urls_parse_and_bad_ones_are_named() {
        assert_eq!(Endpoint::parse("").unwrap(), Endpoint::Local);
        assert_eq!(Endpoint::parse("local").unwrap(), Endpoint::Local);
        assert_eq!(
            Endpoint::parse("unix:///tmp/d2/docker.sock").unwrap(),
            Endpoint::Unix("/tmp/d2/docker.sock".into())
        );
        assert_eq!(
            Endpoint::parse("ssh://lab@10.0.0.2").unwrap(),
            Endpoint::Ssh("ssh://lab@10.0.0.2".into())
        );
        assert!(matches!(
            Endpoint::parse("tcp://10.0.0.2:2376").unwrap(),
            Endpoint::Tcp { ref addr, .. } if addr == "10.0.0.2:2376"
        ));
        let e = Endpoint::parse("tcp://10.0.0.2").unwrap_err().to_string();
        assert!(e.contains("needs a port"), "{e}");
        let e = Endpoint::parse("http://x:1").unwrap_err().to_string();
        assert!(e.contains("engine `http://x:1`"), "{e}");
    }

    #[test]
    fn contexts_resolve_by_name_with_their_tls_files() {
        let dir = std::env::temp_dir().join(format!("lab-ctx-{}", std::process::id()));
        let id = "0123abcd";
        let meta = dir.join("contexts/meta").join(id);
        std::fs::create_dir_all(&meta).unwrap();
        std::fs::write(
            meta.join("meta.json"),
            r#"{"Name":"gw-box","Metadata":{},"Endpoints":{"docker":{"Host":"tcp://10.1.2.3:2376","SkipTLSVerify":false}}}"#,
        )
        .unwrap();
        let tls = dir.join("contexts/tls").join(id).join("docker");
        std::fs::create_dir_all(&tls).unwrap();
        std::fs::write(tls.join("ca.pem"), "x").unwrap();
        let ep = from_context("gw-box", &dir).unwrap();
        assert_eq!(
            ep,
            Endpoint::Tcp {
                addr: "10.1.2.3:2376".into(),
                tls: Some(TlsFiles { dir: tls })
            }
        );
        let e = from_context("nope", &dir).unwrap_err();
        assert!(e.contains("no docker context named `nope`"), "{e}");
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
