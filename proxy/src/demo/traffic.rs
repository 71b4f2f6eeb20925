//! The steady client: a few keep-alive connections to the sidecar, paced to a request rate,
//! recording one [`Sample`] per request.

use std::net::SocketAddr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http::{Method, Request, header};
use http_body_util::{BodyExt, Full};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use tokio::sync::{Semaphore, watch};
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::{MAX_RUNTIME, REGIONS};
use crate::headers::{
    IDEMPOTENCY_KEY, X_SWITCHYARD_ATTEMPTS, X_SWITCHYARD_DEGRADED, X_SWITCHYARD_REGION,
};

/// Concurrent client tasks.
pub const CLIENTS: usize = 8;
/// The cap on the total request rate.
pub const MAX_RATE: u32 = 400;
/// Every this many requests, one is a `POST /orders` (a write).
pub const WRITE_EVERY: u64 = 25;
const REQUEST_TIMEOUT: Duration = Duration::from_secs(3);
const PACER_TICK: Duration = Duration::from_millis(10);

/// One finished request, as the application saw it.
#[derive(Debug, Clone, Copy)]
pub struct Sample {
    /// When the response (or the failure) was complete.
    pub at: Instant,
    pub latency: Duration,
    /// Index into [`REGIONS`] of the region that answered (`x-switchyard-region`).
    pub region: Option<usize>,
    /// 0 when no response came back (connection error or client timeout).
    pub status: u16,
    pub attempts: u32,
    pub write: bool,
    /// The sidecar answered itself (`x-switchyard-degraded: 1`).
    pub degraded: bool,
}

impl Sample {
    pub fn ok(&self) -> bool {
        (200..300).contains(&self.status)
    }

    /// A write the sidecar refused itself with a 503 (a policy answer such as write-pinning's
    /// while the write region is down): a clear, retryable refusal rather than an error. Its
    /// 502 and 504 (a write that may have been applied) are errors, not refusals.
    pub fn refused_write(&self) -> bool {
        self.write && self.degraded && self.status == 503
    }

    /// Failed in any other way: the app got an error it could not have expected.
    pub fn failed(&self) -> bool {
        !self.ok() && !self.refused_write()
    }

    /// Answered successfully by a region other than `region`.
    pub fn served_by_other(&self, region: usize) -> bool {
        self.ok() && self.region.is_some_and(|r| r != region)
    }

    pub fn served_by(&self, region: usize) -> bool {
        self.ok() && self.region == Some(region)
    }
}

/// Every sample so far, in completion order; phases and the ticker read it by index.
#[derive(Default)]
pub struct Samples(Mutex<Vec<Sample>>);

impl Samples {
    fn lock(&self) -> MutexGuard<'_, Vec<Sample>> {
        // A panic elsewhere cannot leave a Vec of Copy samples half-written: keep going.
        self.0
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    fn push(&self, sample: Sample) {
        self.lock().push(sample);
    }

    /// How many samples there are so far.
    pub fn count(&self) -> usize {
        self.lock().len()
    }

    /// A copy of the samples from index `from` on.
    pub fn since(&self, from: usize) -> Vec<Sample> {
        let all = self.lock();
        all.get(from..).map(<[Sample]>::to_vec).unwrap_or_default()
    }

    /// A copy of the samples in `from..to`.
    pub fn between(&self, from: usize, to: usize) -> Vec<Sample> {
        let all = self.lock();
        let to = to.min(all.len());
        all.get(from.min(to)..to)
            .map(<[Sample]>::to_vec)
            .unwrap_or_default()
    }
}

/// The running client; [`Traffic::stop`] ends it.
pub struct Traffic {
    stop: watch::Sender<bool>,
    tasks: Vec<JoinHandle<()>>,
}

impl Traffic {
    pub fn start(target: SocketAddr, samples: Arc<Samples>) -> Traffic {
        let (stop, stop_rx) = watch::channel(false);
        let permits = Arc::new(Semaphore::new(0));
        let counter = Arc::new(AtomicU64::new(0));
        let mut connector = HttpConnector::new();
        connector.set_nodelay(true);
        let client: Client<HttpConnector, Full<Bytes>> = Client::builder(TokioExecutor::new())
            .pool_idle_timeout(Duration::from_secs(30))
            .build(connector);
        let mut tasks = vec![tokio::spawn(pace(permits.clone(), stop_rx.clone()))];
        for _ in 0..CLIENTS {
            let worker = Worker {
                target,
                client: client.clone(),
                samples: samples.clone(),
                counter: counter.clone(),
            };
            tasks.push(tokio::spawn(worker.run(permits.clone(), stop_rx.clone())));
        }
        Traffic { stop, tasks }
    }

    /// Stops sending and waits (at most the request timeout) for requests in flight.
    pub async fn stop(self) {
        self.stop.send_replace(true);
        let wait = async {
            for task in self.tasks {
                let _ = task.await;
            }
        };
        let _ = tokio::time::timeout(REQUEST_TIMEOUT + Duration::from_secs(1), wait).await;
    }
}

/// Hands out `MAX_RATE` request permits per second, never more than a short burst ahead.
async fn pace(permits: Arc<Semaphore>, mut stop: watch::Receiver<bool>) {
    let per_tick = (MAX_RATE as usize * PACER_TICK.as_millis() as usize / 1000).max(1);
    let mut tick = tokio::time::interval(PACER_TICK);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    let end = Instant::now() + MAX_RUNTIME;
    while Instant::now() < end {
        tokio::select! {
            _ = tick.tick() => {
                let room = (per_tick * 4).saturating_sub(permits.available_permits());
                permits.add_permits(per_tick.min(room));
            }
            _ = stop.changed() => break,
        }
    }
    // Wake every worker still waiting for a permit so it sees the stop.
    permits.close();
}

struct Worker {
    target: SocketAddr,
    client: Client<HttpConnector, Full<Bytes>>,
    samples: Arc<Samples>,
    counter: Arc<AtomicU64>,
}

impl Worker {
    async fn run(self, permits: Arc<Semaphore>, stop: watch::Receiver<bool>) {
        let end = Instant::now() + MAX_RUNTIME;
        while !*stop.borrow() && Instant::now() < end {
            match permits.acquire().await {
                Ok(permit) => permit.forget(),
                Err(_) => break, // closed: the pacer stopped
            }
            let n = self.counter.fetch_add(1, Ordering::Relaxed);
            let sample = self.send(n).await;
            self.samples.push(sample);
        }
    }

    async fn send(&self, n: u64) -> Sample {
        let write = n % WRITE_EVERY == WRITE_EVERY - 1;
        let started = Instant::now();
        let mut sample = Sample {
            at: started,
            latency: Duration::ZERO,
            region: None,
            status: 0,
            attempts: 0,
            write,
            degraded: false,
        };
        if let Ok(req) = self.request(n, write) {
            let exchange = async {
                let resp = self.client.request(req).await.ok()?;
                let (parts, body) = resp.into_parts();
                // The body must arrive whole, or the request failed after all.
                body.collect().await.ok()?;
                Some(parts)
            };
            if let Ok(Some(parts)) = tokio::time::timeout(REQUEST_TIMEOUT, exchange).await {
                let text = |name| {
                    parts
                        .headers
                        .get(name)
                        .and_then(|v: &header::HeaderValue| v.to_str().ok())
                };
                sample.status = parts.status.as_u16();
                sample.region =
                    text(X_SWITCHYARD_REGION).and_then(|r| REGIONS.iter().position(|n| *n == r));
                sample.attempts = text(X_SWITCHYARD_ATTEMPTS)
                    .and_then(|a| a.parse().ok())
                    .unwrap_or(0);
                sample.degraded = text(X_SWITCHYARD_DEGRADED) == Some("1");
            }
        }
        sample.at = Instant::now();
        sample.latency = sample.at - started;
        sample
    }

    fn request(&self, n: u64, write: bool) -> Result<Request<Full<Bytes>>, http::Error> {
        if write {
            Request::builder()
                .method(Method::POST)
                .uri(format!("http://{}/orders", self.target))
                .header(header::CONTENT_TYPE, "application/json")
                // Lets the sidecar retry the write safely if it never got an answer.
                .header(IDEMPOTENCY_KEY, format!("demo-{n}"))
                .body(Full::new(Bytes::from(format!(
                    "{{\"item\":{},\"qty\":1}}",
                    n % 100
                ))))
        } else {
            Request::builder()
                .method(Method::GET)
                .uri(format!("http://{}/orders/{}", self.target, n % 1000))
                .body(Full::new(Bytes::new()))
        }
    }
}
