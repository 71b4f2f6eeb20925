//! Listener and connections of one serving period of a fake region, all in one task set so
//! `kill()` can drop every socket at once.

use std::future::Future;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::Notify;
use tokio::task::JoinSet;
use tokio_rustls::TlsAcceptor;

use super::handler;
use super::state::Shared;

/// How long a TLS handshake may take before the connection is dropped.
const TLS_HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(10);

/// Every task of one serving period: the accept loop, connections, h2 streams, WebSockets.
/// Shutting it down closes the listener and every socket it accepted.
pub(crate) struct Generation {
    tasks: Mutex<Option<JoinSet<()>>>,
}

impl Generation {
    fn new() -> Arc<Self> {
        Arc::new(Self {
            tasks: Mutex::new(Some(JoinSet::new())),
        })
    }

    /// Runs `fut` in this period; after shutdown it is dropped instead.
    pub fn spawn<F: Future<Output = ()> + Send + 'static>(&self, fut: F) {
        let mut tasks = self.tasks.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(set) = tasks.as_mut() {
            // Reap finished tasks so a long test does not accumulate them.
            while set.try_join_next().is_some() {}
            set.spawn(fut);
        }
    }

    /// Aborts every task and waits until they are gone (so their sockets are closed).
    pub async fn shutdown(&self) {
        let set = self.tasks.lock().unwrap_or_else(|e| e.into_inner()).take();
        if let Some(mut set) = set {
            set.shutdown().await;
        }
    }

    /// Aborts every task without waiting (for `Drop`).
    pub fn abort(&self) {
        drop(self.tasks.lock().unwrap_or_else(|e| e.into_inner()).take());
    }
}

/// Spawns hyper's background futures (h2 streams) into the generation, so they die with it.
#[derive(Clone)]
struct GenExecutor(Arc<Generation>);

impl<F: Future<Output = ()> + Send + 'static> hyper::rt::Executor<F> for GenExecutor {
    fn execute(&self, fut: F) {
        self.0.spawn(fut);
    }
}

/// Per-connection context handed to the request handler.
pub(crate) struct ConnCtx {
    pub shared: Arc<Shared>,
    pub generation: Arc<Generation>,
    pub peer: SocketAddr,
    /// Notified by a handler that wants the whole connection dropped (`CloseAfterRequest`).
    pub drop_connection: Notify,
}

/// Binds `addr` with SO_REUSEADDR, retrying briefly: after `kill()` the port may still have
/// connections in TIME_WAIT.
pub(crate) async fn bind(addr: SocketAddr) -> std::io::Result<TcpListener> {
    let mut last_err = None;
    for _ in 0..50 {
        let socket = TcpSocket::new_v4()?;
        socket.set_reuseaddr(true)?;
        match socket.bind(addr).and_then(|()| socket.listen(1024)) {
            Ok(listener) => return Ok(listener),
            Err(e) => last_err = Some(e),
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    Err(last_err.unwrap_or_else(|| std::io::Error::other("bind failed")))
}

/// Starts serving `listener` in a new generation.
pub(crate) fn serve(
    listener: TcpListener,
    shared: Arc<Shared>,
    tls: Option<TlsAcceptor>,
) -> Arc<Generation> {
    let generation = Generation::new();
    let accept = accept_loop(listener, shared, generation.clone(), tls);
    generation.spawn(accept);
    generation
}

/// Runs until the generation is shut down, which drops the listener.
async fn accept_loop(
    listener: TcpListener,
    shared: Arc<Shared>,
    generation: Arc<Generation>,
    tls: Option<TlsAcceptor>,
) {
    loop {
        let (stream, peer) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(_) => {
                // E.g. EMFILE: back off instead of spinning.
                tokio::time::sleep(Duration::from_millis(20)).await;
                continue;
            }
        };
        shared.count_connection();
        let ctx = Arc::new(ConnCtx {
            shared: shared.clone(),
            generation: generation.clone(),
            peer,
            drop_connection: Notify::new(),
        });
        generation.spawn(connection(stream, ctx, tls.clone()));
    }
}

async fn connection(stream: TcpStream, ctx: Arc<ConnCtx>, tls: Option<TlsAcceptor>) {
    let _ = stream.set_nodelay(true);
    match tls {
        None => drive(stream, ctx).await,
        Some(acceptor) => {
            // A failed handshake (e.g. no client cert under mTLS) just closes.
            let handshake = tokio::time::timeout(TLS_HANDSHAKE_TIMEOUT, acceptor.accept(stream));
            if let Ok(Ok(tls_stream)) = handshake.await {
                drive(tls_stream, ctx).await;
            }
        }
    }
}

/// `SETTINGS_MAX_CONCURRENT_STREAMS` of the fake region's HTTP/2 connections.
pub const H2_MAX_STREAMS: u32 = 100;

/// Serves HTTP/1.1 or HTTP/2 (sniffed from the preface) on one connection.
async fn drive<I>(io: I, ctx: Arc<ConnCtx>)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    // No header-read timer: idle keep-alive connections stay open until the test kills them,
    // so a proxy's pooled connection only breaks when a test means it to.
    let mut builder = auto::Builder::new(GenExecutor(ctx.generation.clone()));
    // As HAProxy and Apache allow (nginx 128, Go 250): a proxy must not hold more streams
    // than this open on one connection.
    builder.http2().max_concurrent_streams(H2_MAX_STREAMS);
    let svc_ctx = ctx.clone();
    let service = service_fn(move |req| handler::handle(req, svc_ctx.clone()));
    let conn = builder.serve_connection_with_upgrades(TokioIo::new(io), service);
    tokio::select! {
        _ = conn => {}
        () = ctx.drop_connection.notified() => {}
    }
}
