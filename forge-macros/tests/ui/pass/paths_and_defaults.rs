//! Full paths for the parameter types, `pub async fn`, a default name, and
//! `forge::RunError` as the error type; no `use` of forge at all. Strict
//! lints: the generated code must not warn in a user's crate.
#![forbid(unsafe_code)]
#![deny(warnings, missing_docs, unused_qualifications, unused_results)]
#![deny(rust_2018_idioms, unreachable_pub, missing_debug_implementations)]

/// A runner.
#[derive(Debug, serde::Deserialize)]
pub struct HTTPEchoBot {
    #[serde(default)]
    suffix: String,
}

#[forge::forge_runner]
impl HTTPEchoBot {
    /// Echoes the query.
    pub async fn answer(
        &self,
        query: &str,
        _batch: &forge::Batch,
        _session: &forge::Session<'_>,
    ) -> ::core::result::Result<forge::Reply, forge::RunError> {
        Ok(forge::Reply::text(format!("{query}{}", self.suffix)))
    }
}

mod nested {
    #[derive(Debug, serde::Deserialize)]
    pub(crate) struct Bot;

    // The same struct name in another module, another runner name.
    #[forge::forge_runner(name = "nested.bot_v2")]
    impl Bot {
        async fn answer(&self, query: &str) -> Result<String, std::convert::Infallible> {
            Ok(query.to_owned())
        }
    }
}

fn main() {
    let names = forge::registry::names();
    assert!(names.contains(&"http-echo-bot"), "{names:?}");
    assert!(names.contains(&"nested.bot_v2"), "{names:?}");
}
