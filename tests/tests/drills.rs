//! Disaster-recovery operations: the switchboard, drains, manual failover, reload, stale data.

use std::collections::HashMap;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use http::Method;
use switchyard_tests::{FakeRegion, Mode, ProxyProcess, TestConfig, eventually, http1_client};

async fn served_by(config: &TestConfig) -> Option<String> {
    let resp = http1_client().get(&config.url("/")).await.ok()?;
    resp.status
        .is_success()
        .then(|| resp.region().map(str::to_owned))?
}

#[tokio::test]
async fn drain_and_undrain_move_traffic_and_show_in_status() {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config =
        TestConfig::new(&[&west, &east]).service("[services.failback]\nstable_for = \"0s\"");
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");

    let resp = proxy
        .admin_post("/services/orders/regions/westus/drain", "")
        .await
        .expect("drain");
    assert_eq!(resp.status.as_u16(), 200, "{}", resp.text());
    let moved = eventually(
        Duration::from_secs(3),
        Duration::from_millis(20),
        || async { served_by(&config).await.as_deref() == Some("northeurope") },
    )
    .await;
    assert!(moved);
    assert_eq!(
        proxy
            .region_state("orders", "westus")
            .await
            .expect("status")
            .as_deref(),
        Some("drained")
    );
    // Writes cannot be moved to a region the operator drained.
    let drain = proxy
        .admin_post("/services/orders/regions/northeurope/drain", "")
        .await
        .expect("drain");
    assert_eq!(drain.status.as_u16(), 200);
    let refused = proxy
        .admin_post(
            "/services/orders/failover",
            r#"{"write_region":"northeurope"}"#,
        )
        .await
        .expect("failover");
    assert_eq!(refused.status.as_u16(), 409, "{}", refused.text());
    assert!(
        refused.json().expect("JSON")["error"]
            .as_str()
            .is_some_and(|e| e.contains("drained"))
    );
    let region = proxy
        .region_status("orders", "northeurope")
        .await
        .expect("status");
    assert_eq!(region.expect("region")["write"], false, "nothing changed");
    let undrain = proxy
        .admin_post("/services/orders/regions/northeurope/undrain", "")
        .await
        .expect("undrain");
    assert_eq!(undrain.status.as_u16(), 200);

    let resp = proxy
        .admin_post("/services/orders/regions/westus/undrain", "")
        .await
        .expect("undrain");
    assert_eq!(resp.status.as_u16(), 200);
    let back = eventually(
        Duration::from_secs(3),
        Duration::from_millis(20),
        || async { served_by(&config).await.as_deref() == Some("westus") },
    )
    .await;
    assert!(back, "{}", proxy.logs());
}

#[tokio::test]
async fn the_fault_switchboard_looks_like_a_real_outage_to_everything() {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config =
        TestConfig::new(&[&west, &east]).service("[services.failback]\nstable_for = \"0s\"");
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let client = http1_client();

    // down: connects "fail", GETs retry on the secondary with no error, probes see it too.
    let resp = proxy
        .admin_post(
            "/services/orders/regions/westus/fault",
            r#"{"mode":"down"}"#,
        )
        .await
        .expect("fault");
    assert_eq!(resp.status.as_u16(), 200, "{}", resp.text());
    for _ in 0..20 {
        let r = client.get(&config.url("/")).await.expect("GET");
        assert_eq!(r.status.as_u16(), 200);
        assert_eq!(r.region(), Some("northeurope"));
    }
    assert_eq!(
        proxy
            .region_state("orders", "westus")
            .await
            .expect("status")
            .as_deref(),
        Some("fault")
    );
    let before = west.requests();
    assert_eq!(before, 0, "a downed region receives nothing");
    let resp = proxy
        .admin_request(
            Method::DELETE,
            "/services/orders/regions/westus/fault",
            &[],
            "",
        )
        .await
        .expect("clear");
    assert_eq!(resp.status.as_u16(), 200);
    let back = eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async { served_by(&config).await.as_deref() == Some("westus") },
    )
    .await;
    assert!(back, "{}", proxy.logs());

    // error at 50%: exactly half of the primary's answers are the injected 503, each retried.
    let resp = proxy
        .admin_post(
            "/services/orders/regions/westus/fault",
            r#"{"mode":"error","status":503,"percent":50}"#,
        )
        .await
        .expect("fault");
    assert_eq!(resp.status.as_u16(), 200);
    let mut retried = 0;
    for _ in 0..6 {
        let r = client.get(&config.url("/")).await.expect("GET");
        assert_eq!(r.status.as_u16(), 200, "the injected 503 was retried");
        if r.header("x-switchyard-attempts") == Some("2") {
            retried += 1;
        }
    }
    assert!(retried >= 2, "injected errors were retried: {retried}");
    proxy
        .admin_request(
            Method::DELETE,
            "/services/orders/regions/westus/fault",
            &[],
            "",
        )
        .await
        .expect("clear");

    // delay: every request to the primary waits.
    proxy
        .admin_post(
            "/services/orders/regions/westus/fault",
            r#"{"mode":"delay","delay_ms":300}"#,
        )
        .await
        .expect("fault");
    let started = std::time::Instant::now();
    let r = client.get(&config.url("/")).await.expect("GET");
    assert_eq!(r.status.as_u16(), 200);
    assert!(started.elapsed() >= Duration::from_millis(300));
}

#[tokio::test]
async fn bad_admin_input_gets_a_4xx_with_a_json_error_and_changes_nothing() {
    let west = FakeRegion::new("westus").start().await;
    let config = TestConfig::new(&[&west]);
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let cases: [(Method, &str, &str, u16); 18] = [
        // Parameters a call does not take are mistakes to report, not to ignore (round 13).
        (
            Method::POST,
            "/services/orders/failover",
            r#"{"write_region":"westus","force":true}"#,
            400,
        ),
        (Method::POST, "/reload", r#"{"config":"other.toml"}"#, 400),
        // Nor in the query: this is not a dry run, so it must not reload (round 14).
        (Method::POST, "/reload?dry_run=1", "", 400),
        // A mistyped path is not the action (round 15: these reloaded).
        (Method::POST, "/reload/", "", 404),
        (Method::POST, "//reload", "", 404),
        (Method::POST, "/services/nope/regions/westus/drain", "", 404),
        // A fault that injects nothing would still show the region as faulted.
        (
            Method::POST,
            "/services/orders/regions/westus/fault",
            r#"{"mode":"error","percent":0}"#,
            400,
        ),
        (
            Method::POST,
            "/services/orders/regions/westus/fault",
            r#"{"mode":"delay","delay_ms":0}"#,
            400,
        ),
        // Drain takes no parameters, so one given is a mistake (round 12).
        (
            Method::POST,
            "/services/orders/regions/westus/drain",
            r#"{"region":"eastus"}"#,
            400,
        ),
        (Method::POST, "/services/orders/regions/nope/drain", "", 404),
        (
            Method::POST,
            "/services/orders/regions/westus/fault",
            "{not json",
            400,
        ),
        (
            Method::POST,
            "/services/orders/regions/westus/fault",
            r#"{"mode":"meltdown"}"#,
            400,
        ),
        (
            Method::POST,
            "/services/orders/regions/westus/fault",
            r#"{"mode":"error","percent":500}"#,
            400,
        ),
        (
            Method::POST,
            "/services/orders/failover",
            r#"{"write_region":"mars"}"#,
            404,
        ),
        (
            Method::POST,
            "/services/orders/failover",
            r#"{"region":"westus"}"#,
            400,
        ),
        (
            Method::GET,
            "/services/orders/regions/westus/drain",
            "",
            405,
        ),
        (Method::DELETE, "/status", "", 405),
        (Method::GET, "/no/such/route", "", 404),
    ];
    for (method, path, body, status) in cases {
        let resp = proxy
            .admin_request(method.clone(), path, &[], body)
            .await
            .expect("admin");
        assert_eq!(
            resp.status.as_u16(),
            status,
            "{method} {path} {body}: {}",
            resp.text()
        );
        let json = resp.json().expect("JSON error body");
        assert!(
            json["error"].as_str().is_some_and(|e| !e.is_empty()),
            "{json}"
        );
    }
    let ok = http1_client().get(&config.url("/")).await.expect("GET");
    assert_eq!(ok.status.as_u16(), 200);
    assert_eq!(
        proxy
            .region_state("orders", "westus")
            .await
            .expect("status")
            .as_deref(),
        Some("healthy")
    );
}

#[tokio::test]
async fn a_token_guards_every_mutating_call_but_not_reads() {
    let west = FakeRegion::new("westus").start().await;
    let config = TestConfig::new(&[&west]).top("").render().replace(
        "[admin]\n",
        "[admin]\ntoken_env = \"SWITCHYARD_TEST_ADMIN_TOKEN\"\n",
    );
    let proxy = ProxyProcess::builder(&config)
        .env("SWITCHYARD_TEST_ADMIN_TOKEN", "s3cret")
        .start()
        .await
        .expect("proxy starts");
    let drain = "/services/orders/regions/westus/drain";
    for auth in [
        None,
        Some("Bearer wrong"),
        Some("s3cret"),
        Some("Bearer s3cre"),
    ] {
        let headers: Vec<(&str, &str)> = auth.map(|a| ("authorization", a)).into_iter().collect();
        let resp = proxy
            .admin_request(Method::POST, drain, &headers, "")
            .await
            .expect("admin");
        assert_eq!(resp.status.as_u16(), 401, "{auth:?}");
        assert_eq!(
            resp.header("www-authenticate"),
            Some("Bearer realm=\"switchyard-admin\""),
            "a 401 says how to authenticate"
        );
    }
    assert_eq!(
        proxy
            .admin_get("/status")
            .await
            .expect("status")
            .status
            .as_u16(),
        200
    );
    let head = proxy
        .admin_request(Method::HEAD, "/status", &[], "")
        .await
        .expect("HEAD");
    assert_eq!(head.status.as_u16(), 200);
    assert!(head.body.is_empty());
    // The scheme is case-insensitive (RFC 9110 section 11.1).
    for auth in ["Bearer s3cret", "bearer s3cret"] {
        let resp = proxy
            .admin_request(
                Method::POST,
                if auth.starts_with('B') {
                    drain
                } else {
                    "/services/orders/regions/westus/undrain"
                },
                &[("authorization", auth)],
                "",
            )
            .await
            .expect("admin");
        assert_eq!(resp.status.as_u16(), 200, "{auth}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn manual_failover_under_a_stream_of_writes_loses_and_duplicates_nothing() {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]);
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let url = config.url("/orders");
    let sent = Arc::new(AtomicUsize::new(0));
    let mut writers = Vec::new();
    for w in 0..4 {
        let (url, sent) = (url.clone(), sent.clone());
        writers.push(tokio::spawn(async move {
            let client = http1_client();
            let mut failures = 0;
            for i in 0..150 {
                let seq = format!("{w}-{i}");
                let resp = client
                    .post(&url, seq.clone(), &[("x-seq", seq.as_str())])
                    .await;
                sent.fetch_add(1, Ordering::Relaxed);
                if !resp.is_ok_and(|r| r.status.is_success()) {
                    failures += 1;
                }
            }
            failures
        }));
    }
    tokio::time::sleep(Duration::from_millis(150)).await;
    let resp = proxy
        .admin_post(
            "/services/orders/failover",
            r#"{"write_region":"northeurope"}"#,
        )
        .await
        .expect("failover");
    assert_eq!(resp.status.as_u16(), 200, "{}", resp.text());
    let mut failures = 0;
    for w in writers {
        failures += w.await.expect("writer");
    }
    assert_eq!(failures, 0, "{}", proxy.logs());
    let mut seen: HashMap<String, usize> = HashMap::new();
    for r in west.received().into_iter().chain(east.received()) {
        if let Some(seq) = r.header("x-seq") {
            *seen.entry(seq.to_owned()).or_default() += 1;
        }
    }
    assert_eq!(
        seen.len(),
        sent.load(Ordering::Relaxed),
        "every write arrived"
    );
    assert!(seen.values().all(|&n| n == 1), "no write arrived twice");
    let status = proxy.status().await.expect("status");
    let regions = &status["services"][0]["regions"];
    assert_eq!(regions[1]["name"], "northeurope");
    assert_eq!(regions[1]["write"], true, "{status}");
    assert_eq!(regions[0]["write"], false);

    // A reload of the same config (an unrelated edit, a config-management run) keeps the
    // write region where the failover put it: moving writes back is the operator's call.
    let resp = proxy.admin_post("/reload", "").await.expect("reload");
    assert_eq!(resp.status.as_u16(), 200, "{}", resp.text());
    let moved = proxy
        .region_status("orders", "northeurope")
        .await
        .expect("status");
    assert_eq!(moved.expect("region")["write"], true, "{}", proxy.logs());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_under_load_drops_nothing_and_a_bad_reload_keeps_serving() {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]);
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    proxy
        .admin_post("/services/orders/regions/westus/drain", "")
        .await
        .expect("drain");

    let url = config.url("/");
    let mut clients = Vec::new();
    for _ in 0..4 {
        let url = url.clone();
        clients.push(tokio::spawn(async move {
            let client = http1_client();
            let mut failed = 0;
            for _ in 0..200 {
                if !client.get(&url).await.is_ok_and(|r| r.status.is_success()) {
                    failed += 1;
                }
            }
            failed
        }));
    }
    // A valid change: a new degraded body and retry settings.
    let changed = config.render().replace(
        "[services.health]",
        "[services.degraded]\nbody = \"reloaded\"\n\n[services.health]",
    );
    proxy.write_config(&changed).expect("write");
    let resp = proxy.admin_post("/reload", "").await.expect("reload");
    assert_eq!(resp.status.as_u16(), 200, "{}", resp.text());
    proxy.reload().expect("SIGHUP");

    // An invalid one: refused with positions, the running config keeps serving.
    proxy
        .write_config(&changed.replace("interval = \"100ms\"", "interval = \"fast\""))
        .expect("write");
    let resp = proxy.admin_post("/reload", "").await.expect("reload");
    assert_eq!(resp.status.as_u16(), 400);
    let body = resp.json().expect("json");
    assert!(
        body["errors"].to_string().contains("switchyard.toml:"),
        "{body}"
    );
    proxy.reload().expect("SIGHUP with a bad file");

    let mut failed = 0;
    for c in clients {
        failed += c.await.expect("client");
    }
    assert_eq!(failed, 0, "{}", proxy.logs());
    assert!(proxy.logs().contains("reload refused"), "{}", proxy.logs());
    assert_eq!(
        proxy
            .region_state("orders", "westus")
            .await
            .expect("status")
            .as_deref(),
        Some("drained"),
        "health and drains carry over a reload"
    );
}

const STALE: &str = "[services.degraded]\nstale_if_error = \"60s\"\nbody = \"degraded\"\n";

#[tokio::test]
async fn stale_answers_are_served_when_every_region_is_gone() {
    let west = FakeRegion::new("westus").start().await;
    let config = TestConfig::new(&[&west]).service(STALE);
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let client = http1_client();
    let fresh = client
        .get(&config.url("/catalog?page=1"))
        .await
        .expect("GET");
    assert_eq!(fresh.status.as_u16(), 200);
    let post = client
        .post(&config.url("/catalog?page=2"), "x", &[])
        .await
        .expect("POST");
    assert_eq!(post.status.as_u16(), 200);

    west.kill().await;
    tokio::time::sleep(Duration::from_millis(1100)).await;
    let stale = client
        .get(&config.url("/catalog?page=1"))
        .await
        .expect("GET");
    assert_eq!(stale.status.as_u16(), 200, "{}", proxy.logs());
    assert_eq!(stale.text(), "westus", "the last good body");
    assert_eq!(stale.header("x-switchyard-degraded"), Some("1"));
    assert!(
        stale
            .header("age")
            .and_then(|a| a.parse::<u64>().ok())
            .is_some_and(|a| a >= 1)
    );

    // Operators reload during outages, when the copies matter most: a refused reload and
    // an accepted one both keep them (round 9: any reload emptied the cache).
    proxy
        .write_config(
            &config
                .render()
                .replace("[services.degraded]", "[services.nonsense]"),
        )
        .expect("write");
    let refused = proxy.admin_post("/reload", "").await.expect("reload");
    assert_eq!(refused.status.as_u16(), 400, "{}", refused.text());
    proxy.write_config(&config.render()).expect("write");
    let reloaded = proxy.admin_post("/reload", "").await.expect("reload");
    assert_eq!(reloaded.status.as_u16(), 200, "{}", reloaded.text());
    let after_reload = client
        .get(&config.url("/catalog?page=1"))
        .await
        .expect("GET");
    assert_eq!(after_reload.status.as_u16(), 200, "{}", proxy.logs());
    assert_eq!(
        after_reload.text(),
        "westus",
        "the copy outlived the reloads"
    );
    assert_eq!(after_reload.header("x-switchyard-error"), Some("stale"));

    let never_cached = client
        .get(&config.url("/catalog?page=3"))
        .await
        .expect("GET");
    assert_eq!(never_cached.status.as_u16(), 503);
    assert_eq!(never_cached.text(), "degraded");
    let writes_are_not_stale = client
        .get(&config.url("/catalog?page=2"))
        .await
        .expect("GET");
    assert_eq!(writes_are_not_stale.status.as_u16(), 503);
}

/// A proxy with the stale cache on in front of `west`, with ejection off the table: the
/// region keeps answering, with errors.
async fn stale_proxy_that_never_ejects(west: &FakeRegion) -> (TestConfig, ProxyProcess) {
    let config = TestConfig::new(&[west]).service(&format!(
        "{STALE}[services.outlier]\nconsecutive_failures = 1000\n"
    ));
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    (config, proxy)
}

#[tokio::test]
async fn stale_answers_replace_a_regions_5xx_and_answer_head() {
    let west = FakeRegion::new("westus").start().await;
    let (config, proxy) = stale_proxy_that_never_ejects(&west).await;
    let client = http1_client();
    let fresh = client.get(&config.url("/catalog")).await.expect("GET");
    assert_eq!(fresh.status.as_u16(), 200);

    west.set_mode(Mode::Status(503)).await;
    let stale = client.get(&config.url("/catalog")).await.expect("GET");
    assert_eq!(stale.status.as_u16(), 200, "{}", proxy.logs());
    assert_eq!(stale.text(), "westus", "the last good body, not the 503");
    assert_eq!(stale.header("x-switchyard-degraded"), Some("1"));
    assert_eq!(stale.header("x-switchyard-error"), Some("stale"));
    assert!(west.requests() >= 2, "the region was asked first");

    let head = client
        .request(Method::HEAD, &config.url("/catalog"), &[], "")
        .await
        .expect("HEAD");
    assert_eq!(head.status.as_u16(), 200);
    assert!(head.body.is_empty());
    assert_eq!(head.header("x-switchyard-error"), Some("stale"));

    // Nothing stored for this path: the region's own 503 goes through.
    let uncached = client.get(&config.url("/other")).await.expect("GET");
    assert_eq!(uncached.status.as_u16(), 503);
    assert_eq!(uncached.region(), Some("westus"));

    // A client error is an answer, not an outage.
    west.set_mode(Mode::Status(404)).await;
    let missing = client.get(&config.url("/catalog")).await.expect("GET");
    assert_eq!(missing.status.as_u16(), 404);
    assert_eq!(missing.header("x-switchyard-degraded"), None);
}

#[tokio::test]
async fn a_successful_write_forgets_the_stale_copy_and_range_answers_are_never_kept() {
    let west = FakeRegion::new("westus").start().await;
    let (config, proxy) = stale_proxy_that_never_ejects(&west).await;
    let client = http1_client();
    for path in ["/item", "/kept"] {
        let fresh = client.get(&config.url(path)).await.expect("GET");
        assert_eq!(fresh.status.as_u16(), 200);
    }
    let deleted = client
        .request(Method::DELETE, &config.url("/item"), &[], "")
        .await
        .expect("DELETE");
    assert_eq!(deleted.status.as_u16(), 200);
    let ranged = client
        .get_with(&config.url("/part"), &[("range", "bytes=0-2")])
        .await
        .expect("GET with Range");
    assert_eq!(ranged.status.as_u16(), 200);

    west.set_mode(Mode::Status(503)).await;
    let item = client.get(&config.url("/item")).await.expect("GET");
    assert_eq!(
        item.status.as_u16(),
        503,
        "the copy from before the DELETE is gone\n{}",
        proxy.logs()
    );
    let part = client.get(&config.url("/part")).await.expect("GET");
    assert_eq!(
        part.status.as_u16(),
        503,
        "an answer to a Range is not kept"
    );
    let kept = client.get(&config.url("/kept")).await.expect("GET");
    assert_eq!(
        kept.header("x-switchyard-error"),
        Some("stale"),
        "other paths keep theirs"
    );
}

#[tokio::test]
async fn responses_that_forbid_stale_reuse_are_never_served_stale() {
    for cache_control in ["no-store", "must-revalidate", "no-cache"] {
        let west = FakeRegion::new("westus")
            .header("cache-control", cache_control)
            .start()
            .await;
        let config = TestConfig::new(&[&west]).service(STALE);
        let _proxy = ProxyProcess::start(&config.render())
            .await
            .expect("proxy starts");
        let client = http1_client();
        assert_eq!(
            client
                .get(&config.url("/account"))
                .await
                .expect("GET")
                .status
                .as_u16(),
            200
        );
        west.kill().await;
        let resp = client.get(&config.url("/account")).await.expect("GET");
        assert_eq!(resp.status.as_u16(), 503, "{cache_control}");
        assert_eq!(resp.text(), "degraded", "{cache_control}");
    }
}

/// westus (the write region) and northeurope behind a proxy, and a POST that westus takes
/// `slow` to answer, in flight: what a write failover waits for.
async fn write_in_flight(
    slow: Duration,
) -> (
    [FakeRegion; 2],
    Arc<ProxyProcess>,
    tokio::task::JoinHandle<anyhow::Result<switchyard_tests::TestResponse>>,
) {
    let west = FakeRegion::new("westus").slow(slow).start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]).service(
        "[services.health]\ninterval = \"30s\"\n[services.retry]\nper_try_timeout = \"5s\"\n",
    );
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let url = config.url("/orders");
    let write = tokio::spawn(async move { http1_client().post(&url, "slow", &[]).await });
    ([west, east], Arc::new(proxy), write)
}

/// A write failover waits for the writes in flight at the old region; a reload that came in
/// meanwhile copied the region state before the move and then replaced the service it was
/// made on, so the failover was acknowledged and undone (round 9b). They now take turns.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_during_a_write_failover_keeps_the_failover() {
    let (_regions, proxy, write) = write_in_flight(Duration::from_millis(1500)).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let failing_over = {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            proxy
                .admin_post(
                    "/services/orders/failover",
                    r#"{"write_region":"northeurope"}"#,
                )
                .await
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Other admin changes do not wait for the failover: they share the turn reloads take.
    for action in ["drain", "undrain"] {
        let resp = proxy
            .admin_post(&format!("/services/orders/regions/westus/{action}"), "")
            .await
            .expect("admin");
        assert_eq!(resp.status.as_u16(), 200, "{}", resp.text());
    }
    assert!(
        !failing_over.is_finished(),
        "the drain waited for the failover"
    );
    let reloaded = proxy.admin_post("/reload", "").await.expect("reload");
    assert_eq!(reloaded.status.as_u16(), 200, "{}", reloaded.text());
    let failed_over = failing_over.await.expect("task").expect("failover");
    assert_eq!(failed_over.status.as_u16(), 200, "{}", failed_over.text());
    let written = write.await.expect("task").expect("slow write");
    assert_eq!(written.region(), Some("westus"));

    let moved = proxy
        .region_status("orders", "northeurope")
        .await
        .expect("status");
    assert_eq!(moved.expect("region")["write"], true, "{}", proxy.logs());
}

/// Two write failovers of one service take turns: the second starts once the first has
/// moved the writes, and says where from. Run together, each reopened the write gate while
/// the other was still moving writes (round 11).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_failovers_of_one_service_take_turns() {
    let (_regions, proxy, write) = write_in_flight(Duration::from_millis(1000)).await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let failover = |to: &'static str| {
        let proxy = proxy.clone();
        tokio::spawn(async move {
            proxy
                .admin_post(
                    "/services/orders/failover",
                    &format!(r#"{{"write_region":"{to}"}}"#),
                )
                .await
        })
    };
    let first = failover("northeurope");
    tokio::time::sleep(Duration::from_millis(200)).await;
    let second = failover("westus");
    let first = first.await.expect("task").expect("failover");
    let second = second.await.expect("task").expect("failover");
    assert_eq!(first.status.as_u16(), 200, "{}", first.text());
    assert_eq!(second.status.as_u16(), 200, "{}", second.text());
    let previous = |r: &switchyard_tests::TestResponse| r.json().expect("json")["previous"].clone();
    assert_eq!(previous(&first), "westus");
    assert_eq!(
        previous(&second),
        "northeurope",
        "the second waited for the first"
    );
    write.await.expect("task").expect("slow write");
    let west_state = proxy
        .region_status("orders", "westus")
        .await
        .expect("status");
    assert_eq!(west_state.expect("region")["write"], true);
}
