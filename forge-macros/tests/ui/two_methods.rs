#[derive(serde::Deserialize)]
struct Bot;

#[forge::forge_runner]
impl Bot {
    async fn answer(&self, query: &str) -> Result<String, std::io::Error> {
        Ok(self.shout(query))
    }

    fn shout(&self, query: &str) -> String {
        query.to_uppercase()
    }
}

fn main() {}
