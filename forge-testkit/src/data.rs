//! Datasets and seed payloads to run against the [`TestServer`](crate::TestServer).

use forge::{Batch, Dataset};
use serde_json::{json, Value};

/// A dataset of session `session` whose turns `q1`, `q2`, ... ask `queries`.
pub fn dataset(session: &str, queries: &[&str]) -> Dataset {
    let mut dataset = Dataset::new(session, "bot");
    for (i, query) in queries.iter().enumerate() {
        dataset
            .conversation
            .push(Batch::new(format!("q{}", i + 1), *query));
    }
    dataset
}

/// `sessions` datasets `s1`, `s2`, ... of `turns` turns asking
/// `question T of sN`.
pub fn datasets(sessions: usize, turns: usize) -> Vec<Dataset> {
    (1..=sessions)
        .map(|s| {
            let queries: Vec<String> = (1..=turns)
                .map(|t| format!("question {t} of s{s}"))
                .collect();
            let queries: Vec<&str> = queries.iter().map(String::as_str).collect();
            dataset(&format!("s{s}"), &queries)
        })
        .collect()
}

/// Datasets in Fair-Forge's format: one per session, asking `queries` in
/// turn (qa ids `q1`, `q2`, ...).
pub fn seed_datasets<S: AsRef<str>>(sessions: &[S], queries: &[&str]) -> Value {
    let datasets: Vec<Value> = sessions
        .iter()
        .map(|session| {
            let conversation: Vec<Value> = queries
                .iter()
                .enumerate()
                .map(|(i, query)| json!({"qa_id": format!("q{}", i + 1), "query": query, "assistant": ""}))
                .collect();
            json!({"session_id": session.as_ref(), "assistant_id": "target-assistant",
                   "language": "english", "context": "", "conversation": conversation})
        })
        .collect();
    Value::Array(datasets)
}

/// A request in the seed's payload format: [`seed_datasets`] with `config`.
pub fn seed_payload<S: AsRef<str>>(sessions: &[S], queries: &[&str], config: Value) -> Value {
    json!({"datasets": seed_datasets(sessions, queries), "config": config})
}

/// The payload's Alquimia `config` for the agent at `base_url` with `key`.
pub fn alquimia_config(base_url: &str, key: &str) -> Value {
    json!({"base_url": base_url, "api_key": key, "agent_id": "agent-1", "channel_id": "web"})
}
