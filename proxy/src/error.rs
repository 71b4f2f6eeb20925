//! The error of one upstream attempt: what failed, and whether the request may have reached the region.
//!
//! Retry decisions (`retry::classify`) and outlier detection both read this one type, so the
//! question "did the backend possibly see this request?" is answered in exactly one place.

use std::fmt;

use crate::body::ProxyBody;

/// What went wrong with one attempt.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FailureKind {
    /// TCP connect or TLS handshake failed: the request never left.
    Connect,
    /// HTTP/2 `REFUSED_STREAM`: the server promises it did not process the request.
    RefusedStream,
    /// The connection broke after the request was (possibly) sent, or the region answered
    /// with something that is not HTTP.
    Reset,
    /// No response headers within `per_try_timeout`.
    Timeout,
    /// The region answered with a 5xx status.
    Status(u16),
    /// Anything else: the client's request body failed while being sent, ...
    Other,
}

impl FailureKind {
    /// True when the request provably never reached the backend, so even a write may be resent.
    pub fn never_reached_backend(self) -> bool {
        matches!(self, FailureKind::Connect | FailureKind::RefusedStream)
    }

    /// True when the failure says the region is unusable, not just that this request failed:
    /// the next attempt should go elsewhere.
    pub fn is_region_level(self) -> bool {
        !matches!(self, FailureKind::Other)
    }

    /// The `outcome` label used in metrics and the `error.type` span attribute.
    pub fn as_str(self) -> &'static str {
        match self {
            FailureKind::Connect => "connect-failure",
            FailureKind::RefusedStream => "refused-stream",
            FailureKind::Reset => "reset",
            FailureKind::Timeout => "timeout",
            FailureKind::Status(_) => "5xx",
            FailureKind::Other => "error",
        }
    }
}

/// A failed attempt against one region.
#[derive(Debug)]
pub struct Error {
    pub kind: FailureKind,
    /// The region the attempt went to.
    pub origin: String,
    pub detail: String,
    /// The attempt's body when the request provably never left (a connect failure, a fresh
    /// connection that closed first). A streamed body cannot be replayed, but this one was
    /// never read, so it can still go to the next region.
    pub unsent_body: Option<ProxyBody>,
}

impl Error {
    pub fn new(kind: FailureKind, origin: &str, detail: impl Into<String>) -> Self {
        Error {
            kind,
            origin: origin.to_owned(),
            detail: detail.into(),
            unsent_body: None,
        }
    }

    /// Gives back the body of a request that never left.
    pub fn with_unsent_body(mut self, body: ProxyBody) -> Self {
        self.unsent_body = Some(body);
        self
    }

    /// Whether a retry is allowed by the nature of the failure alone (method rules are applied
    /// separately in `retry::classify`).
    pub fn retryable(&self) -> bool {
        self.kind.is_region_level()
    }
}

impl fmt::Display for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "region {}: {}: {}",
            self.origin,
            self.kind.as_str(),
            self.detail
        )
    }
}

impl std::error::Error for Error {}
