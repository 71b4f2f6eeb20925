//! Retries never duplicate a write, and the retry budget stops a retry storm.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use switchyard_tests::{
    FakeRegion, KeepAliveRegion, Mode, ProxyProcess, RawRegion, SilentPort, TestConfig, TestPki,
    free_port, http1_client,
};

/// Health checks slow enough that they never change routing during a test, and no ejection,
/// so each test sees the retry rule alone.
const QUIET: &str = r#"
[services.health]
interval = "30s"
[services.outlier]
consecutive_failures = 1000
"#;

#[tokio::test]
async fn post_that_reached_a_region_which_dropped_it_is_not_resent() {
    let west = FakeRegion::new("westus")
        .mode(Mode::CloseAfterRequest)
        .start()
        .await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]).service(QUIET);
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");

    let resp = http1_client()
        .post(&config.url("/orders"), "order-1", &[])
        .await
        .expect("an answer, not a hang or a reset");
    assert!(
        resp.status.as_u16() == 502 || resp.status.as_u16() == 503,
        "got {}\n{}",
        resp.status,
        proxy.logs()
    );
    assert!(resp.header("x-switchyard-error").is_some());
    assert_eq!(
        resp.header("x-switchyard-degraded"),
        Some("1"),
        "the sidecar's own answer"
    );
    assert_eq!(resp.region(), Some("none"));
    assert_eq!(resp.header("x-switchyard-attempts"), Some("1"));
    assert_eq!(west.requests_for("POST"), 1, "reached westus exactly once");
    assert_eq!(east.requests_for("POST"), 0, "never sent again elsewhere");
}

#[tokio::test]
async fn get_that_was_dropped_is_retried_on_the_next_region() {
    let west = FakeRegion::new("westus")
        .mode(Mode::CloseAfterRequest)
        .start()
        .await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]).service(QUIET);
    let _proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let resp = http1_client()
        .get(&config.url("/orders/1"))
        .await
        .expect("GET");
    assert_eq!(resp.status.as_u16(), 200);
    assert_eq!(resp.region(), Some("northeurope"));
    assert_eq!(resp.header("x-switchyard-attempts"), Some("2"));
}

/// A reply that is not HTTP fails the attempt like a reset: a GET goes on to the next region,
/// a POST (which the region may have processed before it answered garbage) is not resent.
#[tokio::test]
async fn a_region_answering_garbage_is_failed_over_for_reads_but_never_gets_a_write_twice() {
    for reply in [
        &b"this is not http\r\n\r\n"[..],
        b"HTTP/1.1 200 OK\r\ncontent-length: 1\r\ncontent-length: 2\r\n\r\nab",
    ] {
        let garbage = RawRegion::start(reply).await.expect("raw region starts");
        let east = FakeRegion::new("northeurope").start().await;
        let config =
            TestConfig::with_urls(&[("westus", garbage.url()), ("northeurope", east.url())])
                .service(QUIET);
        let proxy = ProxyProcess::start(&config.render())
            .await
            .expect("proxy starts");
        let client = http1_client();

        let resp = client
            .get(&config.url("/orders"))
            .await
            .expect("GET answered");
        assert_eq!(resp.status, 200, "{}", proxy.logs());
        assert_eq!(resp.region(), Some("northeurope"));
        assert_eq!(resp.header("x-switchyard-attempts"), Some("2"));
        assert_eq!(garbage.requests(), 1);

        let resp = client
            .post(&config.url("/orders"), "order-1", &[])
            .await
            .expect("POST answered");
        assert_eq!(resp.status, 502, "{}", proxy.logs());
        assert_eq!(garbage.requests(), 2, "the POST reached westus once");
        assert_eq!(east.requests_for("POST"), 0, "and nowhere else");
    }
}

#[tokio::test]
async fn post_to_a_refused_primary_lands_on_the_secondary_exactly_once() {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]).service(QUIET);
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    // Health still says westus is fine (probes every 30 s): the connect failure is news.
    west.kill().await;
    let resp = http1_client()
        .post(&config.url("/orders"), "order-2", &[])
        .await
        .expect("POST");
    assert_eq!(resp.status.as_u16(), 200, "{}", proxy.logs());
    assert_eq!(resp.region(), Some("northeurope"));
    assert_eq!(resp.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(east.requests_for("POST"), 1);
    assert_eq!(west.requests_for("POST"), 0);
}

/// Two regions and a 1 KiB `buffer_body_limit`, so bodies over it stream.
async fn streaming_proxy() -> (FakeRegion, FakeRegion, TestConfig, ProxyProcess) {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east])
        .service(QUIET)
        .service("[services.retry]\nbuffer_body_limit = \"1KiB\"");
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    (west, east, config, proxy)
}

/// A body over `buffer_body_limit` streams and cannot be replayed, but a refused connection
/// never read any of it: it goes to the next region, whole and once. Sent to a region that
/// answered 503 it is not sent again.
#[tokio::test]
async fn a_streamed_upload_to_a_refused_primary_still_fails_over_whole() {
    let (west, east, config, proxy) = streaming_proxy().await;
    let upload = switchyard_tests::pattern_bytes(256 * 1024);
    west.kill().await;
    // The proxy holds an idle connection to westus from its first health probe. Give it a
    // moment to see that close: a request written into a connection the region closed at the
    // same instant may have been read, which is a different case (never resent).
    tokio::time::sleep(Duration::from_millis(200)).await;
    let resp = http1_client()
        .post(&config.url("/upload"), upload.clone(), &[])
        .await
        .expect("POST");
    assert_eq!(resp.status.as_u16(), 200, "{}", proxy.logs());
    assert_eq!(resp.region(), Some("northeurope"));
    assert_eq!(resp.header("x-switchyard-attempts"), Some("2"));
    let got = east.last_request().expect("east got it");
    assert_eq!(got.body_len, Some(upload.len() as u64));
    assert_eq!(
        got.body_sha256.as_deref(),
        Some(switchyard_tests::sha256_hex(&upload).as_str())
    );
    assert_eq!(east.requests_for("POST"), 1);

    west.restart().await;
    west.set_mode(Mode::Status(503)).await;
    let resp = http1_client()
        .request(
            http::Method::PUT,
            &config.url("/upload"),
            &[],
            upload.clone(),
        )
        .await
        .expect("PUT");
    assert_eq!(
        resp.status.as_u16(),
        503,
        "a streamed body that left is not resent"
    );
    assert_eq!(resp.header("x-switchyard-attempts"), Some("1"));
    assert_eq!(east.requests_for("PUT"), 0);
}

/// `per_try_timeout` is the region's time, not the client's: a streamed upload that takes the
/// client longer than that goes through, and a slow client is never the region's failure
/// (one such failure would eject it here).
#[tokio::test]
async fn a_slow_streamed_upload_is_not_timed_out_or_blamed_on_the_region() {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]).service(
        r#"
[services.health]
interval = "30s"
[services.outlier]
consecutive_failures = 1
[services.retry]
per_try_timeout = "300ms"
buffer_body_limit = "1KiB"
"#,
    );
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let (tx, body) = switchyard_tests::channel_body();
    tokio::spawn(async move {
        // 8 x 2 KiB, one every 150 ms: the client takes about 1.2 s, four per-try timeouts.
        for _ in 0..8 {
            if tx.send(bytes::Bytes::from(vec![b'u'; 2048])).await.is_err() {
                return;
            }
            tokio::time::sleep(Duration::from_millis(150)).await;
        }
    });
    let req = http::Request::post(config.url("/upload"))
        .body(body)
        .expect("request");
    let resp = http1_client().send(req).await.expect("upload answered");
    assert_eq!(resp.status.as_u16(), 200, "{}", proxy.logs());
    assert_eq!(resp.region(), Some("westus"));
    assert_eq!(resp.header("x-switchyard-attempts"), Some("1"));
    assert_eq!(west.last_request().and_then(|r| r.body_len), Some(8 * 2048));
    let state = proxy
        .region_state("orders", "westus")
        .await
        .expect("status");
    assert_eq!(
        state.as_deref(),
        Some("healthy"),
        "a slow client ejected nothing"
    );
}

/// A client that stalls mid-upload gets 408 at `request_timeout`, and the region it was
/// streaming to is not blamed for it.
#[tokio::test]
async fn a_stalled_upload_is_a_408_and_not_a_region_failure() {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]).service(
        r#"request_timeout = "1s"
[services.health]
interval = "30s"
[services.outlier]
consecutive_failures = 1
[services.retry]
buffer_body_limit = "1KiB"
"#,
    );
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    // Streamed (over the 1 KiB buffer limit), and small enough to be buffered: either way
    // the rest of the body is never read, so the answer closes the connection.
    for sent in [2048, 512] {
        let (tx, body) = switchyard_tests::channel_body();
        let stalled = tokio::spawn(async move {
            let _ = tx.send(bytes::Bytes::from(vec![b'u'; sent])).await;
            // Holds the body open, sending nothing more, past the request timeout.
            tokio::time::sleep(Duration::from_secs(5)).await;
            drop(tx);
        });
        let req = http::Request::post(config.url("/upload"))
            .body(body)
            .expect("request");
        let resp = http1_client().send(req).await.expect("answered");
        stalled.abort();
        assert_eq!(resp.status.as_u16(), 408, "{sent}: {}", proxy.logs());
        assert_eq!(
            resp.header("x-switchyard-error"),
            Some("request-body-timeout")
        );
        assert_eq!(resp.header("connection"), Some("close"), "{sent}");
    }
    let state = proxy
        .region_state("orders", "westus")
        .await
        .expect("status");
    assert_eq!(state.as_deref(), Some("healthy"));
    // Both streamed (the short one after the client's 50 ms pause), so each had an attempt
    // under way: ended for the client's sake, it is cancelled, not an error of the region's
    // (round 14).
    let metrics = proxy.metrics().await.expect("metrics");
    let attempts = |outcome: &str| {
        let line = format!(
            "switchyard_upstream_attempts_total{{service=\"orders\",region=\"westus\",outcome=\"{outcome}\"}} "
        );
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(&line).map(str::to_owned))
    };
    assert_eq!(attempts("cancelled").as_deref(), Some("2"), "{metrics}");
    assert_eq!(attempts("error").as_deref(), Some("0"), "{metrics}");
}

/// A client that goes away halfway through a streamed upload breaks the request to the
/// region; that is the client's doing. Three such aborts ejected a healthy primary and
/// failed the service over, each counted as a region reset and a degraded 502 (round 13).
/// Now each is a cancelled attempt and the region stays in service.
#[tokio::test]
async fn clients_that_abort_their_uploads_are_not_blamed_on_the_region() {
    use tokio::io::AsyncWriteExt;
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]).service(
        r#"[services.health]
interval = "30s"
[services.outlier]
consecutive_failures = 1
[services.retry]
buffer_body_limit = "1KiB"
"#,
    );
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    for _ in 0..3 {
        let mut conn = tokio::net::TcpStream::connect(config.addr())
            .await
            .expect("connect");
        conn.write_all(b"POST /upload HTTP/1.1\r\nHost: orders\r\nContent-Length: 100000\r\n\r\n")
            .await
            .expect("head");
        conn.write_all(&[b'u'; 5000])
            .await
            .expect("part of the body");
        // Past the 50 ms pause after which the body streams to the region.
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(conn);
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let attempts = |outcome: &'static str| {
        let proxy = &proxy;
        async move {
            let text = proxy.metrics().await.unwrap_or_default();
            let line = format!(
                "switchyard_upstream_attempts_total{{service=\"orders\",region=\"westus\",outcome=\"{outcome}\"}} "
            );
            text.lines()
                .find_map(|l| l.strip_prefix(&line))
                .and_then(|v| v.parse::<f64>().ok())
        }
    };
    let counted = switchyard_tests::eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async { attempts("cancelled").await == Some(3.0) },
    )
    .await;
    assert!(
        counted,
        "{:?}\n{}",
        attempts("cancelled").await,
        proxy.logs()
    );
    assert_eq!(attempts("reset").await, Some(0.0));
    let state = proxy
        .region_state("orders", "westus")
        .await
        .expect("status");
    assert_eq!(state.as_deref(), Some("healthy"), "{}", proxy.logs());
    let metrics = proxy.metrics().await.expect("metrics");
    assert!(
        metrics.contains("switchyard_degraded_responses_total{service=\"orders\"} 0"),
        "{metrics}"
    );
    let ok = http1_client()
        .get(&config.url("/after"))
        .await
        .expect("GET");
    assert_eq!(ok.region(), Some("westus"), "still the active region");
}

/// A reset may be a connection the region closed while idle, not an outage: a GET goes back
/// to the same region when it is the only one (as Envoy's `retry_on: reset` does); a POST
/// that may have been applied is still not resent.
#[tokio::test]
async fn after_a_reset_a_read_is_retried_on_the_only_region_and_a_write_is_not() {
    let west = FakeRegion::new("westus")
        .mode(Mode::CloseAfterRequest)
        .start()
        .await;
    let config = TestConfig::new(&[&west]).service(QUIET);
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let get = http1_client()
        .get(&config.url("/orders"))
        .await
        .expect("GET");
    assert_eq!(get.status.as_u16(), 503, "{}", proxy.logs());
    assert_eq!(
        get.header("x-switchyard-attempts"),
        Some("3"),
        "max_attempts on the one region"
    );
    assert_eq!(west.requests_for("GET"), 3);
    let post = http1_client()
        .post(&config.url("/orders"), "order-9", &[])
        .await
        .expect("POST");
    assert_eq!(post.status.as_u16(), 502);
    assert_eq!(post.header("x-switchyard-attempts"), Some("1"));
    assert_eq!(west.requests_for("POST"), 1);
}

#[tokio::test]
async fn post_to_a_503_primary_is_retried_only_with_an_idempotency_key() {
    let west = FakeRegion::new("westus").status(503).start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]).service(QUIET);
    let _proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let client = http1_client();

    let without = client
        .post(&config.url("/orders"), "a", &[])
        .await
        .expect("POST");
    assert_eq!(without.status.as_u16(), 503, "the region's own answer");
    assert_eq!(without.region(), Some("westus"));
    assert_eq!(east.requests_for("POST"), 0);

    let with = client
        .post(&config.url("/orders"), "b", &[("idempotency-key", "k-123")])
        .await
        .expect("POST");
    assert_eq!(with.status.as_u16(), 200);
    assert_eq!(with.region(), Some("northeurope"));
    assert_eq!(with.header("x-switchyard-attempts"), Some("2"));
    assert_eq!(west.requests_for("POST"), 2);
    assert_eq!(east.requests_for("POST"), 1);
    let seen = east.last_request().expect("east got it");
    assert_eq!(seen.header("idempotency-key"), Some("k-123"));
}

#[tokio::test]
async fn the_retry_budget_stops_a_retry_storm() {
    let west = FakeRegion::new("westus").status(503).start().await;
    let east = FakeRegion::new("northeurope").status(503).start().await;
    let config = TestConfig::new(&[&west, &east]).service(&format!(
        "{QUIET}\n[services.retry]\nmax_attempts = 3\nbudget_ratio = 0.2\nmin_retries_per_sec = 1\n"
    ));
    let _proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let client = http1_client();
    let requests = 200usize;
    for _ in 0..requests {
        let resp = client.get(&config.url("/")).await.expect("a 503, promptly");
        assert_eq!(resp.status.as_u16(), 503);
    }
    let attempts = west.requests() + east.requests();
    // Without a budget: 600 attempts. With it: 200 + 20% + the floor of 10 in the window.
    let ceiling = requests + requests / 5 + 10 + 2;
    assert!(
        attempts <= ceiling,
        "{attempts} attempts for {requests} requests (ceiling {ceiling})"
    );
    assert!(
        attempts > requests + 10,
        "retries did happen within the budget: {attempts}"
    );
}

#[tokio::test]
async fn slow_region_is_cut_off_by_per_try_timeout_and_request_timeout_bounds_everything() {
    let west = FakeRegion::new("westus")
        .slow(Duration::from_secs(10))
        .start()
        .await;
    let east = FakeRegion::new("northeurope")
        .slow(Duration::from_secs(10))
        .start()
        .await;
    let config = TestConfig::new(&[&west, &east]).service(&format!(
        "request_timeout = \"700ms\"\n{QUIET}\n[services.retry]\nper_try_timeout = \"500ms\"\n"
    ));
    let _proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let started = std::time::Instant::now();
    let resp = http1_client().get(&config.url("/")).await.expect("GET");
    let took = started.elapsed();
    assert_eq!(resp.status.as_u16(), 503);
    assert_eq!(resp.header("x-switchyard-degraded"), Some("1"));
    assert_eq!(resp.header("x-switchyard-attempts"), Some("2"));
    assert!(
        took >= Duration::from_millis(650) && took < Duration::from_millis(1500),
        "took {took:?}"
    );
}

/// An HTTP/2 region that closes every connection gracefully (GOAWAY, NO_ERROR, last stream
/// id 0) as soon as it is open, as a server that is restarting does: requests already on
/// their way cross the GOAWAY and were never processed. Returns its port and every `x-n` it
/// did process.
async fn goaway_region(
    pki: &switchyard_tests::TestPki,
) -> (u16, std::sync::Arc<std::sync::Mutex<Vec<String>>>) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let port = listener.local_addr().expect("addr").port();
    let acceptor = tokio_rustls::TlsAcceptor::from(pki.server_config(false).expect("tls"));
    let seen = std::sync::Arc::new(std::sync::Mutex::new(Vec::new()));
    let log = seen.clone();
    tokio::spawn(async move {
        for _ in 0..10_000 {
            let Ok((tcp, _)) = listener.accept().await else {
                return;
            };
            let (acceptor, log) = (acceptor.clone(), log.clone());
            tokio::spawn(async move {
                let Ok(tls) = acceptor.accept(tcp).await else {
                    return;
                };
                let Ok(mut conn) = h2::server::handshake(tls).await else {
                    return;
                };
                conn.abrupt_shutdown(h2::Reason::NO_ERROR);
                while let Some(Ok((req, mut respond))) = conn.accept().await {
                    if let Some(n) = req.headers().get("x-n") {
                        log.lock()
                            .expect("log")
                            .push(n.to_str().unwrap_or("").to_owned());
                    }
                    let _ = respond.send_response(http::Response::new(()), true);
                }
            });
        }
    });
    (port, seen)
}

/// Streams a region never processed (above its GOAWAY's last stream id, RFC 9113 §6.8) are
/// resent, writes included, and nothing is sent twice.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn posts_a_graceful_goaway_left_unprocessed_are_resent_once() {
    let pki = switchyard_tests::TestPki::new();
    let (port, seen) = goaway_region(&pki).await;
    let east = FakeRegion::new("northeurope").start().await;
    let (admin, listen) = (switchyard_tests::free_port(), switchyard_tests::free_port());
    let dir = ProxyProcess::new_dir().expect("dir");
    pki.copy_to(dir.path()).expect("copy PEM files");
    let config = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"
[[services]]
name = "orders"
listen = "127.0.0.1:{listen}"
{QUIET}
[[services.regions]]
name = "westus"
url = "https://localhost:{port}"
priority = 0
tls = {{ ca_file = "ca.pem" }}
[[services.regions]]
name = "northeurope"
url = "{east}"
priority = 1
"#,
        east = east.url()
    );
    let proxy = ProxyProcess::builder(&config)
        .dir(dir)
        .start()
        .await
        .expect("proxy starts");
    let client = http1_client();
    let url = format!("http://127.0.0.1:{listen}/orders");
    let (mut resent, mut answered) = (0, 0);
    for round in 0..10 {
        let posts = (0..20).map(|i| {
            let (client, url) = (client.clone(), url.clone());
            let n = format!("{round}-{i}");
            async move { client.post(&url, "order", &[("x-n", n.as_str())]).await }
        });
        for resp in futures_util::future::join_all(posts).await {
            let resp = resp.expect("an answer");
            if resp.status.as_u16() == 200 {
                answered += 1;
                if resp.header("x-switchyard-attempts") == Some("2") {
                    resent += 1;
                }
            }
        }
    }
    // A stream the GOAWAY named unprocessed counts as refused, and is resent to the next
    // region. (Streams the connection lost otherwise, without a word on whether they were
    // processed, are reported as 502: never resent on a guess.)
    let metrics = proxy.metrics().await.expect("metrics");
    let refused = metrics
        .lines()
        .find(|l| {
            l.starts_with("switchyard_upstream_attempts_total{")
                && l.contains("region=\"westus\"")
                && l.contains("outcome=\"refused-stream\"")
        })
        .and_then(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .unwrap_or(0.0);
    assert!(
        refused > 0.0 && resent > 0,
        "no stream was refused by the GOAWAY and resent ({refused} refused, {resent} resent, \
         {answered} answered)\n{metrics}"
    );
    assert!(
        seen.lock().expect("log").is_empty(),
        "westus processed nothing (its GOAWAY said so)"
    );
    assert_eq!(
        east.requests_for("POST"),
        answered,
        "each answered POST arrived at northeurope exactly once"
    );
}

/// One service on `port` (QUIET health, `per_try_timeout`): westus first, the write region,
/// described by `westus` (its `url` and any more keys), then northeurope at `east`.
fn westus_then_northeurope(port: u16, per_try: &str, westus: &str, east: &FakeRegion) -> String {
    let admin = free_port();
    format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"
[[services]]
name = "orders"
listen = "127.0.0.1:{port}"
{QUIET}
[services.retry]
per_try_timeout = "{per_try}"
[[services.regions]]
name = "westus"
priority = 0
write = true
{westus}
[[services.regions]]
name = "northeurope"
priority = 1
url = "{east}"
"#,
        east = east.url()
    )
}

/// A TLS region whose server hangs (its kernel still accepts TCP, nothing answers the TLS
/// handshake) never got the request: a POST fails over to the next region once the
/// connection deadline passes, instead of being answered 504 as if the region might have
/// processed it. POSTs arriving together share the one hanging handshake and its failure.
#[tokio::test]
async fn a_post_to_a_region_that_accepts_tcp_but_never_answers_tls_fails_over() {
    let pki = TestPki::new();
    let hung = tokio::net::TcpListener::bind("127.0.0.1:0")
        .await
        .expect("bind");
    let hung_port = hung.local_addr().expect("address").port();
    // Accepts and holds connections, reading nothing; ends with the test.
    let accepted = Arc::new(AtomicUsize::new(0));
    let counter = accepted.clone();
    let holder = tokio::spawn(async move {
        let mut held = Vec::new();
        while let Ok((conn, _)) = hung.accept().await {
            counter.fetch_add(1, Ordering::Relaxed);
            held.push(conn);
        }
    });
    let east = FakeRegion::new("northeurope").start().await;
    let port = free_port();
    let config = westus_then_northeurope(
        port,
        "1s",
        &format!("url = \"https://127.0.0.1:{hung_port}\"\ntls = {{ ca_file = \"ca.pem\" }}"),
        &east,
    );
    let dir = ProxyProcess::new_dir().expect("dir");
    pki.copy_to(dir.path()).expect("copy PEM files");
    let proxy = ProxyProcess::builder(&config)
        .dir(dir)
        .start()
        .await
        .expect("proxy starts");
    let posts: Vec<_> = (0..10)
        .map(|_| {
            tokio::spawn(async move {
                http1_client()
                    .post(&format!("http://127.0.0.1:{port}/orders"), "order", &[])
                    .await
            })
        })
        .collect();
    for (i, post) in posts.into_iter().enumerate() {
        let resp = post.await.expect("task").expect("POST");
        assert_eq!(resp.status.as_u16(), 200, "POST {i}\n{}", proxy.logs());
        assert_eq!(resp.region(), Some("northeurope"));
        assert_eq!(resp.header("x-switchyard-attempts"), Some("2"));
    }
    assert_eq!(east.requests_for("POST"), 10, "each POST processed once");
    // One handshake for the POSTs, perhaps one more for the health probe at start.
    let handshakes = accepted.load(Ordering::Relaxed);
    assert!(
        handshakes <= 2,
        "{handshakes} connections to the hung region"
    );
    holder.abort();
}

/// A primary whose address drops SYNs (a partition or a firewall, where nothing completes
/// the TCP handshake, unlike a frozen server whose kernel still does) never got a request:
/// GETs and POSTs alike fail over once the connect deadline passes, each processed once by
/// the next region, none answered 504 as if the primary might have processed it.
#[tokio::test]
async fn requests_to_a_primary_that_drops_syns_fail_over_once_each() {
    let silent = SilentPort::start().expect("silent port");
    let east = FakeRegion::new("northeurope").start().await;
    let port = free_port();
    let config = westus_then_northeurope(
        port,
        "500ms",
        &format!("url = \"http://127.0.0.1:{}\"", silent.port()),
        &east,
    );
    let proxy = ProxyProcess::start(&config).await.expect("proxy starts");
    let requests: Vec<_> = (0..10)
        .map(|i| {
            tokio::spawn(async move {
                let url = format!("http://127.0.0.1:{port}/orders/{i}");
                if i % 2 == 0 {
                    http1_client().post(&url, "order", &[]).await
                } else {
                    http1_client().get(&url).await
                }
            })
        })
        .collect();
    for (i, request) in requests.into_iter().enumerate() {
        let resp = request.await.expect("task").expect("request");
        assert_eq!(resp.status.as_u16(), 200, "request {i}\n{}", proxy.logs());
        assert_eq!(resp.region(), Some("northeurope"));
        assert_eq!(resp.header("x-switchyard-attempts"), Some("2"));
    }
    assert_eq!(east.requests_for("POST"), 5, "each POST processed once");
    assert_eq!(east.requests_for("GET"), 5, "each GET processed once");
}

/// A region that announces a short keep-alive timeout (`Keep-Alive: timeout=1` here; Node.js
/// and Apache say 5 s) closes a connection idle that long, and a write sent on it just then
/// is lost with it and cannot be resent: it was a 502. The sidecar now stops reusing such a
/// connection before the region's timeout, and still reuses it within.
#[tokio::test]
async fn a_write_after_a_quiet_spell_does_not_reuse_a_connection_the_region_timed_out() {
    let region = KeepAliveRegion::start().await.expect("region");
    let (admin, port) = (free_port(), free_port());
    let config = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"
[[services]]
name = "orders"
listen = "127.0.0.1:{port}"
{QUIET}
[[services.regions]]
name = "westus"
url = "{url}"
write = true
"#,
        url = region.url()
    );
    let proxy = ProxyProcess::start(&config).await.expect("proxy starts");
    let url = format!("http://127.0.0.1:{port}/orders");
    for _ in 0..3 {
        let resp = http1_client().get(&url).await.expect("GET");
        assert_eq!(resp.status.as_u16(), 200, "{}", proxy.logs());
    }
    let warm = region.connections();
    assert!(
        warm <= 2,
        "{warm} connections for three GETs in a row and a probe"
    );
    tokio::time::sleep(switchyard_tests::keep_alive_region::KEEP_ALIVE_TIMEOUT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = http1_client().post(&url, "order", &[]).await.expect("POST");
    assert_eq!(resp.status.as_u16(), 200, "{}", proxy.logs());
    assert_eq!(resp.header("x-switchyard-attempts"), Some("1"));
    // A response without the header leaves the timeout named before in force (round 14).
    let resp = http1_client()
        .get(&format!("http://127.0.0.1:{port}/nohint"))
        .await
        .expect("GET");
    assert_eq!(resp.status.as_u16(), 200, "{}", proxy.logs());
    tokio::time::sleep(switchyard_tests::keep_alive_region::KEEP_ALIVE_TIMEOUT).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let resp = http1_client().post(&url, "order", &[]).await.expect("POST");
    assert_eq!(resp.status.as_u16(), 200, "{}", proxy.logs());
    assert_eq!(
        region.dropped(),
        0,
        "a request was sent on a timed-out connection"
    );
    assert_eq!(region.answered(), 6);
}

/// A streamed upload that no region could take is answered before the client has sent all
/// of it. The sidecar does not read the rest, so the connection cannot carry another
/// request: the answer says `connection: close` instead of the connection just closing
/// under a client that may already be writing its next request.
#[tokio::test]
async fn an_unread_streamed_upload_is_answered_with_connection_close() {
    use tokio::io::AsyncWriteExt;

    let (west, east, config, proxy) = streaming_proxy().await;
    west.kill().await;
    east.kill().await;
    let mut conn = tokio::net::TcpStream::connect(config.addr())
        .await
        .expect("connect");
    // Declares 256 KiB, sends 8 KiB, and waits for the answer.
    conn.write_all(b"POST /upload HTTP/1.1\r\nHost: sidecar\r\nContent-Length: 262144\r\n\r\n")
        .await
        .expect("write head");
    conn.write_all(&switchyard_tests::pattern_bytes(8 * 1024))
        .await
        .expect("write part of the body");
    let answer = switchyard_tests::read_until(&mut conn, Duration::from_secs(10), |got| {
        got.contains("\r\n\r\n")
    })
    .await;
    assert!(
        answer.starts_with("http/1.1 5"),
        "{answer}\n{}",
        proxy.logs()
    );
    assert!(answer.contains("connection: close"), "{answer}");
}
