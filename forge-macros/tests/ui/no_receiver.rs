#[derive(serde::Deserialize)]
struct Bot;

#[forge::forge_runner]
impl Bot {
    async fn answer(query: &str) -> Result<String, std::io::Error> {
        Ok(query.to_owned())
    }
}

fn main() {}
