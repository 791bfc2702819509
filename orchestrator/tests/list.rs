//! `orchestrator list` names every target of the compose file and every suite of the
//! suites file (the real binary, no Docker).
#![allow(clippy::unwrap_used, clippy::expect_used)]

use std::path::Path;
use std::process::Command;

use orchestrator::suites::SuitesFile;

#[test]
fn list_names_every_target_suite_and_profile() {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = Command::new(env!("CARGO_BIN_EXE_orchestrator"))
        .args(["list", "--root", root.to_str().unwrap()])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success(), "{err}");
    let names: Vec<&str> = text
        .lines()
        .filter_map(|l| l.strip_prefix("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    for target in ["direct", "gateway", "litellm"] {
        assert!(names.contains(&target), "{target} missing:\n{text}");
    }
    // Services that are not targets are not offered as targets.
    assert!(
        !names.contains(&"prometheus") && !names.contains(&"redis"),
        "{text}"
    );
    // Governed variants say which target they govern and how to run them.
    let gov = text
        .lines()
        .find(|l| l.trim_start().starts_with("litellm-governed "))
        .unwrap_or_default();
    assert!(
        gov.contains("governed variant of litellm (--lane governed|both)"),
        "{text}"
    );
    let file = SuitesFile::load(&root.join("orchestrator/suites.yaml")).unwrap();
    for suite in file.suites {
        let line = text
            .lines()
            .find(|l| l.split_whitespace().next() == Some(suite.name.as_str()))
            .unwrap_or_else(|| panic!("suite {} missing:\n{text}", suite.name));
        assert!(line.contains(&suite.description), "{line}");
        let repeated = format!("Repeated {} times.", suite.repeats);
        assert_eq!(line.contains(&repeated), suite.repeats > 1, "{line}");
    }
    for profile in ["quick", "full"] {
        assert!(names.contains(&profile), "{profile} missing:\n{text}");
    }
}
