//! Memory rows: peak RSS of `forge run` over offline suites of N batches
//! (sessions x 100 turns in a JSONL dataset file, the `echo` runner, the
//! default concurrency), and of the harness over the smallest one.

use crate::measure::measured;
use crate::suites::{self, Runner};
use crate::wire::Setup;

/// Turns per session of the memory suites.
const TURNS: usize = 100;

/// Measures `forge run` at each batch count of `counts` (rounded up to
/// whole sessions of 100 turns) and the harness at the smallest, and
/// prints peak RSS, the growth from the smallest to the largest, and the
/// harness's bytes per trial.
pub fn run(counts: &[usize]) -> Result<(), String> {
    let mut counts = counts.to_vec();
    counts.sort_unstable();
    counts.dedup();
    let setup = Setup::offline()?;
    println!("memory: offline `echo` suites, sessions x {TURNS} turns in a JSONL file, default concurrency");
    println!(
        "{:<8} {:>9} {:>9} {:>8} {:>10} {:>10}",
        "mode", "batches", "sessions", "wall s", "batches/s", "peak MB"
    );
    let mut peaks = Vec::new();
    for (i, &count) in counts.iter().enumerate() {
        let sessions = count.div_ceil(TURNS).max(1);
        let batches = sessions * TURNS;
        let dir = setup.dir.path().join(format!("memory-{batches}"));
        std::fs::create_dir_all(&dir).map_err(|e| e.to_string())?;
        let suite = dir.join("memory.yaml");
        suites::write_jsonl_suite(&suite, &Runner::Echo, sessions, TURNS, None)?;
        let usage = measured(
            &setup.me,
            setup.dir.path(),
            &setup.forge_run(&suite),
            &[],
            None,
        )?;
        print_row("run", batches, sessions, usage.wall_s, usage.max_rss_mb);
        peaks.push((batches, usage.max_rss_mb));
        if i == 0 {
            let env = [("FORGE_OUT_DIR", setup.out.as_path())];
            let harness = measured(
                &setup.me,
                setup.dir.path(),
                &setup.harness(&dir),
                &env,
                None,
            )?;
            print_row(
                "harness",
                batches,
                sessions,
                harness.wall_s,
                harness.max_rss_mb,
            );
            let per_trial =
                (harness.max_rss_mb - usage.max_rss_mb) * 1024.0 * 1024.0 / batches as f64;
            println!("harness - forge run at {batches} batches: {per_trial:.0} bytes per trial");
        }
        // The suite and its reports are not needed any more: free the disk.
        for used in [&dir, &setup.out] {
            if used.exists() {
                std::fs::remove_dir_all(used).map_err(|e| e.to_string())?;
            }
        }
    }
    if let (Some(&(small, small_mb)), Some(&(large, large_mb))) = (peaks.first(), peaks.last()) {
        if large > small {
            println!(
                "peak at {large} - peak at {small} batches: {:.1} MB (target <= 10 MB; target at 1,000,000: < 100 MB)",
                large_mb - small_mb
            );
        }
    }
    Ok(())
}

fn print_row(mode: &str, batches: usize, sessions: usize, wall_s: f64, peak_mb: f64) {
    println!(
        "{mode:<8} {batches:>9} {sessions:>9} {wall_s:>8.3} {:>10.0} {peak_mb:>10.1}",
        batches as f64 / wall_s
    );
}
