//! How long a region keeps an idle HTTP/1.1 connection open, when it says so in a
//! `Keep-Alive: timeout=N` response header (Node.js sends `timeout=5` by default, Apache
//! `timeout=5, max=100`).
//!
//! A region closes an idle connection when its own timer runs out, and a request sent on it
//! at that moment crosses the region's FIN: it is lost with the connection, and a write
//! cannot be resent, since it may have arrived. The pool keeps idle connections for a
//! minute or more, so behind a region with a 5 s timeout every write that came after a
//! quiet spell of about 5 s risked a 502. A connection whose region named its timeout is
//! not reused once the timeout is near.
//!
//! Each connection keeps the timeout its own last response named: behind a load balancer
//! that passes TCP through, a region's connections lead to different servers, which may have
//! different timeouts (a rolling deploy, Node.js beside nginx), and one region-wide value
//! reused connections to the short-lived server with the other's (round 13). The timeout is
//! counted from the response's head, a lower bound of when the region's timer started (it
//! starts when the region has sent the whole response, which may be long before the sidecar
//! has relayed it to a slow client). A response that names no timeout leaves the one named
//! before on the same connection in force: Node.js leaves the header out when the app sets
//! `Connection` itself, and its timer runs all the same (round 14).

use std::time::Duration;

use http::HeaderMap;
use http::header::HeaderName;
use tokio::time::Instant;

/// A connection's keep-alive state between its responses.
#[derive(Clone, Copy, Debug)]
pub struct Reuse {
    /// The reuse window its region last named on it, in milliseconds ([`NOT_NAMED`]: none).
    window_ms: u32,
    /// Until when it may be reused after its last response.
    until: Option<Instant>,
}

const NOT_NAMED: u32 = u32::MAX;

impl Default for Reuse {
    fn default() -> Self {
        Reuse::new()
    }
}

impl Reuse {
    /// A new connection's: nothing named yet.
    pub fn new() -> Self {
        Reuse {
            window_ms: NOT_NAMED,
            until: None,
        }
    }

    /// The state after a response with `headers` (the clock is read only when a window is
    /// in force).
    pub fn after(self, headers: &HeaderMap) -> Self {
        let window_ms = match reuse_within(headers) {
            Some(window) => u32::try_from(window.as_millis()).unwrap_or(NOT_NAMED - 1),
            None => self.window_ms,
        };
        let until = (window_ms != NOT_NAMED)
            .then(|| Instant::now() + Duration::from_millis(u64::from(window_ms)));
        Reuse { window_ms, until }
    }

    /// Whether the region may have closed the connection by now (the clock is read only
    /// when a window is in force).
    pub fn expired(&self) -> bool {
        self.until.is_some_and(|at| Instant::now() >= at)
    }
}

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// The most by which a connection stops being reused before the region's timeout: the
/// region's timer started when it sent the response, a little before the pool got the
/// connection back, and a request needs time to reach it.
const MARGIN: Duration = Duration::from_secs(1);
/// Longer than the pool keeps an idle connection anyway.
const MAX_SECONDS: f64 = 3600.0;

/// How long after the head of a response with `headers` its connection may still be
/// reused; `None` when the region named no timeout (the pool's own limit applies).
pub fn reuse_within(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(&KEEP_ALIVE)?.to_str().ok()?;
    // `,` separates the parameters (RFC 2068 section 19.7.1); `;` and a fraction of a
    // second are not standard, but cost nothing to understand.
    let timeout = value.split([',', ';']).find_map(|param| {
        let (name, seconds) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("timeout") {
            return None;
        }
        let seconds = seconds.trim().trim_matches('"').parse::<f64>().ok()?;
        (seconds.is_finite() && seconds >= 0.0)
            .then(|| Duration::from_secs_f64(seconds.min(MAX_SECONDS)))
    })?;
    Some(timeout - MARGIN.min(timeout / 2))
}

#[cfg(test)]
mod tests {
    use http::HeaderValue;

    use super::*;

    fn hint(value: &str) -> Option<Duration> {
        let mut headers = HeaderMap::new();
        headers.insert(&KEEP_ALIVE, HeaderValue::from_str(value).expect("value"));
        reuse_within(&headers)
    }

    #[test]
    fn the_timeout_less_a_margin() {
        assert_eq!(hint("timeout=5"), Some(Duration::from_secs(4)));
        assert_eq!(hint("timeout=5, max=100"), Some(Duration::from_secs(4)));
        assert_eq!(hint("max=100,Timeout = 75"), Some(Duration::from_secs(74)));
        assert_eq!(hint("timeout=\"5\""), Some(Duration::from_secs(4)));
    }

    #[test]
    fn a_short_timeout_keeps_half_of_it() {
        assert_eq!(hint("timeout=1"), Some(Duration::from_millis(500)));
        assert_eq!(hint("timeout=0"), Some(Duration::ZERO));
    }

    #[test]
    fn fractions_and_semicolons_are_understood() {
        assert_eq!(hint("timeout=2.5"), Some(Duration::from_millis(1500)));
        assert_eq!(hint("timeout=2;max=5"), Some(Duration::from_secs(1)));
    }

    #[test]
    fn a_response_that_names_no_timeout_keeps_the_one_named_before() {
        let mut named = HeaderMap::new();
        named.insert(&KEEP_ALIVE, HeaderValue::from_static("timeout=5"));
        let fresh = Reuse::new();
        assert_eq!(
            fresh.after(&HeaderMap::new()).until,
            None,
            "nothing named: no window"
        );
        let first = fresh.after(&named);
        let second = first.after(&HeaderMap::new());
        let until = second.until.expect("the window named before still holds");
        assert!(until > Instant::now() + Duration::from_secs(3));
        assert!(until <= Instant::now() + Duration::from_secs(4));
        assert!(!second.expired());
    }

    #[test]
    fn no_usable_timeout_is_none() {
        assert_eq!(reuse_within(&HeaderMap::new()), None);
        assert_eq!(hint("max=100"), None);
        assert_eq!(hint("timeout=soon"), None);
        assert_eq!(hint("timeout=-1"), None);
        assert_eq!(hint(""), None);
    }
}
