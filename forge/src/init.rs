//! `forge init [DIR] [--path PATH_TO_FORGE]`: adds forge to an existing
//! cargo crate. It adds the dev-dependency and the `[[test]]` entry to the
//! crate's Cargo.toml (edited with toml_edit, so the user's formatting and
//! comments stay), writes `tests/suites.rs` (the harness's one-line `main`)
//! and `suites/hello.yaml` (a suite on the offline `echo` runner), and
//! prints the next command. It overwrites nothing: when any of these exists
//! it lists them all, changes nothing and exits with 2.

use std::fmt::Write as _;
use std::io::Write as _;
use std::path::{Component, Path, PathBuf};

use clap::Args;
use thiserror::Error;
use toml_edit::{value, ArrayOfTables, DocumentMut, InlineTable, Item, Table};

/// forge's package on crates.io and in its repository.
const PACKAGE: &str = env!("CARGO_PKG_NAME");
/// The repository the git form of the dependency points at.
const REPOSITORY: &str = env!("CARGO_PKG_REPOSITORY");
/// The test target's name, file and suites directory.
const TEST_NAME: &str = "suites";
const TEST_FILE: &str = "tests/suites.rs";
const SUITE_FILE: &str = "suites/hello.yaml";
/// The suite format's JSON Schema, which the suite names for editors.
const SCHEMA_FILE: &str = "suite.schema.json";

const TEST_SOURCE: &str = r#"//! The YAML suites in suites/ as `cargo test` cases, one per batch, run by
//! forge's harness (`harness = false` in Cargo.toml). Added by `forge init`.

forge::harness!("suites");
"#;

const SUITE_SOURCE: &str = r#"# yaml-language-server: $schema=../suite.schema.json
# A first suite, added by `forge init`. It runs offline on the `echo`
# runner, which answers from a template; point `runner:` at your system
# (alquimia, openai, http, command, or your own #[forge_runner]) to test it.
name: hello
runner:
  type: echo
  template: "Hello! You asked: {query}"
datasets:
  - session_id: greetings
    assistant_id: echo-bot
    conversation:
      - qa_id: first
        query: What can you do?
        expect:
          contains: "You asked: What can you do?"
"#;

/// `forge init`'s arguments.
#[derive(Debug, Args)]
#[command(
    after_help = "Adds to the crate: the dev-dependency `forge = { package = \"forge-eval\", ... }` (by path with --path, else from git), a [[test]] target `suites` (harness = false), tests/suites.rs, suites/hello.yaml (the offline echo runner) and suite.schema.json (the suite format, for editors).\nNothing is overwritten: if any of them exists, forge init lists them, changes nothing and exits with 2."
)]
pub(crate) struct InitArgs {
    /// The crate to add forge to: the directory of its Cargo.toml.
    #[arg(default_value = ".", value_name = "DIR")]
    dir: PathBuf,
    /// Depend on forge by path: the directory of forge-eval's Cargo.toml
    /// (`forge/` in forge's repository). A relative path (from the working
    /// directory) is written relative to DIR, an absolute one as is.
    /// Default: forge's git repository.
    #[arg(long, value_name = "PATH_TO_FORGE")]
    path: Option<PathBuf>,
}

/// Why `forge init` changed nothing.
#[derive(Debug, Error)]
pub(crate) enum InitError {
    #[error("cannot read {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("{path} is not a valid Cargo.toml: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("{path} has no [package]: give the directory of a crate (`cargo new` makes one)")]
    NotACrate { path: PathBuf },
    #[error("{path} is not forge's directory: its Cargo.toml is not package `{PACKAGE}` (give the directory of forge-eval's Cargo.toml, `forge/` in forge's repository)")]
    NotForge { path: PathBuf },
    #[error("{path} is not valid UTF-8, which Cargo.toml needs")]
    NotUtf8 { path: PathBuf },
    #[error("refusing to overwrite what exists in {dir}:\n{}\nnothing was changed", list(.existing))]
    Exists { dir: PathBuf, existing: Vec<String> },
    #[error("cannot write {path}: {source}")]
    Write {
        path: PathBuf,
        source: std::io::Error,
    },
}

fn list(items: &[String]) -> String {
    items.iter().fold(String::new(), |mut text, item| {
        let _ = write!(text, "{}  {item}", if text.is_empty() { "" } else { "\n" });
        text
    })
}

/// `forge init`: 0 when forge was added, 2 when nothing was changed.
pub(crate) fn main(args: &InitArgs) -> Result<(), InitError> {
    let dependency = init(args)?;
    print_done(args, &dependency);
    Ok(())
}

/// Adds forge to the crate in `args.dir`; returns the dependency written.
fn init(args: &InitArgs) -> Result<String, InitError> {
    let manifest_path = args.dir.join("Cargo.toml");
    let mut manifest = read_manifest(&manifest_path)?;
    if !manifest.get("package").is_some_and(Item::is_table_like) {
        return Err(InitError::NotACrate {
            path: manifest_path,
        });
    }
    let dependency = dependency(args)?;
    let mut existing: Vec<String> = [TEST_FILE, SUITE_FILE, SCHEMA_FILE]
        .into_iter()
        .filter(|file| args.dir.join(file).exists())
        .map(String::from)
        .collect();
    existing.extend(manifest_conflicts(&manifest));
    if !existing.is_empty() {
        return Err(InitError::Exists {
            dir: args.dir.clone(),
            existing,
        });
    }
    let shown = dependency.to_string();
    add_to_manifest(&mut manifest, dependency);
    create(&args.dir.join(TEST_FILE), TEST_SOURCE)?;
    create(&args.dir.join(SUITE_FILE), SUITE_SOURCE)?;
    let schema = serde_json::to_string_pretty(&crate::suite::json_schema::suite_schema())
        .unwrap_or_default();
    create(&args.dir.join(SCHEMA_FILE), &format!("{schema}\n"))?;
    std::fs::write(&manifest_path, manifest.to_string()).map_err(|source| InitError::Write {
        path: manifest_path,
        source,
    })?;
    Ok(shown)
}

fn read_manifest(path: &Path) -> Result<DocumentMut, InitError> {
    let text = std::fs::read_to_string(path).map_err(|source| InitError::Read {
        path: path.to_owned(),
        source,
    })?;
    text.parse()
        .map_err(|error: toml_edit::TomlError| InitError::Parse {
            path: path.to_owned(),
            message: error.to_string().trim_end().to_owned(),
        })
}

/// `{ package = "forge-eval", path = "..." }` or `{ ..., git = "..." }`.
fn dependency(args: &InitArgs) -> Result<InlineTable, InitError> {
    let mut table = InlineTable::new();
    table.insert("package", PACKAGE.into());
    match &args.path {
        Some(path) => {
            let written = forge_path(&args.dir, path)?;
            let text = written.to_str().ok_or(InitError::NotUtf8 {
                path: written.clone(),
            })?;
            table.insert("path", text.into());
        }
        None => {
            table.insert("git", REPOSITORY.into());
        }
    }
    table.fmt();
    Ok(table)
}

/// The path to forge as the crate's Cargo.toml says it: relative to the
/// crate when given relative (from the working directory), else absolute.
fn forge_path(dir: &Path, given: &Path) -> Result<PathBuf, InitError> {
    let canonical = |path: &Path| {
        path.canonicalize().map_err(|source| InitError::Read {
            path: path.to_owned(),
            source,
        })
    };
    let forge = canonical(given)?;
    let manifest = read_manifest(&forge.join("Cargo.toml"))?;
    let name = manifest
        .get("package")
        .and_then(|package| package.get("name"))
        .and_then(Item::as_str);
    if name != Some(PACKAGE) {
        return Err(InitError::NotForge {
            path: given.to_owned(),
        });
    }
    if given.is_absolute() {
        return Ok(forge);
    }
    Ok(relative(&canonical(dir)?, &forge))
}

/// The path from directory `from` to `to`, both absolute.
fn relative(from: &Path, to: &Path) -> PathBuf {
    let from: Vec<Component> = from.components().collect();
    let to: Vec<Component> = to.components().collect();
    let common = from.iter().zip(&to).take_while(|(a, b)| a == b).count();
    let mut path: PathBuf = from[common..].iter().map(|_| "..").collect();
    path.extend(&to[common..]);
    if path.as_os_str().is_empty() {
        path.push(".");
    }
    path
}

/// What the crate's Cargo.toml already has of what `forge init` adds.
fn manifest_conflicts(manifest: &DocumentMut) -> Vec<String> {
    let mut conflicts = Vec::new();
    if let Some(dev) = manifest.get("dev-dependencies") {
        for key in ["forge", PACKAGE] {
            if dev.get(key).is_some() {
                conflicts.push(format!("Cargo.toml: [dev-dependencies] {key}"));
            }
        }
    }
    let named_suites = |test: &Table| test.get("name").and_then(Item::as_str) == Some(TEST_NAME);
    match manifest.get("test") {
        None => {}
        Some(Item::ArrayOfTables(tests)) if !tests.iter().any(named_suites) => {}
        Some(Item::ArrayOfTables(_)) => conflicts.push(format!("Cargo.toml: [[test]] {TEST_NAME}")),
        Some(_) => conflicts.push("Cargo.toml: `test` (not [[test]] tables)".into()),
    }
    conflicts
}

/// Adds the dev-dependency and the `[[test]]` entry; the rest of the
/// document keeps its text.
fn add_to_manifest(manifest: &mut DocumentMut, dependency: InlineTable) {
    let dev = manifest
        .entry("dev-dependencies")
        .or_insert_with(|| Item::Table(Table::new()));
    if let Some(dev) = dev.as_table_like_mut() {
        dev.insert("forge", value(dependency));
    }
    let mut test = Table::new();
    test.insert("name", value(TEST_NAME));
    test.insert("path", value(TEST_FILE));
    test.insert("harness", value(false));
    let tests = manifest
        .entry("test")
        .or_insert_with(|| Item::ArrayOfTables(ArrayOfTables::new()));
    if let Some(tests) = tests.as_array_of_tables_mut() {
        tests.push(test);
    }
}

/// Writes a new file, never over an existing one.
fn create(path: &Path, text: &str) -> Result<(), InitError> {
    let error = |source| InitError::Write {
        path: path.to_owned(),
        source,
    };
    if let Some(parent) = path.parent() {
        std::fs::create_dir_all(parent).map_err(error)?;
    }
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .open(path)
        .map_err(error)?;
    file.write_all(text.as_bytes()).map_err(error)
}

fn print_done(args: &InitArgs, dependency: &str) {
    let dir = &args.dir;
    let form = match args.path {
        Some(_) => "by path",
        None => "from forge's git repository; --path PATH_TO_FORGE for a local checkout",
    };
    let next = if dir == Path::new(".") {
        "cargo test --test suites".to_owned()
    } else {
        format!("cd {} && cargo test --test suites", dir.display())
    };
    println!(
        "forge init: added forge to {dir}/Cargo.toml:\n\
         \x20 [dev-dependencies] forge = {dependency}\n\
         \x20   ({form})\n\
         \x20 [[test]] {TEST_NAME} (harness = false)\n\
         and wrote:\n\
         \x20 {TEST_FILE}    the test target: each batch of suites/*.yaml is a cargo test\n\
         \x20 {SUITE_FILE}  a suite on the offline `echo` runner\n\
         \x20 {SCHEMA_FILE}  the suite format, for editors (`forge schema` prints it)\n\
         Next: {next}",
        dir = dir.display(),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What `cargo new` writes, with a comment and odd spacing of the user's.
    const NEW_CRATE: &str = "[package]\nname = \"app\"   # mine\nversion = \"0.1.0\"\nedition = \"2024\"\n\n[dependencies]\n";

    #[test]
    fn adds_the_dependency_and_the_test_target_keeping_the_rest() {
        let mut manifest: DocumentMut = NEW_CRATE.parse().unwrap();
        assert!(manifest_conflicts(&manifest).is_empty());
        let mut dependency = InlineTable::new();
        dependency.insert("package", PACKAGE.into());
        dependency.insert("path", "../forge".into());
        add_to_manifest(&mut manifest, dependency);
        let text = manifest.to_string();
        assert!(text.starts_with(NEW_CRATE), "{text}");
        let added: DocumentMut = text.parse().unwrap();
        assert_eq!(
            added["dev-dependencies"]["forge"]["package"].as_str(),
            Some("forge-eval")
        );
        assert_eq!(added["test"][0]["harness"].as_bool(), Some(false));
        assert_eq!(
            manifest_conflicts(&added),
            [
                "Cargo.toml: [dev-dependencies] forge",
                "Cargo.toml: [[test]] suites"
            ]
        );
    }

    #[test]
    fn a_dev_dependency_table_that_exists_is_extended() {
        let mut manifest: DocumentMut = "[package]\nname = \"app\"\n\n[dev-dependencies]\nserde = \"1\"\n\n[features]\nx = []\n"
            .parse()
            .unwrap();
        add_to_manifest(&mut manifest, InlineTable::new());
        let text = manifest.to_string();
        assert!(
            text.contains("[dev-dependencies]\nserde = \"1\"\nforge = {}\n\n[features]"),
            "{text}"
        );
    }

    #[test]
    fn relative_paths() {
        assert_eq!(
            relative(Path::new("/a/b/app"), Path::new("/a/forge/forge")),
            Path::new("../../forge/forge")
        );
        assert_eq!(
            relative(Path::new("/a"), Path::new("/a/forge")),
            Path::new("forge")
        );
        assert_eq!(relative(Path::new("/a"), Path::new("/a")), Path::new("."));
    }
}
