//! The AWS Lambda function: the payload API behind API Gateway.
//!
//! Build and deploy with cargo-lambda:
//! `cargo lambda build --release --features lambda --bin forge-lambda`, then
//! `cargo lambda deploy forge-lambda`.

#[tokio::main]
async fn main() -> Result<(), forge::lambda::Error> {
    let filter = tracing_subscriber::EnvFilter::try_from_env("FORGE_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("warn"));
    // CloudWatch shows no colours; the Lambda runtime adds its own timestamps.
    let _ = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_ansi(false)
        .without_time()
        .try_init();
    forge::lambda::run().await
}
