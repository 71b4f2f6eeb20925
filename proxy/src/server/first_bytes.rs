//! A deadline for a new connection's first bytes.
//!
//! hyper-util reads the first bytes of a connection to tell HTTP/1.1 from HTTP/2, and waits
//! for them without a limit; hyper's own header timeout only starts after that. So a client
//! that connects and sends nothing (or a few bytes of an HTTP/2 preface) would hold a socket
//! for ever, and enough of them exhaust the process's file descriptors. [`FirstBytes`] wraps
//! the connection and fails its reads once the deadline passes before [`ENOUGH`] bytes came.
//! After that it only forwards: idle keep-alive connections are hyper's business (its header
//! timeout runs while it waits for the next request head).

use std::io;
use std::pin::Pin;
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

/// How long a new connection may take to send its first bytes (after the TLS handshake, if
/// any). The same as the HTTP/1.1 header read timeout.
pub const FIRST_BYTES_TIMEOUT: Duration = Duration::from_secs(30);

/// Bytes after which the protocol is known: the length of the HTTP/2 connection preface.
pub const ENOUGH: usize = 24;

pub struct FirstBytes<S> {
    inner: S,
    /// Until [`ENOUGH`] bytes were read; `None` after (nothing left to watch).
    deadline: Option<Pin<Box<Sleep>>>,
    read: usize,
}

impl<S> FirstBytes<S> {
    pub fn new(inner: S, deadline: Instant) -> Self {
        FirstBytes {
            inner,
            deadline: Some(Box::pin(tokio::time::sleep_until(deadline))),
            read: 0,
        }
    }
}

impl<S: AsyncRead + Unpin> AsyncRead for FirstBytes<S> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = &mut *self;
        let Some(deadline) = this.deadline.as_mut() else {
            return Pin::new(&mut this.inner).poll_read(cx, buf);
        };
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                this.read += buf.filled().len() - before;
                if this.read >= ENOUGH || buf.filled().len() == before {
                    // Enough to go on, or end of stream: the deadline has done its job.
                    this.deadline = None;
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                ready!(deadline.as_mut().poll(cx));
                this.deadline = None;
                Poll::Ready(Err(io::Error::new(
                    io::ErrorKind::TimedOut,
                    "no request within the first-bytes timeout",
                )))
            }
        }
    }
}

impl<S: AsyncWrite + Unpin> AsyncWrite for FirstBytes<S> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write(cx, buf)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        Pin::new(&mut self.inner).poll_write_vectored(cx, bufs)
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
    use super::*;
    use tokio::io::{AsyncReadExt, AsyncWriteExt};

    #[tokio::test(start_paused = true)]
    async fn silence_past_the_deadline_fails_the_read() {
        let (client, server) = tokio::io::duplex(64);
        let mut conn = FirstBytes::new(server, Instant::now() + FIRST_BYTES_TIMEOUT);
        let mut buf = [0u8; 8];
        let err = conn.read(&mut buf).await.expect_err("timed out");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);
        drop(client);
    }

    #[tokio::test(start_paused = true)]
    async fn a_few_bytes_are_not_enough_but_a_preface_is() {
        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = FirstBytes::new(server, Instant::now() + FIRST_BYTES_TIMEOUT);
        let mut buf = [0u8; 64];
        client.write_all(b"PRI * HTTP").await.expect("write");
        assert_eq!(conn.read(&mut buf).await.expect("read"), 10);
        let err = conn
            .read(&mut buf)
            .await
            .expect_err("still within the first bytes");
        assert_eq!(err.kind(), io::ErrorKind::TimedOut);

        let (mut client, server) = tokio::io::duplex(64);
        let mut conn = FirstBytes::new(server, Instant::now() + FIRST_BYTES_TIMEOUT);
        client
            .write_all(b"GET / HTTP/1.1\r\nHost: a\r\n\r\n")
            .await
            .expect("write");
        assert_eq!(conn.read(&mut buf).await.expect("read"), 27);
        // Past the first bytes, a quiet connection is not this deadline's business.
        tokio::time::sleep(FIRST_BYTES_TIMEOUT * 2).await;
        client.write_all(b"x").await.expect("write");
        assert_eq!(conn.read(&mut buf).await.expect("read"), 1);
    }
}
