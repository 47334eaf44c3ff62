#[derive(serde::Deserialize)]
struct Bot;

#[forge::forge_runner]
impl Bot {
    fn answer(&mut self, query: u32) -> u32 {
        query
    }
}

fn main() {}
