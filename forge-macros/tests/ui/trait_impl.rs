use forge::{Batch, Reply, RunError, Runner, Session};

#[derive(serde::Deserialize)]
struct Bot;

#[forge::forge_runner]
#[forge::async_trait]
impl Runner for Bot {
    async fn call(&self, batch: &Batch, _session: &Session<'_>) -> Result<Reply, RunError> {
        Ok(Reply::text(batch.query.clone()))
    }
}

fn main() {}
