//! Live reload (SIGHUP, `POST /reload`): re-read config and plugins, swap services in place.
//!
//! Everything is built before anything is swapped, so a bad config or plugin changes nothing.
//! Region health, drains and drill faults carry over for regions that keep their name, and so
//! does a write region moved by manual failover unless the new config moves it itself. The
//! stale copies (`stale_if_error`) carry over while the service keeps the setting.
//! Listener addresses are bound at start and cannot move by reload; a listener's certificate
//! and key are read again, so a reload rotates them for new connections. `[telemetry]` and
//! `workers` are set up once at start: a reload that changes them is refused.

use std::sync::Arc;

use crate::app::AppState;
use crate::config::{self, Config, ConfigErrors};
use crate::plugin::{self, PluginError, PluginErrors};
use crate::service::{BuildError, Service};
use crate::stale::StaleCache;

#[derive(Debug, thiserror::Error)]
pub enum ReloadError {
    #[error("{0}")]
    Config(ConfigErrors),
    #[error("{0}")]
    Plugin(PluginErrors),
    #[error("{0}")]
    Build(BuildError),
    #[error("{0}")]
    Listeners(String),
}

/// Serializes reloads with each other and with the admin changes a reload carries over: two
/// reloads at once would race on the slots, and a drain, fault or write failover that lands
/// while a reload builds the next service changes the one being replaced and is lost. Admin
/// changes share it among themselves: one service's write failover, waiting up to
/// `request_timeout` for its writes in flight, does not hold up another service's drain.
static RELOAD: tokio::sync::RwLock<()> = tokio::sync::RwLock::const_new(());

/// Held by an admin change of what a reload carries over (region drains and faults, the
/// write region) while it is made: a reload waits for it, and it waits for a reload. A write
/// failover made during a reload was acknowledged and then undone by it (round 9b).
pub async fn hold_off() -> tokio::sync::RwLockReadGuard<'static, ()> {
    RELOAD.read().await
}

pub async fn reload(state: &AppState) -> Result<(), ReloadError> {
    let _one_at_a_time = RELOAD.write().await;
    let current = state.config.load_full();
    let next = config::load(&current.source).map_err(ReloadError::Config)?;
    same_listeners(&current, &next).map_err(ReloadError::Listeners)?;

    let mut built = Vec::with_capacity(next.services.len());
    for svc in &next.services {
        let Some(entry) = state.service(&svc.name) else {
            return Err(ReloadError::Listeners(format!(
                "service {} is new",
                svc.name
            )));
        };
        let old = entry.slot.load_full();
        // Compiling plugins is CPU work of up to a few hundred ms: keep it off the workers.
        let cfg = svc.clone();
        let policy = tokio::task::spawn_blocking(move || plugin::build_policy(&cfg))
            .await
            .map_err(|e| {
                ReloadError::Plugin(PluginErrors(vec![PluginError {
                    at: None,
                    message: format!("plugin loading: {e}"),
                }]))
            })?
            .map_err(ReloadError::Plugin)?;
        let carried = old.health.export().await;
        let service = Service::start(Arc::new(svc.clone()), policy, carried.as_ref())
            .map_err(ReloadError::Build)?;
        for (i, up) in service.upstreams.iter().enumerate() {
            if let Some(j) = old.region_index(&service.config.regions[i].name) {
                up.set_fault(old.upstreams[j].fault().map(|f| (*f).clone()));
            }
        }
        built.push((entry, service));
    }
    for (entry, mut service) in built {
        // Taken only now that nothing can fail: a refused reload leaves the copies in place.
        if let (Some(new), Some(old)) = (&mut service.stale, &entry.slot.load().stale) {
            *new = Arc::new(StaleCache::take_over(
                old,
                service.config.degraded.stale_if_error,
            ));
        }
        // In-flight requests keep the old service alive until they finish.
        entry.slot.store(Arc::new(service));
    }
    state.config.store(Arc::new(next));
    tracing::info!("config reloaded from {}", current.source.display());
    Ok(())
}

fn same_listeners(current: &Config, next: &Config) -> Result<(), String> {
    let describe = |c: &Config| -> Vec<(String, String, bool)> {
        let mut v: Vec<_> = c
            .services
            .iter()
            .map(|s| (s.name.clone(), s.listen.to_string(), s.tls.is_some()))
            .collect();
        v.sort();
        v
    };
    if current.admin.listen != next.admin.listen || describe(current) != describe(next) {
        return Err(
            "reload cannot add or remove services or change listen addresses or listener TLS; \
             restart switchyard for that"
                .into(),
        );
    }
    // Set up once at start (the trace exporter, the log format, the runtime's threads):
    // refused rather than reported as reloaded and silently kept.
    if current.telemetry != next.telemetry || current.workers != next.workers {
        return Err(
            "reload cannot change [telemetry] or workers; restart switchyard for that".into(),
        );
    }
    Ok(())
}
