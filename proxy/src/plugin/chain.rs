//! `PluginChain`: a service's plugins as one [`Policy`].
//!
//! Plugins run in configuration order and the first answer that is not "default" (or "pass")
//! wins. Every answer is checked before it is used: a region the service does not have, or a
//! status outside 200..=599, is a bad decision. A fault of any kind (trap, deadline, memory,
//! bad decision, failed instantiation) is logged, counted, and resolved by the plugin's
//! `on_error`: `fail-open` goes on as if the plugin had answered "default", `fail-closed`
//! refuses the request (503, `x-switchyard-error: plugin`). A plugin that keeps failing trips
//! a breaker and is skipped, with its `on_error` applied, for a cool-down.

use std::sync::atomic::{AtomicU32, AtomicU64, Ordering};

use bytes::Bytes;
use http::{HeaderMap, StatusCode};

use super::bindings::types as wit;
use super::host::{now_ms, with_request};
use super::pool::{Fault, FaultKind, Instances};
use crate::config::OnError;
use crate::health::{HealthHandle, HealthSnapshot};
use crate::policy::{
    Decision, LocalResponse, Policy, PolicyRefused, RequestHead, ResponseAction, UnavailableAction,
};
use crate::telemetry::log_limit::LogLimit;

/// Consecutive faults that open a plugin's breaker...
pub const BREAKER_FAULTS: u32 = 5;
/// ...when they happen within this many milliseconds of the first...
pub const BREAKER_WINDOW_MS: u64 = 10_000;
/// ...for this long, during which the plugin is not called.
pub const BREAKER_COOLDOWN_MS: u64 = 5_000;

/// A failing plugin's faults are logged at most once per this many seconds (each log line says
/// how many were held back; the error metric counts every one).
pub const FAULT_LOG_PERIOD_SECS: u64 = 5;

/// Headers a plugin may not set: the host frames the body and owns the connection.
const FORBIDDEN: &[&str] = &[
    "content-length",
    "transfer-encoding",
    "connection",
    "keep-alive",
    "proxy-connection",
    "te",
    "trailer",
    "upgrade",
    "x-switchyard-region",
    "x-switchyard-attempts",
];

/// One plugin in a chain.
pub struct ChainPlugin {
    pub instances: Instances,
    pub on_error: OnError,
    breaker: Breaker,
    /// A plugin that fails on every request would otherwise log every request.
    fault_log: LogLimit,
}

impl ChainPlugin {
    pub fn new(instances: Instances, on_error: OnError) -> Self {
        ChainPlugin {
            instances,
            on_error,
            breaker: Breaker::default(),
            fault_log: LogLimit::every(FAULT_LOG_PERIOD_SECS),
        }
    }

    fn name(&self) -> &str {
        &self.instances.shared.name
    }
}

pub struct PluginChain {
    plugins: Vec<ChainPlugin>,
}

impl PluginChain {
    pub fn new(plugins: Vec<ChainPlugin>) -> Self {
        PluginChain { plugins }
    }

    pub fn plugins(&self) -> &[ChainPlugin] {
        &self.plugins
    }

    /// Logs and counts a fault, feeds the breaker, and applies `on_error`.
    fn fault(&self, p: &ChainPlugin, fault: &Fault) -> Result<(), PolicyRefused> {
        let (plugin, service) = (p.name(), &*p.instances.shared.service);
        // The one metrics call site for plugin faults.
        crate::telemetry::metrics().plugin_error(plugin, fault.kind.as_str());
        if let Some(held_back) = p.fault_log.check() {
            tracing::warn!(
                plugin,
                service,
                kind = fault.kind.as_str(),
                held_back,
                "plugin failed: {}",
                fault.message
            );
        }
        if p.breaker.record_fault(now_ms()) {
            tracing::error!(
                plugin,
                service,
                cooldown_ms = BREAKER_COOLDOWN_MS,
                "plugin failed {BREAKER_FAULTS} times in a row: skipping it (on_error applies) for the cool-down"
            );
        }
        self.on_error(p)
    }

    fn on_error(&self, p: &ChainPlugin) -> Result<(), PolicyRefused> {
        match p.on_error {
            OnError::FailOpen => Ok(()),
            OnError::FailClosed => Err(PolicyRefused {
                plugin: p.name().to_owned(),
            }),
        }
    }

    /// Runs `hook` on each plugin in order until one answers something other than the
    /// default (`convert` returns `Some`), applying `on_error` to faults. Plugins that said
    /// they leave hook `skippable` at its default are not called.
    fn run<W, T>(
        &self,
        skippable: Option<wit::Hook>,
        mut hook: impl FnMut(&ChainPlugin) -> Result<W, Fault>,
        mut convert: impl FnMut(W) -> Result<Option<T>, String>,
    ) -> Result<Option<T>, PolicyRefused> {
        for p in &self.plugins {
            if skippable.is_some_and(|h| p.instances.shared.skips(h)) {
                continue;
            }
            if p.breaker.is_open(now_ms) {
                self.on_error(p)?;
                continue;
            }
            let answer = hook(p).and_then(|w| {
                convert(w).map_err(|message| Fault {
                    kind: FaultKind::BadDecision,
                    message,
                })
            });
            match answer {
                Ok(Some(t)) => {
                    p.breaker.record_success();
                    return Ok(Some(t));
                }
                Ok(None) => p.breaker.record_success(),
                Err(fault) => self.fault(p, &fault)?,
            }
        }
        Ok(None)
    }
}

impl Policy for PluginChain {
    fn on_request(
        &self,
        head: &RequestHead<'_>,
        snapshot: &HealthSnapshot,
    ) -> Result<Decision, PolicyRefused> {
        let req = wit_head(head);
        let decided = with_request(Some(head.headers), Some(snapshot), || {
            self.run(
                None,
                |p| {
                    p.instances.call(|store, b| {
                        b.switchyard_policy_plugin()
                            .call_on_request(store, req.clone())
                    })
                },
                |d| decision(d, snapshot),
            )
        })?;
        Ok(decided.unwrap_or(Decision::Default))
    }

    fn on_response(
        &self,
        head: &RequestHead<'_>,
        status: StatusCode,
        region: &str,
        headers: &HeaderMap,
    ) -> ResponseAction {
        let req = wit_head(head);
        // As the region sent them: the host's own `x-switchyard-*` headers are not shown.
        let shown: Vec<(&str, &str)> = headers
            .iter()
            .filter(|(n, _)| !n.as_str().starts_with("x-switchyard-"))
            .filter_map(|(n, v)| Some((n.as_str(), std::str::from_utf8(v.as_bytes()).ok()?)))
            .collect();
        let resp = wit::ResponseHead {
            status: status.as_u16(),
            region,
            headers: &shown,
        };
        let acted = with_request(Some(head.headers), None, || {
            self.run(
                Some(wit::Hook::OnResponse),
                |p| {
                    p.instances.call(|store, b| {
                        b.switchyard_policy_plugin().call_on_response(
                            store,
                            req.clone(),
                            resp.clone(),
                        )
                    })
                },
                response_action,
            )
        });
        match acted {
            Ok(action) => action.unwrap_or(ResponseAction::Pass),
            Err(_) => ResponseAction::Replace(refused_response()),
        }
    }

    fn on_unavailable(&self, head: &RequestHead<'_>) -> UnavailableAction {
        let req = wit_head(head);
        let acted = with_request(Some(head.headers), None, || {
            self.run(
                Some(wit::Hook::OnUnavailable),
                |p| {
                    p.instances.call(|store, b| {
                        b.switchyard_policy_plugin()
                            .call_on_unavailable(store, req.clone())
                    })
                },
                unavailable_action,
            )
        });
        match acted {
            Ok(action) => action.unwrap_or(UnavailableAction::Default),
            Err(_) => UnavailableAction::Local(refused_response()),
        }
    }

    fn wants_responses(&self) -> bool {
        self.plugins
            .iter()
            .any(|p| !p.instances.shared.skips(wit::Hook::OnResponse))
    }

    fn attach(&self, health: &HealthHandle) {
        for p in &self.plugins {
            let _ = p.instances.shared.health.set(health.clone());
        }
    }
}

/// The request head as plugins see it.
fn wit_head<'a>(head: &RequestHead<'a>) -> wit::RequestHead<'a> {
    wit::RequestHead {
        id: head.id,
        method: head.method.as_str(),
        path: head.path,
        authority: head.authority,
    }
}

/// What a fail-closed plugin fault answers where the hook cannot refuse the request itself.
fn refused_response() -> LocalResponse {
    LocalResponse {
        status: StatusCode::SERVICE_UNAVAILABLE,
        headers: vec![
            ("content-type".into(), "text/plain".into()),
            ("x-switchyard-error".into(), "plugin".into()),
        ],
        body: Bytes::from_static(b"plugin\n"),
    }
}

fn known(name: &str, snapshot: &HealthSnapshot) -> Result<(), String> {
    match snapshot.index_of(name) {
        Some(_) => Ok(()),
        None => Err(format!(
            "decision names region {name:?}, which the service does not have"
        )),
    }
}

fn decision(d: wit::Decision, snapshot: &HealthSnapshot) -> Result<Option<Decision>, String> {
    Ok(Some(match d {
        wit::Decision::Default => return Ok(None),
        wit::Decision::Prefer(names) => {
            names.iter().try_for_each(|n| known(n, snapshot))?;
            Decision::Prefer(names)
        }
        wit::Decision::Pin(name) => {
            known(&name, snapshot)?;
            Decision::Pin(name)
        }
        wit::Decision::Local(l) => Decision::Local(local(l)?),
    }))
}

fn response_action(a: wit::ResponseAction) -> Result<Option<ResponseAction>, String> {
    Ok(Some(match a {
        wit::ResponseAction::Pass => return Ok(None),
        wit::ResponseAction::SetHeaders(h) => ResponseAction::SetHeaders(allowed(h)?),
        wit::ResponseAction::Replace(l) => ResponseAction::Replace(local(l)?),
    }))
}

fn unavailable_action(a: wit::UnavailableAction) -> Result<Option<UnavailableAction>, String> {
    Ok(Some(match a {
        wit::UnavailableAction::Default => return Ok(None),
        wit::UnavailableAction::Stale => UnavailableAction::Stale,
        wit::UnavailableAction::Local(l) => UnavailableAction::Local(local(l)?),
    }))
}

fn local(l: wit::LocalResponse) -> Result<LocalResponse, String> {
    let status = StatusCode::from_u16(l.status)
        .ok()
        .filter(|_| (200..=599).contains(&l.status))
        .ok_or_else(|| format!("local response status {} is not 200..=599", l.status))?;
    Ok(LocalResponse {
        status,
        headers: allowed(l.headers)?,
        body: Bytes::from(l.body),
    })
}

/// The headers a plugin may set, without the host's own; a name or value that is not valid
/// HTTP is a bad decision (dropping it silently would hide the plugin's bug).
fn allowed(headers: Vec<(String, String)>) -> Result<Vec<(String, String)>, String> {
    for (name, value) in &headers {
        if http::HeaderName::from_bytes(name.as_bytes()).is_err() {
            return Err(format!("header name {name:?} is not valid HTTP"));
        }
        if http::HeaderValue::from_str(value).is_err() {
            return Err(format!("header {name}: value {value:?} is not valid HTTP"));
        }
    }
    Ok(headers
        .into_iter()
        .filter(|(n, _)| !FORBIDDEN.iter().any(|f| n.eq_ignore_ascii_case(f)))
        .collect())
}

/// Opens after [`BREAKER_FAULTS`] consecutive faults within [`BREAKER_WINDOW_MS`].
#[derive(Default)]
struct Breaker {
    consecutive: AtomicU32,
    /// When the current streak started (ms on the plugin clock).
    streak_start: AtomicU64,
    /// Until when the plugin is skipped; 0: closed.
    open_until: AtomicU64,
}

impl Breaker {
    /// `now` is only read when the breaker has opened (a clock read per call is measurable).
    fn is_open(&self, now: impl FnOnce() -> u64) -> bool {
        let until = self.open_until.load(Ordering::Relaxed);
        until != 0 && now() < until
    }

    fn record_success(&self) {
        if self.consecutive.load(Ordering::Relaxed) != 0 {
            self.consecutive.store(0, Ordering::Relaxed);
        }
    }

    /// Counts a fault; true when this one opened the breaker.
    fn record_fault(&self, now: u64) -> bool {
        let n = self.consecutive.fetch_add(1, Ordering::Relaxed) + 1;
        if n == 1
            || now.saturating_sub(self.streak_start.load(Ordering::Relaxed)) > BREAKER_WINDOW_MS
        {
            self.streak_start.store(now, Ordering::Relaxed);
            self.consecutive.store(1, Ordering::Relaxed);
            return false;
        }
        if n >= BREAKER_FAULTS {
            self.consecutive.store(0, Ordering::Relaxed);
            self.open_until
                .store(now + BREAKER_COOLDOWN_MS, Ordering::Relaxed);
            return true;
        }
        false
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_breaker_opens_after_a_streak_and_closes_after_the_cooldown() {
        let b = Breaker::default();
        for i in 0..BREAKER_FAULTS - 1 {
            assert!(!b.record_fault(1_000 + u64::from(i)));
        }
        assert!(!b.is_open(|| 1_010));
        assert!(b.record_fault(1_010));
        assert!(b.is_open(|| 1_011));
        assert!(!b.is_open(|| 1_010 + BREAKER_COOLDOWN_MS));
    }

    #[test]
    fn a_success_or_a_slow_streak_resets_the_count() {
        let b = Breaker::default();
        for i in 0..BREAKER_FAULTS - 1 {
            b.record_fault(u64::from(i));
        }
        b.record_success();
        assert!(!b.record_fault(10));
        let slow = Breaker::default();
        for i in 0..u64::from(BREAKER_FAULTS) * 2 {
            assert!(!slow.record_fault(1 + i * (BREAKER_WINDOW_MS / 2)), "{i}");
        }
    }

    #[test]
    fn bad_decisions_are_caught() {
        let snapshot = HealthSnapshot::default();
        assert!(decision(wit::Decision::Pin("nowhere".into()), &snapshot).is_err());
        assert!(decision(wit::Decision::Prefer(vec!["x".into()]), &snapshot).is_err());
        let bad = wit::LocalResponse {
            status: 42,
            headers: vec![],
            body: vec![],
        };
        assert!(decision(wit::Decision::Local(bad), &snapshot).is_err());
        let ok = wit::LocalResponse {
            status: 200,
            headers: vec![
                ("Content-Length".into(), "9".into()),
                ("a".into(), "b".into()),
            ],
            body: b"x".to_vec(),
        };
        let Ok(Some(Decision::Local(l))) = decision(wit::Decision::Local(ok), &snapshot) else {
            panic!("valid local response refused");
        };
        assert_eq!(l.headers, vec![("a".to_string(), "b".to_string())]);
        assert_eq!(decision(wit::Decision::Default, &snapshot), Ok(None));
        for (name, value) in [("content-type", "a\nb"), ("bad name", "x"), ("x", "nul\0")] {
            let bad = wit::LocalResponse {
                status: 200,
                headers: vec![(name.into(), value.into())],
                body: vec![],
            };
            assert!(
                decision(wit::Decision::Local(bad), &snapshot).is_err(),
                "{name:?}"
            );
        }
    }
}
