//! Refuses requests that carry both `Content-Length` and `Transfer-Encoding`.
//!
//! hyper resolves such a request the way RFC 9112 section 6.1 allows (chunked wins, the
//! connection closes afterwards) and hides the conflict from the handler by dropping
//! `Content-Length`. Two framings in one request are what request smuggling is made of, so
//! Switchyard refuses them outright with 400, as the product contract says. The check peeks at
//! the first request head of a plain-text connection before hyper reads it: one `peek` per
//! connection, nothing per request. Later requests on the connection stay covered by hyper's
//! rule, which closes the connection after an ambiguous request, so nothing can be smuggled
//! behind it.

use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;
use tokio::time::Instant;

const PEEK_BYTES: usize = 16 * 1024;

/// The reply sent to an ambiguous request; the connection is closed after it.
const REFUSAL: &[u8] = b"HTTP/1.1 400 Bad Request\r\n\
content-type: text/plain\r\n\
x-switchyard-error: content-length-with-transfer-encoding\r\n\
x-switchyard-degraded: 1\r\n\
x-switchyard-region: none\r\n\
x-switchyard-attempts: 0\r\n\
connection: close\r\n\
content-length: 53\r\n\r\n\
request has both Content-Length and Transfer-Encoding";

/// True when the head in `bytes` (up to its blank line) has both framing headers.
fn ambiguous_head(bytes: &[u8]) -> bool {
    let end = bytes
        .windows(4)
        .position(|w| w == b"\r\n\r\n")
        .unwrap_or(bytes.len());
    let (mut cl, mut te) = (false, false);
    for line in bytes[..end].split(|&b| b == b'\n').skip(1) {
        let name = line.split(|&b| b == b':').next().unwrap_or_default();
        cl |= name.eq_ignore_ascii_case(b"content-length");
        te |= name.eq_ignore_ascii_case(b"transfer-encoding");
    }
    cl && te
}

/// Peeks at the first request; when it is ambiguous, answers 400 and returns false (the
/// caller drops the connection). Also false when nothing arrives by `deadline` (the first-bytes
/// timeout) or the connection failed. Otherwise nothing is consumed.
pub async fn admit(stream: &mut TcpStream, deadline: Instant) -> bool {
    let mut buf = vec![0u8; PEEK_BYTES];
    let peeked = tokio::time::timeout_at(deadline, stream.peek(&mut buf)).await;
    let Ok(Ok(n)) = peeked else {
        return false;
    };
    if n == 0 {
        // Closed before a byte: nothing to serve.
        return false;
    }
    if !ambiguous_head(&buf[..n]) {
        return true;
    }
    let _ = stream.write_all(REFUSAL).await;
    let _ = stream.shutdown().await;
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn both_framings_are_ambiguous_in_any_case_and_order() {
        assert!(ambiguous_head(
            b"POST / HTTP/1.1\r\nHost: x\r\ncontent-length: 4\r\nTransfer-Encoding: chunked\r\n\r\n"
        ));
        assert!(ambiguous_head(
            b"POST / HTTP/1.1\r\nTRANSFER-ENCODING: chunked\r\nContent-Length: 4\r\n\r\n"
        ));
        assert!(!ambiguous_head(
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nabcd"
        ));
        assert!(!ambiguous_head(
            b"POST / HTTP/1.1\r\nContent-Length: 4\r\n\r\nTransfer-Encoding: x\r\n"
        ));
    }

    #[test]
    fn refusal_declares_its_own_body_length() {
        let text = std::str::from_utf8(REFUSAL).expect("ASCII");
        let (head, body) = text.split_once("\r\n\r\n").expect("a blank line");
        let declared: usize = head
            .lines()
            .find_map(|l| l.strip_prefix("content-length: "))
            .expect("a content-length header")
            .parse()
            .expect("a number");
        assert_eq!(declared, body.len());
    }
}
