//! One service at run time: its regions' clients, health, retry budget and policy.
//!
//! A `Service` is immutable once built; reload builds a new one (carrying health over) and
//! swaps it into the listener's slot, so in-flight requests finish on the one they started with.

use std::sync::Arc;

use arc_swap::ArcSwap;
use tokio::task::JoinHandle;
use tokio_rustls::TlsAcceptor;

use crate::body::stall::StallReport;
use crate::config::ServiceConfig;
use crate::health::active::probe_loop;
use crate::health::{HealthEvent, HealthHandle, HealthMonitor, HealthMonitorState};
use crate::policy::{DefaultPolicy, Policy};
use crate::retry::RetryBudget;
use crate::server;
use crate::stale::StaleCache;
use crate::telemetry::{ServiceMetrics, metrics};
use crate::upstream::{TlsError, Upstream};
use crate::write_gate::WriteGate;

/// Where a listener finds the current version of its service.
pub type ServiceSlot = Arc<ArcSwap<Service>>;

#[derive(Debug, thiserror::Error)]
#[error("service {service}, {part}: {source}")]
pub struct BuildError {
    pub service: String,
    /// "listener TLS" or "region NAME".
    pub part: String,
    pub source: Box<TlsError>,
}

pub struct Service {
    pub config: Arc<ServiceConfig>,
    /// Index-aligned with `config.regions`.
    pub upstreams: Vec<Arc<Upstream>>,
    pub health: HealthHandle,
    /// Index-aligned with `upstreams`: where a region's stalled response body is reported.
    pub stalls: Vec<Arc<StallReport>>,
    pub budget: RetryBudget,
    pub policy: Arc<dyn Policy>,
    /// Request-path metric recorders, resolved once for this service's regions.
    pub metrics: ServiceMetrics,
    /// The stale-if-error cache, when `degraded.stale_if_error` is on.
    pub stale: Option<Arc<StaleCache>>,
    /// Holds writes while the write region moves (`POST /services/{svc}/failover`).
    pub writes: WriteGate,
    /// Taken by a write failover for its whole move: two at once would each reopen the gate
    /// while the other still moves writes (round 11).
    pub write_move: tokio::sync::Mutex<()>,
    /// The listener's TLS, when configured. It lives here, not with the listener, so a reload
    /// that swaps the service also rotates the certificate for new connections.
    pub tls: Option<TlsAcceptor>,
    probes: Vec<JoinHandle<()>>,
    monitor: std::sync::Mutex<Option<JoinHandle<HealthMonitorState>>>,
}

impl Service {
    /// Builds clients (reading TLS files) and starts the health monitor and probe loops.
    /// Must run inside a tokio runtime.
    pub fn start(
        config: Arc<ServiceConfig>,
        policy: Option<Arc<dyn Policy>>,
        previous: Option<&HealthMonitorState>,
    ) -> Result<Service, BuildError> {
        let tls = match &config.tls {
            Some(tls) => Some(server::tls_acceptor(tls).map_err(|source| BuildError {
                service: config.name.clone(),
                part: "listener TLS".into(),
                source: Box::new(source),
            })?),
            None => None,
        };
        let mut upstreams = Vec::with_capacity(config.regions.len());
        for region in &config.regions {
            let up = Upstream::new(&config.name, region, config.retry.per_try_timeout).map_err(
                |source| BuildError {
                    service: config.name.clone(),
                    part: format!("region {}", region.name),
                    source: Box::new(source),
                },
            )?;
            upstreams.push(Arc::new(up));
        }
        let (monitor, health, events) = HealthMonitor::new(config.clone(), previous);
        let metrics =
            metrics().service(&config.name, config.regions.iter().map(|r| r.name.as_str()));
        let service: Arc<str> = config.name.as_str().into();
        let stalls = upstreams
            .iter()
            .enumerate()
            .map(|(i, up)| {
                Arc::new(StallReport::new(
                    config.retry.per_try_timeout,
                    health.clone(),
                    &metrics,
                    i,
                    service.clone(),
                    up.name.clone(),
                ))
            })
            .collect();
        let policy = policy.unwrap_or_else(|| Arc::new(DefaultPolicy));
        policy.attach(&health);
        let monitor = tokio::spawn(monitor.run(events));
        let probes = upstreams
            .iter()
            .enumerate()
            .map(|(i, up)| {
                tokio::spawn(probe_loop(
                    i,
                    up.clone(),
                    config.health.clone(),
                    health.event_sender(),
                ))
            })
            .collect();
        Ok(Service {
            budget: RetryBudget::new(config.retry.budget_ratio, config.retry.min_retries_per_sec),
            policy,
            stale: (!config.degraded.stale_if_error.is_zero())
                .then(|| Arc::new(StaleCache::new(config.degraded.stale_if_error))),
            writes: WriteGate::default(),
            write_move: tokio::sync::Mutex::new(()),
            tls,
            metrics,
            config,
            upstreams,
            health,
            stalls,
            probes,
            monitor: std::sync::Mutex::new(Some(monitor)),
        })
    }

    pub fn region_index(&self, name: &str) -> Option<usize> {
        self.config.regions.iter().position(|r| r.name == name)
    }

    /// Stops probes and the monitor, returning region health for the service that replaces it.
    pub async fn stop(&self) -> Option<HealthMonitorState> {
        for p in &self.probes {
            p.abort();
        }
        let monitor = self.monitor.lock().ok()?.take()?;
        self.health.send(HealthEvent::Stop).await;
        monitor.await.ok()
    }
}

impl Drop for Service {
    fn drop(&mut self) {
        for p in &self.probes {
            p.abort();
        }
        if let Ok(mut m) = self.monitor.lock()
            && let Some(m) = m.take()
        {
            m.abort();
        }
    }
}
