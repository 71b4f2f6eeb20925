//! Request traces (SPEC section 6): a server span per request, a client span per attempt,
//! span events for failovers, ejections and policy decisions, and W3C trace context in
//! (`traceparent`, `tracestate` from the client) and out (to the region).
//!
//! Spans are plain `tracing` spans on the [`TARGET`] target; `tracing-opentelemetry` turns them
//! into OpenTelemetry spans (`otel.name`, `otel.kind` and `otel.status_code` are its special
//! fields, the rest become attributes). Only the trace layer enables that target, so with no
//! OTLP endpoint every span here is disabled and costs one relaxed atomic load; attribute
//! values are not even evaluated. The same holds while the collector is unreachable (see
//! [`super::otlp::admit`]): such a request is handled as with tracing off, its client's
//! `traceparent` passing through to the region untouched.

use std::sync::OnceLock;

use http::header::HeaderMap;
use http::{Method, StatusCode, Uri, Version};
use opentelemetry::propagation::Extractor;
use opentelemetry::propagation::TextMapPropagator;
use opentelemetry::trace::TraceContextExt;
use opentelemetry_http::HeaderInjector;
use opentelemetry_sdk::propagation::TraceContextPropagator;
use tracing::Span;
use tracing::field::Empty;
use tracing_opentelemetry::OpenTelemetrySpanExt;
use tracing_subscriber::Layer;
use tracing_subscriber::filter::Targets;
use tracing_subscriber::registry::LookupSpan;

use crate::error::FailureKind;
use crate::headers::{
    X_SWITCHYARD_ATTEMPTS, X_SWITCHYARD_DEGRADED, X_SWITCHYARD_ERROR, X_SWITCHYARD_REGION,
};
use crate::policy::Decision;

/// The `tracing` target of request spans and their events: enabled by the trace layer only.
pub const TARGET: &str = "switchyard::otel";

/// Set once the trace layer is installed; the propagator doubles as the "tracing on" flag.
static PROPAGATOR: OnceLock<TraceContextPropagator> = OnceLock::new();

/// Whether spans are being exported.
pub fn enabled() -> bool {
    PROPAGATOR.get().is_some()
}

/// Marks tracing as on; called once the trace layer is installed.
pub(super) fn activate() {
    let _ = PROPAGATOR.set(TraceContextPropagator::new());
    opentelemetry::global::set_text_map_propagator(TraceContextPropagator::new());
}

/// The layer that turns our spans into OpenTelemetry spans. It takes Switchyard's own spans
/// and events only: the exporter's HTTP/2 and gRPC stack must never trace itself.
pub(super) fn layer<S>(tracer: opentelemetry_sdk::trace::SdkTracer) -> impl Layer<S>
where
    S: tracing::Subscriber + for<'a> LookupSpan<'a>,
{
    tracing_opentelemetry::layer()
        .with_tracer(tracer)
        .with_location(false)
        .with_threads(false)
        .with_tracked_inactivity(false)
        .with_target(false)
        .with_filter(Targets::new().with_target("switchyard", tracing::Level::INFO))
}

/// The `http.request.method` value: the method when it is a standard one, `_OTHER` otherwise
/// (a span name must not take whatever a client sends).
fn method_name(method: &Method) -> &str {
    match *method {
        Method::GET
        | Method::HEAD
        | Method::POST
        | Method::PUT
        | Method::DELETE
        | Method::CONNECT
        | Method::OPTIONS
        | Method::TRACE
        | Method::PATCH => method.as_str(),
        _ => "_OTHER",
    }
}

fn protocol_version(version: Version) -> &'static str {
    match version {
        Version::HTTP_09 => "0.9",
        Version::HTTP_10 => "1.0",
        Version::HTTP_2 => "2",
        Version::HTTP_3 => "3",
        _ => "1.1",
    }
}

/// What the server span needs to know about the incoming request.
pub struct Incoming<'a> {
    pub service: &'a str,
    pub method: &'a Method,
    pub uri: &'a Uri,
    pub version: Version,
    pub headers: &'a HeaderMap,
    pub tls: bool,
    pub client: std::net::IpAddr,
}

/// The server span of one request, continuing the client's trace when it sent `traceparent`.
pub fn server_span(req: &Incoming<'_>) -> Span {
    if !enabled() {
        return Span::none();
    }
    if !super::otlp::admit() {
        super::otlp::not_traced();
        return Span::none();
    }
    let method = method_name(req.method);
    let span = tracing::info_span!(target: TARGET, "request",
        otel.name = method,
        otel.kind = "server",
        otel.status_code = Empty,
        http.request.method = method,
        url.path = req.uri.path(),
        url.scheme = if req.tls { "https" } else { "http" },
        network.protocol.version = protocol_version(req.version),
        client.address = %req.client,
        switchyard.service = req.service,
        http.response.status_code = Empty,
        switchyard.region = Empty,
        switchyard.attempts = Empty,
        switchyard.degraded = Empty,
        error.type = Empty,
    );
    if !span.is_disabled()
        && let Some(propagator) = PROPAGATOR.get()
    {
        let parent = propagator.extract(&ClientContext::of(req.headers));
        // Fails only for a span that already started, which this one has not.
        let _ = span.set_parent(parent);
    }
    span
}

/// The client's trace context as the propagator reads it. OpenTelemetry's own header
/// extractor takes the first `tracestate` line only, and the attempt's context replaces the
/// client's on the way to the region, so list members in later lines were lost: W3C Trace
/// Context makes several `tracestate` lines one list, in order.
struct ClientContext<'a> {
    headers: &'a HeaderMap,
    /// The lines joined, when there are several (rare: no allocation otherwise).
    tracestate: Option<String>,
}

impl<'a> ClientContext<'a> {
    fn of(headers: &'a HeaderMap) -> Self {
        let mut lines = headers.get_all(TRACESTATE).iter();
        let tracestate = match (lines.next(), lines.next()) {
            (Some(_), Some(_)) => {
                let values: Option<Vec<&str>> = headers
                    .get_all(TRACESTATE)
                    .iter()
                    .map(|v| v.to_str().ok())
                    .collect();
                values.map(|v| v.join(","))
            }
            _ => None,
        };
        ClientContext {
            headers,
            tracestate,
        }
    }
}

impl Extractor for ClientContext<'_> {
    fn get(&self, key: &str) -> Option<&str> {
        if key == TRACESTATE.as_str()
            && let Some(joined) = &self.tracestate
        {
            return Some(joined);
        }
        self.headers.get(key).and_then(|v| v.to_str().ok())
    }

    fn keys(&self) -> Vec<&str> {
        self.headers.keys().map(|k| k.as_str()).collect()
    }
}

/// Records the response the client gets: status, the region and attempts the sidecar stamped
/// on it, and why the sidecar answered itself when it did.
pub fn record_response(span: &Span, status: StatusCode, headers: &HeaderMap) {
    if span.is_disabled() {
        return;
    }
    let header = |name: &http::HeaderName| headers.get(name).and_then(|v| v.to_str().ok());
    span.record("http.response.status_code", i64::from(status.as_u16()));
    if let Some(region) = header(&X_SWITCHYARD_REGION) {
        span.record("switchyard.region", region);
    }
    if let Some(attempts) = header(&X_SWITCHYARD_ATTEMPTS).and_then(|a| a.parse::<u32>().ok()) {
        span.record("switchyard.attempts", i64::from(attempts));
    }
    if headers.contains_key(&X_SWITCHYARD_DEGRADED) {
        span.record("switchyard.degraded", true);
    }
    let error = header(&X_SWITCHYARD_ERROR);
    if let Some(error) = error {
        span.record("error.type", error);
    }
    if status.is_server_error() {
        if error.is_none() {
            span.record("error.type", FailureKind::Status(status.as_u16()).as_str());
        }
        span.record("otel.status_code", "ERROR");
    }
}

/// Marks the span of a request (or of its attempt) whose client went away before the answer.
pub fn record_cancelled(span: &Span) {
    if !span.is_disabled() {
        span.record("error.type", "cancelled");
    }
}

/// Records on the server span of a request whose client went away what the metrics count:
/// code 499 (nginx's "client closed request"), the region it waited for, its attempts.
pub fn record_unanswered(span: &Span, region: Option<&str>, attempts: u32) {
    if span.is_disabled() {
        return;
    }
    span.record("http.response.status_code", 499_i64);
    span.record("switchyard.region", region.unwrap_or("none"));
    span.record("switchyard.attempts", i64::from(attempts));
}

/// The client span of one attempt, a child of the current (server) span.
pub fn attempt_span(
    region: &str,
    attempt: u32,
    method: &Method,
    authority: &http::HeaderValue,
) -> Span {
    if !enabled() {
        return Span::none();
    }
    if Span::current().is_none() {
        // The request is not traced (collector unreachable): neither is its attempt.
        super::otlp::not_traced();
        return Span::none();
    }
    let method = method_name(method);
    let (address, port) = split_authority(authority.to_str().unwrap_or_default());
    tracing::info_span!(target: TARGET, "attempt",
        otel.name = method,
        otel.kind = "client",
        otel.status_code = Empty,
        http.request.method = method,
        server.address = address,
        server.port = port.map(i64::from),
        switchyard.region = region,
        switchyard.attempt = i64::from(attempt),
        http.response.status_code = Empty,
        error.type = Empty,
    )
}

/// Records how an attempt ended: the region's status, or the kind of failure.
pub fn record_attempt(span: &Span, status: Option<StatusCode>, failure: Option<FailureKind>) {
    if span.is_disabled() {
        return;
    }
    if let Some(status) = status {
        span.record("http.response.status_code", i64::from(status.as_u16()));
    }
    if let Some(kind) = failure {
        span.record("error.type", kind.as_str());
        span.record("otel.status_code", "ERROR");
    }
}

/// Puts the attempt span's context into the upstream request (`traceparent`, `tracestate`),
/// replacing the client's: the region's spans become children of the attempt. With tracing
/// off the client's headers pass through untouched.
pub fn inject(span: &Span, headers: &mut HeaderMap) {
    if span.is_disabled() {
        return;
    }
    if let Some(propagator) = PROPAGATOR.get() {
        propagator.inject_context(&span.context(), &mut HeaderInjector(headers));
        // The propagator writes `tracestate` even when there is none; W3C Trace Context asks
        // for no header rather than an empty one.
        if headers
            .get(TRACESTATE)
            .is_some_and(|v| v.as_bytes().is_empty())
        {
            headers.remove(TRACESTATE);
        }
    }
}

const TRACESTATE: http::HeaderName = http::HeaderName::from_static("tracestate");

/// A span event on the current request: the next attempt goes to another region.
pub fn failover_event(from: &str, to: &str, reason: FailureKind) {
    tracing::info!(target: TARGET,
        { switchyard.from = from, switchyard.to = to, error.type = reason.as_str() }, "failover");
}

/// A span event on the current request: its failure completed a streak and asked for the
/// region's ejection.
pub fn ejection_event(region: &str) {
    tracing::info!(target: TARGET, { switchyard.region = region }, "ejection");
}

/// A span event on the current request: what a plugin decided, unless it left routing to
/// the default (which is all the built-in policy ever does).
pub fn decision_event(decision: &Decision) {
    // Only spans carry it: without a trace pipeline the event would be built and dropped.
    if !enabled() {
        return;
    }
    match decision {
        Decision::Default => {}
        Decision::Prefer(regions) => tracing::info!(target: TARGET,
            { switchyard.decision = "prefer", switchyard.regions = ?regions }, "policy decision"),
        Decision::Pin(region) => tracing::info!(target: TARGET,
            { switchyard.decision = "pin", switchyard.region = region.as_str() }, "policy decision"),
        Decision::Local(local) => tracing::info!(target: TARGET,
            { switchyard.decision = "local", http.response.status_code = i64::from(local.status.as_u16()) }, "policy decision"),
    }
}

/// `host:port` as `server.address` and `server.port` (IPv6 brackets removed).
fn split_authority(authority: &str) -> (&str, Option<u16>) {
    match authority.rsplit_once(':') {
        Some((host, port)) if !port.contains(']') => match port.parse() {
            Ok(port) => (
                host.trim_start_matches('[').trim_end_matches(']'),
                Some(port),
            ),
            Err(_) => (authority, None),
        },
        _ => (
            authority.trim_start_matches('[').trim_end_matches(']'),
            None,
        ),
    }
}

/// The trace and span id of the current request, for log lines; `None` outside a traced
/// request or with tracing off.
pub(crate) fn current_ids() -> Option<(String, String)> {
    if !enabled() {
        return None;
    }
    let cx = opentelemetry::Context::current();
    let span = cx.span();
    let sc = span.span_context();
    sc.is_valid()
        .then(|| (sc.trace_id().to_string(), sc.span_id().to_string()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn authorities_split_into_address_and_port() {
        assert_eq!(split_authority("127.0.0.1:9002"), ("127.0.0.1", Some(9002)));
        assert_eq!(
            split_authority("orders.example.com"),
            ("orders.example.com", None)
        );
        assert_eq!(split_authority("[::1]:8443"), ("::1", Some(8443)));
        assert_eq!(split_authority("[::1]"), ("::1", None));
    }

    #[test]
    fn odd_methods_do_not_name_spans() {
        assert_eq!(method_name(&Method::GET), "GET");
        let odd = Method::from_bytes(b"BREW").expect("token");
        assert_eq!(method_name(&odd), "_OTHER");
    }
}
