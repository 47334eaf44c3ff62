#[derive(serde::Deserialize)]
struct Bot;

#[derive(Debug)]
struct BotError;

#[forge::forge_runner]
impl Bot {
    async fn answer(&self, query: &str) -> Result<String, BotError> {
        if query.is_empty() {
            return Err(BotError);
        }
        Ok(query.to_owned())
    }
}

fn main() {}
