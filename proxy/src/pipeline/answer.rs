//! What goes back to the client: a region's answer (stale copy in place of a gateway error,
//! upgrade or stall watch, the sidecar's headers, the plugins' say, the stale cache kept up
//! to date), or, when no region could serve, the sidecar's own; and what an answer made
//! without forwarding does to the client's connection.

use std::sync::Arc;

use http::header;
use http::{Method, Response, StatusCode};
use hyper::body::Incoming;
use tokio::time::Instant;

use crate::body::ProxyBody;
use crate::body::upload::UploadProgress;
use crate::degraded;
use crate::error::FailureKind;
use crate::headers::{self, IDEMPOTENCY_KEY};
use crate::policy::{RequestHead, ResponseAction, UnavailableAction};
use crate::service::Service;
use crate::stale::StaleCache;
use crate::upgrade;

/// A region's answer on its way to the client: the stale copy in place of a gateway error,
/// the upgrade spliced or the body watched for stalls, the sidecar's headers, the plugins'
/// say, and the stale-if-error cache kept up to date.
pub(super) fn answered(
    svc: &Service,
    head: &RequestHead<'_>,
    region: usize,
    mut resp: Response<ProxyBody>,
    attempts: u32,
    client_upgrade: Option<hyper::upgrade::OnUpgrade>,
    upload: Option<Arc<UploadProgress>>,
) -> Response<ProxyBody> {
    // RFC 5861's errors: a stored copy beats the last region's 500, 502, 503 or 504.
    if is_stale_worthy_error(resp.status())
        && let Some(stale) = serve_stale(svc, head, attempts)
    {
        return stale;
    }
    let name = &svc.config.regions[region].name;
    let success = !resp.status().is_server_error();
    let watched = if resp.status() == StatusCode::SWITCHING_PROTOCOLS {
        // A switch to another protocol the client never asked for: nothing can carry it on.
        let Some(client) = client_upgrade else {
            svc.metrics.attempt(region, Some(FailureKind::Reset));
            svc.health.report_failure(region);
            return degraded::error_response(
                StatusCode::BAD_GATEWAY,
                "unexpected-switching-protocols",
                attempts,
            );
        };
        upgrade::splice(client, &mut resp, name);
        false
    } else {
        headers::clean_region_response(resp.status(), resp.headers_mut());
        // 204 and 304 have no body (RFC 9110 sections 15.3.5 and 15.4.5), nor has an answer
        // to HEAD. hyper's HTTP/1.1 client drops one a region sends anyway; over h2 its DATA
        // would reach the client, whose h2 stack rejects the stream, and a HEAD answer with
        // a `content-length` would wait for bytes that never come before it counted as
        // complete (round 11).
        if (head.method == Method::HEAD
            || matches!(
                resp.status(),
                StatusCode::NO_CONTENT | StatusCode::NOT_MODIFIED
            ))
            && !http_body::Body::is_end_stream(resp.body())
        {
            *resp.body_mut() = ProxyBody::Empty;
        }
        resp.body_mut()
            .watch_stalls(&svc.stalls[region], success, upload)
    };
    // A watched body counts its attempt and clears the region's failure streak when it ends.
    if success && !watched {
        svc.metrics.attempt(region, None);
        svc.health.clear_failures(region);
    }
    // RFC 9111 4.4: a write the region accepted makes the stored copy of its path outdated.
    if let Some(cache) = &svc.stale
        && !crate::retry::classify::is_safe(head.method)
        && (resp.status().is_success() || resp.status().is_redirection())
    {
        cache.invalidate(head.path);
    }
    degraded::stamp(&mut resp, Some(name), attempts);
    if svc.policy.wants_responses() {
        resp = apply_response_action(svc, head, name, resp, attempts);
    }
    if let Some(cache) = &svc.stale {
        resp = keep_for_stale(cache, head, resp);
    }
    resp
}

/// No region could serve: a write that may have been applied is reported honestly; anything
/// else gets the service's degraded answer (or the plugin's).
pub(super) fn unavailable(
    svc: &Service,
    head: &RequestHead<'_>,
    last: Option<FailureKind>,
    attempts: u32,
) -> Response<ProxyBody> {
    let idempotent = crate::retry::classify::is_idempotent(head.method)
        || head.headers.contains_key(IDEMPOTENCY_KEY);
    match last {
        Some(kind) if !idempotent && !kind.never_reached_backend() => {
            let (status, reason) = if kind == FailureKind::Timeout {
                (
                    StatusCode::GATEWAY_TIMEOUT,
                    "upstream-timeout-write-not-retried",
                )
            } else {
                (StatusCode::BAD_GATEWAY, "upstream-reset-write-not-retried")
            };
            degraded::error_response(status, reason, attempts)
        }
        _ => match svc.policy.on_unavailable(head) {
            UnavailableAction::Local(local) => degraded::local_response(&local, attempts),
            UnavailableAction::Default | UnavailableAction::Stale => {
                if let Some(stale) = serve_stale(svc, head, attempts) {
                    return stale;
                }
                let reason = match last {
                    None => "no-region-available",
                    Some(k) => k.as_str(),
                };
                degraded::degraded_response(&svc.config.degraded, reason, attempts)
            }
        },
    }
}

/// Keeps a copy of a storable GET response as it streams to the client.
fn keep_for_stale(
    cache: &Arc<StaleCache>,
    head: &RequestHead<'_>,
    resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    if !StaleCache::should_store(head.method, head.headers, resp.status(), resp.headers()) {
        return resp;
    }
    let (parts, body) = resp.into_parts();
    let (cache, path, req_headers) = (cache.clone(), head.path.to_owned(), head.headers.clone());
    let (status, headers) = (parts.status, parts.headers.clone());
    let body = body.capture(
        crate::stale::MAX_ENTRY_BYTES,
        Box::new(move |bytes| cache.store(path, &req_headers, status, headers, bytes)),
    );
    Response::from_parts(parts, body)
}

/// The statuses RFC 5861 counts as errors for `stale-if-error`.
fn is_stale_worthy_error(status: StatusCode) -> bool {
    matches!(status.as_u16(), 500 | 502 | 503 | 504)
}

/// The stale-if-error answer, when the cache is on and holds one for this request (a stored
/// GET response answers HEAD too; `handle` drops the body then).
fn serve_stale(
    svc: &Service,
    head: &RequestHead<'_>,
    attempts: u32,
) -> Option<Response<ProxyBody>> {
    if *head.method != Method::GET && *head.method != Method::HEAD {
        return None;
    }
    let mut resp = svc.stale.as_ref()?.lookup(head.path, head.headers)?;
    degraded::stamp(&mut resp, None, attempts);
    Some(resp)
}

fn apply_response_action(
    svc: &Service,
    head: &RequestHead<'_>,
    region: &str,
    mut resp: Response<ProxyBody>,
    attempts: u32,
) -> Response<ProxyBody> {
    match svc
        .policy
        .on_response(head, resp.status(), region, resp.headers())
    {
        ResponseAction::Pass => resp,
        ResponseAction::SetHeaders(set) => {
            for (name, value) in set {
                if let (Ok(n), Ok(v)) = (
                    header::HeaderName::from_bytes(name.as_bytes()),
                    header::HeaderValue::from_str(&value),
                ) {
                    resp.headers_mut().insert(n, v);
                }
            }
            resp
        }
        ResponseAction::Replace(local) => degraded::local_response(&local, attempts),
    }
}

/// The answer with `connection: close` over HTTP/1 (HTTP/2 has no such header).
pub(super) fn closing(
    mut resp: Response<ProxyBody>,
    version: http::Version,
) -> Response<ProxyBody> {
    if version <= http::Version::HTTP_11 {
        resp.headers_mut()
            .insert(header::CONNECTION, http::HeaderValue::from_static("close"));
    }
    resp
}

/// An answer the sidecar makes without forwarding the request. Over HTTP/1 the request's
/// body is read and thrown away first so the connection can carry the client's next request
/// (see `request_body::discard`); a body too large or too slow for that gets the answer with
/// `connection: close`, so the client knows not to send more on it. (An HTTP/2 stream ends on
/// its own.)
pub(super) async fn unforwarded(
    body: Incoming,
    version: http::Version,
    deadline: Instant,
    resp: Response<ProxyBody>,
) -> Response<ProxyBody> {
    if version <= http::Version::HTTP_11 && !crate::request_body::discard(body, deadline).await {
        return closing(resp, version);
    }
    resp
}
