//! `junit.xml` validates against Jenkins' JUnit schema (`tests/junit/`,
//! see its README for the source and license), written by the real `forge`
//! binary for suites with every kind of test case: passing, failing a check
//! (with a ground truth), failing in the runner, skipped (`ignore: true`),
//! from a dataset file, and of suites that cannot be loaded (a bad key, a
//! runner that cannot be built: both load errors).
//!
//! The schema is checked with Python's `xmlschema` (`pip install
//! xmlschema`; `.ci/run` installs it). Without it the test is skipped with a
//! note on stderr, so that `cargo test` passes on a fresh machine; with
//! `FORGE_REQUIRE_XMLSCHEMA=1` (as `.ci/run` sets) a missing `xmlschema`
//! fails the test instead.

use std::path::Path;
use std::process::Command;

/// The environment variable that turns a missing `xmlschema` into a failure.
const REQUIRE: &str = "FORGE_REQUIRE_XMLSCHEMA";

/// Validates `argv[2]` against `argv[1]`, once the attributes the schema
/// predates are removed (see `tests/junit/README.md`).
const VALIDATE: &str = r#"
import sys, xml.etree.ElementTree as ET, xmlschema
schema = xmlschema.XMLSchema(sys.argv[1])
tree = ET.parse(sys.argv[2])
root = tree.getroot()
root.attrib.pop("skipped", None)
for case in root.iter("testcase"):
    case.attrib.pop("file", None)
    case.attrib.pop("line", None)
errors = [str(e) for e in schema.iter_errors(tree)]
for e in errors:
    print(e)
sys.exit(1 if errors else 0)
"#;

/// Whether python3 can import xmlschema; when not, `REQUIRE` decides.
fn xmlschema_available() -> bool {
    let found = Command::new("python3")
        .args(["-c", "import xmlschema"])
        .output()
        .is_ok_and(|o| o.status.success());
    if !found {
        let required = std::env::var(REQUIRE).is_ok_and(|v| v == "1");
        assert!(
            !required,
            "{REQUIRE}=1 but python3 cannot import xmlschema: pip install xmlschema"
        );
        eprintln!("note: skipped: python3 cannot import xmlschema (pip install xmlschema)");
    }
    found
}

fn write(dir: &Path, name: &str, text: &str) {
    std::fs::write(dir.join(name), text).expect("write fixture");
}

/// Suites with every kind of test case.
fn fixture(dir: &Path) {
    write(
        dir,
        "mixed.yaml",
        "name: mixed\nrunner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: bot\n    conversation:\n      - {qa_id: ok, query: Paris, expect: {contains: Paris}}\n      - qa_id: wrong\n        query: \"Rome\\nand more <tags> & 'quotes'\"\n        ground_truth_assistant: Paris\n        expect: {contains: Paris}\n      - {qa_id: later, query: x, ignore: true}\n  - file: data.jsonl\n",
    );
    write(
        dir,
        "data.jsonl",
        "{\"session_id\": \"f\", \"assistant_id\": \"bot\", \"conversation\": [{\"qa_id\": \"q1\", \"query\": \"from a file\"}]}\n",
    );
    write(
        dir,
        "broken.yaml",
        "name: broken\nrunner: {type: command}\ndatasets:\n  - session_id: b\n    assistant_id: bot\n    conversation: [{qa_id: q1, query: x}]\n",
    );
    write(
        dir,
        "unloadable.yaml",
        "runner: {type: echo}\ndatasets:\n  - session_id: u\n    conversation: [{qa_id: q1, qurey: x}]\n",
    );
}

#[test]
fn junit_xml_validates_against_jenkins_junit_schema() {
    if !xmlschema_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    fixture(dir.path());
    let out = dir.path().join("out");
    let run = Command::new(env!("CARGO_BIN_EXE_forge"))
        .current_dir(dir.path())
        .args([
            "run",
            "mixed.yaml",
            "broken.yaml",
            "unloadable.yaml",
            "--quiet",
            "--out",
        ])
        .arg(&out)
        .env_remove("FORGE_OUT_DIR")
        .env_remove("FORGE_PARTITION")
        .output()
        .expect("run forge");
    assert_eq!(run.status.code(), Some(2), "{run:?}");
    let junit = out.join("junit.xml");
    let text = std::fs::read_to_string(&junit).expect("junit.xml");
    for kind in ["<failure", "<error", "<skipped", " line=\""] {
        assert!(
            text.contains(kind),
            "no {kind} in the fixture's report:\n{text}"
        );
    }
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/junit/junit-10.xsd");
    let validated = Command::new("python3")
        .args(["-c", VALIDATE, schema])
        .arg(&junit)
        .output()
        .expect("run python3");
    assert!(
        validated.status.success(),
        "junit.xml does not validate:\n{}{}\n{text}",
        String::from_utf8_lossy(&validated.stdout),
        String::from_utf8_lossy(&validated.stderr)
    );
}

/// The validation can fail: a report the schema rejects (a `<testcase>`
/// without its required `name`) is caught.
#[test]
fn the_schema_check_rejects_an_invalid_report() {
    if !xmlschema_available() {
        return;
    }
    let dir = tempfile::tempdir().expect("temp dir");
    let junit = dir.path().join("junit.xml");
    write(
        dir.path(),
        "junit.xml",
        "<testsuites><testsuite name=\"a\" tests=\"1\" failures=\"0\" errors=\"0\"><testcase classname=\"a\"/></testsuite></testsuites>",
    );
    let schema = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/junit/junit-10.xsd");
    let validated = Command::new("python3")
        .args(["-c", VALIDATE, schema])
        .arg(&junit)
        .output()
        .expect("run python3");
    assert!(!validated.status.success(), "{validated:?}");
}
