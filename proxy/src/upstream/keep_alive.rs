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
//! has relayed it to a slow client).

use std::time::Duration;

use http::HeaderMap;
use http::header::HeaderName;

static KEEP_ALIVE: HeaderName = HeaderName::from_static("keep-alive");

/// The most by which a connection stops being reused before the region's timeout: the
/// region's timer started when it sent the response, a little before the pool got the
/// connection back, and a request needs time to reach it.
const MARGIN: Duration = Duration::from_secs(1);

/// How long after the head of a response with `headers` its connection may still be
/// reused; `None` when the region named no timeout (the pool's own limit applies).
pub fn reuse_within(headers: &HeaderMap) -> Option<Duration> {
    let value = headers.get(&KEEP_ALIVE)?.to_str().ok()?;
    let timeout = value.split(',').find_map(|param| {
        let (name, seconds) = param.split_once('=')?;
        if !name.trim().eq_ignore_ascii_case("timeout") {
            return None;
        }
        seconds.trim().trim_matches('"').parse::<u64>().ok()
    })?;
    let timeout = Duration::from_secs(timeout);
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
    fn no_usable_timeout_is_none() {
        assert_eq!(reuse_within(&HeaderMap::new()), None);
        assert_eq!(hint("max=100"), None);
        assert_eq!(hint("timeout=soon"), None);
        assert_eq!(hint("timeout=-1"), None);
        assert_eq!(hint(""), None);
    }
}
