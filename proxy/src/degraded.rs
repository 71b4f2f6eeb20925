//! Responses the sidecar makes itself: the degraded answer, plugin answers, and errors.
//!
//! Every one of them carries `x-switchyard-degraded: 1` and `x-switchyard-region: none`, as
//! the product contract says of responses the sidecar made itself, so nobody mistakes one for
//! a region's answer; the errors also say why in `x-switchyard-error`.

use std::time::Duration;

use http::header::{self, HeaderName, HeaderValue};
use http::{Response, StatusCode};

use crate::body::ProxyBody;
use crate::config::DegradedConfig;
use crate::headers::{
    X_SWITCHYARD_ATTEMPTS, X_SWITCHYARD_DEGRADED, X_SWITCHYARD_ERROR, X_SWITCHYARD_REGION,
};
use crate::policy::LocalResponse;

/// Statuses whose responses never have content (RFC 9110 sections 15.3.5, 15.3.6, 15.4.5).
pub fn has_no_content(status: StatusCode) -> bool {
    matches!(status.as_u16(), 204 | 205 | 304)
}

/// Makes a response the sidecar made itself fit the request: no body for `HEAD` or for a
/// status that has none. hyper leaves that to the service; over HTTP/2 it would send the body
/// and break the stream.
pub fn fit_to_request<B: Default>(resp: &mut Response<B>, head_request: bool) {
    let no_content = has_no_content(resp.status());
    if head_request || no_content {
        *resp.body_mut() = B::default();
    }
    if no_content {
        resp.headers_mut().remove(header::CONTENT_LENGTH);
    }
}

/// The region header value on responses no region made.
const NO_REGION: HeaderValue = HeaderValue::from_static("none");

/// The configured answer for when no region can serve.
pub fn degraded_response(
    cfg: &DegradedConfig,
    reason: &'static str,
    attempts: u32,
) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(cfg.body.clone()));
    *resp.status_mut() = cfg.status;
    let h = resp.headers_mut();
    if let Ok(ct) = HeaderValue::from_str(&cfg.content_type) {
        h.insert(header::CONTENT_TYPE, ct);
    }
    if cfg.retry_after > Duration::ZERO {
        h.insert(
            header::RETRY_AFTER,
            // Whole seconds, rounded up: a client must not come back before the time given.
            HeaderValue::from(cfg.retry_after.as_secs_f64().ceil().max(1.0) as u64),
        );
    }
    h.insert(X_SWITCHYARD_ERROR, HeaderValue::from_static(reason));
    stamp(&mut resp, None, attempts);
    resp
}

/// A response a policy or plugin made.
pub fn local_response(local: &LocalResponse, attempts: u32) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(local.body.clone()));
    *resp.status_mut() = local.status;
    for (name, value) in &local.headers {
        if let (Ok(n), Ok(v)) = (
            HeaderName::from_bytes(name.as_bytes()),
            HeaderValue::from_str(value),
        ) {
            resp.headers_mut().append(n, v);
        }
    }
    stamp(&mut resp, None, attempts);
    resp
}

/// An error the sidecar reports itself (bad request, upstream failure it must not retry, ...).
pub fn error_response(
    status: StatusCode,
    reason: &'static str,
    attempts: u32,
) -> Response<ProxyBody> {
    let mut resp = Response::new(ProxyBody::full(format!("{reason}\n")));
    *resp.status_mut() = status;
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("text/plain"));
    h.insert(X_SWITCHYARD_ERROR, HeaderValue::from_static(reason));
    stamp(&mut resp, None, attempts);
    resp
}

/// Adds `x-switchyard-region` and `x-switchyard-attempts`; with no region (a response the
/// sidecar made itself) also `x-switchyard-degraded: 1`.
pub fn stamp<B>(resp: &mut Response<B>, region: Option<&str>, attempts: u32) {
    let h = resp.headers_mut();
    let region = match region {
        Some(name) => HeaderValue::from_str(name).unwrap_or(NO_REGION),
        None => {
            h.insert(X_SWITCHYARD_DEGRADED, HeaderValue::from_static("1"));
            NO_REGION
        }
    };
    h.insert(X_SWITCHYARD_REGION, region);
    h.insert(X_SWITCHYARD_ATTEMPTS, HeaderValue::from(attempts));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds() {
        let cfg = |ms| DegradedConfig {
            stale_if_error: Duration::ZERO,
            status: StatusCode::SERVICE_UNAVAILABLE,
            body: bytes::Bytes::new(),
            content_type: "text/plain".into(),
            retry_after: Duration::from_millis(ms),
        };
        let after = |ms| {
            degraded_response(&cfg(ms), "test", 1)
                .headers()
                .get(header::RETRY_AFTER)
                .map(|v| v.to_str().unwrap_or_default().to_owned())
        };
        assert_eq!(after(1500).as_deref(), Some("2"));
        assert_eq!(after(2000).as_deref(), Some("2"));
        assert_eq!(after(1).as_deref(), Some("1"));
        assert_eq!(after(0), None);
    }

    #[test]
    fn head_and_no_content_statuses_lose_the_body() {
        let mut head = Response::new(ProxyBody::full("down"));
        fit_to_request(&mut head, true);
        assert!(matches!(head.body(), ProxyBody::Empty));
        for status in [204, 205, 304] {
            let mut resp = Response::new(ProxyBody::full("x"));
            *resp.status_mut() = StatusCode::from_u16(status).expect("status");
            resp.headers_mut()
                .insert(header::CONTENT_LENGTH, HeaderValue::from_static("1"));
            fit_to_request(&mut resp, false);
            assert!(matches!(resp.body(), ProxyBody::Empty), "{status}");
            assert!(resp.headers().get(header::CONTENT_LENGTH).is_none());
        }
        let mut get = Response::new(ProxyBody::full("down"));
        fit_to_request(&mut get, false);
        assert!(!matches!(get.body(), ProxyBody::Empty));
    }
}
