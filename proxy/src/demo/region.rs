//! Demo regions: tiny in-process HTTP servers on loopback that a drill can kill, restart on the
//! same port, blackhole (accept, never answer) and heal.

use std::convert::Infallible;
use std::io;
use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use hyper_util::server::conn::auto;
use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::watch;
use tokio::task::{JoinHandle, JoinSet};
use tokio::time::Instant;

use super::MAX_RUNTIME;

/// How a running region treats requests.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Mode {
    Serve,
    /// Connections are accepted and requests read, but nothing is ever answered.
    Blackhole,
}

/// One demo region: its port stays the same across kills and restarts.
pub struct DemoRegion {
    pub name: &'static str,
    addr: SocketAddr,
    mode: watch::Sender<Mode>,
    /// The accept loop; it owns the listener and every connection, so aborting it drops all.
    task: Option<JoinHandle<()>>,
}

impl DemoRegion {
    /// Binds 127.0.0.1 on a free port and starts serving.
    pub fn start(name: &'static str) -> io::Result<DemoRegion> {
        let listener = bind(SocketAddr::from((Ipv4Addr::LOCALHOST, 0))).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("demo region {name}: cannot bind 127.0.0.1: {e}"),
            )
        })?;
        let addr = listener.local_addr()?;
        let (mode, _) = watch::channel(Mode::Serve);
        let mut region = DemoRegion {
            name,
            addr,
            mode,
            task: None,
        };
        region.spawn(listener);
        Ok(region)
    }

    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn spawn(&mut self, listener: TcpListener) {
        let mode = self.mode.subscribe();
        self.task = Some(tokio::spawn(accept_loop(listener, self.name, mode)));
    }

    /// Closes the listener and drops every open connection: connects are refused from now on.
    pub async fn kill(&mut self) {
        if let Some(task) = self.task.take() {
            task.abort();
            // Returns once the task's future is dropped: listener and connections are gone.
            let _ = task.await;
        }
    }

    /// Binds the same port again and serves normally.
    pub async fn restart(&mut self) -> io::Result<()> {
        self.kill().await;
        self.mode.send_replace(Mode::Serve);
        // The port can be held for a moment (a probe's connect that the kernel gave this very
        // port as its source): retry briefly before giving up.
        let deadline = Instant::now() + Duration::from_secs(3);
        loop {
            match bind(self.addr) {
                Ok(listener) => {
                    self.spawn(listener);
                    return Ok(());
                }
                Err(e) if Instant::now() < deadline => {
                    tracing::debug!(region = self.name, "rebind failed, retrying: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                }
                Err(e) => {
                    return Err(io::Error::new(
                        e.kind(),
                        format!(
                            "demo region {}: cannot bind {} again: {e}",
                            self.name, self.addr
                        ),
                    ));
                }
            }
        }
    }

    /// Keeps accepting connections and reading requests, but answers nothing.
    pub fn blackhole(&self) {
        self.mode.send_replace(Mode::Blackhole);
    }

    /// Answers again, on the connections it already has and on new ones.
    pub fn heal(&self) {
        self.mode.send_replace(Mode::Serve);
    }
}

/// A listener with `SO_REUSEADDR`, so a restart can take the port back at once.
fn bind(addr: SocketAddr) -> io::Result<TcpListener> {
    let socket = TcpSocket::new_v4()?;
    socket.set_reuseaddr(true)?;
    socket.bind(addr)?;
    socket.listen(1024)
}

async fn accept_loop(listener: TcpListener, name: &'static str, mode: watch::Receiver<Mode>) {
    let builder = Arc::new(auto::Builder::new(TokioExecutor::new()));
    // Dropping the set (when this task is aborted) aborts every connection task in it.
    let mut conns = JoinSet::new();
    let end = Instant::now() + MAX_RUNTIME;
    loop {
        tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => {
                    conns.spawn(serve_conn(stream, name, mode.clone(), builder.clone()));
                }
                Err(e) => {
                    tracing::debug!(region = name, "demo accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(10)).await;
                }
            },
            Some(_) = conns.join_next(), if !conns.is_empty() => {}
            () = tokio::time::sleep_until(end) => return,
        }
    }
}

async fn serve_conn(
    stream: TcpStream,
    name: &'static str,
    mode: watch::Receiver<Mode>,
    builder: Arc<auto::Builder<TokioExecutor>>,
) {
    let _ = stream.set_nodelay(true);
    let service = service_fn(move |req| answer(req, name, mode.clone()));
    let _ = builder
        .serve_connection(TokioIo::new(stream), service)
        .await;
}

async fn answer(
    req: Request<Incoming>,
    name: &'static str,
    mut mode: watch::Receiver<Mode>,
) -> Result<Response<Full<Bytes>>, Infallible> {
    let path = req.uri().path().to_owned();
    // Read the (small) request body so the connection stays reusable.
    let _ = Limited::new(req.into_body(), 64 * 1024).collect().await;
    if *mode.borrow_and_update() == Mode::Blackhole {
        // Hold the request until healed; the caller has long given up by then.
        let _ = mode.wait_for(|m| *m == Mode::Serve).await;
    }
    let body = if path == "/healthz" {
        Bytes::from_static(b"ok\n")
    } else {
        Bytes::from(format!("hello from {name}\n"))
    };
    let mut resp = Response::new(Full::new(body));
    *resp.status_mut() = StatusCode::OK;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("text/plain"),
    );
    Ok(resp)
}
