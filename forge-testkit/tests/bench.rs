//! `forge-bench` runs end to end at a tiny size: its server, the three front
//! ends (the ideal client, `forge run`, the harness) with their ratios, the
//! load measurement and the memory rows, each run checked for success by
//! the benchmark itself (a failed run is an error, exit status non-zero).
//! Only that the numbers print is checked, never their values.

use std::process::{Command, Output};

fn bench(args: &[&str]) -> String {
    let output: Output = Command::new(env!("CARGO_BIN_EXE_forge-bench"))
        .args(args)
        .output()
        .expect("run forge-bench");
    assert!(output.status.success(), "{output:?}");
    String::from_utf8_lossy(&output.stdout).into_owned()
}

fn assert_rows(stdout: &str, rows: &[&str]) {
    for row in rows {
        assert!(stdout.contains(row), "missing {row:?} in:\n{stdout}");
    }
}

#[test]
fn forge_bench_runs_at_a_tiny_size() {
    let stdout = bench(&[
        "--sessions",
        "2",
        "--turns",
        "3",
        "--latency-ms",
        "1",
        "--load-batches",
        "40",
    ]);
    assert!(
        stdout.contains("S=2 sessions x T=3 turns = 6 batches"),
        "{stdout}"
    );
    let rows = ["\nideal ", "\nrun ", "\nharness ", "\nload: ", "\nrun 4"];
    assert_rows(&stdout, &rows);
    assert_rows(
        &stdout,
        &["ratio forge run / ideal: ", "ratio harness / ideal: "],
    );
}

/// Pinned (or a note saying why not), repeated, the ideal client alone
/// against forge run.
#[test]
fn forge_bench_pins_and_repeats_the_ideal_client() {
    let stdout = bench(&[
        "--sessions",
        "2",
        "--turns",
        "2",
        "--latency-ms",
        "0",
        "--modes",
        "ideal,run",
        "--repeat",
        "2",
    ]);
    assert!(
        stdout.contains("pinned: server on CPU ") || stdout.contains("not pinned"),
        "{stdout}"
    );
    assert_rows(
        &stdout,
        &[
            "median of 2 run(s)",
            "\nideal ",
            "\nrun ",
            "ratio forge run / ideal: ",
        ],
    );
}

#[test]
fn forge_bench_measures_memory_of_offline_runs() {
    let stdout = bench(&["--modes", "none", "--memory", "200,300"]);
    assert_rows(
        &stdout,
        &[
            "\nrun            200         2 ",
            "\nharness        200         2 ",
            "bytes per trial",
            "\nrun            300         3 ",
            "peak at 300 - peak at 200 batches: ",
        ],
    );
}
