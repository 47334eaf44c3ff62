//! `${VAR}` and `${VAR:-default}` interpolation from the environment.
//! `$${` writes a literal `${`. A default may itself hold placeholders
//! (`${C:-${B:-none}}`), nested at most [`MAX_DEPTH`] deep.
//!
//! Values from the environment are data, never templates: in the fields a
//! runner fills per turn (`{query}`, `{session_id}`, ... — see
//! [`template_fields`]), their `{` is escaped as `{{`, which the template
//! writes back as a single `{` without expanding what follows.

use serde_json::Value;

/// How deep defaults may nest (`${A:-${B:-${C}}}` is 3 deep).
pub const MAX_DEPTH: usize = 8;

/// Why a text cannot be interpolated.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum EnvError {
    /// A variable that is unset and has no default.
    Unset(String),
    /// A variable that is set to the empty string and has no default.
    Empty(String),
    /// Defaults nested deeper than [`MAX_DEPTH`], starting at this variable.
    TooDeep(String),
}

impl EnvError {
    /// The variable the error is about.
    pub fn variable(&self) -> &str {
        match self {
            EnvError::Unset(name) | EnvError::Empty(name) | EnvError::TooDeep(name) => name,
        }
    }
}

impl std::fmt::Display for EnvError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            EnvError::Unset(var) => write!(
                f,
                "environment variable {var} is not set (use ${{{var}:-default}} for a default)"
            ),
            EnvError::Empty(var) => write!(
                f,
                "environment variable {var} is empty (set it to a value, or use ${{{var}:-default}} for a default)"
            ),
            EnvError::TooDeep(var) => write!(
                f,
                "the default of ${{{var}}} nests placeholders more than {MAX_DEPTH} deep"
            ),
        }
    }
}

/// Replaces the placeholders in `text` with the environment's values.
pub fn interpolate(text: &str) -> Result<String, EnvError> {
    interpolate_with(text, |name| std::env::var(name).ok())
}

pub(crate) fn interpolate_with(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, EnvError> {
    expand(text, &lookup, false, 0)
}

/// `text` with its placeholders replaced; with `escape`, the `{` of values
/// read from the environment are doubled (data for a template).
fn expand(
    text: &str,
    lookup: &dyn Fn(&str) -> Option<String>,
    escape: bool,
    depth: usize,
) -> Result<String, EnvError> {
    if !text.contains('$') {
        return Ok(text.to_owned());
    }
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(start) = rest.find('$') {
        out.push_str(&rest[..start]);
        let tail = &rest[start..];
        if let Some(after) = tail.strip_prefix("$${") {
            out.push_str("${");
            rest = after;
        } else if let Some(body) = tail.strip_prefix("${") {
            let Some(end) = closing_brace(body) else {
                out.push_str(tail);
                return Ok(out);
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            let value = lookup(name);
            let empty = value.as_ref().is_some_and(String::is_empty);
            match (value.filter(|v| !v.is_empty()), default) {
                (Some(value), _) if escape => out.push_str(&value.replace('{', "{{")),
                (Some(value), _) => out.push_str(&value),
                (None, Some(_)) if depth >= MAX_DEPTH => {
                    return Err(EnvError::TooDeep(name.to_owned()))
                }
                (None, Some(default)) => out.push_str(&expand(default, lookup, escape, depth + 1)?),
                (None, None) if empty => return Err(EnvError::Empty(name.to_owned())),
                (None, None) => return Err(EnvError::Unset(name.to_owned())),
            }
            rest = &body[end + 1..];
        } else {
            out.push('$');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    Ok(out)
}

/// The position of the `}` closing a placeholder whose body starts `body`,
/// skipping the placeholders nested in its default.
fn closing_brace(body: &str) -> Option<usize> {
    let bytes = body.as_bytes();
    let (mut depth, mut i) = (0usize, 0usize);
    while i < bytes.len() {
        match bytes[i] {
            b'$' if bytes.get(i + 1) == Some(&b'{') => {
                depth += 1;
                i += 1;
            }
            b'}' if depth == 0 => return Some(i),
            b'}' => depth -= 1,
            _ => {}
        }
        i += 1;
    }
    None
}

/// The fields of a built-in runner type that are templates filled per turn,
/// as JSON pointers of the `runner:` mapping (a field and all it holds).
pub(crate) fn template_fields(runner_type: &str) -> &'static [&'static str] {
    match runner_type {
        "echo" => &["/template"],
        "http" => &["/url", "/headers", "/body"],
        "command" => &["/args", "/input", "/env"],
        _ => &[],
    }
}

/// Interpolates every string inside a runner's mapping; in its template
/// fields (see [`template_fields`]) values from the environment stay data.
pub(crate) fn interpolate_runner(runner: &mut Value) -> Result<(), EnvError> {
    let kind = runner
        .get("type")
        .and_then(Value::as_str)
        .unwrap_or_default()
        .to_owned();
    let templates = template_fields(&kind);
    let lookup = |name: &str| std::env::var(name).ok();
    walk(runner, &mut String::new(), &|pointer, text| {
        let escape = templates
            .iter()
            .any(|t| pointer == *t || pointer.starts_with(&format!("{t}/")));
        expand(text, &lookup, escape, 0)
    })
}

/// Replaces each string inside `value` (at JSON pointer `pointer`) by `f`'s.
fn walk(
    value: &mut Value,
    pointer: &mut String,
    f: &dyn Fn(&str, &str) -> Result<String, EnvError>,
) -> Result<(), EnvError> {
    match value {
        Value::String(s) => *s = f(pointer, s)?,
        Value::Array(items) => {
            for (index, item) in items.iter_mut().enumerate() {
                let len = pointer.len();
                pointer.push_str(&format!("/{index}"));
                walk(item, pointer, f)?;
                pointer.truncate(len);
            }
        }
        Value::Object(map) => {
            for (key, item) in map.iter_mut() {
                let len = pointer.len();
                pointer.push('/');
                pointer.push_str(&key.replace('~', "~0").replace('/', "~1"));
                walk(item, pointer, f)?;
                pointer.truncate(len);
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::{expand, interpolate_with, EnvError, MAX_DEPTH};

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.org".into()),
            "EMPTY" => Some(String::new()),
            "B" => Some("bee".into()),
            "BRACES" => Some("a {query} b}".into()),
            _ => None,
        }
    }

    #[test]
    fn placeholders() {
        assert_eq!(
            interpolate_with("https://${HOST}/v1", env).as_deref(),
            Ok("https://example.org/v1")
        );
        assert_eq!(
            interpolate_with("${NOPE:-fallback}", env).as_deref(),
            Ok("fallback")
        );
        assert_eq!(interpolate_with("${EMPTY:-x}", env).as_deref(), Ok("x"));
        assert_eq!(
            interpolate_with("cost $5 and $${HOST}", env).as_deref(),
            Ok("cost $5 and ${HOST}")
        );
        assert_eq!(
            interpolate_with("${NOPE}", env),
            Err(EnvError::Unset("NOPE".to_owned()))
        );
        assert_eq!(
            interpolate_with("${EMPTY}", env),
            Err(EnvError::Empty("EMPTY".to_owned()))
        );
        assert_eq!(
            EnvError::Empty("EMPTY".to_owned()).to_string(),
            "environment variable EMPTY is empty (set it to a value, or use ${EMPTY:-default} for a default)"
        );
        assert_eq!(
            interpolate_with("${HOST:-}", env).as_deref(),
            Ok("example.org")
        );
    }

    #[test]
    fn defaults_nest() {
        assert_eq!(interpolate_with("${C:-${B}}", env).as_deref(), Ok("bee"));
        assert_eq!(
            interpolate_with("<${C:-${D:-${B}!}}>", env).as_deref(),
            Ok("<bee!>")
        );
        assert_eq!(
            interpolate_with("${HOST:-${NOPE}}", env).as_deref(),
            Ok("example.org")
        );
        assert_eq!(
            interpolate_with("${C:-${NOPE}}", env),
            Err(EnvError::Unset("NOPE".to_owned()))
        );
        let deep = format!(
            "{}x{}",
            "${N:-".repeat(MAX_DEPTH + 1),
            "}".repeat(MAX_DEPTH + 1)
        );
        assert!(matches!(
            interpolate_with(&deep, env),
            Err(EnvError::TooDeep(_))
        ));
        let ok = format!("{}x{}", "${N:-".repeat(MAX_DEPTH), "}".repeat(MAX_DEPTH));
        assert_eq!(interpolate_with(&ok, env).as_deref(), Ok("x"));
    }

    #[test]
    fn template_values_are_escaped() {
        assert_eq!(
            expand("q={query} v=${BRACES}", &env, true, 0).as_deref(),
            Ok("q={query} v=a {{query} b}")
        );
        assert_eq!(
            interpolate_with("${BRACES}", env).as_deref(),
            Ok("a {query} b}")
        );
    }
}
