#[derive(serde::Deserialize)]
struct Bot;

#[forge::forge_runner]
impl Bot {
    async fn answer(&self, query: &str) -> String {
        query.to_owned()
    }
}

fn main() {}
