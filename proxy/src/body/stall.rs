//! A region that stops sending its response body part-way (blackholed, frozen, its own
//! dependency hung) would otherwise hold the client for ever: the head has gone out, so
//! there is nothing to retry, and TCP sees nothing wrong. `per_try_timeout` therefore also
//! bounds each wait for the next piece of a region's body, as HAProxy's `timeout server` and
//! nginx's `proxy_read_timeout` bound the time between two reads. A body that keeps flowing
//! may take as long as it needs; time spent waiting for a slow client is not counted, since
//! the body is not polled then.
//!
//! While the client is still streaming its request body and the region waits for its next
//! bytes (a bidirectional stream: the region answers each message the client sends), a quiet
//! response body is the client's doing, not the region's: the wait goes on.
//!
//! The timer is armed only when the region's body is not ready: a small response that comes
//! with its head never touches it, and a long one reuses one timer for all its waits.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::Context;
use std::time::Duration;

use tokio::time::{Instant, Sleep};

use prometheus_client::metrics::counter::Counter;

use crate::body::upload::UploadProgress;
use crate::error::FailureKind;
use crate::health::HealthHandle;
use crate::telemetry::ServiceMetrics;
use crate::telemetry::log_limit::LogLimit;

/// What a region's response body is watched with: the limit (the service's
/// `per_try_timeout`), and where a stall is reported: the region's health (a stall is a failure
/// for outlier detection) and the log (once per 10 s per region). One per region, shared by
/// its responses.
pub struct StallReport {
    limit: Duration,
    /// `switchyard_upstream_attempts_total` of the region, `ok`, `timeout` and `reset`: a
    /// watched response's attempt is counted when its body ends, stalls or is cut off.
    attempt_ok: Counter,
    attempt_stalled: Counter,
    attempt_cut: Counter,
    health: HealthHandle,
    region: usize,
    service: Arc<str>,
    name: Arc<str>,
    log: LogLimit,
}

impl StallReport {
    pub fn new(
        limit: Duration,
        health: HealthHandle,
        metrics: &ServiceMetrics,
        region: usize,
        service: Arc<str>,
        name: Arc<str>,
    ) -> Self {
        StallReport {
            limit,
            attempt_ok: metrics.attempt_counter(region, None),
            attempt_stalled: metrics.attempt_counter(region, Some(FailureKind::Timeout)),
            attempt_cut: metrics.attempt_counter(region, Some(FailureKind::Reset)),
            health,
            region,
            service,
            name,
            log: LogLimit::every(10),
        }
    }

    fn stalled(&self) -> RegionStalled {
        self.failed(
            &self.attempt_stalled,
            format_args!(
                "sent nothing of its response body for {:?} (per_try_timeout): response aborted",
                self.limit
            ),
        );
        RegionStalled {
            region: self.name.clone(),
            limit: self.limit,
        }
    }

    /// The region broke its response body off (reset the stream, closed the connection, sent
    /// less than its `Content-Length`): a failure of the region, as a reset before the head
    /// would have been. The client sees the response cut off; nothing can be retried.
    fn cut(&self, error: &hyper::Error) {
        self.failed(
            &self.attempt_cut,
            format_args!("broke its response body off: {error}"),
        );
    }

    /// Counts the attempt under `outcome`, adds a failure to the region's streak, and logs
    /// `what` the region did (at most once per 10 s per region).
    fn failed(&self, outcome: &Counter, what: fmt::Arguments<'_>) {
        outcome.inc();
        self.health.report_failure(self.region);
        if let Some(held_back) = self.log.check() {
            tracing::warn!(
                service = %self.service,
                region = %self.name,
                held_back,
                "region {what}"
            );
        }
    }
}

/// The error a stalled body ends with: the client sees the response cut off (HTTP/1.1: the
/// connection closes before the body is complete; HTTP/2: the stream is reset), never a
/// shorter body that looks whole.
#[derive(Debug)]
pub struct RegionStalled {
    pub region: Arc<str>,
    pub limit: Duration,
}

impl fmt::Display for RegionStalled {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "region {} sent nothing of its response body for {:?}",
            self.region, self.limit
        )
    }
}

impl std::error::Error for RegionStalled {}

/// The per-response watch, kept small (two pointers and two flags) because response bodies
/// are moved several times on the way out: armed while the body is waited for, disarmed by
/// each frame.
///
/// It also decides when the region's failure streak (outlier detection) is cleared: when the
/// body has come in whole, not when the head arrived. Otherwise every stalled response would
/// first clear the streak with its head and then add one failure with its stall, and a region
/// that stalls every body would never reach `consecutive_failures`.
#[derive(Default)]
pub struct StallWatch {
    report: Option<Arc<StallReport>>,
    /// Created at the first wait, reset for later ones.
    timer: Option<Pin<Box<Sleep>>>,
    /// Whether the timer's deadline belongs to the current wait.
    waiting: bool,
    /// Whether the response was a success: its attempt is counted at the end and a complete
    /// body clears the streak (a 5xx was counted, as a failure, at its head).
    success: bool,
    /// The request body, while the client streams it.
    upload: Option<Arc<UploadProgress>>,
}

impl StallWatch {
    pub fn new(
        report: Arc<StallReport>,
        success: bool,
        upload: Option<Arc<UploadProgress>>,
    ) -> Self {
        StallWatch {
            report: Some(report),
            timer: None,
            waiting: false,
            success,
            upload,
        }
    }

    /// The body is dropped, `complete` or not. A success's attempt is counted now (a stall
    /// counted its own), and a complete one clears the region's failure streak.
    pub fn finished(&self, complete: bool) {
        if self.success
            && let Some(report) = &self.report
        {
            report.attempt_ok.inc();
            if complete {
                report.health.clear_failures(report.region);
            }
        }
    }

    /// The region's body failed: a success's attempt is counted as cut off, and the watch is
    /// off from then on (a 5xx was counted at its head).
    pub fn cut(&mut self, error: &hyper::Error) {
        if let Some(report) = self.report.take()
            && self.success
        {
            report.cut(error);
        }
    }

    /// The body produced a frame (or ended): the next wait gets the full limit.
    pub fn progress(&mut self) {
        self.waiting = false;
    }

    /// The body is not ready. `Some(error)` once this wait has lasted the limit (the stall is
    /// reported then, and the watch is off from then on); otherwise the task is woken when it
    /// will have.
    pub fn poll_stalled(&mut self, cx: &mut Context<'_>) -> Option<RegionStalled> {
        let report = self.report.as_ref()?;
        if !self.waiting {
            self.waiting = true;
            let deadline = Instant::now() + report.limit;
            match &mut self.timer {
                Some(timer) => timer.as_mut().reset(deadline),
                None => self.timer = Some(Box::pin(tokio::time::sleep_until(deadline))),
            }
        }
        let timer = self.timer.as_mut()?;
        if timer.as_mut().poll(cx).is_pending() {
            return None;
        }
        // While the region waits for the client, and then for a whole `per_try_timeout` after
        // the client's body is complete (as before the head), the wait goes on. A body that
        // ended in the middle of a wait left the region only the rest of it (round 11).
        let rearm_at = self.upload.as_ref().and_then(|u| {
            let now = Instant::now();
            if u.waiting_on_client() {
                Some(now + report.limit)
            } else {
                u.finished_at()
                    .map(|done| done + report.limit)
                    .filter(|due| *due > now)
            }
        });
        if let Some(at) = rearm_at {
            // Polled so the task is woken at the new deadline.
            timer.as_mut().reset(at);
            let _ = timer.as_mut().poll(cx);
            return None;
        }
        let stalled = report.stalled();
        self.report = None;
        Some(stalled)
    }
}

impl fmt::Debug for StallWatch {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("StallWatch")
            .field("on", &self.report.is_some())
            .field("waiting", &self.waiting)
            .field("success", &self.success)
            .finish()
    }
}
