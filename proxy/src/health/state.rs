//! The health state machine of one region: active probe verdicts, outlier ejections, admin overrides.
//!
//! Pure and clock-injected (`tokio::time::Instant`), so tests drive it on paused time.

use std::time::Duration;

use tokio::time::Instant;

use crate::config::{HealthConfig, OutlierConfig};

/// What `/status` reports for a region.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RegionState {
    Healthy,
    Unhealthy,
    Ejected,
    Drained,
    Fault,
}

impl RegionState {
    pub fn as_str(self) -> &'static str {
        match self {
            RegionState::Healthy => "healthy",
            RegionState::Unhealthy => "unhealthy",
            RegionState::Ejected => "ejected",
            RegionState::Drained => "drained",
            RegionState::Fault => "fault",
        }
    }
}

/// Mutable health of one region, owned by the service's health monitor task.
#[derive(Debug, Clone)]
pub struct RegionHealth {
    /// Verdict of the active checks; regions start healthy so a fresh sidecar serves at once.
    probe_healthy: bool,
    ok_streak: u32,
    fail_streak: u32,
    ejected_until: Option<Instant>,
    /// Ejections since the region last stayed clean for `max_ejection`; doubles the next one.
    ejections: u32,
    last_ejection_end: Option<Instant>,
    /// When the region last became usable after being down; `None` means usable since start.
    recovered_at: Option<Instant>,
    pub drained: bool,
    /// Set while the drill switchboard has a fault on this region.
    pub faulted: bool,
}

impl Default for RegionHealth {
    fn default() -> Self {
        RegionHealth {
            probe_healthy: true,
            ok_streak: 0,
            fail_streak: 0,
            ejected_until: None,
            ejections: 0,
            last_ejection_end: None,
            recovered_at: None,
            drained: false,
            faulted: false,
        }
    }
}

impl RegionHealth {
    /// Records one active probe. Returns true when the probe verdict flipped.
    pub fn on_probe(&mut self, ok: bool, cfg: &HealthConfig) -> bool {
        if ok {
            self.fail_streak = 0;
            self.ok_streak = self.ok_streak.saturating_add(1);
            if !self.probe_healthy && self.ok_streak >= cfg.healthy_threshold {
                self.probe_healthy = true;
                // The checks saw the region down and now up again: an ejection from that
                // outage ends with it. Otherwise a region ejected again and again while
                // everything was down (each ejection doubling) stayed out for up to
                // `max_ejection` after it came back, with nothing else to serve (round 9b).
                // The count of ejections stays, so a flapping region still doubles.
                self.ejected_until = None;
                return true;
            }
        } else {
            self.ok_streak = 0;
            self.fail_streak = self.fail_streak.saturating_add(1);
            if self.probe_healthy && self.fail_streak >= cfg.unhealthy_threshold {
                self.probe_healthy = false;
                return true;
            }
        }
        false
    }

    /// Ejects the region after consecutive failed requests; each repeated ejection doubles.
    /// Returns the ejection length, or `None` when it is already ejected.
    pub fn eject(&mut self, now: Instant, cfg: &OutlierConfig) -> Option<Duration> {
        if self.is_ejected(now) {
            return None;
        }
        // A region that stayed clean for max_ejection since its last ejection starts over.
        if let Some(end) = self.last_ejection_end
            && now.saturating_duration_since(end) >= cfg.max_ejection
        {
            self.ejections = 0;
        }
        let factor = 1u32.checked_shl(self.ejections.min(16)).unwrap_or(u32::MAX);
        let length = cfg
            .base_ejection
            .checked_mul(factor)
            .unwrap_or(cfg.max_ejection)
            .min(cfg.max_ejection);
        self.ejections = self.ejections.saturating_add(1);
        self.ejected_until = Some(now + length);
        self.last_ejection_end = Some(now + length);
        Some(length)
    }

    pub fn is_ejected(&self, now: Instant) -> bool {
        self.ejected_until.is_some_and(|until| now < until)
    }

    /// When the current ejection ends, so the monitor can wake up and republish.
    pub fn ejection_end(&self, now: Instant) -> Option<Instant> {
        self.ejected_until.filter(|until| now < *until)
    }

    pub fn state(&self, now: Instant) -> RegionState {
        if self.drained {
            RegionState::Drained
        } else if self.faulted {
            RegionState::Fault
        } else if !self.probe_healthy {
            RegionState::Unhealthy
        } else if self.is_ejected(now) {
            RegionState::Ejected
        } else {
            RegionState::Healthy
        }
    }

    /// Whether traffic may be routed here by health alone. A faulted region stays routable:
    /// the fault is injected in the data path, so routing must discover it like a real outage.
    pub fn serviceable(&self, now: Instant) -> bool {
        !self.drained && self.probe_healthy && !self.is_ejected(now)
    }

    /// Notes the moment the region became serviceable again; `stable_for` counts from here.
    pub fn mark_recovered(&mut self, now: Instant) {
        self.recovered_at = Some(now);
    }

    /// When the region last became serviceable again (none if it has been since the start).
    pub fn recovered_at(&self) -> Option<Instant> {
        self.recovered_at
    }

    /// When a recovered region will have been stable for `stable_for`, if that is still ahead.
    pub fn stable_at(&self, stable_for: Duration) -> Option<Instant> {
        self.recovered_at.map(|t| t + stable_for)
    }

    /// Serviceable and, if it recovered recently, stable for long enough to take traffic back.
    pub fn stable(&self, now: Instant, stable_for: Duration) -> bool {
        self.serviceable(now) && self.stable_at(stable_for).is_none_or(|at| now >= at)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::StatusRange;

    fn health_cfg() -> HealthConfig {
        HealthConfig {
            path: "/healthz".into(),
            interval: Duration::from_secs(1),
            timeout: Duration::from_millis(500),
            unhealthy_threshold: 2,
            healthy_threshold: 3,
            expect_status: StatusRange {
                low: 200,
                high: 399,
            },
        }
    }

    fn outlier_cfg() -> OutlierConfig {
        OutlierConfig {
            consecutive_failures: 3,
            base_ejection: Duration::from_secs(5),
            max_ejection: Duration::from_secs(60),
        }
    }

    #[tokio::test(start_paused = true)]
    async fn probes_need_consecutive_thresholds_both_ways() {
        let cfg = health_cfg();
        let mut h = RegionHealth::default();
        let now = Instant::now();
        assert!(!h.on_probe(false, &cfg));
        assert!(
            !h.on_probe(true, &cfg),
            "a success resets the failure streak"
        );
        assert!(!h.on_probe(false, &cfg));
        assert!(h.on_probe(false, &cfg), "two consecutive failures flip it");
        assert_eq!(h.state(now), RegionState::Unhealthy);
        assert!(!h.on_probe(true, &cfg));
        assert!(!h.on_probe(true, &cfg));
        assert!(
            h.on_probe(true, &cfg),
            "three consecutive successes flip it back"
        );
        assert_eq!(h.state(now), RegionState::Healthy);
    }

    #[tokio::test(start_paused = true)]
    async fn ejection_doubles_and_caps_then_resets_after_a_clean_period() {
        let cfg = outlier_cfg();
        let mut h = RegionHealth::default();
        let mut lengths = Vec::new();
        for _ in 0..6 {
            let now = Instant::now();
            let len = h.eject(now, &cfg).expect("not ejected yet");
            assert_eq!(h.state(now), RegionState::Ejected);
            assert_eq!(h.eject(now, &cfg), None, "already ejected");
            lengths.push(len.as_secs());
            tokio::time::advance(len).await;
            assert_eq!(h.state(Instant::now()), RegionState::Healthy);
        }
        assert_eq!(lengths, vec![5, 10, 20, 40, 60, 60]);
        tokio::time::advance(Duration::from_secs(60)).await;
        let len = h.eject(Instant::now(), &cfg).expect("clean again");
        assert_eq!(
            len,
            Duration::from_secs(5),
            "multiplier reset after a clean period"
        );
    }

    #[tokio::test(start_paused = true)]
    async fn an_ejection_ends_when_the_checks_see_the_region_come_back() {
        let (health, outlier) = (health_cfg(), outlier_cfg());
        let mut h = RegionHealth::default();
        let now = Instant::now();
        h.eject(now, &outlier).expect("ejected");
        // Checks that pass throughout (a gray failure) leave the ejection alone.
        for _ in 0..5 {
            h.on_probe(true, &health);
        }
        assert_eq!(h.state(now), RegionState::Ejected);
        h.on_probe(false, &health);
        h.on_probe(false, &health);
        assert_eq!(h.state(now), RegionState::Unhealthy);
        for _ in 0..3 {
            h.on_probe(true, &health);
        }
        assert_eq!(h.state(now), RegionState::Healthy, "back with the checks");
        let len = h.eject(now, &outlier).expect("ejectable again");
        assert_eq!(len, Duration::from_secs(10), "and a relapse still doubles");
    }

    #[tokio::test(start_paused = true)]
    async fn recovered_region_is_not_stable_until_stable_for_has_passed() {
        let stable_for = Duration::from_secs(5);
        let mut h = RegionHealth::default();
        assert!(h.stable(Instant::now(), stable_for), "healthy since start");
        h.mark_recovered(Instant::now());
        assert!(!h.stable(Instant::now(), stable_for));
        tokio::time::advance(Duration::from_millis(4999)).await;
        assert!(!h.stable(Instant::now(), stable_for));
        tokio::time::advance(Duration::from_millis(1)).await;
        assert!(h.stable(Instant::now(), stable_for));
    }

    #[tokio::test(start_paused = true)]
    async fn drain_and_fault_show_in_state_but_only_drain_stops_routing() {
        let mut h = RegionHealth::default();
        let now = Instant::now();
        h.faulted = true;
        assert_eq!(h.state(now), RegionState::Fault);
        assert!(h.serviceable(now));
        h.drained = true;
        assert_eq!(h.state(now), RegionState::Drained);
        assert!(!h.serviceable(now));
    }
}
