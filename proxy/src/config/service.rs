//! One `[[services]]` table: listener, timeouts and the health, outlier, failback, retry and
//! degraded sections, with SPEC defaults for everything left out.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::Path;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::header::HeaderValue;
use http::uri::PathAndQuery;
use toml::de::DeValue;

use super::fields::{duration, existing_file, positive_duration, size};
use super::model::{
    DegradedConfig, FailbackConfig, HealthConfig, OutlierConfig, RetryConfig, RetryOn, ServerTls,
    ServiceConfig, StatusRange,
};
use super::reader::{Diags, Sp, Span, Table};
use super::regions::{plugins, regions};
use super::validate::{self, Listeners};

pub(crate) const SERVICE_KEYS: &[&str] = &[
    "name",
    "listen",
    "request_timeout",
    "tls",
    "health",
    "outlier",
    "failback",
    "retry",
    "degraded",
    "regions",
    "plugins",
];

/// The retry conditions a user may name, in SPEC order.
const RETRY_ON: &[&str] = &[
    "connect-failure",
    "refused-stream",
    "reset",
    "timeout",
    "5xx",
];

/// Builds one service; also returns its name as written, for the uniqueness check.
pub(crate) fn service(
    d: &mut Diags<'_>,
    t: &Table<'_, '_>,
    base: &Path,
    listeners: &mut Listeners,
) -> (ServiceConfig, Option<Sp<String>>) {
    let name =
        t.required_string(d, "name")
            .and_then(|n| match validate::name(n.value, "service") {
                Ok(()) => Some(Sp {
                    value: n.value.to_owned(),
                    span: n.span,
                }),
                Err(message) => {
                    d.error(&n.span, message);
                    None
                }
            });
    let label = match &name {
        Some(n) => format!("service {:?}", n.value),
        None => "a service".to_owned(),
    };
    let listen = listen(d, t, listeners, &label);
    let config = ServiceConfig {
        name: name.as_ref().map(|n| n.value.clone()).unwrap_or_default(),
        listen,
        request_timeout: positive_duration(d, t, "request_timeout", Duration::from_secs(15)),
        tls: server_tls(d, t, base),
        health: health(d, t),
        outlier: outlier(d, t),
        failback: failback(d, t),
        retry: retry(d, t),
        degraded: degraded(d, t),
        regions: regions(d, t, base, &label, listeners),
        plugins: plugins(d, t, base),
    };
    (config, name)
}

fn listen(
    d: &mut Diags<'_>,
    t: &Table<'_, '_>,
    listeners: &mut Listeners,
    label: &str,
) -> SocketAddr {
    let placeholder = SocketAddr::from((Ipv4Addr::LOCALHOST, 0));
    let Some(text) = t.required_string(d, "listen") else {
        return placeholder;
    };
    match validate::socket_addr(text.value) {
        Ok(addr) => {
            listeners.claim(d, addr, Some(text.span), label.to_owned());
            addr
        }
        Err(message) => {
            d.error(&text.span, message);
            placeholder
        }
    }
}

fn server_tls(d: &mut Diags<'_>, t: &Table<'_, '_>, base: &Path) -> Option<ServerTls> {
    let tls = t.table(d, "tls", &["cert", "key"])?;
    let cert = existing_file(d, &tls, "cert", base, true);
    let key = existing_file(d, &tls, "key", base, true);
    let complete = cert.is_some() && key.is_some();
    let tls_config = ServerTls {
        cert: cert.unwrap_or_default(),
        key: key.unwrap_or_default(),
    };
    // Read the PEM files now, as the listener will: `check` must refuse what `run` would.
    if complete && let Err(e) = crate::server::tls_acceptor(&tls_config) {
        d.error(&tls.span(), format!("listener tls: {e}"));
    }
    Some(tls_config)
}

fn health(d: &mut Diags<'_>, t: &Table<'_, '_>) -> HealthConfig {
    let mut health = HealthConfig {
        path: "/healthz".to_owned(),
        interval: Duration::from_secs(1),
        timeout: Duration::from_millis(500),
        unhealthy_threshold: 2,
        healthy_threshold: 2,
        expect_status: StatusRange {
            low: 200,
            high: 399,
        },
    };
    let keys = [
        "path",
        "interval",
        "timeout",
        "unhealthy_threshold",
        "healthy_threshold",
        "expect_status",
    ];
    let Some(h) = t.table(d, "health", &keys) else {
        return health;
    };
    if let Some(path) = h.string(d, "path") {
        if !path.value.starts_with('/') {
            d.error(
                &path.span,
                format!("health path {:?} must start with '/'", path.value),
            );
        } else if PathAndQuery::try_from(path.value).is_err() {
            d.error(&path.span, format!("invalid health path {:?}", path.value));
        } else {
            health.path = path.value.to_owned();
        }
    }
    health.interval = positive_duration(d, &h, "interval", health.interval);
    health.timeout = positive_duration(d, &h, "timeout", health.timeout);
    let max = i128::from(u32::MAX);
    if let Some(n) = h.integer_in(d, "unhealthy_threshold", 1, max) {
        health.unhealthy_threshold = n;
    }
    if let Some(n) = h.integer_in(d, "healthy_threshold", 1, max) {
        health.healthy_threshold = n;
    }
    if let Some(range) = expect_status(d, &h) {
        health.expect_status = range;
    }
    health
}

/// `"200-399"`, `"200"`, or a bare integer `200`.
fn expect_status(d: &mut Diags<'_>, h: &Table<'_, '_>) -> Option<StatusRange> {
    let value = h.value("expect_status")?;
    let parsed = match value.get_ref() {
        DeValue::String(text) => validate::status_range(text),
        DeValue::Integer(_) => {
            validate::status_range(&h.integer(d, "expect_status")?.value.to_string())
        }
        _ => {
            h.wrong_type(d, "expect_status", "a string such as \"200-399\"", value);
            return None;
        }
    };
    parsed
        .map_err(|message| d.error(&value.span(), message))
        .ok()
}

fn outlier(d: &mut Diags<'_>, t: &Table<'_, '_>) -> OutlierConfig {
    let mut outlier = OutlierConfig {
        consecutive_failures: 3,
        base_ejection: Duration::from_secs(5),
        max_ejection: Duration::from_secs(60),
    };
    let keys = ["consecutive_failures", "base_ejection", "max_ejection"];
    let Some(o) = t.table(d, "outlier", &keys) else {
        return outlier;
    };
    if let Some(n) = o.integer_in(d, "consecutive_failures", 1, i128::from(u32::MAX)) {
        outlier.consecutive_failures = n;
    }
    outlier.base_ejection = positive_duration(d, &o, "base_ejection", outlier.base_ejection);
    let (max, max_span) = duration(d, &o, "max_ejection", outlier.max_ejection);
    outlier.max_ejection = max;
    if outlier.max_ejection < outlier.base_ejection {
        // Point at whichever of the two was written; max_ejection when both were.
        let at: Option<Span> = max_span.or_else(|| o.value("base_ejection").map(|v| v.span()));
        if let Some(at) = at {
            d.error(
                &at,
                format!(
                    "max_ejection ({}) must not be shorter than base_ejection ({})",
                    human(outlier.max_ejection),
                    human(outlier.base_ejection)
                ),
            );
        }
    }
    outlier
}

/// A duration in the unit a user would have written it in.
fn human(duration: Duration) -> String {
    let ms = duration.as_millis();
    match ms {
        0 => "0s".to_owned(),
        _ if ms.is_multiple_of(3_600_000) => format!("{}h", ms / 3_600_000),
        _ if ms.is_multiple_of(60_000) => format!("{}m", ms / 60_000),
        _ if ms.is_multiple_of(1_000) => format!("{}s", ms / 1_000),
        _ => format!("{ms}ms"),
    }
}

fn failback(d: &mut Diags<'_>, t: &Table<'_, '_>) -> FailbackConfig {
    let default = Duration::from_secs(5);
    let stable_for = match t.table(d, "failback", &["stable_for"]) {
        Some(f) => duration(d, &f, "stable_for", default).0,
        None => default,
    };
    FailbackConfig { stable_for }
}

fn retry(d: &mut Diags<'_>, t: &Table<'_, '_>) -> RetryConfig {
    let mut retry = RetryConfig {
        max_attempts: 3,
        per_try_timeout: Duration::from_secs(2),
        budget_ratio: 0.2,
        min_retries_per_sec: 10,
        retry_on: RetryOn {
            connect_failure: true,
            refused_stream: true,
            reset: true,
            timeout: true,
            status_5xx: true,
        },
        buffer_body_limit: 64 * 1024,
    };
    let keys = [
        "max_attempts",
        "per_try_timeout",
        "budget_ratio",
        "min_retries_per_sec",
        "retry_on",
        "buffer_body_limit",
    ];
    let Some(r) = t.table(d, "retry", &keys) else {
        return retry;
    };
    if let Some(n) = r.integer_in(d, "max_attempts", 1, 10) {
        retry.max_attempts = n;
    }
    retry.per_try_timeout = positive_duration(d, &r, "per_try_timeout", retry.per_try_timeout);
    if let Some(ratio) = r.number(d, "budget_ratio") {
        if ratio.value.is_finite() && (0.0..=1.0).contains(&ratio.value) {
            retry.budget_ratio = ratio.value;
        } else {
            d.error(
                &ratio.span,
                format!(
                    "\"budget_ratio\" must be between 0 and 1, got {}",
                    ratio.value
                ),
            );
        }
    }
    if let Some(n) = r.integer_in(d, "min_retries_per_sec", 0, i128::from(u32::MAX)) {
        retry.min_retries_per_sec = n;
    }
    if let Some(entries) = r.strings(d, "retry_on") {
        let mut on = RetryOn::default();
        for entry in entries {
            match entry.value {
                "connect-failure" => on.connect_failure = true,
                "refused-stream" => on.refused_stream = true,
                "reset" => on.reset = true,
                "timeout" => on.timeout = true,
                "5xx" => on.status_5xx = true,
                other => d.error(
                    &entry.span,
                    format!(
                        "unknown retry_on condition {other:?}: expected one of {}",
                        RETRY_ON.join(", ")
                    ),
                ),
            }
        }
        retry.retry_on = on;
    }
    retry.buffer_body_limit = size(d, &r, "buffer_body_limit", retry.buffer_body_limit);
    retry
}

fn degraded(d: &mut Diags<'_>, t: &Table<'_, '_>) -> DegradedConfig {
    let mut degraded = DegradedConfig {
        stale_if_error: Duration::ZERO,
        status: StatusCode::SERVICE_UNAVAILABLE,
        body: Bytes::new(),
        content_type: "text/plain".to_owned(),
        retry_after: Duration::from_secs(30),
    };
    let keys = [
        "stale_if_error",
        "status",
        "body",
        "content_type",
        "retry_after",
    ];
    let Some(g) = t.table(d, "degraded", &keys) else {
        return degraded;
    };
    degraded.stale_if_error = duration(d, &g, "stale_if_error", degraded.stale_if_error).0;
    // A 1xx is not a final answer: hyper could not send it as one.
    if let Some(code) = g.integer_in::<u16>(d, "status", 200, 599)
        && let Ok(status) = StatusCode::from_u16(code)
    {
        degraded.status = status;
    }
    if let Some(body) = g.string(d, "body") {
        degraded.body = Bytes::from(body.value.to_owned());
        if !body.value.is_empty() && crate::degraded::has_no_content(degraded.status) {
            d.error(
                &body.span,
                format!(
                    "a {} response has no body: remove body",
                    degraded.status.as_u16()
                ),
            );
        }
    }
    if let Some(ct) = g.string(d, "content_type") {
        if ct.value.is_empty() || HeaderValue::from_str(ct.value).is_err() {
            d.error(
                &ct.span,
                format!(
                    "invalid content_type {:?}: not a valid header value",
                    ct.value
                ),
            );
        } else {
            degraded.content_type = ct.value.to_owned();
        }
    }
    degraded.retry_after = duration(d, &g, "retry_after", degraded.retry_after).0;
    degraded
}
