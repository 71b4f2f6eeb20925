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
            HeaderValue::from(cfg.retry_after.as_secs().max(1)),
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
