//! The immutable view of a service's regions that the data path reads without locking.
//!
//! The health monitor builds a new snapshot on every change and swaps it in; a request loads
//! the current one once and routes by it. Failover is nothing more than a new snapshot.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use tokio::time::Instant;

use super::state::RegionState;

/// One region as routing and plugins see it.
#[derive(Debug, Clone)]
pub struct RegionView {
    pub name: Arc<str>,
    pub priority: u32,
    pub state: RegionState,
    pub write: bool,
    /// Routable by health (not drained, not unhealthy, not ejected).
    pub serviceable: bool,
    /// Serviceable and past `failback.stable_for` since it last recovered.
    pub stable: bool,
    /// When a serviceable region that is not stable yet became serviceable again.
    pub recovering_since: Option<Instant>,
}

#[derive(Debug, Clone, Default)]
pub struct HealthSnapshot {
    /// Every region of the service, sorted by priority (the config order).
    pub regions: Vec<RegionView>,
    /// Region indexes in the order default routing tries them.
    pub default_order: Vec<usize>,
    /// Unique to this snapshot within the process (plugins cache what they read of it).
    pub generation: u64,
}

impl HealthSnapshot {
    /// Builds the snapshot and its default order: stable regions by priority, then regions that
    /// recovered but are still proving themselves (so failback waits for `stable_for` but a
    /// recovering region still beats none), and, when nothing is serviceable, every region that
    /// is not drained (health checks can be wrong; trying beats refusing).
    ///
    /// Recovering regions go in the order they recovered, not by priority: after an outage of
    /// every region, the first one back takes the traffic and keeps it until a preferred one
    /// has been stable for `stable_for`. By priority, a preferred region that came back a
    /// moment later would take it at once, and traffic would move back and forth as each
    /// region's `stable_for` passed.
    pub fn new(regions: Vec<RegionView>) -> Self {
        let mut order: Vec<usize> = (0..regions.len()).filter(|&i| regions[i].stable).collect();
        let mut recovering: Vec<usize> = (0..regions.len())
            .filter(|&i| regions[i].serviceable && !regions[i].stable)
            .collect();
        // Stable sort: regions that recovered at the same moment keep priority order.
        recovering.sort_by_key(|&i| regions[i].recovering_since);
        order.extend(recovering);
        if order.is_empty() {
            order.extend((0..regions.len()).filter(|&i| regions[i].state != RegionState::Drained));
        }
        static GENERATIONS: AtomicU64 = AtomicU64::new(1);
        HealthSnapshot {
            regions,
            default_order: order,
            generation: GENERATIONS.fetch_add(1, Ordering::Relaxed),
        }
    }

    /// The regions as configured, each taken as healthy: what plugins see before the service's
    /// health exists (during `init`, and in `switchyard check`).
    pub fn configured(regions: &[crate::config::RegionConfig]) -> Self {
        HealthSnapshot::new(
            regions
                .iter()
                .map(|r| RegionView {
                    name: r.name.as_str().into(),
                    priority: r.priority,
                    state: RegionState::Healthy,
                    write: r.write,
                    serviceable: true,
                    stable: true,
                    recovering_since: None,
                })
                .collect(),
        )
    }

    /// The region default routing sends traffic to now; none when no region can serve
    /// (requests then still try every region that is not drained, but none is serving).
    /// Shown as `active` in `/status` and `switchyard_region_active`: during a total outage
    /// they showed the first region as serving, and the failover count rose by one more
    /// step, back to it (round 9b).
    pub fn active(&self) -> Option<usize> {
        self.default_order
            .first()
            .copied()
            .filter(|&i| self.regions[i].serviceable)
    }

    pub fn index_of(&self, name: &str) -> Option<usize> {
        self.regions.iter().position(|r| &*r.name == name)
    }

    pub fn write_region(&self) -> Option<usize> {
        self.regions.iter().position(|r| r.write)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn view(name: &str, priority: u32, state: RegionState, stable: bool) -> RegionView {
        RegionView {
            name: name.into(),
            priority,
            state,
            write: false,
            serviceable: matches!(state, RegionState::Healthy | RegionState::Fault),
            stable,
            recovering_since: None,
        }
    }

    #[test]
    fn recovering_regions_go_in_the_order_they_recovered() {
        let t0 = Instant::now();
        let recovering = |name, priority, after_ms| RegionView {
            recovering_since: Some(t0 + std::time::Duration::from_millis(after_ms)),
            ..view(name, priority, RegionState::Healthy, false)
        };
        let snap = HealthSnapshot::new(vec![
            recovering("a", 0, 42),
            recovering("b", 1, 0),
            recovering("c", 2, 42),
            view("d", 3, RegionState::Unhealthy, false),
        ]);
        assert_eq!(snap.default_order, vec![1, 0, 2]);
        let with_stable = HealthSnapshot::new(vec![
            recovering("a", 0, 0),
            view("b", 1, RegionState::Healthy, true),
        ]);
        assert_eq!(with_stable.default_order, vec![1, 0]);
    }

    #[test]
    fn stable_regions_first_then_recovering_ones() {
        let snap = HealthSnapshot::new(vec![
            view("a", 0, RegionState::Healthy, false),
            view("b", 1, RegionState::Healthy, true),
            view("c", 2, RegionState::Unhealthy, false),
        ]);
        assert_eq!(snap.default_order, vec![1, 0]);
        assert_eq!(snap.active(), Some(1));
    }

    #[test]
    fn nothing_serviceable_means_try_all_but_drained() {
        let snap = HealthSnapshot::new(vec![
            view("a", 0, RegionState::Unhealthy, false),
            view("b", 1, RegionState::Drained, false),
            view("c", 2, RegionState::Ejected, false),
        ]);
        assert_eq!(snap.default_order, vec![0, 2]);
        assert_eq!(snap.active(), None, "tried, but none is serving");
    }
}
