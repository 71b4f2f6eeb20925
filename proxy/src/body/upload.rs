//! How far a client's streamed request body has got, for the attempt's timer.
//!
//! A body over `buffer_body_limit` streams to the region while the client is still sending
//! it. `per_try_timeout` is about the region, so it must not run out because the client is
//! slow, and a slow client must not count as a region failure (enough slow uploads would eject
//! every region). The body records when it finished and whether it is waiting on the client;
//! the timer reads both: it starts counting when the body is complete, and while the body
//! waits on the client it waits too. A region that stops reading the body leaves it waiting
//! on the region instead, and that still times out.

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use tokio::time::Instant;

#[derive(Debug)]
pub struct UploadProgress {
    origin: Instant,
    /// Nanoseconds after `origin` at which the body finished, plus one; 0 while streaming.
    finished: AtomicU64,
    /// The last poll of the body found no data from the client yet.
    waiting_on_client: AtomicBool,
    /// The client's body broke off (the client went away mid-upload).
    client_failed: AtomicBool,
}

impl UploadProgress {
    pub fn new() -> Self {
        UploadProgress {
            origin: Instant::now(),
            finished: AtomicU64::new(0),
            waiting_on_client: AtomicBool::new(false),
            client_failed: AtomicBool::new(false),
        }
    }

    pub(crate) fn fail(&self) {
        self.client_failed.store(true, Ordering::Relaxed);
    }

    /// The client's body broke off before its end: an attempt that failed with it failed
    /// because of the client, not the region.
    pub fn client_failed(&self) -> bool {
        self.client_failed.load(Ordering::Relaxed)
    }

    pub(crate) fn finish(&self) {
        let after = u64::try_from(self.origin.elapsed().as_nanos()).unwrap_or(u64::MAX - 1);
        let _ = self
            .finished
            .compare_exchange(0, after + 1, Ordering::Relaxed, Ordering::Relaxed);
        self.waiting_on_client.store(false, Ordering::Relaxed);
    }

    pub(crate) fn set_waiting_on_client(&self, waiting: bool) {
        self.waiting_on_client.store(waiting, Ordering::Relaxed);
    }

    /// When the whole body had been read from the client, if it has.
    pub fn finished_at(&self) -> Option<Instant> {
        match self.finished.load(Ordering::Relaxed) {
            0 => None,
            n => Some(self.origin + Duration::from_nanos(n - 1)),
        }
    }

    /// Still streaming, and the region is waiting for the client's next bytes.
    pub fn waiting_on_client(&self) -> bool {
        self.finished_at().is_none() && self.waiting_on_client.load(Ordering::Relaxed)
    }
}

impl Default for UploadProgress {
    fn default() -> Self {
        Self::new()
    }
}

/// What the per-try timer should do when its deadline passes during an attempt.
#[derive(Debug, PartialEq, Eq)]
pub enum PerTry {
    /// The region had its full `per_try_timeout`: the attempt timed out.
    TimedOut,
    /// Wait until this instant instead.
    ExtendTo(Instant),
    /// The request deadline passed while the client was still sending: its fault, not the
    /// region's.
    ClientTooSlow,
}

/// The per-try timer's decision at `now` for an attempt that started at `started`.
pub fn per_try_expired(
    upload: Option<&UploadProgress>,
    started: Instant,
    now: Instant,
    per_try: Duration,
    request_deadline: Instant,
) -> PerTry {
    let Some(upload) = upload else {
        return PerTry::TimedOut;
    };
    if let Some(done) = upload.finished_at() {
        let until = (done.max(started) + per_try).min(request_deadline);
        return if until > now {
            PerTry::ExtendTo(until)
        } else {
            PerTry::TimedOut
        };
    }
    if !upload.waiting_on_client() {
        // The body has data to give but the region is not taking it.
        return PerTry::TimedOut;
    }
    if now >= request_deadline {
        PerTry::ClientTooSlow
    } else {
        PerTry::ExtendTo((now + per_try).min(request_deadline))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const PER_TRY: Duration = Duration::from_secs(2);

    #[tokio::test(start_paused = true)]
    async fn the_timer_waits_for_the_client_and_then_gives_the_region_its_full_time() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(15);
        let upload = UploadProgress::new();
        upload.set_waiting_on_client(true);
        let at = t0 + PER_TRY;
        assert_eq!(
            per_try_expired(Some(&upload), t0, at, PER_TRY, deadline),
            PerTry::ExtendTo(at + PER_TRY),
            "the client is still sending"
        );
        tokio::time::advance(Duration::from_secs(3)).await;
        upload.finish();
        let now = t0 + Duration::from_secs(4);
        assert_eq!(
            per_try_expired(Some(&upload), t0, now, PER_TRY, deadline),
            PerTry::ExtendTo(t0 + Duration::from_secs(5)),
            "per_try counts from the end of the body"
        );
        assert_eq!(
            per_try_expired(
                Some(&upload),
                t0,
                t0 + Duration::from_secs(5),
                PER_TRY,
                deadline
            ),
            PerTry::TimedOut
        );
    }

    #[tokio::test(start_paused = true)]
    async fn a_region_that_stops_reading_still_times_out_and_a_slow_client_is_its_own_fault() {
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(15);
        let stuck = UploadProgress::new();
        stuck.set_waiting_on_client(false);
        assert_eq!(
            per_try_expired(Some(&stuck), t0, t0 + PER_TRY, PER_TRY, deadline),
            PerTry::TimedOut
        );
        let slow = UploadProgress::new();
        slow.set_waiting_on_client(true);
        assert_eq!(
            per_try_expired(Some(&slow), t0, deadline, PER_TRY, deadline),
            PerTry::ClientTooSlow
        );
        assert_eq!(
            per_try_expired(None, t0, t0 + PER_TRY, PER_TRY, deadline),
            PerTry::TimedOut,
            "a body read before the first attempt is no excuse"
        );
    }
}
