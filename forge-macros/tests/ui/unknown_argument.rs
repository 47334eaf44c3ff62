#[derive(serde::Deserialize)]
struct Bot;

#[forge::forge_runner(name = "bot", timeout = 30)]
impl Bot {
    async fn answer(&self, query: &str) -> Result<String, std::io::Error> {
        Ok(query.to_owned())
    }
}

fn main() {}
