//! The policy seam: what a request's routing decision can be, and who makes it.
//!
//! The built-in [`DefaultPolicy`] routes by priority and health; WebAssembly plugins implement
//! the same trait (`plugin::PluginChain`), so the pipeline never knows which one it talks to.

use bytes::Bytes;
use http::{HeaderMap, Method, StatusCode};

use crate::health::HealthSnapshot;

/// What a policy sees of a request. Headers are borrowed, so nothing is copied unless asked.
pub struct RequestHead<'a> {
    /// Unique within the process, the same in every hook for one request ([`next_request_id`]).
    pub id: u64,
    pub method: &'a Method,
    /// Path and query as the client sent them.
    pub path: &'a str,
    pub headers: &'a HeaderMap,
    /// The authority the client addressed (`:authority`, else `Host`), if any.
    pub authority: Option<&'a str>,
}

/// A fresh request id for [`RequestHead::id`].
pub fn next_request_id() -> u64 {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(1);
    NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed)
}

/// A response a policy makes itself instead of forwarding.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalResponse {
    pub status: StatusCode,
    pub headers: Vec<(String, String)>,
    pub body: Bytes,
}

/// Where a request may go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Priority routing by health.
    Default,
    /// These regions first, in this order (those that are serviceable), then the default order.
    Prefer(Vec<String>),
    /// Only this region: fail rather than go elsewhere.
    Pin(String),
    /// Answer locally.
    Local(LocalResponse),
}

/// What to do with a region's response before it goes to the client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ResponseAction {
    Pass,
    /// Add or replace these headers.
    SetHeaders(Vec<(String, String)>),
    Replace(LocalResponse),
}

/// What to answer when no region could serve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UnavailableAction {
    /// The service's configured degraded answer.
    Default,
    /// The stale-if-error cache when it holds an entry, else the degraded answer.
    Stale,
    Local(LocalResponse),
}

/// A policy failed (a plugin trapped, ran too long, or decided something impossible) and its
/// `on_error` says the request must not go on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PolicyRefused {
    pub plugin: String,
}

/// Per-service routing policy. Calls are synchronous: a decision takes about a microsecond.
pub trait Policy: Send + Sync {
    fn on_request(
        &self,
        head: &RequestHead<'_>,
        snapshot: &HealthSnapshot,
    ) -> Result<Decision, PolicyRefused>;

    fn on_response(
        &self,
        _head: &RequestHead<'_>,
        _status: StatusCode,
        _region: &str,
        _headers: &HeaderMap,
    ) -> ResponseAction {
        ResponseAction::Pass
    }

    fn on_unavailable(&self, _head: &RequestHead<'_>) -> UnavailableAction {
        UnavailableAction::Default
    }

    /// Whether `on_response` does anything, so the pipeline can skip building its inputs.
    fn wants_responses(&self) -> bool {
        false
    }

    /// Hands the policy its service's health once the service starts (plugins report region
    /// latency from it).
    fn attach(&self, _health: &crate::health::HealthHandle) {}
}

/// Routing by priority and health alone.
pub struct DefaultPolicy;

impl Policy for DefaultPolicy {
    fn on_request(
        &self,
        _head: &RequestHead<'_>,
        _snapshot: &HealthSnapshot,
    ) -> Result<Decision, PolicyRefused> {
        Ok(Decision::Default)
    }
}
