//! (Decision, snapshot) -> the ordered regions a request will try.

use crate::health::HealthSnapshot;
use crate::policy::Decision;

/// Region indexes in attempt order. Small and inline: services have a handful of regions.
pub type Order = Vec<usize>;

pub fn select(decision: &Decision, snapshot: &HealthSnapshot) -> Order {
    match decision {
        Decision::Default | Decision::Local(_) => snapshot.default_order.clone(),
        Decision::Prefer(names) => {
            let mut order: Order = names
                .iter()
                .filter_map(|n| snapshot.index_of(n))
                .filter(|&i| snapshot.regions[i].serviceable)
                .collect();
            order.dedup();
            for &i in &snapshot.default_order {
                if !order.contains(&i) {
                    order.push(i);
                }
            }
            order
        }
        // A pin never falls through to another region: an unusable pinned region means the
        // request is unavailable, which the plugin can answer in `on-unavailable`.
        Decision::Pin(name) => snapshot
            .index_of(name)
            .filter(|&i| snapshot.regions[i].serviceable)
            .into_iter()
            .collect(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::health::{RegionState, RegionView};

    fn snap(states: &[(&str, RegionState)]) -> HealthSnapshot {
        HealthSnapshot::new(
            states
                .iter()
                .enumerate()
                .map(|(i, (n, s))| RegionView {
                    name: (*n).into(),
                    priority: i as u32,
                    state: *s,
                    write: i == 0,
                    serviceable: *s == RegionState::Healthy,
                    stable: *s == RegionState::Healthy,
                    recovering_since: None,
                })
                .collect(),
        )
    }

    #[test]
    fn prefer_puts_serviceable_preferred_regions_first() {
        let s = snap(&[
            ("a", RegionState::Healthy),
            ("b", RegionState::Unhealthy),
            ("c", RegionState::Healthy),
        ]);
        let d = Decision::Prefer(vec!["b".into(), "c".into(), "zz".into()]);
        assert_eq!(select(&d, &s), vec![2, 0]);
        assert_eq!(select(&Decision::Default, &s), vec![0, 2]);
    }

    #[test]
    fn pin_goes_only_to_its_region_and_only_when_serviceable() {
        let s = snap(&[
            ("a", RegionState::Healthy),
            ("b", RegionState::Drained),
            ("c", RegionState::Unhealthy),
        ]);
        assert_eq!(select(&Decision::Pin("a".into()), &s), vec![0]);
        assert!(select(&Decision::Pin("b".into()), &s).is_empty());
        assert!(select(&Decision::Pin("c".into()), &s).is_empty());
        assert!(select(&Decision::Pin("nope".into()), &s).is_empty());
    }
}
