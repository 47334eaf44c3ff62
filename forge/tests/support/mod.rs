//! Helpers shared by the runner tests.

use std::time::Duration;

use forge::{Backoff, Batch, Dataset, Policy};

/// A dataset of session `session` whose turns `q1`, `q2`, ... ask `queries`.
pub fn dataset(session: &str, queries: &[&str]) -> Dataset {
    let mut dataset = Dataset::new(session, "bot");
    for (i, query) in queries.iter().enumerate() {
        dataset
            .conversation
            .push(Batch::new(format!("q{}", i + 1), *query));
    }
    dataset
}

/// A 10 s timeout and `retries` quick retries.
pub fn retrying(retries: u32) -> Policy {
    Policy {
        timeout: Some(Duration::from_secs(10)),
        retries,
        backoff: Backoff {
            initial: Duration::from_millis(5),
            max: Duration::from_millis(50),
        },
        rate_limit: None,
    }
}

/// A loopback server answering every request with HTTP `status` and `body`
/// (`Connection: close`); returns its `http://127.0.0.1:PORT`.
#[allow(dead_code)]
pub async fn fixed_server(status: u16, body: Vec<u8>) -> String {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .unwrap();
    let addr = listener.local_addr().unwrap();
    let body = std::sync::Arc::new(body);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let body = std::sync::Arc::clone(&body);
            tokio::spawn(async move {
                // Read the head and the body the client sends, then answer.
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                loop {
                    let Ok(n) = stream.read(&mut buf).await else {
                        return;
                    };
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    let text = String::from_utf8_lossy(&request);
                    if let Some(end) = text.find("\r\n\r\n") {
                        let length = text[..end]
                            .lines()
                            .find_map(|l| {
                                let (name, value) = l.split_once(':')?;
                                name.eq_ignore_ascii_case("content-length")
                                    .then(|| value.trim().parse::<usize>().ok())?
                            })
                            .unwrap_or(0);
                        if request.len() >= end + 4 + length {
                            break;
                        }
                    }
                }
                let head = format!(
                    "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
                    body.len()
                );
                let _ = stream.write_all(head.as_bytes()).await;
                let _ = stream.write_all(&body).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    format!("http://{addr}")
}
