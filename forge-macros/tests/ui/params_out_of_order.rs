use forge::{Batch, Session};

#[derive(serde::Deserialize)]
struct Bot;

#[forge::forge_runner]
impl Bot {
    async fn answer(
        &self,
        query: &str,
        session: &Session<'_>,
        batch: &Batch,
    ) -> Result<String, std::io::Error> {
        Ok(format!("{query} {} {}", session.session_id, batch.qa_id))
    }
}

fn main() {}
