//! A region's response body, and the HTTP/1.1 connection it holds until it has been read to
//! the end: then the connection goes back to the pool (a body dropped early takes its
//! connection with it). Over HTTP/2 it holds its stream's place on the shared connection.
//! Each wait for the next piece is bounded (`body::stall`).

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1;

use super::h2_conns::StreamSlot;
use super::keep_alive::Reuse;
use super::pool::Pool;
use crate::body::stall::StallWatch;
use crate::body::{BodyError, ProxyBody};

/// An HTTP/1.1 connection on loan to one response body.
pub(super) struct Lease {
    sender: http1::SendRequest<ProxyBody>,
    pool: Arc<Pool>,
    /// The region's keep-alive timeout on the connection (`keep_alive`).
    reuse: Reuse,
}

impl Lease {
    pub(super) fn new(
        sender: http1::SendRequest<ProxyBody>,
        pool: Arc<Pool>,
        reuse: Reuse,
    ) -> Self {
        Lease {
            sender,
            pool,
            reuse,
        }
    }

    /// Returns the connection to the pool once it can take the next request. It usually can
    /// at once (hyper has read the whole response); if the request body is still being
    /// written, a task waits for it.
    fn release(mut self) {
        if self.sender.is_ready() {
            self.pool.checkin(self.sender, self.reuse);
        } else if !self.sender.is_closed()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if self.sender.ready().await.is_ok() {
                    self.pool.checkin(self.sender, self.reuse);
                }
            });
        }
    }
}

/// What a response body holds of its connection until it ends.
pub(super) enum Hold {
    /// Nothing: the connection went to an upgrade.
    Nothing,
    /// The whole HTTP/1.1 connection, back to the pool when the body was read to its end.
    Connection(Lease),
    /// One stream of a shared HTTP/2 connection, given back when dropped.
    Stream { _slot: StreamSlot },
}

/// A region's response body; returns its connection to the pool when read to the end.
pub struct RegionBody {
    body: Incoming,
    hold: Hold,
    done: bool,
    /// Bounds each wait for the region's next piece (see `body::stall`); off until the
    /// request path attaches a report, and after it fired.
    stall: StallWatch,
}

impl RegionBody {
    pub(super) fn new(body: Incoming, hold: Hold) -> Self {
        RegionBody {
            body,
            hold,
            done: false,
            stall: StallWatch::default(),
        }
    }

    pub fn watch_stalls(&mut self, watch: StallWatch) {
        self.stall = watch;
    }

    /// Whether the whole body came: its end, or every byte of a declared length. An h2
    /// region may send the stream's end in a frame of its own after the last data, and
    /// hyper's HTTP/1.1 server stops polling a body of known length at its last byte: such a
    /// response to an HTTP/1.1 client never counted as complete, cleared no failure streak,
    /// and was never kept as a stale copy (round 10). Not `is_end_stream`: told the body has
    /// ended, hyper's h2 server would end the stream with the last data and drop the
    /// trailers that may follow it (gRPC's `grpc-status`; round 11).
    pub fn has_all(&self) -> bool {
        self.done || self.body.is_end_stream() || self.body.size_hint().exact() == Some(0)
    }
}

impl std::fmt::Debug for RegionBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RegionBody")
            .field("pooled", &matches!(self.hold, Hold::Connection(_)))
            .finish()
    }
}

impl Drop for RegionBody {
    fn drop(&mut self) {
        let complete = self.has_all();
        self.stall.finished(complete);
        if complete
            && let Hold::Connection(lease) = std::mem::replace(&mut self.hold, Hold::Nothing)
        {
            lease.release();
        }
    }
}

impl Body for RegionBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        let this = &mut *self;
        let polled = Pin::new(&mut this.body).poll_frame(cx);
        match &polled {
            Poll::Ready(None) => this.done = true,
            Poll::Pending => {
                if let Some(stalled) = this.stall.poll_stalled(cx) {
                    return Poll::Ready(Some(Err(stalled.into())));
                }
            }
            Poll::Ready(Some(Err(e))) => this.stall.cut(e),
            Poll::Ready(Some(Ok(_))) => this.stall.progress(),
        }
        polled.map_err(Into::into)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
