//! The one body type the proxy sends and returns: empty, in memory, or streamed from a peer.
//!
//! One concrete enum instead of a boxed trait object keeps the hot path free of a per-request
//! allocation and lets a buffered request body be replayed on retry.

use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;

use crate::upstream::RegionBody;

mod buffer;
pub mod stall;
pub mod upload;
pub(crate) use buffer::BodyBuffer;
use stall::{StallReport, StallWatch};
use upload::UploadProgress;

/// What a body fails with: a peer's error as hyper reported it, or the sidecar's own (a
/// region's stalled body). Boxed only when a body fails.
pub type BodyError = Box<dyn std::error::Error + Send + Sync>;

#[derive(Debug, Default)]
pub enum ProxyBody {
    #[default]
    Empty,
    /// A complete body held in memory (`None` once sent).
    Full(Option<Bytes>),
    /// A body streamed from the client.
    Incoming(Incoming),
    /// A region's response body (its connection returns to the pool at the end).
    Region(RegionBody),
    /// A body whose first bytes were already read (while trying to buffer it) and the rest streams.
    Prefixed {
        prefix: Option<Bytes>,
        rest: Incoming,
    },
    /// A region's body streamed to the client while a copy is kept (for the stale cache).
    Capture(Box<Capture>),
    /// A client's body streamed to a region, reporting its progress to the attempt's timer.
    Upload(Box<Upload>),
}

#[derive(Debug)]
pub struct Upload {
    inner: ProxyBody,
    progress: std::sync::Arc<UploadProgress>,
}

/// Receives a captured body once it has streamed completely.
pub type CaptureSink = Box<dyn FnOnce(Bytes) + Send>;

pub struct Capture {
    inner: RegionBody,
    copy: BodyBuffer,
    limit: usize,
    /// `None` once delivered, or when the body grew past `limit` or failed.
    sink: Option<CaptureSink>,
}

impl std::fmt::Debug for Capture {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Capture")
            .field("copied", &self.copy.len())
            .finish()
    }
}

impl ProxyBody {
    pub fn full(bytes: impl Into<Bytes>) -> Self {
        let bytes = bytes.into();
        if bytes.is_empty() {
            ProxyBody::Empty
        } else {
            ProxyBody::Full(Some(bytes))
        }
    }
}

impl ProxyBody {
    /// Bounds each wait for a region's body, and for a `success` clears the region's failure
    /// streak once the body is complete (see `stall`). False for any other body, which is left
    /// as it is.
    /// While the client still streams `upload`, the region may wait for it.
    pub fn watch_stalls(
        &mut self,
        report: &std::sync::Arc<StallReport>,
        success: bool,
        upload: Option<std::sync::Arc<UploadProgress>>,
    ) -> bool {
        match self {
            ProxyBody::Region(body) => {
                body.watch_stalls(StallWatch::new(report.clone(), success, upload));
                true
            }
            _ => false,
        }
    }

    /// Streams as before, reporting to `progress` when the client's bytes are awaited and
    /// when the body is complete.
    pub fn upload(self, progress: std::sync::Arc<UploadProgress>) -> Self {
        ProxyBody::Upload(Box::new(Upload {
            inner: self,
            progress,
        }))
    }

    /// Streams as before and hands a copy of the whole body to `sink` at its end, unless it is
    /// larger than `limit` (then nothing is kept and the stream is unaffected).
    pub fn capture(self, limit: usize, sink: CaptureSink) -> Self {
        match self {
            ProxyBody::Region(inner) => ProxyBody::Capture(Box::new(Capture {
                copy: BodyBuffer::new(inner.size_hint().lower().min(limit as u64) as usize),
                inner,
                limit,
                sink: Some(sink),
            })),
            ProxyBody::Empty => {
                sink(Bytes::new());
                ProxyBody::Empty
            }
            ProxyBody::Full(Some(bytes)) if bytes.len() <= limit => {
                sink(bytes.clone());
                ProxyBody::Full(Some(bytes))
            }
            other => other,
        }
    }
}

impl Body for ProxyBody {
    type Data = Bytes;
    type Error = BodyError;

    fn poll_frame(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BodyError>>> {
        match self.get_mut() {
            ProxyBody::Empty => Poll::Ready(None),
            ProxyBody::Full(bytes) => Poll::Ready(bytes.take().map(|b| Ok(Frame::data(b)))),
            ProxyBody::Incoming(body) => Pin::new(body).poll_frame(cx).map_err(Into::into),
            ProxyBody::Region(body) => Pin::new(body).poll_frame(cx),
            ProxyBody::Prefixed { prefix, rest } => match prefix.take() {
                Some(b) => Poll::Ready(Some(Ok(Frame::data(b)))),
                None => Pin::new(rest).poll_frame(cx).map_err(Into::into),
            },
            ProxyBody::Capture(c) => {
                let polled = Pin::new(&mut c.inner).poll_frame(cx);
                match &polled {
                    Poll::Ready(Some(Ok(frame))) => {
                        if let Some(data) = frame.data_ref() {
                            if c.sink.is_some() && c.copy.len() + data.len() <= c.limit {
                                c.copy.push(data.clone());
                            } else {
                                c.sink = None;
                                c.copy = BodyBuffer::default();
                            }
                        }
                        // hyper stops polling a body of known length once it has all of it,
                        // so the last frame, not the end of the stream, delivers the copy.
                        if c.inner.has_all()
                            && let Some(sink) = c.sink.take()
                        {
                            sink(std::mem::take(&mut c.copy).into_bytes());
                        }
                    }
                    Poll::Ready(None) => {
                        if let Some(sink) = c.sink.take() {
                            sink(std::mem::take(&mut c.copy).into_bytes());
                        }
                    }
                    Poll::Ready(Some(Err(_))) => c.sink = None,
                    Poll::Pending => {}
                }
                polled
            }
            ProxyBody::Upload(u) => {
                let polled = Pin::new(&mut u.inner).poll_frame(cx);
                match &polled {
                    Poll::Pending => u.progress.set_waiting_on_client(true),
                    // As for `Capture`: the last frame of a body of known length is its end.
                    Poll::Ready(Some(Ok(_))) if u.inner.is_end_stream() => u.progress.finish(),
                    Poll::Ready(None) => u.progress.finish(),
                    Poll::Ready(Some(Err(_))) => u.progress.fail(),
                    Poll::Ready(Some(_)) => u.progress.set_waiting_on_client(false),
                }
                polled
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        match self {
            ProxyBody::Empty => true,
            ProxyBody::Full(bytes) => bytes.is_none(),
            ProxyBody::Incoming(body) => body.is_end_stream(),
            ProxyBody::Region(body) => body.is_end_stream(),
            ProxyBody::Prefixed { prefix, rest } => prefix.is_none() && rest.is_end_stream(),
            // Polled to the end even when empty, so the copy is delivered.
            ProxyBody::Capture(c) => c.sink.is_none() && c.inner.is_end_stream(),
            ProxyBody::Upload(u) => u.inner.is_end_stream(),
        }
    }

    fn size_hint(&self) -> SizeHint {
        match self {
            ProxyBody::Empty => SizeHint::with_exact(0),
            ProxyBody::Full(bytes) => {
                SizeHint::with_exact(bytes.as_ref().map_or(0, |b| b.len() as u64))
            }
            ProxyBody::Incoming(body) => body.size_hint(),
            ProxyBody::Region(body) => body.size_hint(),
            ProxyBody::Prefixed { prefix, rest } => {
                let extra = prefix.as_ref().map_or(0, |b| b.len() as u64);
                let inner = rest.size_hint();
                let mut hint = SizeHint::new();
                hint.set_lower(inner.lower() + extra);
                if let Some(upper) = inner.upper() {
                    hint.set_upper(upper + extra);
                }
                hint
            }
            ProxyBody::Capture(c) => c.inner.size_hint(),
            ProxyBody::Upload(u) => u.inner.size_hint(),
        }
    }
}
