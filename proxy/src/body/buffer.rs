//! A body read into memory: request bodies kept for retries (`request_body.rs`) and region
//! bodies kept for the stale cache (`ProxyBody::Capture`).

use bytes::{Bytes, BytesMut};

/// The most buffer set aside for a body before its bytes arrive (the default
/// `buffer_body_limit`).
const PREALLOCATE_MAX: usize = 64 * 1024;

/// A one-chunk body shorter than this is copied out of hyper's read buffer rather than kept
/// as a slice of it: the slice would pin the whole buffer (8 KiB or more) for as long as the
/// body is kept (a request's retries, a stale-cache entry). A longer one fills most of the
/// buffer anyway, and copying it costs more.
const COPY_BELOW: usize = 4 * 1024;

/// Body bytes read so far. The first chunk is kept as hyper handed it over; from the second
/// on they are copied into one buffer sized by the declared length, so the body is copied
/// once instead of into buffers that double as it comes in.
#[derive(Default)]
pub(crate) struct BodyBuffer {
    first: Bytes,
    rest: BytesMut,
    expected: usize,
}

impl BodyBuffer {
    pub(crate) fn new(declared: usize) -> Self {
        BodyBuffer {
            first: Bytes::new(),
            rest: BytesMut::new(),
            // A declared length is a claim, not bytes: a client that declares much and sends
            // little gets no more memory set aside than a default-sized body needs.
            expected: declared.min(PREALLOCATE_MAX),
        }
    }

    pub(crate) fn push(&mut self, data: Bytes) {
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

    pub(crate) fn len(&self) -> usize {
        self.first.len() + self.rest.len()
    }

    pub(crate) fn into_bytes(self) -> Bytes {
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
        let mut buf = BodyBuffer::new(60_000);
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
        let mut buf = BodyBuffer::new(1000);
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
        let mut buf = BodyBuffer::new(64 * 1024);
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
        let mut buf = BodyBuffer::new(10);
        for i in 0..5u8 {
            buf.push(Bytes::from(vec![i; 100]));
        }
        let body = buf.into_bytes();
        assert_eq!(body.len(), 500);
        assert!(body[..100].iter().all(|&b| b == 0) && body[400..].iter().all(|&b| b == 4));
    }

    #[test]
    fn a_large_declared_length_sets_aside_no_more_than_the_cap() {
        let mut buf = BodyBuffer::new(100 * 1024 * 1024);
        buf.push(Bytes::from_static(b"a"));
        buf.push(Bytes::from_static(b"b"));
        assert!(buf.rest.capacity() <= PREALLOCATE_MAX);
        assert_eq!(buf.into_bytes(), Bytes::from_static(b"ab"));
    }

    #[test]
    fn nothing_read_is_an_empty_body() {
        assert!(BodyBuffer::new(0).into_bytes().is_empty());
    }
}
