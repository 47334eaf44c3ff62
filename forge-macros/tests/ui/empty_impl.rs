#[derive(serde::Deserialize)]
struct Bot;

#[forge::forge_runner]
impl Bot {}

fn main() {}
