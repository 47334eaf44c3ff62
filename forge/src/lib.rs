#![doc = include_str!("../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

// The public API: what a user writes against. The front ends a user
// calls (`cli::main`, `harness::main`, the payload API, `serve`, `lambda`),
// the runner contract and its built-in runners, the registry of runner
// types, the Fair-Forge data model, errors, and the engine.
pub mod cli;
pub mod diff;
pub mod fanout;
pub mod harness;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod merge;
pub mod payload;
pub mod registry;
pub mod runners;
#[cfg(feature = "serve")]
pub mod serve;

// The pipeline, one way through (see `pipeline`): load -> select -> run ->
// report, over the engine; internal.
mod budget;
mod cassette;
mod check;
mod duration;
mod engine;
mod error;
mod init;
mod interrupt;
mod judge;
mod libtest;
mod load;
mod output;
mod partition;
mod pipeline;
mod policy;
mod report;
mod run;
mod runner;
mod schema;
mod secrets;
mod select;
mod suite;
mod usage;

pub use async_trait::async_trait;
pub use engine::{run_dataset, Engine, Halt, Job, INTERRUPTED};
pub use error::{
    ConfigError, DatasetError, ErrorKind, MergeError, ReportError, RunError, SuiteError,
};
pub use forge_macros::forge_runner;
pub use policy::{Backoff, Policy, RateLimit};
pub use runner::{BatchOutcome, Reply, Retry, Runner, Session, Turns};
pub use schema::{
    Batch, Dataset, ErrorResponse, Object, Response, RunResponse, Summary, TurnFacts,
};
pub use secrecy::{ExposeSecret, SecretString};
pub use suite::{LoadOptions, Suite, SuiteDataset};
pub use usage::{Budget, Price, Usage};

/// Registers a hand-written [`Runner`] under a name suites use in
/// `runner: {type: NAME}`: the way to a runner that overrides
/// [`Runner::run_dataset`] or [`Runner::run_batch`]. `build` is a
/// `fn(serde_json::Value, &forge::registry::BuildContext) ->
/// Result<Arc<dyn Runner>, forge::ConfigError>`, given the rest of the
/// `runner:` mapping (read it with [`registry::config`]).
///
/// ```
/// use std::sync::Arc;
/// use forge::{async_trait, Batch, Reply, RunError, Runner, Session};
///
/// struct Parrot;
///
/// #[async_trait]
/// impl Runner for Parrot {
///     async fn call(&self, batch: &Batch, _: &Session<'_>) -> Result<Reply, RunError> {
///         Ok(Reply::text(batch.query.clone()))
///     }
/// }
///
/// forge::register_runner!("parrot", |_config, _context| Ok(Arc::new(Parrot)));
/// # assert!(forge::registry::names().contains(&"parrot"));
/// ```
#[macro_export]
macro_rules! register_runner {
    ($name:literal, $build:expr) => {
        $crate::__private::inventory::submit! {
            $crate::__private::RunnerType { name: $name, build: $build }
        }
    };
}

/// Paths the `#[forge_runner]` macro's generated code uses, so that users
/// need no dependency but `forge`. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use crate::registry::{config, BuildContext, BuildFn, RunnerType};
    pub use async_trait::async_trait;
    pub use inventory;
    pub use serde;
    pub use serde_json;
    pub use std::sync::Arc;

    use crate::{ConfigError, Reply, RunError};

    /// A `#[forge_runner]` struct, which is built from the suite's mapping.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be built from the suite's `runner:` mapping",
        label = "`{Self}` does not implement `serde::Deserialize`",
        note = "add `#[derive(serde::Deserialize)]` to `{Self}`; its fields are read from the rest of `runner: {{type: ..., ...}}`"
    )]
    pub trait RunnerConfig: serde::de::DeserializeOwned {}

    impl<T: serde::de::DeserializeOwned> RunnerConfig for T {}

    /// Builds a `#[forge_runner]` struct from its `runner:` mapping with
    /// [`registry::config`](crate::registry::config). A unit struct
    /// (`struct Bot;`), which serde reads from `null` rather than from a
    /// mapping, accepts an empty mapping, and a mapping with keys gets
    /// "takes no configuration" instead of serde's "expected unit struct".
    pub fn runner_config<T: RunnerConfig>(
        runner: &str,
        config: serde_json::Value,
    ) -> Result<T, ConfigError> {
        let keys: Option<Vec<String>> = match &config {
            serde_json::Value::Null => Some(Vec::new()),
            serde_json::Value::Object(map) => Some(map.keys().cloned().collect()),
            _ => None,
        };
        let error = match crate::registry::config::<T>(runner, config) {
            Ok(runner) => return Ok(runner),
            Err(error) => error,
        };
        match (keys, serde_json::from_value::<T>(serde_json::Value::Null)) {
            (Some(keys), Ok(unit)) if keys.is_empty() => Ok(unit),
            (Some(keys), Ok(_)) => Err(ConfigError::new(
                runner,
                format!(
                    "takes no configuration, found {}",
                    keys.iter()
                        .map(|k| format!("`{k}`"))
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            )
            .at(keys.first())),
            _ => Err(error),
        }
    }

    /// An answer type a `#[forge_runner]` method may return in its `Ok`.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be a runner's answer",
        label = "the runner method's `Ok` type must be `String`, `forge::Reply`, or another type that is `Into<forge::Reply>`",
        note = "return `Result<String, E>`, or `Result<forge::Reply, E>` to add agentic data or logprobs"
    )]
    pub trait IntoReply {
        /// Converts the answer.
        fn into_reply(self) -> Reply;
    }

    impl<T: Into<Reply>> IntoReply for T {
        fn into_reply(self) -> Reply {
            self.into()
        }
    }

    /// Converts a runner method's answer into a [`Reply`].
    pub fn into_reply<T: IntoReply>(answer: T) -> Reply {
        answer.into_reply()
    }

    /// An error type a `#[forge_runner]` method may return in its `Err`.
    #[diagnostic::on_unimplemented(
        message = "`{Self}` cannot be a runner's error: it does not implement `std::fmt::Display`",
        label = "the runner method's error type must implement `Display` (or be `forge::RunError`)",
        note = "its message becomes the batch's `[ERROR] <message>`"
    )]
    pub trait RunnerError: std::fmt::Display {}

    impl<E: std::fmt::Display + ?Sized> RunnerError for E {}

    /// A runner method's error, converted into a [`RunError`] by autoref
    /// specialisation: `(&ErrorWrap(e)).__forge_into_run_error()` picks
    /// [`ViaRunError`] when `e` is a `RunError` (passed through unchanged,
    /// so transient errors stay transient) and [`ViaDisplay`] otherwise
    /// (a permanent error carrying `e.to_string()`). Coherence rules out a
    /// plain trait implemented for both `RunError` and every `Display` type.
    pub struct ErrorWrap<E>(pub E);

    /// The `RunError` case of [`ErrorWrap`]; found first by method lookup.
    pub trait ViaRunError {
        /// The error, unchanged.
        fn __forge_into_run_error(&self) -> RunError;
    }

    impl ViaRunError for ErrorWrap<RunError> {
        fn __forge_into_run_error(&self) -> RunError {
            self.0.clone()
        }
    }

    /// The `Display` case of [`ErrorWrap`]; found after an autoref.
    pub trait ViaDisplay {
        /// The wrapped error type.
        type Error;
        /// The wrapped error.
        fn __forge_error(&self) -> &Self::Error;
        /// A permanent error with the error's message. The bound sits on
        /// the method, not the impl, so that a non-`Display` error is
        /// reported through [`RunnerError`]'s message.
        fn __forge_into_run_error(&self) -> RunError
        where
            Self::Error: RunnerError,
        {
            RunError::permanent(self.__forge_error().to_string())
        }
    }

    impl<E> ViaDisplay for &ErrorWrap<E> {
        type Error = E;
        fn __forge_error(&self) -> &E {
            &self.0
        }
    }
}
