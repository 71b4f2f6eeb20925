//! The admin API (SPEC section 4): probes, status, and the drill switchboard.
//!
//! Every bad input gets a 4xx with `{"error": "..."}`; mutating calls need the bearer token
//! when one is configured, and each one is logged.

// Handlers return the error response itself as `Err`; the admin path is not hot, and boxing
// every early return would only add noise.
#![allow(clippy::result_large_err)]

use std::convert::Infallible;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper_util::rt::TokioIo;
use serde_json::{Value, json};
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::app::{AppState, ServiceEntry};
use crate::health::{HealthEvent, RegionState};
use crate::upstream::fault::Fault;

type AdminResponse = Response<Full<Bytes>>;

const MAX_ADMIN_BODY: usize = 64 * 1024;

pub async fn serve(listener: TcpListener, state: Arc<AppState>, mut stop: watch::Receiver<bool>) {
    loop {
        let (stream, _) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    tracing::warn!("admin accept failed: {e}");
                    tokio::time::sleep(Duration::from_millis(50)).await;
                    continue;
                }
            },
            _ = stop.changed() => return,
        };
        let state = state.clone();
        tokio::spawn(async move {
            let service = service_fn(move |req| {
                let state = state.clone();
                async move { Ok::<_, Infallible>(route(&state, req).await) }
            });
            let _ = hyper::server::conn::http1::Builder::new()
                .serve_connection(TokioIo::new(stream), service)
                .await;
        });
    }
}

fn json_response(status: StatusCode, body: &Value) -> AdminResponse {
    let mut resp = Response::new(Full::new(Bytes::from(body.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn error(status: StatusCode, message: impl Into<String>) -> AdminResponse {
    json_response(status, &json!({ "error": message.into() }))
}

fn text(status: StatusCode, body: &'static str) -> AdminResponse {
    let mut resp = Response::new(Full::new(Bytes::from_static(body.as_bytes())));
    *resp.status_mut() = status;
    resp
}

async fn route(state: &AppState, req: Request<Incoming>) -> AdminResponse {
    // Segments as written: `/reload/` or `//reload` is not `/reload` (a mistyped path must
    // not run an action that changes the configuration).
    let path: Vec<String> = req
        .uri()
        .path()
        .strip_prefix('/')
        .unwrap_or_default()
        .split('/')
        .map(str::to_owned)
        .collect();
    let segments: Vec<&str> = path.iter().map(String::as_str).collect();
    let method = req.method().clone();
    // HEAD is GET without the body (hyper leaves the body out), as for any HTTP server.
    let read = method == Method::GET || method == Method::HEAD;
    // Every call that changes something takes its parameters in the body, if any: a query
    // such as `/reload?dry_run=1` would otherwise be ignored and the reload carried out.
    if !read && req.uri().query().is_some() {
        return error(
            StatusCode::BAD_REQUEST,
            format!(
                "{} takes no query parameters: parameters go in the JSON body",
                req.uri().path()
            ),
        );
    }
    match (&method, segments.as_slice()) {
        (_, ["healthz"]) if read => text(StatusCode::OK, "ok\n"),
        (_, ["readyz"]) if read => {
            if state.ready.load(Ordering::Acquire) {
                text(StatusCode::OK, "ready\n")
            } else {
                text(StatusCode::SERVICE_UNAVAILABLE, "not ready\n")
            }
        }
        (_, ["status"]) if read => json_response(StatusCode::OK, &status(state)),
        (_, ["metrics"]) if read => metrics(req.headers()),
        (_, ["healthz"] | ["readyz"] | ["status"] | ["metrics"]) => method_not_allowed("GET, HEAD"),
        (_, ["services", svc, "regions", region, action]) => {
            let allowed = match *action {
                "drain" | "undrain" => method == Method::POST,
                "fault" => method == Method::POST || method == Method::DELETE,
                _ => {
                    return error(
                        StatusCode::NOT_FOUND,
                        format!("no admin route {}", req.uri().path()),
                    );
                }
            };
            if !allowed {
                return method_not_allowed(if *action == "fault" {
                    "POST, DELETE"
                } else {
                    "POST"
                });
            }
            if let Err(resp) = authorize(state, &req) {
                return resp;
            }
            let (svc, region) = (svc.to_string(), region.to_string());
            let action = action.to_string();
            let body = match read_json(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            region_action(state, &svc, &region, &action, &method, body).await
        }
        (&Method::POST, ["services", svc, "failover"]) => {
            if let Err(resp) = authorize(state, &req) {
                return resp;
            }
            let svc = svc.to_string();
            let body = match read_json(req).await {
                Ok(b) => b,
                Err(resp) => return resp,
            };
            failover(state, &svc, body).await
        }
        (_, ["services", _, "failover"]) => method_not_allowed("POST"),
        (&Method::POST, ["reload"]) => {
            if let Err(resp) = authorize(state, &req) {
                return resp;
            }
            match read_json(req).await {
                Ok(body) if takes_no_parameters(&body) => {}
                Ok(_) => {
                    return error(
                        StatusCode::BAD_REQUEST,
                        "reload takes no parameters: send no body or {}",
                    );
                }
                Err(resp) => return resp,
            }
            tracing::warn!("admin: reload requested");
            match crate::reload::reload(state).await {
                Ok(()) => json_response(StatusCode::OK, &json!({ "reloaded": true })),
                Err(e) => {
                    tracing::error!("reload refused, keeping the running config:\n{e}");
                    let text = e.to_string();
                    let errors: Vec<&str> = text.lines().collect();
                    json_response(
                        StatusCode::BAD_REQUEST,
                        &json!({ "error": "reload refused; the running config is kept", "errors": errors }),
                    )
                }
            }
        }
        (_, ["reload"]) => method_not_allowed("POST"),
        _ => error(
            StatusCode::NOT_FOUND,
            format!("no admin route {}", req.uri().path()),
        ),
    }
}

/// Prometheus text, or OpenMetrics when the scraper asks for it (Prometheus itself does).
fn metrics(headers: &http::HeaderMap) -> AdminResponse {
    use crate::telemetry::metrics::{OPENMETRICS_CONTENT_TYPE, PROMETHEUS_CONTENT_TYPE};
    let openmetrics = headers
        .get_all(header::ACCEPT)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.contains("application/openmetrics-text"));
    let m = crate::telemetry::metrics();
    let (body, content_type) = if openmetrics {
        (m.encode(), OPENMETRICS_CONTENT_TYPE)
    } else {
        (m.encode_prometheus(), PROMETHEUS_CONTENT_TYPE)
    };
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        header::HeaderValue::from_static(content_type),
    );
    resp
}

fn method_not_allowed(allow: &'static str) -> AdminResponse {
    let mut resp = error(
        StatusCode::METHOD_NOT_ALLOWED,
        format!("method not allowed; use {allow}"),
    );
    resp.headers_mut()
        .insert(header::ALLOW, header::HeaderValue::from_static(allow));
    resp
}

/// Checks the bearer token in constant time when one is configured.
fn authorize(state: &AppState, req: &Request<Incoming>) -> Result<(), AdminResponse> {
    let config = state.config.load();
    let Some(token) = config.admin.token.as_deref().filter(|t| !t.is_empty()) else {
        return Ok(());
    };
    let given = req
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|v| v.to_str().ok())
        .and_then(bearer_token)
        .unwrap_or("");
    if constant_time_eq(given.as_bytes(), token.as_bytes()) {
        Ok(())
    } else {
        tracing::warn!(path = %req.uri().path(), "admin call refused: missing or wrong bearer token");
        let mut refused = error(StatusCode::UNAUTHORIZED, "missing or wrong bearer token");
        refused.headers_mut().insert(
            header::WWW_AUTHENTICATE,
            header::HeaderValue::from_static("Bearer realm=\"switchyard-admin\""),
        );
        Err(refused)
    }
}

/// The token of an `Authorization: Bearer <token>` value. The scheme is case-insensitive
/// (RFC 9110 section 11.1), as curl, Envoy and Kubernetes clients may spell it.
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme
        .eq_ignore_ascii_case("bearer")
        .then(|| token.trim_matches(' '))
}

/// Compares without an early exit, so timing does not reveal how much of the token matched.
fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    let mut diff = a.len() ^ b.len();
    for i in 0..a.len().max(b.len()) {
        let x = a.get(i).copied().unwrap_or(0);
        let y = b.get(i).copied().unwrap_or(0);
        diff |= usize::from(x ^ y);
    }
    diff == 0
}

/// Reads a JSON body (empty means `null`).
async fn read_json(req: Request<Incoming>) -> Result<Value, AdminResponse> {
    let body = Limited::new(req.into_body(), MAX_ADMIN_BODY)
        .collect()
        .await
        .map_err(|_| {
            error(
                StatusCode::PAYLOAD_TOO_LARGE,
                "body too large or unreadable",
            )
        })?
        .to_bytes();
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(Value::Null);
    }
    serde_json::from_slice(&body)
        .map_err(|e| error(StatusCode::BAD_REQUEST, format!("invalid JSON: {e}")))
}

fn find(state: &AppState, svc: &str, region: &str) -> Result<(ServiceEntry, usize), AdminResponse> {
    let entry = state
        .service(svc)
        .ok_or_else(|| error(StatusCode::NOT_FOUND, format!("unknown service {svc:?}")))?;
    let index = entry.slot.load().region_index(region).ok_or_else(|| {
        error(
            StatusCode::NOT_FOUND,
            format!("unknown region {region:?} in service {svc:?}"),
        )
    })?;
    Ok((entry, index))
}

async fn region_action(
    state: &AppState,
    svc: &str,
    region: &str,
    action: &str,
    method: &Method,
    body: Value,
) -> AdminResponse {
    let _no_reload = crate::reload::hold_off().await;
    let (entry, index) = match find(state, svc, region) {
        Ok(found) => found,
        Err(resp) => return resp,
    };
    // Drain and undrain take no parameters: a body that carries some is a mistake to report,
    // as the switchboard does for keys it does not know.
    if matches!(action, "drain" | "undrain") && !takes_no_parameters(&body) {
        return error(
            StatusCode::BAD_REQUEST,
            format!("{action} takes no parameters: send no body or {{}}"),
        );
    }
    let service = entry.slot.load_full();
    let event = match (action, method) {
        ("drain", _) => HealthEvent::Drain {
            region: index,
            drained: true,
        },
        ("undrain", _) => HealthEvent::Drain {
            region: index,
            drained: false,
        },
        ("fault", &Method::DELETE) => {
            service.upstreams[index].set_fault(None);
            HealthEvent::Fault {
                region: index,
                faulted: false,
            }
        }
        _ => match parse_fault(&body) {
            Ok(fault) => {
                service.upstreams[index].set_fault(Some(fault));
                HealthEvent::Fault {
                    region: index,
                    faulted: true,
                }
            }
            Err(message) => return error(StatusCode::BAD_REQUEST, message),
        },
    };
    tracing::warn!(service = svc, region, action, method = %method, body = %body, "admin: region {action}");
    service.health.send(event).await;
    // The 200 means the change is in effect: routing, `/status` and a failover that follows
    // see it. Without this wait, a drain and then a failover to the drained region could be
    // accepted (seen in CI once).
    service.health.sync().await;
    json_response(
        StatusCode::OK,
        &json!({ "service": svc, "region": region, "action": action, "ok": true }),
    )
}

/// An empty body, `null` or `{}`: what a call without parameters accepts.
fn takes_no_parameters(body: &Value) -> bool {
    body.is_null() || body.as_object().is_some_and(|o| o.is_empty())
}

/// A JSON number that is a whole number (`50` or `50.0`, as some JSON encoders write it).
fn whole_number(v: &Value) -> Option<u64> {
    v.as_u64().or_else(|| {
        v.as_f64()
            .filter(|f| f.is_finite() && *f >= 0.0 && f.fract() == 0.0 && *f <= u32::MAX as f64)
            .map(|f| f as u64)
    })
}

/// Parses the switchboard body: `{"mode":"down"}`, `{"mode":"error","status":503,"percent":100}`,
/// `{"mode":"delay","delay_ms":500}`.
fn parse_fault(body: &Value) -> Result<Fault, String> {
    let mode = body
        .get("mode")
        .and_then(Value::as_str)
        .ok_or("body must be a JSON object with \"mode\": \"down\", \"error\" or \"delay\"")?;
    // As in the config file, a key that means nothing is an error, not silently ignored.
    let allowed: &[&str] = match mode {
        "down" => &["mode"],
        "error" => &["mode", "status", "percent"],
        "delay" => &["mode", "delay_ms"],
        _ => &["mode"],
    };
    if let Some(extra) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| !allowed.contains(&k.as_str())))
    {
        return Err(format!(
            "unknown key {extra:?} for mode {mode:?}: valid keys are {}",
            allowed.join(", ")
        ));
    }
    match mode {
        "down" => Ok(Fault::Down),
        "error" => {
            let status = match body.get("status") {
                None => 503,
                Some(v) => whole_number(v)
                    // A 1xx is not a final answer: it cannot stand in for a region's.
                    .filter(|s| (200..=599).contains(s))
                    .ok_or("\"status\" must be a whole number, an HTTP status 200-599")?,
            };
            let percent = match body.get("percent") {
                None => 100,
                // 0 would inject nothing while `/status` showed the region as faulted.
                Some(v) => whole_number(v)
                    .filter(|p| (1..=100).contains(p))
                    .ok_or("\"percent\" must be a whole number 1-100 (DELETE clears a fault)")?,
            };
            let status = StatusCode::from_u16(status as u16).map_err(|e| e.to_string())?;
            Ok(Fault::Error {
                status,
                percent: percent as u8,
            })
        }
        "delay" => {
            let ms = body
                .get("delay_ms")
                .and_then(whole_number)
                .filter(|ms| (1..=600_000).contains(ms))
                .ok_or("\"delay_ms\" must be a whole number of milliseconds, 1 to 600000")?;
            Ok(Fault::Delay(Duration::from_millis(ms)))
        }
        other => Err(format!(
            "unknown fault mode {other:?}: use \"down\", \"error\" or \"delay\""
        )),
    }
}

async fn failover(state: &AppState, svc: &str, body: Value) -> AdminResponse {
    if let Some(extra) = body
        .as_object()
        .and_then(|o| o.keys().find(|k| k.as_str() != "write_region"))
    {
        return error(
            StatusCode::BAD_REQUEST,
            format!("unknown key {extra:?}: the body is {{\"write_region\": \"NAME\"}}"),
        );
    }
    let Some(target) = body.get("write_region").and_then(Value::as_str) else {
        return error(
            StatusCode::BAD_REQUEST,
            "body must be {\"write_region\": \"NAME\"}",
        );
    };
    let _no_reload = crate::reload::hold_off().await;
    let (entry, index) = match find(state, svc, target) {
        Ok(found) => found,
        Err(resp) => return resp,
    };
    let service = entry.slot.load_full();
    let _one_move_at_a_time = service.write_move.lock().await;
    let snapshot = service.health.snapshot();
    // A drained region takes no traffic by the operator's own order: writes pinned there
    // would all be refused. An unhealthy one is allowed (health checks can be wrong, and a
    // failover during an outage is when this is used).
    if snapshot.regions.get(index).map(|r| r.state) == Some(RegionState::Drained) {
        return error(
            StatusCode::CONFLICT,
            format!("region {target} is drained: undrain it before moving writes there"),
        );
    }
    let previous = snapshot
        .write_region()
        .map(|i| service.config.regions[i].name.clone());
    tracing::warn!(
        service = svc,
        from = previous.as_deref().unwrap_or("none"),
        to = target,
        "admin: write region failover"
    );
    // New writes wait, in-flight writes finish on the old region, then the new one is published.
    let health = &service.health;
    let still_in_flight = service
        .writes
        .move_writes(service.config.request_timeout, async {
            health.send(HealthEvent::SetWrite { region: index }).await;
            health.sync().await;
        })
        .await;
    if still_in_flight > 0 {
        tracing::warn!(
            service = svc,
            still_in_flight,
            "write failover: writes still in flight after request_timeout"
        );
    }
    json_response(
        StatusCode::OK,
        &json!({ "service": svc, "write_region": target, "previous": previous }),
    )
}

fn status(state: &AppState) -> Value {
    let services: Vec<Value> = state
        .services
        .load()
        .iter()
        .map(|entry| {
            let service = entry.slot.load();
            let snap = service.health.snapshot();
            let active = snap.active();
            let regions: Vec<Value> = snap
                .regions
                .iter()
                .enumerate()
                .map(|(i, r)| {
                    json!({
                        "name": &*r.name,
                        "priority": r.priority,
                        "state": r.state.as_str(),
                        "active": active == Some(i),
                        "write": r.write,
                        "url": service.config.regions[i].url,
                    })
                })
                .collect();
            json!({
                "name": entry.name,
                "listen": entry.listen.to_string(),
                "active_region": active.map(|i| &*snap.regions[i].name),
                "write_region": snap.write_region().map(|i| &*snap.regions[i].name),
                "regions": regions,
            })
        })
        .collect();
    json!({ "services": services })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_bearer_scheme_is_case_insensitive_and_nothing_else_is_a_token() {
        assert_eq!(bearer_token("Bearer s3cret"), Some("s3cret"));
        assert_eq!(bearer_token("bearer s3cret"), Some("s3cret"));
        assert_eq!(bearer_token("BEARER  s3cret "), Some("s3cret"));
        assert_eq!(bearer_token("Basic s3cret"), None);
        assert_eq!(bearer_token("Bearer"), None);
        assert_eq!(bearer_token("s3cret"), None);
    }

    #[test]
    fn token_comparison_is_exact() {
        assert!(constant_time_eq(b"secret", b"secret"));
        assert!(!constant_time_eq(b"secret", b"secreT"));
        assert!(!constant_time_eq(b"secret", b"secret2"));
        assert!(!constant_time_eq(b"", b"x"));
    }

    #[test]
    fn fault_bodies_parse_or_explain() {
        assert_eq!(parse_fault(&json!({"mode": "down"})), Ok(Fault::Down));
        assert_eq!(
            parse_fault(&json!({"mode": "error", "status": 500, "percent": 50})),
            Ok(Fault::Error {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                percent: 50
            })
        );
        assert_eq!(
            parse_fault(&json!({"mode": "delay", "delay_ms": 500})),
            Ok(Fault::Delay(Duration::from_millis(500)))
        );
        assert!(parse_fault(&json!({"mode": "error", "percent": 101})).is_err());
        assert!(parse_fault(&json!({"mode": "error", "percent": 0})).is_err());
        assert!(parse_fault(&json!({"mode": "error", "percent": 50.5})).is_err());
        assert_eq!(
            parse_fault(&json!({"mode": "error", "status": 500.0, "percent": 1.0})),
            Ok(Fault::Error {
                status: StatusCode::INTERNAL_SERVER_ERROR,
                percent: 1
            })
        );
        assert_eq!(
            parse_fault(&json!({"mode": "delay", "delay_ms": 1e3})),
            Ok(Fault::Delay(Duration::from_secs(1)))
        );
        assert!(parse_fault(&json!({"mode": "delay", "delay_ms": 0})).is_err());
        assert!(parse_fault(&json!({"mode": "error", "status": 101})).is_err());
        assert!(parse_fault(&json!({"mode": "down", "extra": 1})).is_err());
        assert!(parse_fault(&json!({"mode": "delay", "status": 503, "delay_ms": 5})).is_err());
        assert!(parse_fault(&json!({"mode": "error", "status": 199})).is_err());
        assert!(parse_fault(&json!({"mode": "error", "status": 200})).is_ok());
        assert!(parse_fault(&json!({"mode": "meltdown"})).is_err());
        assert!(parse_fault(&Value::Null).is_err());
    }
}
