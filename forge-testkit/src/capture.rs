//! Raw loopback servers that answer every request with fixed bytes and
//! record what they were sent: for answers no real server would give.

use std::sync::{Arc, Mutex};

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// The requests a [`capture_server`] received, each as text.
pub type Captured = Arc<Mutex<Vec<String>>>;

/// A loopback server answering every request with HTTP `status` and `body`
/// (`Connection: close`); returns its `http://127.0.0.1:PORT`.
pub async fn fixed_server(status: u16, body: Vec<u8>) -> String {
    let mut reply = format!(
        "HTTP/1.1 {status} X\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n",
        body.len()
    )
    .into_bytes();
    reply.extend_from_slice(&body);
    capture_server(reply).await.0
}

/// A loopback server that reads each request (its head and the body its
/// `content-length` announces), records it as text, and answers with the
/// raw bytes of `reply`, then closes the connection. Its
/// `http://127.0.0.1:PORT` and the requests it received.
///
/// # Panics
///
/// When no loopback port can be bound.
pub async fn capture_server(reply: Vec<u8>) -> (String, Captured) {
    let listener = tokio::net::TcpListener::bind(("127.0.0.1", 0))
        .await
        .expect("bind a loopback port");
    let url = format!(
        "http://{}",
        listener.local_addr().expect("a bound listener's address")
    );
    let reply = Arc::new(reply);
    let log: Captured = Arc::default();
    let requests = Arc::clone(&log);
    tokio::spawn(async move {
        while let Ok((mut stream, _)) = listener.accept().await {
            let (reply, log) = (Arc::clone(&reply), Arc::clone(&log));
            tokio::spawn(async move {
                let mut request = Vec::new();
                let mut buf = [0u8; 4096];
                while let Ok(n) = stream.read(&mut buf).await {
                    if n == 0 {
                        return;
                    }
                    request.extend_from_slice(&buf[..n]);
                    if request_complete(&request) {
                        break;
                    }
                }
                log.lock()
                    .unwrap_or_else(|e| e.into_inner())
                    .push(String::from_utf8_lossy(&request).into_owned());
                let _ = stream.write_all(&reply).await;
                let _ = stream.shutdown().await;
            });
        }
    });
    (url, requests)
}

/// Whether `request` holds a whole HTTP request: its head and the body its
/// `content-length` announces.
fn request_complete(request: &[u8]) -> bool {
    let text = String::from_utf8_lossy(request);
    let Some(end) = text.find("\r\n\r\n") else {
        return false;
    };
    let length = text[..end]
        .lines()
        .find_map(|l| {
            let (name, value) = l.split_once(':')?;
            name.eq_ignore_ascii_case("content-length")
                .then(|| value.trim().parse::<usize>().ok())?
        })
        .unwrap_or(0);
    request.len() >= end + 4 + length
}

/// A loopback listener that accepts connections, counts them and closes
/// them at once: a test points a client at it to prove that nothing was
/// sent (a replay that must stay offline). Its address, and the count.
pub fn counting_listener() -> (
    std::net::SocketAddr,
    std::sync::Arc<std::sync::atomic::AtomicUsize>,
) {
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind a loopback port");
    let addr = listener.local_addr().expect("the listener's address");
    let count = std::sync::Arc::new(std::sync::atomic::AtomicUsize::new(0));
    let seen = std::sync::Arc::clone(&count);
    std::thread::spawn(move || {
        for stream in listener.incoming() {
            seen.fetch_add(1, std::sync::atomic::Ordering::SeqCst);
            drop(stream);
        }
    });
    (addr, count)
}
