//! `report.html` in a real headless browser: Debian's `chromium`, driven by
//! Python Playwright (`tests/support/report_browser.py`), on the report of a
//! real `forge run` of a fixture with a passing, a failing and a repeated
//! batch. The page renders with no console error and no request but its
//! own file; filtering to failures shows the failing batch only; search
//! finds by query; the failing row opens to the answer beside the ground
//! truth with the differing words marked; a screenshot is not blank.
//! `forge report DIR -o FILE` writes the same page again. A suite with two
//! systems (`runners:`) shows them in columns, with the "since baseline"
//! column of `forge run --baseline`.
//!
//! Without chromium or Playwright the browser test is skipped with a note
//! on stderr; with `FORGE_REQUIRE_CHROMIUM=1` (as `.ci/run` sets) that is
//! a failure instead.

use std::path::{Path, PathBuf};
use std::process::Command;

use serde_json::Value;

/// The environment variable that turns a missing browser into a failure.
const REQUIRE: &str = "FORGE_REQUIRE_CHROMIUM";

/// The fixture: a passing batch, a failing one whose answer tries to close
/// the page's script element, one found by search, and a repeated batch.
const SHOP: &str = r#"
name: shop
runner: {type: echo, template: "The answer is {query}"}
datasets:
  - session_id: s1
    assistant_id: bot
    conversation:
      - qa_id: good
        query: Paris
        ground_truth_assistant: The answer is Paris
        expect: {contains: Paris}
      - qa_id: wrong
        query: "Lyon, surely </script><img src=x onerror=alert(1)>"
        ground_truth_assistant: The answer is Paris, surely
        agentic: {tools: [search]}
        expect: {contains: Paris}
      - qa_id: other
        query: Rome is lovely
        ground_truth_assistant: The answer is Rome is lovely
        expect: {contains: Rome}
"#;

/// Chromium, and a python3 with Playwright, when both are there.
fn browser() -> Option<PathBuf> {
    let chromium = std::env::var_os("FORGE_CHROMIUM")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from("/usr/bin/chromium"));
    let playwright = Command::new("python3")
        .args(["-c", "import playwright.sync_api"])
        .output()
        .is_ok_and(|o| o.status.success());
    if chromium.is_file() && playwright {
        return Some(chromium);
    }
    let required = std::env::var(REQUIRE).is_ok_and(|v| v == "1");
    assert!(
        !required,
        "{REQUIRE}=1 but {} or python3's playwright is missing: apt-get install chromium; pip install playwright",
        chromium.display()
    );
    eprintln!("note: skipped: no chromium or no playwright (apt-get install chromium; pip install playwright)");
    None
}

fn forge(dir: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .current_dir(dir)
        .args(args)
        .env_remove("FORGE_OUT_DIR")
        .env_remove("FORGE_PARTITION")
        .output()
        .expect("run forge")
}

/// `forge run` of the fixture and `suites/repeat.yaml` into `<dir>/out`.
fn run_fixture(dir: &Path) -> PathBuf {
    std::fs::write(dir.join("shop.yaml"), SHOP).expect("write fixture");
    let repeat = concat!(env!("CARGO_MANIFEST_DIR"), "/../suites/repeat.yaml");
    let run = forge(
        dir,
        &["run", "shop.yaml", repeat, "--quiet", "--out", "out"],
    );
    assert_eq!(run.status.code(), Some(1), "one batch fails: {run:?}");
    dir.join("out")
}

#[test]
fn the_report_works_in_a_real_browser() {
    let Some(chromium) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    let report = run_fixture(dir.path()).join("report.html");
    let screenshot = dir.path().join("report.png");
    let script = concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/tests/support/report_browser.py"
    );
    let output = Command::new("python3")
        .arg(script)
        .arg(&chromium)
        .arg(&report)
        .arg(&screenshot)
        .args(["rome", "shop::s1::wrong"])
        .output()
        .expect("run python3");
    assert!(output.status.success(), "{output:?}");
    let seen: Value = serde_json::from_slice(&output.stdout).expect("the script's JSON");
    let strings = |key: &str| -> Vec<String> {
        let list = seen[key]
            .as_array()
            .unwrap_or_else(|| panic!("{key}: {seen}"));
        list.iter()
            .map(|v| v.as_str().unwrap_or_default().to_owned())
            .collect()
    };
    assert_eq!(strings("console_errors"), Vec::<String>::new());
    let url = format!("file://{}", report.display());
    assert_eq!(strings("requests"), [url], "no request but the file itself");
    assert_eq!(
        strings("all"),
        [
            "shop::s1::good",
            "shop::s1::wrong",
            "shop::s1::other",
            "repeat::flaky::mostly"
        ]
    );
    assert_eq!(strings("failed"), ["shop::s1::wrong"]);
    assert_eq!(strings("searched"), ["shop::s1::other"]);
    let detail = seen["detail"].as_str().unwrap_or_default();
    assert!(detail.contains("The answer is Paris, surely"), "{detail}");
    assert!(detail.contains("does not contain \"Paris\""), "{detail}");
    assert!(detail.contains("\"search\""), "the agentic data: {detail}");
    assert_eq!(
        seen["query"],
        "Lyon, surely </script><img src=x onerror=alert(1)>"
    );
    assert_eq!(
        strings("answer_marks"),
        ["Lyon,", "</script><img", "src=x", "onerror=alert(1)>"]
    );
    assert_eq!(strings("truth_marks"), ["Paris,"]);
    assert_eq!(seen["details_open"], 4, "every row opens");
    assert_eq!(
        seen["injected"], 1,
        "no element from the answer, one script: the page's"
    );
    assert!(
        seen["colours"].as_u64().unwrap_or(0) > 20,
        "a blank screenshot: {seen}"
    );
    let png = std::fs::read(&screenshot).expect("screenshot");
    assert!(png.starts_with(b"\x89PNG"), "a PNG");
}

#[test]
fn forge_report_writes_the_same_page_again() {
    let dir = tempfile::tempdir().expect("temp dir");
    let out = run_fixture(dir.path());
    let written = std::fs::read_to_string(out.join("report.html")).expect("report.html");
    let again = forge(dir.path(), &["report", "out", "-o", "again.html"]);
    assert!(again.status.success(), "{again:?}");
    let regenerated = std::fs::read_to_string(dir.path().join("again.html")).expect("again.html");
    assert_eq!(regenerated, written);
    let default = forge(dir.path(), &["report", "out"]);
    assert!(default.status.success(), "{default:?}");
    let missing = forge(dir.path(), &["report", "nowhere"]);
    assert_eq!(missing.status.code(), Some(2), "{missing:?}");
    let stderr = String::from_utf8_lossy(&missing.stderr);
    assert!(stderr.contains("no forge run here"), "{stderr}");
}

/// Two systems of one suite, the second failing since a baseline run in
/// which both passed.
const DUO: &str = r#"
name: duo
runners:
  - {name: plain, type: echo}
  - {name: loud, type: echo, template: "{query}TAIL"}
datasets:
  - session_id: s
    assistant_id: a
    conversation:
      - {qa_id: q1, query: hi, ground_truth_assistant: hi, expect: {starts_with: hi}}
"#;

/// What a person sees of `report`'s batch tables in Chromium.
fn tables(chromium: &Path, report: &Path) -> Value {
    let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/support/report_table.py");
    let output = Command::new("python3")
        .arg(script)
        .arg(chromium)
        .arg(report)
        .output()
        .expect("run python3");
    assert!(output.status.success(), "{output:?}");
    serde_json::from_slice(&output.stdout).expect("the script's JSON")
}

#[test]
fn systems_side_by_side_and_the_baseline_column_in_a_real_browser() {
    let Some(chromium) = browser() else {
        return;
    };
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("duo.yaml"), DUO).expect("write");
    let base = forge(dir.path(), &["run", "duo.yaml", "--quiet", "--out", "base"]);
    assert_eq!(base.status.code(), Some(0), "{base:?}");
    std::fs::write(
        dir.path().join("duo.yaml"),
        DUO.replace("\"{query}TAIL\"", "\"TAIL{query}\""),
    )
    .expect("write");
    let args = [
        "run",
        "duo.yaml",
        "--quiet",
        "--out",
        "new",
        "--baseline",
        "base",
    ];
    let new = forge(dir.path(), &args);
    assert_eq!(new.status.code(), Some(1), "loud regressed: {new:?}");
    let report = dir.path().join("new/report.html");
    let seen = tables(&chromium, &report);
    assert_eq!(seen["console_errors"], serde_json::json!([]), "{seen}");
    let url = format!("file://{}", report.display());
    assert_eq!(seen["requests"], serde_json::json!([url]), "{seen}");
    let table = &seen["tables"][0];
    let header: Vec<&str> = table["header"]
        .as_array()
        .expect("a header")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(
        header[1..],
        ["batch", "plain", "loud", "since baseline"],
        "{seen}"
    );
    let row: Vec<&str> = table["rows"][0]
        .as_array()
        .expect("a row")
        .iter()
        .filter_map(Value::as_str)
        .collect();
    assert_eq!(row[1], "s::q1", "{seen}");
    assert!(
        row[2].starts_with("pass") && row[2].ends_with("hi"),
        "{seen}"
    );
    assert!(
        row[3].starts_with("fail") && row[3].ends_with("TAILhi"),
        "{seen}"
    );
    assert!(row[4].contains("regressed"), "{seen}");
}
