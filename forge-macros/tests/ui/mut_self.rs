#[derive(serde::Deserialize)]
struct Bot {
    count: usize,
}

#[forge::forge_runner]
impl Bot {
    async fn answer(&mut self, query: &str) -> Result<String, std::io::Error> {
        self.count += 1;
        Ok(query.to_owned())
    }
}

fn main() {}
