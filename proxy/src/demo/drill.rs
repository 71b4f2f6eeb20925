//! The drill script: each phase does one thing to the primary region (or through the admin
//! switchboard), watches the traffic for the failover or failback it should cause, and records
//! what the application saw.

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use http::Method;
use tokio::sync::watch;
use tokio::time::{Instant, sleep_until};

use super::REGIONS;
use super::admin_client::AdminClient;
use super::region::DemoRegion;
use super::report::{PhaseReport, Style};
use super::setup::SERVICE;
use super::stats::{Stats, explain_errors, human, plural};
use super::traffic::{Sample, Samples};

const PRIMARY: usize = 0;
const POLL: Duration = Duration::from_millis(2);

/// A phase in progress.
struct Phase {
    name: String,
    /// First sample index that belongs to this phase.
    first: usize,
    started: Instant,
}

pub struct Drill {
    pub samples: Arc<Samples>,
    pub phase: watch::Sender<String>,
    pub style: Style,
    pub admin: AdminClient,
    pub reports: Vec<PhaseReport>,
    /// Whether the write-pinning plugin is loaded (writes follow the write region).
    pub plugins: bool,
}

impl Drill {
    fn begin(&self, name: &str, what: &str) -> Phase {
        say!("{} {}", self.style.bold(&format!("== {name}:")), what);
        self.phase.send_replace(name.to_owned());
        Phase {
            name: name.to_owned(),
            first: self.samples.count(),
            started: Instant::now(),
        }
    }

    fn end(&mut self, phase: Phase, outcome: String) {
        let samples = self.samples.since(phase.first);
        let stats = Stats::of(&samples);
        if stats.refused > 0 {
            self.event(&format!(
                "{} with a 503 by the sidecar: writes stay pinned to {} until it is known to be down \
                 (safe to retry: each carries an Idempotency-Key)",
                plural(stats.refused, "write refused", "writes refused"),
                REGIONS[PRIMARY]
            ));
        }
        if stats.errors > 0 {
            self.warn(&format!(
                "{} in this phase: {}",
                plural(stats.errors, "failed request", "failed requests"),
                explain_errors(&samples)
            ));
        }
        self.reports.push(PhaseReport {
            name: phase.name,
            stats,
            outcome,
        });
    }

    /// Waits (at most `max`) for the first sample from index `from` on that matches.
    async fn first(
        &self,
        from: usize,
        max: Duration,
        matches: impl Fn(&Sample) -> bool,
    ) -> Option<(usize, Sample)> {
        let deadline = Instant::now() + max;
        let mut cursor = from;
        loop {
            let batch = self.samples.since(cursor);
            if let Some(i) = batch.iter().position(&matches) {
                return Some((cursor + i, batch[i]));
            }
            cursor += batch.len();
            if Instant::now() >= deadline {
                return None;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// "0 failed requests" (and refused writes, if any) among the samples `from..to`.
    fn errors_between(&self, from: usize, to: usize) -> String {
        let stats = Stats::of(&self.samples.between(from, to));
        let failed = plural(stats.errors, "failed request", "failed requests");
        match stats.refused {
            0 => failed,
            n => format!("{failed}, {}", plural(n, "write refused", "writes refused")),
        }
    }

    fn event(&self, text: &str) {
        say!("  {} {}", self.style.good("->"), text);
    }

    fn warn(&self, text: &str) {
        say!("  {} {}", self.style.bad("!!"), text);
    }

    /// After a fault at `since`, waits for the first read answered by another region (writes
    /// follow the write region, see [`Drill::write_region`]).
    async fn watch_failover(&self, from: usize, since: Instant) -> String {
        match self
            .first(from, Duration::from_secs(3), |s| {
                !s.write && s.served_by_other(PRIMARY)
            })
            .await
        {
            Some((index, sample)) => {
                let took = sample.at.saturating_duration_since(since);
                let errors = self.errors_between(from, index);
                let region = sample.region.map_or("?", |r| REGIONS[r]);
                self.event(&format!(
                    "failover to {region} in {} ({errors})",
                    human(took)
                ));
                format!("failover {}", human(took))
            }
            None => {
                self.warn("no other region served within 3 s");
                "no failover".to_owned()
            }
        }
    }

    /// After the primary came back at `since`, waits for it to serve reads again.
    async fn watch_failback(&self, from: usize, since: Instant) -> String {
        match self
            .first(from, Duration::from_secs(9), |s| {
                !s.write && s.served_by(PRIMARY)
            })
            .await
        {
            Some((_, sample)) => {
                let took = sample.at.saturating_duration_since(since);
                self.event(&format!(
                    "failback to {} in {} (health checks, then stable_for 3s)",
                    REGIONS[PRIMARY],
                    human(took)
                ));
                format!("failback {}", human(took))
            }
            None => {
                self.warn(&format!(
                    "{} did not serve again within 9 s",
                    REGIONS[PRIMARY]
                ));
                "no failback".to_owned()
            }
        }
    }

    pub async fn warm_up(&mut self) {
        let p = self.begin("warm-up", "steady traffic, westus (priority 0) serves");
        sleep_until(p.started + Duration::from_secs(3)).await;
        self.end(p, "-".to_owned());
    }

    pub async fn kill(&mut self, primary: &mut DemoRegion) {
        let p = self.begin("kill westus", "listener closed, every connection dropped");
        let at = Instant::now();
        primary.kill().await;
        let outcome = self.watch_failover(p.first, at).await;
        sleep_until(p.started + Duration::from_secs(4)).await;
        self.end(p, outcome);
    }

    pub async fn restart(&mut self, primary: &mut DemoRegion) -> Result<(), Box<dyn Error>> {
        let p = self.begin(
            "restart westus",
            "same port; traffic returns once it is healthy and stable",
        );
        let at = Instant::now();
        primary.restart().await?;
        let outcome = self.watch_failback(p.first, at).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.end(p, outcome);
        Ok(())
    }

    pub async fn blackhole(&mut self, primary: &DemoRegion) {
        let p = self.begin("blackhole westus", "accepts connections, never answers");
        let at = Instant::now();
        primary.blackhole();
        let mut outcome = self.watch_failover(p.first, at).await;
        sleep_until(p.started + Duration::from_secs(4)).await;
        let slowest = Stats::of(&self.samples.since(p.first)).slowest;
        self.event(&format!(
            "slowest request: {} (per_try_timeout 300ms, then a retry)",
            human(slowest)
        ));
        outcome.push_str(&format!(", slowest {}", human(slowest)));
        self.end(p, outcome);
    }

    pub async fn heal(&mut self, primary: &DemoRegion) {
        let p = self.begin("heal westus", "answers again");
        let at = Instant::now();
        primary.heal();
        let outcome = self.watch_failback(p.first, at).await;
        tokio::time::sleep(Duration::from_secs(1)).await;
        self.end(p, outcome);
    }

    /// The same drills through the admin API a user would script against.
    pub async fn switchboard(&mut self) {
        let region_path = format!("/services/{SERVICE}/regions/{}/fault", REGIONS[PRIMARY]);
        say!("{}", self.style.bold("== drill via the admin switchboard"));

        let p = self.begin("switchboard: 503s", "westus answers 503 to every request");
        let at = Instant::now();
        let fault = r#"{"mode":"error","status":503,"percent":100}"#;
        self.admin
            .call(Method::POST, &region_path, Some(fault))
            .await;
        let outcome = self.watch_failover(p.first, at).await;
        sleep_until(p.started + Duration::from_secs(3)).await;
        self.end(p, outcome);

        let p = self.begin("switchboard: clear", "fault removed");
        let at = Instant::now();
        self.admin.call(Method::DELETE, &region_path, None).await;
        let outcome = self.watch_failback(p.first, at).await;
        tokio::time::sleep(Duration::from_millis(500)).await;
        self.end(p, outcome);

        let failover_path = format!("/services/{SERVICE}/failover");
        self.write_region(&failover_path, 1, "write failover").await;
        self.write_region(&failover_path, PRIMARY, "write failback")
            .await;
    }

    /// Moves the write region and watches where writes (POSTs) land.
    async fn write_region(&mut self, path: &str, target: usize, name: &str) {
        let region = REGIONS[target];
        let p = self.begin(
            name,
            &format!("write region -> {region}; reads stay by priority"),
        );
        let body = format!(r#"{{"write_region":"{region}"}}"#);
        self.admin.call(Method::POST, path, Some(&body)).await;
        let done = Instant::now();
        // Only writes sent after the call count: earlier ones were routed before it.
        let sent_after = |s: &Sample| s.at.checked_sub(s.latency).is_some_and(|sent| sent >= done);
        let hit = self
            .first(p.first, Duration::from_secs(2), |s| {
                s.write && s.served_by(target) && sent_after(s)
            })
            .await;
        let outcome = if let Some((_, sample)) = hit {
            let took = sample.at.saturating_duration_since(done);
            self.event(&format!(
                "writes now served by {region} (first one {} after the call)",
                human(took)
            ));
            format!("writes -> {region}")
        } else {
            let writes: Vec<Sample> = self
                .samples
                .since(p.first)
                .into_iter()
                .filter(|s| s.write)
                .collect();
            let landed = Stats::of(&writes).served_by();
            if self.plugins {
                self.warn(&format!(
                    "writes did not move to {region}; they went to {landed}"
                ));
            } else {
                self.event(&format!(
                    "writes served by {landed}: without the write-pinning plugin, writes follow priority"
                ));
            }
            format!("writes on {landed}")
        };
        sleep_until(p.started + Duration::from_secs(2)).await;
        self.end(p, outcome);
    }
}
