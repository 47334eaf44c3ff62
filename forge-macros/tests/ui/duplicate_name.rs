#[derive(serde::Deserialize)]
struct WeatherBot;

#[derive(serde::Deserialize)]
struct OtherBot;

#[forge::forge_runner]
impl WeatherBot {
    async fn answer(&self, query: &str) -> Result<String, std::io::Error> {
        Ok(query.to_owned())
    }
}

#[forge::forge_runner(name = "weather-bot")]
impl OtherBot {
    async fn answer(&self, query: &str) -> Result<String, std::io::Error> {
        Ok(query.to_owned())
    }
}

fn main() {}
