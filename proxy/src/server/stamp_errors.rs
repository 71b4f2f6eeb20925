//! hyper answers an HTTP/1.1 request it cannot parse by itself (400 for a malformed head,
//! 414 for a URI too long, 431 for a head too large), before the request reaches the
//! pipeline. Such an answer lacked what the product contract promises of every response
//! (`x-switchyard-region`, `x-switchyard-attempts`, and `x-switchyard-degraded` on one the
//! sidecar made) and was in no metric. [`StampErrors`] wraps a client connection and adds
//! the headers to such an answer on its way out, and counts it.
//!
//! It recognises hyper's answer by its exact form: one write of a head alone, with one of
//! those status lines and hyper's three headers (`connection: close`, `content-length: 0`,
//! `date`), which no answer of the pipeline has (they all carry `x-switchyard-region`) and a
//! piece of a response body is all but certain not to be. The check is a prefix comparison
//! per write. After a `101 Switching Protocols` it steps aside: what follows is another
//! protocol.

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll};

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};

/// The status lines hyper writes itself, with the `x-switchyard-error` reason for each.
const HYPER_ANSWERS: [(&[u8], u16, &str); 3] = [
    (b"HTTP/1.1 400 ", 400, "malformed-request"),
    (b"HTTP/1.1 414 ", 414, "uri-too-long"),
    (b"HTTP/1.1 431 ", 431, "request-head-too-large"),
];

const SWITCHING_PROTOCOLS: &[u8] = b"HTTP/1.1 101 ";

/// Counts an answer hyper made (its status code).
pub type OnStamp = Box<dyn Fn(u16) + Send + Sync>;

pub struct StampErrors<S> {
    inner: S,
    /// An answer going out with the headers added.
    rewrite: Option<Rewrite>,
    /// Off after an upgrade: the bytes are no longer HTTP/1.1.
    active: bool,
    on_stamp: OnStamp,
}

struct Rewrite {
    bytes: Vec<u8>,
    sent: usize,
    /// How many of hyper's bytes the rewrite stands for: reported written once all went out.
    consumed: usize,
}

impl<S> StampErrors<S> {
    pub fn new(inner: S, on_stamp: OnStamp) -> Self {
        StampErrors {
            inner,
            rewrite: None,
            active: true,
            on_stamp,
        }
    }

    /// Starts a rewrite when `write` (all hyper writes at once) is one of its own answers.
    fn inspect(&mut self, write: &[u8]) {
        if write.starts_with(SWITCHING_PROTOCOLS) {
            self.active = false;
            return;
        }
        let Some((status, reason, line_end)) = hyper_answer(write) else {
            return;
        };
        let stamp = format!(
            "x-switchyard-error: {reason}\r\nx-switchyard-degraded: 1\r\n\
             x-switchyard-region: none\r\nx-switchyard-attempts: 0\r\n"
        );
        let mut bytes = Vec::with_capacity(write.len() + stamp.len());
        bytes.extend_from_slice(&write[..line_end]);
        bytes.extend_from_slice(stamp.as_bytes());
        bytes.extend_from_slice(&write[line_end..]);
        (self.on_stamp)(status);
        self.rewrite = Some(Rewrite {
            bytes,
            sent: 0,
            consumed: write.len(),
        });
    }
}

/// hyper's headers on its own answers, up to the date's value (29 bytes, IMF-fixdate).
const HYPER_HEADERS: &[u8] = b"connection: close\r\ncontent-length: 0\r\ndate: ";
const DATE_LEN: usize = 29;

/// Status, reason and the end of the status line (after its CRLF) when `write` is exactly
/// an answer hyper makes itself.
fn hyper_answer(write: &[u8]) -> Option<(u16, &'static str, usize)> {
    let &(_, status, reason) = HYPER_ANSWERS.iter().find(|(l, ..)| write.starts_with(l))?;
    let line_end = write.windows(2).position(|w| w == b"\r\n")? + 2;
    let rest = &write[line_end..];
    let exact = rest.len() == HYPER_HEADERS.len() + DATE_LEN + 4
        && rest.starts_with(HYPER_HEADERS)
        && rest.ends_with(b"\r\n\r\n");
    exact.then_some((status, reason, line_end))
}

impl<S: AsyncWrite + Unpin> StampErrors<S> {
    /// Writes the rest of the rewrite; done when all of it went out.
    fn poll_rewrite(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<usize>> {
        loop {
            let Some(rewrite) = self.rewrite.as_mut() else {
                return Poll::Ready(Ok(0));
            };
            match Pin::new(&mut self.inner).poll_write(cx, &rewrite.bytes[rewrite.sent..]) {
                Poll::Ready(Ok(0)) => {
                    self.rewrite = None;
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    rewrite.sent += n;
                    if rewrite.sent == rewrite.bytes.len() {
                        let consumed = rewrite.consumed;
                        self.rewrite = None;
                        return Poll::Ready(Ok(consumed));
                    }
                }
                Poll::Ready(Err(e)) => {
                    self.rewrite = None;
                    return Poll::Ready(Err(e));
                }
                // hyper calls again with the same bytes, which the rewrite stands for.
                Poll::Pending => return Poll::Pending,
            }
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for StampErrors<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for StampErrors<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        if this.rewrite.is_none() && this.active && buf.starts_with(b"HTTP/1.1 ") {
            this.inspect(buf);
        }
        if this.rewrite.is_some() {
            return this.poll_rewrite(cx);
        }
        Pin::new(&mut this.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = &mut *self;
        // hyper's answer has no body: its head is the only bytes of the write. Anything else
        // (a head with its body, the usual response) is not looked at further.
        if this.rewrite.is_none() && this.active {
            let mut filled = bufs.iter().filter(|b| !b.is_empty());
            if let (Some(only), None) = (filled.next(), filled.next())
                && only.starts_with(b"HTTP/1.1 ")
            {
                this.inspect(only);
            }
        }
        if this.rewrite.is_some() {
            return this.poll_rewrite(cx);
        }
        Pin::new(&mut this.inner).poll_write_vectored(cx, bufs)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_flush(cx)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        Pin::new(&mut self.inner).poll_shutdown(cx)
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicU16, Ordering};

    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    use super::*;

    fn stamped(
        inner: tokio::io::DuplexStream,
    ) -> (StampErrors<tokio::io::DuplexStream>, Arc<AtomicU16>) {
        let seen = Arc::new(AtomicU16::new(0));
        let counter = seen.clone();
        let on_stamp: OnStamp = Box::new(move |status| counter.store(status, Ordering::SeqCst));
        (StampErrors::new(inner, on_stamp), seen)
    }

    async fn through(capacity: usize, writes: &[&[u8]]) -> (String, u16) {
        let (client, server) = tokio::io::duplex(capacity);
        let (mut conn, seen) = stamped(server);
        let mut client = client;
        let reader = tokio::spawn(async move {
            let mut out = Vec::new();
            client.read_to_end(&mut out).await.expect("read");
            out
        });
        for bytes in writes {
            conn.write_all(bytes).await.expect("write");
        }
        conn.shutdown().await.expect("shutdown");
        drop(conn);
        let out = reader.await.expect("reader");
        (
            String::from_utf8(out).expect("text"),
            seen.load(Ordering::SeqCst),
        )
    }

    #[tokio::test]
    async fn hypers_own_answer_gets_the_contract_headers_and_is_counted() {
        let answer: &[u8] =
            b"HTTP/1.1 400 Bad Request\r\nconnection: close\r\ncontent-length: 0\r\n\
            date: Sun, 29 Nov 2026 06:38:16 GMT\r\n\r\n";
        // A tiny pipe: the rewrite goes out in pieces, across pending writes.
        let (out, status) = through(7, &[answer]).await;
        assert_eq!(
            out,
            "HTTP/1.1 400 Bad Request\r\nx-switchyard-error: malformed-request\r\n\
             x-switchyard-degraded: 1\r\nx-switchyard-region: none\r\n\
             x-switchyard-attempts: 0\r\nconnection: close\r\ncontent-length: 0\r\n\
             date: Sun, 29 Nov 2026 06:38:16 GMT\r\n\r\n"
        );
        assert_eq!(status, 400);
    }

    #[tokio::test]
    async fn the_pipelines_answers_and_bodies_pass_untouched() {
        let ours: &[u8] = b"HTTP/1.1 400 Bad Request\r\nx-switchyard-region: none\r\n\
            connection: close\r\ncontent-length: 0\r\ndate: Sun, 29 Nov 2026 06:38:16 GMT\r\n\r\n";
        let region: &[u8] = b"HTTP/1.1 200 OK\r\ncontent-length: 14\r\n\r\n";
        // A body that looks like the start of hyper's answer, but is not all of one.
        let body: &[u8] = b"HTTP/1.1 400 \r\n";
        let (out, status) = through(1024, &[ours, region, body]).await;
        assert_eq!(out.as_bytes(), [ours, region, body].concat());
        assert_eq!(status, 0, "nothing counted");
    }

    #[tokio::test]
    async fn a_vectored_write_is_looked_at_only_when_it_is_a_head_alone() {
        let answer: &[u8] =
            b"HTTP/1.1 431 Request Header Fields Too Large\r\nconnection: close\r\n\
            content-length: 0\r\ndate: Sun, 29 Nov 2026 06:38:16 GMT\r\n\r\n";
        let (client, server) = tokio::io::duplex(4096);
        let (mut conn, seen) = stamped(server);
        let written = conn
            .write_vectored(&[io::IoSlice::new(b""), io::IoSlice::new(answer)])
            .await
            .expect("write");
        assert_eq!(written, answer.len(), "hyper's bytes, all taken");
        assert_eq!(seen.load(Ordering::SeqCst), 431);
        // The same bytes with a body after them: a response of the pipeline's, left alone.
        let with_body = [io::IoSlice::new(answer), io::IoSlice::new(b"body")];
        let written = conn.write_vectored(&with_body).await.expect("write");
        assert!(written <= answer.len() + 4);
        drop(conn);
        let mut out = Vec::new();
        let mut client = client;
        client.read_to_end(&mut out).await.expect("read");
        let out = String::from_utf8(out).expect("text");
        assert_eq!(
            out.matches("x-switchyard-error: request-head-too-large")
                .count(),
            1
        );
    }

    #[tokio::test]
    async fn after_an_upgrade_nothing_is_touched() {
        let switch: &[u8] = b"HTTP/1.1 101 Switching Protocols\r\nupgrade: x\r\n\r\n";
        let tunneled: &[u8] = b"HTTP/1.1 431 inside the tunnel\r\n\r\n";
        let (out, status) = through(1024, &[switch, tunneled]).await;
        assert_eq!(out.as_bytes(), [switch, tunneled].concat());
        assert_eq!(status, 0);
    }
}
