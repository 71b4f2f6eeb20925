//! Counting what the application saw: per second, per phase, and why requests failed.

use std::time::Duration;

use super::REGIONS;
use super::traffic::Sample;

/// Counts over a run of samples.
#[derive(Debug, Default, Clone)]
pub struct Stats {
    pub requests: u64,
    /// Failed requests, refused writes aside.
    pub errors: u64,
    /// Writes the sidecar refused (see [`Sample::refused_write`]).
    pub refused: u64,
    pub served: [u64; REGIONS.len()],
    attempts: u64,
    with_attempts: u64,
    pub slowest: Duration,
}

impl Stats {
    pub fn of(samples: &[Sample]) -> Stats {
        let mut s = Stats::default();
        for sample in samples {
            s.requests += 1;
            if sample.refused_write() {
                s.refused += 1;
            } else if sample.failed() {
                s.errors += 1;
            } else if let Some(count) = sample.region.and_then(|r| s.served.get_mut(r)) {
                *count += 1;
            }
            if sample.attempts > 0 {
                s.attempts += u64::from(sample.attempts);
                s.with_attempts += 1;
            }
            s.slowest = s.slowest.max(sample.latency);
        }
        s
    }

    pub fn attempts_per_request(&self) -> f64 {
        if self.with_attempts == 0 {
            0.0
        } else {
            self.attempts as f64 / self.with_attempts as f64
        }
    }

    /// "northeurope 97%, westus 3%", most first; "-" when nothing was served.
    pub fn served_by(&self) -> String {
        let total: u64 = self.served.iter().sum();
        if total == 0 {
            return "-".to_owned();
        }
        let mut shares: Vec<(usize, u64)> = self
            .served
            .iter()
            .copied()
            .enumerate()
            .filter(|(_, n)| *n > 0)
            .collect();
        shares.sort_by_key(|&(i, n)| (std::cmp::Reverse(n), i));
        let parts: Vec<String> = shares
            .iter()
            .map(|&(i, n)| {
                let pct = (n * 100 + total / 2) / total;
                // Never round a region that did serve down to 0%.
                format!("{} {}%", REGIONS[i], pct.max(1))
            })
            .collect();
        parts.join(", ")
    }
}

/// "1 write", "2 writes".
pub fn plural(n: u64, one: &str, many: &str) -> String {
    if n == 1 {
        format!("1 {one}")
    } else {
        format!("{n} {many}")
    }
}

/// A duration for people: "4 ms", "305 ms", "3.42 s".
pub fn human(d: Duration) -> String {
    if d < Duration::from_secs(1) {
        format!("{} ms", d.as_millis())
    } else {
        format!("{:.2} s", d.as_secs_f64())
    }
}

/// "2 writes (POST), 1 read; 503 x2, no response x1" (refused writes aside)
pub fn explain_errors(samples: &[Sample]) -> String {
    let failed: Vec<&Sample> = samples.iter().filter(|s| s.failed()).collect();
    let writes = failed.iter().filter(|s| s.write).count();
    let reads = failed.len() - writes;
    let mut statuses: Vec<(u16, usize)> = Vec::new();
    for s in &failed {
        match statuses.iter_mut().find(|(status, _)| *status == s.status) {
            Some((_, n)) => *n += 1,
            None => statuses.push((s.status, 1)),
        }
    }
    let statuses: Vec<String> = statuses
        .iter()
        .map(|&(status, n)| match status {
            0 => format!("no response x{n}"),
            _ => format!("{status} x{n}"),
        })
        .collect();
    let degraded = failed.iter().filter(|s| s.degraded).count();
    let mut text = format!(
        "{} (POST), {}; {}",
        plural(writes as u64, "write", "writes"),
        plural(reads as u64, "read", "reads"),
        statuses.join(", ")
    );
    if degraded > 0 {
        text.push_str(&format!(
            "; {degraded} answered by the sidecar itself (x-switchyard-degraded)"
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::time::Instant;

    fn sample(region: Option<usize>, status: u16, write: bool, degraded: bool) -> Sample {
        Sample {
            at: Instant::now(),
            latency: Duration::from_millis(2),
            region,
            status,
            attempts: 1,
            write,
            degraded,
        }
    }

    #[test]
    fn refused_writes_are_counted_apart_from_errors() {
        let stats = Stats::of(&[
            sample(Some(0), 200, false, false),
            sample(Some(1), 200, true, false),
            sample(None, 503, true, true),
            sample(None, 503, false, true),
            sample(None, 502, true, true),
            sample(None, 0, false, false),
        ]);
        assert_eq!((stats.requests, stats.errors, stats.refused), (6, 3, 1));
        assert_eq!(stats.served_by(), "westus 50%, northeurope 50%");
    }

    #[test]
    fn small_shares_never_show_as_zero() {
        let mut samples = vec![sample(Some(1), 200, false, false); 999];
        samples.push(sample(Some(0), 200, false, false));
        assert_eq!(
            Stats::of(&samples).served_by(),
            "northeurope 100%, westus 1%"
        );
        assert_eq!(Stats::default().served_by(), "-");
    }

    #[test]
    fn durations_read_well() {
        assert_eq!(human(Duration::from_millis(4)), "4 ms");
        assert_eq!(human(Duration::from_millis(3412)), "3.41 s");
    }
}
