//! Config files for containers on other machines. A bind mount names a path of the
//! engine's host, so a service on a remote engine cannot bind the repository's files: they
//! are copied into its container before it starts. The lab's configs address each other
//! as `127.0.0.1:<port>`; where a port belongs to a role reached at another address
//! (`LAB_ADDR_*`), the copy says that address instead, and a file that changes this way
//! is copied even on the local engine.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

use anyhow::Context;

use crate::docker::tar::TarBuilder;
use crate::lab::engines::LOOPBACK;
use crate::lab::stack::{self, Lab};

/// A file or directory to copy: the container directory it goes into, and the archive.
pub struct Copy {
    pub dir: String,
    pub tar: Vec<u8>,
}

/// Port → host of every service reached off loopback.
pub fn moved_ports(lab: &Lab) -> BTreeMap<u16, String> {
    lab.compose
        .services
        .values()
        .filter_map(|s| Some((stack::port_of(s)?, stack::host_of(s)?)))
        .filter(|(_, h)| h != LOOPBACK)
        .collect()
}

/// `text` with `127.0.0.1:<port>` pointed at the port's host for every moved port.
pub fn readdress(text: &str, moved: &BTreeMap<u16, String>) -> String {
    let mut out = text.to_string();
    for (port, host) in moved {
        out = out.replace(&format!("{LOOPBACK}:{port}"), &format!("{host}:{port}"));
    }
    out
}

/// Splits `binds` (`/abs/host:container[:ro]`) into those kept and those copied: every
/// read-only bind under `repo` when `remote`, else those whose text `readdress` changes.
/// A writable bind under `repo` is a data directory (the sink's): on a remote engine it is
/// dropped, and the data stays in the container.
pub fn split_binds(
    binds: Vec<String>,
    repo: &Path,
    remote: bool,
    moved: &BTreeMap<u16, String>,
) -> anyhow::Result<(Vec<String>, Vec<Copy>)> {
    let (mut kept, mut copies) = (Vec::new(), Vec::new());
    for b in binds {
        let mut parts = b.splitn(3, ':');
        let (host, target) = (parts.next().unwrap_or(""), parts.next().unwrap_or(""));
        let read_only = parts
            .next()
            .is_some_and(|o| o.split(',').any(|x| x == "ro"));
        let host_path = PathBuf::from(host);
        if !host_path.starts_with(repo) || target.is_empty() {
            kept.push(b);
            continue;
        }
        if !read_only {
            if !remote {
                kept.push(b);
            }
            continue;
        }
        let files = collect(&host_path, target)?;
        let changed = files.iter().any(|(_, data)| {
            readdress(&String::from_utf8_lossy(data), moved) != String::from_utf8_lossy(data)
        });
        if !remote && !changed {
            kept.push(b);
            continue;
        }
        copies.push(archive(files, moved)?);
    }
    Ok((kept, copies))
}

/// The files under `host` (a file or a directory) with their container paths.
fn collect(host: &Path, target: &str) -> anyhow::Result<Vec<(String, Vec<u8>)>> {
    if host.is_file() {
        let data = std::fs::read(host).with_context(|| format!("reading {}", host.display()))?;
        return Ok(vec![(target.to_string(), data)]);
    }
    let mut out = Vec::new();
    let entries = std::fs::read_dir(host).with_context(|| format!("reading {}", host.display()))?;
    for entry in entries {
        let entry = entry?;
        let inside = format!(
            "{}/{}",
            target.trim_end_matches('/'),
            entry.file_name().to_string_lossy()
        );
        out.extend(collect(&entry.path(), &inside)?);
    }
    Ok(out)
}

/// One archive rooted at `/` holding every file, readdressed.
fn archive(files: Vec<(String, Vec<u8>)>, moved: &BTreeMap<u16, String>) -> anyhow::Result<Copy> {
    let mut tar = TarBuilder::new();
    for (path, data) in files {
        let data = match std::str::from_utf8(&data) {
            Ok(text) => readdress(text, moved).into_bytes(),
            Err(_) => data,
        };
        tar.file(path.trim_start_matches('/'), 0o644, &data)?;
    }
    Ok(Copy {
        dir: "/".into(),
        tar: tar.finish(),
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn only_moved_ports_are_readdressed() {
        let moved = BTreeMap::from([(9000, "10.0.0.3".to_string())]);
        assert_eq!(
            readdress("a: http://127.0.0.1:9000/v1\nb: 127.0.0.1:9001\n", &moved),
            "a: http://10.0.0.3:9000/v1\nb: 127.0.0.1:9001\n"
        );
    }

    #[test]
    fn remote_engines_copy_repo_files_and_keep_host_paths() {
        let repo = std::env::temp_dir().join(format!("lab-copies-{}", std::process::id()));
        std::fs::create_dir_all(repo.join("cfg/sub")).unwrap();
        std::fs::write(repo.join("cfg/a.yaml"), "up: 127.0.0.1:9000\n").unwrap();
        std::fs::write(repo.join("cfg/sub/b.txt"), "x").unwrap();
        let binds = vec![
            format!("{}:/etc/app:ro", repo.join("cfg").display()),
            "/sys:/sys:ro".to_string(),
            format!("{}:/data", repo.join("cfg/sub").display()),
        ];
        let none = BTreeMap::new();
        let (kept, copies) = split_binds(binds.clone(), &repo, false, &none).unwrap();
        assert_eq!(
            (kept.len(), copies.len()),
            (3, 0),
            "local, nothing moved: binds"
        );
        let moved = BTreeMap::from([(9000, "10.0.0.3".to_string())]);
        let (kept, copies) = split_binds(binds.clone(), &repo, false, &moved).unwrap();
        assert_eq!(kept[0], "/sys:/sys:ro", "a moved address: copied");
        assert_eq!(kept.len(), 2, "the data directory stays bound locally");
        let (kept, copies2) = split_binds(binds, &repo, true, &none).unwrap();
        assert_eq!(kept.len(), 1, "remote: the data directory is dropped");
        let text = String::from_utf8_lossy(&copies[0].tar).to_string();
        assert!(text.contains("etc/app/a.yaml") && text.contains("etc/app/sub/b.txt"));
        assert!(text.contains("up: 10.0.0.3:9000"), "{text}");
        let text2 = String::from_utf8_lossy(&copies2[0].tar).to_string();
        assert!(
            text2.contains("up: 127.0.0.1:9000"),
            "remote, nothing moved: as is"
        );
        std::fs::remove_dir_all(&repo).unwrap();
    }
}
