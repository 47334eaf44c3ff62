//! Placeholders in runner templates: `{query}`, `{session_id}`, `{qa_id}`,
//! `{context}`, `{assistant_id}`, `{language}` and `{turn}` (1-based position
//! in the session), shared by the `echo`, `http` and `command` runners.
//! `{{` writes a literal `{` (values a suite takes from the environment are
//! escaped so, and never expanded).

use crate::runner::Session;
use crate::schema::Batch;

/// Replaces each `{name}` of `template` for which `value` has a value, in
/// one pass, so substituted text is never expanded again; `{{` is a literal
/// `{`.
pub fn fill(template: &str, value: impl Fn(&str) -> Option<String>) -> String {
    let mut out = String::with_capacity(template.len());
    let mut rest = template;
    while let Some(open) = rest.find('{') {
        out.push_str(&rest[..open]);
        let after = &rest[open + 1..];
        if let Some(escaped) = after.strip_prefix('{') {
            out.push('{');
            rest = escaped;
            continue;
        }
        match after
            .find('}')
            .and_then(|close| Some((close, value(&after[..close])?)))
        {
            Some((close, text)) => {
                out.push_str(&text);
                rest = &after[close + 1..];
            }
            None => {
                out.push('{');
                rest = after;
            }
        }
    }
    out.push_str(rest);
    out
}

/// The value of placeholder `name` for `batch` in `session`; `None` for a
/// name that is not a placeholder (its braces are kept).
pub fn placeholder(name: &str, batch: &Batch, session: &Session<'_>) -> Option<String> {
    match name {
        "query" => Some(batch.query.clone()),
        "session_id" => Some(session.session_id.to_owned()),
        "qa_id" => Some(batch.qa_id.clone()),
        "context" => Some(session.context.to_owned()),
        "assistant_id" => Some(session.assistant_id.to_owned()),
        "language" => Some(session.language.unwrap_or_default().to_owned()),
        "turn" => Some((session.history.len() + 1).to_string()),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::fill;

    #[test]
    fn one_pass_and_unknown_names_kept() {
        let value = |name: &str| match name {
            "query" => Some("{turn} & {query}".to_owned()),
            "turn" => Some("2".to_owned()),
            _ => None,
        };
        assert_eq!(
            fill("Q: {query} ({turn}) {other} {", value),
            "Q: {turn} & {query} (2) {other} {"
        );
        assert_eq!(
            fill("{{query} {{{query}", value),
            "{query} {{turn} & {query}"
        );
    }
}
