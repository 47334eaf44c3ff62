//! `forge run --lambda` in a build without the `lambda-client` feature says
//! which feature to enable and exits with 2, sending nothing. (`cargo test`
//! at the workspace root enables the feature; `.ci/run` runs this test with
//! forge-eval's default features.)
#![cfg(not(feature = "lambda-client"))]

#[test]
fn lambda_without_the_feature_names_it() {
    let dir = tempfile::tempdir().expect("temp dir");
    let suite = dir.path().join("s.yaml");
    std::fs::write(
        &suite,
        "runner: {type: echo}\ndatasets:\n  - {session_id: s, assistant_id: a, conversation: [{qa_id: q, query: hi}]}\n",
    )
    .expect("write suite");
    let output = std::process::Command::new(env!("CARGO_BIN_EXE_forge"))
        .arg("run")
        .arg(&suite)
        .args(["--lambda", "forge-lambda", "--out"])
        .arg(dir.path().join("out"))
        .output()
        .expect("run forge");
    assert_eq!(output.status.code(), Some(2));
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(
        stderr.contains("it needs the `lambda-client` feature"),
        "{stderr}"
    );
    assert!(!dir.path().join("out").exists(), "nothing ran");
}
