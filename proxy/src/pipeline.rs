//! One request: decide -> select -> attempts -> respond.
//!
//! Read top to bottom: the policy decides, the router orders the regions, the attempt loop
//! walks that order under `per_try_timeout`, `request_timeout`, `max_attempts` and the retry
//! budget, and the answer is either a region's response or one the sidecar makes itself.
//! One attempt under its timer is `pipeline/attempt.rs`; what goes back to the client is
//! `pipeline/answer.rs`.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::time::Duration;

use http::header::{self, HeaderMap};
use http::{Method, Request, Response, StatusCode};
use hyper::body::Incoming;
use tokio::time::Instant;
use tracing::Instrument;

use crate::body::ProxyBody;
use crate::degraded;
use crate::error::FailureKind;
use crate::headers::{self, IDEMPOTENCY_KEY};
use crate::policy::{Decision, RequestHead};
use crate::request_body::RequestPayload;
use crate::retry::may_retry;
use crate::router;
use crate::service::Service;
use crate::telemetry::traces;
use crate::write_gate;

mod answer;
mod attempt;
mod unanswered;

use answer::{answered, closing, unavailable, unforwarded};
use attempt::{Attempt, AttemptClock, send_attempt};
use unanswered::Unanswered;

/// What the listener knows about the client connection.
#[derive(Debug, Clone)]
pub struct ConnInfo {
    pub remote: SocketAddr,
    pub tls: bool,
    /// The client's address as the `X-Forwarded-For` entry, formatted once per connection
    /// rather than per request (cloning it is a reference-count increment).
    pub forwarded_for: http::HeaderValue,
}

impl ConnInfo {
    pub fn new(remote: SocketAddr, tls: bool) -> Self {
        let forwarded_for = http::HeaderValue::try_from(remote.ip().to_string())
            .unwrap_or_else(|_| http::HeaderValue::from_static("unknown"));
        ConnInfo {
            remote,
            tls,
            forwarded_for,
        }
    }
}

/// How the client's request headers become a region's: hop-by-hop headers out,
/// `X-Forwarded-*` in, the region's `Host`.
struct Forwarding {
    original_host: Option<http::HeaderValue>,
    client: http::HeaderValue,
    proto: &'static str,
    upgrade: bool,
}

impl Forwarding {
    /// The headers of one attempt: built from the client's on every attempt, so the common
    /// single attempt copies the header map once (the client's map stays intact for plugins
    /// and the stale cache).
    fn headers(&self, incoming: &HeaderMap, host: &http::HeaderValue) -> HeaderMap {
        let mut out = incoming.clone();
        headers::strip_hop_by_hop(&mut out, self.upgrade);
        headers::add_forwarded(
            &mut out,
            self.original_host.clone(),
            self.client.clone(),
            self.proto,
        );
        out.insert(header::HOST, host.clone());
        out
    }
}

/// The outcome of the attempt loop. One per request, on the stack: boxing the response to
/// shrink the other variants would cost an allocation per request.
#[allow(clippy::large_enum_variant)]
enum Outcome {
    /// A region answered (possibly with a 5xx that could not be retried).
    Answered {
        region: usize,
        resp: Response<ProxyBody>,
    },
    /// No region answered.
    Failed { last: Option<FailureKind> },
    /// The client did not finish sending its body before the request deadline.
    ClientTooSlow,
    /// The client's streamed body broke off: it went away mid-upload.
    ClientGone,
}

/// Marks the answer to a request no region could serve (see `observe`).
#[derive(Clone, Copy)]
struct NoRegionServed;

/// Serves one request inside its server span, and counts it.
///
/// `handle` and `respond` are plain functions returning an `async move` block rather than
/// `async fn`s: an `async fn` keeps each argument twice in its future (as an argument and as
/// the local it is moved into), and the request's future is moved whole several times on its
/// way into hyper, so every byte in it is copied several times per request.
pub fn handle(
    svc: Arc<Service>,
    req: Request<Incoming>,
    conn: ConnInfo,
) -> impl Future<Output = Result<Response<ProxyBody>, Infallible>> + Send + 'static {
    let started = Instant::now();
    let span = traces::server_span(&traces::Incoming {
        service: &svc.config.name,
        method: req.method(),
        uri: req.uri(),
        version: req.version(),
        headers: req.headers(),
        tls: conn.tls,
        client: conn.remote.ip(),
    });
    let head_request = req.method() == Method::HEAD;
    async move {
        let mut unanswered = Unanswered::new(&svc, &span, started);
        let mut resp = respond(svc.clone(), req, conn, started, &unanswered)
            .instrument(span.clone())
            .await;
        unanswered.answered();
        // Two comparisons first: the header lookup only for HEAD and the no-content statuses.
        if (head_request || degraded::has_no_content(resp.status()))
            && resp.headers().contains_key(headers::X_SWITCHYARD_DEGRADED)
        {
            degraded::fit_to_request(&mut resp, head_request);
        }
        observe(&svc, &span, &resp, started.elapsed());
        Ok(resp)
    }
}

/// Metrics and span attributes of a response, read off the headers the sidecar stamps on
/// every response (`x-switchyard-region`, `x-switchyard-degraded`, ...).
fn observe(svc: &Service, span: &tracing::Span, resp: &Response<ProxyBody>, elapsed: Duration) {
    let headers = resp.headers();
    let region = headers
        .get(headers::X_SWITCHYARD_REGION)
        .and_then(|v| v.to_str().ok())
        .and_then(|name| svc.metrics.region_index(name));
    svc.metrics.request(region, resp.status().as_u16(), elapsed);
    // Answers the sidecar made itself: each one made because no region could serve, whatever
    // its status (a degraded answer may be configured as a 429, a plugin's as a 404), and the
    // others except client errors (a malformed request, a plugin's 403), which say nothing
    // about the regions.
    if headers.contains_key(headers::X_SWITCHYARD_DEGRADED)
        && (!resp.status().is_client_error() || resp.extensions().get::<NoRegionServed>().is_some())
    {
        svc.metrics.degraded();
    }
    traces::record_response(span, resp.status(), headers);
}

fn respond<'a>(
    svc: Arc<Service>,
    mut req: Request<Incoming>,
    conn: ConnInfo,
    started: Instant,
    unanswered: &'a Unanswered<'a>,
) -> impl Future<Output = Response<ProxyBody>> + Send + 'a {
    let client_upgrade = headers::is_upgrade(req.headers()).then(|| hyper::upgrade::on(&mut req));
    let (parts, body) = req.into_parts();
    async move {
        let deadline = started + svc.config.request_timeout;
        // The one lookup of `Host` per request: validated here, used for the plugin's authority
        // and `X-Forwarded-Host` below.
        let host = match headers::single_host(parts.version, &parts.headers) {
            Ok(host) => host.cloned(),
            Err(reason) => {
                let resp = degraded::error_response(StatusCode::BAD_REQUEST, reason, 0);
                return Box::pin(unforwarded(body, parts.version, deadline, resp)).await;
            }
        };
        // A tunnel to wherever the client names is not forwarding to a region.
        if parts.method == Method::CONNECT {
            let resp = degraded::error_response(
                StatusCode::METHOD_NOT_ALLOWED,
                "connect-not-supported",
                0,
            );
            return Box::pin(unforwarded(body, parts.version, deadline, resp)).await;
        }
        let path = parts.uri.path_and_query().map_or("/", |pq| pq.as_str());
        let authority = parts
            .uri
            .authority()
            .map(|a| a.as_str())
            .or_else(|| host.as_ref().and_then(|h| h.to_str().ok()));
        let head = RequestHead {
            id: crate::policy::next_request_id(),
            method: &parts.method,
            path,
            headers: &parts.headers,
            authority,
        };

        // Writes wait here while the write region moves, so they route by the new snapshot.
        let _write = if write_gate::is_write(&parts.method) {
            match svc.writes.enter(deadline).await {
                Some(guard) => Some(guard),
                None => {
                    let resp =
                        degraded::degraded_response(&svc.config.degraded, "write-region-moving", 0);
                    return Box::pin(unforwarded(body, parts.version, deadline, resp)).await;
                }
            }
        } else {
            None
        };
        let snapshot = svc.health.snapshot_full();
        let decision = match svc.policy.on_request(&head, &snapshot) {
            Ok(d) => d,
            Err(refused) => {
                // The fault itself was logged (rate-limited) and counted where it happened.
                tracing::debug!(service = %svc.config.name, plugin = %refused.plugin, "plugin failed closed");
                let resp = degraded::error_response(StatusCode::SERVICE_UNAVAILABLE, "plugin", 0);
                return Box::pin(unforwarded(body, parts.version, deadline, resp)).await;
            }
        };
        traces::decision_event(&decision);
        if let Decision::Local(local) = &decision {
            let resp = degraded::local_response(local, 0);
            return Box::pin(unforwarded(body, parts.version, deadline, resp)).await;
        }
        let order = router::select(&decision, &snapshot);
        svc.budget.deposit();

        let payload =
            match RequestPayload::prepare(body, svc.config.retry.buffer_body_limit, deadline).await
            {
                Ok(p) => p,
                // The body was not read to its end: the connection cannot go on.
                Err((status, reason)) => {
                    return closing(degraded::error_response(status, reason, 0), parts.version);
                }
            };

        let fwd = Forwarding {
            // The target's authority, when it has one (h2's `:authority`, an absolute-form
            // target), is the host meant: RFC 9112 section 3.2.2 has it override `Host`.
            original_host: (parts.uri.authority())
                .and_then(|a| a.as_str().parse().ok())
                .or_else(|| host.clone()),
            client: conn.forwarded_for,
            proto: if conn.tls { "https" } else { "http" },
            upgrade: client_upgrade.is_some(),
        };

        let upload = payload.upload_handle();
        let outcome = attempt_loop(&svc, &parts, &fwd, &order, payload, deadline, unanswered).await;
        let attempts = unanswered.attempts();

        let own_answer = match outcome {
            Outcome::Answered { region, resp } => {
                return answered(&svc, &head, region, resp, attempts, client_upgrade, upload);
            }
            Outcome::Failed { last } => {
                let mut resp = unavailable(&svc, &head, last, attempts);
                resp.extensions_mut().insert(NoRegionServed);
                resp
            }
            Outcome::ClientTooSlow => degraded::error_response(
                StatusCode::REQUEST_TIMEOUT,
                "request-body-timeout",
                attempts,
            ),
            // As nginx answers a client that closes mid-body; it is rarely there to read it.
            Outcome::ClientGone => degraded::error_response(
                StatusCode::BAD_REQUEST,
                "request-body-incomplete",
                attempts,
            ),
        };
        // A streamed body (over `buffer_body_limit`) not read to its end: hyper closes the
        // connection rather than read the rest, so the answer says so (see `unforwarded`).
        if upload.is_some_and(|u| u.finished_at().is_none()) {
            closing(own_answer, parts.version)
        } else {
            own_answer
        }
    }
}

async fn attempt_loop(
    svc: &Service,
    parts: &http::request::Parts,
    fwd: &Forwarding,
    order: &[usize],
    mut payload: RequestPayload,
    deadline: Instant,
    unanswered: &Unanswered<'_>,
) -> Outcome {
    let retry = &svc.config.retry;
    let has_key = parts.headers.contains_key(IDEMPOTENCY_KEY);
    // Regions this request found unreachable: a retry never goes back to them.
    let mut dead = vec![false; svc.upstreams.len()];
    let mut pos = 0usize;
    let mut last = None;
    loop {
        let Some(&region) = order.get(pos) else {
            return Outcome::Failed { last };
        };
        let Some(body) = payload.next_body() else {
            return Outcome::Failed { last };
        };
        let upstream = &svc.upstreams[region];
        let now = Instant::now();
        if now >= deadline {
            return Outcome::Failed {
                last: Some(FailureKind::Timeout),
            };
        }
        let attempts = unanswered.attempt_at(region);
        let Ok(uri) = upstream.uri(parts.uri.path_and_query()) else {
            return Outcome::Failed { last };
        };
        // Boxed for the levels below (see `Pool::send`).
        let mut request = Box::new(Request::new(body));
        *request.uri_mut() = uri;
        *request.method_mut() = parts.method.clone();
        *request.headers_mut() = fwd.headers(&parts.headers, upstream.host_header());

        // One clock read per attempt: the per-try deadline derives from the `now` above.
        let clock = AttemptClock {
            started: now,
            per_try: retry.per_try_timeout,
            deadline,
            upload: payload.upload(),
        };
        let sent = send_attempt(svc, region, attempts, request, clock).await;
        let failure = match sent {
            Attempt::Done(Ok(resp)) if resp.status().is_server_error() => {
                let status = resp.status().as_u16();
                svc.health.report_failure(region);
                let kind = FailureKind::Status(status);
                if !should_retry(svc, &parts.method, has_key, kind, attempts, &payload) {
                    return Outcome::Answered { region, resp };
                }
                kind
            }
            Attempt::Done(Ok(resp)) => {
                // The failure streak is cleared when the body is complete (see `respond`).
                svc.health.report_latency(region, now.elapsed());
                return Outcome::Answered { region, resp };
            }
            Attempt::Done(Err(mut err)) => {
                tracing::debug!(service = %svc.config.name, "attempt {attempts} failed: {err}");
                // A refused stream (or one above a graceful GOAWAY's last stream) is the region
                // saying "not on this connection": not an outage, so not an outlier failure.
                if err.kind != FailureKind::RefusedStream {
                    svc.health.report_failure(region);
                }
                if let Some(body) = err.unsent_body.take() {
                    payload.give_back(body);
                }
                err.kind
            }
            Attempt::TimedOut => {
                tracing::debug!(service = %svc.config.name, region = %upstream.name,
                    "attempt {attempts} timed out after {:?}", retry.per_try_timeout);
                svc.health.report_failure(region);
                FailureKind::Timeout
            }
            Attempt::ClientTooSlow => return Outcome::ClientTooSlow,
            // Not the region's failure: nothing reported against it, nothing to resend.
            Attempt::ClientGone => return Outcome::ClientGone,
        };
        last = Some(failure);
        if !matches!(failure, FailureKind::Status(_)) {
            // Unreachable or unresponsive: never again for this request. After a reset the
            // region may be tried again when it is the only one left (a connection it closed
            // while idle is not an outage).
            if matches!(failure, FailureKind::Connect | FailureKind::Timeout) {
                dead[region] = true;
            }
            if !should_retry(svc, &parts.method, has_key, failure, attempts, &payload) {
                return Outcome::Failed { last };
            }
        }
        match next_position(order, pos, &dead, failure.is_region_level()) {
            Some(next) => {
                if order[next] != region {
                    let to = &svc.upstreams[order[next]].name;
                    traces::failover_event(&upstream.name, to, failure);
                }
                pos = next;
            }
            None => return Outcome::Failed { last },
        }
    }
}

/// Whether attempt number `attempts` may be followed by another. Takes from the budget last,
/// so only a retry that will really happen spends it.
fn should_retry(
    svc: &Service,
    method: &Method,
    has_key: bool,
    kind: FailureKind,
    attempts: u32,
    payload: &RequestPayload,
) -> bool {
    attempts < svc.config.retry.max_attempts
        && payload.can_resend()
        && may_retry(method, has_key, kind, &svc.config.retry.retry_on)
        && svc.budget.try_withdraw()
}

/// The next region to try: the following one in order for a region-level failure (wrapping
/// around), the same one otherwise; never a region this request found dead.
fn next_position(order: &[usize], pos: usize, dead: &[bool], move_on: bool) -> Option<usize> {
    let start = if move_on { 1 } else { 0 };
    (start..order.len() + start)
        .map(|step| (pos + step) % order.len())
        .find(|&p| !dead[order[p]])
}

#[cfg(test)]
mod tests {
    use super::next_position;

    #[test]
    fn region_level_failures_move_on_and_skip_dead_regions() {
        let order = [0, 1, 2];
        assert_eq!(
            next_position(&order, 0, &[true, false, false], true),
            Some(1)
        );
        assert_eq!(
            next_position(&order, 2, &[false, false, false], true),
            Some(0)
        );
        assert_eq!(
            next_position(&order, 1, &[true, false, true], true),
            Some(1)
        );
        assert_eq!(next_position(&order, 1, &[true, true, true], true), None);
        assert_eq!(
            next_position(&order, 1, &[false, false, false], false),
            Some(1)
        );
    }
}
