//! `forge::harness!` in a test target built both ways, as Cargo builds
//! one: by rustc with `--test` (libtest's harness, a `[[test]]` without
//! `harness = false`) and without (`harness = false`). The first must fail
//! loudly with the fix, not run zero tests and say ok; the second runs the
//! suites. Compiled here with rustc against this build's forge (a second
//! Cargo build of forge's dependencies would take minutes).

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// A workspace with one member, `member`, whose `tests/suites.rs` holds
/// the one line a user writes, and a suite for it.
fn workspace() -> tempfile::TempDir {
    let root = tempfile::tempdir().expect("temp dir");
    let tests = root.path().join("member/tests");
    std::fs::create_dir_all(&tests).expect("mkdir");
    std::fs::write(tests.join("suites.rs"), "forge::harness!(\"suites\");\n").expect("write");
    let suites = root.path().join("member/suites");
    std::fs::create_dir_all(&suites).expect("mkdir");
    std::fs::write(
        suites.join("guarded.yaml"),
        "runner: {type: echo}\ndatasets:\n  - session_id: s\n    assistant_id: echo-bot\n    conversation:\n      - {qa_id: q1, query: hello, expect: {equals: hello}}\n",
    )
    .expect("write");
    root
}

/// The deps directory of this build and the newest forge rlib in it.
fn forge_rlib() -> (PathBuf, PathBuf) {
    let exe = std::env::current_exe().expect("test exe");
    let deps = exe.parent().expect("deps dir").to_owned();
    let rlib = std::fs::read_dir(&deps)
        .expect("read deps")
        .filter_map(Result::ok)
        .map(|e| e.path())
        .filter(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .is_some_and(|n| n.starts_with("libforge-") && n.ends_with(".rlib"))
        })
        .max_by_key(|p| std::fs::metadata(p).and_then(|m| m.modified()).ok())
        .expect("a forge rlib beside the test");
    (deps, rlib)
}

/// Compiles `member/tests/suites.rs` as the test crate `suites`, as Cargo
/// would from the workspace's root (with `--test` for libtest's harness).
fn compile(root: &Path, libtest: bool) -> PathBuf {
    let (deps, rlib) = forge_rlib();
    let out = root.join(if libtest {
        "with-libtest"
    } else {
        "harness-false"
    });
    let mut rustc = Command::new(std::env::var("RUSTC").unwrap_or_else(|_| "rustc".into()));
    rustc
        .current_dir(root)
        .env("CARGO_MANIFEST_DIR", root.join("member"))
        .args([
            "--edition",
            "2021",
            "--crate-name",
            "suites",
            "--crate-type",
            "bin",
        ])
        .arg("member/tests/suites.rs")
        .arg("--extern")
        .arg(format!("forge={}", rlib.display()))
        .arg("-L")
        .arg(format!("dependency={}", deps.display()))
        .arg("-o")
        .arg(&out);
    if libtest {
        rustc.arg("--test");
    }
    let output = rustc.output().expect("run rustc");
    assert!(
        output.status.success(),
        "rustc failed:\n{}",
        String::from_utf8_lossy(&output.stderr)
    );
    let warnings = String::from_utf8_lossy(&output.stderr);
    assert!(
        !warnings.contains("warning"),
        "the expansion warns:\n{warnings}"
    );
    out
}

fn run(exe: &Path, root: &Path, args: &[&str]) -> Output {
    Command::new(exe)
        .args(args)
        .current_dir(root.join("member"))
        .env("FORGE_OUT_DIR", root.join("out"))
        .env_remove("FORGE_SUITES_DIR")
        .env_remove("FORGE_PARTITION")
        .env_remove("NEXTEST")
        .output()
        .expect("run the test target")
}

#[test]
fn without_harness_false_the_target_fails_with_the_fix() {
    let root = workspace();
    let exe = compile(root.path(), true);
    let output = run(&exe, root.path(), &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(101), "{stdout}");
    assert!(
        stdout.contains("test forge_harness_needs_harness_false ... FAILED"),
        "{stdout}"
    );
    assert!(stdout.contains("no suite ran"), "{stdout}");
    assert!(
        stdout
            .contains("[[test]]\nname = \"suites\"\npath = \"tests/suites.rs\"\nharness = false\n"),
        "the fix names the target and its path in its package:\n{stdout}"
    );
    assert!(
        stdout.contains("1 passed; 1 failed") || stdout.contains("0 passed; 1 failed"),
        "{stdout}"
    );
    assert!(!root.path().join("out").exists(), "nothing ran");
}

#[test]
fn with_harness_false_the_suites_run_and_the_guard_is_not_compiled() {
    let root = workspace();
    let exe = compile(root.path(), false);
    let list = run(&exe, root.path(), &["--list"]);
    let listed = String::from_utf8_lossy(&list.stdout);
    assert_eq!(listed.trim(), "guarded::s::q1: test", "{listed}");
    let output = run(&exe, root.path(), &[]);
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert_eq!(output.status.code(), Some(0), "{stdout}");
    assert!(stdout.contains("test guarded::s::q1 ... ok"), "{stdout}");
    assert!(
        !stdout.contains("forge_harness_needs_harness_false"),
        "{stdout}"
    );
    assert!(root.path().join("out/guarded.json").is_file());
}
