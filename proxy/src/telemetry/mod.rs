//! Telemetry: log lines, OpenTelemetry traces over OTLP, and Prometheus metrics.
//!
//! - [`logs`]: `text` or `json` lines on stderr, filtered like `RUST_LOG`.
//! - [`traces`]: the request and attempt spans, span events, W3C context in and out.
//! - [`otlp`]: the export pipeline behind them: endpoint, protocol, bounded queue.
//! - [`metrics`]: the registry behind `GET /metrics` and the typed recorders.
//! - [`service_metrics`]: a service's recorders for the request path, resolved once.
//! - [`exposition`]: the OpenMetrics and Prometheus text formats.
//!
//! [`init`] installs logs and, when an OTLP endpoint is configured, traces. Without one no
//! trace layer exists, so request spans are disabled at their call sites.

pub mod exposition;
pub mod log_limit;
pub mod logs;
pub mod metrics;
pub mod otlp;
pub mod service_metrics;
pub mod traces;

use std::time::Duration;

use opentelemetry_sdk::trace::SdkTracerProvider;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;

use crate::config::{LogFormat, TelemetryConfig};
pub use metrics::{Metrics, NO_REGION, ServiceMetrics, metrics};

/// How long shutdown waits for the last spans to reach the collector.
const FLUSH_TIMEOUT: Duration = Duration::from_secs(3);

/// Flushes and stops the trace pipeline when dropped. Drop it before the tokio runtime: the
/// exporter's connections live there.
#[must_use = "dropping the guard stops trace export"]
pub struct TelemetryGuard {
    provider: Option<SdkTracerProvider>,
}

impl Drop for TelemetryGuard {
    fn drop(&mut self) {
        if let Some(provider) = self.provider.take()
            && let Err(e) = provider.shutdown_with_timeout(FLUSH_TIMEOUT)
        {
            tracing::warn!("trace export did not finish at shutdown: {e}");
        }
    }
}

/// Installs the global subscriber: log lines, plus OTLP trace export when
/// `telemetry.otlp_endpoint` (or an `OTEL_EXPORTER_OTLP_*ENDPOINT` variable) names a
/// collector. Call inside the tokio runtime. A second call (tests, reload) changes nothing.
pub fn init(config: &TelemetryConfig) -> TelemetryGuard {
    let env = |name: &str| std::env::var(name).ok();
    let pipeline = otlp::resolve(config.otlp_endpoint.as_deref(), &env)
        .map(|target| otlp::build(target, &config.service_name));
    let (pipeline, problem) = match pipeline {
        Some(Ok(p)) => (Some(p), None),
        Some(Err(e)) => (None, Some(e)),
        None => (None, None),
    };
    let trace_layer = pipeline.as_ref().map(|p| traces::layer(p.tracer.clone()));
    let installed = tracing_subscriber::registry()
        .with(logs::layer(config.log_format))
        .with(trace_layer)
        .try_init()
        .is_ok();
    if let Some(problem) = problem {
        tracing::warn!("traces are off: cannot set up OTLP export: {problem}");
    }
    let provider = match pipeline {
        Some(p) if installed => {
            traces::activate();
            tracing::info!(endpoint = %p.target.url, protocol = %p.target.transport, "exporting traces over OTLP");
            Some(p.provider)
        }
        Some(p) => {
            let _ = p.provider.shutdown_with_timeout(Duration::ZERO);
            None
        }
        None => None,
    };
    TelemetryGuard { provider }
}

/// Installs log lines only (for `switchyard demo` and tools); a second call is a no-op.
pub fn init_logs(format: LogFormat) {
    let _ = tracing_subscriber::registry()
        .with(logs::layer(format))
        .try_init();
}
