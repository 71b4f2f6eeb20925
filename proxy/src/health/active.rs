//! Active health checks: one probe loop per region, reporting each verdict to the monitor.

use std::sync::Arc;

use http::uri::PathAndQuery;
use http::{Request, header};
use http_body_util::BodyExt;
use tokio::sync::mpsc;
use tokio::time::{MissedTickBehavior, timeout};

use super::monitor::HealthEvent;
use crate::body::ProxyBody;
use crate::config::HealthConfig;
use crate::upstream::Upstream;

/// Probes `upstream` every `cfg.interval` until the monitor goes away.
pub async fn probe_loop(
    region: usize,
    upstream: Arc<Upstream>,
    cfg: HealthConfig,
    events: mpsc::Sender<HealthEvent>,
) {
    let path = match PathAndQuery::try_from(cfg.path.as_str()) {
        Ok(p) => p,
        Err(e) => {
            tracing::error!(region = %upstream.name, "health check path rejected: {e}");
            return;
        }
    };
    let mut tick = tokio::time::interval(cfg.interval);
    tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let ok = probe_once(&upstream, &path, &cfg).await;
        if events
            .send(HealthEvent::Probe { region, ok })
            .await
            .is_err()
        {
            return;
        }
    }
}

async fn probe_once(upstream: &Upstream, path: &PathAndQuery, cfg: &HealthConfig) -> bool {
    let Ok(uri) = upstream.uri(Some(path)) else {
        return false;
    };
    let Ok(req) = Request::get(uri)
        .header(header::HOST, upstream.host_header())
        .header(header::USER_AGENT, "switchyard-health-check")
        .body(ProxyBody::Empty)
    else {
        return false;
    };
    let probe = async {
        match upstream.send(Box::new(req)).await {
            Ok(resp) => {
                let ok = cfg.expect_status.contains(resp.status());
                // Read the body so the connection goes back to the pool.
                let _ = resp.into_body().collect().await;
                ok
            }
            Err(err) => {
                tracing::debug!("health probe failed: {err}");
                false
            }
        }
    };
    timeout(cfg.timeout, probe).await.unwrap_or(false)
}
