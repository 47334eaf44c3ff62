#[forge::forge_runner]
async fn answer(query: &str) -> Result<String, std::io::Error> {
    Ok(query.to_owned())
}

fn main() {}
