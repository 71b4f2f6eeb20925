//! `FakeCollector`: an OTLP trace receiver on 127.0.0.1 that keeps every span it is sent.
//!
//! It speaks OTLP/gRPC (a tonic server implementing the `TraceService` of the
//! `opentelemetry-proto` types) or OTLP/HTTP with protobuf bodies (`POST /v1/traces`).
//!
//! ```ignore
//! let collector = FakeCollector::grpc().await;
//! // ... [telemetry] otlp_endpoint = collector.endpoint() ...
//! let spans = collector.wait_for(Duration::from_secs(10), |s| s.len() >= 2).await;
//! ```

use std::net::{Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Duration;

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use hyper_util::rt::{TokioExecutor, TokioIo};
use opentelemetry_proto::tonic::collector::trace::v1::trace_service_server::{
    TraceService, TraceServiceServer,
};
use opentelemetry_proto::tonic::collector::trace::v1::{
    ExportTraceServiceRequest, ExportTraceServiceResponse,
};
use opentelemetry_proto::tonic::common::v1::{KeyValue, any_value};
use opentelemetry_proto::tonic::trace::v1::{Span, span};
use prost::Message;
use tokio::net::TcpListener;
use tokio::task::JoinHandle;

use crate::wait::wait_until;

/// One exported span with what it was exported with.
#[derive(Clone, Debug)]
pub struct CollectedSpan {
    pub span: Span,
    /// Attributes of the span's resource (`service.name`, ...).
    pub resource: Vec<KeyValue>,
    /// Name of the instrumentation scope.
    pub scope: String,
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The value of attribute `key` as text (strings as is, numbers and booleans formatted).
pub fn attr(attributes: &[KeyValue], key: &str) -> Option<String> {
    let value = attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?;
    Some(match value {
        any_value::Value::StringValue(s) => s.clone(),
        any_value::Value::BoolValue(b) => b.to_string(),
        any_value::Value::IntValue(i) => i.to_string(),
        any_value::Value::DoubleValue(d) => d.to_string(),
        other => format!("{other:?}"),
    })
}

/// The value of attribute `key` when it was exported as an integer.
pub fn int_attr(attributes: &[KeyValue], key: &str) -> Option<i64> {
    match attributes
        .iter()
        .find(|kv| kv.key == key)?
        .value
        .as_ref()?
        .value
        .as_ref()?
    {
        any_value::Value::IntValue(i) => Some(*i),
        _ => None,
    }
}

impl CollectedSpan {
    /// Attribute `key` when it was exported as an integer (`None` for a number sent as text).
    pub fn int_attr(&self, key: &str) -> Option<i64> {
        int_attr(&self.span.attributes, key)
    }

    pub fn name(&self) -> &str {
        &self.span.name
    }

    pub fn trace_id(&self) -> String {
        hex(&self.span.trace_id)
    }

    pub fn span_id(&self) -> String {
        hex(&self.span.span_id)
    }

    /// Empty for a root span.
    pub fn parent_span_id(&self) -> String {
        hex(&self.span.parent_span_id)
    }

    pub fn kind(&self) -> span::SpanKind {
        span::SpanKind::try_from(self.span.kind).unwrap_or(span::SpanKind::Unspecified)
    }

    pub fn attr(&self, key: &str) -> Option<String> {
        attr(&self.span.attributes, key)
    }

    pub fn resource_attr(&self, key: &str) -> Option<String> {
        attr(&self.resource, key)
    }

    /// The first span event called `name`.
    pub fn event(&self, name: &str) -> Option<&span::Event> {
        self.span.events.iter().find(|e| e.name == name)
    }

    /// Names of the span's events, in order.
    pub fn event_names(&self) -> Vec<&str> {
        self.span.events.iter().map(|e| e.name.as_str()).collect()
    }

    /// `Error` or `Ok` or `Unset`.
    pub fn status_code(&self) -> String {
        let code = self.span.status.as_ref().map_or(0, |s| s.code);
        match code {
            1 => "Ok",
            2 => "Error",
            _ => "Unset",
        }
        .to_owned()
    }
}

#[derive(Clone, Default)]
struct Store {
    spans: Arc<Mutex<Vec<CollectedSpan>>>,
    exports: Arc<Mutex<usize>>,
}

impl Store {
    fn lock(&self) -> MutexGuard<'_, Vec<CollectedSpan>> {
        self.spans.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn add(&self, request: ExportTraceServiceRequest) {
        let mut spans = self.lock();
        for rs in request.resource_spans {
            let resource = rs.resource.map(|r| r.attributes).unwrap_or_default();
            for ss in rs.scope_spans {
                let scope = ss.scope.map(|s| s.name).unwrap_or_default();
                for span in ss.spans {
                    spans.push(CollectedSpan {
                        span,
                        resource: resource.clone(),
                        scope: scope.clone(),
                    });
                }
            }
        }
        *self.exports.lock().unwrap_or_else(|e| e.into_inner()) += 1;
    }
}

struct Receiver(Store);

#[tonic::async_trait]
impl TraceService for Receiver {
    async fn export(
        &self,
        request: tonic::Request<ExportTraceServiceRequest>,
    ) -> Result<tonic::Response<ExportTraceServiceResponse>, tonic::Status> {
        self.0.add(request.into_inner());
        Ok(tonic::Response::new(ExportTraceServiceResponse {
            partial_success: None,
        }))
    }
}

/// A running OTLP receiver. Dropping it stops it.
pub struct FakeCollector {
    addr: SocketAddr,
    http: bool,
    store: Store,
    task: JoinHandle<()>,
}

async fn bind(port: u16) -> TcpListener {
    TcpListener::bind((Ipv4Addr::LOCALHOST, port))
        .await
        .expect("bind the fake collector on 127.0.0.1")
}

impl FakeCollector {
    /// An OTLP/gRPC receiver.
    pub async fn grpc() -> FakeCollector {
        Self::grpc_on(0).await
    }

    /// An OTLP/gRPC receiver on this port (to bring a collector up where one was missing).
    pub async fn grpc_on(port: u16) -> FakeCollector {
        let listener = bind(port).await;
        let addr = listener.local_addr().expect("collector address");
        let store = Store::default();
        let service = TraceServiceServer::new(Receiver(store.clone()));
        let task = tokio::spawn(async move {
            let incoming = tonic::transport::server::TcpIncoming::from(listener);
            let _ = tonic::transport::Server::builder()
                .add_service(service)
                .serve_with_incoming(incoming)
                .await;
        });
        FakeCollector {
            addr,
            http: false,
            store,
            task,
        }
    }

    /// An OTLP/HTTP receiver taking protobuf at `POST /v1/traces`.
    pub async fn http() -> FakeCollector {
        let listener = bind(0).await;
        let addr = listener.local_addr().expect("collector address");
        let store = Store::default();
        let shared = store.clone();
        let task = tokio::spawn(async move {
            // Ends when the task is aborted; each connection is bounded by its client.
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    tokio::time::sleep(Duration::from_millis(10)).await;
                    continue;
                };
                let store = shared.clone();
                tokio::spawn(async move {
                    let service = service_fn(move |req: hyper::Request<hyper::body::Incoming>| {
                        let store = store.clone();
                        async move {
                            let ok = req.uri().path() == "/v1/traces";
                            let body = req.into_body().collect().await.map(|b| b.to_bytes());
                            let decoded = body
                                .ok()
                                .and_then(|b| ExportTraceServiceRequest::decode(b).ok());
                            let status = match decoded {
                                Some(request) if ok => {
                                    store.add(request);
                                    200
                                }
                                _ => 400,
                            };
                            let reply = ExportTraceServiceResponse {
                                partial_success: None,
                            }
                            .encode_to_vec();
                            let resp = hyper::Response::builder()
                                .status(status)
                                .header("content-type", "application/x-protobuf")
                                .body(Full::new(Bytes::from(reply)));
                            resp.map_err(|e| e.to_string())
                        }
                    });
                    let _ = hyper_util::server::conn::auto::Builder::new(TokioExecutor::new())
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FakeCollector {
            addr,
            http: true,
            store,
            task,
        }
    }

    pub fn addr(&self) -> SocketAddr {
        self.addr
    }

    /// What `telemetry.otlp_endpoint` should say: `http://127.0.0.1:PORT`, plus `/v1/traces`
    /// for the HTTP receiver (so the proxy picks OTLP/HTTP from the path).
    pub fn endpoint(&self) -> String {
        if self.http {
            format!("http://{}/v1/traces", self.addr)
        } else {
            format!("http://{}", self.addr)
        }
    }

    /// Every span received so far.
    pub fn spans(&self) -> Vec<CollectedSpan> {
        self.store.lock().clone()
    }

    /// How many export calls arrived.
    pub fn exports(&self) -> usize {
        *self.store.exports.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Waits until `done(spans)` holds, then returns the spans; returns them anyway after
    /// `timeout`, for the caller's assertion to explain.
    pub async fn wait_for(
        &self,
        timeout: Duration,
        done: impl Fn(&[CollectedSpan]) -> bool,
    ) -> Vec<CollectedSpan> {
        wait_until(timeout, || done(&self.store.lock())).await;
        self.spans()
    }
}

impl Drop for FakeCollector {
    fn drop(&mut self) {
        self.task.abort();
    }
}
