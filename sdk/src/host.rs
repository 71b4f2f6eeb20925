//! Functions the sidecar provides to plugins.
//!
//! On wasm32 they call the host through the component ABI; on any other target they are
//! backed by the thread-local [`MockHost`](crate::testing::MockHost), so plugin logic can be
//! unit-tested natively with `cargo test`.

use std::time::Duration;

use crate::types::{Hook, LogLevel, Region, Regions};

#[cfg(target_arch = "wasm32")]
use crate::guest::wasm as imp;
#[cfg(not(target_arch = "wasm32"))]
use crate::testing::mock as imp;

/// A header of the request being handled; `None` outside a request hook. Prefer
/// [`Request::header`](crate::Request::header).
pub fn get_header(name: &str) -> Option<String> {
    imp::get_header(name)
}

/// Every region of the service, by priority: the snapshot this request is routed with.
///
/// The list is kept between calls and fetched again only when the host says routing state
/// changed (`regions-version`), so calling this on every request is cheap; `latency_ms` may
/// be up to 100 ms old.
pub fn regions() -> Regions {
    imp::regions()
}

/// The service's current write region, if one is configured.
pub fn write_region() -> Option<Region> {
    regions().iter().find(|r| r.write).cloned()
}

/// Writes a line to the sidecar's log, tagged with the plugin and service.
pub fn log(level: LogLevel, message: &str) {
    imp::log(level, message)
}

/// Adds `delta` to the plugin's counter `name` (a short snake_case identifier).
pub fn counter_add(name: &str, delta: u64) {
    imp::counter_add(name, delta)
}

/// The value stored under `key`, if present and not expired.
///
/// The store belongs to this plugin in this service and is shared by all its instances in
/// the process. It is a cache: entries may be evicted early or cleared on reload.
pub fn kv_get(key: &str) -> Option<Vec<u8>> {
    imp::kv_get(key)
}

/// Stores `value` under `key` for `ttl`, replacing any previous value. `Duration::ZERO` keeps
/// it until evicted; any other ttl counts in whole milliseconds, at least 1 and at most
/// `u32::MAX` (about 49 days).
pub fn kv_set(key: &str, value: &[u8], ttl: Duration) {
    let ttl_ms = match ttl.as_millis() {
        0 if !ttl.is_zero() => 1,
        ms => u32::try_from(ms).unwrap_or(u32::MAX),
    };
    imp::kv_set(key, value, ttl_ms)
}

pub fn kv_delete(key: &str) {
    imp::kv_delete(key)
}

/// Milliseconds on the host's monotonic clock (not wall-clock time).
pub fn now_ms() -> u64 {
    imp::now_ms()
}

/// Tells the host that this plugin leaves `hook` at its default, so the host need not call it.
/// The SDK's default hooks call this; a plugin has no reason to.
pub(crate) fn skip_hook(hook: Hook) {
    imp::skip_hook(hook)
}
