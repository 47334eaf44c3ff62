//! `forge diff`'s reports: text for people (the changes grouped, with
//! counts) and JSON for tools.

use serde_json::{json, Value};

use super::{Change, ChangeKind, Diff};

/// The most characters of a message or answer the text report shows (of
/// its first line).
const SHOWN_CHARS: usize = 200;

/// The groups of the text report, in order: a heading and the JSON count's
/// key.
const GROUPS: [(&str, &str); 8] = [
    ("newly failing", "newly_failing"),
    ("score dropped", "score_dropped"),
    ("pass count dropped, significant", "pass_count_dropped"),
    ("pass count dropped, not significant", "not_significant"),
    ("newly passing", "newly_passing"),
    ("answer changed", "answer_changed"),
    ("added", "added"),
    ("removed", "removed"),
];

/// The group (index into [`GROUPS`]) a change's `kind` is listed in; a
/// flaky batch's newly failing verdict is listed with its pass-count drop.
fn group(change: &Change, kind: &ChangeKind) -> Option<usize> {
    Some(match kind {
        ChangeKind::NewlyFailing { .. } if change.is_regression(kind) => 0,
        ChangeKind::NewlyFailing { .. } => return None,
        ChangeKind::ScoreDropped { .. } => 1,
        ChangeKind::PassCountDropped {
            significant: true, ..
        } => 2,
        ChangeKind::PassCountDropped { .. } => 3,
        ChangeKind::NewlyPassing => 4,
        ChangeKind::AnswerChanged { .. } => 5,
        ChangeKind::Added { .. } => 6,
        ChangeKind::Removed { .. } => 7,
    })
}

/// The lines of each group: per change, its entry.
fn grouped(diff: &Diff) -> Vec<Vec<String>> {
    let mut groups = vec![Vec::new(); GROUPS.len()];
    for change in &diff.changes {
        for kind in &change.kinds {
            if let Some(g) = group(change, kind) {
                groups[g].push(entry(change, kind));
            }
        }
    }
    groups
}

/// The text report.
pub(super) fn text(diff: &Diff) -> String {
    let added = diff.changes.iter().filter(|c| c.has(6)).count();
    let removed = diff.changes.iter().filter(|c| c.has(7)).count();
    let mut out = format!(
        "forge diff: {} -> {}\n{} batches compared, {added} added, {removed} removed (score drop > {}, alpha {})\n",
        diff.base.display(),
        diff.new.display(),
        diff.compared,
        diff.options.score_drop,
        diff.options.alpha
    );
    for ((heading, _), lines) in GROUPS.iter().zip(grouped(diff)) {
        if lines.is_empty() {
            continue;
        }
        out.push_str(&format!("\n{heading} ({}):\n", lines.len()));
        for line in lines {
            out.push_str(&line);
        }
    }
    out.push('\n');
    out.push_str(&verdict(diff));
    out
}

/// The last line: what regressed, or that nothing did.
fn verdict(diff: &Diff) -> String {
    let regressed = diff.changes.iter().filter(|c| c.regressed).count();
    if regressed == 0 {
        let flaky = diff.changes.iter().filter(|c| c.has(3)).count();
        return match flaky {
            0 => "no regression\n".to_owned(),
            n => format!("no regression ({n} not significant)\n"),
        };
    }
    let counts: Vec<String> = [
        (0, "newly failing"),
        (1, "score dropped"),
        (2, "significant pass-count drop"),
    ]
    .iter()
    .map(|&(g, what)| (diff.changes.iter().filter(|c| c.has(g)).count(), what))
    .filter(|&(n, _)| n > 0)
    .map(|(n, what)| format!("{n} {what}"))
    .collect();
    format!("regressed: {regressed} batch(es) ({})\n", counts.join(", "))
}

impl Change {
    /// Whether one of its kinds is listed in group `g`.
    fn has(&self, g: usize) -> bool {
        self.kinds.iter().any(|k| group(self, k) == Some(g))
    }

    /// `test (file:line)`.
    fn place(&self) -> String {
        match (&self.file, self.line) {
            (Some(file), Some(line)) => format!("{} ({file}:{line})", self.test),
            (Some(file), None) => format!("{} ({file})", self.test),
            _ => self.test.clone(),
        }
    }
}

/// A change's entry in the group of `kind`.
fn entry(change: &Change, kind: &ChangeKind) -> String {
    let place = change.place();
    match kind {
        ChangeKind::NewlyFailing { message } => {
            let message = shown(message.as_deref().unwrap_or("failed"));
            format!("  {place}\n    {message}\n")
        }
        ChangeKind::AnswerChanged { before, after } => {
            format!(
                "  {place}\n    - {}\n    + {}\n",
                shown(before),
                shown(after)
            )
        }
        ChangeKind::PassCountDropped { .. } => {
            let now_failing = change
                .kinds
                .iter()
                .any(|k| matches!(k, ChangeKind::NewlyFailing { .. }));
            let note = if now_failing && !change.is_regression(kind) {
                "; now fails: flaky, not a regression"
            } else {
                ""
            };
            format!("  {place}: {}{note}\n", kind_text(kind))
        }
        ChangeKind::NewlyPassing => format!("  {place}\n"),
        _ => format!("  {place}: {}\n", kind_text(kind)),
    }
}

/// One kind of change, in a few words.
pub(super) fn kind_text(kind: &ChangeKind) -> String {
    match kind {
        ChangeKind::NewlyFailing { .. } => "newly failing".to_owned(),
        ChangeKind::NewlyPassing => "newly passing".to_owned(),
        ChangeKind::AnswerChanged { .. } => "answer changed".to_owned(),
        ChangeKind::ScoreDropped {
            check,
            before,
            after,
        } => format!("`{check}` score {before:.3} -> {after:.3}"),
        ChangeKind::PassCountDropped {
            before_passed,
            before_runs,
            after_passed,
            after_runs,
            p_value,
            significant,
        } => format!(
            "{before_passed} of {before_runs} -> {after_passed} of {after_runs} runs passed, p = {} ({})",
            p_text(*p_value),
            if *significant { "significant" } else { "not significant" }
        ),
        ChangeKind::Added { passed: true } => "new batch, passes".to_owned(),
        ChangeKind::Added { passed: false } => "new batch, fails".to_owned(),
        ChangeKind::Removed { passed: true } => "not in this run (passed)".to_owned(),
        ChangeKind::Removed { passed: false } => "not in this run (failed)".to_owned(),
    }
}

/// A p-value with three significant digits: `0.227`, `0.00155`, `2.66e-17`.
fn p_text(p: f64) -> String {
    if p >= 0.1 || p == 0.0 {
        format!("{p:.3}")
    } else if p >= 1e-4 {
        let decimals = (2.0 - p.log10().floor()) as usize;
        format!("{p:.decimals$}")
    } else {
        format!("{p:.2e}")
    }
}

/// The first line of `text`, at most [`SHOWN_CHARS`] characters of it.
fn shown(text: &str) -> String {
    let first = text.lines().next().unwrap_or("");
    let mut shown: String = first.chars().take(SHOWN_CHARS).collect();
    if shown.len() < first.len() || first.len() < text.trim_end().len() {
        shown.push_str(" ...");
    }
    shown
}

/// The JSON report.
pub(super) fn json(diff: &Diff) -> Value {
    let mut counts = serde_json::Map::new();
    counts.insert(
        "regressed".to_owned(),
        json!(diff.changes.iter().filter(|c| c.regressed).count()),
    );
    for (g, (_, key)) in GROUPS.iter().enumerate() {
        let n = diff.changes.iter().filter(|c| c.has(g)).count();
        counts.insert((*key).to_owned(), json!(n));
    }
    json!({
        "base": diff.base.display().to_string(),
        "new": diff.new.display().to_string(),
        "score_drop": diff.options.score_drop,
        "alpha": diff.options.alpha,
        "regressed": diff.regressed(),
        "compared": diff.compared,
        "counts": counts,
        "changes": diff.changes,
    })
}
