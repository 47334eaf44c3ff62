//! Dataset files that `forge run` reads as the run reaches them: a
//! Fair-Forge JSON list or JSONL file named by a `file:` entry is read
//! once at load to check it (every dataset, batch and check, as an eager
//! load does, and its hash for the fingerprint) and again, one dataset at
//! a time, by the run. Neither pass holds more than one dataset of it.
//!
//! What a pass keeps of the whole file is per session, not per batch: the
//! load's check counts each session id (test names of a session id shared
//! by several datasets are `<session_id>@<assistant_id>`) and refuses a
//! second dataset with the same session and assistant.

use std::collections::{HashMap, HashSet};
use std::io::{BufRead, BufReader, Read};
use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::files::{element_dataset, jsonl_dataset};
use super::{places, test_name, BatchLocation, SuiteDataset};
use crate::check::Checks;
use crate::error::{Location, SuiteError};
use crate::judge::JudgeSpec;
use crate::partition::Fnv1a;
use crate::schema::Dataset;

/// The largest dataset (one JSONL line, one element of a JSON list) a
/// streamed file may hold, in bytes.
pub const MAX_DATASET_BYTES: usize = 64 << 20;

/// How a streamed file is laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Layout {
    /// One dataset per line.
    Lines,
    /// A JSON list of datasets, or one dataset.
    Json,
}

impl Layout {
    /// The layout of a dataset file streamed by its extension; `None` for
    /// one that is read whole (YAML).
    pub fn of(path: &Path) -> Option<Layout> {
        let extension = path.extension()?.to_str()?.to_ascii_lowercase();
        match extension.as_str() {
            "jsonl" | "ndjson" => Some(Layout::Lines),
            "yaml" | "yml" => None,
            _ => Some(Layout::Json),
        }
    }
}

/// A `file:` entry read as the run goes, with what the suite says of its
/// batches.
#[derive(Debug)]
pub(crate) struct Streamed {
    pub path: PathBuf,
    pub layout: Layout,
    pub ignore: bool,
    pub expect: Arc<Checks>,
    /// `repeat`: runs, and runs that must pass.
    pub runs: (usize, usize),
    pub judge: Option<Arc<JudgeSpec>>,
    /// Datasets and batches in the file (counted at load).
    pub datasets: usize,
    pub batches: usize,
}

/// What test names need of the whole suite: its prefix (`<suite>` or
/// `<suite>::<system>`) and the session ids shared by several datasets.
#[derive(Debug, Clone, Default)]
pub(crate) struct Naming {
    pub prefix: String,
    pub shared: Arc<HashSet<String>>,
}

impl Naming {
    /// The session part of a dataset's test names.
    fn session(&self, dataset: &Dataset) -> String {
        match self.shared.contains(&dataset.session_id) {
            true => format!("{}@{}", dataset.session_id, dataset.assistant_id),
            false => dataset.session_id.clone(),
        }
    }
}

/// What the load's check of the suite's files counts of its sessions.
#[derive(Debug, Default)]
pub(crate) struct Sessions {
    /// Datasets per session id.
    pub counts: HashMap<String, usize>,
    /// Every (session id, assistant id), to refuse a second one.
    pub pairs: HashSet<(String, String)>,
    /// Batches in the streamed files.
    pub batches: usize,
}

impl Sessions {
    /// The streamed files' session ids that several datasets share,
    /// counting the suite's other datasets' (`others`).
    pub fn shared<'a>(&self, others: impl Iterator<Item = &'a str>) -> HashSet<String> {
        let mut elsewhere: HashMap<&str, usize> = HashMap::new();
        for id in others {
            *elsewhere.entry(id).or_insert(0) += 1;
        }
        self.counts
            .iter()
            .filter(|(id, count)| **count + elsewhere.get(id.as_str()).copied().unwrap_or(0) > 1)
            .map(|(id, _)| id.clone())
            .collect()
    }
}

impl Streamed {
    /// Reads the file once: every dataset checked (its batches' checks
    /// against `runs`), sessions counted into `sessions`; returns the
    /// counts and the FNV-1a hash of the file's bytes.
    pub fn check(&mut self, sessions: &mut Sessions) -> Result<u64, SuiteError> {
        let mut hash = Fnv1a::default();
        let (mut datasets, mut batches) = (0, 0);
        for element in Elements::open(&self.path, self.layout)?.hashing(&mut hash) {
            let (line, text, listed) = element?;
            let dataset = self.parse((listed, datasets), line, &text)?;
            self.check_batches(&dataset, line)?;
            let pair = (dataset.session_id.clone(), dataset.assistant_id.clone());
            if !sessions.pairs.insert(pair) {
                return Err(self.invalid(
                    line,
                    format!(
                    "duplicate session: two datasets share session_id {:?} and assistant_id {:?}",
                    dataset.session_id, dataset.assistant_id
                ),
                ));
            }
            *sessions.counts.entry(dataset.session_id).or_insert(0) += 1;
            datasets += 1;
            batches += dataset.conversation.len();
        }
        (self.datasets, self.batches) = (datasets, batches);
        sessions.batches += batches;
        Ok(hash.0)
    }

    /// Every batch's checks fit it, and its qa_id is its dataset's only one.
    fn check_batches(&self, dataset: &Dataset, line: usize) -> Result<(), SuiteError> {
        let mut ids = HashSet::with_capacity(dataset.conversation.len());
        for batch in &dataset.conversation {
            let test = test_name("", &dataset.session_id, &batch.qa_id);
            if let Err(message) = self.expect.validate(batch, self.runs.0) {
                return Err(self.invalid(line, format!("{}: {message}", &test[2..])));
            }
            if !ids.insert(test) {
                return Err(self.invalid(
                    line,
                    format!(
                        "duplicate qa_id {:?} in session {:?}",
                        batch.qa_id, dataset.session_id
                    ),
                ));
            }
        }
        Ok(())
    }

    fn invalid(&self, line: usize, message: String) -> SuiteError {
        SuiteError::Invalid {
            location: Location {
                file: self.path.clone(),
                line: Some(line),
                column: None,
            },
            message,
        }
    }

    /// Dataset number `index` (0-based; in a JSON list or not), written
    /// from line `line`.
    fn parse(
        &self,
        (listed, index): (bool, usize),
        line: usize,
        text: &str,
    ) -> Result<Dataset, SuiteError> {
        let label = self.path.display().to_string();
        match self.layout {
            Layout::Lines => jsonl_dataset(&self.path, &label, line, text),
            Layout::Json => {
                let index = listed.then_some(index);
                element_dataset(&self.path, &label, index, line, text)
            }
        }
    }

    /// The file's datasets, read one at a time, named by `naming`.
    pub fn read(
        self: &Arc<Self>,
        naming: Naming,
    ) -> Box<dyn Iterator<Item = Result<SuiteDataset, SuiteError>> + Send> {
        let elements = match Elements::open(&self.path, self.layout) {
            Ok(elements) => elements,
            Err(error) => return Box::new(std::iter::once(Err(error))),
        };
        let this = Arc::clone(self);
        let datasets = elements.enumerate().map(move |(index, element)| {
            let (line, text, listed) = element?;
            let dataset = this.parse((listed, index), line, &text)?;
            let locations = places::in_element(&this.path, &text, line, &dataset);
            Ok(this.suite_dataset(dataset, &naming, locations))
        });
        Box::new(datasets)
    }

    /// A dataset of the file with what the suite says of its batches.
    fn suite_dataset(
        &self,
        dataset: Dataset,
        naming: &Naming,
        locations: Vec<BatchLocation>,
    ) -> SuiteDataset {
        let count = dataset.conversation.len();
        let session = naming.session(&dataset);
        let names: Vec<String> = dataset
            .conversation
            .iter()
            .map(|b| test_name(&naming.prefix, &session, &b.qa_id))
            .collect();
        SuiteDataset {
            dataset,
            test_names: names.into(),
            ignored: vec![self.ignore; count],
            expects: vec![Arc::clone(&self.expect); count].into(),
            runs: self.runs.0,
            min_passes: self.runs.1,
            judge: self.judge.clone(),
            locations: locations.into(),
        }
    }
}

/// The datasets of a file as text, one at a time, each with the line it
/// starts on: the non-blank lines of a JSONL file, the elements of a JSON
/// list (or a JSON file's one value).
pub(crate) struct Elements<'h> {
    path: PathBuf,
    layout: Layout,
    reader: BufReader<std::fs::File>,
    /// The 1-based line the reader is at.
    line: usize,
    /// Whether a JSON list's `[` was read (`None`: not yet looked).
    in_list: Option<bool>,
    done: bool,
    hash: Option<&'h mut Fnv1a>,
}

impl Elements<'static> {
    /// Opens the file.
    pub fn open(path: &Path, layout: Layout) -> Result<Self, SuiteError> {
        let file = std::fs::File::open(path).map_err(|source| SuiteError::Io {
            path: path.to_owned(),
            source,
        })?;
        Ok(Elements {
            path: path.to_owned(),
            layout,
            reader: BufReader::with_capacity(1 << 16, file),
            line: 1,
            in_list: None,
            done: false,
            hash: None,
        })
    }

    /// These elements, every byte read added to `hash`.
    fn hashing(self, hash: &mut Fnv1a) -> Elements<'_> {
        Elements {
            hash: Some(hash),
            path: self.path,
            layout: self.layout,
            reader: self.reader,
            line: self.line,
            in_list: self.in_list,
            done: self.done,
        }
    }
}

impl Elements<'_> {
    fn io_error(&self, source: std::io::Error) -> SuiteError {
        SuiteError::Io {
            path: self.path.clone(),
            source,
        }
    }

    fn too_large(&self, line: usize) -> SuiteError {
        SuiteError::Invalid {
            location: Location {
                file: self.path.clone(),
                line: Some(line),
                column: None,
            },
            message: format!("a dataset of more than {MAX_DATASET_BYTES} bytes"),
        }
    }

    /// The next byte, counted and hashed; `None` at the end.
    fn byte(&mut self) -> Result<Option<u8>, SuiteError> {
        let first = match self.reader.fill_buf() {
            Ok(buffer) => buffer.first().copied(),
            Err(error) => return Err(self.io_error(error)),
        };
        let Some(byte) = first else {
            return Ok(None);
        };
        self.reader.consume(1);
        if let Some(hash) = self.hash.as_deref_mut() {
            hash.update(&[byte]);
        }
        self.line += usize::from(byte == b'\n');
        Ok(Some(byte))
    }

    /// The next non-blank line of a JSONL file.
    fn next_line(&mut self) -> Result<Option<(usize, String)>, SuiteError> {
        loop {
            let start = self.line;
            let mut bytes = Vec::new();
            let limit = (MAX_DATASET_BYTES + 1) as u64;
            let read = (&mut self.reader)
                .take(limit)
                .read_until(b'\n', &mut bytes)
                .map_err(|e| self.io_error(e))?;
            if read == 0 {
                return Ok(None);
            }
            if bytes.len() > MAX_DATASET_BYTES {
                return Err(self.too_large(start));
            }
            if let Some(hash) = self.hash.as_deref_mut() {
                hash.update(&bytes);
            }
            self.line += usize::from(bytes.ends_with(b"\n"));
            let text = String::from_utf8(bytes).map_err(|_| self.not_utf8(start))?;
            if !text.trim().is_empty() {
                return Ok(Some((start, text)));
            }
        }
    }

    /// The next element of a JSON list (or the file's one value).
    fn next_element(&mut self) -> Result<Option<(usize, String)>, SuiteError> {
        let first = loop {
            match self.byte()? {
                None => return Ok(None),
                Some(b) if b.is_ascii_whitespace() => continue,
                Some(b'[') if self.in_list.is_none() => self.in_list = Some(true),
                Some(b',') if self.in_list == Some(true) => continue,
                Some(b']') if self.in_list == Some(true) => {
                    self.done = true;
                    return self.end_of_list();
                }
                Some(b) => break b,
            }
        };
        let list = *self.in_list.get_or_insert(false);
        let start = self.line;
        let mut text = vec![first];
        let (mut depth, mut string, mut escaped) = (0usize, first == b'"', false);
        depth += usize::from(matches!(first, b'{' | b'['));
        while depth > 0 || string {
            let Some(b) = self.byte()? else { break };
            text.push(b);
            if text.len() > MAX_DATASET_BYTES {
                return Err(self.too_large(start));
            }
            match (string, escaped, b) {
                (true, true, _) => escaped = false,
                (true, false, b'\\') => escaped = true,
                (true, false, b'"') => string = false,
                (true, false, _) => {}
                (false, _, b'"') => string = true,
                (false, _, b'{' | b'[') => depth += 1,
                (false, _, b'}' | b']') => depth -= 1,
                _ => {}
            }
        }
        if !list {
            // One value: whatever follows it is read by the parse.
            let mut rest = Vec::new();
            while let Some(b) = self.byte()? {
                rest.push(b);
                if rest.len() > MAX_DATASET_BYTES {
                    return Err(self.too_large(start));
                }
            }
            text.extend(rest);
            self.done = true;
        }
        let text = String::from_utf8(text).map_err(|_| self.not_utf8(start))?;
        Ok(Some((start, text)))
    }

    /// After a list's `]`: nothing but whitespace.
    fn end_of_list(&mut self) -> Result<Option<(usize, String)>, SuiteError> {
        while let Some(b) = self.byte()? {
            if !b.is_ascii_whitespace() {
                return Err(SuiteError::Invalid {
                    location: Location {
                        file: self.path.clone(),
                        line: Some(self.line),
                        column: None,
                    },
                    message: "invalid JSON: trailing characters after the list".to_owned(),
                });
            }
        }
        Ok(None)
    }

    fn not_utf8(&self, line: usize) -> SuiteError {
        SuiteError::Invalid {
            location: Location {
                file: self.path.clone(),
                line: Some(line),
                column: None,
            },
            message: "invalid JSON: not UTF-8".to_owned(),
        }
    }
}

impl Iterator for Elements<'_> {
    /// The line a dataset starts on, its text, and whether it is an
    /// element of a JSON list.
    type Item = Result<(usize, String, bool), SuiteError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.done {
            return None;
        }
        let next = match self.layout {
            Layout::Lines => self.next_line(),
            Layout::Json => self.next_element(),
        };
        match next {
            Ok(Some((line, text))) => Some(Ok((line, text, self.in_list == Some(true)))),
            Ok(None) => {
                self.done = true;
                None
            }
            Err(error) => {
                self.done = true;
                Some(Err(error))
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::suite::{LoadOptions, Suite, SuiteDataset};

    /// What a run takes of a dataset: names, ignored flags, checks,
    /// lines and runs.
    type Seen = (Vec<String>, Vec<bool>, usize, Vec<Option<usize>>, usize);

    /// What a run takes of each dataset, to compare two loads.
    fn seen(suite: &Suite) -> Vec<Seen> {
        let mut seen = Vec::new();
        suite
            .for_each_dataset(|_, d: &SuiteDataset| {
                seen.push((
                    d.test_names.to_vec(),
                    d.ignored.clone(),
                    d.expects.len(),
                    d.locations.iter().map(|l| l.line).collect(),
                    d.runs,
                ))
            })
            .expect("read");
        seen
    }

    fn write(dir: &std::path::Path) -> std::path::PathBuf {
        let dataset = |s: &str, a: &str, turns: usize| {
            let conversation: Vec<serde_json::Value> = (0..turns)
                .map(|t| serde_json::json!({"qa_id": format!("q {t}"), "query": format!("hello {t}")}))
                .collect();
            serde_json::json!({"session_id": s, "assistant_id": a, "conversation": conversation})
        };
        let lines = [
            dataset("s1", "a", 2),
            dataset("shared", "a", 1),
            dataset("s2", "a", 3),
        ];
        let jsonl: String = lines.iter().map(|l| format!("{l}\n\n")).collect();
        std::fs::write(dir.join("data.jsonl"), jsonl).expect("jsonl");
        let list = serde_json::json!([dataset("shared", "b", 2), dataset("j1", "a", 1)]);
        let json = serde_json::to_string_pretty(&list).expect("json");
        std::fs::write(dir.join("data.json"), json).expect("json");
        let suite = dir.join("suite.yaml");
        let yaml = "name: mixed\nrunner: {type: echo}\nrepeat: 2\ndatasets:\n  - session_id: first\n    assistant_id: a\n    conversation:\n      - {qa_id: q1, query: hi}\n  - file: data.jsonl\n    ignore: true\n    expect: {contains: hello}\n  - session_id: middle\n    assistant_id: a\n    conversation:\n      - {qa_id: q1, query: hi}\n  - file: data.json\n";
        std::fs::write(&suite, yaml).expect("suite");
        suite
    }

    #[test]
    fn a_streamed_suite_reads_as_the_eager_load_does() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path());
        let eager = Suite::load(&path).expect("eager");
        let options = LoadOptions {
            stream: true,
            ..LoadOptions::default()
        };
        let streamed = Suite::load_with(&path, &options).expect("streamed");
        assert_eq!(
            streamed.datasets.len(),
            2,
            "only the inline datasets are held"
        );
        assert_eq!(seen(&streamed), seen(&eager));
        assert_eq!(streamed.fingerprint, eager.fingerprint);
        assert_eq!(streamed.batch_count(), eager.batch_count());
        assert_eq!(streamed.dataset_count(), eager.dataset_count());
        let names: Vec<String> = seen(&streamed).into_iter().flat_map(|s| s.0).collect();
        assert!(
            names.contains(&"mixed::shared@a::q_0".to_owned()),
            "{names:?}"
        );
        let mut taken = streamed;
        let taken: Vec<String> = taken
            .take_datasets()
            .map(|d| d.expect("read").test_names[0].clone())
            .collect();
        assert_eq!(taken[0], "mixed::first::q1");
        assert_eq!(taken.len(), 7);
    }

    #[test]
    fn the_loads_counts_select_as_a_pass_over_the_files_does() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path());
        let options = LoadOptions {
            stream: true,
            ..LoadOptions::default()
        };
        let suites = vec![Suite::load_with(&path, &options).expect("streamed")];
        let mut counted = crate::select::Rules::new(&suites, None, None);
        counted.count(&suites).expect("counted");
        // An empty filter matches every batch, and is counted by a pass.
        let mut passed = crate::select::Rules::new(&suites, Some(""), None);
        passed.count(&suites).expect("counted");
        assert_eq!(counted.selected(), passed.selected());
        assert_eq!(
            counted.selected(),
            5,
            "the ignored file's 6 batches are not"
        );
    }

    #[test]
    fn mistakes_in_a_streamed_file_are_located_as_eager_ones() {
        let dir = tempfile::tempdir().expect("temp dir");
        let path = write(dir.path());
        let options = LoadOptions {
            stream: true,
            ..LoadOptions::default()
        };
        let broken = [
            ("data.jsonl", "{\"session_id\": \"x\", \"assistant_id\": \"a\", \"conversation\": [}\n"),
            ("data.jsonl", "{\"session_id\": \"x\", \"assistant_id\": \"a\", \"conversation\": [{\"qa_id\": \"q\"}]}\n"),
            ("data.json", "[\n  {\"session_id\": \"x\",\n   \"assistant_id\": \"a\",\n   \"conversation\": [{\"qa_id\": 1}]}\n]\n"),
            ("data.json", "[{\"session_id\": \"x\", \"assistant_id\": \"a\", \"conversation\": []}] trailing"),
        ];
        for (file, text) in broken {
            let original = std::fs::read_to_string(dir.path().join(file)).expect("read");
            std::fs::write(dir.path().join(file), text).expect("write");
            let eager = Suite::load(&path)
                .expect_err("eager refuses it")
                .to_string();
            let streamed = Suite::load_with(&path, &options)
                .expect_err("refused")
                .to_string();
            // The file and line (a column only where both know it).
            let file_line = |e: &str| {
                let place = e.split(": ").next().unwrap_or_default();
                place.split(':').take(2).collect::<Vec<_>>().join(":")
            };
            assert_eq!(
                file_line(&streamed),
                file_line(&eager),
                "{streamed} / {eager}"
            );
            std::fs::write(dir.path().join(file), original).expect("restore");
        }
    }
}
