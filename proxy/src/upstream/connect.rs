//! Opens one connection to a region: TCP (the resolved addresses raced, within the connect
//! timeout), TLS with ALPN when the region is `https`, then the HTTP handshake for the
//! protocol the region chose. The connection's I/O runs in its own task; what comes back is
//! the sender half, which the pool hands out.

use std::io;
use std::sync::Arc;
use std::time::Duration;

use http::uri::{Authority, Scheme};
use hyper::client::conn::{http1, http2};
use hyper_util::rt::{TokioExecutor, TokioIo, TokioTimer};
use rustls_pki_types::ServerName;
use tokio::net::TcpStream;
use tokio::time::Instant;
use tokio_rustls::TlsConnector;

use crate::body::ProxyBody;
use crate::config::RegionConfig;

use super::dial;
use super::tls::{self, TlsError};

/// A fresh connection's sender, by the protocol the region speaks on it.
pub enum Connected {
    Http1(http1::SendRequest<ProxyBody>),
    Http2(http2::SendRequest<ProxyBody>),
}

/// Everything needed to open a connection to one region, prepared at load time.
pub struct Connector {
    authority: Authority,
    /// Host as DNS (or the IP parser) wants it: no brackets around IPv6 literals.
    host: String,
    port: u16,
    tls: Option<Tls>,
    connect_timeout: Duration,
}

struct Tls {
    connector: TlsConnector,
    server_name: ServerName<'static>,
}

/// How long an idle connection's socket keeps TCP keep-alive probes going.
const TCP_KEEPALIVE: Duration = Duration::from_secs(60);
/// HTTP/2 PING interval while requests are open on the shared connection, and how long the
/// answer may take: a region that was blackholed leaves a connection that no longer leads
/// anywhere, and every request and health probe on it times out until the PING does. With
/// hyper's defaults (30 s, then 20 s) that kept a recovered region out of service for about
/// 50 s; now it is at most 15 s.
const H2_KEEPALIVE: Duration = Duration::from_secs(10);
const H2_KEEPALIVE_TIMEOUT: Duration = Duration::from_secs(5);
/// HTTP/2 flow-control windows towards a region. One connection carries every request to the
/// region, so a stream whose client does not read must not hold the connection's window:
/// it may hold at most its own 512 KiB, and the connection's 32 MiB leaves room for the
/// others until 64 clients have stopped reading at once. (hyper's adaptive window grows both
/// together, and one slow download stalled every other response on the connection; with
/// 1 MiB and 16 MiB, 20 did.) The stream window also bounds one download's speed to 512 KiB
/// per round trip, 10 MiB/s at 50 ms.
const H2_STREAM_WINDOW: u32 = 512 * 1024;
const H2_CONNECTION_WINDOW: u32 = 32 * 1024 * 1024;
/// Streams whose client went away are reset (CANCEL), and the region's frames already in
/// flight for them are dropped quietly while the stream is remembered: up to this many, for
/// h2's default of one second. A frame for a stream forgotten sooner gets a reset of its
/// own, and h2 counts those against a limit (1,024 by default) over the connection's whole
/// life, then tears the connection down with every other client's response on it: 20
/// clients cancelling downloads at once reached it within 1,200 cancels (round 9). The
/// region is the operator's own, so that limit is lifted here.
const H2_REMEMBERED_RESETS: usize = 1024;
/// Largest response head an h2 region may send (HPACK-decoded), as the listener takes from
/// clients: h2's default of 16 KiB turned a region's large `Set-Cookie` or CSP headers into
/// a reset, a retry and a failure of the region (round 9).
const H2_MAX_HEADER_LIST: u32 = 64 * 1024;

impl Connector {
    /// Reads the region's TLS files; runs at load time, never per request.
    pub fn new(region: &RegionConfig, connect_timeout: Duration) -> Result<Self, TlsError> {
        let authority: &Authority = &region.authority;
        let host = authority
            .host()
            .trim_start_matches('[')
            .trim_end_matches(']')
            .to_owned();
        let https = region.scheme == Scheme::HTTPS;
        let port = authority.port_u16().unwrap_or(if https { 443 } else { 80 });
        let tls = if https {
            let mut config = tls::client_config(region.tls.as_ref())?;
            config.alpn_protocols = vec![b"h2".to_vec(), b"http/1.1".to_vec()];
            let name = region
                .tls
                .as_ref()
                .and_then(|t| t.server_name.clone())
                .unwrap_or_else(|| host.clone());
            let server_name = ServerName::try_from(name).map_err(|e| {
                TlsError::Rustls(rustls::Error::General(format!("server_name: {e}")))
            })?;
            Some(Tls {
                connector: TlsConnector::from(Arc::new(config)),
                server_name,
            })
        } else {
            None
        };
        Ok(Connector {
            authority: authority.clone(),
            host,
            port,
            tls,
            connect_timeout,
        })
    }

    /// How long opening a connection may take.
    pub fn connect_timeout(&self) -> Duration {
        self.connect_timeout
    }

    pub fn authority(&self) -> &Authority {
        &self.authority
    }

    /// Whether connections may speak HTTP/2 (chosen by ALPN, so only over TLS: plaintext
    /// regions get HTTP/1.1, as requests the sidecar builds are HTTP/1.1 requests).
    pub fn may_use_http2(&self) -> bool {
        self.tls.is_some()
    }

    /// Opens a connection: TCP, then TLS and the HTTP/2 handshake where they apply, all by
    /// `deadline` (at most `connect_timeout` away; an opening several requests wait for keeps
    /// the deadline it started with). Every error here means the request was never sent, a
    /// handshake that hangs included (a frozen server whose kernel still accepts TCP).
    pub async fn connect(&self, deadline: Instant) -> io::Result<Connected> {
        match tokio::time::timeout_at(deadline, self.establish()).await {
            Ok(connected) => connected,
            Err(_) => Err(io::Error::new(
                io::ErrorKind::TimedOut,
                format!("no connection within {:?}", self.connect_timeout),
            )),
        }
    }

    async fn establish(&self) -> io::Result<Connected> {
        let tcp = self.tcp().await?;
        match &self.tls {
            None => http1_handshake(tcp).await,
            Some(tls) => {
                let stream = tls.connector.connect(tls.server_name.clone(), tcp).await?;
                if stream.get_ref().1.alpn_protocol() == Some(b"h2") {
                    http2_handshake(stream).await
                } else {
                    http1_handshake(stream).await
                }
            }
        }
    }

    /// TCP to the first address that accepts, trying them in resolver order with overlapping
    /// attempts (see [`dial`]).
    async fn tcp(&self) -> io::Result<TcpStream> {
        let addrs: Vec<_> = tokio::net::lookup_host((self.host.as_str(), self.port))
            .await?
            .collect();
        if addrs.is_empty() {
            return Err(io::Error::new(
                io::ErrorKind::NotFound,
                format!("{} resolved to no address", self.host),
            ));
        }
        let stream = dial::first_to_connect(addrs, dial::stagger_for(self.connect_timeout)).await?;
        stream.set_nodelay(true)?;
        let keepalive = socket2::TcpKeepalive::new().with_time(TCP_KEEPALIVE);
        socket2::SockRef::from(&stream).set_tcp_keepalive(&keepalive)?;
        Ok(stream)
    }
}

async fn http1_handshake<T>(io: T) -> io::Result<Connected>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http1::Builder::new()
        .handshake(TokioIo::new(io))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = conn.with_upgrades().await {
            tracing::debug!("region connection ended: {e}");
        }
    });
    Ok(Connected::Http1(sender))
}

async fn http2_handshake<T>(io: T) -> io::Result<Connected>
where
    T: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let (sender, conn) = http2::Builder::new(TokioExecutor::new())
        .timer(TokioTimer::new())
        .keep_alive_interval(H2_KEEPALIVE)
        .keep_alive_timeout(H2_KEEPALIVE_TIMEOUT)
        .initial_stream_window_size(H2_STREAM_WINDOW)
        .initial_connection_window_size(H2_CONNECTION_WINDOW)
        .max_concurrent_reset_streams(H2_REMEMBERED_RESETS)
        .max_header_list_size(H2_MAX_HEADER_LIST)
        .max_local_error_reset_streams(None)
        .handshake(TokioIo::new(io))
        .await
        .map_err(io::Error::other)?;
    tokio::spawn(async move {
        if let Err(e) = conn.await {
            tracing::debug!("region connection ended: {e}");
        }
    });
    Ok(Connected::Http2(sender))
}
