//! A region's connections: idle HTTP/1.1 connections, most recently used first, and shared
//! HTTP/2 connections (`h2_conns`).
//!
//! Requests that find no connection to a region that may speak HTTP/2 (TLS, ALPN h2) share
//! one opening: the first opens, the others wait for it and then share the connection (h2),
//! fail with it (the same connect failure, at once), or open their own (the region chose
//! HTTP/1.1). Without that, the first burst to a region (a cold start, or the moment traffic
//! fails over to it) opened one TLS connection per request, only to keep one.
//!
//! An HTTP/1.1 connection goes back to the pool when the response body it carried has been
//! read to the end (`RegionBody`'s drop), not through a task per request; a body dropped
//! early takes its connection with it (hyper closes it). A request handed back unsent by a
//! pooled connection that turned out to be closing is sent again on another connection: it
//! provably never left, so this is safe even for writes.
//!
//! Idle connections are reaped by age without reading the clock per request: a reaper task
//! advances an epoch every `REAP_EVERY`, each idle connection remembers the epoch it went
//! idle in, and connections two epochs old are closed.

use std::collections::VecDeque;
use std::io;
use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError, Weak};
use std::time::Duration;

use http::{Request, Response, StatusCode};
use hyper::client::conn::{TrySendError, http1, http2};
use tokio::sync::OnceCell;
use tokio::time::Instant;

use super::connect::{Connected, Connector};
use super::h2_conns::{H2Connections, Shared, StreamSlot};
use super::keep_alive::Reuse;
use super::region_body::{Hold, Lease, RegionBody};
use crate::body::ProxyBody;

/// Idle connections kept per region; beyond this the oldest is closed.
const MAX_IDLE: usize = 512;
/// Epoch length of the idle reaper: idle connections are closed after 60-90 s.
const REAP_EVERY: Duration = Duration::from_secs(30);
/// How many connections one request may find closing before it gives up on pooled ones.
const MAX_STALE: usize = 3;
/// How often a request that found every HTTP/2 connection full looks for a stream that ended.
const FREED_STREAM_POLL: Duration = Duration::from_millis(5);

pub struct Pool {
    connector: Connector,
    idle: Mutex<VecDeque<Idle>>,
    http2: H2Connections,
    /// The opening that requests finding no connection join (see the module documentation);
    /// replaced once it has an outcome, since a request only gets here when that outcome is
    /// of no use any more (the connection it gave is gone, or it failed).
    opening: Mutex<Option<Arc<Opening>>>,
    /// The region's last TLS handshake chose HTTP/1.1, where each request needs a connection
    /// of its own: openings are not shared then.
    chose_http1: AtomicBool,
    epoch: AtomicU32,
    reaper_started: AtomicBool,
}

/// A connection being opened for every request that finds none.
struct Opening {
    /// Set when the first request started it. A request that takes the opening over (the
    /// one running it went away: a client gone, a health probe's own timeout) keeps it, so
    /// every request waiting learns the outcome within the connect deadline of its own start,
    /// before its attempt's timer: a hung handshake is then a connect failure for all of them.
    deadline: Instant,
    opened: OnceCell<Opened>,
}

/// What a shared opening gave, as the requests that waited for it see it.
enum Opened {
    Http2(Shared),
    /// The region chose HTTP/1.1: the connection went to the request that opened it.
    Http1,
    Failed(io::ErrorKind, String),
}

struct Idle {
    sender: http1::SendRequest<ProxyBody>,
    epoch: u32,
    /// The region's own keep-alive timeout on this connection, if it named one.
    reuse: Reuse,
}

/// Why a request got no response.
pub enum SendError {
    /// No connection could be opened: the request never left, and here it is back.
    Connect(io::Error, Box<Request<ProxyBody>>),
    /// The request was handed to a connection and failed there.
    Request(hyper::Error),
    /// A fresh connection closed before taking the request: it never left, and here it is back.
    Unsent(hyper::Error, Box<Request<ProxyBody>>),
}

enum Checkout {
    /// With the keep-alive timeout its region named on it so far.
    Http1(http1::SendRequest<ProxyBody>, Reuse),
    Http2(http2::SendRequest<ProxyBody>, StreamSlot),
}

/// A connection just opened: an HTTP/1.1 one is the opener's, an HTTP/2 one is shared.
enum Fresh {
    Http1(http1::SendRequest<ProxyBody>),
    Http2(Shared),
}

impl Fresh {
    /// The opener's use of it (a fresh HTTP/2 connection always has room for the opener).
    fn checkout(self) -> io::Result<Checkout> {
        match self {
            Fresh::Http1(sender) => Ok(Checkout::Http1(sender, Reuse::new())),
            Fresh::Http2(shared) => shared
                .try_take()
                .map(|(sender, slot)| Checkout::Http2(sender, slot))
                .ok_or_else(|| io::Error::other("a new HTTP/2 connection was full at once")),
        }
    }
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(PoisonError::into_inner)
}

impl Pool {
    pub fn new(connector: Connector) -> Arc<Self> {
        Arc::new(Pool {
            connector,
            idle: Mutex::new(VecDeque::new()),
            http2: H2Connections::default(),
            opening: Mutex::new(None),
            chose_http1: AtomicBool::new(false),
            epoch: AtomicU32::new(0),
            reaper_started: AtomicBool::new(false),
        })
    }

    /// Sends `req` (origin-form URI, `Host` set) on a pooled or new connection and waits for
    /// the response head.
    ///
    /// The request is boxed from the attempt down to here: every async level it passes
    /// through keeps its arguments for its whole life, so a 300-byte request by value would
    /// be stored (and copied on every move of the request's future) once per level.
    pub async fn send(
        self: &Arc<Self>,
        mut req: Box<Request<ProxyBody>>,
    ) -> Result<Response<ProxyBody>, SendError> {
        for _ in 0..MAX_STALE {
            let Some(conn) = self.checkout() else { break };
            match self.send_on(conn, req).await {
                Ok(resp) => return Ok(resp),
                Err(e) => match e.message {
                    Some(unsent) => req = Box::new(unsent),
                    None => return Err(SendError::Request(e.error)),
                },
            }
        }
        // The slow path (DNS, TCP, TLS, handshake) lives in its own allocation so the common
        // future stays small.
        let conn = match Box::pin(self.open_or_join()).await {
            Ok(conn) => conn,
            Err(e) => return Err(SendError::Connect(e, req)),
        };
        match self.send_on(conn, req).await {
            Ok(resp) => Ok(resp),
            Err(Returned {
                error,
                message: Some(req),
            }) => Err(SendError::Unsent(error, Box::new(req))),
            Err(e) => Err(SendError::Request(e.error)),
        }
    }

    async fn send_on(
        self: &Arc<Self>,
        conn: Checkout,
        req: Box<Request<ProxyBody>>,
    ) -> Result<Response<ProxyBody>, Returned> {
        match conn {
            Checkout::Http1(mut sender, reuse) => {
                let resp = sender
                    .try_send_request(*req)
                    .await
                    .map_err(Returned::from)?;
                // After `101 Switching Protocols` the connection belongs to the upgrade.
                let hold = if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
                    Hold::Nothing
                } else {
                    let reuse = reuse.after(resp.headers());
                    Hold::Connection(Lease::new(sender, self.clone(), reuse))
                };
                Ok(resp.map(|body| ProxyBody::Region(RegionBody::new(body, hold))))
            }
            Checkout::Http2(mut sender, slot) => {
                let req = self.absolute_form(*req);
                let resp = sender.try_send_request(req).await.map_err(Returned::from)?;
                let hold = Hold::Stream { _slot: slot };
                Ok(resp.map(|body| ProxyBody::Region(RegionBody::new(body, hold))))
            }
        }
    }

    /// HTTP/2 carries scheme and authority as pseudo-headers, taken from the URI, and no
    /// `Host` header: RFC 9113 §8.3.1 lets a client send both, but servers such as nginx
    /// 1.22 (Debian 12's) refuse such a request with 400 (a duplicate host), so a region
    /// behind one would fail every request and every health check.
    fn absolute_form(&self, req: Request<ProxyBody>) -> Request<ProxyBody> {
        let (mut parts, body) = req.into_parts();
        parts.headers.remove(http::header::HOST);
        if parts.uri.scheme().is_none() {
            let mut uri = parts.uri.into_parts();
            uri.scheme = Some(http::uri::Scheme::HTTPS);
            uri.authority = Some(self.connector.authority().clone());
            // Scheme, authority and a path: always a valid absolute URI.
            parts.uri = http::Uri::from_parts(uri).unwrap_or_default();
        }
        Request::from_parts(parts, body)
    }

    fn checkout(&self) -> Option<Checkout> {
        if self.connector.may_use_http2()
            && let Some((sender, slot)) = self.http2.checkout()
        {
            return Some(Checkout::Http2(sender, slot));
        }
        let mut idle = lock(&self.idle);
        while let Some(conn) = idle.pop_back() {
            let expired = conn.reuse.expired();
            if conn.sender.is_ready() && !expired {
                return Some(Checkout::Http1(conn.sender, conn.reuse));
            }
            // Closed by the region (or broken): dropped here.
        }
        None
    }

    /// A connection for a request that found none ready: its own, or a share of one being
    /// opened for a region that may speak HTTP/2 (see the module documentation). A request
    /// that finds the connection it waited for already full (a burst larger than one
    /// connection's streams) joins or starts the next opening, within its own connect
    /// deadline.
    async fn open_or_join(self: &Arc<Self>) -> io::Result<Checkout> {
        if !self.connector.may_use_http2() || self.chose_http1.load(Ordering::Relaxed) {
            return self.open().await;
        }
        let until = Instant::now() + self.connector.connect_timeout();
        loop {
            let opening = {
                let mut slot = lock(&self.opening);
                match slot.as_ref() {
                    Some(opening) if !opening.opened.initialized() => opening.clone(),
                    _ => slot
                        .insert(Arc::new(Opening {
                            deadline: until,
                            opened: OnceCell::new(),
                        }))
                        .clone(),
                }
            };
            // Filled only in the request whose future runs the opening (if it is dropped
            // halfway, a waiting one takes over, with its own).
            let mut own = None;
            let own_slot = &mut own;
            let deadline = opening.deadline;
            let overflow = !self.http2.is_empty();
            let wait = opening.opened.get_or_init(|| async move {
                let result = self.open_by(deadline).await;
                let opened = match &result {
                    Ok(Fresh::Http2(shared)) => Opened::Http2(shared.clone()),
                    Ok(Fresh::Http1(_)) => Opened::Http1,
                    Err(e) => Opened::Failed(e.kind(), e.to_string()),
                };
                *own_slot = Some(result.and_then(Fresh::checkout));
                opened
            });
            // Beside full connections, a stream that ends there is as good as the connection
            // being opened, and may come sooner: with slow handshakes, requests that waited for
            // the opening timed out while the full connection had room again (round 11).
            let opened = if overflow {
                tokio::select! {
                    opened = wait => opened,
                    (sender, slot) = self.freed_stream() => return Ok(Checkout::Http2(sender, slot)),
                }
            } else {
                wait.await
            };
            if let Some(result) = own {
                return result;
            }
            match opened {
                Opened::Http2(shared) => {
                    if let Some((sender, slot)) =
                        shared.try_take().or_else(|| self.http2.checkout())
                    {
                        return Ok(Checkout::Http2(sender, slot));
                    }
                    if Instant::now() >= until {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "every HTTP/2 connection to the region was full",
                        ));
                    }
                }
                Opened::Http1 => return self.open().await,
                Opened::Failed(kind, why) => return Err(io::Error::new(*kind, why.clone())),
            }
        }
    }

    /// A stream on a shared connection, once one has room; checked every
    /// [`FREED_STREAM_POLL`] (only requests that overflowed every connection wait here).
    async fn freed_stream(&self) -> (http2::SendRequest<ProxyBody>, StreamSlot) {
        loop {
            tokio::time::sleep(FREED_STREAM_POLL).await;
            if let Some(taken) = self.http2.checkout() {
                return taken;
            }
        }
    }

    async fn open(self: &Arc<Self>) -> io::Result<Checkout> {
        let fresh = self
            .open_by(Instant::now() + self.connector.connect_timeout())
            .await?;
        fresh.checkout()
    }

    async fn open_by(self: &Arc<Self>, deadline: Instant) -> io::Result<Fresh> {
        self.start_reaper();
        Ok(match self.connector.connect(deadline).await? {
            Connected::Http1(sender) => {
                self.chose_http1.store(true, Ordering::Relaxed);
                Fresh::Http1(sender)
            }
            Connected::Http2(sender) => {
                self.chose_http1.store(false, Ordering::Relaxed);
                Fresh::Http2(self.http2.add(sender))
            }
        })
    }

    /// Takes back an idle connection, reusable while its region's keep-alive timeout allows.
    pub(super) fn checkin(&self, sender: http1::SendRequest<ProxyBody>, reuse: Reuse) {
        if reuse.expired() {
            return;
        }
        let epoch = self.epoch.load(Ordering::Relaxed);
        let mut idle = lock(&self.idle);
        if idle.len() >= MAX_IDLE {
            idle.pop_front();
        }
        idle.push_back(Idle {
            sender,
            epoch,
            reuse,
        });
    }

    /// Starts the idle reaper on first use (a pool can be built outside a runtime); it ends
    /// when the pool is dropped.
    fn start_reaper(self: &Arc<Self>) {
        if self.reaper_started.swap(true, Ordering::Relaxed) {
            return;
        }
        let pool: Weak<Pool> = Arc::downgrade(self);
        tokio::spawn(async move {
            let mut tick = tokio::time::interval(REAP_EVERY);
            tick.tick().await;
            loop {
                tick.tick().await;
                let Some(pool) = pool.upgrade() else { return };
                pool.reap();
            }
        });
    }

    /// Advances the epoch and closes connections idle since two epochs ago or earlier, and
    /// HTTP/2 connections beyond the first that carry nothing.
    fn reap(&self) {
        // An opening that has its outcome keeps a handle on its connection: let it go, so a
        // connection the next line closes is not kept open by it.
        let mut opening = lock(&self.opening);
        if opening.as_ref().is_some_and(|o| o.opened.initialized()) {
            *opening = None;
        }
        drop(opening);
        self.http2.reap();
        let epoch = self.epoch.fetch_add(1, Ordering::Relaxed).wrapping_add(1);
        // Those idle for two epochs, closed, or that the region will close by its own timeout.
        lock(&self.idle).retain(|c| {
            epoch.wrapping_sub(c.epoch) < 2 && !c.sender.is_closed() && !c.reuse.expired()
        });
    }

    #[cfg(test)]
    fn idle_len(&self) -> usize {
        lock(&self.idle).len()
    }
}

/// A request the connection gave back, or the error it failed with.
struct Returned {
    error: hyper::Error,
    message: Option<Request<ProxyBody>>,
}

impl From<TrySendError<Request<ProxyBody>>> for Returned {
    fn from(mut e: TrySendError<Request<ProxyBody>>) -> Self {
        let message = e.take_message();
        Returned {
            error: e.into_error(),
            message,
        }
    }
}

#[cfg(test)]
mod tests {
    use std::collections::HashSet;
    use std::net::SocketAddr;

    use http_body_util::BodyExt;
    use switchyard_tests::FakeRegion;

    use super::*;
    use crate::config::RegionConfig;

    fn pool_for(region: &FakeRegion) -> Arc<Pool> {
        let config = RegionConfig {
            name: region.name().into(),
            priority: 0,
            scheme: http::uri::Scheme::HTTP,
            authority: region.authority().parse().expect("authority"),
            base_path: String::new(),
            url: region.url(),
            write: true,
            tls: None,
        };
        Pool::new(Connector::new(&config, Duration::from_secs(2)).expect("connector"))
    }

    fn request(region: &FakeRegion, method: &str, path: &str) -> Request<ProxyBody> {
        Request::builder()
            .method(method)
            .uri(path)
            .header(http::header::HOST, region.authority())
            .body(ProxyBody::Empty)
            .expect("request")
    }

    async fn get_to_end(pool: &Arc<Pool>, region: &FakeRegion, path: &str) -> usize {
        let resp = match pool.send(Box::new(request(region, "GET", path))).await {
            Ok(resp) => resp,
            Err(_) => panic!("GET {path} failed"),
        };
        assert_eq!(resp.status(), StatusCode::OK);
        let body = resp.into_body().collect().await.expect("body");
        body.to_bytes().len()
    }

    fn peers(region: &FakeRegion) -> Vec<SocketAddr> {
        region.received().iter().map(|r| r.peer).collect()
    }

    #[tokio::test]
    async fn a_connection_serves_request_after_request_once_each_body_is_read() {
        let region = FakeRegion::new("westus").start().await;
        let pool = pool_for(&region);
        for _ in 0..20 {
            get_to_end(&pool, &region, "/").await;
            assert_eq!(get_to_end(&pool, &region, "/bytes/100000").await, 100_000);
        }
        let distinct: HashSet<_> = peers(&region).into_iter().collect();
        assert_eq!(distinct.len(), 1, "40 requests, one connection");
        assert_eq!(pool.idle_len(), 1);
    }

    #[tokio::test]
    async fn a_body_dropped_unread_takes_its_connection_with_it() {
        let region = FakeRegion::new("westus").start().await;
        let pool = pool_for(&region);
        let Ok(resp) = pool
            .send(Box::new(request(&region, "GET", "/bytes/1000000")))
            .await
        else {
            panic!("GET failed");
        };
        drop(resp);
        assert_eq!(pool.idle_len(), 0, "a half-read connection is never reused");
        get_to_end(&pool, &region, "/").await;
        get_to_end(&pool, &region, "/").await;
        let seen = peers(&region);
        assert_ne!(seen[0], seen[1], "a new connection after the dropped body");
        assert_eq!(seen[1], seen[2], "which is then reused");
    }

    #[tokio::test]
    async fn concurrent_requests_open_connections_that_all_return_to_the_pool() {
        let region = FakeRegion::new("westus").start().await;
        let pool = pool_for(&region);
        let region = Arc::new(region);
        let mut requests = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (pool, region) = (pool.clone(), region.clone());
            requests.spawn(async move { get_to_end(&pool, &region, "/bytes/5000").await });
        }
        while let Some(size) = requests.join_next().await {
            assert_eq!(size.expect("request task"), 5000);
        }
        let opened: HashSet<_> = peers(&region).into_iter().collect();
        assert_eq!(pool.idle_len(), opened.len(), "every connection came back");
    }

    // One thread, as with `workers = 1`: there a body read to its end finds its connection
    // ready at once. With several worker threads the connection's task may not have reached
    // its idle state yet, and the next request may open another connection (harmless, but not
    // deterministic enough to assert on).
    #[tokio::test]
    async fn concurrent_request_streams_never_need_more_connections_than_there_are_streams() {
        let region = Arc::new(FakeRegion::new("westus").start().await);
        let pool = pool_for(&region);
        let mut streams = tokio::task::JoinSet::new();
        for _ in 0..8 {
            let (pool, region) = (pool.clone(), region.clone());
            streams.spawn(async move {
                for i in 0..25 {
                    let path = if i % 2 == 0 { "/" } else { "/bytes/20000" };
                    get_to_end(&pool, &region, path).await;
                }
            });
        }
        while let Some(done) = streams.join_next().await {
            done.expect("request stream");
        }
        let opened: HashSet<_> = peers(&region).into_iter().collect();
        assert!(
            opened.len() <= 8,
            "{} connections for 8 streams",
            opened.len()
        );
        assert_eq!(pool.idle_len(), opened.len(), "every connection came back");
    }

    #[tokio::test]
    async fn a_write_on_a_connection_the_region_closed_is_sent_once_on_a_new_one() {
        let region = FakeRegion::new("westus").start().await;
        let pool = pool_for(&region);
        get_to_end(&pool, &region, "/").await;
        region.kill().await;
        region.restart().await;
        // The pooled connection's task sees the close; the POST must not fail because of it.
        tokio::time::sleep(Duration::from_millis(50)).await;
        let Ok(resp) = pool
            .send(Box::new(request(&region, "POST", "/orders")))
            .await
        else {
            panic!("POST after the region restarted failed");
        };
        assert_eq!(resp.status(), StatusCode::OK);
        assert_eq!(region.requests_for("POST"), 1);
    }

    /// A region that names its keep-alive timeout (1 s: reuse for half of it) has its
    /// connection reused within that, and not after.
    #[tokio::test]
    async fn a_connection_is_not_reused_past_its_regions_keep_alive_timeout() {
        let region = FakeRegion::new("westus")
            .header("keep-alive", "timeout=1")
            .start()
            .await;
        let pool = pool_for(&region);
        get_to_end(&pool, &region, "/").await;
        get_to_end(&pool, &region, "/").await;
        let distinct: HashSet<_> = peers(&region).into_iter().collect();
        assert_eq!(distinct.len(), 1, "reused within the timeout");
        tokio::time::sleep(Duration::from_millis(600)).await;
        get_to_end(&pool, &region, "/").await;
        let distinct: HashSet<_> = peers(&region).into_iter().collect();
        assert_eq!(
            distinct.len(),
            2,
            "a new connection once the timeout is near"
        );
    }

    #[tokio::test]
    async fn idle_connections_are_closed_after_two_reaper_epochs() {
        let region = FakeRegion::new("westus").start().await;
        let pool = pool_for(&region);
        get_to_end(&pool, &region, "/").await;
        assert_eq!(pool.idle_len(), 1);
        pool.reap();
        assert_eq!(pool.idle_len(), 1, "idle for less than two epochs: kept");
        get_to_end(&pool, &region, "/").await;
        pool.reap();
        assert_eq!(pool.idle_len(), 1, "used again since: kept");
        pool.reap();
        assert_eq!(pool.idle_len(), 0, "idle for two epochs: closed");
        get_to_end(&pool, &region, "/").await;
        let distinct: HashSet<_> = peers(&region).into_iter().collect();
        assert_eq!(distinct.len(), 2, "a new connection after the reap");
    }
}
