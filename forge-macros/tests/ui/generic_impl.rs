#[derive(serde::Deserialize)]
struct Bot<T> {
    value: T,
}

#[forge::forge_runner]
impl<T: std::fmt::Display + Send + Sync> Bot<T> {
    async fn answer(&self, query: &str) -> Result<String, std::io::Error> {
        Ok(format!("{query} {}", self.value))
    }
}

fn main() {}
