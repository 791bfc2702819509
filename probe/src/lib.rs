//! `--probe URL`: a tiny blocking HTTP/1.1 GET used as the container's healthcheck, shared by
//! the `gateway` and `mock-upstream` binaries.
//! The image is `FROM scratch` (no shell, no curl), so the binary probes itself:
//! success means the URL answered 2xx within the timeout.

use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::{TcpStream, ToSocketAddrs as _};
use std::time::Duration;

/// Bound on the connect, and on each write and read.
pub const TIMEOUT: Duration = Duration::from_secs(2);

/// Why a probe failed.
#[derive(Debug, thiserror::Error)]
pub enum ProbeError {
    #[error("bad probe URL {url:?}: {reason}")]
    BadUrl { url: String, reason: String },
    #[error("cannot resolve {authority}: {err}")]
    Resolve {
        authority: String,
        err: std::io::Error,
    },
    #[error("cannot connect to {authority}: {err}")]
    Connect {
        authority: String,
        err: std::io::Error,
    },
    #[error("{url}: {err}")]
    Io { url: String, err: std::io::Error },
    #[error("{url}: the answer has no HTTP status line (got {line:?})")]
    NoStatusLine { url: String, line: String },
    #[error("{url}: answered {status}, not 2xx")]
    Status { url: String, status: u16 },
}

/// A parsed `http://host[:port][/path]` URL.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProbeUrl {
    /// `host:port` as written (port 80 added when absent); also the `Host` header.
    pub authority: String,
    /// Path and query, `/` when absent.
    pub path: String,
}

impl ProbeUrl {
    /// Parses an `http://` URL; any other scheme, userinfo or a bad port is an error.
    pub fn parse(url: &str) -> Result<Self, ProbeError> {
        let bad = |reason: String| ProbeError::BadUrl {
            url: url.to_string(),
            reason,
        };
        let rest = match url.split_once("://") {
            Some((scheme, rest)) if scheme.eq_ignore_ascii_case("http") => rest,
            Some((scheme, _)) => {
                return Err(bad(format!("only http:// is supported, not `{scheme}://`")))
            }
            None => return Err(bad("want http://HOST:PORT/PATH".into())),
        };
        let (authority, path) = match rest.find(['/', '?']) {
            Some(i) if rest[i..].starts_with('/') => (&rest[..i], rest[i..].to_string()),
            Some(i) => (&rest[..i], format!("/{}", &rest[i..])),
            None => (rest, "/".to_string()),
        };
        if authority.is_empty() {
            return Err(bad("no host".into()));
        }
        if authority.contains('@') {
            return Err(bad("user info (`user@`) is not supported".into()));
        }
        if path.contains('#') || path.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(
                "the path has a fragment, a space or a control character".into(),
            ));
        }
        let port = match authority.rsplit_once(':') {
            Some((_, p)) if !authority.ends_with(']') => Some(p),
            _ => None,
        };
        let authority = match port {
            Some(p) => {
                p.parse::<u16>()
                    .map_err(|_| bad(format!("port `{p}` is not a number in 0..=65535")))?;
                authority.to_string()
            }
            None => format!("{authority}:80"),
        };
        Ok(Self { authority, path })
    }
}

/// GETs `url` (HTTP/1.1, `Connection: close`) and succeeds on a 2xx status line.
pub fn probe(url: &str) -> Result<(), ProbeError> {
    let target = ProbeUrl::parse(url)?;
    let addrs: Vec<_> = target
        .authority
        .to_socket_addrs()
        .map_err(|err| ProbeError::Resolve {
            authority: target.authority.clone(),
            err,
        })?
        .collect();
    let mut last = std::io::Error::new(std::io::ErrorKind::NotFound, "no address");
    let mut stream = None;
    for addr in addrs {
        match TcpStream::connect_timeout(&addr, TIMEOUT) {
            Ok(s) => {
                stream = Some(s);
                break;
            }
            Err(e) => last = e,
        }
    }
    let stream = stream.ok_or_else(|| ProbeError::Connect {
        authority: target.authority.clone(),
        err: last,
    })?;
    let io = |err| ProbeError::Io {
        url: url.to_string(),
        err,
    };
    stream.set_read_timeout(Some(TIMEOUT)).map_err(io)?;
    stream.set_write_timeout(Some(TIMEOUT)).map_err(io)?;
    let request = format!(
        "GET {} HTTP/1.1\r\nHost: {}\r\nConnection: close\r\n\r\n",
        target.path, target.authority
    );
    (&stream).write_all(request.as_bytes()).map_err(io)?;
    let mut line = String::new();
    BufReader::new((&stream).take(1024))
        .read_line(&mut line)
        .map_err(io)?;
    let status = line
        .strip_prefix("HTTP/1.")
        .and_then(|r| r.get(2..5))
        .and_then(|s| s.parse::<u16>().ok())
        .ok_or_else(|| ProbeError::NoStatusLine {
            url: url.to_string(),
            line: line.trim_end().to_string(),
        })?;
    if (200..300).contains(&status) {
        Ok(())
    } else {
        Err(ProbeError::Status {
            url: url.to_string(),
            status,
        })
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn urls_parse_into_authority_and_path() {
        let u = ProbeUrl::parse("http://127.0.0.1:8080/health").unwrap();
        assert_eq!(u.authority, "127.0.0.1:8080");
        assert_eq!(u.path, "/health");
        let u = ProbeUrl::parse("HTTP://localhost").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path.as_str()),
            ("localhost:80", "/")
        );
        let u = ProbeUrl::parse("http://[::1]:9000?x=1").unwrap();
        assert_eq!(
            (u.authority.as_str(), u.path.as_str()),
            ("[::1]:9000", "/?x=1")
        );
        assert_eq!(
            ProbeUrl::parse("http://[::1]/h").unwrap().authority,
            "[::1]:80"
        );
    }

    #[test]
    fn bad_urls_say_what_is_wrong() {
        let msg = |u: &str| ProbeUrl::parse(u).unwrap_err().to_string();
        assert!(
            msg("https://x:1/").contains("only http:// is supported"),
            "{}",
            msg("https://x:1/")
        );
        assert!(msg("127.0.0.1:80/health").contains("want http://HOST:PORT/PATH"));
        assert!(msg("http:///health").contains("no host"));
        assert!(msg("http://h:99999/").contains("port `99999`"));
        assert!(msg("http://u@h:1/").contains("user info"));
        assert!(msg("http://h:1/a b").contains("space"));
    }
}
