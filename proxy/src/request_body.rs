//! The request body as the attempt loop needs it: replayable when small, streamed when large.
//!
//! Bodies up to `buffer_body_limit` are read into memory before the first attempt so a retry
//! can send them again. A larger body streams straight through and its request gets one
//! attempt: once bytes have left, they cannot be taken back.

use bytes::{Bytes, BytesMut};
use http_body::Body;
use http_body_util::BodyExt;
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::ProxyBody;

pub enum RequestPayload {
    /// Held in memory; every attempt gets a copy (a cheap `Bytes` clone).
    Replayable(Bytes),
    /// Streamed; `None` once the first attempt took it.
    Streaming(Option<ProxyBody>),
}

impl RequestPayload {
    /// Reads up to `limit` bytes of the body, by `deadline`. Errors are reasons for a 400.
    pub async fn prepare(
        mut body: Incoming,
        limit: usize,
        deadline: Instant,
    ) -> Result<Self, &'static str> {
        if body.is_end_stream() {
            return Ok(RequestPayload::Replayable(Bytes::new()));
        }
        if body.size_hint().lower() > limit as u64 {
            return Ok(RequestPayload::Streaming(Some(ProxyBody::Incoming(body))));
        }
        let mut buf = Collected::new(body.size_hint().lower() as usize);
        loop {
            let frame = match tokio::time::timeout_at(deadline, body.frame()).await {
                Err(_) => return Err("request-body-timeout"),
                Ok(None) => return Ok(RequestPayload::Replayable(buf.into_bytes())),
                Ok(Some(Err(_))) => return Err("request-body-error"),
                Ok(Some(Ok(frame))) => frame,
            };
            // Trailers on a request are rare and not replayable; they are dropped.
            let Ok(data) = frame.into_data() else {
                continue;
            };
            buf.push(data);
            if buf.len() > limit {
                return Ok(RequestPayload::Streaming(Some(ProxyBody::Prefixed {
                    prefix: Some(buf.into_bytes()),
                    rest: body,
                })));
            }
        }
    }

    /// The body for the next attempt, or `None` when a streamed body was already sent.
    pub fn next_body(&mut self) -> Option<ProxyBody> {
        match self {
            RequestPayload::Replayable(bytes) => Some(ProxyBody::full(bytes.clone())),
            RequestPayload::Streaming(body) => body.take(),
        }
    }

    pub fn replayable(&self) -> bool {
        matches!(self, RequestPayload::Replayable(_))
    }
}

/// The most buffer set aside for a body before its bytes arrive (the default
/// `buffer_body_limit`).
const PREALLOCATE_MAX: usize = 64 * 1024;

/// A one-chunk body shorter than this is copied out of hyper's read buffer rather than kept
/// as a slice of it: the slice would pin the whole buffer (8 KiB or more) for the life of
/// the request. A longer one fills most of the buffer anyway, and copying it costs more.
const COPY_BELOW: usize = 4 * 1024;

/// Body bytes read so far. The first chunk is kept as hyper handed it over; from the second
/// on they are copied into one buffer sized by the declared length, so the body is copied
/// once instead of into buffers that double as it comes in.
struct Collected {
    first: Bytes,
    rest: BytesMut,
    expected: usize,
}

impl Collected {
    fn new(declared: usize) -> Self {
        Collected {
            first: Bytes::new(),
            rest: BytesMut::new(),
            // A declared length is a claim, not bytes: a client that declares much and sends
            // little gets no more memory set aside than a default-sized body needs.
            expected: declared.min(PREALLOCATE_MAX),
        }
    }

    fn push(&mut self, data: Bytes) {
        if self.rest.is_empty() {
            if self.first.is_empty() {
                self.first = data;
                return;
            }
            let first = std::mem::take(&mut self.first);
            self.rest
                .reserve(self.expected.max(first.len() + data.len()));
            self.rest.extend_from_slice(&first);
        }
        self.rest.extend_from_slice(&data);
    }

    fn len(&self) -> usize {
        self.first.len() + self.rest.len()
    }

    fn into_bytes(self) -> Bytes {
        if !self.rest.is_empty() {
            self.rest.freeze()
        } else if self.first.len() < COPY_BELOW {
            Bytes::copy_from_slice(&self.first)
        } else {
            self.first
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_large_body_in_one_chunk_is_kept_without_a_copy() {
        let chunk = Bytes::from(vec![7u8; 60_000]);
        let mut buf = Collected::new(60_000);
        buf.push(Bytes::new());
        buf.push(chunk.clone());
        assert_eq!(buf.len(), 60_000);
        let body = buf.into_bytes();
        assert_eq!(body.as_ptr(), chunk.as_ptr(), "the same bytes, not a copy");
    }

    #[test]
    fn a_small_body_in_one_chunk_is_copied_out_of_the_read_buffer() {
        // A small slice of a larger buffer, as hyper hands a short body over.
        let read_buffer = Bytes::from(vec![7u8; 8192]);
        let chunk = read_buffer.slice(100..1100);
        let mut buf = Collected::new(1000);
        buf.push(chunk.clone());
        let body = buf.into_bytes();
        assert_eq!(body, chunk);
        assert_ne!(
            body.as_ptr(),
            chunk.as_ptr(),
            "copied, so the buffer can go"
        );
    }

    #[test]
    fn chunks_are_joined_in_one_buffer_of_the_declared_length() {
        let mut buf = Collected::new(64 * 1024);
        let mut expected = Vec::new();
        for i in 0..8u8 {
            let chunk = vec![i; 8 * 1024];
            expected.extend_from_slice(&chunk);
            buf.push(Bytes::from(chunk));
            assert_eq!(buf.len(), expected.len());
            if i > 0 {
                assert!(
                    buf.rest.capacity() == 64 * 1024,
                    "sized once, never regrown"
                );
            }
        }
        assert_eq!(buf.into_bytes(), Bytes::from(expected));
    }

    #[test]
    fn a_body_longer_than_declared_is_still_read_whole() {
        let mut buf = Collected::new(10);
        for i in 0..5u8 {
            buf.push(Bytes::from(vec![i; 100]));
        }
        let body = buf.into_bytes();
        assert_eq!(body.len(), 500);
        assert!(body[..100].iter().all(|&b| b == 0) && body[400..].iter().all(|&b| b == 4));
    }

    #[test]
    fn a_large_declared_length_sets_aside_no_more_than_the_cap() {
        let mut buf = Collected::new(100 * 1024 * 1024);
        buf.push(Bytes::from_static(b"a"));
        buf.push(Bytes::from_static(b"b"));
        assert!(buf.rest.capacity() <= PREALLOCATE_MAX);
        assert_eq!(buf.into_bytes(), Bytes::from_static(b"ab"));
    }

    #[test]
    fn nothing_read_is_an_empty_body() {
        assert!(Collected::new(0).into_bytes().is_empty());
    }
}
