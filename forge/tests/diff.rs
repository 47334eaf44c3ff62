//! The baseline gate and CI annotations, on real runs of the real `forge`
//! binary: `tests/golden/diff/base/` and `new/` are the same suites (the
//! `command` runner on a shell script, the `echo` runner with `repeat`)
//! whose answers differ, so the run of `new/` against the run of `base/`
//! has a batch of every kind: newly failing, newly passing, answer changed,
//! a score drop, a significant pass-count drop (10 of 10 -> 3 of 10), one
//! that is not (6 of 6 -> 4 of 6), added and removed.
//!
//! Golden files (`tests/golden/diff/expected/`, `FORGE_BLESS=1 cargo test
//! -p forge-eval --test diff` rewrites them): `forge diff`'s text and JSON,
//! `forge run --baseline`'s console and JUnit, and under GitHub Actions the
//! exact annotation lines and the step summary. The p-values are checked
//! against scipy's `fisher_exact`, computed once.

#[path = "golden/support.rs"]
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use support::Fixture;

const BLESS: &str = "If the change is meant, rewrite them with `FORGE_BLESS=1 cargo test -p forge-eval --test diff` and review the diff.";

/// `scipy.stats.fisher_exact([[10, 0], [3, 7]], alternative="greater")`.
const P_STEADY: f64 = 0.001547987616099071;
/// `scipy.stats.fisher_exact([[6, 0], [4, 2]], alternative="greater")`.
const P_FLAKY: f64 = 0.2272727272727273;

fn fixture() -> Fixture {
    Fixture::at(concat!(env!("CARGO_MANIFEST_DIR"), "/tests/golden/diff"))
}

/// `forge` in the fixture's directory (so suite paths are `new/gate.yaml`),
/// with no GitHub variable of the host's.
fn forge(fixture: &Fixture) -> Command {
    let mut command = support::command(env!("CARGO_BIN_EXE_forge"), fixture, None);
    for var in [
        "GITHUB_ACTIONS",
        "GITHUB_STEP_SUMMARY",
        "GITHUB_WORKSPACE",
        "FORGE_BASELINE",
    ] {
        command.env_remove(var);
    }
    command
}

/// `forge run --quiet --out <tmp>/<name> ARGS...`, which must exit with
/// `status`.
fn run(fixture: &Fixture, tmp: &Path, name: &str, args: &[&str], status: i32) -> PathBuf {
    let out = tmp.join(name);
    let output = forge(fixture)
        .args(["run", "--quiet", "--out"])
        .arg(&out)
        .args(args)
        .output()
        .expect("run forge");
    assert_eq!(output.status.code(), Some(status), "{}", show(&output));
    out
}

/// `forge run --filter FILTER` of `base/` into `tmp/base` and of `new/`
/// into `tmp/new`, each exiting with its expected status.
fn run_filtered(fixture: &Fixture, tmp: &Path, filter: &str, (base, new): (i32, i32)) {
    run(fixture, tmp, "base", &["--filter", filter, "base"], base);
    run(fixture, tmp, "new", &["--filter", filter, "new"], new);
}

fn show(output: &Output) -> String {
    format!(
        "exit {:?}\n--- stdout\n{}--- stderr\n{}",
        output.status.code(),
        String::from_utf8_lossy(&output.stdout),
        String::from_utf8_lossy(&output.stderr)
    )
}

/// The runs of `base/` and `new/` (each with a failing batch: exit 1).
fn base_and_new(fixture: &Fixture, tmp: &Path) -> (PathBuf, PathBuf) {
    (
        run(fixture, tmp, "base", &["base"], 1),
        run(fixture, tmp, "new", &["new"], 1),
    )
}

/// `forge diff ARGS...` run in `tmp` (so the runs are `base` and `new`).
fn forge_diff(tmp: &Path, args: &[&str]) -> Output {
    forge(&fixture())
        .current_dir(tmp)
        .arg("diff")
        .args(args)
        .output()
        .expect("run forge diff")
}

/// `text` with `tmp` as `<TMP>` and the run's duration as `<s>`.
fn normalize(text: &str, tmp: &Path) -> String {
    support::normalize_console(text, tmp).replace(support::OUT, "<TMP>")
}

/// Entries of `forge run`'s stderr (a `FAILED` or `REGRESSED` line and its
/// continuation lines) sorted, as they come in completion order; the
/// `forge:` lines keep their order after them.
fn sort_entries(stderr: &str) -> String {
    let mut entries: Vec<String> = Vec::new();
    let mut rest = Vec::new();
    for line in stderr.lines() {
        if line.starts_with("FAILED ") || line.starts_with("REGRESSED ") {
            entries.push(line.to_owned());
        } else if line.starts_with("forge: ") || entries.is_empty() {
            rest.push(line);
        } else if let Some(last) = entries.last_mut() {
            last.push('\n');
            last.push_str(line);
        }
    }
    entries.sort();
    entries.extend(rest.iter().map(|l| l.to_string()));
    entries.iter().map(|e| format!("{e}\n")).collect()
}

fn golden(fixture: &Fixture, name: &str, actual: &str, mismatches: &mut Vec<String>) {
    if let Err(diff) = support::compare(&fixture.console(name), actual, true) {
        mismatches.push(diff);
    }
}

#[test]
fn forge_diff_lists_every_change_and_fails_on_the_regressions() {
    let fixture = fixture();
    let tmp = tempfile::tempdir().expect("temp dir");
    base_and_new(&fixture, tmp.path());
    let mut mismatches = Vec::new();
    let text = forge_diff(tmp.path(), &["base", "new"]);
    assert_eq!(text.status.code(), Some(1), "{}", show(&text));
    let transcript = support::transcript(
        "forge diff base new",
        &text,
        &String::from_utf8_lossy(&text.stdout),
        &String::from_utf8_lossy(&text.stderr),
    );
    golden(&fixture, "diff.txt", &transcript, &mut mismatches);
    let json = forge_diff(tmp.path(), &["--format", "json", "base", "new"]);
    assert_eq!(json.status.code(), Some(1), "{}", show(&json));
    let stdout = String::from_utf8_lossy(&json.stdout);
    golden(&fixture, "diff.json", &stdout, &mut mismatches);
    support::assert_no_mismatch(&mismatches, BLESS);

    let report: serde_json::Value = serde_json::from_str(&stdout).expect("JSON");
    let p = |test: &str| {
        let change = report["changes"]
            .as_array()
            .and_then(|c| c.iter().find(|c| c["test"] == test))
            .unwrap_or_else(|| panic!("{test} changed"));
        let kinds = change["kinds"].as_array().expect("kinds");
        let drop = kinds.iter().find(|k| k["kind"] == "pass_count_dropped");
        let drop = drop.expect("a pass-count drop");
        (
            drop["p_value"].as_f64().expect("p"),
            drop["significant"].clone(),
        )
    };
    let (steady, significant) = p("repeat::steady::q");
    assert!((steady - P_STEADY).abs() <= P_STEADY * 1e-9, "{steady}");
    assert_eq!(significant, true);
    let (flaky, significant) = p("repeat::flaky::q");
    assert!((flaky - P_FLAKY).abs() <= P_FLAKY * 1e-9, "{flaky}");
    assert_eq!(significant, false);
}

/// A repeated batch whose pass count dropped, not significantly, does not
/// fail the gate even though its verdict flipped; `--alpha` above its
/// p-value makes it a regression.
#[test]
fn a_drop_that_is_not_significant_does_not_fail_the_gate() {
    let fixture = fixture();
    let tmp = tempfile::tempdir().expect("temp dir");
    run_filtered(&fixture, tmp.path(), "repeat::flaky", (0, 1));
    let gate = forge_diff(tmp.path(), &["base", "new"]);
    assert_eq!(gate.status.code(), Some(0), "{}", show(&gate));
    let transcript = support::transcript(
        "forge diff base new  # both runs --filter repeat::flaky",
        &gate,
        &String::from_utf8_lossy(&gate.stdout),
        &String::from_utf8_lossy(&gate.stderr),
    );
    let mut mismatches = Vec::new();
    golden(&fixture, "diff-flaky.txt", &transcript, &mut mismatches);
    support::assert_no_mismatch(&mismatches, BLESS);
    let strict = forge_diff(tmp.path(), &["--alpha", "0.3", "base", "new"]);
    assert_eq!(strict.status.code(), Some(1), "{}", show(&strict));
    let stdout = String::from_utf8_lossy(&strict.stdout);
    assert!(
        stdout.contains("pass count dropped, significant (1):"),
        "{stdout}"
    );
}

/// A score drop is a regression only beyond `--score-drop` (here 0.333).
#[test]
fn score_drop_sets_the_threshold() {
    let fixture = fixture();
    let tmp = tempfile::tempdir().expect("temp dir");
    run_filtered(&fixture, tmp.path(), "gate::s::similar", (0, 0));
    let strict = forge_diff(tmp.path(), &["base", "new"]);
    assert_eq!(strict.status.code(), Some(1), "{}", show(&strict));
    let lenient = forge_diff(tmp.path(), &["--score-drop", "0.4", "base", "new"]);
    assert_eq!(lenient.status.code(), Some(0), "{}", show(&lenient));
    let stdout = String::from_utf8_lossy(&lenient.stdout);
    assert!(!stdout.contains("score dropped"), "{stdout}");
    assert!(stdout.contains("answer changed (1):"), "{stdout}");
}

/// What is not a run is refused with exit 2 and the path at fault; a part
/// file is a run.
#[test]
fn unusable_inputs_exit_2_naming_the_path() {
    let fixture = fixture();
    let tmp = tempfile::tempdir().expect("temp dir");
    let (_, new) = base_and_new(&fixture, tmp.path());
    std::fs::create_dir(tmp.path().join("empty")).expect("mkdir");
    let bad_part = tmp.path().join("bad.json");
    std::fs::write(&bad_part, "{\"forge_part\": 1, \"forge_version\"").expect("write");
    for (args, says) in [
        (["missing", "new"], "missing: no such file or directory"),
        (["empty", "new"], "empty: no forge run here"),
        (
            ["new/gate.json", "new"],
            "new/gate.json: missing field `forge_part`",
        ),
        (["bad.json", "new"], "bad.json: EOF while parsing"),
        (["new", "missing"], "missing: no such file or directory"),
    ] {
        let output = forge_diff(tmp.path(), &args);
        let stderr = String::from_utf8_lossy(&output.stderr);
        assert_eq!(output.status.code(), Some(2), "{args:?}: {}", show(&output));
        assert!(
            stderr.starts_with(&format!("forge: diff: {says}")),
            "{args:?}: {stderr}"
        );
        assert!(output.stdout.is_empty(), "{args:?}: {}", show(&output));
    }
    let part = new.join("parts").join("run.json");
    let same = forge_diff(tmp.path(), &[part.to_str().expect("utf-8"), "new"]);
    assert_eq!(same.status.code(), Some(0), "{}", show(&same));
    assert!(String::from_utf8_lossy(&same.stdout).ends_with("no regression\n"));
    // The shards of a matrix, downloaded side by side, are one run.
    let shards = tmp.path().join("shards");
    std::fs::create_dir(&shards).expect("mkdir");
    std::fs::rename(&new, shards.join("shard-1")).expect("move");
    let from_shards = forge_diff(tmp.path(), &["shards", "base"]);
    let stdout = String::from_utf8_lossy(&from_shards.stdout);
    assert!(
        stdout.contains("7 batches compared, 1 added, 1 removed"),
        "{stdout}"
    );
}

/// `forge run --baseline`: the console marks each regression (a failing
/// batch's line says it regressed; one that passes gets a `REGRESSED`
/// line), the JUnit failure says "regressed since baseline: ...", and the
/// exit status is the gate's: 1 here; 0 when only a flaky batch fails.
#[test]
fn forge_run_with_a_baseline_marks_regressions_and_gates() {
    let fixture = fixture();
    let tmp = tempfile::tempdir().expect("temp dir");
    let (base, _) = base_and_new(&fixture, tmp.path());
    let out = tmp.path().join("gated");
    let output = forge(&fixture)
        .args(["run", "--quiet", "--baseline"])
        .arg(&base)
        .arg("--out")
        .arg(&out)
        .arg("new")
        .output()
        .expect("run forge");
    let stdout = normalize(&String::from_utf8_lossy(&output.stdout), tmp.path());
    let stderr = normalize(&String::from_utf8_lossy(&output.stderr), tmp.path());
    let console = support::transcript(
        "forge run --quiet --baseline <TMP>/base --out <TMP>/gated new",
        &output,
        &stdout,
        &sort_entries(&stderr),
    );
    let mut mismatches = Vec::new();
    golden(&fixture, "run-baseline.txt", &console, &mut mismatches);
    let junit = std::fs::read_to_string(out.join("junit.xml")).expect("junit.xml");
    let junit = support::normalize_junit(&junit);
    golden(&fixture, "junit-baseline.xml", &junit, &mut mismatches);
    support::assert_no_mismatch(&mismatches, BLESS);
    assert_eq!(output.status.code(), Some(1));

    // The same failing batch, flaky against its own baseline: exit 0.
    let filter = ["--filter", "repeat::flaky", "base"];
    let flaky_base = run(&fixture, tmp.path(), "flaky-base", &filter, 0);
    let gated = forge(&fixture)
        .args(["run", "--quiet", "--filter", "repeat::flaky", "--out"])
        .arg(tmp.path().join("flaky-new"))
        .arg("--baseline")
        .arg(&flaky_base)
        .arg("new")
        .output()
        .expect("run forge");
    let stderr = String::from_utf8_lossy(&gated.stderr);
    assert_eq!(gated.status.code(), Some(0), "{}", show(&gated));
    assert!(
        stderr.contains("FAILED repeat::flaky::q: 4 of 6 runs passed"),
        "{stderr}"
    );
    assert!(
        stderr.contains("(not significant); now fails")
            || stderr.contains("since baseline: 6 of 6 -> 4 of 6"),
        "{stderr}"
    );
    assert!(
        stderr.contains(": 0 regressed, 1 not significant"),
        "{stderr}"
    );

    // A baseline that is not a run: exit 2 before anything runs.
    let missing = forge(&fixture)
        .args(["run", "--quiet", "--baseline", "no-such-dir", "--out"])
        .arg(tmp.path().join("never"))
        .arg("new")
        .output()
        .expect("run forge");
    assert_eq!(missing.status.code(), Some(2), "{}", show(&missing));
    assert!(String::from_utf8_lossy(&missing.stderr)
        .starts_with("forge: --baseline: no-such-dir: no such file or directory"));
    assert!(!tmp.path().join("never").exists());
}

/// Under GitHub Actions, `forge run` prints an `::error` line per failing
/// (or regressed) batch and per unloadable suite, paths relative to the
/// repository, and appends its summary to `$GITHUB_STEP_SUMMARY` (what the
/// earlier steps wrote is kept). Elsewhere, neither.
#[test]
fn under_github_actions_failures_are_annotated_and_summarised() {
    let fixture = fixture();
    let tmp = tempfile::tempdir().expect("temp dir");
    let (base, _) = base_and_new(&fixture, tmp.path());
    let summary = tmp.path().join("step-summary.md");
    let earlier = "# An earlier step\n\nIts own summary.\n\n";
    std::fs::write(&summary, earlier).expect("write");
    let repository = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let annotated = |github: bool| {
        let mut command = forge(&fixture);
        if github {
            command
                .env("GITHUB_ACTIONS", "true")
                .env("GITHUB_WORKSPACE", &repository);
        }
        command
            .env("GITHUB_STEP_SUMMARY", &summary)
            .args(["run", "--quiet", "--baseline"])
            .arg(&base)
            .arg("--out")
            .arg(tmp.path().join("ci"))
            .args(["new", "broken/bad.yaml"])
            .output()
            .expect("run forge")
    };
    let output = annotated(true);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let stdout = normalize(&String::from_utf8_lossy(&output.stdout), tmp.path());
    let written = std::fs::read_to_string(&summary).expect("the step summary");
    assert!(written.starts_with(earlier), "{written}");
    let mut mismatches = Vec::new();
    golden(&fixture, "annotations.txt", &stdout, &mut mismatches);
    golden(
        &fixture,
        "step-summary.md",
        &normalize(&written, tmp.path()),
        &mut mismatches,
    );
    support::assert_no_mismatch(&mismatches, BLESS);

    let plain = annotated(false);
    assert_eq!(plain.status.code(), Some(2), "{}", show(&plain));
    let stdout = String::from_utf8_lossy(&plain.stdout);
    assert!(!stdout.contains("::"), "{stdout}");
    let unchanged = std::fs::read_to_string(&summary).expect("the step summary");
    assert_eq!(unchanged, written, "appended to outside GitHub Actions");
}
