//! Where each batch is written: the file (the suite, or the dataset file of
//! a `file:` entry) and the line of its `qa_id`, for the `file` and `line`
//! of its JUnit test case (CI links a failure to it).
//!
//! serde does not keep positions, so the texts are searched: the datasets
//! and their turns come in file order, so each `qa_id` is looked for after
//! the previous one (and its dataset's `session_id` after the previous
//! dataset), which tells apart the `q1`s of several sessions. A turn that
//! cannot be found this way (a YAML alias, an escaped id) keeps its file
//! with no line.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::schema::Dataset;

/// Where a batch is written.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct BatchLocation {
    /// The suite file, or the dataset file the batch comes from.
    pub file: PathBuf,
    /// The 1-based line of its `qa_id`, when found.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line: Option<usize>,
}

/// The location of every batch of `datasets`, each with the dataset file
/// it was read from (`None`: inline in the suite `suite`, whose text is
/// `text`).
pub(super) fn batches<'a>(
    suite: &Path,
    text: &str,
    datasets: impl Iterator<Item = (Option<&'a Path>, &'a Dataset)>,
) -> Vec<Vec<BatchLocation>> {
    let mut files: HashMap<PathBuf, Cursor> = HashMap::new();
    let mut inline = Cursor::new(text.to_owned());
    let mut located = Vec::new();
    for (file, dataset) in datasets {
        let (path, cursor) = match file {
            None => (suite, &mut inline),
            Some(path) => {
                let cursor = files.entry(path.to_owned()).or_insert_with(|| {
                    // Read again only to locate: a file that cannot be read
                    // now keeps its batches without lines.
                    Cursor::new(std::fs::read_to_string(path).unwrap_or_default())
                });
                (path, cursor)
            }
        };
        cursor.seek("session_id", &dataset.session_id);
        let lines = dataset
            .conversation
            .iter()
            .map(|batch| BatchLocation {
                file: path.to_owned(),
                line: cursor.seek("qa_id", &batch.qa_id),
            })
            .collect();
        located.push(lines);
    }
    located
}

/// The location of every batch of `dataset`, read from `text` (one
/// dataset of the file `path`, starting on its line `first_line`).
pub(super) fn in_element(
    path: &Path,
    text: &str,
    first_line: usize,
    dataset: &Dataset,
) -> Vec<BatchLocation> {
    let mut cursor = Cursor::new(text.to_owned());
    cursor.seek("session_id", &dataset.session_id);
    dataset
        .conversation
        .iter()
        .map(|batch| BatchLocation {
            file: path.to_owned(),
            line: cursor
                .seek("qa_id", &batch.qa_id)
                .map(|line| line + first_line - 1),
        })
        .collect()
}

/// A text searched forward.
struct Cursor {
    text: String,
    /// Where the last entry was found.
    at: usize,
    /// The 1-based line of `at`, so each seek counts only the newlines it
    /// moves past (a whole-file count per batch was quadratic).
    line: usize,
}

impl Cursor {
    fn new(text: String) -> Self {
        Cursor {
            text,
            at: 0,
            line: 1,
        }
    }

    /// The line of the next `key: value` (either quoted, JSON or YAML)
    /// from the cursor, else from the start; the cursor moves past it.
    fn seek(&mut self, key: &str, value: &str) -> Option<usize> {
        let found = match find_entry(&self.text, self.at, key, value) {
            Some(found) => found,
            None => {
                let found = find_entry(&self.text, 0, key, value)?;
                (self.at, self.line) = (0, 1);
                found
            }
        };
        self.line += newlines(&self.text[self.at..found]);
        self.at = found;
        Some(self.line)
    }
}

/// The newlines in `text`.
fn newlines(text: &str) -> usize {
    memchr::memchr_iter(b'\n', text.as_bytes()).count()
}

/// The offset of the first `key` at or after `from` whose value is
/// `value`: `key: value`, `"key": "value"`, `'key': 'value'`, in block or
/// flow style.
fn find_entry(text: &str, from: usize, key: &str, value: &str) -> Option<usize> {
    let mut start = from;
    while let Some(offset) = text.get(start..)?.find(key) {
        let at = start + offset;
        start = at + key.len();
        let before = text[..at].chars().next_back();
        if before.is_some_and(|c| c.is_alphanumeric() || c == '_') {
            continue;
        }
        if value_follows(&text[start..], value) {
            return Some(at);
        }
    }
    None
}

/// Whether `rest` (what follows a key) is `": value"` with optional
/// quotes around the key's end and the value.
fn value_follows(rest: &str, value: &str) -> bool {
    let rest = rest.strip_prefix(['"', '\'']).unwrap_or(rest);
    let Some(rest) = rest.trim_start_matches([' ', '\t']).strip_prefix(':') else {
        return false;
    };
    let rest = rest.trim_start_matches([' ', '\t']);
    let (quote, rest) = match rest.strip_prefix(['"', '\'']) {
        Some(unquoted) => (rest.chars().next(), unquoted),
        None => (None, rest),
    };
    let Some(after) = rest.strip_prefix(value) else {
        return false;
    };
    match quote {
        Some(q) => after.starts_with(q),
        None => after
            .chars()
            .next()
            .is_none_or(|c| matches!(c, ',' | '}' | ']' | '\n' | '\r' | ' ' | '\t' | '#')),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn each_turn_is_found_after_the_previous_one() {
        let text = "datasets:\n  - session_id: a\n    conversation:\n      - qa_id: q1\n        query: x\n      - {qa_id: \"q2\", query: y}\n  - session_id: b\n    conversation:\n      - qa_id: q1\n        query: q1\n      - qa_id: q10\n";
        let mut a = Dataset::new("a", "bot");
        a.conversation = vec![
            crate::schema::Batch::new("q1", "x"),
            crate::schema::Batch::new("q2", "y"),
        ];
        let mut b = Dataset::new("b", "bot");
        b.conversation = vec![
            crate::schema::Batch::new("q1", "q1"),
            crate::schema::Batch::new("q10", "z"),
        ];
        let suite = Path::new("s.yaml");
        let found = batches(suite, text, [(None, &a), (None, &b)].into_iter());
        let lines: Vec<Vec<Option<usize>>> = found
            .iter()
            .map(|d| d.iter().map(|l| l.line).collect())
            .collect();
        assert_eq!(lines, [[Some(4), Some(6)], [Some(9), Some(11)]]);
        assert!(found.iter().flatten().all(|l| l.file == suite));
    }

    #[test]
    fn json_keys_and_missing_ids() {
        let text = "[{\"session_id\": \"s\", \"conversation\": [\n {\"qa_id\": \"x1\"},\n {\"qa_id\" : \"x2\"}]}]";
        assert_eq!(
            find_entry(text, 0, "qa_id", "x2"),
            text.find("\"qa_id\" :").map(|i| i + 1)
        );
        assert_eq!(find_entry(text, 0, "qa_id", "x"), None);
        assert_eq!(find_entry(text, 0, "id", "x1"), None);
    }
}
