//! Bodies of the fake region: a hashing pass-through for request bodies and a deterministic source.

use std::future::Future;
use std::pin::Pin;
use std::task::{Context, Poll};

use bytes::Bytes;
use http_body::{Body, Frame, SizeHint};
use sha2::{Digest, Sha256};

/// Boxed error of every body in the harness.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Chunk size of `/bytes/N` responses: small enough that a large body is many frames.
const PATTERN_CHUNK: usize = 16 * 1024;

/// The byte at `offset` of every deterministic body (`/bytes/N`, [`pattern_bytes`]).
/// 251 is prime, so the pattern does not line up with power-of-two chunk sizes.
fn pattern_byte(offset: u64) -> u8 {
    (offset % 251) as u8
}

/// The first `n` bytes of the deterministic content `/bytes/N` serves.
pub fn pattern_bytes(n: usize) -> Vec<u8> {
    (0..n as u64).map(pattern_byte).collect()
}

/// Hex SHA-256 of `data`, in the format of `x-fake-body-sha256`.
pub fn sha256_hex(data: &[u8]) -> String {
    format!("{:x}", Sha256::digest(data))
}

/// Streams `len` deterministic bytes in chunks, with an exact size hint.
pub struct PatternBody {
    pos: u64,
    len: u64,
}

impl PatternBody {
    pub fn new(len: u64) -> Self {
        Self { pos: 0, len }
    }
}

impl Body for PatternBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.pos >= self.len {
            return Poll::Ready(None);
        }
        let n = (self.len - self.pos).min(PATTERN_CHUNK as u64);
        let chunk: Vec<u8> = (self.pos..self.pos + n).map(pattern_byte).collect();
        self.pos += n;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from(chunk)))))
    }

    fn is_end_stream(&self) -> bool {
        self.pos >= self.len
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(self.len - self.pos)
    }
}

type OnDone = Box<dyn FnOnce(u64, String) + Send + Sync>;

/// Passes a body through while hashing it; calls `on_done(len, sha256_hex)` once the body
/// has been read to its end (not when it is dropped half-read).
pub struct HashingBody<B> {
    inner: B,
    hasher: Sha256,
    len: u64,
    on_done: Option<OnDone>,
}

impl<B: Body<Data = Bytes> + Unpin> HashingBody<B> {
    pub fn new(inner: B, on_done: impl FnOnce(u64, String) + Send + Sync + 'static) -> Self {
        let mut body = Self {
            inner,
            hasher: Sha256::new(),
            len: 0,
            on_done: Some(Box::new(on_done)),
        };
        // An empty body may never be polled: report it now.
        if body.inner.is_end_stream() {
            body.finish();
        }
        body
    }

    fn finish(&mut self) {
        if let Some(done) = self.on_done.take() {
            let digest = std::mem::take(&mut self.hasher).finalize();
            done(self.len, format!("{digest:x}"));
        }
    }
}

impl<B> Body for HashingBody<B>
where
    B: Body<Data = Bytes> + Unpin,
    B::Error: Into<BoxError>,
{
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let this = &mut *self;
        match Pin::new(&mut this.inner).poll_frame(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(None) => {
                this.finish();
                Poll::Ready(None)
            }
            Poll::Ready(Some(Err(e))) => Poll::Ready(Some(Err(e.into()))),
            Poll::Ready(Some(Ok(frame))) => {
                if let Some(data) = frame.data_ref() {
                    this.hasher.update(data);
                    this.len += data.len() as u64;
                }
                // hyper stops polling once `is_end_stream` says so, so finish eagerly.
                if this.inner.is_end_stream() {
                    this.finish();
                }
                Poll::Ready(Some(Ok(frame)))
            }
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}

/// `/drip/N/MS`: `N` lines of 16 bytes, the first at once and each next one `MS` ms later,
/// with no declared length (chunked over HTTP/1.1). A large `MS` is a body that stalls after
/// its first piece.
pub struct DripBody {
    left: u32,
    every: std::time::Duration,
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

/// One piece of a `/drip` body.
pub const DRIP_LINE: &[u8] = b"drip drip drip\n";

impl DripBody {
    pub fn new(count: u32, every: std::time::Duration) -> Self {
        Self {
            left: count,
            every,
            wait: None,
        }
    }
}

impl Body for DripBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.left == 0 {
            return Poll::Ready(None);
        }
        if let Some(wait) = self.wait.as_mut() {
            std::task::ready!(wait.as_mut().poll(cx));
        }
        self.left -= 1;
        self.wait = Some(Box::pin(tokio::time::sleep(self.every)));
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(DRIP_LINE)))))
    }

    fn is_end_stream(&self) -> bool {
        self.left == 0
    }
}

/// A `/trailers` body: one piece, then gRPC-style trailers (`grpc-status: 0`,
/// `grpc-message: done`), as the region's `Trailer` header announces. `/trailers-cl` declares
/// the piece's length too (over HTTP/2 a `content-length` and trailers go together).
pub struct TrailersBody {
    data: Option<Bytes>,
    trailers: Option<http::HeaderMap>,
    declared: bool,
}

/// The piece of a `/trailers` body.
pub const TRAILERS_DATA: &[u8] = b"message before the trailers\n";

impl TrailersBody {
    pub fn declared() -> Self {
        TrailersBody {
            declared: true,
            ..Self::new()
        }
    }

    pub fn new() -> Self {
        let mut trailers = http::HeaderMap::new();
        trailers.insert("grpc-status", http::HeaderValue::from_static("0"));
        trailers.insert("grpc-message", http::HeaderValue::from_static("done"));
        Self {
            data: Some(Bytes::from_static(TRAILERS_DATA)),
            trailers: Some(trailers),
            declared: false,
        }
    }
}

impl Default for TrailersBody {
    fn default() -> Self {
        Self::new()
    }
}

impl Body for TrailersBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if let Some(data) = self.data.take() {
            return Poll::Ready(Some(Ok(Frame::data(data))));
        }
        Poll::Ready(self.trailers.take().map(|t| Ok(Frame::trailers(t))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none() && self.trailers.is_none()
    }

    fn size_hint(&self) -> SizeHint {
        match (&self.data, self.declared) {
            (Some(data), true) => SizeHint::with_exact(data.len() as u64),
            (None, true) => SizeHint::with_exact(0),
            _ => SizeHint::default(),
        }
    }
}

/// A `/cut` body: one [`DRIP_LINE`], then after 100 ms (the head and the line have gone out)
/// an error, so the server breaks the response off (HTTP/1.1: closes the connection before
/// the chunked body ends; HTTP/2: resets the stream).
#[derive(Default)]
pub struct CutBody {
    wait: Option<Pin<Box<tokio::time::Sleep>>>,
}

impl Body for CutBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        let Some(wait) = self.wait.as_mut() else {
            self.wait = Some(Box::pin(tokio::time::sleep(
                std::time::Duration::from_millis(100),
            )));
            return Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(DRIP_LINE)))));
        };
        std::task::ready!(wait.as_mut().poll(cx));
        Poll::Ready(Some(Err("the fake region breaks this body off".into())))
    }
}

/// A `/late-end` body: one [`DRIP_LINE`] of declared length that never says it has ended, so
/// an HTTP/2 server sends the stream's end in a frame of its own after the data (as many
/// servers do).
#[derive(Default)]
pub struct LateEndBody {
    sent: bool,
}

impl Body for LateEndBody {
    type Data = Bytes;
    type Error = BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        _cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, BoxError>>> {
        if self.sent {
            return Poll::Ready(None);
        }
        self.sent = true;
        Poll::Ready(Some(Ok(Frame::data(Bytes::from_static(DRIP_LINE)))))
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::with_exact(if self.sent { 0 } else { DRIP_LINE.len() as u64 })
    }
}
