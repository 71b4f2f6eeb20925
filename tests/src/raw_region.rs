//! `RawRegion`: a region that answers every request with fixed bytes that are not valid HTTP,
//! then closes the connection. For what the proxy does when a region speaks garbage.

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

/// A request head larger than this is cut off (the reply is sent anyway).
const MAX_HEAD: usize = 64 * 1024;

pub struct RawRegion {
    addr: SocketAddr,
    requests: Arc<AtomicUsize>,
    accept: JoinHandle<()>,
}

impl RawRegion {
    /// Listens on a fresh loopback port; every request head read gets `reply`.
    pub async fn start(reply: &'static [u8]) -> std::io::Result<Self> {
        let listener = TcpListener::bind((Ipv4Addr::LOCALHOST, 0)).await?;
        let addr = listener.local_addr()?;
        let requests = Arc::new(AtomicUsize::new(0));
        let counted = requests.clone();
        let accept = tokio::spawn(async move {
            while let Ok((mut stream, _)) = listener.accept().await {
                let counted = counted.clone();
                tokio::spawn(async move {
                    let mut head = Vec::new();
                    let mut buf = [0u8; 4096];
                    let read = async {
                        while !head.windows(4).any(|w| w == b"\r\n\r\n") && head.len() < MAX_HEAD {
                            match stream.read(&mut buf).await {
                                Ok(0) | Err(_) => return false,
                                Ok(n) => head.extend_from_slice(&buf[..n]),
                            }
                        }
                        true
                    };
                    if !tokio::time::timeout(Duration::from_secs(10), read)
                        .await
                        .unwrap_or(false)
                    {
                        return;
                    }
                    // Health checks are not counted as requests.
                    if !head.starts_with(b"GET /healthz ") {
                        counted.fetch_add(1, Ordering::SeqCst);
                    }
                    let _ = stream.write_all(reply).await;
                    let _ = stream.shutdown().await;
                });
            }
        });
        Ok(RawRegion {
            addr,
            requests,
            accept,
        })
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// Requests received (health checks excluded).
    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }
}

impl Drop for RawRegion {
    fn drop(&mut self) {
        self.accept.abort();
    }
}
