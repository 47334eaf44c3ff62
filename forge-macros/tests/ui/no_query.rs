#[derive(serde::Deserialize)]
struct Bot;

#[forge::forge_runner]
impl Bot {
    async fn answer(&self) -> Result<String, std::io::Error> {
        Ok("hi".to_owned())
    }
}

fn main() {}
