//! Self-tests of the harness: the fake region's modes, TLS, WebSocket and the clients.
//! None of these start the proxy.

use std::time::{Duration, Instant};

use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use http::{Method, Request, StatusCode, Version};
use switchyard_tests::{
    FakeRegion, HttpClient, Mode, Protocol, TestPki, channel_body, free_port, get, h2c_client,
    http1_client, https_client, mtls_client, pattern_bytes, post, raw_http, render, sha256_hex,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

const WAIT: Duration = Duration::from_secs(5);

#[tokio::test]
async fn ok_mode_echoes_the_request_head() {
    let region = FakeRegion::new("westus").start().await;
    let url = format!("{}/orders/42?x=1", region.url());
    let resp = http1_client()
        .get_with(&url, &[("traceparent", "00-abc-def-01")])
        .await
        .expect("GET");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.text(), "westus");
    assert_eq!(resp.fake_region(), Some("westus"));
    assert_eq!(resp.header("x-fake-method"), Some("GET"));
    assert_eq!(resp.header("x-fake-path"), Some("/orders/42?x=1"));
    assert_eq!(resp.header("x-fake-version"), Some("HTTP/1.1"));
    let authority = region.authority();
    assert_eq!(resp.header("x-fake-host"), Some(authority.as_str()));
    assert_eq!(resp.header("x-fake-body-sha256"), None, "GET has no body");

    assert_eq!(region.requests(), 1);
    assert_eq!(region.requests_for("GET"), 1);
    assert_eq!(region.requests_for("POST"), 0);
    let seen = region.last_request().expect("one request logged");
    assert_eq!(seen.method, Method::GET);
    assert_eq!(seen.path, "/orders/42?x=1");
    assert_eq!(seen.header("traceparent"), Some("00-abc-def-01"));

    region.reset_counters();
    assert_eq!(region.requests(), 0);
    assert!(region.received().is_empty());
}

#[tokio::test]
async fn status_mode_switches_at_runtime() {
    let region = FakeRegion::new("westus").status(503).start().await;
    let resp = get(&region.url()).await.expect("GET");
    assert_eq!(resp.status, StatusCode::SERVICE_UNAVAILABLE);
    assert_eq!(resp.fake_region(), Some("westus"));

    region.set_mode(Mode::Ok).await;
    assert_eq!(region.mode(), Mode::Ok);
    let resp = get(&region.url()).await.expect("GET");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(region.requests(), 2);
}

#[tokio::test]
async fn health_checks_follow_the_mode_unless_overridden() {
    let region = FakeRegion::new("westus").status(503).start().await;
    let health = format!("{}/healthz", region.url());
    assert_eq!(get(&health).await.expect("probe").status.as_u16(), 503);
    assert_eq!(region.health_checks(), 1);
    assert_eq!(region.requests(), 0, "health checks are not traffic");

    // Only traffic fails.
    region.set_health_status(Some(200));
    assert_eq!(get(&health).await.expect("probe").status.as_u16(), 200);
    assert_eq!(get(&region.url()).await.expect("GET").status.as_u16(), 503);

    // Only the health check fails.
    region.set_mode(Mode::Ok).await;
    region.set_health_status(Some(500));
    assert_eq!(get(&health).await.expect("probe").status.as_u16(), 500);
    assert_eq!(get(&region.url()).await.expect("GET").status.as_u16(), 200);
    assert_eq!(region.health_checks(), 3);
    assert_eq!(region.requests(), 2);

    let custom = FakeRegion::new("eu")
        .health_path("/ping")
        .health_status(418)
        .start()
        .await;
    let resp = get(&format!("{}/ping", custom.url())).await.expect("probe");
    assert_eq!(resp.status.as_u16(), 418);
    assert!(custom.wait_for_health_checks(1, WAIT).await);
}

#[tokio::test]
async fn body_digest_headers_match_what_was_sent() {
    let region = FakeRegion::new("westus").start().await;
    let body = pattern_bytes(1024 * 1024 + 7);
    let resp = post(
        &format!("{}/orders", region.url()),
        body.clone(),
        &[("idempotency-key", "k-1")],
    )
    .await
    .expect("POST");
    assert_eq!(resp.status, StatusCode::OK);
    let expected = sha256_hex(&body);
    assert_eq!(resp.header("x-fake-body-sha256"), Some(expected.as_str()));
    let len = body.len().to_string();
    assert_eq!(resp.header("x-fake-body-len"), Some(len.as_str()));
    let seen = region.last_request().expect("logged");
    assert_eq!(seen.body_sha256.as_deref(), Some(expected.as_str()));
    assert_eq!(seen.body_len, Some(body.len() as u64));
    assert_eq!(seen.header("idempotency-key"), Some("k-1"));
    assert_eq!(region.requests_for("POST"), 1);

    // A chunked upload that arrives in pieces.
    let (tx, req_body) = channel_body();
    let req = Request::post(format!("{}/chunked", region.url()))
        .body(req_body)
        .expect("request");
    let client = http1_client();
    let sending = tokio::spawn(async move {
        for piece in [&b"hello "[..], b"chunked ", b"world"] {
            tx.send(Bytes::from_static(piece))
                .await
                .expect("send piece");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
    });
    let resp = client.send(req).await.expect("chunked POST");
    sending.await.expect("sender");
    let expected = sha256_hex(b"hello chunked world");
    assert_eq!(resp.header("x-fake-body-sha256"), Some(expected.as_str()));
    assert_eq!(resp.header("x-fake-body-len"), Some("19"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn echo_round_trips_ten_mebibytes_on_http1_and_h2c() {
    let region = FakeRegion::new("westus").start().await;
    let body = Bytes::from(pattern_bytes(10 * 1024 * 1024));
    let expected = sha256_hex(&body);
    for client in [http1_client(), h2c_client()] {
        let resp = client
            .post(&format!("{}/echo", region.url()), body.clone(), &[])
            .await
            .expect("echo");
        assert_eq!(resp.status, StatusCode::OK);
        assert_eq!(resp.body.len(), body.len());
        assert_eq!(resp.body_sha256(), expected);
    }
    let log = region.received();
    assert_eq!(log.len(), 2);
    for seen in log {
        assert_eq!(seen.body_sha256.as_deref(), Some(expected.as_str()));
    }
}

#[tokio::test]
async fn bytes_path_streams_deterministic_content() {
    let region = FakeRegion::new("westus").start().await;
    let n = 300_001;
    let resp = get(&format!("{}/bytes/{n}", region.url()))
        .await
        .expect("GET /bytes");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.body.len(), n);
    assert_eq!(resp.body_sha256(), sha256_hex(&pattern_bytes(n)));
}

#[tokio::test]
async fn h2c_prior_knowledge_is_served() {
    let region = FakeRegion::new("westus").start().await;
    let resp = h2c_client().get(&region.url()).await.expect("h2c GET");
    assert_eq!(resp.version, Version::HTTP_2);
    assert_eq!(resp.header("x-fake-version"), Some("HTTP/2.0"));
    let authority = region.authority();
    assert_eq!(resp.header("x-fake-host"), Some(authority.as_str()));
    assert_eq!(
        region.last_request().expect("logged").version,
        Version::HTTP_2
    );
}

#[tokio::test]
async fn slow_mode_delays_the_answer() {
    let region = FakeRegion::new("westus")
        .slow(Duration::from_millis(300))
        .start()
        .await;
    let started = Instant::now();
    let resp = get(&region.url()).await.expect("GET");
    assert_eq!(resp.status, StatusCode::OK);
    assert!(started.elapsed() >= Duration::from_millis(300));

    let impatient = http1_client().with_timeout(Duration::from_millis(100));
    assert!(impatient.get(&region.url()).await.is_err());
}

#[tokio::test]
async fn blackhole_reads_but_never_answers() {
    let region = FakeRegion::new("westus")
        .mode(Mode::Blackhole)
        .start()
        .await;
    let client = http1_client().with_timeout(Duration::from_millis(300));
    let err = client.get(&region.url()).await.expect_err("no answer");
    assert!(format!("{err:#}").contains("within"), "{err:#}");
    assert!(region.wait_for_requests(1, WAIT).await, "head was read");

    // The socket stays open: no EOF, no bytes.
    let mut stream = TcpStream::connect(region.addr()).await.expect("connect");
    stream
        .write_all(b"GET /x HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("write");
    let mut buf = [0u8; 64];
    let read = tokio::time::timeout(Duration::from_millis(300), stream.read(&mut buf)).await;
    assert!(read.is_err(), "blackhole answered or closed: {read:?}");
    assert!(region.wait_for_requests(2, WAIT).await);
}

#[tokio::test]
async fn kill_refuses_and_restart_serves_on_the_same_port() {
    let region = FakeRegion::new("westus").status(502).start().await;
    let addr = region.addr();
    assert_eq!(get(&region.url()).await.expect("GET").status.as_u16(), 502);

    let mut idle = TcpStream::connect(addr).await.expect("connect before kill");
    // Let the accept loop take the connection, so kill has one to drop.
    tokio::time::sleep(Duration::from_millis(50)).await;
    region.kill().await;
    assert_eq!(region.mode(), Mode::Killed);
    let refused = TcpStream::connect(addr).await;
    assert!(refused.is_err(), "connect after kill must be refused");
    let mut buf = [0u8; 8];
    let read = tokio::time::timeout(WAIT, idle.read(&mut buf))
        .await
        .expect("existing connection dropped promptly");
    assert!(matches!(read, Ok(0) | Err(_)), "{read:?}");
    assert!(get(&region.url()).await.is_err());

    region.restart().await;
    assert_eq!(region.addr(), addr);
    assert_eq!(region.mode(), Mode::Status(502));
    assert_eq!(get(&region.url()).await.expect("GET").status.as_u16(), 502);

    region.set_mode(Mode::Killed).await;
    assert!(TcpStream::connect(addr).await.is_err());
    region.restart_with(Mode::Ok).await;
    assert_eq!(get(&region.url()).await.expect("GET").status.as_u16(), 200);
}

#[tokio::test]
async fn start_killed_reserves_a_port_for_later() {
    let port = free_port();
    let region = FakeRegion::new("later")
        .port(port)
        .mode(Mode::Killed)
        .start()
        .await;
    assert_eq!(region.port(), port);
    assert!(TcpStream::connect(region.addr()).await.is_err());
    region.set_mode(Mode::Ok).await;
    assert_eq!(get(&region.url()).await.expect("GET").text(), "later");
}

#[tokio::test]
async fn close_after_request_reads_everything_then_drops() {
    let region = FakeRegion::new("westus")
        .mode(Mode::CloseAfterRequest)
        .start()
        .await;
    let request = b"POST /w HTTP/1.1\r\nHost: a\r\nContent-Length: 5\r\n\r\nhello";
    let answer = raw_http(region.addr(), request).await.expect("raw");
    assert_eq!(answer, "", "not a byte of response");
    assert_eq!(region.requests(), 1);
    let seen = region.last_request().expect("logged");
    let expected = sha256_hex(b"hello");
    assert_eq!(seen.body_sha256.as_deref(), Some(expected.as_str()));

    assert!(post(&region.url(), "x", &[]).await.is_err());
    assert!(h2c_client().get(&region.url()).await.is_err());
    assert_eq!(region.requests(), 3);
}

#[tokio::test]
async fn raw_http_reads_one_response_or_an_error() {
    let region = FakeRegion::new("westus").start().await;
    let answer = raw_http(region.addr(), b"GET /r HTTP/1.1\r\nHost: a\r\n\r\n")
        .await
        .expect("raw");
    assert!(answer.starts_with("HTTP/1.1 200 OK\r\n"), "{answer}");
    assert!(answer.ends_with("westus"), "{answer}");

    let answer = raw_http(region.addr(), b"NOT HTTP AT ALL\r\n\r\n")
        .await
        .expect("raw");
    assert!(answer.starts_with("HTTP/1.1 400"), "{answer}");
}

#[tokio::test]
async fn tls_region_speaks_h2_and_http1_over_alpn() {
    let pki = TestPki::new();
    assert!(pki.ca_pem().is_file() && pki.server_key().is_file());
    assert!(pki.client_cert().is_file() && pki.client_key().is_file());
    let region = FakeRegion::new("eu").tls(&pki).start().await;
    assert!(region.url().starts_with("https://localhost:"));

    let resp = https_client(&pki).get(&region.url()).await.expect("HTTPS");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(resp.version, Version::HTTP_2);
    assert_eq!(resp.header("x-fake-version"), Some("HTTP/2.0"));
    assert_eq!(resp.header("x-fake-scheme"), Some("https"));

    let h1 = HttpClient::new(Protocol::Http1, Some(&pki), false);
    let resp = h1.get(&region.url()).await.expect("HTTPS h1");
    assert_eq!(resp.header("x-fake-version"), Some("HTTP/1.1"));

    // A client that does not trust the CA fails the handshake.
    assert!(http1_client().get(&region.url()).await.is_err());
}

#[tokio::test]
async fn mtls_region_requires_a_client_certificate() {
    let pki = TestPki::new();
    let region = FakeRegion::new("eu")
        .tls(&pki)
        .require_client_cert()
        .start()
        .await;
    assert!(https_client(&pki).get(&region.url()).await.is_err());
    let resp = mtls_client(&pki).get(&region.url()).await.expect("mTLS");
    assert_eq!(resp.status, StatusCode::OK);
    assert_eq!(region.requests(), 1);
}

#[tokio::test]
async fn websocket_upgrade_echoes_messages() {
    let region = FakeRegion::new("westus").start().await;
    let url = format!("ws://{}/socket", region.addr());
    let (mut ws, resp) = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url))
        .await
        .expect("handshake in time")
        .expect("handshake");
    assert_eq!(resp.status(), StatusCode::SWITCHING_PROTOCOLS);
    let fake = resp
        .headers()
        .get("x-fake-region")
        .and_then(|v| v.to_str().ok());
    assert_eq!(fake, Some("westus"));

    for msg in [Message::text("hello"), Message::binary(vec![1u8, 2, 3])] {
        ws.send(msg.clone()).await.expect("send");
        let back = tokio::time::timeout(WAIT, ws.next())
            .await
            .expect("echo in time")
            .expect("stream open")
            .expect("message");
        assert_eq!(back, msg);
    }
    ws.close(None).await.expect("close");
    assert_eq!(region.requests(), 1);
}

#[tokio::test]
async fn dropping_a_region_closes_its_port() {
    let region = FakeRegion::new("gone").start().await;
    let addr = region.addr();
    drop(region);
    let mut refused = false;
    for _ in 0..100 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(refused);
}

#[test]
fn render_fills_placeholders_and_leaves_toml_braces() {
    let port = free_port();
    let text = render(
        "listen = \"127.0.0.1:{port}\"\ntls = { cert = \"{dir}/s.pem\" }\n",
        &[("port", &port), ("dir", &"/tmp/x")],
    );
    assert_eq!(
        text,
        format!("listen = \"127.0.0.1:{port}\"\ntls = {{ cert = \"/tmp/x/s.pem\" }}\n")
    );
}

#[test]
fn handles_can_be_shared_across_tasks() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<FakeRegion>();
    shareable::<switchyard_tests::ProxyProcess>();
    shareable::<HttpClient>();
}

#[tokio::test]
async fn eventually_is_bounded() {
    let started = Instant::now();
    let never = switchyard_tests::eventually(
        Duration::from_millis(100),
        Duration::from_millis(10),
        || async { false },
    )
    .await;
    assert!(!never);
    assert!(started.elapsed() < Duration::from_secs(2));
    let mut n = 0;
    assert!(
        switchyard_tests::wait_until(WAIT, || {
            n += 1;
            n >= 3
        })
        .await
    );
}
