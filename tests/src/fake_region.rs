//! `FakeRegion`: a real HTTP/1.1 + HTTP/2 server on 127.0.0.1 standing in for one region.
//!
//! ```ignore
//! let west = FakeRegion::new("westus").status(503).start().await;
//! west.set_mode(Mode::Blackhole).await;
//! west.kill().await;      // connection refused
//! west.restart().await;   // same port, previous mode
//! ```

mod body;
mod conn;
mod handler;
mod state;
mod websocket;

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, HeaderName, HeaderValue, Method};
use rustls::ServerConfig;
use tokio::sync::Mutex;
use tokio_rustls::TlsAcceptor;

pub use body::{BoxError, DRIP_LINE, pattern_bytes, sha256_hex};
pub use state::{Mode, RecordedRequest};

use crate::pki::TestPki;
use crate::wait::wait_until;
use conn::Generation;
use state::{Control, Shared};

/// Builds a [`FakeRegion`]; see [`FakeRegion::new`].
pub struct FakeRegionBuilder {
    name: String,
    mode: Mode,
    body: Option<Bytes>,
    health_path: String,
    health_status: Option<u16>,
    headers: HeaderMap,
    tls: Option<(Arc<ServerConfig>, Arc<ServerConfig>)>,
    require_client_cert: bool,
    port: u16,
}

impl FakeRegionBuilder {
    /// Starts in `Mode::Status(code)`.
    pub fn status(mut self, code: u16) -> Self {
        self.mode = Mode::Status(code);
        self
    }

    /// Starts in `mode` (`Mode::Killed`: the port is reserved, nothing listens).
    pub fn mode(mut self, mode: Mode) -> Self {
        self.mode = mode;
        self
    }

    /// Starts in `Mode::Slow(delay)`.
    pub fn slow(mut self, delay: Duration) -> Self {
        self.mode = Mode::Slow(delay);
        self
    }

    /// Body of ordinary responses (default: the region name).
    pub fn body(mut self, body: impl Into<Bytes>) -> Self {
        self.body = Some(body.into());
        self
    }

    /// An extra header on every response.
    pub fn header(mut self, name: &str, value: &str) -> Self {
        let name = HeaderName::from_bytes(name.as_bytes()).expect("valid header name");
        let value = HeaderValue::from_str(value).expect("valid header value");
        self.headers.append(name, value);
        self
    }

    /// The health-check path, counted apart from traffic (default `/healthz`).
    pub fn health_path(mut self, path: &str) -> Self {
        self.health_path = path.to_owned();
        self
    }

    /// Status of the health path in `Ok`, `Status` and `Slow` modes, whatever the mode says.
    pub fn health_status(mut self, code: u16) -> Self {
        self.health_status = Some(code);
        self
    }

    /// Serves HTTPS with the PKI's server certificate, ALPN h2 and http/1.1.
    pub fn tls(mut self, pki: &TestPki) -> Self {
        let plain = pki.server_config(false).expect("TLS server config");
        let mtls = pki.server_config(true).expect("mTLS server config");
        self.tls = Some((plain, mtls));
        self
    }

    /// With `tls`: refuse handshakes without a client certificate signed by the CA.
    pub fn require_client_cert(mut self) -> Self {
        self.require_client_cert = true;
        self
    }

    /// Binds this port instead of an ephemeral one.
    pub fn port(mut self, port: u16) -> Self {
        self.port = port;
        self
    }

    /// Binds 127.0.0.1 and serves. Panics when the port cannot be bound.
    pub async fn start(self) -> FakeRegion {
        let tls = self.tls.map(|(plain, mtls)| {
            TlsAcceptor::from(if self.require_client_cert {
                mtls
            } else {
                plain
            })
        });
        let listener = conn::bind(SocketAddr::from((Ipv4Addr::LOCALHOST, self.port)))
            .await
            .expect("bind fake region on 127.0.0.1");
        let addr = listener.local_addr().expect("local addr of fake region");
        let initial = if self.mode == Mode::Killed {
            Mode::Ok
        } else {
            self.mode
        };
        let body = self
            .body
            .unwrap_or_else(|| Bytes::from(self.name.clone().into_bytes()));
        let shared = Arc::new(Shared::new(
            self.name,
            body,
            self.health_path,
            self.headers,
            tls.is_some(),
            Control {
                mode: initial,
                health_status: self.health_status,
            },
        ));
        let serving = if self.mode == Mode::Killed {
            drop(listener);
            None
        } else {
            Some(conn::serve(listener, shared.clone(), tls.clone()))
        };
        FakeRegion {
            alive: AtomicBool::new(serving.is_some()),
            serving: Mutex::new(serving),
            shared,
            addr,
            tls,
        }
    }
}

/// A running fake region. Dropping it closes the listener and every connection.
pub struct FakeRegion {
    shared: Arc<Shared>,
    addr: SocketAddr,
    tls: Option<TlsAcceptor>,
    /// The current serving period; `None` while killed. Held across kill/restart.
    serving: Mutex<Option<Arc<Generation>>>,
    /// Mirrors `serving.is_some()` for the synchronous `mode()`.
    alive: AtomicBool,
}

impl FakeRegion {
    /// A builder for a region called `name`, answering 200 with its name by default.
    #[allow(clippy::new_ret_no_self)]
    pub fn new(name: &str) -> FakeRegionBuilder {
        FakeRegionBuilder {
            name: name.to_owned(),
            mode: Mode::Ok,
            body: None,
            health_path: "/healthz".to_owned(),
            health_status: None,
            headers: HeaderMap::new(),
            tls: None,
            require_client_cert: false,
            port: 0,
        }
    }

    pub fn name(&self) -> &str {
        &self.shared.name
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    pub fn port(&self) -> u16 {
        self.addr.port()
    }

    /// `127.0.0.1:PORT`, or `localhost:PORT` with TLS (the name the certificate covers).
    pub fn authority(&self) -> String {
        if self.is_tls() {
            format!("localhost:{}", self.port())
        } else {
            format!("127.0.0.1:{}", self.port())
        }
    }

    /// `http://127.0.0.1:PORT` or `https://localhost:PORT`.
    pub fn url(&self) -> String {
        let scheme = if self.is_tls() { "https" } else { "http" };
        format!("{scheme}://{}", self.authority())
    }

    pub fn is_tls(&self) -> bool {
        self.tls.is_some()
    }

    /// The current mode; `Mode::Killed` while nothing listens.
    pub fn mode(&self) -> Mode {
        if self.alive.load(Ordering::SeqCst) {
            self.shared.control().mode
        } else {
            Mode::Killed
        }
    }

    /// Switches mode. `Mode::Killed` kills; any other mode on a killed region restarts it.
    /// Connections already hanging (`Blackhole`, `Slow`) keep hanging.
    pub async fn set_mode(&self, mode: Mode) {
        if mode == Mode::Killed {
            self.kill().await;
        } else {
            self.shared.set_mode(mode);
            self.restart().await;
        }
    }

    /// Overrides (or with `None` stops overriding) the status of the health path.
    pub fn set_health_status(&self, status: Option<u16>) {
        self.shared.set_health_status(status);
    }

    /// Closes the listener and drops every connection; returns once they are closed.
    pub async fn kill(&self) {
        let mut serving = self.serving.lock().await;
        if let Some(generation) = serving.take() {
            self.alive.store(false, Ordering::SeqCst);
            generation.shutdown().await;
        }
    }

    /// Binds the same port again and serves in the mode from before `kill()`.
    /// No-op when already serving. Panics when the port cannot be bound again.
    pub async fn restart(&self) {
        let mut serving = self.serving.lock().await;
        if serving.is_some() {
            return;
        }
        let listener = conn::bind(self.addr)
            .await
            .expect("rebind fake region on its previous port");
        *serving = Some(conn::serve(listener, self.shared.clone(), self.tls.clone()));
        self.alive.store(true, Ordering::SeqCst);
    }

    /// Restarts in `mode` (which must not be `Mode::Killed`).
    pub async fn restart_with(&self, mode: Mode) {
        self.set_mode(mode).await;
    }

    /// Requests whose head was read, health checks excluded.
    pub fn requests(&self) -> usize {
        self.shared.requests()
    }

    /// Requests with this method (`"GET"`, `"POST"`, ...), health checks excluded.
    pub fn requests_for(&self, method: &str) -> usize {
        Method::from_bytes(method.as_bytes())
            .map(|m| self.shared.requests_for(&m))
            .unwrap_or(0)
    }

    /// Requests to the health path.
    pub fn health_checks(&self) -> usize {
        self.shared.health_checks()
    }

    /// TCP connections accepted since the start (or `reset_counters`), health checks' too.
    pub fn connections(&self) -> usize {
        self.shared.connections()
    }

    /// Every request received (health checks excluded), in arrival order.
    pub fn received(&self) -> Vec<RecordedRequest> {
        self.shared.received()
    }

    /// The most recent request (health checks excluded).
    pub fn last_request(&self) -> Option<RecordedRequest> {
        self.shared.received().pop()
    }

    /// Zeroes the counters and clears the log.
    pub fn reset_counters(&self) {
        self.shared.reset();
    }

    /// Waits until `requests() >= n`; false on timeout.
    pub async fn wait_for_requests(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.requests() >= n).await
    }

    /// Waits until `health_checks() >= n`; false on timeout.
    pub async fn wait_for_health_checks(&self, n: usize, timeout: Duration) -> bool {
        wait_until(timeout, || self.health_checks() >= n).await
    }
}

impl Drop for FakeRegion {
    fn drop(&mut self) {
        if let Some(generation) = self.serving.get_mut().take() {
            generation.abort();
        }
    }
}
