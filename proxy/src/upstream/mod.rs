//! One connection pool per region (`pool`: HTTP/1.1, HTTP/2 by ALPN, shared openings;
//! `region_body`: a response body and the connection it holds; `connect`: TCP and TLS via
//! rustls), with the drill switchboard's faults applied at the point where a real outage would
//! show.

pub mod connect;
mod dial;
pub mod fault;
mod h2_conns;
mod keep_alive;
pub mod pool;
mod region_body;
pub mod tls;

use std::error::Error as StdError;
use std::sync::Arc;
use std::time::Duration;

use arc_swap::ArcSwapOption;
use http::uri::PathAndQuery;
use http::{HeaderValue, Request, Response, Uri};

use crate::body::ProxyBody;
use crate::config::RegionConfig;
use crate::error::{Error, FailureKind};
use crate::telemetry::log_limit::LogLimit;
use connect::Connector;
use fault::{Fault, FaultCounter, FaultEffect};
use pool::{Pool, SendError};
pub use region_body::RegionBody;
pub use tls::TlsError;

/// The most by which opening a connection must beat the attempt's own timer.
const CONNECT_MARGIN: Duration = Duration::from_millis(50);
/// The least, where `per_try_timeout` allows: two timer ticks (tokio's are 1 ms), so the two
/// deadlines never fall in the same tick.
const CONNECT_MARGIN_MIN: Duration = Duration::from_millis(2);

/// How long opening a connection may take in an attempt of `per_try_timeout`: a little less
/// (a tenth of it, 2 to 50 ms, at most half).
/// A connection still being opened when the attempt's timer fires never carried the request,
/// so its failure must be a connect failure, which a write may retry on the next region, not
/// a timeout, which it may not (the request might have been processed). With one deadline
/// for both, which of the two timers fires first would be luck.
fn connect_deadline(per_try_timeout: Duration) -> Duration {
    let margin = (per_try_timeout / 10)
        .clamp(CONNECT_MARGIN_MIN, CONNECT_MARGIN)
        .min(per_try_timeout / 2);
    per_try_timeout - margin
}

/// A region's connection pool and its address.
pub struct Upstream {
    pub name: Arc<str>,
    /// The service the region belongs to, for log lines.
    service: Arc<str>,
    pool: Arc<Pool>,
    base_path: String,
    host_header: HeaderValue,
    fault: ArcSwapOption<Fault>,
    fault_counter: FaultCounter,
    tls_warning: LogLimit,
}

impl Upstream {
    /// Prepares the pool; reads TLS files, so it runs at load time, never per request.
    pub fn new(
        service: &str,
        region: &RegionConfig,
        per_try_timeout: Duration,
    ) -> Result<Self, TlsError> {
        let connector = Connector::new(region, connect_deadline(per_try_timeout))?;
        let host_header = HeaderValue::from_str(region.authority.as_str())
            .map_err(|e| TlsError::Rustls(rustls::Error::General(format!("authority: {e}"))))?;
        Ok(Upstream {
            name: region.name.as_str().into(),
            service: service.into(),
            pool: Pool::new(connector),
            base_path: region.base_path.clone(),
            host_header,
            fault: ArcSwapOption::empty(),
            fault_counter: FaultCounter::default(),
            tls_warning: LogLimit::every(10),
        })
    }

    /// The request target for a path at this region, in origin form (`/base/path?query`):
    /// only the configured scheme and authority are ever contacted, whatever the client sent
    /// (the sidecar is never an open proxy).
    pub fn uri(&self, path_and_query: Option<&PathAndQuery>) -> Result<Uri, http::Error> {
        let pq = path_and_query.map_or("/", |pq| pq.as_str());
        if self.base_path.is_empty() {
            match path_and_query {
                Some(pq) => Ok(Uri::from(pq.clone())),
                None => Ok(Uri::from_static("/")),
            }
        } else {
            Ok(Uri::try_from(format!("{}{}", self.base_path, pq))?)
        }
    }

    /// The `Host` header value for this region.
    pub fn host_header(&self) -> &HeaderValue {
        &self.host_header
    }

    pub fn set_fault(&self, fault: Option<Fault>) {
        self.fault.store(fault.map(Arc::new));
    }

    pub fn fault(&self) -> Option<Arc<Fault>> {
        self.fault.load_full()
    }

    /// Sends one attempt and waits for the response head.
    pub async fn send(&self, req: Box<Request<ProxyBody>>) -> Result<Response<ProxyBody>, Error> {
        if let Some(fault) = self.fault.load().as_deref() {
            match fault.effect(&self.fault_counter) {
                FaultEffect::None => {}
                FaultEffect::Refuse => {
                    let refused = Error::new(
                        FailureKind::Connect,
                        &self.name,
                        "connection refused (drill fault: down)",
                    );
                    return Err(refused.with_unsent_body(req.into_body()));
                }
                FaultEffect::Respond(status) => {
                    let mut resp = Response::new(ProxyBody::Empty);
                    *resp.status_mut() = status;
                    return Ok(resp);
                }
                FaultEffect::Delay(d) => tokio::time::sleep(d).await,
            }
        }
        let failed = match self.pool.send(req).await {
            Ok(resp) => return Ok(resp),
            Err(failed) => failed,
        };
        let (kind, chain, tls, unsent) = match failed {
            SendError::Connect(e, req) => {
                let tls = is_tls_failure(&e);
                (FailureKind::Connect, error_chain(&e), tls, Some(req))
            }
            SendError::Unsent(e, req) => (FailureKind::Connect, error_chain(&e), false, Some(req)),
            SendError::Request(e) => (classify(&e), error_chain(&e), false, None),
        };
        let detail = if tls { tls_hint(chain) } else { chain };
        let mut error = Error::new(kind, &self.name, detail);
        if let Some(req) = unsent {
            error = error.with_unsent_body(req.into_body());
        }
        if tls && let Some(held_back) = self.tls_warning.check() {
            // A certificate problem is a configuration problem: say so loudly, once in a
            // while, not once per request.
            tracing::warn!(
                service = %self.service,
                region = %self.name,
                held_back,
                "TLS to region failed: {}",
                error.detail
            );
        }
        Err(error)
    }
}

/// Decides from the error chain whether the request may have reached the region.
fn classify(err: &hyper::Error) -> FailureKind {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    let mut kind = FailureKind::Other;
    while let Some(e) = current {
        if let Some(h2) = e.downcast_ref::<h2::Error>() {
            if h2.reason() == Some(h2::Reason::REFUSED_STREAM) {
                return FailureKind::RefusedStream;
            }
            // A graceful GOAWAY (NO_ERROR) from the region fails only the streams above its
            // last-stream-id, which it never processed (RFC 9113 §6.8): as safe to resend as
            // a refused stream, writes included. (A GOAWAY with an error code may also fail
            // streams it did process, so that stays a reset.)
            if h2.is_go_away() && h2.is_remote() && h2.reason() == Some(h2::Reason::NO_ERROR) {
                return FailureKind::RefusedStream;
            }
            if h2.is_io() || h2.is_go_away() || h2.is_reset() {
                kind = FailureKind::Reset;
            }
        }
        // A response that is not valid HTTP (garbage, conflicting `Content-Length`s, a head
        // over the size limit) says as much about the region as a reset does, and like a
        // reset it comes after the request may have been processed.
        if let Some(h) = e.downcast_ref::<hyper::Error>()
            && (h.is_incomplete_message() || h.is_closed() || h.is_canceled() || h.is_parse())
        {
            kind = FailureKind::Reset;
        }
        if let Some(io) = e.downcast_ref::<std::io::Error>() {
            use std::io::ErrorKind::*;
            if matches!(
                io.kind(),
                ConnectionReset | ConnectionAborted | BrokenPipe | UnexpectedEof
            ) {
                kind = FailureKind::Reset;
            }
        }
        current = e.source();
    }
    kind
}

/// True when a rustls error is somewhere in the chain. TLS errors arrive wrapped in
/// `io::Error`s (twice, through tokio-rustls and hyper-rustls), and `io::Error::source` skips
/// the wrapped error, so the walk descends with `get_ref` there.
fn is_tls_failure(err: &(dyn StdError + 'static)) -> bool {
    let mut current: Option<&(dyn StdError + 'static)> = Some(err);
    for _ in 0..16 {
        let Some(e) = current else {
            return false;
        };
        if e.is::<rustls::Error>() {
            return true;
        }
        current = match e.downcast_ref::<std::io::Error>() {
            Some(io) => io.get_ref().map(|inner| inner as &(dyn StdError + 'static)),
            None => e.source(),
        };
    }
    false
}

/// Adds what to do about TLS failures whose rustls wording does not say it.
fn tls_hint(detail: String) -> String {
    if detail.contains("CaUsedAsEndEntity") {
        return format!(
            "{detail} (the region presents a CA certificate, one marked CA:TRUE as many \
             self-signed certificates are, as its own server certificate: give the region a \
             server certificate issued by a CA that ca_file names)"
        );
    }
    detail
}

/// The error and its causes on one line, so a log reader sees e.g. the certificate problem.
pub fn error_chain(err: &dyn StdError) -> String {
    let mut text = err.to_string();
    let mut source = err.source();
    while let Some(e) = source {
        let s = e.to_string();
        if !text.contains(&s) {
            text.push_str(": ");
            text.push_str(&s);
        }
        source = e.source();
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_connection_must_be_up_before_the_attempts_timer_fires() {
        assert_eq!(
            connect_deadline(Duration::from_secs(2)),
            Duration::from_millis(1950)
        );
        assert_eq!(
            connect_deadline(Duration::from_millis(100)),
            Duration::from_millis(90)
        );
        assert_eq!(
            connect_deadline(Duration::from_millis(5)),
            Duration::from_millis(3)
        );
        assert_eq!(
            connect_deadline(Duration::from_millis(1)),
            Duration::from_micros(500)
        );
        assert_eq!(connect_deadline(Duration::ZERO), Duration::ZERO);
    }

    #[test]
    fn a_ca_certificate_served_as_the_regions_own_gets_a_hint() {
        let hinted =
            tls_hint("invalid peer certificate: Other(OtherError(CaUsedAsEndEntity))".into());
        assert!(
            hinted.contains("server certificate issued by a CA that ca_file names"),
            "{hinted}"
        );
        assert_eq!(tls_hint("connection refused".into()), "connection refused");
    }
}
