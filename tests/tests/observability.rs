//! Observability through the real proxy: OTLP traces received by a real OTLP/gRPC (and
//! OTLP/HTTP) receiver, the trace context the region sees, JSON log lines with trace ids, a
//! dead collector, and `/metrics` parsed as Prometheus text while traffic, failovers,
//! ejections, degraded answers and plugin faults happen.

use std::time::{Duration, Instant};

use opentelemetry_proto::tonic::trace::v1::span::SpanKind;
use switchyard_tests::otlp::attr;
use switchyard_tests::{
    CollectedSpan, FakeCollector, FakeRegion, Mode, ProxyProcess, Scrape, TestConfig, eventually,
    free_port, http1_client, plugin, wait_until,
};

const WAIT: Duration = Duration::from_secs(10);

/// Health checks too slow to matter during a test, and ejection on the first failure: region
/// health changes only through the traffic the test sends.
const TRAFFIC_DRIVEN_HEALTH: &str = "[services.health]\ninterval = \"60s\"\n\
     [services.outlier]\nconsecutive_failures = 1\nbase_ejection = \"60s\"\n";

fn telemetry(endpoint: &str, log_format: &str) -> String {
    format!(
        "[telemetry]\nservice_name = \"orders-sidecar\"\notlp_endpoint = \"{endpoint}\"\nlog_format = \"{log_format}\"\n"
    )
}

/// Starts the proxy with a short batch delay, so spans leave within milliseconds.
async fn start(cfg: &TestConfig, extra_env: &[(&str, &str)]) -> ProxyProcess {
    let mut builder = ProxyProcess::builder(&cfg.render()).env("OTEL_BSP_SCHEDULE_DELAY", "50");
    for (k, v) in extra_env {
        builder = builder.env(k, v);
    }
    builder.start().await.expect("proxy starts")
}

fn of_trace<'a>(spans: &'a [CollectedSpan], trace_id: &str) -> Vec<&'a CollectedSpan> {
    spans.iter().filter(|s| s.trace_id() == trace_id).collect()
}

fn event_attr(span: &CollectedSpan, event: &str, key: &str) -> Option<String> {
    span.event(event).and_then(|e| attr(&e.attributes, key))
}

/// `traceparent` split into (trace id, parent id, flags).
fn traceparent(value: &str) -> (String, String, String) {
    let parts: Vec<&str> = value.split('-').collect();
    assert_eq!(parts.len(), 4, "traceparent {value:?}");
    assert_eq!(parts[0], "00", "traceparent version");
    (
        parts[1].to_owned(),
        parts[2].to_owned(),
        parts[3].to_owned(),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_request_is_traced_across_a_failover_and_the_region_continues_the_trace() {
    let collector = FakeCollector::grpc().await;
    let west = FakeRegion::new("westus").mode(Mode::Killed).start().await;
    let east = FakeRegion::new("eastus").start().await;
    let cfg = TestConfig::new(&[&west, &east])
        .top(&telemetry(&collector.endpoint(), "json"))
        .service(TRAFFIC_DRIVEN_HEALTH);
    let proxy = start(&cfg, &[("RUST_LOG", "info,switchyard::pipeline=debug")]).await;

    let trace_id = "4bf92f3577b34da6a3ce929d0e0e4736";
    let caller_span = "00f067aa0ba902b7";
    let incoming = format!("00-{trace_id}-{caller_span}-01");
    let resp = http1_client()
        .get_with(
            &cfg.url("/orders/7?expand=1"),
            &[
                ("traceparent", &incoming),
                ("tracestate", "vendor=abc"),
                ("tracestate", "other=1"),
            ],
        )
        .await
        .expect("GET");
    assert_eq!(resp.status, 200, "{}", proxy.logs());
    assert_eq!(resp.region(), Some("eastus"));
    assert_eq!(resp.header("x-switchyard-attempts"), Some("2"));

    let spans = collector
        .wait_for(WAIT, |s| of_trace(s, trace_id).len() >= 3)
        .await;
    let ours = of_trace(&spans, trace_id);
    assert_eq!(
        ours.len(),
        3,
        "one server and two client spans: {ours:#?}\n{}",
        proxy.logs()
    );

    // The server span continues the caller's trace.
    let server = ours
        .iter()
        .find(|s| s.kind() == SpanKind::Server)
        .expect("a server span");
    assert_eq!(
        server.parent_span_id(),
        caller_span,
        "parent is the caller's span"
    );
    assert_eq!(server.name(), "GET");
    assert_eq!(server.scope, "switchyard");
    assert_eq!(
        server.resource_attr("service.name").as_deref(),
        Some("orders-sidecar")
    );
    for (key, value) in [
        ("http.request.method", "GET"),
        ("http.response.status_code", "200"),
        ("url.path", "/orders/7"),
        ("url.scheme", "http"),
        ("switchyard.service", "orders"),
        ("switchyard.region", "eastus"),
        ("switchyard.attempts", "2"),
    ] {
        assert_eq!(
            server.attr(key).as_deref(),
            Some(value),
            "server span {key}: {server:#?}"
        );
    }
    // Numbers go as numbers (OpenTelemetry's conventions; a backend's `>= 500` query needs it).
    assert_eq!(server.int_attr("http.response.status_code"), Some(200));
    assert_eq!(server.int_attr("switchyard.attempts"), Some(2));
    assert_eq!(server.attr("error.type"), None);
    assert_eq!(
        server.event_names(),
        ["ejection", "failover"],
        "span events"
    );
    assert_eq!(
        event_attr(server, "ejection", "switchyard.region").as_deref(),
        Some("westus")
    );
    assert_eq!(
        event_attr(server, "failover", "switchyard.from").as_deref(),
        Some("westus")
    );
    assert_eq!(
        event_attr(server, "failover", "switchyard.to").as_deref(),
        Some("eastus")
    );
    assert_eq!(
        event_attr(server, "failover", "error.type").as_deref(),
        Some("connect-failure")
    );

    // One client span per attempt, children of the server span.
    let mut clients: Vec<&&CollectedSpan> = ours
        .iter()
        .filter(|s| s.kind() == SpanKind::Client)
        .collect();
    clients.sort_by_key(|s| s.attr("switchyard.attempt"));
    assert_eq!(clients.len(), 2);
    for c in &clients {
        assert_eq!(
            c.parent_span_id(),
            server.span_id(),
            "client spans are children of the server span"
        );
        assert_eq!(c.name(), "GET");
        assert_eq!(c.attr("http.request.method").as_deref(), Some("GET"));
        assert_eq!(c.attr("server.address").as_deref(), Some("127.0.0.1"));
    }
    let (first, second) = (clients[0], clients[1]);
    assert_eq!(first.attr("switchyard.region").as_deref(), Some("westus"));
    assert_eq!(first.attr("switchyard.attempt").as_deref(), Some("1"));
    assert_eq!(first.attr("server.port"), Some(west.port().to_string()));
    assert_eq!(first.attr("error.type").as_deref(), Some("connect-failure"));
    assert_eq!(first.attr("http.response.status_code"), None);
    assert_eq!(first.status_code(), "Error");
    assert_eq!(second.attr("switchyard.region").as_deref(), Some("eastus"));
    assert_eq!(second.attr("switchyard.attempt").as_deref(), Some("2"));
    assert_eq!(second.attr("server.port"), Some(east.port().to_string()));
    assert_eq!(
        second.attr("http.response.status_code").as_deref(),
        Some("200")
    );
    assert_eq!(second.attr("error.type"), None);
    assert_eq!(second.int_attr("http.response.status_code"), Some(200));
    assert_eq!(second.int_attr("switchyard.attempt"), Some(2));
    assert_eq!(second.int_attr("server.port"), Some(i64::from(east.port())));

    // The region continues the same trace, as a child of the attempt that reached it.
    let seen = east.last_request().expect("eastus got the request");
    let (t, parent, flags) = traceparent(seen.header("traceparent").expect("traceparent upstream"));
    assert_eq!(
        (t.as_str(), parent, flags.as_str()),
        (trace_id, second.span_id(), "01")
    );
    // Both of the client's `tracestate` lines, as one list (W3C Trace Context).
    assert_eq!(seen.header("tracestate"), Some("vendor=abc,other=1"));

    // Log lines inside the request carry its trace id.
    let logged = wait_until(WAIT, || {
        proxy.stderr().lines().any(|line| {
            serde_json::from_str::<serde_json::Value>(line).is_ok_and(|v| {
                v["trace_id"] == trace_id
                    && v["message"]
                        .as_str()
                        .is_some_and(|m| m.contains("attempt 1 failed"))
            })
        })
    })
    .await;
    assert!(
        logged,
        "a JSON log line with the trace id\n{}",
        proxy.stderr()
    );
    for line in proxy.stderr().lines().filter(|l| !l.trim().is_empty()) {
        let v: serde_json::Value =
            serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(
            v["timestamp"].is_string() && v["level"].is_string(),
            "{line}"
        );
    }

    // Without a traceparent the request starts a trace, and the region joins that one.
    let resp = http1_client()
        .get(&cfg.url("/orders/8"))
        .await
        .expect("GET");
    assert_eq!(resp.region(), Some("eastus"), "westus stays ejected");
    let seen = east.last_request().expect("eastus got the request");
    let (new_trace, parent, _) =
        traceparent(seen.header("traceparent").expect("traceparent upstream"));
    assert_ne!(new_trace, trace_id);
    assert!(
        seen.headers.get("tracestate").is_none(),
        "no tracestate came in, so none goes out (not an empty one)"
    );
    let spans = collector
        .wait_for(WAIT, |s| of_trace(s, &new_trace).len() >= 2)
        .await;
    let ours = of_trace(&spans, &new_trace);
    let server = ours
        .iter()
        .find(|s| s.kind() == SpanKind::Server)
        .expect("server span");
    let client = ours
        .iter()
        .find(|s| s.kind() == SpanKind::Client)
        .expect("client span");
    assert_eq!(
        server.parent_span_id(),
        "",
        "a new trace starts at the server span"
    );
    assert_eq!(client.parent_span_id(), server.span_id());
    assert_eq!(parent, client.span_id());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn spans_go_over_otlp_http_when_the_endpoint_says_so() {
    let collector = FakeCollector::http().await;
    let west = FakeRegion::new("westus").start().await;
    let cfg = TestConfig::new(&[&west]).top(&telemetry(&collector.endpoint(), "text"));
    let proxy = start(&cfg, &[]).await;

    let resp = http1_client().get(&cfg.url("/a")).await.expect("GET");
    assert_eq!(resp.status, 200);
    let spans = collector.wait_for(WAIT, |s| s.len() >= 2).await;
    assert!(
        spans.len() >= 2,
        "spans over OTLP/HTTP: {spans:#?}\n{}",
        proxy.logs()
    );
    let server = spans
        .iter()
        .find(|s| s.kind() == SpanKind::Server)
        .expect("server span");
    let client = spans
        .iter()
        .find(|s| s.kind() == SpanKind::Client)
        .expect("client span");
    assert_eq!(client.parent_span_id(), server.span_id());
    assert_eq!(client.attr("switchyard.region").as_deref(), Some("westus"));
    let seen = west.last_request().expect("westus got the request");
    let (trace, parent, _) = traceparent(seen.header("traceparent").expect("traceparent upstream"));
    assert_eq!((trace, parent), (server.trace_id(), client.span_id()));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_dead_collector_costs_one_log_line_and_counted_drops() {
    // Nothing listens on this port.
    let endpoint = format!("http://127.0.0.1:{}", free_port());
    let west = FakeRegion::new("westus").start().await;
    let cfg = TestConfig::new(&[&west]).top(&telemetry(&endpoint, "text"));
    let proxy = start(&cfg, &[]).await;

    let client = http1_client();
    let started = Instant::now();
    for i in 0..50 {
        let resp = client.get(&cfg.url(&format!("/{i}"))).await.expect("GET");
        assert_eq!(resp.status, 200);
    }
    assert!(
        started.elapsed() < Duration::from_secs(5),
        "50 requests took {:?}",
        started.elapsed()
    );

    // Every request left a server and a client span, all lost: dropped after a failed export,
    // or never made once the proxy knew the collector was down.
    let dropped = |text: &str| {
        let m = Scrape::parse(text).unwrap_or_default();
        ["export-failed", "queue-full", "collector-down"]
            .iter()
            .filter_map(|r| m.value("switchyard_trace_spans_dropped_total", &[("reason", r)]))
            .sum::<f64>()
    };
    let counted = eventually(WAIT, Duration::from_millis(100), || async {
        dropped(&proxy.metrics().await.unwrap_or_default()) >= 100.0
    })
    .await;
    assert!(
        counted,
        "spans dropped and counted\n{}",
        proxy.metrics().await.unwrap_or_default()
    );
    let warnings = proxy.stderr().matches("trace export failed").count();
    assert_eq!(
        warnings,
        1,
        "one log line for a dead collector\n{}",
        proxy.stderr()
    );
    assert!(!proxy.stderr().contains("ERROR"), "{}", proxy.stderr());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_go_untraced_while_the_collector_is_down_and_traced_once_it_is_back() {
    let port = free_port();
    let west = FakeRegion::new("westus").start().await;
    let cfg =
        TestConfig::new(&[&west]).top(&telemetry(&format!("http://127.0.0.1:{port}"), "text"));
    let proxy = start(&cfg, &[]).await;
    let client = http1_client();
    let get = |i: usize| {
        let (client, url) = (client.clone(), cfg.url(&format!("/{i}")));
        async move { client.get(&url).await }
    };

    // Traffic until the proxy has found the collector missing.
    let mut i = 0;
    let noticed = eventually(WAIT, Duration::from_millis(50), || {
        i += 1;
        let resp = get(i);
        async { resp.await.is_ok() && proxy.stderr().contains("trace export failed") }
    })
    .await;
    assert!(noticed, "a failed export is logged\n{}", proxy.logs());

    // Now requests are not traced, and the caller's trace context reaches the region as sent.
    let incoming = "00-0af7651916cd43dd8448eb211c80319c-b7ad6b7169203331-01";
    for j in 0..20 {
        let resp = client
            .get_with(
                &cfg.url(&format!("/down/{j}")),
                &[("traceparent", incoming)],
            )
            .await
            .expect("GET");
        assert_eq!(resp.status, 200);
    }
    let m = scrape(&proxy).await;
    let skipped = m
        .value(
            "switchyard_trace_spans_dropped_total",
            &[("reason", "collector-down")],
        )
        .unwrap_or(0.0);
    assert!(
        skipped >= 30.0,
        "spans not made while the collector is down: {skipped}"
    );
    let seen = west.last_request().expect("westus got the request");
    assert_eq!(seen.header("traceparent"), Some(incoming));

    // The collector comes up: probes find it, and every request is traced again.
    let collector = FakeCollector::grpc_on(port).await;
    let recovered = eventually(Duration::from_secs(20), Duration::from_millis(100), || {
        i += 1;
        let resp = get(i);
        async { resp.await.is_ok() && proxy.stderr().contains("trace export recovered") }
    })
    .await;
    assert!(recovered, "recovery is logged\n{}", proxy.logs());
    let trace_id = "5bf92f3577b34da6a3ce929d0e0e4737";
    let resp = client
        .get_with(
            &cfg.url("/up"),
            &[("traceparent", &format!("00-{trace_id}-00f067aa0ba902b7-01"))],
        )
        .await
        .expect("GET");
    assert_eq!(resp.status, 200);
    let spans = collector
        .wait_for(WAIT, |s| of_trace(s, trace_id).len() >= 2)
        .await;
    assert_eq!(
        of_trace(&spans, trace_id).len(),
        2,
        "server and client span of a traced request"
    );
    assert_eq!(
        proxy.stderr().matches("trace export failed").count(),
        1,
        "{}",
        proxy.stderr()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_parse_and_move_with_traffic_failover_and_degraded_answers() {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("eastus").start().await;
    let cfg = TestConfig::new(&[&west, &east]).service(TRAFFIC_DRIVEN_HEALTH);
    let proxy = ProxyProcess::start(&cfg.render())
        .await
        .expect("proxy starts");
    let region = |r: &'static str| [("service", "orders"), ("region", r)];

    let m = scrape(&proxy).await;
    assert_eq!(
        m.value("switchyard_region_healthy", &region("westus")),
        Some(1.0)
    );
    assert_eq!(
        m.value("switchyard_region_active", &region("westus")),
        Some(1.0)
    );
    assert_eq!(
        m.value("switchyard_region_active", &region("eastus")),
        Some(0.0)
    );

    // Traffic.
    let client = http1_client();
    for i in 0..5 {
        let resp = client.get(&cfg.url(&format!("/o/{i}"))).await.expect("GET");
        assert_eq!(resp.region(), Some("westus"));
    }
    let m = scrape(&proxy).await;
    let ok = [("service", "orders"), ("region", "westus"), ("code", "200")];
    assert_eq!(m.value("switchyard_requests_total", &ok), Some(5.0));
    assert_eq!(
        m.value(
            "switchyard_upstream_attempts_total",
            &[
                ("service", "orders"),
                ("region", "westus"),
                ("outcome", "ok")
            ]
        ),
        Some(5.0)
    );
    assert_eq!(
        m.value(
            "switchyard_request_duration_seconds_count",
            &region("westus")
        ),
        Some(5.0)
    );
    assert_eq!(
        m.value("switchyard_retries_total", &[("service", "orders")]),
        Some(0.0)
    );

    // The primary goes away: the next request fails over, the region is ejected.
    west.kill().await;
    let resp = client.get(&cfg.url("/o/after")).await.expect("GET");
    assert_eq!(
        (resp.status.as_u16(), resp.region()),
        (200, Some("eastus")),
        "{}",
        proxy.logs()
    );
    let flipped = eventually(WAIT, Duration::from_millis(50), || async {
        let m = scrape(&proxy).await;
        m.value("switchyard_region_healthy", &region("westus")) == Some(0.0)
            && m.value("switchyard_region_active", &region("eastus")) == Some(1.0)
    })
    .await;
    assert!(
        flipped,
        "gauges follow the ejection\n{}",
        proxy.metrics().await.unwrap_or_default()
    );
    let m = scrape(&proxy).await;
    assert_eq!(
        m.value("switchyard_region_active", &region("westus")),
        Some(0.0)
    );
    assert_eq!(
        m.value("switchyard_region_healthy", &region("eastus")),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "switchyard_failovers_total",
            &[("service", "orders"), ("from", "westus"), ("to", "eastus")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value("switchyard_retries_total", &[("service", "orders")]),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "switchyard_upstream_attempts_total",
            &[
                ("service", "orders"),
                ("region", "westus"),
                ("outcome", "connect-failure")
            ]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "switchyard_requests_total",
            &[("service", "orders"), ("region", "eastus"), ("code", "200")]
        ),
        Some(1.0)
    );

    // Nothing can serve: the sidecar answers itself.
    east.kill().await;
    let resp = client.get(&cfg.url("/o/none")).await.expect("GET");
    assert_eq!(resp.status, 503);
    assert_eq!(resp.header("x-switchyard-degraded"), Some("1"));
    let m = scrape(&proxy).await;
    assert_eq!(
        m.value(
            "switchyard_degraded_responses_total",
            &[("service", "orders")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "switchyard_requests_total",
            &[("service", "orders"), ("region", "none"), ("code", "503")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value("switchyard_request_duration_seconds_count", &region("none")),
        Some(1.0)
    );
    // A client's malformed request is the sidecar's own answer too, but not a degraded one.
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], cfg.port));
    let refused = switchyard_tests::raw_http(addr, b"GET /o HTTP/1.1\r\n\r\n")
        .await
        .expect("raw");
    assert!(refused.starts_with("HTTP/1.1 400"), "{refused}");
    let m = scrape(&proxy).await;
    assert_eq!(
        m.value(
            "switchyard_degraded_responses_total",
            &[("service", "orders")]
        ),
        Some(1.0)
    );
    assert_eq!(
        m.value(
            "switchyard_requests_total",
            &[("service", "orders"), ("region", "none"), ("code", "400")]
        ),
        Some(1.0)
    );
    // A family shows up with its first series (plugin errors: see the plugin test).
    for (name, kind) in [
        ("switchyard_requests_total", "counter"),
        ("switchyard_request_duration_seconds", "histogram"),
        ("switchyard_upstream_attempts_total", "counter"),
        ("switchyard_retries_total", "counter"),
        ("switchyard_failovers_total", "counter"),
        ("switchyard_region_healthy", "gauge"),
        ("switchyard_region_active", "gauge"),
        ("switchyard_degraded_responses_total", "counter"),
    ] {
        assert_eq!(
            m.types.get(name).map(String::as_str),
            Some(kind),
            "# TYPE of {name}"
        );
    }

    // Prometheus asks for OpenMetrics and gets it.
    let open = proxy
        .admin_request(
            http::Method::GET,
            "/metrics",
            &[(
                "accept",
                "application/openmetrics-text;version=1.0.0,text/plain;version=0.0.4;q=0.5",
            )],
            "",
        )
        .await
        .expect("GET /metrics");
    assert!(
        open.header("content-type")
            .is_some_and(|c| c.starts_with("application/openmetrics-text"))
    );
    assert!(open.text().ends_with("# EOF\n"));
    assert!(open.text().contains("# TYPE switchyard_requests counter"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plugin_fault_is_counted_and_shows_on_the_request_span() {
    let collector = FakeCollector::grpc().await;
    let west = FakeRegion::new("westus").start().await;
    let panicker = plugin("panicker").expect("plugin components build");
    let cfg = TestConfig::new(&[&west])
        .top(&telemetry(&collector.endpoint(), "text"))
        .plugin(&panicker, "fail-open", "{ panic = true }");
    let proxy = start(&cfg, &[]).await;

    for i in 0..3 {
        let resp = http1_client()
            .get(&cfg.url(&format!("/p/{i}")))
            .await
            .expect("GET");
        assert_eq!(
            resp.status,
            200,
            "fail-open routes as usual\n{}",
            proxy.logs()
        );
    }
    let m = scrape(&proxy).await;
    assert_eq!(
        m.types
            .get("switchyard_plugin_errors_total")
            .map(String::as_str),
        Some("counter")
    );
    assert_eq!(
        m.value(
            "switchyard_plugin_errors_total",
            &[("plugin", "panicker"), ("kind", "trap")]
        ),
        Some(3.0),
        "{}",
        proxy.metrics().await.unwrap_or_default()
    );
    let spans = collector
        .wait_for(WAIT, |s| {
            s.iter().filter(|s| s.kind() == SpanKind::Server).count() >= 3
        })
        .await;
    let server = spans
        .iter()
        .find(|s| s.kind() == SpanKind::Server)
        .expect("server span");
    assert!(
        server
            .event_names()
            .iter()
            .any(|e| e.starts_with("plugin failed")),
        "plugin fault as a span event: {:?}",
        server.event_names()
    );
}

/// A client that gives up before its answer (its own timeout during a brownout) is counted:
/// the request as code 499 under the region it was waiting for, with its time in the
/// duration histogram, and its attempt as `cancelled`. Before, such requests appeared in no
/// metric at all, though each reached the region (round 12).
#[tokio::test]
async fn requests_the_client_gave_up_on_are_counted_as_499_and_cancelled_attempts() {
    let west = FakeRegion::new("westus")
        .mode(Mode::Slow(Duration::from_secs(3)))
        .start()
        .await;
    let collector = FakeCollector::grpc().await;
    let cfg = TestConfig::new(&[&west])
        .top(&telemetry(&collector.endpoint(), "json"))
        .service(TRAFFIC_DRIVEN_HEALTH);
    let proxy = start(&cfg, &[]).await;
    let impatient = http1_client().with_timeout(Duration::from_millis(300));
    for i in 0..3 {
        let gave_up = impatient.get(&cfg.url(&format!("/o/{i}"))).await;
        assert!(
            gave_up.is_err(),
            "the client's own timeout ends request {i}"
        );
    }
    let west_labels = [("service", "orders"), ("region", "westus")];
    let cancelled = [
        ("service", "orders"),
        ("region", "westus"),
        ("outcome", "cancelled"),
    ];
    let client_closed = [("service", "orders"), ("region", "westus"), ("code", "499")];
    let counted = eventually(WAIT, Duration::from_millis(50), || async {
        scrape(&proxy)
            .await
            .value("switchyard_requests_total", &client_closed)
            == Some(3.0)
    })
    .await;
    let m = scrape(&proxy).await;
    assert!(counted, "{m:?}\n{}", proxy.logs());
    assert_eq!(
        m.value("switchyard_upstream_attempts_total", &cancelled),
        Some(3.0)
    );
    assert_eq!(
        m.value("switchyard_request_duration_seconds_count", &west_labels),
        Some(3.0)
    );
    assert_eq!(
        west.requests_for("GET"),
        3,
        "each request reached the region"
    );
    // The server spans say what the metrics say (round 15: only error.type did).
    let spans = collector
        .wait_for(WAIT, |s| {
            s.iter().filter(|s| s.kind() == SpanKind::Server).count() >= 3
        })
        .await;
    for server in spans.iter().filter(|s| s.kind() == SpanKind::Server) {
        assert_eq!(server.int_attr("http.response.status_code"), Some(499));
        assert_eq!(server.attr("switchyard.region").as_deref(), Some("westus"));
        assert_eq!(server.int_attr("switchyard.attempts"), Some(1));
        assert_eq!(server.attr("error.type").as_deref(), Some("cancelled"));
    }
}

/// An answer made because no region could serve counts as degraded whatever its status: a
/// service whose degraded answer is a 429 (round 12: a degraded-mode rule's 418) was left
/// out, as the sidecar's other 4xx answers (a malformed request) rightly are.
#[tokio::test]
async fn a_degraded_answer_with_a_client_error_status_is_still_counted() {
    let west = FakeRegion::new("westus").mode(Mode::Killed).start().await;
    let cfg = TestConfig::new(&[&west])
        .service("[services.degraded]\nstatus = 429\nbody = \"busy\"\nretry_after = \"5s\"");
    let proxy = ProxyProcess::start(&cfg.render())
        .await
        .expect("proxy starts");
    let degraded = [("service", "orders")];
    for i in 0..2 {
        let resp = http1_client()
            .get(&cfg.url(&format!("/o/{i}")))
            .await
            .expect("GET");
        assert_eq!(resp.status.as_u16(), 429, "{}", proxy.logs());
        assert_eq!(resp.header("x-switchyard-degraded"), Some("1"));
    }
    // A malformed request is the client's fault, not a degradation.
    let bad = switchyard_tests::raw_http(cfg.addr(), b"GET / HTTP/1.1\r\n\r\n")
        .await
        .expect("raw request");
    assert!(bad.starts_with("HTTP/1.1 400"), "{bad}");
    let m = scrape(&proxy).await;
    assert_eq!(
        m.value("switchyard_degraded_responses_total", &degraded),
        Some(2.0),
        "{m:?}"
    );
}

/// A `/metrics` scrape, parsed and checked.
async fn scrape(proxy: &ProxyProcess) -> Scrape {
    let resp = proxy.admin_get("/metrics").await.expect("GET /metrics");
    assert_eq!(resp.status, 200);
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; version=0.0.4; charset=utf-8")
    );
    Scrape::parse(&resp.text())
        .unwrap_or_else(|e| panic!("/metrics is not Prometheus text: {e}\n{}", resp.text()))
}
