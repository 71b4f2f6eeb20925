//! The running sidecar: services in their slots, listeners, the admin API, and shutdown.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use arc_swap::ArcSwap;
use tokio::net::TcpListener;
use tokio::sync::watch;

use crate::admin;
use crate::config::Config;
use crate::plugin::{self, PluginErrors};
use crate::server;
use crate::service::{BuildError, Service, ServiceSlot};

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error("{0}")]
    Bind(std::io::Error),
    #[error("{0}")]
    Build(#[from] BuildError),
    #[error("{0}")]
    Plugin(#[from] PluginErrors),
}

impl StartError {
    /// SPEC exit codes: 1 for an invalid plugin, 2 for runtime failures (port in use, ...).
    pub fn exit_code(&self) -> u8 {
        match self {
            StartError::Plugin(_) => 1,
            _ => 2,
        }
    }
}

/// A service as the admin API finds it.
#[derive(Clone)]
pub struct ServiceEntry {
    pub name: String,
    pub slot: ServiceSlot,
    /// The address actually bound (differs from the config when it asked for port 0).
    pub listen: std::net::SocketAddr,
}

/// State shared by the listeners and the admin API.
pub struct AppState {
    pub config: ArcSwap<Config>,
    pub services: ArcSwap<Vec<ServiceEntry>>,
    /// Set once every listener is bound and every service built.
    pub ready: AtomicBool,
}

impl AppState {
    pub fn service(&self, name: &str) -> Option<ServiceEntry> {
        self.services
            .load()
            .iter()
            .find(|s| s.name == name)
            .cloned()
    }
}

struct BoundService {
    listener: TcpListener,
    slot: ServiceSlot,
}

pub struct App {
    state: Arc<AppState>,
    bound: Vec<BoundService>,
    admin: TcpListener,
}

impl App {
    /// Builds every service and binds every listener; nothing is served yet.
    pub async fn build(config: Config) -> Result<App, StartError> {
        let admin = server::bind(config.admin.listen, "the admin API")
            .await
            .map_err(StartError::Bind)?;
        let mut bound = Vec::with_capacity(config.services.len());
        let mut entries = Vec::with_capacity(config.services.len());
        for svc in &config.services {
            let listener = server::bind(svc.listen, &format!("service {}", svc.name))
                .await
                .map_err(StartError::Bind)?;
            let policy = plugin::build_policy(svc)?;
            let service = Service::start(Arc::new(svc.clone()), policy, None)?;
            let slot: ServiceSlot = Arc::new(ArcSwap::from_pointee(service));
            entries.push(ServiceEntry {
                name: svc.name.clone(),
                slot: slot.clone(),
                listen: listener.local_addr().unwrap_or(svc.listen),
            });
            bound.push(BoundService { listener, slot });
        }
        let state = Arc::new(AppState {
            config: ArcSwap::from_pointee(config),
            services: ArcSwap::from_pointee(entries),
            ready: AtomicBool::new(false),
        });
        Ok(App {
            state,
            bound,
            admin,
        })
    }

    pub fn state(&self) -> Arc<AppState> {
        self.state.clone()
    }

    /// The address each service listens on (useful when the config asked for port 0).
    pub fn service_addrs(&self) -> Vec<(String, std::net::SocketAddr)> {
        self.bound
            .iter()
            .filter_map(|b| {
                let addr = b.listener.local_addr().ok()?;
                Some((b.slot.load().config.name.clone(), addr))
            })
            .collect()
    }

    pub fn admin_addr(&self) -> Option<std::net::SocketAddr> {
        self.admin.local_addr().ok()
    }

    /// Serves until `shutdown` resolves, then stops accepting and lets in-flight requests
    /// finish for at most `shutdown_grace`.
    pub async fn run(self, shutdown: impl std::future::Future<Output = ()>) {
        let (stop_tx, stop_rx) = watch::channel(false);
        let admin = tokio::spawn(admin::serve(
            self.admin,
            self.state.clone(),
            stop_rx.clone(),
        ));
        let mut servers = Vec::new();
        for b in self.bound {
            servers.push(tokio::spawn(server::serve(
                b.listener,
                b.slot,
                stop_rx.clone(),
            )));
        }
        self.state.ready.store(true, Ordering::Release);
        tracing::info!("switchyard is ready");
        shutdown.await;

        let grace = self.state.config.load().shutdown_grace;
        tracing::info!(
            grace_ms = grace.as_millis() as u64,
            "shutting down: draining in-flight requests"
        );
        self.state.ready.store(false, Ordering::Release);
        let _ = stop_tx.send(true);
        let drain = async {
            for s in servers {
                if let Ok(graceful) = s.await {
                    graceful.shutdown().await;
                }
            }
        };
        if tokio::time::timeout(grace, drain).await.is_err() {
            tracing::warn!("shutdown_grace elapsed with requests still in flight; closing them");
        }
        admin.abort();
        // Let the log line above reach its writer before the runtime goes away.
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
}
