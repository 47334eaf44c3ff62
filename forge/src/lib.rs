#![doc = include_str!("../../README.md")]
#![forbid(unsafe_code)]
#![warn(missing_docs)]

pub mod cli;
pub mod error;
pub mod execute;
pub mod expect;
pub mod harness;
#[cfg(feature = "lambda")]
pub mod lambda;
pub mod payload;
pub mod registry;
pub mod report;
pub mod run;
pub mod runner;
pub mod runners;
pub mod schema;
#[cfg(feature = "serve")]
pub mod serve;
pub mod suite;
#[cfg(feature = "test-server")]
pub mod testing;

pub use async_trait::async_trait;
pub use error::{ConfigError, DatasetError, ErrorKind, RunError, SuiteError};
pub use execute::{Backoff, Engine, Job, Policy};
pub use runner::{BatchOutcome, Reply, Runner, Session};
pub use schema::{Batch, Dataset, ErrorResponse, Object, Response, RunResponse, Summary};
pub use suite::Suite;

/// Paths the `#[forge_runner]` macro's generated code uses, so that users
/// need no dependency but `forge`. Not a public API.
#[doc(hidden)]
pub mod __private {
    pub use async_trait::async_trait;
    pub use inventory;
    pub use serde;
    pub use serde_json;
}
