//! `${VAR}` and `${VAR:-default}` interpolation from the environment.
//! `$${` writes a literal `${`.

use serde_json::Value;

/// Replaces the placeholders in `text`. The error is the name of a variable
/// that is unset (or empty) and has no default.
pub fn interpolate(text: &str) -> Result<String, String> {
    interpolate_with(text, |name| std::env::var(name).ok())
}

pub(crate) fn interpolate_with(
    text: &str,
    lookup: impl Fn(&str) -> Option<String>,
) -> Result<String, String> {
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
            let Some(end) = body.find('}') else {
                out.push_str(tail);
                return Ok(out);
            };
            let expr = &body[..end];
            let (name, default) = match expr.split_once(":-") {
                Some((name, default)) => (name, Some(default)),
                None => (expr, None),
            };
            match (lookup(name).filter(|v| !v.is_empty()), default) {
                (Some(value), _) => out.push_str(&value),
                (None, Some(default)) => out.push_str(default),
                (None, None) => return Err(name.to_owned()),
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

/// Interpolates every string inside a JSON value.
pub(crate) fn interpolate_value(value: &mut Value) -> Result<(), String> {
    match value {
        Value::String(s) => *s = interpolate(s)?,
        Value::Array(items) => {
            for item in items {
                interpolate_value(item)?;
            }
        }
        Value::Object(map) => {
            for (_, item) in map.iter_mut() {
                interpolate_value(item)?;
            }
        }
        _ => {}
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::interpolate_with;

    fn env(name: &str) -> Option<String> {
        match name {
            "HOST" => Some("example.org".into()),
            "EMPTY" => Some(String::new()),
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
        assert_eq!(interpolate_with("${NOPE}", env), Err("NOPE".to_owned()));
        assert_eq!(
            interpolate_with("${HOST:-}", env).as_deref(),
            Ok("example.org")
        );
    }
}
