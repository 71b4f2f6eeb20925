//! A mock host for unit-testing plugins natively (every target but wasm32).
//!
//! The [`host`](crate::host) functions read and write a thread-local mock; each `#[test]` runs
//! on its own thread, so tests do not see each other's state. A test sets up the mock with
//! [`MockHost`], calls the plugin's hooks directly, and checks decisions, logs, counters and
//! the key-value store.
//!
//! ```
//! use switchyard_sdk::testing::MockHost;
//! use switchyard_sdk::{Region, Request, host};
//!
//! let mock = MockHost::new();
//! mock.region(Region::new("westus", 0).write())
//!     .region(Region::new("northeurope", 1).unhealthy())
//!     .header("X-Session-Id", "abc");
//! assert_eq!(Request::new("GET", "/").header("x-session-id").as_deref(), Some("abc"));
//! assert_eq!(host::write_region().map(|r| r.name).as_deref(), Some("westus"));
//! ```

use std::cell::RefCell;
use std::collections::HashMap;
use std::marker::PhantomData;
use std::time::Duration;

use crate::types::{Header, Hook, LogLevel, Region};

#[derive(Default)]
struct State {
    headers: Vec<Header>,
    regions: Vec<Region>,
    /// Value and expiry time on the mock clock (`None`: no expiry).
    kv: HashMap<String, (Vec<u8>, Option<u64>)>,
    now_ms: u64,
    logs: Vec<(LogLevel, String)>,
    counters: HashMap<String, u64>,
    skipped: Vec<Hook>,
}

thread_local! {
    static STATE: RefCell<State> = RefCell::new(State::default());
}

fn with<R>(f: impl FnOnce(&mut State) -> R) -> R {
    STATE.with_borrow_mut(f)
}

/// Handle to this thread's mock host. Setters return `&Self` so they chain.
pub struct MockHost {
    /// The state is per thread; keep the handle on the thread that created it.
    _not_send: PhantomData<*const ()>,
}

impl Default for MockHost {
    fn default() -> Self {
        Self::new()
    }
}

impl MockHost {
    /// Resets this thread's mock host: no headers, no regions, empty store, clock at 0.
    pub fn new() -> Self {
        with(|s| *s = State::default());
        MockHost {
            _not_send: PhantomData,
        }
    }

    /// Adds a header to the request being handled.
    pub fn header(&self, name: &str, value: &str) -> &Self {
        with(|s| s.headers.push((name.to_owned(), value.to_owned())));
        self
    }

    /// Removes every header, as for the next request.
    pub fn clear_headers(&self) -> &Self {
        with(|s| s.headers.clear());
        self
    }

    /// Appends a region to the snapshot; add them in priority order.
    pub fn region(&self, region: Region) -> &Self {
        with(|s| s.regions.push(region));
        self
    }

    /// Marks a region healthy or not, as a health check would.
    pub fn set_healthy(&self, name: &str, healthy: bool) -> &Self {
        with(|s| {
            s.regions
                .iter_mut()
                .filter(|r| r.name == name)
                .for_each(|r| r.healthy = healthy)
        });
        self
    }

    /// Moves the mock clock forward.
    pub fn advance(&self, by: Duration) -> &Self {
        let by = u64::try_from(by.as_millis()).unwrap_or(u64::MAX);
        with(|s| s.now_ms = s.now_ms.saturating_add(by));
        self
    }

    /// A live (not expired) key-value entry.
    pub fn kv(&self, key: &str) -> Option<Vec<u8>> {
        mock::kv_get(key)
    }

    /// Every line logged so far, oldest first.
    pub fn logs(&self) -> Vec<(LogLevel, String)> {
        with(|s| s.logs.clone())
    }

    /// A counter's total; 0 if never added to.
    pub fn counter(&self, name: &str) -> u64 {
        with(|s| s.counters.get(name).copied().unwrap_or(0))
    }

    /// Whether the plugin told the host it leaves `hook` at its default (so the real host
    /// would stop calling it).
    pub fn skips(&self, hook: Hook) -> bool {
        with(|s| s.skipped.contains(&hook))
    }
}

/// The host functions behind [`crate::host`] on native targets.
pub(crate) mod mock {
    use super::*;

    pub(crate) fn get_header(name: &str) -> Option<String> {
        with(|s| {
            let values: Vec<&str> = s
                .headers
                .iter()
                .filter(|(n, _)| n.eq_ignore_ascii_case(name))
                .map(|(_, v)| v.as_str())
                .collect();
            (!values.is_empty()).then(|| values.join(", "))
        })
    }

    pub(crate) fn regions() -> crate::Regions {
        with(|s| s.regions.as_slice().into())
    }

    pub(crate) fn log(level: LogLevel, message: &str) {
        with(|s| s.logs.push((level, message.to_owned())))
    }

    pub(crate) fn skip_hook(hook: Hook) {
        with(|s| {
            if !s.skipped.contains(&hook) {
                s.skipped.push(hook);
            }
        })
    }

    pub(crate) fn counter_add(name: &str, delta: u64) {
        with(|s| {
            let total = s.counters.entry(name.to_owned()).or_default();
            *total = total.saturating_add(delta);
        })
    }

    pub(crate) fn kv_get(key: &str) -> Option<Vec<u8>> {
        with(|s| {
            let now = s.now_ms;
            match s.kv.get(key) {
                Some((_, Some(expires))) if *expires <= now => {
                    s.kv.remove(key);
                    None
                }
                entry => entry.map(|(value, _)| value.clone()),
            }
        })
    }

    pub(crate) fn kv_set(key: &str, value: &[u8], ttl_ms: u32) {
        with(|s| {
            let expires = (ttl_ms > 0).then(|| s.now_ms.saturating_add(u64::from(ttl_ms)));
            s.kv.insert(key.to_owned(), (value.to_owned(), expires));
        })
    }

    pub(crate) fn kv_delete(key: &str) {
        with(|s| {
            s.kv.remove(key);
        })
    }

    pub(crate) fn now_ms() -> u64 {
        with(|s| s.now_ms)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::host;

    #[test]
    fn headers_are_case_insensitive_and_repeats_are_joined() {
        let mock = MockHost::new();
        mock.header("Accept", "text/html").header("accept", "*/*");
        assert_eq!(
            host::get_header("ACCEPT").as_deref(),
            Some("text/html, */*")
        );
        assert_eq!(host::get_header("x-missing"), None);
        mock.clear_headers();
        assert_eq!(host::get_header("accept"), None);
    }

    #[test]
    fn kv_entries_expire_on_the_mock_clock() {
        let mock = MockHost::new();
        host::kv_set("short", b"1", Duration::from_secs(5));
        host::kv_set("forever", b"2", Duration::ZERO);
        mock.advance(Duration::from_millis(4_999));
        assert_eq!(host::kv_get("short").as_deref(), Some(&b"1"[..]));
        mock.advance(Duration::from_millis(1));
        assert_eq!(host::kv_get("short"), None);
        assert_eq!(mock.kv("forever").as_deref(), Some(&b"2"[..]));
        host::kv_delete("forever");
        assert_eq!(host::kv_get("forever"), None);
        assert_eq!(host::now_ms(), 5_000);
    }

    #[test]
    fn logs_counters_and_regions_are_recorded() {
        let mock = MockHost::new();
        mock.region(Region::new("westus", 0).write())
            .region(Region::new("northeurope", 1))
            .set_healthy("westus", false);
        host::log(LogLevel::Warn, "westus is down");
        host::counter_add("promoted", 2);
        host::counter_add("promoted", 1);
        assert_eq!(mock.logs(), [(LogLevel::Warn, "westus is down".to_owned())]);
        assert_eq!(mock.counter("promoted"), 3);
        assert_eq!(mock.counter("other"), 0);
        let write = host::write_region().expect("write region");
        assert!(!write.healthy);
        assert_eq!(host::regions().len(), 2);
    }

    #[test]
    fn new_resets_the_previous_state() {
        MockHost::new()
            .header("a", "1")
            .region(Region::new("westus", 0));
        host::kv_set("k", b"v", Duration::ZERO);
        MockHost::new();
        assert_eq!(host::get_header("a"), None);
        assert!(host::regions().is_empty());
        assert_eq!(host::kv_get("k"), None);
    }
}
