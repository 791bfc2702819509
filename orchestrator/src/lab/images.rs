//! Making every image the stack needs: pull the official one when a registry answers,
//! otherwise build locally ("offline mode"):
//! - `x-lab-build` services (gateway, mock): static binaries from this workspace in a
//!   `FROM scratch` image tagged `lab/<name>:<crate version>-<content hash>`, so an image is
//!   rebuilt only when its binary changed;
//! - `lab/debian:bookworm`: debootstrap (minbase) from the machine's own apt mirror;
//! - every other image (`lab/litellm`, `lab/prometheus`, `lab/victoria-metrics`, `lab/nginx`):
//!   the recipe its service declares under `x-lab-offline.build` in the compose file
//!   (Debian packages, then shell steps) run on that base in a host-networked build
//!   container, then committed. No recipe lives here: a new gateway needs no Rust change.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context};

use crate::docker::tar::TarBuilder;
use crate::docker::{ContainerSpec, Docker};
use crate::lab::compose::{Offline, OfflineBuild, Service};
use crate::lab::image_source::{ImageChoice, ImageMode};
use crate::lab::stack::Lab;

/// Base image every local non-Rust image starts from.
pub const DEBIAN_BASE: &str = "lab/debian:bookworm";

/// Makes (or finds) the image of every service in the lab.
pub async fn ensure_all(
    docker: &Docker,
    lab: &Lab,
    mode: ImageMode,
    pull_timeout: Duration,
) -> anyhow::Result<BTreeMap<String, ImageChoice>> {
    let mut out = BTreeMap::new();
    let mut registry_down = mode == ImageMode::Offline;
    let mut rust_built: Option<BTreeMap<String, PathBuf>> = None;
    for (name, svc) in &lab.compose.services {
        let choice = if let Some(bin) = &svc.build {
            if rust_built.is_none() {
                rust_built = Some(build_rust_binaries(lab, &lab.rust_binaries())?);
            }
            let path = rust_built
                .as_ref()
                .and_then(|m| m.get(bin))
                .with_context(|| format!("binary {bin} was not built"))?;
            scratch_image(docker, bin, path, &svc.image).await?
        } else {
            official_or_offline(
                docker,
                lab,
                name,
                svc,
                mode,
                &mut registry_down,
                pull_timeout,
            )
            .await?
        };
        match &choice.unavailable {
            Some(why) => crate::note!("image  {name:<14} unavailable: {why}"),
            None => crate::note!("image  {name:<14} {}", choice.image),
        }
        out.insert(name.clone(), choice);
    }
    Ok(out)
}

async fn official_or_offline(
    docker: &Docker,
    lab: &Lab,
    name: &str,
    svc: &Service,
    mode: ImageMode,
    registry_down: &mut bool,
    pull_timeout: Duration,
) -> anyhow::Result<ImageChoice> {
    let version = svc
        .image
        .rsplit_once(':')
        .map_or("latest", |(_, t)| t)
        .to_string();
    if mode != ImageMode::Offline {
        if let Some(id) = docker.image_id(&svc.image).await? {
            return Ok(ImageChoice {
                image: svc.image.clone(),
                image_id: Some(id),
                version,
                offline_variant: false,
                unavailable: None,
            });
        }
        if !*registry_down {
            crate::note!("pull   {}", svc.image);
            match docker.pull(&svc.image, pull_timeout).await {
                Ok(()) => {
                    return Ok(ImageChoice {
                        image: svc.image.clone(),
                        image_id: docker.image_id(&svc.image).await?,
                        version,
                        offline_variant: false,
                        unavailable: None,
                    })
                }
                Err(e) if mode == ImageMode::Auto => {
                    crate::note!("pull failed ({e}); building images locally (offline mode)");
                    *registry_down = true;
                }
                Err(e) => return Err(e.into()),
            }
        } else if mode == ImageMode::Online {
            bail!("{name}: image {} is not available", svc.image);
        }
    }
    let Some(off) = &svc.offline else {
        bail!(
            "{name}: image {} could not be pulled and the service has no `x-lab-offline` variant",
            svc.image
        );
    };
    if let Some(why) = &off.unavailable {
        return Ok(ImageChoice {
            image: svc.image.clone(),
            image_id: None,
            version,
            offline_variant: true,
            unavailable: Some(why.clone()),
        });
    }
    let image = off
        .image
        .clone()
        .with_context(|| format!("{name}: x-lab-offline needs `image` or `unavailable`"))?;
    let (repo, tag) = image
        .rsplit_once(':')
        .map_or((image.as_str(), "latest"), |(r, t)| (r, t));
    if docker.image_id(&image).await?.is_none() {
        build_offline(docker, lab, name, off, repo, tag).await?;
    }
    Ok(ImageChoice {
        image_id: docker.image_id(&image).await?,
        version: tag.to_string(),
        image,
        offline_variant: true,
        unavailable: None,
    })
}

/// Builds an offline image from its service's `x-lab-offline.build` recipe, in a container
/// of the Debian base image (host networking: apt reaches the host's mirror), committed
/// with the recipe's environment and the service's offline entrypoint.
async fn build_offline(
    docker: &Docker,
    lab: &Lab,
    name: &str,
    off: &Offline,
    repo: &str,
    tag: &str,
) -> anyhow::Result<()> {
    let Some(recipe) = &off.build else {
        bail!("{name}: image {repo}:{tag} is missing and its x-lab-offline has no `build` recipe");
    };
    ensure_debian_base(docker, lab).await?;
    let binds = if recipe.host_ca {
        vec![format!("{}:/host-ca.crt:ro", host_ca_bundle()?.display())]
    } else {
        Vec::new()
    };
    crate::note!("build  {repo}:{tag} (on {DEBIAN_BASE}; a few minutes the first time)");
    let spec = ContainerSpec {
        name: format!("{}-build-{}", lab.name, name),
        image: DEBIAN_BASE.into(),
        entrypoint: Some(vec!["/bin/sh".into(), "-c".into()]),
        cmd: Some(vec![build_script(recipe)]),
        binds,
        labels: lab.labels("build"),
        ..Default::default()
    };
    docker
        .run_and_commit(&spec, repo, tag, &commit_changes(recipe, off))
        .await
        .with_context(|| format!("building {repo}:{tag}"))?;
    Ok(())
}

/// The build container's shell script: the packages (with a `policy-rc.d` that keeps
/// their init scripts from starting a service on the host's network), then each `run`
/// step on its own line; the first failing step fails the build (`set -e`).
fn build_script(recipe: &OfflineBuild) -> String {
    let mut steps: Vec<String> = vec!["set -e".into()];
    if !recipe.debian_packages.is_empty() {
        steps.push(
            "printf '#!/bin/sh\\nexit 101\\n' > /usr/sbin/policy-rc.d && chmod 755 /usr/sbin/policy-rc.d"
                .into(),
        );
        steps.push(format!(
            "export DEBIAN_FRONTEND=noninteractive && apt-get update -qq && \
             apt-get install -y -qq --no-install-recommends {} && apt-get clean && \
             rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d",
            recipe.debian_packages.join(" ")
        ));
    }
    steps.extend(recipe.run.iter().cloned());
    steps.join("\n")
}

/// Dockerfile-style changes of the commit: `ENV` lines, the entrypoint, an empty `CMD`.
fn commit_changes(recipe: &OfflineBuild, off: &Offline) -> String {
    let mut lines: Vec<String> = recipe
        .env
        .iter()
        .map(|(k, v)| format!("ENV {k}={v}"))
        .collect();
    if let Some(ep) = &off.entrypoint {
        lines.push(format!(
            "ENTRYPOINT {}",
            serde_json::to_string(ep).unwrap_or_else(|_| "[]".into())
        ));
    }
    lines.push("CMD []".into());
    lines.join("\n")
}

/// The host's CA bundle, bind-mounted for pip inside build containers.
fn host_ca_bundle() -> anyhow::Result<PathBuf> {
    let p = PathBuf::from("/etc/ssl/certs/ca-certificates.crt");
    if p.exists() {
        Ok(p)
    } else {
        bail!(
            "{} not found: install ca-certificates (apt-get install ca-certificates)",
            p.display()
        )
    }
}

/// The apt mirror this machine uses, from `/etc/apt/sources.list.d/*.sources` (`URIs:`)
/// or `/etc/apt/sources.list` (`deb URL bookworm ...`).
pub fn apt_mirror() -> anyhow::Result<String> {
    let mut files: Vec<PathBuf> = std::fs::read_dir("/etc/apt/sources.list.d")
        .map(|d| {
            d.filter_map(|e| e.ok().map(|e| e.path()))
                .filter(|p| p.extension().is_some_and(|x| x == "sources"))
                .collect()
        })
        .unwrap_or_default();
    files.sort();
    for f in &files {
        let text = std::fs::read_to_string(f).unwrap_or_default();
        if let Some(m) = mirror_from_deb822(&text) {
            return Ok(m);
        }
    }
    let text = std::fs::read_to_string("/etc/apt/sources.list").unwrap_or_default();
    for line in text.lines() {
        let mut parts = line.split_whitespace();
        if parts.next() == Some("deb") {
            if let Some(url) = parts.find(|p| p.starts_with("http")) {
                if !url.contains("security") {
                    return Ok(url.to_string());
                }
            }
        }
    }
    bail!("no apt mirror found in /etc/apt/sources.list.d/*.sources or /etc/apt/sources.list (debootstrap needs one)")
}

/// The first `URIs:` of a deb822 stanza that is not the security archive.
fn mirror_from_deb822(text: &str) -> Option<String> {
    text.split("\n\n").find_map(|stanza| {
        let suites = stanza
            .lines()
            .find_map(|l| l.strip_prefix("Suites:"))
            .unwrap_or("");
        if suites.contains("security") {
            return None;
        }
        stanza
            .lines()
            .find_map(|l| l.strip_prefix("URIs:"))
            .and_then(|u| u.split_whitespace().next())
            .map(str::to_string)
    })
}

/// `lab/debian:bookworm` from debootstrap, imported as a root filesystem.
async fn ensure_debian_base(docker: &Docker, lab: &Lab) -> anyhow::Result<()> {
    if docker.image_id(DEBIAN_BASE).await?.is_some() {
        return Ok(());
    }
    let mirror = apt_mirror()?;
    let which = std::process::Command::new("sh")
        .args([
            "-c",
            "command -v debootstrap || test -x /usr/sbin/debootstrap",
        ])
        .output()?;
    if !which.status.success() {
        bail!("debootstrap is missing: install it with `sudo apt-get install debootstrap` (./run-benchmark does it for you)");
    }
    let dir = std::env::temp_dir().join(format!("{}-debootstrap-{}", lab.name, std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    crate::note!("build  {DEBIAN_BASE} (debootstrap --variant=minbase bookworm from {mirror})");
    let status = tokio::process::Command::new("debootstrap")
        .args(["--variant=minbase", "bookworm"])
        .arg(&dir)
        .arg(&mirror)
        .env(
            "PATH",
            "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
        )
        .stdout(std::process::Stdio::null())
        .status()
        .await
        .context("running debootstrap (it needs root)")?;
    if !status.success() {
        let _ = std::fs::remove_dir_all(&dir);
        bail!("debootstrap failed ({status}); it needs root and the mirror {mirror}");
    }
    let result = import_dir(docker, &dir).await;
    let _ = std::fs::remove_dir_all(&dir);
    result
}

async fn import_dir(docker: &Docker, dir: &Path) -> anyhow::Result<()> {
    let mut child = tokio::process::Command::new("tar")
        .arg("-C")
        .arg(dir)
        .args(["--numeric-owner", "-c", "."])
        .stdout(std::process::Stdio::piped())
        .spawn()
        .context("running tar")?;
    let stdout = child.stdout.take().context("tar has no stdout")?;
    let stream = tokio_util_stream(stdout);
    let (repo, tag) = DEBIAN_BASE
        .split_once(':')
        .unwrap_or((DEBIAN_BASE, "latest"));
    docker.import_rootfs(repo, tag, stream).await?;
    let status = child.wait().await?;
    if !status.success() {
        bail!("tar of the debootstrap tree failed ({status})");
    }
    Ok(())
}

/// Reads an async reader as a stream of byte chunks (ends after the first error).
fn tokio_util_stream(
    r: impl tokio::io::AsyncRead + Unpin + Send + 'static,
) -> impl futures_util::Stream<Item = Result<bytes::Bytes, std::io::Error>> + Send + 'static {
    use tokio::io::AsyncReadExt;
    futures_util::stream::unfold(Some(r), |state| async move {
        let mut r = state?;
        let mut buf = vec![0u8; 1 << 20];
        match r.read(&mut buf).await {
            Ok(0) => None,
            Ok(n) => {
                buf.truncate(n);
                Some((Ok(bytes::Bytes::from(buf)), Some(r)))
            }
            Err(e) => Some((Err(e), None)),
        }
    })
}

/// Builds the workspace's static binaries with cargo and returns their paths.
fn build_rust_binaries(lab: &Lab, bins: &[String]) -> anyhow::Result<BTreeMap<String, PathBuf>> {
    let args: Vec<&str> = bins.iter().flat_map(|b| ["-p", b.as_str()]).collect();
    let dir = cargo_static(lab, &args, &bins.join(", "))?;
    Ok(bins.iter().map(|b| (b.clone(), dir.join(b))).collect())
}

/// The load generator's binary (in the orchestrator's package), run by generator containers.
pub const GENERATOR_BIN: &str = "lab-generator";

/// Makes (or finds) the `FROM scratch` image of the load generator; returns its name.
pub async fn ensure_generator(docker: &Docker, lab: &Lab) -> anyhow::Result<String> {
    let dir = cargo_static(
        lab,
        &["-p", "orchestrator", "--bin", GENERATOR_BIN],
        GENERATOR_BIN,
    )?;
    let choice = scratch_image(docker, GENERATOR_BIN, &dir.join(GENERATOR_BIN), "").await?;
    crate::note!("image  {GENERATOR_BIN:<14} {}", choice.image);
    Ok(choice.image)
}

/// Runs `cargo build --release` of `args` as static binaries; returns the output directory.
fn cargo_static(lab: &Lab, args: &[&str], what: &str) -> anyhow::Result<PathBuf> {
    const TRIPLE: &str = "x86_64-unknown-linux-gnu";
    let target_dir = match std::env::var_os("CARGO_TARGET_DIR") {
        Some(d) if Path::new(&d).is_absolute() => PathBuf::from(d),
        Some(d) => lab.root.join(d),
        None => lab.root.join("target"),
    };
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = std::process::Command::new(&cargo);
    cmd.current_dir(&lab.root)
        .env("RUSTFLAGS", "-C target-feature=+crt-static")
        .env("CARGO_TARGET_DIR", &target_dir)
        .args(["build", "--release", "--quiet", "--target", TRIPLE])
        .args(args);
    crate::note!("build  static binaries {what} (cargo build --release --target {TRIPLE})");
    let status = cmd
        .status()
        .with_context(|| format!("running {}", Path::new(&cargo).display()))?;
    if !status.success() {
        bail!("cargo build of {what} failed ({status})");
    }
    Ok(target_dir.join(TRIPLE).join("release"))
}

/// FNV-1a 64 of the bytes, as hex: a content hash that is stable across builds of the
/// orchestrator (unlike std's hasher).
pub fn content_hash(data: &[u8]) -> String {
    let mut h: u64 = 0xcbf2_9ce4_8422_2325;
    for &b in data {
        h ^= u64::from(b);
        h = h.wrapping_mul(0x0000_0100_0000_01b3);
    }
    format!("{h:016x}")
}

/// A `FROM scratch` image holding one static binary, tagged by the binary's content hash;
/// the compose file's image name is tagged onto it too, for docker-compose users.
async fn scratch_image(
    docker: &Docker,
    bin: &str,
    path: &Path,
    compose_image: &str,
) -> anyhow::Result<ImageChoice> {
    let data = std::fs::read(path).with_context(|| format!("reading {}", path.display()))?;
    let version = env!("CARGO_PKG_VERSION");
    let repo = format!("lab/{bin}");
    let tag = format!("{version}-{}", &content_hash(&data)[..12]);
    let image = format!("{repo}:{tag}");
    if docker.image_id(&image).await?.is_none() {
        crate::note!("build  {image} (FROM scratch, {} bytes)", data.len());
        let mut t = TarBuilder::new();
        let dockerfile = format!("FROM scratch\nCOPY {bin} /{bin}\nENTRYPOINT [\"/{bin}\"]\n");
        t.file("Dockerfile", 0o644, dockerfile.as_bytes())?;
        t.file(bin, 0o755, &data)?;
        docker.build_from_tar(&image, t.finish()).await?;
    }
    if !compose_image.is_empty() && compose_image != image {
        if let Some((r, t)) = compose_image.rsplit_once(':') {
            docker.tag(&image, r, t).await?;
        }
    }
    Ok(ImageChoice {
        image_id: docker.image_id(&image).await?,
        image,
        version: version.to_string(),
        offline_variant: false,
        unavailable: None,
    })
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used)]
    use super::*;

    #[test]
    fn mirror_comes_from_the_first_non_security_stanza() {
        let text = "Types: deb\nURIs: http://mirror.example/debian\nSuites: bookworm bookworm-updates\n\n\
                    Types: deb\nURIs: http://mirror.example/debian-security\nSuites: bookworm-security\n";
        assert_eq!(
            mirror_from_deb822(text).as_deref(),
            Some("http://mirror.example/debian")
        );
        let sec_first = "Types: deb\nURIs: http://s/sec\nSuites: bookworm-security\n\nTypes: deb\nURIs: http://m/d\nSuites: bookworm\n";
        assert_eq!(mirror_from_deb822(sec_first).as_deref(), Some("http://m/d"));
    }

    #[test]
    fn content_hash_changes_with_content() {
        assert_ne!(content_hash(b"a"), content_hash(b"b"));
        assert_eq!(content_hash(b"a"), content_hash(b"a"));
        assert_eq!(content_hash(b"").len(), 16);
    }

    fn repo_service(name: &str) -> Service {
        use crate::lab::compose::{read_compose, read_env_file, Vars};
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        let v = Vars {
            file: read_env_file(&root.join(".env.benchmark")).unwrap(),
            ..Default::default()
        };
        let f = read_compose(&root.join("docker-compose.benchmark.yml"), &v).unwrap();
        f.services[name].clone()
    }

    fn recipe(name: &str) -> (Offline, OfflineBuild) {
        let off = repo_service(name).offline.unwrap();
        let b = off.build.clone().unwrap();
        (off, b)
    }

    #[test]
    fn packages_install_with_services_kept_from_starting() {
        let (_, b) = recipe("nginx");
        let script = build_script(&b);
        let policy = script.find("/usr/sbin/policy-rc.d").unwrap();
        let install = script
            .find("install -y -qq --no-install-recommends nginx-light")
            .unwrap();
        assert!(policy < install, "{script}");
        assert!(script.starts_with("set -e\n"), "{script}");
        assert!(script.contains("exit 101"), "{script}");
    }

    /// The recipes moved from Rust into the compose file keep the steps proven by hand.
    #[test]
    fn the_repo_recipes_keep_their_steps() {
        let (off, b) = recipe("litellm");
        let script = build_script(&b);
        assert!(
            script.contains("python3 python3-venv ca-certificates"),
            "{script}"
        );
        assert!(
            script.ends_with(
                "python3 -m venv /opt/litellm\nPIP_CERT=/host-ca.crt /opt/litellm/bin/pip install \
             --no-cache-dir -q 'litellm[proxy]==1.102.4' prometheus_client"
            ),
            "{script}"
        );
        assert!(b.host_ca);
        let changes = commit_changes(&b, &off);
        assert!(
            changes.starts_with("ENV PATH=/opt/litellm/bin:"),
            "{changes}"
        );
        assert!(changes.ends_with("ENTRYPOINT [\"/opt/litellm/bin/litellm\"]\nCMD []"));

        let (off, b) = recipe("prometheus");
        assert!(build_script(&b).ends_with(
            "cp -r /usr/share/doc/prometheus/examples/console_libraries /usr/share/prometheus/\n\
             sed -i -e 's#/classic/static/popper.js\"#/classic/static/popper.js/umd/popper.min.js\"#' \
             -e '/d3.layout.min.js/d' /usr/share/prometheus/console_libraries/prom.lib"
        ));
        assert_eq!(
            commit_changes(&b, &off),
            "ENTRYPOINT [\"/usr/bin/prometheus\"]\nCMD []"
        );
        let (_, b) = recipe("influxdb");
        assert!(build_script(&b).ends_with("victoria-metrics && apt-get clean && rm -rf /var/lib/apt/lists/* /usr/sbin/policy-rc.d\nmkdir -p /var/lib/victoria-metrics"));
    }
}
