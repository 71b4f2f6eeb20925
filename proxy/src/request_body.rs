//! The request body as the attempt loop needs it: replayable when small, streamed when large.
//!
//! Bodies up to `buffer_body_limit` are read into memory before the first attempt so a retry
//! can send them again. A larger body streams straight through and its request gets one
//! attempt that sends it: once bytes have left, they cannot be taken back. An attempt that
//! fails before sending anything (the region refused the connection) gives the body back, so
//! the request can still go to the next region.
//!
//! So does a body whose client pauses for [`STREAM_AFTER_PAUSE`] before its end: a client
//! that sends part of its body and waits for the answer before sending more (gRPC
//! bidirectional and client streaming, any request-response protocol over one request) would
//! otherwise wait for ever on a sidecar that waits for the end of the body.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::upload::UploadProgress;
use crate::body::{BodyBuffer, ProxyBody};

/// How long a client may pause sending its body before what it sent goes on to the region
/// and the rest streams after it. Long enough that a body written in one go over loopback
/// is never split by it; short enough to add little to the first message of a stream.
pub const STREAM_AFTER_PAUSE: Duration = Duration::from_millis(50);

pub enum RequestPayload {
    /// Held in memory; every attempt gets a copy (a cheap `Bytes` clone).
    Replayable(Bytes),
    /// Streamed; `body` is `None` once an attempt took it.
    Streaming {
        body: Option<ProxyBody>,
        progress: Arc<UploadProgress>,
    },
}

impl RequestPayload {
    /// Reads up to `limit` bytes of the body, by `deadline`. An error is the status and
    /// `x-switchyard-error` reason to answer with: 408 for a client too slow, 400 for a body
    /// that failed.
    pub async fn prepare(
        mut body: Incoming,
        limit: usize,
        deadline: Instant,
    ) -> Result<Self, (StatusCode, &'static str)> {
        if body.is_end_stream() {
            return Ok(RequestPayload::Replayable(Bytes::new()));
        }
        if body.size_hint().lower() > limit as u64 {
            return Ok(Self::streaming(ProxyBody::Incoming(body)));
        }
        let mut buf = BodyBuffer::new(body.size_hint().lower() as usize);
        loop {
            let pause_ends = Instant::now() + STREAM_AFTER_PAUSE;
            let frame = match tokio::time::timeout_at(deadline.min(pause_ends), body.frame()).await
            {
                Err(_) if pause_ends < deadline => {
                    return Ok(Self::streaming(ProxyBody::Prefixed {
                        prefix: (buf.len() > 0).then(|| buf.into_bytes()),
                        rest: body,
                    }));
                }
                Err(_) => return Err((StatusCode::REQUEST_TIMEOUT, "request-body-timeout")),
                Ok(None) => return Ok(RequestPayload::Replayable(buf.into_bytes())),
                Ok(Some(Err(_))) => return Err((StatusCode::BAD_REQUEST, "request-body-error")),
                Ok(Some(Ok(frame))) => frame,
            };
            // Trailers on a request are rare and not replayable; they are dropped.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.push(data);
            if buf.len() > limit {
                return Ok(Self::streaming(ProxyBody::Prefixed {
                    prefix: Some(buf.into_bytes()),
                    rest: body,
                }));
            }
        }
    }

    fn streaming(body: ProxyBody) -> Self {
        let progress = Arc::new(UploadProgress::new());
        RequestPayload::Streaming {
            body: Some(body.upload(progress.clone())),
            progress,
        }
    }

    /// The body for the next attempt, or `None` when a streamed body was already sent.
    pub fn next_body(&mut self) -> Option<ProxyBody> {
        match self {
            RequestPayload::Replayable(bytes) => Some(ProxyBody::full(bytes.clone())),
            RequestPayload::Streaming { body, .. } => body.take(),
        }
    }

    /// Whether another attempt can have a body: a replayable one always, a streamed one only
    /// while it is still here (before the first attempt, or given back unsent).
    pub fn can_resend(&self) -> bool {
        match self {
            RequestPayload::Replayable(_) => true,
            RequestPayload::Streaming { body, .. } => body.is_some(),
        }
    }

    /// Takes back a streamed body an attempt never sent (see `Error::unsent_body`).
    pub fn give_back(&mut self, returned: ProxyBody) {
        if let RequestPayload::Streaming {
            body: slot @ None, ..
        } = self
        {
            *slot = Some(returned);
        }
    }

    /// [`RequestPayload::upload`], to keep after the payload is gone.
    pub fn upload_handle(&self) -> Option<Arc<UploadProgress>> {
        match self {
            RequestPayload::Replayable(_) => None,
            RequestPayload::Streaming { progress, .. } => Some(progress.clone()),
        }
    }

    /// How far a streamed body has got (`None`: it was read whole before the first attempt).
    pub fn upload(&self) -> Option<&UploadProgress> {
        match self {
            RequestPayload::Replayable(_) => None,
            RequestPayload::Streaming { progress, .. } => Some(progress),
        }
    }
}

/// Most of a request body read and thrown away for an answer made without forwarding.
const DISCARD_LIMIT: usize = 64 * 1024;
/// Longest wait for the rest of a body that is thrown away.
const DISCARD_WAIT: Duration = Duration::from_secs(1);

/// Reads and throws away the rest of the body of a request the sidecar answers itself, so an
/// HTTP/1.1 client's connection can carry its next request. hyper closes a connection whose
/// request body was not read to its end, and a client that already sent its next request on
/// it (a POST, say) meets a connection closed without an answer, which it cannot safely
/// resend. True when the body was read whole: at most `DISCARD_LIMIT` bytes, within
/// `DISCARD_WAIT` and by `deadline`. Otherwise the answer should close the connection itself.
pub async fn discard(mut body: Incoming, deadline: Instant) -> bool {
    if body.is_end_stream() {
        return true;
    }
    let until = deadline.min(Instant::now() + DISCARD_WAIT);
    let drain = async {
        let mut read = 0usize;
        while let Some(frame) = body.frame().await {
            let Ok(frame) = frame else { return false };
            if let Some(data) = frame.data_ref() {
                read += data.len();
                if read > DISCARD_LIMIT {
                    return false;
                }
            }
        }
        true
    };
    tokio::time::timeout_at(until, drain).await.unwrap_or(false)
}
