//! A region's HTTP/2 connections, shared by the requests: each carries up to
//! [`MAX_STREAMS_PER_CONNECTION`] of them at once, and the request that finds them all full
//! opens another.
//!
//! A server limits how many streams a connection may have open (`SETTINGS_MAX_CONCURRENT_
//! STREAMS`: 100 in HAProxy and Apache, 128 in nginx, 250 in Go), and h2 holds a stream back
//! until one closes. On one connection per region, long-lived streams (gRPC subscriptions,
//! downloads) beyond that limit kept every other request and the health probes waiting until
//! they timed out, and a healthy region was failed over (round 9). hyper does not show the
//! peer's limit, so the sidecar keeps to 100 (RFC 9113 section 6.5.2 recommends servers allow
//! at least that many).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use hyper::client::conn::http2;

use crate::body::ProxyBody;

/// Streams one connection carries at once before the next request opens another.
pub const MAX_STREAMS_PER_CONNECTION: usize = 100;

#[derive(Default)]
pub struct H2Connections {
    conns: Mutex<Vec<Shared>>,
}

#[derive(Clone)]
pub struct Shared {
    sender: http2::SendRequest<ProxyBody>,
    streams: Arc<AtomicUsize>,
}

/// One open stream on a shared connection, until dropped (with the response body, or with
/// the request when it failed).
pub struct StreamSlot(Arc<AtomicUsize>);

impl Drop for StreamSlot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

impl Shared {
    /// The connection for one more stream, if it has room.
    pub fn try_take(&self) -> Option<(http2::SendRequest<ProxyBody>, StreamSlot)> {
        self.streams
            .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |n| {
                (n < MAX_STREAMS_PER_CONNECTION).then_some(n + 1)
            })
            .ok()?;
        Some((self.sender.clone(), StreamSlot(self.streams.clone())))
    }
}

impl H2Connections {
    fn lock(&self) -> MutexGuard<'_, Vec<Shared>> {
        self.conns.lock().unwrap_or_else(PoisonError::into_inner)
    }

    /// A ready connection with room for one more stream; closed connections leave the set.
    pub fn checkout(&self) -> Option<(http2::SendRequest<ProxyBody>, StreamSlot)> {
        let mut conns = self.lock();
        conns.retain(|c| !c.sender.is_closed());
        conns
            .iter()
            .filter(|c| c.sender.is_ready())
            .find_map(Shared::try_take)
    }

    /// Whether there is no connection yet (or none left).
    pub fn is_empty(&self) -> bool {
        self.lock().is_empty()
    }

    /// Adds a connection just opened.
    pub fn add(&self, sender: http2::SendRequest<ProxyBody>) -> Shared {
        let shared = Shared {
            sender,
            streams: Arc::new(AtomicUsize::new(0)),
        };
        self.lock().push(shared.clone());
        shared
    }

    /// Closes connections that carry no stream, except the first: one stays open for the
    /// next request, and the others were opened for a peak that has passed.
    pub fn reap(&self) {
        let mut kept = false;
        self.lock().retain(|c| {
            if c.sender.is_closed() || (kept && c.streams.load(Ordering::Relaxed) == 0) {
                return false;
            }
            kept = true;
            true
        });
    }
}
