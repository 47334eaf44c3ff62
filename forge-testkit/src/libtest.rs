//! What a test binary printed, read back: libtest's `test NAME ... RESULT`
//! lines (the compiled harness prints them as libtest does), and the YAML
//! examples of the README that the tests load.

use std::collections::BTreeSet;

/// Each `(test, result)` pair of libtest's pretty output (`ok`, `FAILED`,
/// `ignored`), in the order printed.
pub fn outcomes(stdout: &str) -> impl Iterator<Item = (&str, &str)> {
    stdout.lines().filter_map(|line| {
        let (name, result) = line.strip_prefix("test ")?.split_once(" ... ")?;
        Some((name.trim_end(), result.trim()))
    })
}

/// The outcome libtest printed for `test`.
pub fn outcome<'a>(stdout: &'a str, test: &str) -> Option<&'a str> {
    outcomes(stdout).find_map(|(name, result)| (name == test).then_some(result))
}

/// The tests libtest printed with `result` (`ok`, `FAILED`).
pub fn tests_with(stdout: &str, result: &str) -> BTreeSet<String> {
    outcomes(stdout)
        .filter(|(_, r)| *r == result)
        .map(|(name, _)| name.to_owned())
        .collect()
}

/// The first YAML example (a ```` ```yaml ```` block) after `heading` in
/// the workspace's README.
pub fn readme_yaml(heading: &str) -> String {
    let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../README.md");
    let readme = std::fs::read_to_string(path).expect("README.md");
    let section = readme
        .split_once(heading)
        .unwrap_or_else(|| panic!("no {heading:?} in the README"))
        .1;
    section
        .split_once("```yaml\n")
        .and_then(|(_, rest)| rest.split_once("```"))
        .unwrap_or_else(|| panic!("no YAML example after {heading:?}"))
        .0
        .to_owned()
}
