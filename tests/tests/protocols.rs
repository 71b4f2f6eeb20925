//! What crosses the proxy: TLS to regions, h2 both ways, WebSocket, large streamed bodies,
//! forwarding headers, and malformed or hostile requests.

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use http::{Method, Version};
use switchyard_tests::{
    FakeRegion, ProxyProcess, TestConfig, TestPki, channel_body, free_port, h2c_client,
    http1_client, pattern_bytes, raw_http, sha256_hex,
};
use tokio_tungstenite::tungstenite::Message;

fn tls_config(admin: u16, port: u16, region_url: &str, tls: &str) -> String {
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"
[[services]]
name = "orders"
listen = "127.0.0.1:{port}"
[services.health]
interval = "30s"
[[services.regions]]
name = "secure"
url = "{region_url}"
write = true
tls = {tls}
"#
    )
}

/// `n` GETs of `url` at once, each on a connection of its own; their answers.
async fn gets_at_once(url: &str, n: usize) -> Vec<switchyard_tests::TestResponse> {
    let requests: Vec<_> = (0..n)
        .map(|_| {
            let url = url.to_owned();
            tokio::spawn(async move {
                http1_client()
                    .with_timeout(Duration::from_secs(30))
                    .get(&url)
                    .await
            })
        })
        .collect();
    let mut answers = Vec::with_capacity(n);
    for r in requests {
        answers.push(r.await.expect("task").expect("answer"));
    }
    answers
}

/// A proxy in front of one TLS region that trusts the test CA (so h2 by ALPN), with `extra`
/// at the end of its config; and the port it listens on.
async fn h2_proxy(pki: &TestPki, region_url: &str, extra: &str) -> (ProxyProcess, u16) {
    let (admin, port) = (free_port(), free_port());
    let dir = ProxyProcess::new_dir().expect("dir");
    pki.copy_to(dir.path()).expect("copy PEM files");
    let config = format!(
        "{}{extra}",
        tls_config(admin, port, region_url, r#"{ ca_file = "ca.pem" }"#)
    );
    let proxy = ProxyProcess::builder(&config)
        .dir(dir)
        .start()
        .await
        .expect("proxy starts");
    (proxy, port)
}

/// westus alone in front of a proxy, with `service` added to the service's config.
async fn westus_proxy(service: &str) -> (FakeRegion, TestConfig, ProxyProcess) {
    let west = FakeRegion::new("westus").start().await;
    let config = TestConfig::new(&[&west]).service(service);
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    (west, config, proxy)
}

#[tokio::test]
async fn https_region_with_private_ca_over_h2_and_mtls() {
    let pki = TestPki::new();
    let region = FakeRegion::new("secure")
        .tls(&pki)
        .require_client_cert()
        .start()
        .await;
    let (admin, port) = (free_port(), free_port());
    let dir = ProxyProcess::new_dir().expect("dir");
    pki.copy_to(dir.path()).expect("copy PEM files");
    let tls = r#"{ ca_file = "ca.pem", client_cert = "client.pem", client_key = "client.key" }"#;
    let proxy = ProxyProcess::builder(&tls_config(admin, port, &region.url(), tls))
        .dir(dir)
        .start()
        .await
        .expect("proxy starts");
    let resp = http1_client()
        .get(&format!("http://127.0.0.1:{port}/orders"))
        .await
        .expect("GET");
    assert_eq!(resp.status.as_u16(), 200, "{}", proxy.logs());
    assert_eq!(
        resp.header("x-fake-version"),
        Some("HTTP/2.0"),
        "ALPN chose h2"
    );
    assert_eq!(resp.header("x-fake-scheme"), Some("https"));
    assert_eq!(resp.region(), Some("secure"));
    // Over HTTP/2 the region's authority travels as `:authority` only: nginx 1.22 (Debian
    // 12's) answers 400 to a request that also has a `host` header.
    let seen = region.last_request().expect("the region saw the request");
    assert_eq!(seen.header("host"), None, "no host header over h2");
    assert_eq!(
        resp.header("x-fake-host"),
        Some(region.authority().as_str())
    );
}

#[tokio::test]
async fn a_region_certificate_from_an_unknown_ca_is_refused_with_a_clear_error() {
    let pki = TestPki::new();
    let other = TestPki::new();
    let region = FakeRegion::new("secure").tls(&pki).start().await;
    let (admin, port) = (free_port(), free_port());
    let dir = ProxyProcess::new_dir().expect("dir");
    std::fs::copy(other.ca_pem(), dir.path().join("ca.pem")).expect("copy CA");
    let proxy = ProxyProcess::builder(&tls_config(
        admin,
        port,
        &region.url(),
        r#"{ ca_file = "ca.pem" }"#,
    ))
    .dir(dir)
    .start()
    .await
    .expect("proxy starts");
    let resp = http1_client()
        .get(&format!("http://127.0.0.1:{port}/orders"))
        .await
        .expect("GET");
    assert_eq!(resp.status.as_u16(), 503);
    assert_eq!(resp.header("x-switchyard-error"), Some("connect-failure"));
    assert_eq!(
        region.requests(),
        0,
        "no request crossed an unverified connection"
    );
    let logs = proxy.logs();
    assert!(
        logs.contains("TLS to region failed") && logs.contains("invalid peer certificate"),
        "the log names the certificate problem:\n{logs}"
    );
}

#[tokio::test]
async fn h2c_downstream_and_forwarding_headers() {
    let west = FakeRegion::new("westus").start().await;
    let config = TestConfig::new(&[&west]);
    let _proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let resp = h2c_client()
        .get_with(
            &config.url("/orders?id=7"),
            &[("x-app", "kept"), ("x-forwarded-for", "10.1.2.3")],
        )
        .await
        .expect("h2c GET");
    assert_eq!(resp.version, Version::HTTP_2);
    assert_eq!(resp.status.as_u16(), 200);
    assert_eq!(resp.header("x-switchyard-attempts"), Some("1"));
    let seen = west.last_request().expect("request");
    assert_eq!(seen.path, "/orders?id=7");
    assert_eq!(seen.header("host"), Some(west.authority().as_str()));
    let original = format!("127.0.0.1:{}", config.port);
    assert_eq!(seen.header("x-forwarded-host"), Some(original.as_str()));
    assert_eq!(seen.header("x-forwarded-for"), Some("10.1.2.3, 127.0.0.1"));
    assert_eq!(seen.header("x-forwarded-proto"), Some("http"));
    assert_eq!(seen.header("x-app"), Some("kept"));
}

#[tokio::test]
async fn hop_by_hop_headers_are_removed_both_ways() {
    let west = FakeRegion::new("westus")
        .header("keep-alive", "timeout=5")
        .header("x-region-private", "1")
        // Markers of an answer the sidecar made itself: a region cannot send them.
        .header("x-switchyard-degraded", "1")
        .header("x-switchyard-error", "spoofed")
        .start()
        .await;
    let config = TestConfig::new(&[&west]);
    let _proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let resp = http1_client()
        .get_with(
            &config.url("/"),
            &[
                ("connection", "x-secret"),
                ("x-secret", "s"),
                ("proxy-authorization", "Basic x"),
            ],
        )
        .await
        .expect("GET");
    assert_eq!(resp.status.as_u16(), 200);
    assert_eq!(resp.header("keep-alive"), None);
    assert_eq!(resp.header("x-switchyard-degraded"), None);
    assert_eq!(resp.header("x-switchyard-error"), None);
    assert_eq!(resp.region(), Some("westus"));
    let seen = west.last_request().expect("request");
    assert_eq!(seen.header("x-secret"), None, "named in Connection");
    assert_eq!(seen.header("proxy-authorization"), None);
}

#[tokio::test]
async fn ten_mebibyte_bodies_stream_both_ways_intact() {
    let west = FakeRegion::new("westus").start().await;
    let config = TestConfig::new(&[&west]);
    let _proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let client = http1_client().with_timeout(Duration::from_secs(60));
    let size = 10 * 1024 * 1024;

    let upload = bytes::Bytes::from(pattern_bytes(size));
    let resp = client
        .request(Method::POST, &config.url("/echo"), &[], upload.clone())
        .await
        .expect("upload");
    assert_eq!(resp.status.as_u16(), 200);
    assert_eq!(resp.body.len(), size);
    assert_eq!(
        resp.body_sha256(),
        sha256_hex(&upload),
        "echoed back intact"
    );
    let seen = west.last_request().expect("request");
    assert_eq!(seen.body_len, Some(size as u64));
    assert_eq!(
        seen.body_sha256.as_deref(),
        Some(sha256_hex(&upload).as_str())
    );

    // A chunked upload of unknown length streams through too.
    let (tx, body) = channel_body();
    let chunks = upload.clone();
    tokio::spawn(async move {
        for chunk in chunks.chunks(256 * 1024) {
            if tx.send(bytes::Bytes::copy_from_slice(chunk)).await.is_err() {
                return;
            }
        }
    });
    let req = http::Request::post(config.url("/echo"))
        .body(body)
        .expect("request");
    let resp = client.send(req).await.expect("chunked upload");
    assert_eq!(
        resp.body_sha256(),
        sha256_hex(&upload),
        "chunked echo intact"
    );

    let resp = h2c_client()
        .with_timeout(Duration::from_secs(60))
        .get(&config.url(&format!("/bytes/{size}")))
        .await
        .expect("download");
    assert_eq!(resp.body.len(), size);
    assert_eq!(resp.body_sha256(), sha256_hex(&pattern_bytes(size)));
}

#[tokio::test]
async fn websocket_upgrade_is_passed_through() {
    let west = FakeRegion::new("westus").start().await;
    let config = TestConfig::new(&[&west]);
    let _proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let url = format!("ws://127.0.0.1:{}/ws", config.port);
    let (mut ws, resp) = tokio::time::timeout(
        Duration::from_secs(5),
        tokio_tungstenite::connect_async(url),
    )
    .await
    .expect("in time")
    .expect("upgrade");
    assert_eq!(resp.status().as_u16(), 101);
    assert_eq!(
        resp.headers()
            .get("x-switchyard-region")
            .and_then(|v| v.to_str().ok()),
        Some("westus")
    );
    for i in 0..3 {
        ws.send(Message::text(format!("hello {i}")))
            .await
            .expect("send");
        let echoed = tokio::time::timeout(Duration::from_secs(5), ws.next())
            .await
            .expect("in time")
            .expect("a message")
            .expect("ok");
        assert_eq!(echoed, Message::text(format!("hello {i}")));
    }
    ws.close(None).await.expect("close");
}

#[tokio::test]
async fn head_and_no_content_responses_have_no_body() {
    let west = FakeRegion::new("westus").start().await;
    let config = TestConfig::new(&[&west]);
    let _proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let head = http1_client()
        .request(Method::HEAD, &config.url("/"), &[], bytes::Bytes::new())
        .await
        .expect("HEAD");
    assert_eq!(head.status.as_u16(), 200);
    assert!(head.body.is_empty());
    west.set_mode(switchyard_tests::Mode::Status(204)).await;
    let raw = raw_http(
        std::net::SocketAddr::from(([127, 0, 0, 1], config.port)),
        b"GET / HTTP/1.1\r\nHost: x\r\n\r\n",
    )
    .await
    .expect("raw");
    assert!(raw.starts_with("HTTP/1.1 204"), "{raw}");
    assert!(
        !raw.to_ascii_lowercase().contains("transfer-encoding"),
        "{raw}"
    );
}

/// The sidecar's own answers (degraded, plugin, errors) carry a body as made; HEAD must go out
/// without it on both protocols (over HTTP/2 a body on a HEAD response breaks the stream).
#[tokio::test]
async fn the_sidecars_own_answers_to_head_have_no_body_over_http1_and_h2() {
    let (west, config, proxy) = westus_proxy(
        "[services.degraded]\nbody = \"orders are down\"\n[services.health]\ninterval = \"30s\"",
    )
    .await;
    west.kill().await;
    for client in [http1_client(), switchyard_tests::h2c_client()] {
        let head = client
            .request(Method::HEAD, &config.url("/o"), &[], bytes::Bytes::new())
            .await
            .expect("HEAD answered, not reset");
        assert_eq!(head.status.as_u16(), 503, "{}", proxy.logs());
        assert_eq!(head.header("x-switchyard-degraded"), Some("1"));
        assert!(head.body.is_empty());
        let get = client.get(&config.url("/o")).await.expect("GET");
        assert_eq!(get.status.as_u16(), 503);
        assert_eq!(get.text(), "orders are down");
    }
}

/// Certificates expire and get rotated: a reload reads the listener's certificate and key
/// again, and new connections get the new one, without a restart.
#[tokio::test]
async fn a_reload_rotates_the_listener_certificate() {
    let west = FakeRegion::new("westus").start().await;
    let (old, new) = (TestPki::new(), TestPki::new());
    let dir = ProxyProcess::new_dir().expect("dir");
    let install = |pki: &TestPki, dir: &std::path::Path| {
        std::fs::copy(pki.server_cert(), dir.join("listener.pem")).expect("copy cert");
        std::fs::copy(pki.server_key(), dir.join("listener.key")).expect("copy key");
    };
    install(&old, dir.path());
    let config = TestConfig::new(&[&west]);
    let listen = format!("listen = \"127.0.0.1:{}\"\n", config.port);
    let text = config.render().replacen(
        &listen,
        &format!("{listen}tls = {{ cert = \"listener.pem\", key = \"listener.key\" }}\n"),
        1,
    );
    let url = format!("https://127.0.0.1:{}/o", config.port);
    let proxy = ProxyProcess::builder(&text)
        .dir(dir)
        .start()
        .await
        .expect("proxy starts");
    let before = switchyard_tests::https_client(&old)
        .get(&url)
        .await
        .expect("HTTPS");
    assert_eq!(before.status.as_u16(), 200, "{}", proxy.logs());
    assert!(
        switchyard_tests::https_client(&new)
            .get(&url)
            .await
            .is_err()
    );

    install(&new, proxy.dir());
    let reloaded = proxy.admin_post("/reload", "").await.expect("reload");
    assert_eq!(reloaded.status.as_u16(), 200, "{}", reloaded.text());
    let after = switchyard_tests::https_client(&new)
        .get(&url)
        .await
        .expect("HTTPS");
    assert_eq!(after.status.as_u16(), 200);
    assert_eq!(after.region(), Some("westus"));
    assert!(
        switchyard_tests::https_client(&old)
            .get(&url)
            .await
            .is_err()
    );

    // What a reload cannot apply it refuses, instead of reporting success and keeping it.
    let telemetry = text.replacen(
        "[admin]",
        "[telemetry]\nservice_name = \"renamed\"\n\n[admin]",
        1,
    );
    proxy.write_config(&telemetry).expect("write config");
    let refused = proxy.admin_post("/reload", "").await.expect("reload");
    assert_eq!(refused.status.as_u16(), 400, "{}", refused.text());
    assert!(refused.text().contains("[telemetry]"), "{}", refused.text());
}

/// A connection that sends nothing, or a few bytes of an HTTP/2 preface, is closed after the
/// first-bytes timeout (30 s) instead of holding a file descriptor for ever.
#[tokio::test]
async fn connections_that_never_send_a_request_are_closed_after_30_seconds() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let (_west, config, proxy) = westus_proxy("").await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], config.port));
    let opened = std::time::Instant::now();
    let mut silent = tokio::net::TcpStream::connect(addr).await.expect("connect");
    let mut partial = tokio::net::TcpStream::connect(addr).await.expect("connect");
    partial.write_all(b"PRI * HTTP").await.expect("write");
    for conn in [&mut silent, &mut partial] {
        let mut buf = [0u8; 64];
        let closed = tokio::time::timeout(Duration::from_secs(45), conn.read(&mut buf))
            .await
            .expect("closed by the proxy within 45 s");
        assert!(matches!(closed, Ok(0) | Err(_)), "{closed:?}");
    }
    let waited = opened.elapsed();
    assert!(
        waited >= Duration::from_secs(29),
        "closed too early: {waited:?}"
    );
    let ok = http1_client().get(&config.url("/")).await.expect("GET");
    assert_eq!(ok.status.as_u16(), 200, "{}", proxy.logs());
}

#[tokio::test]
async fn malformed_and_hostile_requests_get_clean_errors_and_never_reach_elsewhere() {
    let (west, config, proxy) = westus_proxy("").await;
    let addr = std::net::SocketAddr::from(([127, 0, 0, 1], config.port));

    let garbage = raw_http(addr, b"THIS IS NOT HTTP\r\n\r\n")
        .await
        .expect("raw");
    assert!(garbage.starts_with("HTTP/1.1 400"), "{garbage}");

    let mut huge = b"GET / HTTP/1.1\r\nHost: x\r\nX-Big: ".to_vec();
    huge.extend(std::iter::repeat_n(b'a', 100 * 1024));
    huge.extend_from_slice(b"\r\n\r\n");
    let too_large = raw_http(addr, &huge).await.expect("raw");
    assert!(too_large.starts_with("HTTP/1.1 431"), "{too_large}");

    let smuggle = raw_http(
        addr,
        b"POST / HTTP/1.1\r\nHost: x\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n",
    )
    .await
    .expect("raw");
    assert!(smuggle.starts_with("HTTP/1.1 400"), "{smuggle}");
    assert!(
        smuggle.contains("x-switchyard-degraded: 1")
            && smuggle.contains("x-switchyard-region: none"),
        "a refusal is the sidecar's own answer: {smuggle}"
    );

    // RFC 9112 section 3.2: HTTP/1.1 needs exactly one valid Host; the region is never asked
    // to guess, and no app behind it gets a made-up X-Forwarded-Host.
    for request in [
        &b"GET /no-host HTTP/1.1\r\n\r\n"[..],
        b"GET /two-hosts HTTP/1.1\r\nHost: a.example\r\nHost: b.example\r\n\r\n",
        b"GET /bad-host HTTP/1.1\r\nHost: a.example/evil\r\n\r\n",
        b"GET /bad-host HTTP/1.1\r\nHost: user@a.example\r\n\r\n",
    ] {
        let answer = raw_http(addr, request).await.expect("raw");
        assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
        assert!(
            answer.contains("x-switchyard-degraded: 1")
                && answer.contains("x-switchyard-region: none")
                && answer.contains("x-switchyard-attempts: 0"),
            "{answer}"
        );
    }
    let http10 = raw_http(addr, b"GET /old HTTP/1.0\r\n\r\n")
        .await
        .expect("raw");
    assert!(
        http10.starts_with("HTTP/1.0 200") || http10.starts_with("HTTP/1.1 200"),
        "{http10}"
    );
    assert!(
        west.received()
            .iter()
            .all(|r| r.path != "/no-host" && r.path != "/two-hosts" && r.path != "/bad-host"),
        "refused requests never reach a region"
    );

    // An absolute-form URI naming another host is served by the configured region only.
    let absolute = raw_http(
        addr,
        b"GET http://evil.example:1234/steal HTTP/1.1\r\nHost: evil.example:1234\r\n\r\n",
    )
    .await
    .expect("raw");
    assert!(absolute.starts_with("HTTP/1.1 200"), "{absolute}");
    assert!(
        absolute.contains("x-switchyard-region: westus"),
        "{absolute}"
    );
    let seen = west.last_request().expect("request");
    assert_eq!(seen.path, "/steal");
    assert_eq!(seen.header("host"), Some(west.authority().as_str()));
    assert_eq!(seen.header("x-forwarded-host"), Some("evil.example:1234"));
    // The target's authority overrides Host (RFC 9112 section 3.2.2).
    let overridden = raw_http(
        addr,
        b"GET http://meant.example:8080/abs HTTP/1.1\r\nHost: other.example\r\n\r\n",
    )
    .await
    .expect("raw");
    assert!(overridden.starts_with("HTTP/1.1 200"), "{overridden}");
    let seen = west.last_request().expect("request");
    assert_eq!(seen.path, "/abs");
    assert_eq!(seen.header("x-forwarded-host"), Some("meant.example:8080"));

    // CONNECT asks for a tunnel to wherever the client names: refused, never forwarded.
    let connect = raw_http(
        addr,
        b"CONNECT evil.example:443 HTTP/1.1\r\nHost: evil.example:443\r\n\r\n",
    )
    .await
    .expect("raw");
    assert!(connect.starts_with("HTTP/1.1 405"), "{connect}");
    assert!(
        connect.contains("x-switchyard-error: connect-not-supported"),
        "{connect}"
    );

    // Still alive and serving after all that.
    let ok = http1_client().get(&config.url("/")).await.expect("GET");
    assert_eq!(ok.status.as_u16(), 200, "{}", proxy.logs());
}

#[tokio::test]
async fn connections_to_a_region_are_reused_by_requests_and_health_probes() {
    let west = FakeRegion::new("westus").start().await;
    let config = TestConfig::new(&[&west]);
    let _proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let client = http1_client();
    for _ in 0..20 {
        let resp = client.get(&config.url("/")).await.expect("GET");
        assert_eq!(resp.status.as_u16(), 200);
    }
    let probes_before = west.health_checks();
    assert!(
        west.wait_for_health_checks(probes_before + 10, Duration::from_secs(10))
            .await,
        "health probes every 100 ms"
    );
    // A request and a probe may overlap, so two connections are fair; one per request or
    // per probe (30+) is what a pool that does not pool would show.
    assert!(
        west.connections() <= 3,
        "{} connections for 20 requests and {} probes",
        west.connections(),
        west.health_checks()
    );
}

/// One HTTP/2 connection carries every request to a region: a client that stops reading a
/// large download must hold back only its own stream, not every other response on the
/// connection (which would then be cut as stalled and eject the region).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_client_that_stops_reading_does_not_stall_other_streams_to_an_h2_region() {
    let pki = TestPki::new();
    let region = FakeRegion::new("secure").tls(&pki).start().await;
    let (proxy, port) = h2_proxy(
        &pki,
        &region.url(),
        "[services.retry]\nper_try_timeout = \"1s\"\n",
    )
    .await;
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");

    // 24 downloads of 64 MiB asked for and never read: each far more than its stream's
    // window, and together more than 16 MiB (the connection window that let 20 such clients
    // stall everything else).
    let mut hogs = Vec::new();
    for _ in 0..24 {
        let hog = http1_client()
            .send_streaming(
                http::Request::get(url("/bytes/67108864"))
                    .body(switchyard_tests::empty())
                    .expect("request"),
            )
            .await
            .expect("response head");
        assert_eq!(hog.headers()["x-fake-version"], "HTTP/2.0");
        hogs.push(hog);
    }
    tokio::time::sleep(Duration::from_millis(500)).await;

    let client = http1_client().with_timeout(Duration::from_secs(5));
    for i in 0..5 {
        let resp = client.get(&url("/bytes/200000")).await.expect("GET");
        assert_eq!(resp.status.as_u16(), 200, "request {i}\n{}", proxy.logs());
        assert_eq!(resp.body.len(), 200_000, "request {i}: the whole body");
    }
    let state = proxy
        .region_state("orders", "secure")
        .await
        .expect("status");
    assert_eq!(state.as_deref(), Some("healthy"), "{}", proxy.logs());
    drop(hogs);
}

/// Requests that arrive together at an HTTP/2 region with no connection yet (a cold start,
/// or the moment traffic fails over to it) share the one connection the first of them opens,
/// instead of each opening its own: 40 TLS handshakes at once is a thundering herd on the
/// region that is taking over.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_arriving_together_at_a_cold_h2_region_share_one_connection() {
    let pki = TestPki::new();
    let region_port = free_port();
    let (admin, port) = (free_port(), free_port());
    let dir = ProxyProcess::new_dir().expect("dir");
    pki.copy_to(dir.path()).expect("copy PEM files");
    let config = tls_config(
        admin,
        port,
        &format!("https://localhost:{region_port}"),
        r#"{ ca_file = "ca.pem" }"#,
    );
    // The region starts after the proxy, so its first probe found nothing and no connection
    // is pooled when the requests come.
    let proxy = ProxyProcess::builder(&config)
        .dir(dir)
        .start()
        .await
        .expect("proxy starts");
    let region = FakeRegion::new("secure")
        .tls(&pki)
        .port(region_port)
        .start()
        .await;
    let requests: Vec<_> = (0..40)
        .map(|_| {
            tokio::spawn(async move {
                http1_client()
                    .get(&format!("http://127.0.0.1:{port}/slow-start"))
                    .await
            })
        })
        .collect();
    for request in requests {
        let resp = request.await.expect("task").expect("GET");
        assert_eq!(resp.status.as_u16(), 200, "{}", proxy.logs());
        assert_eq!(resp.header("x-fake-version"), Some("HTTP/2.0"));
    }
    assert_eq!(
        region.connections(),
        1,
        "one connection carried all 40 requests"
    );
}

/// gRPC ends every response with trailers (`grpc-status`); a sidecar that drops them breaks
/// every gRPC client behind it. From an HTTP/1.1 region (chunked, announced by `Trailer`) and
/// from an HTTP/2 region, to an HTTP/1.1 client that sent `TE: trailers` and to an h2 client.
#[tokio::test]
async fn response_trailers_reach_http1_and_h2_clients_from_http1_and_h2_regions() {
    let plain = FakeRegion::new("westus").start().await;
    let plain_config = TestConfig::new(&[&plain]);
    let plain_proxy = ProxyProcess::start(&plain_config.render())
        .await
        .expect("proxy starts");

    let pki = TestPki::new();
    let secure = FakeRegion::new("secure").tls(&pki).start().await;
    let (secure_proxy, port) = h2_proxy(&pki, &secure.url(), "").await;

    let urls = [
        ("h1 region", plain_config.url("/trailers"), &plain_proxy),
        (
            "h2 region",
            format!("http://127.0.0.1:{port}/trailers"),
            &secure_proxy,
        ),
        // With a `content-length` too: the body must not be taken as ended at its last byte,
        // before the trailers (round 11). Only to h2 clients: HTTP/1.1 carries trailers only
        // in a chunked body, and the length then frames it.
        (
            "h2 region, declared length",
            format!("http://127.0.0.1:{port}/trailers-cl"),
            &secure_proxy,
        ),
    ];
    for (region, url, proxy) in urls {
        let declared = url.ends_with("-cl");
        let clients = [("h1 client", http1_client()), ("h2 client", h2c_client())];
        for (client_name, client) in clients.into_iter().skip(usize::from(declared)) {
            let resp = client
                .get_with(&url, &[("te", "trailers")])
                .await
                .expect("GET");
            let what = format!("{region}, {client_name}");
            assert_eq!(resp.status.as_u16(), 200, "{what}\n{}", proxy.logs());
            assert_eq!(resp.text(), "message before the trailers\n", "{what}");
            let trailers = resp
                .trailers
                .unwrap_or_else(|| panic!("{what}: no trailers; head {:?}", resp.headers));
            assert_eq!(
                trailers.get("grpc-status").map(|v| v.as_bytes()),
                Some(&b"0"[..]),
                "{what}: {trailers:?}"
            );
            assert_eq!(
                trailers.get("grpc-message").map(|v| v.as_bytes()),
                Some(&b"done"[..]),
                "{what}: {trailers:?}"
            );
        }
    }
}

/// Clients that give up on downloads (a gRPC deadline, a closed tab) are ordinary. Each one
/// cancels its stream on the shared HTTP/2 connection to the region while the region's data
/// is still in flight; those late frames must not add up to the connection being torn down,
/// which cut every other client's response and ejected a healthy region (round 9: after
/// about 1,200 cancels h2's lifetime limit of 1,024 resets it sent on its own was reached).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn cancelled_downloads_never_cut_other_streams_on_the_shared_h2_connection() {
    let pki = TestPki::new();
    let region = FakeRegion::new("secure").tls(&pki).start().await;
    let (proxy, port) = h2_proxy(&pki, &region.url(), "").await;
    let url = |path: &str| format!("http://127.0.0.1:{port}{path}");

    // A download that lasts the whole test, on the same connection to the region.
    let victim_client = http1_client().with_timeout(Duration::from_secs(120));
    let victim_url = url("/drip/40/100");
    let victim = tokio::spawn(async move { victim_client.get(&victim_url).await });

    // 1,500 downloads, 20 at a time, each dropped after its first piece of data.
    let started = std::time::Instant::now();
    let cancels = std::sync::Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut workers = Vec::new();
    for _ in 0..20 {
        let cancels = cancels.clone();
        let url = url("/bytes/67108864");
        workers.push(tokio::spawn(async move {
            let client = http1_client();
            while cancels.fetch_add(1, std::sync::atomic::Ordering::Relaxed) < 1_500
                && started.elapsed() < Duration::from_secs(60)
            {
                let req = http::Request::get(&url)
                    .body(switchyard_tests::empty())
                    .expect("request");
                let Ok(resp) = client.send_streaming(req).await else {
                    continue;
                };
                let mut body = resp.into_body();
                let _ = tokio::time::timeout(
                    Duration::from_secs(5),
                    http_body_util::BodyExt::frame(&mut body),
                )
                .await;
            }
        }));
    }
    for w in workers {
        w.await.expect("worker");
    }

    let victim = victim.await.expect("victim task").expect("victim download");
    assert_eq!(victim.status.as_u16(), 200, "{}", proxy.logs());
    assert_eq!(
        victim.body.len(),
        40 * "drip drip drip\n".len(),
        "the other download was cut\n{}",
        proxy.logs()
    );
    let logs = proxy.logs();
    assert!(!logs.contains("reached limit"), "{logs}");
    let state = proxy
        .region_state("orders", "secure")
        .await
        .expect("status");
    assert_eq!(state.as_deref(), Some("healthy"), "{logs}");
}

/// A region's `Content-Length` that does not describe the body the client gets is not passed
/// on: beside `Transfer-Encoding` (RFC 9112 section 6.3: the chunking wins and a proxy drops
/// the length), and on a 204. Passed on, the first cut an HTTP/1.1 client's connection short
/// of 50 bytes and failed an h2 client's stream; the second made h2 clients refuse the 204
/// (round 9).
#[tokio::test]
async fn a_region_content_length_that_does_not_describe_the_body_is_dropped() {
    for (reply, status, body) in [
        (
            &b"HTTP/1.1 200 OK\r\nContent-Length: 50\r\nTransfer-Encoding: chunked\r\n\r\n5\r\nhello\r\n0\r\n\r\n"[..],
            200,
            "hello",
        ),
        (
            b"HTTP/1.1 204 No Content\r\nContent-Length: 5\r\n\r\n",
            204,
            "",
        ),
    ] {
        let raw = switchyard_tests::RawRegion::start(reply)
            .await
            .expect("raw region starts");
        let config = TestConfig::with_urls(&[("westus", raw.url())])
            .service("[services.health]\ninterval = \"30s\"\n");
        let proxy = ProxyProcess::start(&config.render())
            .await
            .expect("proxy starts");
        for (name, client) in [("h1", http1_client()), ("h2", h2c_client())] {
            let resp = client.get(&config.url("/")).await.unwrap_or_else(|e| {
                panic!("{name}, {status}: {e:#}\n{}", proxy.logs())
            });
            assert_eq!(resp.status.as_u16(), status, "{name}");
            assert_eq!(resp.text(), body, "{name}");
            assert_eq!(resp.header("content-length"), None, "{name}, {status}");
        }
    }
}

/// A client that sends part of its body and waits for the answer before sending the rest
/// (gRPC bidirectional streaming, a chat over one request) gets the answer: the sidecar
/// forwards what came once the client pauses, instead of waiting for the end of a body that
/// will not end until the answer comes (round 9: the request never left, 408 after
/// `request_timeout`). Both ways the messages flow as they are sent, and a client that
/// thinks longer than `per_try_timeout` between messages is not the region stalling (round
/// 10: the response was cut and the region blamed).
#[tokio::test]
async fn a_client_that_waits_for_the_answer_mid_body_gets_it() {
    use http_body_util::BodyExt;
    let (_west, config, proxy) = westus_proxy(
        "[services.retry]\nper_try_timeout = \"400ms\"\n[services.outlier]\nconsecutive_failures = 1\n",
    )
    .await;
    for (name, client) in [("h1", http1_client()), ("h2", h2c_client())] {
        let (tx, body) = channel_body();
        let req = http::Request::post(config.url("/echo"))
            .body(body)
            .expect("request");
        let exchange = async {
            tx.send(bytes::Bytes::from_static(b"ping 1\n"))
                .await
                .expect("send");
            let resp = client.send_streaming(req).await.expect("response head");
            assert_eq!(resp.status().as_u16(), 200, "{name}");
            let mut body = resp.into_body();
            for n in 1..=3 {
                let mut got = Vec::new();
                while got.len() < 7 {
                    let frame = body.frame().await.expect("a frame").expect("data");
                    got.extend_from_slice(frame.data_ref().expect("data"));
                }
                assert_eq!(got, format!("ping {n}\n").as_bytes(), "{name}");
                if n < 3 {
                    tokio::time::sleep(Duration::from_millis(700)).await;
                    let next = format!("ping {}\n", n + 1);
                    tx.send(bytes::Bytes::from(next)).await.expect("send");
                }
            }
            drop(tx);
            while let Some(frame) = body.frame().await {
                frame.expect("the body ends cleanly");
            }
        };
        tokio::time::timeout(Duration::from_secs(10), exchange)
            .await
            .unwrap_or_else(|_| panic!("{name}: no answer mid-body\n{}", proxy.logs()));
    }
    let state = proxy
        .region_state("orders", "westus")
        .await
        .expect("status");
    assert_eq!(state.as_deref(), Some("healthy"), "{}", proxy.logs());
}

/// An HTTP/2 region lets a connection carry only so many streams at once (100 here, as
/// HAProxy and Apache; nginx 128, Go 250). Long-lived streams beyond that on one shared
/// connection made every later request and health probe wait until it timed out, and a
/// healthy region was failed over (round 9); the sidecar now opens another connection
/// instead. 250 downloads of 2 s to a cold region all start at once, each in one attempt:
/// requests that wait for a connection being opened take no more of it than it has room for
/// (round 10: a burst joining one opening put 150 streams on it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn more_streams_than_an_h2_region_allows_per_connection_open_another_connection() {
    let pki = TestPki::new();
    let region = FakeRegion::new("secure").tls(&pki).start().await;
    // A request held back for a stream waits 2 s, past `per_try_timeout`.
    let (proxy, port) = h2_proxy(
        &pki,
        &region.url(),
        "[services.retry]\nper_try_timeout = \"1500ms\"\n",
    )
    .await;
    let downloads = gets_at_once(&format!("http://127.0.0.1:{port}/drip/3/1000"), 250).await;
    let mut retried = 0;
    for resp in downloads {
        assert_eq!(resp.status.as_u16(), 200, "{}", proxy.logs());
        assert_eq!(resp.body.len(), 3 * "drip drip drip\n".len());
        if resp.header("x-switchyard-attempts") != Some("1") {
            retried += 1;
        }
    }
    assert_eq!(
        retried,
        0,
        "requests waited for a stream and timed out\n{}",
        proxy.logs()
    );
    let state = proxy
        .region_state("orders", "secure")
        .await
        .expect("status");
    assert_eq!(state.as_deref(), Some("healthy"), "{}", proxy.logs());
}

/// A response head of 40 KB from an h2 region (large cookies, a long CSP) passes, as a
/// request head that size does: h2's default limit of 16 KiB made it a reset, three
/// attempts and a failure of the region (round 9).
#[tokio::test]
async fn a_large_response_head_from_an_h2_region_passes() {
    let pki = TestPki::new();
    let big = "c".repeat(40_000);
    let region = FakeRegion::new("secure")
        .tls(&pki)
        .header("x-large", &big)
        .start()
        .await;
    let (proxy, port) = h2_proxy(&pki, &region.url(), "").await;
    let resp = http1_client()
        .get(&format!("http://127.0.0.1:{port}/"))
        .await
        .expect("GET");
    assert_eq!(resp.status.as_u16(), 200, "{}", proxy.logs());
    assert_eq!(resp.header("x-fake-version"), Some("HTTP/2.0"));
    assert_eq!(resp.header("x-large"), Some(big.as_str()));
    assert_eq!(resp.header("x-switchyard-attempts"), Some("1"));
}

/// A region that answers `101 Switching Protocols` to a request that asked for no upgrade
/// has nothing the client could go on with: 502, not a 101 and a closed connection.
#[tokio::test]
async fn a_101_to_a_request_without_upgrade_is_a_502() {
    let raw = switchyard_tests::RawRegion::start(
        b"HTTP/1.1 101 Switching Protocols\r\nUpgrade: foo\r\nConnection: upgrade\r\n\r\n",
    )
    .await
    .expect("raw region starts");
    let config = TestConfig::with_urls(&[("westus", raw.url())])
        .service("[services.health]\ninterval = \"30s\"\n");
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let resp = http1_client()
        .get_with(&config.url("/"), &[("connection", "upgrade")])
        .await
        .expect("GET");
    assert_eq!(resp.status.as_u16(), 502, "{}", proxy.logs());
    assert_eq!(
        resp.header("x-switchyard-error"),
        Some("unexpected-switching-protocols")
    );
    assert_eq!(resp.header("x-switchyard-degraded"), Some("1"));
}

/// An h2 region that ends a stream in a frame of its own after the last data (many servers
/// do) still delivers a complete response to an HTTP/1.1 client: complete enough to be kept
/// as a stale copy (round 10: hyper's HTTP/1.1 server stopped at the last byte, the end was
/// never seen, and the copy was never kept).
#[tokio::test]
async fn a_response_whose_end_comes_in_a_frame_of_its_own_is_complete() {
    let pki = TestPki::new();
    let region = FakeRegion::new("secure").tls(&pki).start().await;
    let (proxy, port) = h2_proxy(
        &pki,
        &region.url(),
        "[services.degraded]\nstale_if_error = \"60s\"\n",
    )
    .await;
    let url = format!("http://127.0.0.1:{port}/late-end");
    let fresh = http1_client().get(&url).await.expect("GET");
    assert_eq!(fresh.status.as_u16(), 200, "{}", proxy.logs());
    assert_eq!(fresh.header("x-fake-version"), Some("HTTP/2.0"));
    assert_eq!(fresh.body.as_ref(), switchyard_tests::DRIP_LINE);
    region.set_mode(switchyard_tests::Mode::Status(503)).await;
    let stale = http1_client().get(&url).await.expect("GET");
    assert_eq!(stale.status.as_u16(), 200, "{}", proxy.logs());
    assert_eq!(stale.header("x-switchyard-error"), Some("stale"));
    assert_eq!(stale.body.as_ref(), switchyard_tests::DRIP_LINE);
}

/// A region that sends its head at once and answers a streamed request once it has all of
/// it gets a whole `per_try_timeout` after the client's last byte, as before the head: the
/// body ended in the middle of a wait for the region, which had only the rest of it and was
/// cut and blamed (round 11).
#[tokio::test]
async fn a_region_answering_after_the_streamed_body_ends_gets_a_whole_per_try_timeout() {
    use http_body_util::BodyExt;
    let (_west, config, proxy) = westus_proxy(
        "[services.retry]\nper_try_timeout = \"600ms\"\n[services.outlier]\nconsecutive_failures = 1\n",
    )
    .await;
    let (tx, body) = channel_body();
    let req = http::Request::post(config.url("/late-answer/400"))
        .body(body)
        .expect("request");
    let exchange = async {
        tx.send(bytes::Bytes::from_static(b"part 1\n"))
            .await
            .expect("send");
        let resp = http1_client()
            .send_streaming(req)
            .await
            .expect("response head");
        assert_eq!(resp.status().as_u16(), 200);
        // Parts 450 ms apart; the body ends 900 ms in, 300 ms into the second wait for the
        // region, which answers 400 ms after that: past the wait's end, within a whole
        // `per_try_timeout` of the body's.
        for part in [2, 3] {
            tokio::time::sleep(Duration::from_millis(450)).await;
            tx.send(bytes::Bytes::from(format!("part {part}\n")))
                .await
                .expect("send");
        }
        drop(tx);
        resp.into_body().collect().await.map(|b| b.to_bytes())
    };
    let got = tokio::time::timeout(Duration::from_secs(10), exchange)
        .await
        .expect("an answer");
    assert_eq!(
        got.expect("the whole body").as_ref(),
        switchyard_tests::DRIP_LINE,
        "{}",
        proxy.logs()
    );
    let state = proxy
        .region_state("orders", "westus")
        .await
        .expect("status");
    assert_eq!(state.as_deref(), Some("healthy"), "{}", proxy.logs());
}

/// Forwards each connection to `to` once `delay` has passed: a region slow to take new
/// connections (its handshakes queue behind a busy accept loop).
async fn slow_to_connect(
    to: std::net::SocketAddr,
    delay: Duration,
) -> (u16, tokio::task::JoinHandle<()>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let task = tokio::spawn(async move {
        while let Ok((mut inbound, _)) = listener.accept().await {
            tokio::spawn(async move {
                tokio::time::sleep(delay).await;
                if let Ok(mut outbound) = tokio::net::TcpStream::connect(to).await {
                    let copy = tokio::io::copy_bidirectional(&mut inbound, &mut outbound);
                    let _ = tokio::time::timeout(Duration::from_secs(60), copy).await;
                }
            });
        }
    });
    (port, task)
}

/// With handshakes slower than half of `per_try_timeout`, the requests a burst leaves over
/// when its first connection is full wait for a second one that cannot open in their time;
/// they now also take a stream that ended on the full connection (round 11: they failed as
/// connect failures, and the region was ejected).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn requests_beyond_a_full_h2_connection_take_streams_that_end_there() {
    let pki = TestPki::new();
    let region = FakeRegion::new("secure").tls(&pki).start().await;
    let (slow_port, forwarder) = slow_to_connect(region.addr(), Duration::from_millis(1500)).await;
    let (proxy, port) = h2_proxy(
        &pki,
        &format!("https://localhost:{slow_port}"),
        "[services.retry]\nper_try_timeout = \"3s\"\n",
    )
    .await;
    // 110 requests of 300 ms each, at a cold region: 100 fit on the first connection.
    let answers = gets_at_once(&format!("http://127.0.0.1:{port}/drip/2/300"), 110).await;
    let failed = answers.iter().filter(|r| r.status != 200).count();
    assert_eq!(failed, 0, "{}", proxy.logs());
    forwarder.abort();
}
