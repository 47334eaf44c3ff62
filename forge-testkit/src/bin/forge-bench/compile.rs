//! Compile time of a user's harness target: a minimal crate made by
//! `forge init --path FORGE` (the one-line `tests/suites.rs`, an `echo`
//! suite), built cold with a fresh target directory, then again after a
//! one-line change of its test file.

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Instant;

/// The `compile` subcommand: builds the user crate's tests twice and prints
/// both wall times. `forge` is forge-eval's directory (default: this
/// workspace's `forge/`); its workspace's Cargo.lock pins the versions.
pub fn run(forge: Option<PathBuf>, keep: bool) -> Result<(), String> {
    let forge = match forge {
        Some(dir) => dir,
        None => Path::new(env!("CARGO_MANIFEST_DIR")).join("../forge"),
    };
    let forge = forge
        .canonicalize()
        .map_err(|e| format!("{}: {e}", forge.display()))?;
    let lock = forge
        .parent()
        .map(|root| root.join("Cargo.lock"))
        .ok_or("forge's directory has no parent")?;
    let dir = tempfile::Builder::new()
        .prefix("forge-compile-")
        .tempdir()
        .map_err(|e| e.to_string())?;
    let user = dir.path().join("user");
    make_crate(&user, &forge, &lock, dir.path())?;
    let target = dir.path().join("target");
    println!(
        "compile: a minimal crate using forge-eval ({}) by path, default features; target {}",
        forge.display(),
        target.display()
    );
    let cold = build(&user, &target)?;
    println!("cold build (cargo build --tests, fresh target dir): {cold:.1} s");
    let test_file = user.join("tests/suites.rs");
    let mut text = std::fs::read_to_string(&test_file).map_err(|e| e.to_string())?;
    text.push_str("// a one-line change\n");
    std::fs::write(&test_file, text).map_err(|e| e.to_string())?;
    let incremental = build(&user, &target)?;
    println!("incremental build (one line appended to tests/suites.rs): {incremental:.1} s");
    if keep {
        let kept = dir.keep();
        println!("kept {}", kept.display());
    }
    Ok(())
}

/// `cargo new --lib`, by hand, then `forge init --path FORGE` (this
/// program under the name `forge`), with forge's Cargo.lock.
fn make_crate(user: &Path, forge: &Path, lock: &Path, scratch: &Path) -> Result<(), String> {
    std::fs::create_dir_all(user.join("src")).map_err(|e| e.to_string())?;
    // `[workspace]`: a crate of its own wherever the directory is.
    let manifest = "[package]\nname = \"forge-user\"\nversion = \"0.1.0\"\nedition = \"2021\"\n\n[workspace]\n";
    std::fs::write(user.join("Cargo.toml"), manifest).map_err(|e| e.to_string())?;
    std::fs::write(user.join("src/lib.rs"), "").map_err(|e| e.to_string())?;
    std::fs::copy(lock, user.join("Cargo.lock"))
        .map_err(|e| format!("cannot copy {}: {e}", lock.display()))?;
    let me = std::env::current_exe().map_err(|e| e.to_string())?;
    let forge_bin = scratch.join("forge");
    std::os::unix::fs::symlink(&me, &forge_bin).map_err(|e| e.to_string())?;
    let status = Command::new(&forge_bin)
        .arg("init")
        .arg(user)
        .arg("--path")
        .arg(forge)
        .stdout(Stdio::null())
        .status()
        .map_err(|e| format!("forge init: {e}"))?;
    if !status.success() {
        return Err(format!("forge init failed: {status}"));
    }
    Ok(())
}

/// `cargo build --tests` in `user` with target directory `target`; its
/// wall time in seconds.
fn build(user: &Path, target: &Path) -> Result<f64, String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let start = Instant::now();
    let status = Command::new(cargo)
        .args(["build", "--tests", "--quiet"])
        .current_dir(user)
        .env("CARGO_TARGET_DIR", target)
        .status()
        .map_err(|e| format!("cargo: {e}"))?;
    let wall = start.elapsed().as_secs_f64();
    if !status.success() {
        return Err(format!("cargo build --tests failed: {status}"));
    }
    Ok(wall)
}
