//! The OTLP trace pipeline: where spans go, and how a slow or dead collector is kept away
//! from requests.
//!
//! Finished spans go into a bounded queue drained by the SDK's batch processor on its own
//! thread; the request that ended a span never waits for it. When the queue is full the span
//! is dropped and counted (`switchyard_trace_spans_dropped_total{reason="queue-full"}`), and a
//! batch the collector did not take is counted as `export-failed`. The first failure is logged
//! once, with the reason, and so is the recovery: a collector that is down costs a log line.
//!
//! While exports fail, requests are not traced at all (their spans could only be dropped),
//! except one a second whose spans probe for the collector's return; untraced spans are
//! counted as `collector-down`. So a dead collector costs requests what tracing off costs.
//!
//! Standard environment variables are honoured: `OTEL_EXPORTER_OTLP_TRACES_ENDPOINT`,
//! `OTEL_EXPORTER_OTLP_[TRACES_]PROTOCOL`, `_HEADERS`, `_TIMEOUT`, `_COMPRESSION`,
//! `OTEL_SERVICE_NAME`, `OTEL_RESOURCE_ATTRIBUTES`, `OTEL_TRACES_SAMPLER[_ARG]` and `OTEL_BSP_*`.

use std::fmt;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, OnceLock};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use opentelemetry::trace::TracerProvider as _;
use opentelemetry::{Context, KeyValue};
use opentelemetry_otlp::{Protocol, WithExportConfig, WithHttpConfig, WithTonicConfig};
use opentelemetry_sdk::Resource;
use opentelemetry_sdk::error::OTelSdkResult;
use opentelemetry_sdk::trace::{
    BatchConfigBuilder, BatchSpanProcessor, SdkTracer, SdkTracerProvider, SpanData, SpanExporter,
    SpanProcessor,
};
use prometheus_client::metrics::counter::Counter;

use super::metrics::metrics;

const TRACES_ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_ENDPOINT";
const ENDPOINT_ENV: &str = "OTEL_EXPORTER_OTLP_ENDPOINT";
const TRACES_PROTOCOL_ENV: &str = "OTEL_EXPORTER_OTLP_TRACES_PROTOCOL";
const PROTOCOL_ENV: &str = "OTEL_EXPORTER_OTLP_PROTOCOL";
const QUEUE_SIZE_ENV: &str = "OTEL_BSP_MAX_QUEUE_SIZE";
const DEFAULT_QUEUE_SIZE: usize = 2048;
/// Bound on the OTLP/HTTP client's wait for a collector, unless `OTEL_EXPORTER_OTLP_TIMEOUT`
/// says otherwise (the exporter applies that one on top).
const HTTP_TIMEOUT: Duration = Duration::from_secs(10);

/// Whether the last export failed.
static EXPORT_FAILING: AtomicBool = AtomicBool::new(false);
/// While exports fail, when the next probe request may be traced (ms since `EPOCH`).
static NEXT_PROBE_MS: AtomicU64 = AtomicU64::new(0);
static EPOCH: OnceLock<tokio::time::Instant> = OnceLock::new();
/// How often a request is traced while the collector is unreachable.
const PROBE_EVERY_MS: u64 = 1000;

/// Whether the request starting now should be traced: always while exports succeed, once a
/// second while they fail.
pub fn admit() -> bool {
    if !EXPORT_FAILING.load(Ordering::Relaxed) {
        return true;
    }
    let epoch = *EPOCH.get_or_init(tokio::time::Instant::now);
    let now = u64::try_from(epoch.elapsed().as_millis()).unwrap_or(u64::MAX);
    let next = NEXT_PROBE_MS.load(Ordering::Relaxed);
    now >= next
        && NEXT_PROBE_MS
            .compare_exchange(
                next,
                now + PROBE_EVERY_MS,
                Ordering::Relaxed,
                Ordering::Relaxed,
            )
            .is_ok()
}

/// Counts a span not made because the collector is unreachable.
pub fn not_traced() {
    static COUNTER: OnceLock<Counter> = OnceLock::new();
    COUNTER
        .get_or_init(|| metrics().spans_dropped("collector-down"))
        .inc();
}

/// How spans reach the collector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Grpc,
    HttpProtobuf,
}

impl fmt::Display for Transport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            Transport::Grpc => "grpc",
            Transport::HttpProtobuf => "http/protobuf",
        })
    }
}

/// Where spans go.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Target {
    pub url: String,
    pub transport: Transport,
}

/// The collector to export to, if any. `configured` is `telemetry.otlp_endpoint`, which the
/// config loader already falls back to `OTEL_EXPORTER_OTLP_ENDPOINT` for. The traces-specific
/// variable beats the generic one but not the config file; it is used as given, while other
/// endpoints get `/v1/traces` appended for OTLP/HTTP, as the OTLP exporter spec says.
pub fn resolve(configured: Option<&str>, env: &dyn Fn(&str) -> Option<String>) -> Option<Target> {
    let env = |name| env(name).filter(|v| !v.trim().is_empty());
    let generic = env(ENDPOINT_ENV);
    let from_file = configured.filter(|c| Some(*c) != generic.as_deref());
    let (url, signal_specific) = match (from_file, env(TRACES_ENDPOINT_ENV), configured) {
        (Some(file), _, _) => (file.to_owned(), false),
        (None, Some(traces), _) => (traces, true),
        (None, None, Some(generic)) => (generic.to_owned(), false),
        (None, None, None) => return None,
    };
    let uri: Option<http::Uri> = url.parse().ok();
    // A trailing slash (`.../v1/traces/`) names the same path: it chose gRPC (round 12).
    let path = uri.as_ref().map_or("", |u| u.path()).trim_end_matches('/');
    let transport = match env(TRACES_PROTOCOL_ENV)
        .or_else(|| env(PROTOCOL_ENV))
        .as_deref()
    {
        Some("grpc") => Transport::Grpc,
        Some(p) if p.starts_with("http/") => Transport::HttpProtobuf,
        _ if uri.as_ref().and_then(http::Uri::port_u16) == Some(4318) => Transport::HttpProtobuf,
        _ if path.ends_with("/v1/traces") => Transport::HttpProtobuf,
        _ => Transport::Grpc,
    };
    let url = if transport == Transport::HttpProtobuf && path.ends_with("/v1/traces") {
        url.trim_end_matches('/').to_owned()
    } else if transport == Transport::HttpProtobuf && !signal_specific {
        format!("{}/v1/traces", url.trim_end_matches('/'))
    } else {
        url
    };
    Some(Target { url, transport })
}

/// A running trace pipeline.
pub struct Pipeline {
    pub provider: SdkTracerProvider,
    pub tracer: SdkTracer,
    pub target: Target,
}

/// Builds the exporter, queue and tracer for `target`. Must run inside the tokio runtime: the
/// gRPC channel and the HTTP client do their I/O on it.
pub fn build(target: Target, service_name: &str) -> Result<Pipeline, String> {
    let runtime = tokio::runtime::Handle::try_current()
        .map_err(|_| "the trace exporter needs the tokio runtime".to_owned())?;
    let is_https = target.url.starts_with("https:");
    let exporter = match target.transport {
        Transport::Grpc => {
            let mut builder = opentelemetry_otlp::SpanExporter::builder()
                .with_tonic()
                .with_endpoint(target.url.clone());
            if is_https {
                let tls = opentelemetry_otlp::tonic_types::transport::ClientTlsConfig::new()
                    .with_enabled_roots();
                builder = builder.with_tls_config(tls);
            }
            builder.build()
        }
        Transport::HttpProtobuf => opentelemetry_otlp::SpanExporter::builder()
            .with_http()
            .with_protocol(Protocol::HttpBinary)
            .with_endpoint(target.url.clone())
            .with_http_client(HttpExportClient::new(runtime)?)
            .build(),
    }
    .map_err(|e| e.to_string())?;

    let capacity = std::env::var(QUEUE_SIZE_ENV)
        .ok()
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(DEFAULT_QUEUE_SIZE)
        .max(1);
    let queue = Arc::new(Queue {
        pending: AtomicUsize::new(0),
        capacity,
        queue_full: metrics().spans_dropped("queue-full"),
        export_failed: metrics().spans_dropped("export-failed"),
        url: target.url.clone(),
    });
    // Same capacity as ours, so the SDK's queue never fills first and drops uncounted.
    let config = BatchConfigBuilder::default()
        .with_max_queue_size(capacity)
        .build();
    let batch = BatchSpanProcessor::builder(Accounted {
        inner: exporter,
        queue: queue.clone(),
    })
    .with_batch_config(config)
    .build();

    let mut resource = Resource::builder();
    if std::env::var_os("OTEL_SERVICE_NAME").is_none_or(|v| v.is_empty()) {
        resource = resource.with_service_name(service_name.to_owned());
    }
    let resource = resource
        .with_attribute(KeyValue::new("service.version", env!("CARGO_PKG_VERSION")))
        .build();
    let provider = SdkTracerProvider::builder()
        .with_span_processor(Bounded {
            inner: batch,
            queue,
        })
        .with_resource(resource)
        .build();
    let tracer = provider.tracer("switchyard");
    Ok(Pipeline {
        provider,
        tracer,
        target,
    })
}

/// What the queue holds and what it lost.
#[derive(Debug)]
struct Queue {
    /// Spans handed to the batch processor and not yet through the exporter.
    pending: AtomicUsize,
    capacity: usize,
    queue_full: Counter,
    export_failed: Counter,
    url: String,
}

/// The batch processor behind a queue bound that counts what it turns away.
#[derive(Debug)]
struct Bounded {
    inner: BatchSpanProcessor,
    queue: Arc<Queue>,
}

impl SpanProcessor for Bounded {
    fn on_start(&self, span: &mut opentelemetry_sdk::trace::Span, cx: &Context) {
        self.inner.on_start(span, cx);
    }

    fn on_end(&self, span: SpanData) {
        if self.queue.pending.fetch_add(1, Ordering::AcqRel) >= self.queue.capacity {
            self.queue.pending.fetch_sub(1, Ordering::AcqRel);
            self.queue.queue_full.inc();
            return;
        }
        self.inner.on_end(span);
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

/// The OTLP exporter, releasing queue room as batches leave and accounting for failures.
#[derive(Debug)]
struct Accounted<E> {
    inner: E,
    queue: Arc<Queue>,
}

impl<E: SpanExporter> SpanExporter for Accounted<E> {
    async fn export(&self, batch: Vec<SpanData>) -> OTelSdkResult {
        let n = batch.len();
        let result = self.inner.export(batch).await;
        let _ = self
            .queue
            .pending
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |p| {
                Some(p.saturating_sub(n))
            });
        match &result {
            Err(e) => {
                self.queue.export_failed.inc_by(n as u64);
                if !EXPORT_FAILING.swap(true, Ordering::AcqRel) {
                    tracing::warn!(endpoint = %self.queue.url,
                        "trace export failed, dropping spans until the collector answers: {e}");
                }
            }
            Ok(()) => {
                if EXPORT_FAILING.swap(false, Ordering::AcqRel) {
                    tracing::info!(endpoint = %self.queue.url, "trace export recovered");
                }
            }
        }
        result
    }

    fn shutdown_with_timeout(&self, timeout: Duration) -> OTelSdkResult {
        self.inner.shutdown_with_timeout(timeout)
    }

    fn force_flush(&self) -> OTelSdkResult {
        self.inner.force_flush()
    }

    fn set_resource(&mut self, resource: &Resource) {
        self.inner.set_resource(resource);
    }
}

type ExportFuture<'a> = Pin<
    Box<
        dyn Future<Output = Result<http::Response<Bytes>, opentelemetry_http::HttpError>>
            + Send
            + 'a,
    >,
>;

/// The OTLP/HTTP client: hyper on the proxy's runtime. The batch processor calls it from its
/// own thread, so each request is spawned onto the runtime and awaited from there.
#[derive(Debug)]
struct HttpExportClient {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    runtime: tokio::runtime::Handle,
}

impl HttpExportClient {
    fn new(runtime: tokio::runtime::Handle) -> Result<Self, String> {
        let tls = crate::upstream::tls::client_config(None).map_err(|e| e.to_string())?;
        let mut http = HttpConnector::new();
        http.enforce_http(false);
        http.set_connect_timeout(Some(HTTP_TIMEOUT));
        let connector = hyper_rustls::HttpsConnectorBuilder::new()
            .with_tls_config(tls)
            .https_or_http()
            .enable_http1()
            .wrap_connector(http);
        let client = Client::builder(TokioExecutor::new()).build(connector);
        Ok(HttpExportClient { client, runtime })
    }
}

impl opentelemetry_http::HttpClient for HttpExportClient {
    fn send_bytes<'life0, 'async_trait>(
        &'life0 self,
        request: http::Request<Bytes>,
    ) -> ExportFuture<'async_trait>
    where
        'life0: 'async_trait,
        Self: 'async_trait,
    {
        let client = self.client.clone();
        let task = self.runtime.spawn(async move {
            let exchange = async {
                let resp = client.request(request.map(Full::new)).await?;
                let (parts, body) = resp.into_parts();
                let body = Limited::new(body, 4 * 1024 * 1024)
                    .collect()
                    .await?
                    .to_bytes();
                Ok::<_, opentelemetry_http::HttpError>(http::Response::from_parts(parts, body))
            };
            match tokio::time::timeout(HTTP_TIMEOUT, exchange).await {
                Ok(result) => result,
                Err(_) => Err("the collector did not answer in time".into()),
            }
        });
        Box::pin(async move {
            task.await
                .map_err(|e| Box::new(e) as opentelemetry_http::HttpError)?
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn resolve_with(configured: Option<&str>, vars: &[(&str, &str)]) -> Option<Target> {
        let env = |name: &str| {
            vars.iter()
                .find(|(n, _)| *n == name)
                .map(|(_, v)| (*v).to_owned())
        };
        resolve(configured, &env)
    }

    fn target(url: &str, transport: Transport) -> Option<Target> {
        Some(Target {
            url: url.to_owned(),
            transport,
        })
    }

    #[test]
    fn no_endpoint_means_no_traces() {
        assert_eq!(resolve_with(None, &[]), None);
        assert_eq!(resolve_with(None, &[(PROTOCOL_ENV, "grpc")]), None);
    }

    #[test]
    fn grpc_unless_the_endpoint_or_environment_says_http() {
        assert_eq!(
            resolve_with(Some("http://127.0.0.1:4317"), &[]),
            target("http://127.0.0.1:4317", Transport::Grpc)
        );
        assert_eq!(
            resolve_with(Some("http://collector:4318"), &[]),
            target("http://collector:4318/v1/traces", Transport::HttpProtobuf)
        );
        assert_eq!(
            resolve_with(Some("https://otlp.example.com/v1/traces"), &[]),
            target(
                "https://otlp.example.com/v1/traces",
                Transport::HttpProtobuf
            )
        );
        assert_eq!(
            resolve_with(Some("https://otlp.example.com/v1/traces/"), &[]),
            target(
                "https://otlp.example.com/v1/traces",
                Transport::HttpProtobuf
            )
        );
        assert_eq!(
            resolve_with(
                Some("http://collector:9000/otlp/"),
                &[(PROTOCOL_ENV, "http/protobuf")]
            ),
            target(
                "http://collector:9000/otlp/v1/traces",
                Transport::HttpProtobuf
            )
        );
        assert_eq!(
            resolve_with(
                Some("http://collector:4318"),
                &[
                    (TRACES_PROTOCOL_ENV, "grpc"),
                    (PROTOCOL_ENV, "http/protobuf")
                ]
            ),
            target("http://collector:4318", Transport::Grpc)
        );
    }

    #[test]
    fn the_traces_variable_beats_the_generic_one_but_not_the_file() {
        let generic = "http://generic:4317";
        let vars = [
            (ENDPOINT_ENV, generic),
            (TRACES_ENDPOINT_ENV, "http://traces:4318/custom"),
        ];
        // The config loader copied the generic variable into `otlp_endpoint`.
        assert_eq!(
            resolve_with(Some(generic), &vars),
            target("http://traces:4318/custom", Transport::HttpProtobuf)
        );
        assert_eq!(
            resolve_with(Some("http://file:4317"), &vars),
            target("http://file:4317", Transport::Grpc)
        );
        assert_eq!(
            resolve_with(None, &[(TRACES_ENDPOINT_ENV, "http://traces:4317")]),
            target("http://traces:4317", Transport::Grpc)
        );
    }
}
