//! `KeepAliveRegion`: a minimal HTTP/1.1 region that answers 200 with
//! `Keep-Alive: timeout=1`, and closes, unanswered, a connection whose next request comes
//! after that second. That is what a server with a short keep-alive timeout (Node.js's 5 s,
//! Apache's) does to a request that crosses its FIN, made certain instead of a race. A path
//! containing `nohint` is answered without the header (as Node.js does when the app sets
//! `Connection` itself), the timeout still kept.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::task::JoinHandle;

/// The timeout the region announces and keeps.
pub const KEEP_ALIVE_TIMEOUT: Duration = Duration::from_secs(1);
const MAX_HEAD: usize = 64 * 1024;

#[derive(Default)]
struct Counts {
    connections: AtomicUsize,
    answered: AtomicUsize,
    dropped: AtomicUsize,
}

pub struct KeepAliveRegion {
    addr: SocketAddr,
    counts: Arc<Counts>,
    accept: JoinHandle<()>,
}

impl KeepAliveRegion {
    pub async fn start() -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let counts = Arc::new(Counts::default());
        let shared = counts.clone();
        let accept = tokio::spawn(async move {
            while let Ok((stream, _)) = listener.accept().await {
                let counts = shared.clone();
                counts.connections.fetch_add(1, Ordering::SeqCst);
                tokio::spawn(async move {
                    let serve = serve(stream, &counts);
                    let _ = tokio::time::timeout(Duration::from_secs(60), serve).await;
                });
            }
        });
        Ok(KeepAliveRegion {
            addr,
            counts,
            accept,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Connections accepted (health checks' included).
    pub fn connections(&self) -> usize {
        self.counts.connections.load(Ordering::SeqCst)
    }

    /// Requests answered (health checks excluded).
    pub fn answered(&self) -> usize {
        self.counts.answered.load(Ordering::SeqCst)
    }

    /// Requests that arrived after the keep-alive timeout and were dropped unanswered.
    pub fn dropped(&self) -> usize {
        self.counts.dropped.load(Ordering::SeqCst)
    }
}

impl Drop for KeepAliveRegion {
    fn drop(&mut self) {
        self.accept.abort();
    }
}

async fn serve(mut stream: TcpStream, counts: &Counts) {
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    let mut answered_at: Option<Instant> = None;
    for _ in 0..10_000 {
        let head_end = loop {
            if let Some(end) = pending.windows(4).position(|w| w == b"\r\n\r\n") {
                break end + 4;
            }
            if pending.len() > MAX_HEAD {
                return;
            }
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        };
        let health = pending.starts_with(b"GET /healthz ");
        let first_line_end = pending.iter().position(|&b| b == b'\n').unwrap_or(head_end);
        let no_hint = pending[..first_line_end].windows(6).any(|w| w == b"nohint");
        if answered_at.is_some_and(|at| at.elapsed() >= KEEP_ALIVE_TIMEOUT) {
            if !health {
                counts.dropped.fetch_add(1, Ordering::SeqCst);
            }
            return;
        }
        let head = String::from_utf8_lossy(&pending[..head_end]).to_ascii_lowercase();
        let length = head
            .lines()
            .find_map(|line| line.strip_prefix("content-length:"))
            .and_then(|v| v.trim().parse::<usize>().ok())
            .unwrap_or(0);
        while pending.len() < head_end + length {
            match stream.read(&mut buf).await {
                Ok(0) | Err(_) => return,
                Ok(n) => pending.extend_from_slice(&buf[..n]),
            }
        }
        pending.drain(..head_end + length);
        let hint = if no_hint {
            String::new()
        } else {
            format!("keep-alive: timeout={}\r\n", KEEP_ALIVE_TIMEOUT.as_secs())
        };
        let reply = format!("HTTP/1.1 200 OK\r\ncontent-length: 2\r\n{hint}\r\nok");
        if stream.write_all(reply.as_bytes()).await.is_err() {
            return;
        }
        if !health {
            counts.answered.fetch_add(1, Ordering::SeqCst);
        }
        answered_at = Some(Instant::now());
    }
}
