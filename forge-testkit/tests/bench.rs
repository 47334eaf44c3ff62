//! `forge-bench` runs end to end at a tiny size: its server, both front ends
//! and the load measurement, each run checked for success by the benchmark
//! itself (a failed run is an error, exit status non-zero).

use std::process::Command;

#[test]
fn forge_bench_runs_at_a_tiny_size() {
    let output = Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args(["--sessions", "2", "--turns", "3", "--latency-ms", "1"])
        .args(["--load-batches", "40"])
        .output()
        .expect("run forge-bench");
    let stdout = String::from_utf8_lossy(&output.stdout);
    assert!(output.status.success(), "{output:?}");
    assert!(
        stdout.contains("S=2 sessions x T=3 turns = 6 batches"),
        "{stdout}"
    );
    for row in ["\nrun ", "\nharness ", "\nload: ", "\nrun 4"] {
        assert!(stdout.contains(row), "missing {row:?} in:\n{stdout}");
    }
}
