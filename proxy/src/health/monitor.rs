//! The per-service health monitor: the one owner of region health, publishing snapshots.
//!
//! Probe loops, the outlier detector and the admin API send it events; it applies them to each
//! region's state machine, wakes itself when an ejection or a failback delay ends, and swaps in
//! a new [`HealthSnapshot`] whenever the picture changes. The data path only reads snapshots and
//! bumps per-region atomics, so it never waits on this task.

use std::sync::Arc;
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::sync::mpsc;
use tokio::time::Instant;

use super::snapshot::{HealthSnapshot, RegionView};
use super::state::{RegionHealth, RegionState};
use crate::config::ServiceConfig;
use crate::telemetry::log_limit::LogLimit;
use crate::telemetry::{NO_REGION, metrics, traces};

/// Something that changes a region's health.
#[derive(Debug)]
pub enum HealthEvent {
    Probe {
        region: usize,
        ok: bool,
    },
    /// The outlier detector saw `consecutive_failures` failed requests in a row.
    Eject {
        region: usize,
    },
    Drain {
        region: usize,
        drained: bool,
    },
    Fault {
        region: usize,
        faulted: bool,
    },
    SetWrite {
        region: usize,
    },
    /// Sends a copy of every region's health, for a reload to carry over.
    Export(tokio::sync::oneshot::Sender<HealthMonitorState>),
    /// Ends the monitor, handing its state back.
    Stop,
}

/// Hot-path counters of one region, shared with the data path.
#[derive(Debug, Default)]
pub struct RegionCounters {
    consecutive_failures: AtomicU32,
    /// Smoothed latency of successful attempts, in microseconds (for plugins).
    latency_us: AtomicU32,
}

impl RegionCounters {
    pub fn latency_ms(&self) -> u32 {
        self.latency_us.load(Ordering::Relaxed) / 1000
    }
}

/// The data path's handle: read the snapshot, report outcomes, send admin events.
#[derive(Clone)]
pub struct HealthHandle {
    snapshot: Arc<ArcSwap<HealthSnapshot>>,
    counters: Arc<[RegionCounters]>,
    events: mpsc::Sender<HealthEvent>,
    eject_after: u32,
}

impl HealthHandle {
    pub fn snapshot(&self) -> arc_swap::Guard<Arc<HealthSnapshot>> {
        self.snapshot.load()
    }

    pub fn snapshot_full(&self) -> Arc<HealthSnapshot> {
        self.snapshot.load_full()
    }

    pub fn counters(&self, region: usize) -> Option<&RegionCounters> {
        self.counters.get(region)
    }

    /// Clears the failure streak: the region served a request completely.
    pub fn clear_failures(&self, region: usize) {
        if let Some(c) = self.counters.get(region)
            && c.consecutive_failures.load(Ordering::Relaxed) != 0
        {
            c.consecutive_failures.store(0, Ordering::Relaxed);
        }
    }

    /// Updates the region's latency with the time one attempt took to its response head.
    pub fn report_latency(&self, region: usize, latency: Duration) {
        let Some(c) = self.counters.get(region) else {
            return;
        };
        let sample = u32::try_from(latency.as_micros()).unwrap_or(u32::MAX);
        let old = c.latency_us.load(Ordering::Relaxed);
        // EWMA with alpha 1/8; a lost update under a race only delays smoothing.
        let new = if old == 0 {
            sample
        } else {
            old - old / 8 + sample / 8
        };
        c.latency_us.store(new, Ordering::Relaxed);
    }

    /// Records a failed attempt; the failure that completes the streak asks for an ejection.
    pub fn report_failure(&self, region: usize) {
        let Some(c) = self.counters.get(region) else {
            return;
        };
        let n = c.consecutive_failures.fetch_add(1, Ordering::Relaxed) + 1;
        if n == self.eject_after {
            if traces::enabled() {
                let snapshot = self.snapshot.load();
                traces::ejection_event(snapshot.regions.get(region).map_or("", |r| &r.name));
            }
            // Full channel: the monitor is behind on events; the next streak asks again.
            let _ = self.events.try_send(HealthEvent::Eject { region });
        }
    }

    /// Queues an event for the monitor.
    pub async fn send(&self, event: HealthEvent) -> bool {
        self.events.send(event).await.is_ok()
    }

    /// Waits until the monitor has applied and published every event sent before.
    pub async fn sync(&self) {
        let _ = self.export().await;
    }

    /// A copy of every region's health, to carry over a reload.
    pub async fn export(&self) -> Option<HealthMonitorState> {
        let (tx, rx) = tokio::sync::oneshot::channel();
        self.events.send(HealthEvent::Export(tx)).await.ok()?;
        rx.await.ok()
    }

    pub fn event_sender(&self) -> mpsc::Sender<HealthEvent> {
        self.events.clone()
    }
}

/// The monitor task's state.
pub struct HealthMonitor {
    config: Arc<ServiceConfig>,
    regions: Vec<RegionHealth>,
    write: Option<usize>,
    /// Serviceability at the last publish, to detect recoveries.
    was_serviceable: Vec<bool>,
    snapshot: Arc<ArcSwap<HealthSnapshot>>,
    counters: Arc<[RegionCounters]>,
    /// Ejections held back by [`HealthMonitor::ejection_held_back`]: one line per 10 s.
    held_back_log: LogLimit,
}

impl HealthMonitor {
    /// Creates the monitor and its handle. `previous` carries health over a reload for regions
    /// that keep their name.
    pub fn new(
        config: Arc<ServiceConfig>,
        previous: Option<&HealthMonitorState>,
    ) -> (Self, HealthHandle, mpsc::Receiver<HealthEvent>) {
        let (tx, rx) = mpsc::channel(1024);
        let mut regions = Vec::with_capacity(config.regions.len());
        for r in &config.regions {
            let carried = previous.and_then(|p| p.take(&r.name));
            regions.push(carried.unwrap_or_default());
        }
        // What was not carried over left the config: its gauges must not say healthy or active.
        for gone in previous.map(HealthMonitorState::names).unwrap_or_default() {
            metrics().forget_region(&config.name, &gone);
        }
        let counters: Arc<[RegionCounters]> = config
            .regions
            .iter()
            .map(|_| RegionCounters::default())
            .collect();
        let configured = config.regions.iter().position(|r| r.write);
        let write = previous
            .and_then(|p| p.carried_write(&config))
            .or(configured);
        let mut monitor = HealthMonitor {
            was_serviceable: vec![true; regions.len()],
            regions,
            write,
            snapshot: Arc::new(ArcSwap::from_pointee(HealthSnapshot::default())),
            counters: counters.clone(),
            config: config.clone(),
            held_back_log: LogLimit::every(10),
        };
        monitor.publish(Instant::now());
        let handle = HealthHandle {
            snapshot: monitor.snapshot.clone(),
            counters,
            events: tx,
            eject_after: config.outlier.consecutive_failures.max(1),
        };
        (monitor, handle, rx)
    }

    /// Runs until told to stop or every sender is gone; returns the region states.
    pub async fn run(mut self, mut events: mpsc::Receiver<HealthEvent>) -> HealthMonitorState {
        loop {
            let wake = self.next_wake(Instant::now());
            tokio::select! {
                event = events.recv() => match event {
                    Some(HealthEvent::Stop) | None => return self.into_state(),
                    Some(event) => self.apply(event),
                },
                _ = sleep_until_opt(wake) => {}
            }
            self.publish(Instant::now());
        }
    }

    fn apply(&mut self, event: HealthEvent) {
        let now = Instant::now();
        let service = &self.config.name;
        match event {
            HealthEvent::Probe { region, ok } => {
                let Some(h) = self.regions.get_mut(region) else {
                    return;
                };
                if h.on_probe(ok, &self.config.health) {
                    let verdict = if ok { "healthy" } else { "unhealthy" };
                    tracing::info!(service = %service, region = %self.config.regions[region].name,
                        "active health checks: region is {verdict}");
                }
            }
            HealthEvent::Eject { region } => {
                if let Some(why) = self.ejection_held_back(region, now) {
                    if let Some(held_back) = self.held_back_log.check() {
                        tracing::warn!(service = %service,
                            region = %self.config.regions[region].name, held_back,
                            "outlier detection: region not ejected after consecutive failures: {why}");
                    }
                } else if let Some(h) = self.regions.get_mut(region)
                    && let Some(length) = h.eject(now, &self.config.outlier)
                {
                    tracing::warn!(service = %service, region = %self.config.regions[region].name,
                            ejection_ms = length.as_millis() as u64,
                            "outlier detection: region ejected after consecutive failures");
                }
                if let Some(c) = self.counters.get(region) {
                    c.consecutive_failures.store(0, Ordering::Relaxed);
                }
            }
            HealthEvent::Drain { region, drained } => {
                if let Some(h) = self.regions.get_mut(region) {
                    h.drained = drained;
                }
            }
            HealthEvent::Fault { region, faulted } => {
                if let Some(h) = self.regions.get_mut(region) {
                    h.faulted = faulted;
                }
            }
            HealthEvent::SetWrite { region } => {
                if region < self.regions.len() {
                    self.write = Some(region);
                }
            }
            HealthEvent::Export(reply) => {
                let _ = reply.send(self.export());
            }
            HealthEvent::Stop => {}
        }
    }

    /// Why ejecting `region` now would do more harm than good, if it would: it is the last
    /// region that can serve. Failures every region shares (one endpoint that answers 500
    /// everywhere, a bad deploy of the app) ejected them all, and in an outage the one
    /// region left that passes its checks was ejected with the others, so routing fell back
    /// to trying dead regions by priority first (round 9b). Active health checks still take
    /// any region out. (Envoy's `max_ejection_percent` guards the same way; a cap below all
    /// but one would keep a second failed region in rotation when two of three go down.)
    fn ejection_held_back(&self, region: usize, now: Instant) -> Option<&'static str> {
        let h = self.regions.get(region)?;
        if h.is_ejected(now) {
            return None;
        }
        let others_serve = (self.regions.iter().enumerate())
            .any(|(i, other)| i != region && other.serviceable(now));
        (!others_serve).then_some("it is the last region that can serve")
    }

    /// The next moment the picture changes by itself: an ejection ends or a failback delay passes.
    fn next_wake(&self, now: Instant) -> Option<Instant> {
        let stable_for = self.config.failback.stable_for;
        self.regions
            .iter()
            .flat_map(|h| {
                let stable_at = h.stable_at(stable_for).filter(|at| *at > now);
                [h.ejection_end(now), stable_at]
            })
            .flatten()
            .min()
    }

    fn publish(&mut self, now: Instant) {
        let stable_for = self.config.failback.stable_for;
        let mut views = Vec::with_capacity(self.regions.len());
        for (i, (h, cfg)) in self
            .regions
            .iter_mut()
            .zip(&self.config.regions)
            .enumerate()
        {
            let serviceable = h.serviceable(now);
            if serviceable && !self.was_serviceable[i] {
                h.mark_recovered(now);
            }
            self.was_serviceable[i] = serviceable;
            let stable = h.stable(now, stable_for);
            views.push(RegionView {
                name: cfg.name.as_str().into(),
                priority: cfg.priority,
                state: h.state(now),
                write: self.write == Some(i),
                serviceable,
                stable,
                recovering_since: h.recovered_at().filter(|_| serviceable && !stable),
            });
        }
        let next = HealthSnapshot::new(views);
        let current = self.snapshot.load();
        let before = current.active().map(|i| current.regions[i].name.clone());
        let after = next.active().map(|i| next.regions[i].name.clone());
        let service = &self.config.name;
        if before != after && !current.regions.is_empty() {
            let (from, to) = (
                before.as_deref().unwrap_or(NO_REGION),
                after.as_deref().unwrap_or(NO_REGION),
            );
            tracing::warn!(service = %service, from, to, "active region changed");
            metrics().failover(service, from, to);
        }
        let active = next.active();
        for (i, r) in next.regions.iter().enumerate() {
            metrics().region_state(service, &r.name, r.serviceable, active == Some(i));
        }
        if !same_picture(&current, &next) {
            self.snapshot.store(Arc::new(next));
        }
    }

    fn into_state(self) -> HealthMonitorState {
        self.export()
    }

    fn export(&self) -> HealthMonitorState {
        let names = self.config.regions.iter().map(|r| r.name.clone());
        let name = |i: Option<usize>| i.map(|i| self.config.regions[i].name.clone());
        HealthMonitorState {
            regions: std::sync::Mutex::new(names.zip(self.regions.iter().cloned()).collect()),
            write: name(self.write),
            configured_write: name(self.config.regions.iter().position(|r| r.write)),
        }
    }
}

/// Region health carried across a reload, keyed by region name.
#[derive(Debug)]
pub struct HealthMonitorState {
    regions: std::sync::Mutex<Vec<(String, RegionHealth)>>,
    /// The write region at export: where a manual failover may have moved it.
    write: Option<String>,
    /// The write region the config named at export.
    configured_write: Option<String>,
}

impl HealthMonitorState {
    /// The write region to keep across a reload: the one a manual failover chose, as long as
    /// the new config names the same write region as the old one (an operator who edits
    /// `write` in the file means it) and still has that region.
    fn carried_write(&self, next: &ServiceConfig) -> Option<usize> {
        let next_configured = next.regions.iter().find(|r| r.write).map(|r| &r.name);
        if next_configured != self.configured_write.as_ref() {
            return None;
        }
        let moved = self.write.as_ref()?;
        let i = next.regions.iter().position(|r| &r.name == moved)?;
        if Some(moved) != self.configured_write.as_ref() {
            tracing::info!(
                service = %next.name,
                write_region = %moved,
                "reload keeps the write region set by failover (the config's `write` did not change)"
            );
        }
        Some(i)
    }

    fn names(&self) -> Vec<String> {
        self.regions
            .lock()
            .map(|r| r.iter().map(|(n, _)| n.clone()).collect())
            .unwrap_or_default()
    }

    fn take(&self, name: &str) -> Option<RegionHealth> {
        // Only touched while building a new monitor, never on the request path.
        let mut regions = self.regions.lock().ok()?;
        let i = regions.iter().position(|(n, _)| n == name)?;
        Some(regions.swap_remove(i).1)
    }
}

fn same_picture(a: &HealthSnapshot, b: &HealthSnapshot) -> bool {
    a.default_order == b.default_order
        && a.regions.len() == b.regions.len()
        && a.regions.iter().zip(&b.regions).all(|(x, y)| {
            x.state == y.state
                && x.write == y.write
                && x.stable == y.stable
                && x.serviceable == y.serviceable
        })
}

async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

impl RegionState {
    pub fn is_healthy(self) -> bool {
        matches!(self, RegionState::Healthy)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn service(stable_for: Duration) -> Arc<ServiceConfig> {
        let text = format!(
            r#"
[[services]]
name = "orders"
listen = "127.0.0.1:0"
[services.failback]
stable_for = "{}ms"
[services.outlier]
consecutive_failures = 2
base_ejection = "5s"
[[services.regions]]
name = "west"
priority = 0
url = "http://127.0.0.1:1"
write = true
[[services.regions]]
name = "east"
priority = 1
url = "http://127.0.0.1:2"
"#,
            stable_for.as_millis()
        );
        let cfg = crate::config::parse(std::path::Path::new("t.toml"), &text).expect("valid");
        Arc::new(cfg.services[0].clone())
    }

    fn active(h: &HealthHandle) -> String {
        let s = h.snapshot_full();
        s.active()
            .map(|i| s.regions[i].name.to_string())
            .unwrap_or_default()
    }

    async fn settle() {
        for _ in 0..10 {
            tokio::task::yield_now().await;
        }
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_fails_over_and_failback_waits_for_stable_for() {
        let (monitor, handle, rx) = HealthMonitor::new(service(Duration::from_secs(5)), None);
        let task = tokio::spawn(monitor.run(rx));
        assert_eq!(active(&handle), "west");
        handle.report_failure(0);
        settle().await;
        assert_eq!(active(&handle), "west", "one failure is not a streak");
        handle.report_failure(0);
        settle().await;
        assert_eq!(active(&handle), "east");
        assert_eq!(handle.snapshot().regions[0].state, RegionState::Ejected);
        // Ejection ends after 5s; failback waits another stable_for of 5s.
        tokio::time::sleep(Duration::from_millis(5001)).await;
        settle().await;
        assert_eq!(handle.snapshot().regions[0].state, RegionState::Healthy);
        assert_eq!(active(&handle), "east");
        tokio::time::sleep(Duration::from_millis(5000)).await;
        settle().await;
        assert_eq!(active(&handle), "west");
        handle.send(HealthEvent::Stop).await;
        assert!(task.await.is_ok());
    }

    #[tokio::test(start_paused = true)]
    async fn the_last_region_that_can_serve_is_not_ejected() {
        let (monitor, handle, rx) = HealthMonitor::new(service(Duration::ZERO), None);
        tokio::spawn(monitor.run(rx));
        for _ in 0..2 {
            handle.report_failure(0);
        }
        settle().await;
        assert_eq!(handle.snapshot().regions[0].state, RegionState::Ejected);
        // Failures everywhere (an endpoint that answers 500 in every region): east stays.
        for _ in 0..4 {
            handle.report_failure(1);
        }
        settle().await;
        assert_eq!(handle.snapshot().regions[1].state, RegionState::Healthy);
        assert_eq!(active(&handle), "east");
        // Once west is back, east may go.
        tokio::time::sleep(Duration::from_millis(5001)).await;
        settle().await;
        for _ in 0..2 {
            handle.report_failure(1);
        }
        settle().await;
        assert_eq!(handle.snapshot().regions[1].state, RegionState::Ejected);
        assert_eq!(active(&handle), "west");
    }

    #[tokio::test(start_paused = true)]
    async fn a_reload_keeps_a_failed_over_write_region_unless_the_config_moved_it() {
        let svc = service(Duration::ZERO);
        let (monitor, handle, rx) = HealthMonitor::new(svc.clone(), None);
        tokio::spawn(monitor.run(rx));
        handle.send(HealthEvent::SetWrite { region: 1 }).await;
        let state = handle.export().await.expect("exported");
        let (reloaded, _, _) = HealthMonitor::new(svc.clone(), Some(&state));
        assert_eq!(reloaded.write, Some(1), "same config: the failover stays");

        let mut edited = (*svc).clone();
        edited.regions[0].write = false;
        edited.regions[1].write = true;
        let state = handle.export().await.expect("exported");
        let (reloaded, _, _) = HealthMonitor::new(Arc::new(edited.clone()), Some(&state));
        assert_eq!(reloaded.write, Some(1));
        edited.regions[1].write = false;
        let state = handle.export().await.expect("exported");
        let (reloaded, _, _) = HealthMonitor::new(Arc::new(edited), Some(&state));
        assert_eq!(
            reloaded.write, None,
            "the operator removed `write`: the config wins"
        );

        let mut renamed = (*svc).clone();
        renamed.regions[1].name = "eastus2".into();
        let state = handle.export().await.expect("exported");
        let (reloaded, _, _) = HealthMonitor::new(Arc::new(renamed), Some(&state));
        assert_eq!(
            reloaded.write,
            Some(0),
            "the failed-over region is gone: the config's"
        );
    }

    async fn probe(handle: &HealthHandle, region: usize, ok: bool) {
        for _ in 0..2 {
            handle.send(HealthEvent::Probe { region, ok }).await;
        }
        settle().await;
    }

    /// After an outage of every region the first one back keeps the traffic until the
    /// preferred one has been stable for `stable_for`: one move, not a flap.
    #[tokio::test(start_paused = true)]
    async fn after_a_total_outage_traffic_moves_once_when_the_preferred_region_is_stable() {
        let (monitor, handle, rx) = HealthMonitor::new(service(Duration::from_secs(3)), None);
        tokio::spawn(monitor.run(rx));
        probe(&handle, 0, false).await;
        probe(&handle, 1, false).await;
        tokio::time::sleep(Duration::from_secs(4)).await;
        probe(&handle, 1, true).await;
        assert_eq!(active(&handle), "east", "the only region back");
        tokio::time::sleep(Duration::from_millis(42)).await;
        probe(&handle, 0, true).await;
        assert_eq!(active(&handle), "east", "west came back later: it waits");
        tokio::time::sleep(Duration::from_millis(2970)).await;
        settle().await;
        assert_eq!(active(&handle), "east", "east stable first: it stays");
        tokio::time::sleep(Duration::from_millis(40)).await;
        settle().await;
        assert_eq!(active(&handle), "west", "west stable for 3s: failback");
    }

    #[tokio::test(start_paused = true)]
    async fn probes_drain_and_write_moves_publish_snapshots() {
        let (monitor, handle, rx) = HealthMonitor::new(service(Duration::ZERO), None);
        tokio::spawn(monitor.run(rx));
        for _ in 0..2 {
            handle
                .send(HealthEvent::Probe {
                    region: 0,
                    ok: false,
                })
                .await;
        }
        settle().await;
        assert_eq!(handle.snapshot().regions[0].state, RegionState::Unhealthy);
        assert_eq!(active(&handle), "east");
        for _ in 0..2 {
            handle
                .send(HealthEvent::Probe {
                    region: 0,
                    ok: true,
                })
                .await;
        }
        settle().await;
        assert_eq!(active(&handle), "west", "stable_for 0 fails back at once");
        handle
            .send(HealthEvent::Drain {
                region: 0,
                drained: true,
            })
            .await;
        handle.send(HealthEvent::SetWrite { region: 1 }).await;
        settle().await;
        let snap = handle.snapshot_full();
        assert_eq!(snap.regions[0].state, RegionState::Drained);
        assert!(snap.regions[1].write && !snap.regions[0].write);
        assert_eq!(active(&handle), "east");
    }
}
