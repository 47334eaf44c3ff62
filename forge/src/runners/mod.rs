//! The built-in runners, one file each. Every one registers itself under the
//! name suites use in `runner: {type: ...}`.
//!
//! | type | file | system under test |
//! | --- | --- | --- |
//! | `alquimia` | [`alquimia`] | Alquimia agents (infer + SSE stream) |
//! | `openai` | [`openai`] | OpenAI-compatible chat completions |
//! | `http` | [`http`] | any JSON-over-HTTP agent (body template + answer pointer) |
//! | `command` | [`command`] | a local program (query on stdin, answer on stdout) |
//! | `echo`, `replay` | [`offline`] | nothing: offline answers |
//!
//! `http_util` holds the HTTP helpers the network runners share; `sse`
//! decodes the server-sent events of the `alquimia` stream; `template`
//! fills `{placeholders}`.

pub mod alquimia;
pub mod command;
pub mod http;
pub(crate) mod http_util;
pub(crate) mod json_pick;
pub mod offline;
pub mod openai;
pub(crate) mod sse;
pub(crate) mod template;

use schemars::{JsonSchema, Schema, SchemaGenerator};

/// The JSON Schema of each built-in runner's configuration (the keys of
/// `runner:` besides `type`), by type name, for `forge schema`.
pub(crate) fn config_schemas(generator: &mut SchemaGenerator) -> Vec<(&'static str, Schema)> {
    vec![
        ("alquimia", alquimia::AlquimiaConfig::json_schema(generator)),
        ("command", command::CommandConfig::json_schema(generator)),
        ("echo", offline::Echo::json_schema(generator)),
        ("http", http::HttpConfig::json_schema(generator)),
        ("openai", openai::OpenAiConfig::json_schema(generator)),
        ("replay", offline::ReplayConfig::json_schema(generator)),
    ]
}
