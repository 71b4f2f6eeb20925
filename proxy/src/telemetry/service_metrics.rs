//! The request path's metric recorders: one [`ServiceMetrics`] per service, built with the
//! service, holding every per-region series already resolved. Recording is then an atomic add,
//! with no allocation and no family lookup except the first time a status code is seen.

use std::sync::{Arc, OnceLock};
use std::time::Duration;

use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::histogram::Histogram;

use super::metrics::{
    AttemptLabels, CANCELLED, Metrics, NO_REGION, OUTCOMES, RegionLabels, RequestLabels,
    ServiceLabels, metrics, outcome_index,
};
use crate::error::FailureKind;

/// Status codes `ServiceMetrics` caches counters for (anything else goes through the family).
const CACHED_CODES: std::ops::Range<u16> = 100..600;

impl Metrics {
    /// Recorders for one service, with every per-region series resolved now rather than per
    /// request. `regions` is in config order; the data path refers to regions by that index.
    pub fn service<'a>(
        &self,
        service: &str,
        regions: impl IntoIterator<Item = &'a str>,
    ) -> ServiceMetrics {
        let service: Arc<str> = service.into();
        let names: Vec<Arc<str>> = regions.into_iter().map(Arc::<str>::from).collect();
        let plain: Vec<&str> = names.iter().map(|n| &**n).collect();
        self.prepare_failovers(&service, &plain);
        let attempts = names
            .iter()
            .map(|name| {
                OUTCOMES.map(|outcome| {
                    self.attempts.get_or_create_owned(&AttemptLabels {
                        service: service.clone(),
                        region: name.clone(),
                        outcome,
                    })
                })
            })
            .collect();
        let regions: Vec<RegionMetrics> = names
            .into_iter()
            .chain(std::iter::once(Arc::<str>::from(NO_REGION)))
            .map(|name| RegionMetrics {
                duration: self.duration.get_or_create_owned(&RegionLabels {
                    service: service.clone(),
                    region: name.clone(),
                }),
                codes: CACHED_CODES.map(|_| OnceLock::new()).collect(),
                name,
            })
            .collect();
        let labels = ServiceLabels {
            service: service.clone(),
        };
        ServiceMetrics {
            attempts,
            retries: self.retries.get_or_create_owned(&labels),
            degraded: self.degraded.get_or_create_owned(&labels),
            regions: regions.into_boxed_slice(),
            service,
        }
    }
}

/// One region's series, resolved when the service is built.
struct RegionMetrics {
    name: Arc<str>,
    duration: Histogram,
    /// `switchyard_requests_total` by status code, filled on first use.
    codes: Box<[OnceLock<Counter>]>,
}

/// A service's recorders for the request path; see [`Metrics::service`].
pub struct ServiceMetrics {
    service: Arc<str>,
    /// Index-aligned with the service's regions, then one for [`NO_REGION`].
    regions: Box<[RegionMetrics]>,
    /// Per configured region, index-aligned with `OUTCOMES`.
    attempts: Box<[[Counter; OUTCOMES.len()]]>,
    retries: Counter,
    degraded: Counter,
}

impl ServiceMetrics {
    /// The region's index for a region name (as stamped in `x-switchyard-region`); names that
    /// are not a region of this service, "none" included, map to `None`.
    pub fn region_index(&self, name: &str) -> Option<usize> {
        let configured = &self.regions[..self.regions.len() - 1];
        configured.iter().position(|r| &*r.name == name)
    }

    fn region(&self, region: Option<usize>) -> &RegionMetrics {
        let none = self.regions.len() - 1;
        &self.regions[region.filter(|&i| i < none).unwrap_or(none)]
    }

    /// Counts one response sent to a client. `region` is `None` for responses the sidecar made.
    pub fn request(&self, region: Option<usize>, code: u16, elapsed: Duration) {
        let r = self.region(region);
        r.duration.observe(elapsed.as_secs_f64());
        let resolve = || {
            metrics().requests.get_or_create_owned(&RequestLabels {
                service: self.service.clone(),
                region: r.name.clone(),
                code,
            })
        };
        match code
            .checked_sub(CACHED_CODES.start)
            .and_then(|i| r.codes.get(usize::from(i)))
        {
            Some(slot) => slot.get_or_init(resolve).inc(),
            None => resolve().inc(),
        };
    }

    /// Counts one attempt; `outcome` is `None` for a response that was not a failure.
    pub fn attempt(&self, region: usize, outcome: Option<FailureKind>) {
        if let Some(counters) = self.attempts.get(region) {
            counters[outcome_index(outcome)].inc();
        }
    }

    /// Counts an attempt the client did not wait for: it went away while the attempt was in
    /// flight (the request reached the region, and what became of it is unknown).
    pub fn attempt_cancelled(&self, region: usize) {
        if let Some(counters) = self.attempts.get(region) {
            counters[CANCELLED].inc();
        }
    }

    /// The attempt counter of `region` for `outcome`, to count an attempt later (a response
    /// body's attempt is counted when the body ends or stalls, see `body::stall`).
    pub fn attempt_counter(&self, region: usize, outcome: Option<FailureKind>) -> Counter {
        self.attempts
            .get(region)
            .map(|counters| counters[outcome_index(outcome)].clone())
            .unwrap_or_default()
    }

    pub fn retry(&self) {
        self.retries.inc();
    }

    pub fn degraded(&self) {
        self.degraded.inc();
    }
}
