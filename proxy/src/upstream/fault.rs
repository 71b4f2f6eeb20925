//! The drill switchboard's faults, applied where a real outage would show: in the upstream send.
//!
//! Health probes, outlier detection, retries and plugins all go through `Upstream::send`, so
//! they see an injected fault exactly as they would see the real thing.

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use http::StatusCode;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Fault {
    /// As if the region were unreachable: every connect fails.
    Down,
    /// Answer `status` instead of forwarding, for `percent` of requests.
    Error { status: StatusCode, percent: u8 },
    /// Hold every request this long before forwarding.
    Delay(Duration),
}

/// What the fault does to one attempt.
pub enum FaultEffect {
    None,
    Refuse,
    Respond(StatusCode),
    Delay(Duration),
}

/// Spreads `percent` evenly over consecutive requests: deterministic, so drills and tests see
/// exactly the share they asked for.
#[derive(Debug, Default)]
pub struct FaultCounter(AtomicU64);

impl Fault {
    pub fn effect(&self, counter: &FaultCounter) -> FaultEffect {
        match self {
            Fault::Down => FaultEffect::Refuse,
            Fault::Delay(d) => FaultEffect::Delay(*d),
            Fault::Error { status, percent } => {
                let n = counter.0.fetch_add(1, Ordering::Relaxed);
                // Bresenham-style: request n fails when the running share crosses a whole step.
                let before = n * u64::from(*percent) / 100;
                let after = (n + 1) * u64::from(*percent) / 100;
                if after > before {
                    FaultEffect::Respond(*status)
                } else {
                    FaultEffect::None
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn error_percent_is_exact_over_a_hundred_requests() {
        for percent in [0u8, 1, 25, 50, 99, 100] {
            let fault = Fault::Error {
                status: StatusCode::SERVICE_UNAVAILABLE,
                percent,
            };
            let counter = FaultCounter::default();
            let failed = (0..100)
                .filter(|_| matches!(fault.effect(&counter), FaultEffect::Respond(_)))
                .count();
            assert_eq!(failed, usize::from(percent));
        }
    }
}
