//! Listeners: accept, optional TLS, HTTP/1.1 and HTTP/2 (h2c prior knowledge or ALPN), drain.

mod first_bytes;

use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::watch;
use tokio::time::Instant;
use tokio_rustls::TlsAcceptor;

use first_bytes::{FIRST_BYTES_TIMEOUT, FirstBytes};

use crate::config::ServerTls;
use crate::framing;
use crate::pipeline::{self, ConnInfo};
use crate::service::ServiceSlot;
use crate::upstream::tls::{TlsError, provider, read_cert_chain, read_key};

/// Request heads larger than this get 431 (hyper answers it while parsing).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Connections the kernel may hold completed for a listener before we accept them (capped by
/// `net.core.somaxconn`). Tokio's `TcpListener::bind` uses the standard library's 128, which a
/// burst of new connections overflows: the kernel then drops their SYNs and each waits for a
/// retransmission, a second or more. nginx uses 511, Envoy and HAProxy more.
const LISTEN_BACKLOG: u32 = 4096;

/// Binds a listener, with an error a user can act on.
pub async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, std::io::Error> {
    listen(addr).map_err(|e| {
        let hint = if e.kind() == std::io::ErrorKind::AddrInUse {
            " (address already in use: is another switchyard or server running?)"
        } else {
            ""
        };
        std::io::Error::new(
            e.kind(),
            format!("cannot listen on {addr} for {what}: {e}{hint}"),
        )
    })
}

fn listen(addr: SocketAddr) -> Result<TcpListener, std::io::Error> {
    let socket = match addr {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    // As `TcpListener::bind` does: a restarted sidecar rebinds while old connections linger.
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(LISTEN_BACKLOG)
}

/// The rustls server config for a TLS listener, offering h2 and http/1.1 by ALPN.
pub fn tls_acceptor(tls: &ServerTls) -> Result<TlsAcceptor, TlsError> {
    let mut config = rustls::ServerConfig::builder_with_provider(provider())
        .with_safe_default_protocol_versions()?
        .with_no_client_auth()
        .with_single_cert(read_cert_chain(&tls.cert)?, read_key(&tls.key)?)?;
    config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
    Ok(TlsAcceptor::from(Arc::new(config)))
}

/// The HTTP server settings shared by every connection.
pub fn http_builder() -> auto::Builder<TokioExecutor> {
    let mut builder = auto::Builder::new(TokioExecutor::new());
    builder
        .http1()
        .timer(TokioTimer::new())
        .header_read_timeout(Duration::from_secs(30))
        .max_buf_size(MAX_HEADER_BYTES);
    builder
        .http2()
        .timer(TokioTimer::new())
        .max_header_list_size(MAX_HEADER_BYTES as u32)
        .adaptive_window(true);
    builder
}

/// Serves one service's listener until `stop` flips, then lets open connections finish
/// (the caller bounds that with `shutdown_grace`).
pub async fn serve(
    listener: TcpListener,
    slot: ServiceSlot,
    mut stop: watch::Receiver<bool>,
) -> GracefulShutdown {
    let graceful = GracefulShutdown::new();
    let builder = Arc::new(http_builder());
    loop {
        let (stream, remote) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    // Out of file descriptors and the like: back off instead of spinning.
                    tracing::warn!("accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => break,
        };
        let _ = stream.set_nodelay(true);
        let slot = slot.clone();
        let builder = builder.clone();
        let watcher = graceful.watcher();
        // The current service's: a reload may have rotated the certificate.
        let tls = slot.load().tls.clone();
        tokio::spawn(async move {
            let info = ConnInfo::new(remote, tls.is_some());
            match tls {
                None => {
                    let mut stream = stream;
                    let deadline = Instant::now() + FIRST_BYTES_TIMEOUT;
                    if framing::admit(&mut stream, deadline).await {
                        let stream = FirstBytes::new(stream, deadline);
                        serve_conn(stream, info, slot, &builder, watcher).await;
                    }
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls_stream)) => {
                            let deadline = Instant::now() + FIRST_BYTES_TIMEOUT;
                            let stream = FirstBytes::new(tls_stream, deadline);
                            serve_conn(stream, info, slot, &builder, watcher).await
                        }
                        Ok(Err(e)) => tracing::debug!(%remote, "TLS handshake failed: {e}"),
                        Err(_) => tracing::debug!(%remote, "TLS handshake timed out"),
                    }
                }
            }
        });
    }
    graceful
}

async fn serve_conn<S>(
    stream: S,
    info: ConnInfo,
    slot: ServiceSlot,
    builder: &auto::Builder<TokioExecutor>,
    watcher: hyper_util::server::graceful::Watcher,
) where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let remote = info.remote;
    let service = service_fn(move |req: hyper::Request<Incoming>| {
        pipeline::handle(slot.load_full(), req, info.clone())
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%remote, "connection ended: {e}");
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const LOOPBACK: SocketAddr =
        SocketAddr::new(std::net::IpAddr::V4(std::net::Ipv4Addr::LOCALHOST), 0);

    /// A burst of connections larger than the standard library's backlog of 128 all complete
    /// at once while nothing accepts them; with a backlog of 128 the rest wait for a SYN
    /// retransmission (1 s), past the deadline.
    #[tokio::test]
    async fn a_burst_of_connections_fits_the_backlog() {
        let listener = bind(LOOPBACK, "test").await.expect("bind loopback");
        let addr = listener.local_addr().expect("bound address");
        let mut connects = tokio::task::JoinSet::new();
        for _ in 0..400 {
            connects.spawn(tokio::time::timeout(
                Duration::from_millis(700),
                tokio::net::TcpStream::connect(addr),
            ));
        }
        let mut streams = Vec::new();
        while let Some(done) = connects.join_next().await {
            if let Ok(Ok(Ok(stream))) = done {
                streams.push(stream);
            }
        }
        assert_eq!(
            streams.len(),
            400,
            "connections completed without an accept"
        );
        drop(listener);
    }

    #[tokio::test]
    async fn a_taken_address_names_the_listener_and_the_likely_cause() {
        let first = bind(LOOPBACK, "test").await.expect("bind loopback");
        let addr = first.local_addr().expect("bound address");
        let Err(err) = bind(addr, "service orders").await else {
            panic!("a second listener bound {addr}");
        };
        let msg = err.to_string();
        assert!(
            msg.contains("service orders") && msg.contains("already in use"),
            "{msg}"
        );
    }
}
