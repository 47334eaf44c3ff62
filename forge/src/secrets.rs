//! Credentials, and the one rule that keeps them out of every output.
//!
//! Every value a runner sends as a credential (an API key, an
//! `Authorization` value, a secret header, URL user info, a secret-looking
//! query value), whatever its source (the suite, `${VAR}`, an environment
//! fallback such as `ALQUIMIA_API_KEY`) and whatever its length, is replaced
//! by [`REDACTED`] wherever forge writes text: the summary JSON, `junit.xml`,
//! the console, the harness's failure messages, runner error messages and
//! the payload API's responses. [`Secrets::redact`] is that rule.

use std::borrow::Cow;
use std::sync::Arc;

use aho_corasick::AhoCorasick;
use serde_json::Value;

/// What every secret is replaced by.
pub const REDACTED: &str = "[REDACTED]";

/// Credentials shorter than this (in characters) are still redacted, but
/// forge warns about them: redacting a short value may rewrite ordinary
/// words that contain it.
pub const SHORT_SECRET_CHARS: usize = 8;

/// A set of secret values and the matcher that finds them in text. Cheap to
/// clone. Its `Debug` output shows only how many there are.
#[derive(Clone, Default)]
pub struct Secrets {
    values: Arc<[String]>,
    matcher: Option<Arc<AhoCorasick>>,
}

impl std::fmt::Debug for Secrets {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Secrets")
            .field("count", &self.values.len())
            .finish()
    }
}

impl Secrets {
    /// The set of `values` (trimmed; empty ones left out). A value of the
    /// form `<scheme> <token>` (`Bearer sk-...`) adds its token too.
    pub fn new<S: AsRef<str>>(values: impl IntoIterator<Item = S>) -> Self {
        let mut all: Vec<String> = Vec::new();
        for value in values {
            all.extend(credential_parts(value.as_ref()));
        }
        all.sort_unstable();
        all.dedup();
        let matcher = if all.is_empty() {
            None
        } else {
            // Plain literals: building cannot fail short of absurd sizes, and
            // then nothing would be redacted, so fall back to a slow but
            // exact scan rather than lose the rule.
            AhoCorasick::new(&all).ok().map(Arc::new)
        };
        Secrets {
            values: all.into(),
            matcher,
        }
    }

    /// Whether there is no secret.
    pub fn is_empty(&self) -> bool {
        self.values.is_empty()
    }

    /// How many values are redacted.
    pub fn len(&self) -> usize {
        self.values.len()
    }

    /// The values of `self` and of `other`.
    pub fn union(&self, other: &Secrets) -> Secrets {
        if other.is_empty() {
            return self.clone();
        }
        if self.is_empty() {
            return other.clone();
        }
        Secrets::new(self.values.iter().chain(other.values.iter()))
    }

    /// How many values are shorter than [`SHORT_SECRET_CHARS`].
    pub fn short_count(&self) -> usize {
        self.values
            .iter()
            .filter(|v| v.chars().count() < SHORT_SECRET_CHARS)
            .count()
    }

    /// Whether `text` holds a secret.
    pub fn appears_in(&self, text: &str) -> bool {
        match &self.matcher {
            Some(matcher) => matcher.is_match(text),
            None => self.values.iter().any(|v| text.contains(v.as_str())),
        }
    }

    /// `text` with every secret replaced by [`REDACTED`]. Overlapping or
    /// adjacent secrets become one `[REDACTED]`; an existing `[REDACTED]`
    /// is left as it is (so redacting twice changes nothing).
    pub fn redact<'a>(&self, text: &'a str) -> Cow<'a, str> {
        if self.is_empty() || !self.appears_in(text) {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        for (i, piece) in text.split(REDACTED).enumerate() {
            if i > 0 {
                out.push_str(REDACTED);
            }
            self.redact_piece(piece, &mut out);
        }
        Cow::Owned(out)
    }

    fn redact_piece(&self, piece: &str, out: &mut String) {
        let mut spans: Vec<(usize, usize)> = match &self.matcher {
            Some(matcher) => matcher
                .find_overlapping_iter(piece)
                .map(|m| (m.start(), m.end()))
                .collect(),
            None => self
                .values
                .iter()
                .flat_map(|v| {
                    piece
                        .match_indices(v.as_str())
                        .map(|(at, s)| (at, at + s.len()))
                })
                .collect(),
        };
        spans.sort_unstable();
        let mut copied = 0;
        let mut spans = spans.into_iter().peekable();
        while let Some((start, mut end)) = spans.next() {
            while let Some(&(next_start, next_end)) = spans.peek() {
                if next_start > end {
                    break;
                }
                end = end.max(next_end);
                spans.next();
            }
            if start >= copied {
                out.push_str(&piece[copied..start]);
                out.push_str(REDACTED);
                copied = end;
            } else if end > copied {
                copied = end;
            }
        }
        out.push_str(&piece[copied..]);
    }

    /// [`redact`](Self::redact) applied to every string inside `value`
    /// (object keys are left as they are).
    pub fn redact_value(&self, value: &mut Value) {
        if self.is_empty() {
            return;
        }
        match value {
            Value::String(s) => {
                if let Cow::Owned(redacted) = self.redact(s) {
                    *s = redacted;
                }
            }
            Value::Array(items) => items.iter_mut().for_each(|v| self.redact_value(v)),
            Value::Object(map) => map.values_mut().for_each(|v| self.redact_value(v)),
            _ => {}
        }
    }

    /// [`redact`](Self::redact) in place.
    pub fn redact_string(&self, text: &mut String) {
        if let Cow::Owned(redacted) = self.redact(text) {
            *text = redacted;
        }
    }
}

impl<S: AsRef<str>> FromIterator<S> for Secrets {
    fn from_iter<I: IntoIterator<Item = S>>(iter: I) -> Self {
        Secrets::new(iter)
    }
}

/// The value (trimmed) and, for `<scheme> <token>`, the token alone.
fn credential_parts(value: &str) -> Vec<String> {
    let value = value.trim();
    if value.is_empty() {
        return Vec::new();
    }
    let mut parts = vec![value.to_owned()];
    if let Some((scheme, token)) = value.split_once(' ') {
        let token = token.trim();
        if scheme.chars().all(|c| c.is_ascii_alphabetic()) && !token.is_empty() {
            parts.push(token.to_owned());
        }
    }
    parts
}

/// Words that make a configuration key, header name or query parameter
/// name a secret one (matched against whole words of the name, so
/// `max_tokens` and `monkey` are not secret, `api_key`, `X-Api-Key`,
/// `accessToken` and `client_secret` are).
const SECRET_WORDS: &[&str] = &[
    "key",
    "apikey",
    "token",
    "secret",
    "password",
    "passwd",
    "pwd",
    "auth",
    "authorization",
    "signature",
    "sig",
    "credential",
    "credentials",
    "cookie",
    "access",
    "bearer",
];

/// Whether a configuration key, header name or query parameter name names
/// a secret: one of its words (split at `_`, `-`, `.`, spaces and camelCase
/// humps) is `key`, `token`, `secret`, `password`, `auth`, `authorization`,
/// `signature`, `sig`, `credential`, `cookie`, `access`, ...
pub fn is_secret_name(name: &str) -> bool {
    words(name).any(|word| SECRET_WORDS.contains(&word.as_str()))
}

fn words(name: &str) -> impl Iterator<Item = String> + '_ {
    let mut words = Vec::new();
    let mut current = String::new();
    let mut previous_lower = false;
    for c in name.chars() {
        if !c.is_alphanumeric() {
            if !current.is_empty() {
                words.push(std::mem::take(&mut current));
            }
            previous_lower = false;
            continue;
        }
        if c.is_uppercase() && previous_lower && !current.is_empty() {
            words.push(std::mem::take(&mut current));
        }
        previous_lower = c.is_lowercase() || c.is_ascii_digit();
        current.extend(c.to_lowercase());
    }
    if !current.is_empty() {
        words.push(current);
    }
    words.into_iter()
}

/// The secrets of an `http://` or `https://` URL: its user name and
/// password, and the values of its secret-looking query parameters (as
/// written and decoded). Nothing for text that is not such a URL.
pub fn url_secrets(text: &str) -> Vec<String> {
    let text = text.trim();
    if !(text.starts_with("http://") || text.starts_with("https://")) {
        return Vec::new();
    }
    let Ok(url) = reqwest::Url::parse(text) else {
        return Vec::new();
    };
    let mut found = Vec::new();
    let mut push = |raw: &str| {
        if raw.is_empty() {
            return;
        }
        found.push(raw.to_owned());
        if let Ok(decoded) = percent_decode(raw) {
            if decoded != raw {
                found.push(decoded);
            }
        }
    };
    push(url.username());
    if let Some(password) = url.password() {
        push(password);
    }
    if let Some(query) = url.query() {
        for pair in query.split('&') {
            if let Some((name, value)) = pair.split_once('=') {
                let name = percent_decode(name).unwrap_or_else(|_| name.to_owned());
                if is_secret_name(&name) {
                    push(value);
                    let plus = value.replace('+', " ");
                    if plus != value {
                        push(&plus);
                    }
                }
            }
        }
    }
    found
}

/// Percent-decodes `text` (UTF-8); `Err` when the bytes are not UTF-8.
fn percent_decode(text: &str) -> Result<String, std::string::FromUtf8Error> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        let hex = |b: u8| (b as char).to_digit(16);
        match (bytes[i], bytes.get(i + 1), bytes.get(i + 2)) {
            (b'%', Some(&h), Some(&l)) if hex(h).is_some() && hex(l).is_some() => {
                let (h, l) = (hex(h).unwrap_or(0), hex(l).unwrap_or(0));
                out.push((h * 16 + l) as u8);
                i += 3;
            }
            (b, _, _) => {
                out.push(b);
                i += 1;
            }
        }
    }
    String::from_utf8(out)
}

/// The secrets of a runner's configuration (a suite's `runner:` mapping):
/// the string values under a secret-looking key ([`is_secret_name`]), the
/// [`url_secrets`] of every string, and every string of `redact: [..]`.
pub fn config_secrets(config: &Value) -> Vec<String> {
    let mut out = Vec::new();
    collect(config, false, &mut out);
    out
}

fn collect(value: &Value, secret: bool, out: &mut Vec<String>) {
    match value {
        Value::String(s) => {
            if secret {
                out.push(s.clone());
            }
            out.extend(url_secrets(s));
        }
        Value::Number(n) if secret => out.push(n.to_string()),
        Value::Array(items) => items.iter().for_each(|v| collect(v, secret, out)),
        Value::Object(map) => {
            for (key, value) in map {
                collect(value, secret || key == "redact" || is_secret_name(key), out);
            }
        }
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    #[test]
    fn every_credential_becomes_redacted() {
        let secrets = Secrets::new(["sk-live-123", "Bearer abc"]);
        assert_eq!(
            secrets.redact("key sk-live-123, header Bearer abc, token abc"),
            "key [REDACTED], header [REDACTED], token [REDACTED]"
        );
    }

    #[test]
    fn redacts_every_length_once_and_idempotently() {
        let secrets = Secrets::new(["Zq9", "abcde", "0123456789abcdefghij"]);
        let text = "Zq9 abcde 0123456789abcdefghij xZq9x";
        let once = secrets.redact(text).into_owned();
        assert_eq!(once, "[REDACTED] [REDACTED] [REDACTED] x[REDACTED]x");
        assert_eq!(secrets.redact(&once), once);
        // A short secret inside the marker does not rewrite it.
        let red = Secrets::new(["RED", "ACT"]);
        assert_eq!(red.redact("[REDACTED] RED"), "[REDACTED] [REDACTED]");
        assert_eq!(secrets.short_count(), 2);
    }

    #[test]
    fn overlapping_secrets_leave_no_part_behind() {
        let secrets = Secrets::new(["abcd", "cdef"]);
        assert_eq!(secrets.redact("xabcdefx"), "x[REDACTED]x");
        assert_eq!(secrets.redact("abcdcdef"), "[REDACTED]");
        let bearer = Secrets::new(["Bearer tok-1"]);
        assert_eq!(bearer.redact("got tok-1"), "got [REDACTED]");
        assert_eq!(bearer.redact("got Bearer tok-1"), "got [REDACTED]");
        assert!(matches!(bearer.redact("nothing"), Cow::Borrowed(_)));
        assert!(!format!("{bearer:?}").contains("tok"));
    }

    #[test]
    fn secret_names_are_whole_words() {
        for name in [
            "api_key",
            "apiKey",
            "X-Api-Key",
            "Authorization",
            "access_token",
            "client_secret",
            "X-Amz-Signature",
            "sig",
            "password",
            "key",
        ] {
            assert!(is_secret_name(name), "{name}");
        }
        for name in [
            "max_tokens",
            "monkey",
            "keywords",
            "model",
            "base_url",
            "agent_id",
        ] {
            assert!(!is_secret_name(name), "{name}");
        }
    }

    #[test]
    fn urls_and_configs_give_their_secrets() {
        let found = url_secrets("https://user:p%40ss@h.example/x?api_key=K1&n=5&sig=a+b");
        for expected in ["user", "p%40ss", "p@ss", "K1", "a+b", "a b"] {
            assert!(found.iter().any(|f| f == expected), "{expected}: {found:?}");
        }
        assert!(!found.iter().any(|f| f == "5"), "{found:?}");
        assert!(url_secrets("not a url ?key=x").is_empty());
        let config = json!({
            "type": "http",
            "url": "https://h/x?token=T0K",
            "headers": {"Authorization": "Bearer abc", "Accept": "text/plain"},
            "env": {"API_KEY": "k1"},
            "redact": ["extra1"],
            "params": {"max_tokens": 5},
        });
        let found = config_secrets(&config);
        for expected in ["T0K", "Bearer abc", "k1", "extra1"] {
            assert!(found.iter().any(|f| f == expected), "{expected}: {found:?}");
        }
        assert!(
            !found.iter().any(|f| f == "text/plain" || f == "5"),
            "{found:?}"
        );
    }

    #[test]
    fn redacts_json_values_but_not_keys() {
        let secrets = Secrets::new(["k3y"]);
        let mut value = json!({"k3y": ["a k3y", {"n": "k3y"}], "x": 1});
        secrets.redact_value(&mut value);
        assert_eq!(
            value,
            json!({"k3y": ["a [REDACTED]", {"n": "[REDACTED]"}], "x": 1})
        );
    }
}
