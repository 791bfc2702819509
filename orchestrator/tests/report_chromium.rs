//! Opens the HTML report in headless Chromium: the rendered DOM must hold every chart and
//! table, and the screenshot must show them. Fails when `chromium` (Debian package
//! `chromium`) is not installed.
#![allow(clippy::unwrap_used, clippy::expect_used)]

#[path = "fixtures/gen.rs"]
mod gen;

#[path = "fixtures/chromium.rs"]
mod chromium;

use chromium::chromium;

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
    // suites, plus the frontier chart, the throughput ramp's two scaling charts (requests/s
    // and p99 against virtual users) and, for the five suites with intervals (the ramp's
    // from its stages), requests/s and p99 per target as bars with error bars.
    assert_eq!(
        dom.matches("<svg").count(),
        5 * 5 + 1 + 2 + 5 * 2,
        "charts in the DOM"
    );
    // A whisker per target with a figure (litellm died before streaming and frontier).
    assert_eq!(dom.matches("class=\"whisker\"").count(), 5 * 2 * 4 - 2 * 2);
    assert!(dom.matches("<polyline").count() >= 5 * 5 * 2);
    // Tables: run info, targets, services, "Against the floor", one per suite, the phases of
    // overhead and frontier, the thresholds of baseline and overhead, the stages of the
    // throughput ramp, the frontier search.
    assert_eq!(
        dom.matches("<table").count(),
        3 + 1 + 5 + 2 + 2 + 1 + 1,
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
