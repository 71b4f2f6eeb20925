//! Process signals: SIGTERM/SIGINT stop the sidecar gracefully, SIGHUP reloads.

use std::sync::Arc;

use tokio::signal::unix::{SignalKind, signal};

use crate::app::AppState;

/// Resolves on SIGTERM or SIGINT; reloads on every SIGHUP meanwhile.
pub async fn until_stopped(state: Arc<AppState>) {
    let (Ok(mut term), Ok(mut int), Ok(mut hup)) = (
        signal(SignalKind::terminate()),
        signal(SignalKind::interrupt()),
        signal(SignalKind::hangup()),
    ) else {
        tracing::error!("cannot install signal handlers; stop with SIGKILL");
        return std::future::pending().await;
    };
    loop {
        tokio::select! {
            _ = term.recv() => { tracing::info!("SIGTERM received"); return; }
            _ = int.recv() => { tracing::info!("SIGINT received"); return; }
            _ = hup.recv() => {
                tracing::info!("SIGHUP received: reloading");
                if let Err(e) = crate::reload::reload(&state).await {
                    tracing::error!("reload refused, keeping the running config:\n{e}");
                }
            }
        }
    }
}
