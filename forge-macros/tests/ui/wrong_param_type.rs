#[derive(serde::Deserialize)]
struct Bot;

#[forge::forge_runner]
impl Bot {
    async fn answer(&self, query: String) -> Result<String, std::io::Error> {
        Ok(query)
    }
}

fn main() {}
