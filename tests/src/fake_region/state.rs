//! What a fake region shares between its handle and its connections: settings, mode, counters, log.

use std::collections::HashMap;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{HeaderMap, Method, Request, Version};

/// How a fake region answers. Switch at runtime with [`crate::FakeRegion::set_mode`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Mode {
    /// 200, body = configured body or the region name. `/echo` streams the request body
    /// back (its digest goes to the log, not the headers), `/bytes/N` streams N
    /// [`crate::pattern_bytes`], `/drip/N/MS` streams N lines `MS` ms apart (see
    /// [`crate::DRIP_LINE`]), `/cut` sends one such line and breaks the body off, `/late-end`
    /// sends one with its end in a frame of its own (over h2),
    /// `/trailers` ends its body with gRPC-style trailers, and `Upgrade: websocket` gets a
    /// WebSocket echo.
    Ok,
    /// Answers every request (and the health path) with this status.
    Status(u16),
    /// Waits this long, then answers as `Ok`.
    Slow(Duration),
    /// Reads the request (head and body) and never answers; the socket stays open.
    Blackhole,
    /// The listener is closed and every connection dropped: connection refused.
    Killed,
    /// Reads the whole request, then drops the connection without a byte of response.
    CloseAfterRequest,
}

/// One request as the fake region received it (health checks are not logged).
#[derive(Clone, Debug)]
pub struct RecordedRequest {
    /// Order of arrival, starting at 0 (not reset by `reset_counters`).
    pub seq: u64,
    pub method: Method,
    /// Path and query as received.
    pub path: String,
    pub version: Version,
    pub headers: HeaderMap,
    /// The TCP peer (the proxy's outbound socket).
    pub peer: SocketAddr,
    /// Body length once the body was read to its end.
    pub body_len: Option<u64>,
    /// Hex SHA-256 of the body once it was read to its end.
    pub body_sha256: Option<String>,
}

impl RecordedRequest {
    /// The header's value as text, if present and valid UTF-8.
    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// The settings a test can flip while the region runs.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Control {
    /// Serving mode; never `Killed` (that lives in whether a listener runs).
    pub mode: Mode,
    /// Status of the health path in `Ok`/`Status`/`Slow` modes, when set.
    pub health_status: Option<u16>,
}

/// Beyond this many entries the log stops growing; counters stay exact.
const LOG_CAP: usize = 100_000;

pub(crate) struct Shared {
    pub name: String,
    pub body: Bytes,
    pub health_path: String,
    pub extra_headers: HeaderMap,
    pub tls: bool,
    control: Mutex<Control>,
    requests: AtomicUsize,
    health_checks: AtomicUsize,
    /// TCP connections accepted (health checks' included).
    connections: AtomicUsize,
    next_seq: AtomicU64,
    by_method: Mutex<HashMap<Method, usize>>,
    log: Mutex<Vec<RecordedRequest>>,
}

/// A poisoned lock only means a test thread panicked; the data is still usable.
fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

impl Shared {
    pub fn new(
        name: String,
        body: Bytes,
        health_path: String,
        extra_headers: HeaderMap,
        tls: bool,
        control: Control,
    ) -> Self {
        Self {
            name,
            body,
            health_path,
            extra_headers,
            tls,
            control: Mutex::new(control),
            requests: AtomicUsize::new(0),
            health_checks: AtomicUsize::new(0),
            connections: AtomicUsize::new(0),
            next_seq: AtomicU64::new(0),
            by_method: Mutex::new(HashMap::new()),
            log: Mutex::new(Vec::new()),
        }
    }

    pub fn control(&self) -> Control {
        *lock(&self.control)
    }

    pub fn set_mode(&self, mode: Mode) {
        lock(&self.control).mode = mode;
    }

    pub fn set_health_status(&self, status: Option<u16>) {
        lock(&self.control).health_status = status;
    }

    pub fn count_health_check(&self) {
        self.health_checks.fetch_add(1, Ordering::SeqCst);
    }

    /// Counts and logs a request whose head was read; returns its sequence number.
    pub fn record<B>(&self, req: &Request<B>, peer: SocketAddr) -> u64 {
        let seq = self.next_seq.fetch_add(1, Ordering::SeqCst);
        *lock(&self.by_method)
            .entry(req.method().clone())
            .or_insert(0) += 1;
        let entry = RecordedRequest {
            seq,
            method: req.method().clone(),
            path: req
                .uri()
                .path_and_query()
                .map_or_else(|| req.uri().path().to_owned(), |pq| pq.as_str().to_owned()),
            version: req.version(),
            headers: req.headers().clone(),
            peer,
            body_len: None,
            body_sha256: None,
        };
        {
            let mut log = lock(&self.log);
            if log.len() < LOG_CAP {
                log.push(entry);
            }
        }
        // Counted last so a test that saw the count also sees the log entry.
        self.requests.fetch_add(1, Ordering::SeqCst);
        seq
    }

    /// Stores the digest of a request body once it was read to its end.
    pub fn record_body(&self, seq: u64, len: u64, sha256: String) {
        let mut log = lock(&self.log);
        if let Some(entry) = log.iter_mut().rev().find(|e| e.seq == seq) {
            entry.body_len = Some(len);
            entry.body_sha256 = Some(sha256);
        }
    }

    pub fn requests(&self) -> usize {
        self.requests.load(Ordering::SeqCst)
    }

    pub fn requests_for(&self, method: &Method) -> usize {
        lock(&self.by_method).get(method).copied().unwrap_or(0)
    }

    pub fn health_checks(&self) -> usize {
        self.health_checks.load(Ordering::SeqCst)
    }

    pub fn count_connection(&self) {
        self.connections.fetch_add(1, Ordering::SeqCst);
    }

    pub fn connections(&self) -> usize {
        self.connections.load(Ordering::SeqCst)
    }

    pub fn received(&self) -> Vec<RecordedRequest> {
        lock(&self.log).clone()
    }

    pub fn reset(&self) {
        lock(&self.log).clear();
        lock(&self.by_method).clear();
        self.requests.store(0, Ordering::SeqCst);
        self.health_checks.store(0, Ordering::SeqCst);
        self.connections.store(0, Ordering::SeqCst);
    }
}
