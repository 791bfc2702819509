//! Opens the HTML report in headless Chromium: the rendered DOM must hold every chart and
//! table, and the screenshot must show them. Fails when `chromium` (Debian package
//! `chromium`) is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fixtures/gen.rs"]
mod gen;

use std::fs::File;
use std::path::Path;
use std::process::{Command, ExitStatus};
use std::time::{Duration, Instant};

/// Runs chromium headless with `args` on `url`, bounded to 90 s. Its output goes to files
/// (a dumped DOM overflows a pipe nobody reads while waiting).
fn chromium(profile: &Path, args: &[&str], url: &str) -> (ExitStatus, String, String) {
    std::fs::create_dir_all(profile).unwrap();
    let (out_path, err_path) = (profile.join("stdout"), profile.join("stderr"));
    let mut child = Command::new("chromium")
        .args([
            "--headless",
            "--no-sandbox",
            "--disable-gpu",
            "--hide-scrollbars",
        ])
        .arg(format!("--user-data-dir={}", profile.display()))
        .args(args)
        .arg(url)
        .stdout(File::create(&out_path).unwrap())
        .stderr(File::create(&err_path).unwrap())
        .spawn()
        .unwrap_or_else(|e| {
            panic!("cannot start chromium ({e}): install the Debian package `chromium`")
        });
    let deadline = Instant::now() + Duration::from_secs(90);
    loop {
        if let Some(status) = child.try_wait().unwrap() {
            let read = |p: &Path| String::from_utf8_lossy(&std::fs::read(p).unwrap()).into_owned();
            return (status, read(&out_path), read(&err_path));
        }
        if Instant::now() > deadline {
            let _ = child.kill();
            panic!("chromium did not finish within 90 s");
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn report_renders_in_chromium_with_every_chart_and_table() {
    let results = gen::temp_dir("chromium");
    let dir = gen::write_run(&results, "run-1", true, 1.0);
    let paths = orchestrator::report::render_run(&dir).unwrap();
    let url = format!("file://{}", paths.report_html.display());
    let html = std::fs::read_to_string(&paths.report_html).unwrap();
    // Self-contained: nothing to fetch (scripts, stylesheets, images, fonts, imports).
    for fetch in [
        "<script",
        "<link",
        "<img",
        "src=",
        "@import",
        "url(",
        "@font-face",
    ] {
        assert!(!html.contains(fetch), "report.html contains {fetch}");
    }

    let (status, dom, stderr) = chromium(&results.join("profile-dom"), &["--dump-dom"], &url);
    assert!(status.success(), "{stderr}");
    // Charts: latency curve, requests/s and p99 over time, CPU and memory for each of the five
    // suites, plus the frontier chart.
    assert_eq!(dom.matches("<svg").count(), 5 * 5 + 1, "charts in the DOM");
    assert!(dom.matches("<polyline").count() >= 5 * 5 * 2);
    // Tables: run info, targets, services, one per suite, the phases of overhead and frontier.
    assert_eq!(
        dom.matches("<table").count(),
        3 + 5 + 2,
        "tables in the DOM"
    );
    for suite in gen::SUITES {
        let start = dom.find(&format!("id=\"suite-{suite}\"")).unwrap();
        let section = &dom[start..];
        let table = &section[..section.find("</table>").unwrap()];
        assert!(
            table.matches("<tr").count() >= 12,
            "{suite}: rows in its table"
        );
    }
    assert!(dom.contains("611 µs"));
    assert!(dom.contains("⚠3"));

    let shot = results.join("report.png");
    let (status, _, stderr) = chromium(
        &results.join("profile-shot"),
        &[
            &format!("--screenshot={}", shot.display()),
            "--window-size=1280,4000",
        ],
        &url,
    );
    assert!(status.success(), "{stderr}");
    let decoder = png::Decoder::new(std::io::BufReader::new(std::fs::File::open(&shot).unwrap()));
    let mut reader = decoder.read_info().unwrap();
    let mut buf = vec![0; reader.output_buffer_size()];
    let info = reader.next_frame(&mut buf).unwrap();
    assert_eq!((info.width, info.height), (1280, 4000));
    let channels = info.color_type.samples();
    let pixels = buf[..info.buffer_size()].chunks(channels);
    let (mut dark, mut gateway_blue, mut litellm_orange, mut total) =
        (0usize, 0usize, 0usize, 0usize);
    for p in pixels {
        total += 1;
        let (r, g, b) = (p[0], p[1], p[2]);
        if r < 100 && g < 100 && b < 100 {
            dark += 1;
        }
        if r.abs_diff(0x25) < 12 && g.abs_diff(0x63) < 12 && b.abs_diff(0xeb) < 12 {
            gateway_blue += 1;
        }
        if r.abs_diff(0xea) < 12 && g.abs_diff(0x58) < 12 && b.abs_diff(0x0c) < 12 {
            litellm_orange += 1;
        }
    }
    // Text is drawn (not blank) and the chart lines in the target colours are visible.
    assert!(
        dark * 200 > total,
        "screenshot looks blank: {dark} dark pixels of {total}"
    );
    assert!(
        gateway_blue > 2000,
        "gateway's chart lines: {gateway_blue} pixels"
    );
    assert!(
        litellm_orange > 2000,
        "litellm's chart lines: {litellm_orange} pixels"
    );
}
