//! Listeners: accept, optional TLS, HTTP/1.1 and HTTP/2 (h2c prior knowledge or ALPN), drain.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use hyper_util::server::conn::auto;
use hyper_util::server::graceful::GracefulShutdown;
use tokio::net::TcpListener;
use tokio::sync::watch;
use tokio_rustls::TlsAcceptor;

use crate::config::ServerTls;
use crate::framing;
use crate::pipeline::{self, ConnInfo};
use crate::service::ServiceSlot;
use crate::upstream::tls::{TlsError, provider, read_cert_chain, read_key};

/// Request heads larger than this get 431 (hyper answers it while parsing).
const MAX_HEADER_BYTES: usize = 64 * 1024;

/// Binds a listener, with an error a user can act on.
pub async fn bind(addr: SocketAddr, what: &str) -> Result<TcpListener, std::io::Error> {
    TcpListener::bind(addr).await.map_err(|e| {
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
    tls: Option<TlsAcceptor>,
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
        let tls = tls.clone();
        tokio::spawn(async move {
            let info = ConnInfo::new(remote, tls.is_some());
            match tls {
                None => {
                    let mut stream = stream;
                    if framing::admit(&mut stream).await {
                        serve_conn(stream, info, slot, &builder, watcher).await;
                    }
                }
                Some(acceptor) => {
                    let handshake =
                        tokio::time::timeout(Duration::from_secs(10), acceptor.accept(stream));
                    match handshake.await {
                        Ok(Ok(tls_stream)) => {
                            serve_conn(tls_stream, info, slot, &builder, watcher).await
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
        let (svc, info) = (slot.load_full(), info.clone());
        async move { Ok::<_, Infallible>(pipeline::handle(svc, req, info).await) }
    });
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(stream), service);
    if let Err(e) = watcher.watch(conn.into_owned()).await {
        tracing::debug!(%remote, "connection ended: {e}");
    }
}
