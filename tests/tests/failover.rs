//! Failover and failback under load: a killed primary, a blackholed primary.

use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_tests::{FakeRegion, Mode, ProxyProcess, TestConfig, eventually, http1_client};
use tokio::sync::watch;

/// One response as a load client saw it.
#[derive(Debug, Clone)]
struct Seen {
    at: Instant,
    region: Option<String>,
    ok: bool,
    attempts: u32,
    latency: Duration,
}

/// `clients` concurrent keep-alive clients sending GETs until stopped (or 60 s at most).
fn load(url: String, clients: usize, stop: watch::Receiver<bool>) -> Arc<Mutex<Vec<Seen>>> {
    let seen = Arc::new(Mutex::new(Vec::new()));
    for _ in 0..clients {
        let (url, seen, stop) = (url.clone(), seen.clone(), stop.clone());
        tokio::spawn(async move {
            let client = http1_client().with_timeout(Duration::from_secs(10));
            let started = Instant::now();
            for _ in 0..100_000 {
                if *stop.borrow() || started.elapsed() > Duration::from_secs(60) {
                    break;
                }
                let t0 = Instant::now();
                let resp = client.get(&url).await;
                let s = match resp {
                    Ok(r) => Seen {
                        at: Instant::now(),
                        region: r.region().map(str::to_owned),
                        ok: r.status.is_success(),
                        attempts: r
                            .header("x-switchyard-attempts")
                            .and_then(|a| a.parse().ok())
                            .unwrap_or(0),
                        latency: t0.elapsed(),
                    },
                    Err(_) => Seen {
                        at: Instant::now(),
                        region: None,
                        ok: false,
                        attempts: 0,
                        latency: t0.elapsed(),
                    },
                };
                seen.lock().expect("lock").push(s);
                // A short pause keeps 16 clients from starving the 2-core machine.
                tokio::time::sleep(Duration::from_millis(2)).await;
            }
        });
    }
    seen
}

fn first_from(seen: &[Seen], region: &str, after: Instant) -> Option<Instant> {
    seen.iter()
        .filter(|s| s.at >= after && s.region.as_deref() == Some(region))
        .map(|s| s.at)
        .min()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_primary_fails_over_with_zero_errors_and_fails_back_after_stable_for() {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]).service(
        r#"
[services.failback]
stable_for = "1s"
[services.outlier]
consecutive_failures = 3
base_ejection = "500ms"
[services.retry]
per_try_timeout = "1s"
"#,
    );
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let (stop_tx, stop) = watch::channel(false);
    let seen = load(config.url("/orders"), 16, stop);

    tokio::time::sleep(Duration::from_millis(500)).await;
    west.kill().await;
    let killed_at = Instant::now();
    tokio::time::sleep(Duration::from_millis(1500)).await;
    west.restart().await;
    let restarted_at = Instant::now();
    let back = eventually(Duration::from_secs(15), Duration::from_millis(50), || {
        let seen = seen.clone();
        async move { first_from(&seen.lock().expect("lock"), "westus", restarted_at).is_some() }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let _ = stop_tx.send(true);
    tokio::time::sleep(Duration::from_millis(200)).await;

    let seen = seen.lock().expect("lock").clone();
    let failed: Vec<_> = seen.iter().filter(|s| !s.ok).collect();
    assert!(
        failed.is_empty(),
        "{} of {} requests failed: {:?}\n{}",
        failed.len(),
        seen.len(),
        failed.first(),
        proxy.logs()
    );
    assert!(
        seen.len() > 200,
        "enough traffic to mean something: {}",
        seen.len()
    );

    let to_east =
        first_from(&seen, "northeurope", killed_at).expect("traffic moved to northeurope");
    let failover = to_east.duration_since(killed_at);
    assert!(
        failover < Duration::from_millis(500),
        "failover took {failover:?}"
    );

    assert!(back, "westus serves again after restart\n{}", proxy.logs());
    let failback = first_from(&seen, "westus", restarted_at)
        .expect("westus again")
        .duration_since(restarted_at);
    assert!(
        failback >= Duration::from_secs(1),
        "failback must wait for stable_for, took {failback:?}"
    );
    assert!(
        failback < Duration::from_secs(10),
        "failback took {failback:?}"
    );
    let between = seen.iter().filter(|s| {
        s.at > killed_at + Duration::from_millis(100)
            && s.at < restarted_at + Duration::from_secs(1)
    });
    assert!(
        between
            .clone()
            .all(|s| s.region.as_deref() == Some("northeurope")),
        "only northeurope serves while westus is down or proving itself"
    );
    println!(
        "requests {} failover {:?} failback {:?} east served {}",
        seen.len(),
        failover,
        failback,
        east.requests()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn blackholed_primary_costs_one_per_try_timeout_then_is_ejected() {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]).service(
        r#"
[services.health]
interval = "5s"
timeout = "100ms"
[services.outlier]
consecutive_failures = 2
base_ejection = "30s"
[services.retry]
per_try_timeout = "300ms"
"#,
    );
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let client = http1_client();
    let warm = client.get(&config.url("/")).await.expect("warm-up");
    assert_eq!(warm.region(), Some("westus"));

    west.set_mode(Mode::Blackhole).await;
    let (stop_tx, stop) = watch::channel(false);
    let blackholed_at = Instant::now();
    let seen = load(config.url("/orders"), 4, stop);
    tokio::time::sleep(Duration::from_millis(2000)).await;
    let _ = stop_tx.send(true);
    tokio::time::sleep(Duration::from_millis(500)).await;

    let seen = seen.lock().expect("lock").clone();
    assert!(
        seen.iter().all(|s| s.ok),
        "every GET succeeded\n{}",
        proxy.logs()
    );
    let slowest = seen.iter().map(|s| s.latency).max().expect("requests");
    assert!(
        slowest < Duration::from_millis(300 + 700),
        "slowest request {slowest:?} should be about one per_try_timeout"
    );
    // Once ejected, requests go straight to the secondary in one attempt.
    let late: Vec<_> = seen
        .iter()
        .filter(|s| s.at > blackholed_at + Duration::from_millis(1000))
        .collect();
    assert!(!late.is_empty());
    assert!(
        late.iter()
            .all(|s| s.attempts == 1 && s.region.as_deref() == Some("northeurope"))
    );
    assert!(
        seen.iter().any(|s| s.attempts == 2),
        "the first requests were retried"
    );
    let state = proxy
        .region_state("orders", "westus")
        .await
        .expect("status");
    assert_eq!(state.as_deref(), Some("ejected"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn active_health_checks_fail_over_and_back_without_traffic() {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config =
        TestConfig::new(&[&west, &east]).service("[services.failback]\nstable_for = \"300ms\"");
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    west.set_health_status(Some(503));
    let unhealthy = eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            proxy
                .region_state("orders", "westus")
                .await
                .ok()
                .flatten()
                .as_deref()
                == Some("unhealthy")
        },
    )
    .await;
    assert!(
        unhealthy,
        "two failed probes mark westus unhealthy\n{}",
        proxy.logs()
    );
    let status = proxy.status().await.expect("status");
    let regions = &status["services"][0]["regions"];
    assert_eq!(regions[1]["active"], true, "{status}");
    let resp = http1_client().get(&config.url("/")).await.expect("GET");
    assert_eq!(resp.region(), Some("northeurope"));

    west.set_health_status(None);
    let healthy = eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            let s = proxy.status().await.ok();
            s.is_some_and(|s| s["services"][0]["regions"][0]["active"] == true)
        },
    )
    .await;
    assert!(
        healthy,
        "westus is active again after recovering\n{}",
        proxy.logs()
    );
    let resp = http1_client().get(&config.url("/")).await.expect("GET");
    assert_eq!(resp.region(), Some("westus"));
}

/// Reads `body` to its end or its first error, within 10 s: the bytes read and how it ended.
async fn read_body(body: hyper::body::Incoming) -> (Vec<u8>, Result<(), String>) {
    use http_body_util::BodyExt;
    let mut body = body;
    let mut got = Vec::new();
    let read = async {
        while let Some(frame) = body.frame().await {
            match frame {
                Ok(frame) => {
                    if let Some(data) = frame.data_ref() {
                        got.extend_from_slice(data);
                    }
                }
                Err(e) => return Err(e.to_string()),
            }
        }
        Ok(())
    };
    let ended = tokio::time::timeout(Duration::from_secs(10), read)
        .await
        .unwrap_or_else(|_| Err("no end within 10 s".into()));
    (got, ended)
}

/// `switchyard_upstream_attempts_total` of westus with `outcome`.
async fn westus_attempts(proxy: &ProxyProcess, outcome: &str) -> f64 {
    let text = proxy.metrics().await.expect("metrics");
    let scrape = switchyard_tests::Scrape::parse(&text).expect("valid exposition");
    let labels = [
        ("service", "orders"),
        ("region", "westus"),
        ("outcome", outcome),
    ];
    scrape
        .value("switchyard_upstream_attempts_total", &labels)
        .unwrap_or(0.0)
}

/// westus and northeurope behind a proxy with `per_try_timeout` 400ms that ejects a region
/// after two failures in a row.
async fn stall_proxy() -> (FakeRegion, FakeRegion, TestConfig, ProxyProcess) {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = stall_config(&west, &east);
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    (west, east, config, proxy)
}

fn stall_config(west: &FakeRegion, east: &FakeRegion) -> TestConfig {
    TestConfig::new(&[west, east]).service(
        r#"
[services.health]
interval = "5s"
[services.outlier]
consecutive_failures = 2
base_ejection = "30s"
[services.retry]
per_try_timeout = "400ms"
"#,
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_that_stalls_is_cut_off_after_per_try_timeout_and_counts_against_the_region() {
    use switchyard_tests::{DRIP_LINE, h2c_client};
    let (_west, _east, config, proxy) = stall_proxy().await;

    // Over HTTP/1.1 (the connection closes before the chunked body ends) and HTTP/2 (the
    // stream is reset). The region sends one line, then nothing for a minute.
    for (client, protocol) in [(http1_client(), "h1"), (h2c_client(), "h2")] {
        let req = http::Request::get(config.url("/drip/3/60000"))
            .body(switchyard_tests::empty())
            .expect("request");
        let started = Instant::now();
        let resp = client.send_streaming(req).await.expect("response head");
        assert_eq!(resp.status(), 200, "{protocol}");
        let (got, ended) = read_body(resp.into_body()).await;
        let took = started.elapsed();
        assert_eq!(got, DRIP_LINE, "{protocol}: the first line arrives");
        assert!(
            ended.is_err(),
            "{protocol}: the body must end in an error, not look complete"
        );
        assert!(
            took >= Duration::from_millis(350) && took < Duration::from_millis(3000),
            "{protocol}: cut off after about per_try_timeout (400ms), took {took:?}\n{}",
            proxy.logs()
        );
    }
    // Two stalls in a row are `consecutive_failures` here (each response's head must not clear
    // the streak): the region is ejected, and reads go on to the next region.
    let ejected = proxy.reaches_state("orders", "westus", "ejected").await;
    assert!(ejected, "the stalling region is ejected\n{}", proxy.logs());
    let next = http1_client().get(&config.url("/")).await.expect("GET");
    assert_eq!(next.region(), Some("northeurope"));
    // The metrics say the same: two attempts at westus that timed out, none that went well.
    assert_eq!(westus_attempts(&proxy, "timeout").await, 2.0);
    assert_eq!(westus_attempts(&proxy, "ok").await, 0.0);
    assert!(
        proxy.logs().contains("sent nothing of its response body"),
        "the stall is logged\n{}",
        proxy.logs()
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_body_that_keeps_flowing_is_not_cut_off() {
    use switchyard_tests::DRIP_LINE;
    let (_west, _east, config, proxy) = stall_proxy().await;
    // Eight lines 200 ms apart: 1.4 s in all, over three times per_try_timeout, but never
    // silent for that long.
    let req = http::Request::get(config.url("/drip/8/200"))
        .body(switchyard_tests::empty())
        .expect("request");
    let resp = http1_client()
        .send_streaming(req)
        .await
        .expect("response head");
    let (got, ended) = read_body(resp.into_body()).await;
    assert_eq!(ended, Ok(()), "{}", proxy.logs());
    assert_eq!(got, DRIP_LINE.repeat(8));
    let state = proxy
        .region_state("orders", "westus")
        .await
        .expect("status");
    assert_eq!(state.as_deref(), Some("healthy"));
    assert_eq!(westus_attempts(&proxy, "ok").await, 1.0);
    assert_eq!(westus_attempts(&proxy, "timeout").await, 0.0);
}

/// A region that breaks its response body off (resets the stream, closes the connection
/// mid-body) has failed that request as surely as one that reset before the head: the
/// attempt counts as `reset` and against the region's failure streak. It was counted `ok`
/// and never ejected the region (round 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_body_the_region_breaks_off_counts_against_the_region() {
    use switchyard_tests::{DRIP_LINE, h2c_client};
    let (_west, _east, config, proxy) = stall_proxy().await;
    for (client, protocol) in [(http1_client(), "h1"), (h2c_client(), "h2")] {
        let req = http::Request::get(config.url("/cut"))
            .body(switchyard_tests::empty())
            .expect("request");
        let resp = client.send_streaming(req).await.expect("response head");
        assert_eq!(resp.status(), 200, "{protocol}");
        assert_eq!(
            resp.headers()["x-switchyard-region"],
            "westus",
            "{protocol}"
        );
        let (got, ended) = read_body(resp.into_body()).await;
        assert_eq!(got, DRIP_LINE, "{protocol}: the first line arrives");
        assert!(ended.is_err(), "{protocol}: the body must end in an error");
    }
    let ejected = proxy.reaches_state("orders", "westus", "ejected").await;
    assert!(ejected, "two cut bodies eject the region\n{}", proxy.logs());
    assert_eq!(westus_attempts(&proxy, "reset").await, 2.0);
    assert_eq!(westus_attempts(&proxy, "ok").await, 0.0);
    assert!(
        proxy.logs().contains("broke its response body off"),
        "{}",
        proxy.logs()
    );
    let next = http1_client().get(&config.url("/")).await.expect("GET");
    assert_eq!(next.region(), Some("northeurope"));
}

/// After a total outage the first region back takes the traffic as soon as its checks pass.
/// During the outage every request tried every region, and each failure streak ejected its
/// region again, for longer each time: the first region back stayed ejected, and clients got
/// 503s, for up to `max_ejection` after it was healthy again (round 9).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn after_a_total_outage_the_first_region_back_serves_once_its_checks_pass() {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]).service(
        r#"
[services.health]
interval = "100ms"
[services.outlier]
consecutive_failures = 1
base_ejection = "30s"
max_ejection = "60s"
[services.retry]
# No retries (as when a busy service has spent its budget in the outage): each request gets
# one attempt, at the region routing picks.
budget_ratio = 0.0
min_retries_per_sec = 0
"#,
    );
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let client = http1_client();
    assert_eq!(client.get(&config.url("/")).await.expect("GET").status, 200);
    west.kill().await;
    east.kill().await;
    // Traffic through the outage, then until both checks have seen it.
    for _ in 0..20 {
        let resp = client.get(&config.url("/")).await.expect("GET");
        assert_eq!(resp.status.as_u16(), 503);
        tokio::time::sleep(Duration::from_millis(25)).await;
    }
    for region in ["westus", "northeurope"] {
        let down = proxy.reaches_state("orders", region, "unhealthy").await;
        assert!(down, "{region}\n{}", proxy.logs());
    }
    for _ in 0..5 {
        let resp = client.get(&config.url("/")).await.expect("GET");
        assert_eq!(resp.status.as_u16(), 503);
    }
    // Nothing is serving, and `/status` and the gauge say so (they showed westus).
    let active = |region: &'static str| async {
        let status = proxy.region_status("orders", region).await.expect("status");
        status.expect("region")["active"].as_bool()
    };
    assert_eq!(active("westus").await, Some(false), "{}", proxy.logs());
    assert_eq!(active("northeurope").await, Some(false));
    let metrics = proxy.metrics().await.expect("metrics");
    let scrape = switchyard_tests::Scrape::parse(&metrics).expect("exposition");
    let gauge = |region| {
        scrape.value(
            "switchyard_region_active",
            &[("service", "orders"), ("region", region)],
        )
    };
    assert_eq!(gauge("westus"), Some(0.0));
    assert_eq!(gauge("northeurope"), Some(0.0));

    east.restart().await;
    let back = eventually(
        Duration::from_secs(5),
        Duration::from_millis(50),
        || async {
            client
                .get(&config.url("/"))
                .await
                .is_ok_and(|r| r.status == 200 && r.region() == Some("northeurope"))
        },
    )
    .await;
    assert!(
        back,
        "served by the region back within seconds, not after its ejection\n{}",
        proxy.logs()
    );
    assert_eq!(active("northeurope").await, Some(true));
}
