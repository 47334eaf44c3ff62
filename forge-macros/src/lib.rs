//! The `#[forge_runner]` attribute of [forge-eval](https://docs.rs/forge-eval).
//!
//! Use it through forge, as `forge::forge_runner`; see its documentation
//! there. This crate holds the entry point only: the arguments are parsed in
//! `attr`, the annotated item in `parse`, and the code is written in `expand`.
#![forbid(unsafe_code)]
#![warn(missing_docs)]

mod attr;
mod expand;
mod parse;

use proc_macro::TokenStream;

/// Turns a struct's `async fn` into a forge runner that suites can name.
///
/// Put it on an inherent `impl` block holding exactly one method, the
/// runner method. The struct is built from the suite's `runner:` mapping
/// (every key but `type`), so it must implement `serde::Deserialize`:
///
/// ```
/// #[derive(serde::Deserialize)]
/// struct WeatherBot {
///     greeting: String,
/// }
///
/// #[forge::forge_runner(name = "weather-bot")]
/// impl WeatherBot {
///     async fn answer(&self, query: &str) -> Result<String, std::io::Error> {
///         Ok(format!("{} It is sunny wherever you ask about: {query}", self.greeting))
///     }
/// }
/// # fn main() {
/// # let runner = forge::registry::build(
/// #     forge::__private::serde_json::json!({"type": "weather-bot", "greeting": "Hi!"}),
/// #     &forge::registry::BuildContext::default(),
/// # ).unwrap();
/// # }
/// ```
///
/// A suite then uses it with `runner: {type: weather-bot, greeting: "Hi!"}`.
///
/// # The runner method
///
/// `async fn NAME(&self, query: &str, ...) -> Result<T, E>`. After the query
/// it may take `batch: &forge::Batch` and/or `session: &forge::Session<'_>`,
/// in that order (they are recognised by type):
///
/// - `(&self, query: &str)`
/// - `(&self, query: &str, batch: &Batch)`
/// - `(&self, query: &str, session: &Session<'_>)`
/// - `(&self, query: &str, batch: &Batch, session: &Session<'_>)`
///
/// It returns a `Result` (any path ending in `Result`, so `io::Result<T>`
/// and `anyhow::Result<T>` work too):
///
/// - `Ok`: a `String`, a [`forge::Reply`](https://docs.rs/forge-eval) (to add
///   agentic data or log-probabilities), or anything `Into<Reply>`.
/// - `Err`: any `E: Display`, which fails the turn permanently with the
///   error's message (the batch's answer becomes `[ERROR] <message>`); or
///   `forge::RunError` itself, passed through unchanged, so that a method can
///   return `RunError::transient(...)` for failures the suite may retry.
///
/// Timing, the suite's timeout and retries, and the `[ERROR]` capture come
/// from the default [`Runner::run_batch`](https://docs.rs/forge-eval).
///
/// # Arguments
///
/// - `name = "..."`: the name suites use in `runner: {type: ...}`. Default:
///   the struct's name in kebab-case (`WeatherBot` -> `weather-bot`).
///   ASCII letters, digits, `-`, `_` and `.`.
/// - `crate = "..."`: the path of the forge crate, when it is renamed.
///   Default: `::forge`.
///
/// # Names
///
/// Two runners with one name in one module are a compile error (the name
/// `forge_runner_named_...` is defined multiple times). Across modules or
/// crates, or against a built-in runner, building a runner of that name
/// fails with "registered more than once".
#[proc_macro_attribute]
pub fn forge_runner(args: TokenStream, item: TokenStream) -> TokenStream {
    let original = proc_macro2::TokenStream::from(item.clone());
    expand::forge_runner(args.into(), item.into())
        .unwrap_or_else(|error| {
            // Keep the item so that IDEs and later errors still see it.
            let mut tokens = error.into_compile_error();
            tokens.extend(original);
            tokens
        })
        .into()
}
