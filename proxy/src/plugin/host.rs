//! What a plugin instance's store holds, and the host functions of `switchyard:policy/host`.
//!
//! The request a hook is about is lent to the host functions for the length of the
//! (synchronous) call through scoped thread-locals: `get-header` reads the borrowed
//! `HeaderMap` in place, so headers a plugin does not ask for cost nothing, and `regions`
//! reads the same snapshot the request is routed with.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Instant;

use http::HeaderMap;
use wasmtime::ResourceLimiter;
use wasmtime::component::ResourceTable;
use wasmtime_wasi::{WasiCtx, WasiCtxView, WasiView};

use super::bindings::{host, types};
use super::kv::KvStore;
use crate::health::{HealthHandle, HealthSnapshot};

/// Linear memory one instance may grow to.
pub const MEMORY_LIMIT: usize = 64 * 1024 * 1024;
/// Table elements one instance may have.
pub const TABLE_ELEMENTS: usize = 100_000;
/// Instances, tables and memories one store may create (a Rust component needs a handful).
pub const INSTANCES: usize = 32;
/// Longest plugin log line kept, in bytes.
const MAX_LOG: usize = 1024;
/// Log lines a plugin may write per second; the rest are dropped.
const LOGS_PER_SEC: u64 = 100;
/// How long a plugin may keep using a region list (its `latency-ms`) while routing state
/// stays the same: `regions-version` moves on at least this often.
const REGIONS_MAX_AGE_MS: u64 = 100;
/// Distinct counter names a plugin may use.
const MAX_COUNTERS: usize = 32;

scoped_tls::scoped_thread_local!(static HEADERS: HeaderMap);
scoped_tls::scoped_thread_local!(static SNAPSHOT: HealthSnapshot);

/// Runs `f` (a plugin call) with the request's headers and routing snapshot lent to the host
/// functions. Without a snapshot, `regions` reads the service's current one.
pub fn with_request<R>(
    headers: Option<&HeaderMap>,
    snapshot: Option<&HealthSnapshot>,
    f: impl FnOnce() -> R,
) -> R {
    match (headers, snapshot) {
        (Some(h), Some(s)) => HEADERS.set(h, || SNAPSHOT.set(s, f)),
        (Some(h), None) => HEADERS.set(h, f),
        (None, Some(s)) => SNAPSHOT.set(s, f),
        (None, None) => f(),
    }
}

/// What all instances of one plugin of one service share.
pub struct PluginShared {
    /// The plugin's file name, as logs and metrics show it.
    pub name: Arc<str>,
    pub service: Arc<str>,
    pub kv: Arc<KvStore>,
    /// The service's health, for region latency; set when the service starts.
    pub health: OnceLock<HealthHandle>,
    /// The regions as configured, for `regions` before `health` is set (during `init`).
    configured: HealthSnapshot,
    /// The plugin's counters by name, each also the Prometheus counter it is exported as.
    counters: Mutex<HashMap<String, prometheus_client::metrics::counter::Counter>>,
    /// (second since the process origin, lines logged in it).
    log_window: AtomicU64,
    /// Hooks the plugin said it leaves at their default (`skip-hook`).
    skips_response: AtomicBool,
    skips_unavailable: AtomicBool,
}

impl PluginShared {
    pub fn new(
        name: Arc<str>,
        service: Arc<str>,
        kv: Arc<KvStore>,
        configured: HealthSnapshot,
    ) -> Self {
        PluginShared {
            name,
            service,
            kv,
            health: OnceLock::new(),
            configured,
            counters: Mutex::new(HashMap::new()),
            log_window: AtomicU64::new(0),
            skips_response: AtomicBool::new(false),
            skips_unavailable: AtomicBool::new(false),
        }
    }

    fn skip_flag(&self, hook: types::Hook) -> &AtomicBool {
        match hook {
            types::Hook::OnResponse => &self.skips_response,
            types::Hook::OnUnavailable => &self.skips_unavailable,
        }
    }

    /// Whether the plugin said it leaves `hook` at its default, so calling it is pointless.
    pub fn skips(&self, hook: types::Hook) -> bool {
        self.skip_flag(hook).load(Ordering::Relaxed)
    }

    /// The plugin's counters (name, total), for tests and diagnostics.
    pub fn counters(&self) -> Vec<(String, u64)> {
        let mut all: Vec<_> = self
            .counters
            .lock()
            .map(|c| c.iter().map(|(k, v)| (k.clone(), v.get())).collect())
            .unwrap_or_default();
        all.sort();
        all
    }

    /// Whether another log line fits in this second's budget.
    fn may_log(&self) -> bool {
        let second = now_ms() / 1000;
        let window = self.log_window.load(Ordering::Relaxed);
        if window >> 32 != second {
            self.log_window.store(second << 32 | 1, Ordering::Relaxed);
            return true;
        }
        self.log_window.fetch_add(1, Ordering::Relaxed) & 0xffff_ffff < LOGS_PER_SEC
    }
}

/// Milliseconds since the process's plugin clock origin (monotonic, shared by all plugins).
pub fn now_ms() -> u64 {
    static ORIGIN: OnceLock<Instant> = OnceLock::new();
    let origin = *ORIGIN.get_or_init(Instant::now);
    u64::try_from(origin.elapsed().as_millis()).unwrap_or(u64::MAX)
}

/// `regions-version`: the snapshot generation (unique in the process, far below 2^40) in the
/// high bits, the number of [`REGIONS_MAX_AGE_MS`] periods in the low 24.
fn regions_version(generation: u64, now_ms: u64) -> u64 {
    (generation << 24) | ((now_ms / REGIONS_MAX_AGE_MS) & 0xff_ffff)
}

/// Memory and table caps of one store; records whether the memory cap was hit, so a trap
/// that follows is reported as a memory fault.
pub struct Limits {
    pub memory_exceeded: bool,
}

impl ResourceLimiter for Limits {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired > MEMORY_LIMIT {
            self.memory_exceeded = true;
            return Err(wasmtime::format_err!(
                "plugin memory limit of {} MiB exceeded (asked for {} MiB)",
                MEMORY_LIMIT >> 20,
                desired >> 20
            ));
        }
        Ok(true)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= TABLE_ELEMENTS)
    }

    fn instances(&self) -> usize {
        INSTANCES
    }

    fn tables(&self) -> usize {
        INSTANCES
    }

    fn memories(&self) -> usize {
        INSTANCES
    }
}

/// The data of one instance's store.
pub struct HostState {
    pub wasi: WasiCtx,
    pub table: ResourceTable,
    pub limits: Limits,
    pub shared: Arc<PluginShared>,
    /// Set when the current call ran past its wall-clock deadline (see `pool::on_deadline`).
    pub overtime: Option<Overtime>,
}

/// A call past its wall-clock deadline: the thread's CPU time then, and ticks granted since.
#[derive(Debug, Clone, Copy)]
pub struct Overtime {
    pub cpu_at_deadline: std::time::Duration,
    pub ticks: u64,
}

impl HostState {
    pub fn new(shared: Arc<PluginShared>) -> Self {
        HostState {
            wasi: super::wasi::context(&shared.name, &shared.service),
            table: ResourceTable::new(),
            limits: Limits {
                memory_exceeded: false,
            },
            shared,
            overtime: None,
        }
    }
}

impl WasiView for HostState {
    fn ctx(&mut self) -> WasiCtxView<'_> {
        WasiCtxView {
            ctx: &mut self.wasi,
            table: &mut self.table,
        }
    }
}

impl types::Host for HostState {}

impl HostState {
    /// `f` of the snapshot the current request is routed with, or else the service's current
    /// one, or before the service has started (during `init`) the regions as configured.
    fn with_snapshot<R>(&self, f: impl FnOnce(&HealthSnapshot) -> R) -> R {
        if SNAPSHOT.is_set() {
            return SNAPSHOT.with(f);
        }
        match self.shared.health.get() {
            Some(h) => f(&h.snapshot()),
            None => f(&self.shared.configured),
        }
    }
}

impl host::Host for HostState {
    fn get_header(&mut self, name: String) -> Option<String> {
        if !HEADERS.is_set() {
            return None;
        }
        HEADERS.with(|headers| {
            let mut joined: Option<String> = None;
            for value in headers.get_all(name.as_str()) {
                let Ok(text) = std::str::from_utf8(value.as_bytes()) else {
                    continue;
                };
                match &mut joined {
                    Some(j) => {
                        j.push_str(", ");
                        j.push_str(text);
                    }
                    None => joined = Some(text.to_owned()),
                }
            }
            joined
        })
    }

    fn regions(&mut self) -> Vec<types::RegionInfo> {
        let health = self.shared.health.get();
        let build = |snapshot: &HealthSnapshot| {
            // Snapshots keep regions sorted by priority, as this function promises.
            snapshot
                .regions
                .iter()
                .enumerate()
                .map(|(i, r)| types::RegionInfo {
                    name: r.name.to_string(),
                    priority: r.priority,
                    healthy: r.serviceable,
                    write: r.write,
                    latency_ms: health
                        .and_then(|h| h.counters(i))
                        .map_or(0, |c| c.latency_ms()),
                })
                .collect()
        };
        self.with_snapshot(build)
    }

    fn regions_version(&mut self) -> u64 {
        regions_version(self.with_snapshot(|s| s.generation), now_ms())
    }

    fn log(&mut self, level: types::LogLevel, message: String) {
        if !self.shared.may_log() {
            return;
        }
        let mut end = message.len().min(MAX_LOG);
        while !message.is_char_boundary(end) {
            end -= 1;
        }
        let (plugin, service, message) =
            (&*self.shared.name, &*self.shared.service, &message[..end]);
        match level {
            types::LogLevel::Trace => tracing::trace!(plugin, service, "{message}"),
            types::LogLevel::Debug => tracing::debug!(plugin, service, "{message}"),
            types::LogLevel::Info => tracing::info!(plugin, service, "{message}"),
            types::LogLevel::Warn => tracing::warn!(plugin, service, "{message}"),
            types::LogLevel::Error => tracing::error!(plugin, service, "{message}"),
        }
    }

    fn counter_add(&mut self, name: String, delta: u64) {
        let valid = !name.is_empty()
            && name.len() <= 64
            && name
                .bytes()
                .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid {
            return;
        }
        let Ok(mut counters) = self.shared.counters.lock() else {
            return;
        };
        if let Some(counter) = counters.get(&name) {
            counter.inc_by(delta);
        } else if counters.len() < MAX_COUNTERS {
            let shared = &self.shared;
            let counter =
                crate::telemetry::metrics().plugin_counter(&shared.service, &shared.name, &name);
            counter.inc_by(delta);
            counters.insert(name, counter);
        }
    }

    fn skip_hook(&mut self, hook: types::Hook) {
        self.shared.skip_flag(hook).store(true, Ordering::Relaxed);
    }

    fn kv_get(&mut self, key: String) -> Option<Vec<u8>> {
        self.shared.kv.get(&key)
    }

    fn kv_set(&mut self, key: String, value: Vec<u8>, ttl_ms: u32) {
        self.shared.kv.set(&key, &value, ttl_ms);
    }

    fn kv_delete(&mut self, key: String) {
        self.shared.kv.delete(&key);
    }

    fn now_ms(&mut self) -> u64 {
        now_ms()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_regions_version_moves_with_the_snapshot_and_with_time() {
        let v = regions_version(7, 1_000);
        assert_eq!(regions_version(7, 1_099), v, "same snapshot, same period");
        assert_ne!(
            regions_version(7, 1_100),
            v,
            "a new period: latency may have moved"
        );
        assert_ne!(regions_version(8, 1_000), v, "a new snapshot");
        assert_ne!(regions_version(8, 1_000), regions_version(7, 1_100));
    }
}
