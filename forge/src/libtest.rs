//! libtest's output for the two cases libtest-mimic gets wrong, so the
//! harness behaves like any `cargo test` target there too:
//!
//! - `--format json` (`-Z unstable-options`): a failing test's `stdout` is
//!   its failure text as written (libtest-mimic prints `Error: "..."`, the
//!   message `Debug`-quoted, which every tool reading the stream then shows);
//! - `--show-output`: passing tests' output (a batch's answer) is shown, in
//!   a `successes:` section (pretty) or the `stdout` of its `ok` event
//!   (json), as libtest does (libtest-mimic accepts the flag and ignores it).
//!
//! Everything else (`--list`, the other formats) stays libtest-mimic's.
//! Tests run in name order, each waiting for its verdict: the engine runs
//! them concurrently meanwhile, so the order costs nothing.

use std::io::{IsTerminal, Write};
use std::time::Instant;

use libtest_mimic::{Arguments, ColorSetting, Conclusion, FormatSetting, Trial};

/// One test: its name, whether it is `#[ignore]`d, and how to get its
/// verdict (`Ok` with its output, `Err` with its failure text).
pub(crate) struct Case {
    pub name: String,
    pub ignored: bool,
    pub verdict: Box<dyn FnOnce() -> Result<String, String> + Send>,
}

/// Whether libtest-mimic's own output would be wrong for `args`.
pub(crate) fn needed(args: &Arguments) -> bool {
    !args.list && (args.format == Some(FormatSetting::Json) || args.show_output)
}

/// What happened to one test.
enum Outcome {
    Passed(String),
    Failed(String),
    Ignored,
}

/// Runs `cases` (sorted by name) as libtest would with `args`, printing
/// to stdout; the tally.
pub(crate) fn run(args: &Arguments, cases: Vec<Case>) -> Conclusion {
    let start = Instant::now();
    let probe = |case: &Case| Trial::test(&case.name, || Ok(())).with_ignored_flag(case.ignored);
    let total = cases.len();
    let cases: Vec<Case> = cases
        .into_iter()
        .filter(|case| !args.is_filtered_out(&probe(case)))
        .collect();
    let mut conclusion = Conclusion {
        num_filtered_out: (total - cases.len()) as u64,
        num_passed: 0,
        num_failed: 0,
        num_ignored: 0,
        num_measured: 0,
    };
    let mut out = Printer::new(args, &cases);
    out.title(cases.len());
    let mut done = Vec::with_capacity(cases.len());
    for case in cases {
        out.started(&case.name);
        let outcome = match args.is_ignored(&probe(&case)) {
            true => Outcome::Ignored,
            false => match (case.verdict)() {
                Ok(output) => Outcome::Passed(output),
                Err(text) => Outcome::Failed(text),
            },
        };
        match &outcome {
            Outcome::Passed(_) => conclusion.num_passed += 1,
            Outcome::Failed(_) => conclusion.num_failed += 1,
            Outcome::Ignored => conclusion.num_ignored += 1,
        }
        out.outcome(&case.name, &outcome);
        done.push((case.name, outcome));
    }
    out.sections(&done);
    out.summary(&conclusion, start.elapsed().as_secs_f64());
    conclusion
}

/// libtest's console output, in the format `args` asks for.
struct Printer {
    out: std::io::StdoutLock<'static>,
    format: FormatSetting,
    show_output: bool,
    color: bool,
    width: usize,
}

impl Printer {
    fn new(args: &Arguments, cases: &[Case]) -> Self {
        let out = std::io::stdout().lock();
        let color = match args.color {
            Some(ColorSetting::Always) => true,
            Some(ColorSetting::Never) => false,
            _ => out.is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        };
        Printer {
            out,
            format: args.format.unwrap_or(FormatSetting::Pretty),
            show_output: args.show_output,
            color,
            width: cases
                .iter()
                .map(|c| c.name.chars().count())
                .max()
                .unwrap_or(0),
        }
    }

    fn json(&self) -> bool {
        self.format == FormatSetting::Json
    }

    fn title(&mut self, count: usize) {
        let line = match self.format {
            FormatSetting::Json => {
                format!(r#"{{ "type": "suite", "event": "started", "test_count": {count} }}"#)
            }
            _ => format!(
                "\nrunning {count} test{}",
                if count == 1 { "" } else { "s" }
            ),
        };
        self.line(&line);
    }

    fn started(&mut self, name: &str) {
        match self.format {
            FormatSetting::Json => {
                let line = format!(
                    r#"{{ "type": "test", "event": "started", "name": {} }}"#,
                    quote(name)
                );
                self.line(&line);
            }
            FormatSetting::Pretty => {
                let text = format!("test {name:<width$} ... ", width = self.width);
                self.write(&text);
            }
            FormatSetting::Terse => {}
        }
    }

    fn outcome(&mut self, name: &str, outcome: &Outcome) {
        let (event, word, letter) = match outcome {
            Outcome::Passed(_) => ("ok", "ok", "."),
            Outcome::Failed(_) => ("failed", "FAILED", "F"),
            Outcome::Ignored => ("ignored", "ignored", "i"),
        };
        match self.format {
            FormatSetting::Json => {
                let stdout = match outcome {
                    Outcome::Failed(text) => Some(text),
                    Outcome::Passed(output) if self.show_output => Some(output),
                    _ => None,
                };
                let stdout = stdout
                    .map(|text| format!(r#", "stdout": {}"#, quote(&with_newline(text))))
                    .unwrap_or_default();
                let line = format!(
                    r#"{{ "type": "test", "name": {}, "event": "{event}"{stdout} }}"#,
                    quote(name)
                );
                self.line(&line);
            }
            FormatSetting::Pretty => {
                let word = self.paint(outcome, word);
                self.line(&word);
            }
            FormatSetting::Terse => {
                let letter = self.paint(outcome, letter);
                self.write(&letter);
            }
        }
    }

    /// The `successes:` (with `--show-output`) and `failures:` sections.
    fn sections(&mut self, done: &[(String, Outcome)]) {
        if self.json() {
            return;
        }
        if self.format == FormatSetting::Terse {
            self.line("");
        }
        if self.show_output {
            let passed = done.iter().filter_map(|(name, outcome)| match outcome {
                Outcome::Passed(output) => Some((name, output)),
                _ => None,
            });
            self.section("successes", passed.collect());
        }
        let failed = done.iter().filter_map(|(name, outcome)| match outcome {
            Outcome::Failed(text) => Some((name, text)),
            _ => None,
        });
        self.section("failures", failed.collect());
    }

    fn section(&mut self, title: &str, tests: Vec<(&String, &String)>) {
        if tests.is_empty() {
            return;
        }
        self.line(&format!("\n{title}:\n"));
        for (name, text) in &tests {
            self.line(&format!("---- {name} stdout ----\n{}", with_newline(text)));
        }
        self.line(&format!("\n{title}:"));
        for (name, _) in &tests {
            self.line(&format!("    {name}"));
        }
    }

    fn summary(&mut self, conclusion: &Conclusion, seconds: f64) {
        let failed = conclusion.num_failed > 0;
        let counts = format!(
            "{} passed; {} failed; {} ignored; {} measured; {} filtered out",
            conclusion.num_passed,
            conclusion.num_failed,
            conclusion.num_ignored,
            conclusion.num_measured,
            conclusion.num_filtered_out
        );
        let line = match self.format {
            FormatSetting::Json => format!(
                r#"{{ "type": "suite", "event": "{}", "passed": {}, "failed": {}, "ignored": {}, "measured": {}, "filtered_out": {}, "exec_time": {seconds} }}"#,
                if failed { "failed" } else { "ok" },
                conclusion.num_passed,
                conclusion.num_failed,
                conclusion.num_ignored,
                conclusion.num_measured,
                conclusion.num_filtered_out
            ),
            _ => {
                let word = match failed {
                    true => self.paint(&Outcome::Failed(String::new()), "FAILED"),
                    false => self.paint(&Outcome::Passed(String::new()), "ok"),
                };
                format!("\ntest result: {word}. {counts}; finished in {seconds:.2}s\n")
            }
        };
        self.line(&line);
    }

    fn paint(&self, outcome: &Outcome, text: &str) -> String {
        let code = match outcome {
            Outcome::Passed(_) => "32",
            Outcome::Failed(_) => "31",
            Outcome::Ignored => "33",
        };
        match self.color {
            true => format!("\x1b[{code}m{text}\x1b[0m"),
            false => text.to_owned(),
        }
    }

    // A closed stdout (`| head`) ends the output, not the run: the
    // verdicts still reach the reports and the exit status.
    fn write(&mut self, text: &str) {
        let _ = self.out.write_all(text.as_bytes());
        let _ = self.out.flush();
    }

    fn line(&mut self, text: &str) {
        let _ = writeln!(self.out, "{text}");
        let _ = self.out.flush();
    }
}

/// `text` as a JSON string.
fn quote(text: &str) -> String {
    serde_json::Value::from(text).to_string()
}

fn with_newline(text: &str) -> String {
    match text.ends_with('\n') {
        true => text.to_owned(),
        false => format!("{text}\n"),
    }
}
