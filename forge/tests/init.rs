//! `forge init` through the real `forge` binary, and the scripted new user:
//! a crate made by `cargo new` outside this workspace, given forge by
//! `forge init --path`, goes green with `cargo test --test suites`.

use std::path::{Path, PathBuf};
use std::process::{Command, Output};

/// forge-eval's directory (its Cargo.toml), what `--path` names.
const FORGE_DIR: &str = env!("CARGO_MANIFEST_DIR");

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn show(output: &Output) -> String {
    format!(
        "status {}\nstdout:\n{}\nstderr:\n{}",
        output.status,
        text(&output.stdout),
        text(&output.stderr)
    )
}

fn forge_init(dir: &Path, args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("init")
        .args(args)
        .current_dir(dir)
        .output()
        .expect("run forge init")
}

/// cargo as the test's own cargo, free of what the surrounding `cargo test`
/// and the caller's environment set for forge (report directory, suites
/// directory, shards, cassettes).
fn cargo(dir: &Path) -> Command {
    let mut command = Command::new(std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into()));
    command.current_dir(dir);
    for (name, _) in std::env::vars_os() {
        let name = name.to_string_lossy();
        if name.starts_with("FORGE_") || name.starts_with("NEXTEST") {
            command.env_remove(&*name);
        }
    }
    command
}

/// `cargo new` in a fresh temporary directory, outside this workspace (so
/// cargo does not take it for a member).
fn new_crate() -> (tempfile::TempDir, PathBuf) {
    let temp = tempfile::tempdir().expect("temp dir");
    let workspace = Path::new(FORGE_DIR).parent().expect("workspace root");
    assert!(
        !temp.path().starts_with(workspace),
        "the temporary directory {} is inside the workspace",
        temp.path().display()
    );
    let output = cargo(temp.path())
        .args(["new", "--vcs", "none", "--name", "new_user", "new-user"])
        .output()
        .expect("run cargo new");
    assert!(output.status.success(), "cargo new: {}", show(&output));
    let app = temp.path().join("new-user");
    (temp, app)
}

/// The scripted new user (issue 19): `cargo new`, `forge init --path
/// <forge>`, `cargo test --test suites`: the suite `forge init` wrote passes
/// and its reports are under the new crate's `target/forge/`.
///
/// It compiles forge (no features) and its dependencies in a target dir of
/// their own, `target/new-user/` of this workspace, kept between runs so a
/// rerun compiles only the new crate's test target. How long it takes, on
/// this project's 2-core machine shared with other builds (load average 5
/// to 6): 128 s the first time (an empty `target/new-user/`), under 2 s
/// after. The new crate starts from this workspace's
/// Cargo.lock (cargo keeps the entries it uses), so it builds the dependency
/// versions forge is tested with, from the local registry cache.
#[test]
fn a_new_crate_goes_green_after_forge_init() {
    let (_temp, app) = new_crate();
    let workspace = Path::new(FORGE_DIR).parent().expect("workspace root");
    std::fs::copy(workspace.join("Cargo.lock"), app.join("Cargo.lock")).expect("copy Cargo.lock");

    let init = forge_init(&app, &["--path", FORGE_DIR]);
    assert!(init.status.success(), "forge init: {}", show(&init));
    let stdout = text(&init.stdout);
    assert!(
        stdout.contains("Next: cargo test --test suites"),
        "{stdout}"
    );

    let target = Path::new(env!("CARGO_TARGET_TMPDIR"))
        .parent()
        .expect("target dir")
        .join("new-user");
    let test = cargo(&app)
        .args(["test", "--test", "suites"])
        .env("CARGO_TARGET_DIR", &target)
        // No debug info: the point is the build, and it is a fraction of
        // the disk and link time.
        .env("CARGO_PROFILE_DEV_DEBUG", "false")
        .output()
        .expect("run cargo test");
    assert!(
        test.status.success(),
        "cargo test --test suites: {}",
        show(&test)
    );
    let stdout = text(&test.stdout);
    assert!(
        stdout.contains("test hello::greetings::first ... ok"),
        "{}",
        show(&test)
    );

    let reports = app.join("target/forge");
    let summary = std::fs::read_to_string(reports.join("hello.json")).expect("hello.json");
    assert!(
        summary.contains("Hello! You asked: What can you do?"),
        "{summary}"
    );
    let junit = std::fs::read_to_string(reports.join("junit.xml")).expect("junit.xml");
    let document = roxmltree::Document::parse(&junit).expect("junit.xml parses");
    let suite = document
        .descendants()
        .find(|node| node.has_tag_name("testsuite"))
        .expect("a testsuite");
    assert_eq!(suite.attribute("name"), Some("hello"), "{junit}");
    assert_eq!(suite.attribute("tests"), Some("1"), "{junit}");
    assert_eq!(suite.attribute("failures"), Some("0"), "{junit}");
}

/// Everything `forge init` would write that exists already is listed, and
/// nothing changes: exit 2.
#[test]
fn forge_init_refuses_to_overwrite() {
    let temp = tempfile::tempdir().expect("temp dir");
    let app = temp.path();
    let manifest = "[package]\nname = \"app\"\nversion = \"0.1.0\"\n\n[[test]]\nname = \"suites\"\nharness = false\n";
    std::fs::write(app.join("Cargo.toml"), manifest).expect("Cargo.toml");
    std::fs::create_dir(app.join("tests")).expect("tests/");
    std::fs::write(app.join("tests/suites.rs"), "fn main() {}\n").expect("tests/suites.rs");

    let output = forge_init(app, &["--path", FORGE_DIR]);
    assert_eq!(output.status.code(), Some(2), "{}", show(&output));
    let stderr = text(&output.stderr);
    assert!(stderr.contains("refusing to overwrite"), "{stderr}");
    assert!(stderr.contains("  tests/suites.rs\n"), "{stderr}");
    assert!(
        stderr.contains("  Cargo.toml: [[test]] suites\n"),
        "{stderr}"
    );
    assert!(!stderr.contains("suites/hello.yaml"), "{stderr}");
    assert!(stderr.contains("nothing was changed"), "{stderr}");

    let after = std::fs::read_to_string(app.join("Cargo.toml")).expect("Cargo.toml");
    assert_eq!(after, manifest);
    let test = std::fs::read_to_string(app.join("tests/suites.rs")).expect("tests/suites.rs");
    assert_eq!(test, "fn main() {}\n");
    assert!(!app.join("suites").exists());

    // A second `forge init` after a successful one refuses too.
    let (_temp, fresh) = new_crate();
    let first = forge_init(&fresh, &[]);
    assert!(first.status.success(), "{}", show(&first));
    let second = forge_init(&fresh, &[]);
    assert_eq!(second.status.code(), Some(2), "{}", show(&second));
    let stderr = text(&second.stderr);
    for item in [
        "tests/suites.rs",
        "suites/hello.yaml",
        "suite.schema.json",
        "Cargo.toml: [dev-dependencies] forge",
        "Cargo.toml: [[test]] suites",
    ] {
        assert!(stderr.contains(&format!("  {item}\n")), "{item}: {stderr}");
    }
}

/// Without `--path`, the dependency is the git form, the very line the
/// README's "Adopt forge in your crate" gives; with a `--path` that is not
/// forge, nothing is written.
#[test]
fn forge_init_writes_the_readme_dependency_and_checks_the_path() {
    let (_temp, app) = new_crate();
    let before = std::fs::read_to_string(app.join("Cargo.toml")).expect("Cargo.toml");

    let wrong = forge_init(&app, &["--path", "."]);
    assert_eq!(wrong.status.code(), Some(2), "{}", show(&wrong));
    assert!(
        text(&wrong.stderr).contains("is not forge's directory"),
        "{}",
        show(&wrong)
    );
    assert!(!app.join("tests").exists() && !app.join("suites").exists());

    let output = forge_init(&app, &[]);
    assert!(output.status.success(), "{}", show(&output));
    let manifest = std::fs::read_to_string(app.join("Cargo.toml")).expect("Cargo.toml");
    assert!(manifest.starts_with(&before), "{manifest}");
    let line = "forge = { package = \"forge-eval\", git = \"https://example.invalid/forge\" }";
    assert!(manifest.contains(line), "{manifest}");
    let readme =
        std::fs::read_to_string(Path::new(FORGE_DIR).join("../README.md")).expect("README");
    assert!(readme.contains(line), "the README does not give {line}");
    let suite = std::fs::read_to_string(app.join("suites/hello.yaml")).expect("hello.yaml");
    assert!(suite.contains("type: echo"), "{suite}");
    // The suite names the schema forge init wrote beside it, for editors.
    assert!(
        suite.starts_with("# yaml-language-server: $schema=../suite.schema.json\n"),
        "{suite}"
    );
    let schema = std::fs::read_to_string(app.join("suite.schema.json")).expect("schema");
    let schema: serde_json::Value = serde_json::from_str(&schema).expect("JSON");
    let suite: serde_json::Value = serde_yaml::from_str(&suite).expect("YAML");
    let validator = jsonschema::validator_for(&schema).expect("a JSON Schema");
    assert!(validator.is_valid(&suite));
}
