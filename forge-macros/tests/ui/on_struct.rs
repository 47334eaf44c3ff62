#[forge::forge_runner]
#[derive(serde::Deserialize)]
struct Bot;

fn main() {}
