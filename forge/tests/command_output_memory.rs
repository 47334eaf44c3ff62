//! The `command` runner's memory stays bounded however much a program
//! prints on stderr: only the end is kept. Alone in its test binary, so the
//! process's peak RSS is this test's.

#![cfg(target_os = "linux")]

use forge::registry::{self, BuildContext};
use forge::{Batch, Dataset, Engine};
use nix::sys::resource::{getrusage, UsageWho};
use serde_json::json;

/// Peak resident set size of this process, in KiB.
fn peak_rss_kib() -> i64 {
    getrusage(UsageWho::RUSAGE_SELF)
        .expect("getrusage")
        .max_rss()
}

#[tokio::test]
async fn a_huge_stderr_is_not_kept_in_memory() {
    let runner = registry::build(
        json!({
            "type": "command",
            "program": "sh",
            "args": ["-c", "head -c 268435456 /dev/zero >&2; echo 'the end' >&2; exit 1"],
        }),
        &BuildContext::default(),
    )
    .expect("runner");
    let mut dataset = Dataset::new("s", "a");
    dataset.conversation.push(Batch::new("q", "x"));
    let before = peak_rss_kib();
    let results = Engine::new(runner).run_datasets(vec![dataset]).await;
    let answer = &results[0].0.conversation[0].assistant;
    assert!(
        answer.ends_with("the end"),
        "{}",
        &answer[answer.len().saturating_sub(80)..]
    );
    let grown = peak_rss_kib() - before;
    // 256 MiB went through; a bounded tail costs well under 64 MiB.
    assert!(grown < 64 * 1024, "peak RSS grew by {grown} KiB");
}
