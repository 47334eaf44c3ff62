#[derive(serde::Deserialize)]
struct Bot;

#[forge::forge_runner]
impl Bot {
    async fn answer(&self, query: &str) {
        println!("{query}");
    }
}

fn main() {}
