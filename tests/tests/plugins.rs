//! WebAssembly policy plugins through the real proxy, with the real built components: the three
//! shipped plugins, chains, every limit obeyed and enforced, `switchyard check`, and reload.
//!
//! Plugins are built for wasm32-wasip2 on first use (`switchyard_tests::plugin`).

use std::path::PathBuf;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use switchyard_tests::{
    FakeRegion, ProxyProcess, TestConfig, TestResponse, copy_plugin, eventually, http1_client,
    plugin, run_check_in,
};
use tokio::sync::watch;

fn wasm(name: &str) -> PathBuf {
    plugin(name).expect("plugin components build")
}

async fn two_regions() -> (FakeRegion, FakeRegion) {
    (
        FakeRegion::new("westus").start().await,
        FakeRegion::new("northeurope").start().await,
    )
}

async fn get(config: &TestConfig, path: &str, headers: &[(&str, &str)]) -> TestResponse {
    http1_client()
        .get_with(&config.url(path), headers)
        .await
        .expect("GET")
}

async fn post(config: &TestConfig, path: &str, headers: &[(&str, &str)]) -> TestResponse {
    http1_client()
        .post(&config.url(path), "{}", headers)
        .await
        .expect("POST")
}

/// Waits until `/status` shows `region` of `orders` in `state`.
async fn wait_state(proxy: &ProxyProcess, region: &str, state: &str) {
    let reached = proxy.reaches_state("orders", region, state).await;
    assert!(reached, "{region} never became {state}\n{}", proxy.logs());
}

/// The value of a metric line starting with `prefix` in `/metrics`.
async fn metric(proxy: &ProxyProcess, prefix: &str) -> Option<f64> {
    let text = proxy.metrics().await.ok()?;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn read_preference_prefers_healthy_regions_for_reads_and_leaves_writes_alone() {
    let (west, east) = two_regions().await;
    let config = TestConfig::new(&[&west, &east]).plugin(
        &wasm("read_preference"),
        "fail-closed",
        r#"{ preferred = ["northeurope"] }"#,
    );
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");

    let read = get(&config, "/orders/1", &[]).await;
    assert_eq!(read.region(), Some("northeurope"), "{}", proxy.logs());
    assert_eq!(read.fake_region(), Some("northeurope"));
    let head = http1_client()
        .request(http::Method::HEAD, &config.url("/orders/1"), &[], "")
        .await
        .expect("HEAD");
    assert_eq!(head.region(), Some("northeurope"));
    let write = post(&config, "/orders", &[]).await;
    assert_eq!(
        write.region(),
        Some("westus"),
        "writes keep default routing"
    );

    // The preferred region goes down: reads fall back (first by retry, then by health).
    east.kill().await;
    let fallback = get(&config, "/orders/2", &[]).await;
    assert_eq!(fallback.status, 200);
    assert_eq!(fallback.region(), Some("westus"));
    wait_state(&proxy, "northeurope", "unhealthy").await;
    let read = get(&config, "/orders/3", &[]).await;
    assert_eq!(
        (read.region(), read.header("x-switchyard-attempts")),
        (Some("westus"), Some("1")),
        "an unhealthy preferred region is skipped outright"
    );

    east.restart().await;
    wait_state(&proxy, "northeurope", "healthy").await;
    assert_eq!(
        get(&config, "/orders/4", &[]).await.region(),
        Some("northeurope")
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_pinning_follows_a_manual_failover_and_reads_follow_a_sessions_writes() {
    let (west, east) = two_regions().await;
    let config = TestConfig::new(&[&west, &east]).plugin(
        &wasm("write_pinning"),
        "fail-closed",
        r#"{ session_header = "x-session-id", read_your_writes = "5s" }"#,
    );
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");

    assert_eq!(post(&config, "/orders", &[]).await.region(), Some("westus"));
    let moved = proxy
        .admin_post(
            "/services/orders/failover",
            r#"{"write_region": "northeurope"}"#,
        )
        .await
        .expect("failover");
    assert_eq!(moved.status, 200, "{}", moved.text());
    let pinned = eventually(
        Duration::from_secs(5),
        Duration::from_millis(20),
        || async { post(&config, "/orders", &[]).await.region() == Some("northeurope") },
    )
    .await;
    assert!(pinned, "writes follow the write region\n{}", proxy.logs());
    let west_writes = west.requests_for("POST");
    assert_eq!(
        get(&config, "/orders", &[]).await.region(),
        Some("westus"),
        "reads without a session keep priority routing"
    );

    // Read-your-writes: a session's reads follow its last write, other sessions do not.
    let session = [("x-session-id", "alice")];
    let w = post(&config, "/orders/7", &session).await;
    assert_eq!(w.region(), Some("northeurope"));
    for _ in 0..5 {
        let r = get(&config, "/orders/7", &session).await;
        assert_eq!(r.region(), Some("northeurope"), "alice reads her write");
    }
    let other = get(&config, "/orders/7", &[("x-session-id", "bob")]).await;
    assert_eq!(other.region(), Some("westus"));
    assert_eq!(
        west.requests_for("POST"),
        west_writes,
        "no write lands on westus once northeurope is the write region"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn write_pinning_refuses_writes_without_a_write_region_unless_promotion_is_on() {
    let (west, east) = two_regions().await;
    let refuse = TestConfig::new(&[&west, &east]).plugin(
        &wasm("write_pinning"),
        "fail-closed",
        "{ promote_on_failure = false }",
    );
    let promote = TestConfig::new(&[&west, &east]).plugin(
        &wasm("write_pinning"),
        "fail-closed",
        "{ promote_on_failure = true }",
    );
    let p1 = ProxyProcess::start(&refuse.render())
        .await
        .expect("proxy starts");
    let p2 = ProxyProcess::start(&promote.render())
        .await
        .expect("proxy starts");

    west.kill().await;
    wait_state(&p1, "westus", "unhealthy").await;
    wait_state(&p2, "westus", "unhealthy").await;

    let before = east.requests();
    let refused = post(&refuse, "/orders", &[]).await;
    assert_eq!(refused.status, 503, "{}", p1.logs());
    assert_eq!(refused.text(), "write region westus is unavailable");
    assert_eq!(refused.header("x-switchyard-degraded"), Some("1"));
    assert_eq!(refused.region(), Some("none"));
    assert_eq!(east.requests(), before, "a refused write reaches no region");
    assert_eq!(
        get(&refuse, "/orders", &[]).await.region(),
        Some("northeurope")
    );

    let promoted = post(&promote, "/orders", &[]).await;
    assert_eq!(promoted.status, 200, "{}", p2.logs());
    assert_eq!(promoted.region(), Some("northeurope"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn degraded_mode_answers_per_prefix_when_no_region_can_serve() {
    let (west, east) = two_regions().await;
    let config = TestConfig::new(&[&west, &east]).plugin(
        &wasm("degraded_mode"),
        "fail-closed",
        r#"{ rules = [
            { prefix = "/orders", status = 503, body = "ordering is temporarily unavailable" },
            { prefix = "/orders/export", status = 200, body = "{}", content_type = "application/json" },
        ] }"#,
    );
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let up = get(&config, "/orders/1", &[]).await;
    assert_eq!((up.status.as_u16(), up.region()), (200, Some("westus")));

    west.kill().await;
    east.kill().await;
    let orders = get(&config, "/orders/1", &[]).await;
    assert_eq!(orders.status, 503, "{}", proxy.logs());
    assert_eq!(orders.text(), "ordering is temporarily unavailable");
    assert_eq!(orders.header("x-switchyard-degraded"), Some("1"));
    assert_eq!(orders.header("content-type"), Some("text/plain"));
    let export = get(&config, "/orders/export/today", &[]).await;
    assert_eq!(
        (export.status.as_u16(), export.text().as_str()),
        (200, "{}")
    );
    assert_eq!(export.header("content-type"), Some("application/json"));
    assert_eq!(export.header("x-switchyard-degraded"), Some("1"));
    let other = get(&config, "/users/1", &[]).await;
    assert_eq!(other.header("x-switchyard-degraded"), Some("1"));
    assert_ne!(other.text(), "ordering is temporarily unavailable");
    assert!(
        other.header("x-switchyard-error").is_some(),
        "an unmatched path gets the service's own degraded answer"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plugins_run_in_order_and_the_first_non_default_decision_wins() {
    let (west, east) = two_regions().await;
    let decider = wasm("decider");
    let config = TestConfig::new(&[&west, &east])
        .plugin(
            &decider,
            "fail-closed",
            r#"{ decision = "local:200:first", only_path = "/a" }"#,
        )
        .plugin(
            &decider,
            "fail-closed",
            r#"{ decision = "pin:northeurope", only_path = "/b" }"#,
        )
        .plugin(
            &decider,
            "fail-closed",
            r#"{ decision = "local:200:x", echo_header = "x-who" }"#,
        );
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");

    let a = get(&config, "/a", &[]).await;
    assert_eq!(
        (a.status.as_u16(), a.text().as_str()),
        (200, "first"),
        "{}",
        proxy.logs()
    );
    assert_eq!(a.region(), Some("none"));
    assert_eq!(
        a.header("x-switchyard-degraded"),
        Some("1"),
        "made by the sidecar"
    );
    let b = get(&config, "/b", &[]).await;
    assert_eq!(
        b.region(),
        Some("northeurope"),
        "the first plugin said default"
    );
    let c = get(&config, "/c", &[("X-Who", "carol")]).await;
    assert_eq!(c.text(), "carol", "the last plugin reads a header lazily");
    assert_eq!(west.requests() + east.requests(), 1);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn on_response_adds_headers_but_not_the_hosts_and_counters_become_metrics() {
    let (west, east) = two_regions().await;
    let config = TestConfig::new(&[&west, &east]).plugin(
        &wasm("decider"),
        "fail-closed",
        r#"{ decision = "default", stamp = "x-seen-by" }"#,
    );
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    for _ in 0..3 {
        let r = get(&config, "/orders/1", &[]).await;
        assert_eq!(r.status.as_u16(), 200, "{}", proxy.logs());
        assert_eq!(r.header("x-seen-by"), Some("westus"));
        assert_eq!(
            r.region(),
            Some("westus"),
            "x-switchyard-region is the host's"
        );
    }
    let counted = metric(
        &proxy,
        r#"switchyard_plugin_counter_total{service="orders",plugin="decider",name="stamped"}"#,
    )
    .await;
    assert_eq!(
        counted,
        Some(3.0),
        "{}",
        proxy.metrics().await.unwrap_or_default()
    );
}

/// A proxy with one plugin in front of two healthy regions.
async fn one_plugin(
    name: &str,
    on_error: &str,
    config: &str,
) -> (FakeRegion, FakeRegion, TestConfig, ProxyProcess) {
    let (west, east) = two_regions().await;
    let cfg = TestConfig::new(&[&west, &east]).plugin(&wasm(name), on_error, config);
    let proxy = ProxyProcess::start(&cfg.render())
        .await
        .expect("proxy starts");
    (west, east, cfg, proxy)
}

/// The fault pair of one limit: fail-open routes as if there were no plugin, fail-closed
/// answers 503 `x-switchyard-error: plugin`; both count the fault and keep serving.
async fn fault_is_contained(name: &str, config: &str, kind: &str) {
    let (_w, _e, open, p_open) = one_plugin(name, "fail-open", config).await;
    for i in 0..3 {
        let r = get(&open, &format!("/orders/{i}"), &[]).await;
        assert_eq!(r.status, 200, "{name} fail-open\n{}", p_open.logs());
        assert_eq!(r.region(), Some("westus"));
    }
    let counted = metric(
        &p_open,
        &format!("switchyard_plugin_errors_total{{plugin=\"{name}\",kind=\"{kind}\"}}"),
    )
    .await;
    assert!(
        counted >= Some(3.0),
        "{name}: {kind} faults counted: {counted:?}\n{}",
        p_open.metrics().await.unwrap_or_default()
    );
    assert!(
        p_open.stderr().contains("plugin failed"),
        "{name}: the fault is logged"
    );
    assert_eq!(
        p_open.stderr().matches("plugin failed: ").count(),
        1,
        "{name}: three faults in a row are one log line (rate-limited), not three\n{}",
        p_open.stderr()
    );

    let (west, east, closed, p_closed) = one_plugin(name, "fail-closed", config).await;
    for i in 0..3 {
        let r = get(&closed, &format!("/orders/{i}"), &[]).await;
        assert_eq!(r.status, 503, "{name} fail-closed\n{}", p_closed.logs());
        assert_eq!(r.header("x-switchyard-error"), Some("plugin"));
    }
    assert_eq!(
        west.requests() + east.requests(),
        0,
        "a refused request reaches no region"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_infinite_loop_hits_the_deadline_and_a_bounded_loop_does_not() {
    fault_is_contained("spin", "{}", "deadline").await;
    // Stopped after the 10 ms deadline plus at most 10 ms of CPU time, not much later.
    let (_w, _e, cfg, proxy) = one_plugin("spin", "fail-open", "{}").await;
    let started = Instant::now();
    let r = get(&cfg, "/", &[]).await;
    let took = started.elapsed();
    assert_eq!(r.region(), Some("westus"), "{}", proxy.logs());
    assert!(
        took < Duration::from_millis(500),
        "a spinning plugin held the request {took:?}"
    );

    let (w, e, cfg, proxy) = one_plugin("spin", "fail-closed", "{ iterations = 100000 }").await;
    for _ in 0..20 {
        let r = get(&cfg, "/", &[]).await;
        assert_eq!(r.status, 200, "{}", proxy.logs());
        assert!(r.text().starts_with("spun 100000"));
    }
    assert_eq!(w.requests() + e.requests(), 0);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_1_gib_allocation_hits_the_memory_cap_and_1_mib_does_not() {
    fault_is_contained("hog", "{ bytes = 1073741824 }", "memory").await;
    let (_w, _e, cfg, proxy) = one_plugin("hog", "fail-closed", "{ bytes = 1048576 }").await;
    for _ in 0..20 {
        let r = get(&cfg, "/", &[]).await;
        assert_eq!(r.status, 200, "{}", proxy.logs());
        assert!(r.text().starts_with("allocated 1048576"));
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_panic_traps_is_logged_and_replaced_and_a_calm_plugin_answers() {
    fault_is_contained("panicker", "{ panic = true }", "trap").await;
    let (_w, _e, cfg, proxy) = one_plugin("panicker", "fail-open", "{ panic = true }").await;
    get(&cfg, "/boom", &[]).await;
    let logged = eventually(
        Duration::from_secs(2),
        Duration::from_millis(20),
        || async { proxy.stderr().contains("panicker: refusing /boom") },
    )
    .await;
    assert!(
        logged,
        "the panic message reaches the log\n{}",
        proxy.logs()
    );

    let (_w, _e, cfg, proxy) = one_plugin("panicker", "fail-closed", "{ panic = false }").await;
    for _ in 0..20 {
        let r = get(&cfg, "/", &[]).await;
        assert_eq!(
            (r.status.as_u16(), r.text().as_str()),
            (200, "calm"),
            "{}",
            proxy.logs()
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_decision_naming_an_unknown_region_is_a_plugin_error() {
    fault_is_contained(
        "decider",
        r#"{ decision = "pin:atlantis" }"#,
        "bad-decision",
    )
    .await;
    let (_w, _e, cfg, proxy) = one_plugin(
        "decider",
        "fail-open",
        r#"{ decision = "prefer:northeurope,mars" }"#,
    )
    .await;
    let r = get(&cfg, "/", &[]).await;
    assert_eq!(
        (r.status.as_u16(), r.region()),
        (200, Some("westus")),
        "{}",
        proxy.logs()
    );
    let (_w, _e, cfg, _proxy) =
        one_plugin("decider", "fail-closed", r#"{ decision = "local:42:bad" }"#).await;
    let r = get(&cfg, "/", &[]).await;
    assert_eq!(r.status, 503, "status 42 is a bad decision");
    assert_eq!(r.header("x-switchyard-error"), Some("plugin"));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn check_reports_garbage_wrong_worlds_and_failing_inits_at_their_config_entry() {
    let dir = ProxyProcess::new_dir().expect("temp dir");
    std::fs::write(dir.path().join("garbage.wasm"), b"this is not wasm").expect("write");
    let command = copy_plugin("command", dir.path(), "command.wasm").expect("copy");
    let refuses = copy_plugin("init_fail", dir.path(), "refuses.wasm").expect("copy");
    let good = copy_plugin("read_preference", dir.path(), "good.wasm").expect("copy");
    // A component header and then nothing whole: found by the compiler (a child process).
    let truncated = dir.path().join("truncated.wasm");
    let good_bytes = std::fs::read(&good).expect("read");
    std::fs::write(&truncated, &good_bytes[..good_bytes.len() / 2]).expect("write");
    let (west, east) = two_regions().await;
    let config = TestConfig::new(&[&west, &east])
        .plugin(&dir.path().join("garbage.wasm"), "fail-open", "{}")
        .plugin(&truncated, "fail-open", "{}")
        .plugin(&command, "fail-open", "{}")
        .plugin(&refuses, "fail-open", r#"{ why = "testing" }"#)
        .plugin(&good, "fail-open", r#"{ preferred = ["westus"] }"#);
    let (code, stdout, stderr) = run_check_in(dir.path(), &config.render())
        .await
        .expect("check runs");
    assert_eq!(code, 1, "stdout: {stdout}\nstderr: {stderr}");
    let garbage = dir.path().join("garbage.wasm");
    let text = config.render();
    let expected = [
        format!(
            "{}: plugin {}: not a WebAssembly component (no WebAssembly header: garbage or truncated)",
            entry(&text, &garbage),
            garbage.display()
        ),
        format!(
            "{}: plugin {}: not a plugin for switchyard:policy/policy@0.1.0: no exported instance named `switchyard:policy/plugin@0.1.0`",
            entry(&text, &command),
            command.display()
        ),
        format!(
            "{}: plugin {}: init failed: this plugin refuses every config (testing)",
            entry(&text, &refuses),
            refuses.display()
        ),
    ];
    let mut lines: Vec<&str> = stderr.lines().collect();
    let compiler_said = format!(
        "{}: plugin {}: not a valid WebAssembly component: ",
        entry(&text, &truncated),
        truncated.display()
    );
    assert!(
        lines.len() == 4 && lines[1].starts_with(&compiler_said) && lines[1].len() < 300,
        "stderr:\n{stderr}"
    );
    lines.remove(1);
    assert_eq!(lines, expected, "stderr:\n{stderr}");

    let ok = TestConfig::new(&[&west, &east]).plugin(
        &good,
        "fail-open",
        r#"{ preferred = ["westus"] }"#,
    );
    let (code, stdout, stderr) = run_check_in(dir.path(), &ok.render())
        .await
        .expect("check runs");
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");

    let bad_config =
        TestConfig::new(&[&west, &east]).plugin(&good, "fail-open", "{ preferred = [] }");
    let (code, _, stderr) = run_check_in(dir.path(), &bad_config.render())
        .await
        .expect("check runs");
    assert_eq!(code, 1);
    assert_eq!(
        stderr.trim_end(),
        format!(
            "{}: plugin {}: init failed: preferred must name at least one region",
            entry(&bad_config.render(), &good),
            good.display()
        )
    );
    // Mistakes elsewhere in the file do not hide the plugin's: one run reports every error,
    // in file order.
    let also_typo = bad_config
        .render()
        .replace("[admin]\n", "colour = \"red\"\n[admin]\n");
    let (code, _, stderr) = run_check_in(dir.path(), &also_typo)
        .await
        .expect("check runs");
    assert_eq!(code, 1);
    let lines: Vec<&str> = stderr.lines().collect();
    assert!(
        lines.len() == 2
            && lines[0].contains("unknown key \"colour\"")
            && lines[1].starts_with(&format!("{}: plugin ", entry(&also_typo, &good)))
            && lines[1].ends_with("preferred must name at least one region"),
        "stderr:\n{stderr}"
    );
    // During init a plugin sees the service's regions, so a typo in a region name is caught.
    let typo = TestConfig::new(&[&west, &east]).plugin(
        &good,
        "fail-open",
        r#"{ preferred = ["northeurope", "westsu"] }"#,
    );
    let (code, _, stderr) = run_check_in(dir.path(), &typo.render())
        .await
        .expect("check runs");
    assert_eq!(code, 1);
    assert!(
        stderr.contains(
            "init failed: preferred names region \"westsu\", which the service does not have (it has westus, northeurope)"
        ),
        "{stderr}"
    );
    // A proxy refuses to start with a failing plugin, with exit code 1.
    let mut proxy = ProxyProcess::spawn(&bad_config.render()).expect("spawn");
    let status = proxy
        .wait_exit(Duration::from_secs(20))
        .await
        .expect("exits");
    assert_eq!(status.code(), Some(1), "{}", proxy.logs());
    assert!(
        proxy
            .stderr()
            .contains("preferred must name at least one region")
    );
}

/// Two regions and the decider plugin, copied in as `policy.wasm` (the file a reload test
/// replaces) with `config`, fail-closed.
async fn decider_as_policy_wasm(
    config: &str,
) -> (FakeRegion, FakeRegion, TestConfig, ProxyProcess, PathBuf) {
    let (west, east) = two_regions().await;
    let dir = ProxyProcess::new_dir().expect("temp dir");
    let file = copy_plugin("decider", dir.path(), "policy.wasm").expect("copy");
    let test_config = TestConfig::new(&[&west, &east]).plugin(&file, "fail-closed", config);
    let proxy = ProxyProcess::builder(&test_config.render())
        .dir(dir)
        .start()
        .await
        .expect("proxy starts");
    (west, east, test_config, proxy, file)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn reload_picks_up_a_changed_plugin_file_under_load_without_failing_a_request() {
    // One config both components accept: decider reads `decision`, spin reads `iterations`.
    let (west, east, config, proxy, file) =
        decider_as_policy_wasm(r#"{ decision = "local:200:before", iterations = 1000 }"#).await;
    assert_eq!(get(&config, "/", &[]).await.text(), "before");

    let (stop_tx, stop) = watch::channel(false);
    let seen: Arc<Mutex<Vec<(u16, String)>>> = Arc::default();
    let mut clients = Vec::new();
    for _ in 0..4 {
        let (url, seen, stop) = (config.url("/orders"), seen.clone(), stop.clone());
        clients.push(tokio::spawn(async move {
            let client = http1_client().with_timeout(Duration::from_secs(10));
            let started = Instant::now();
            for _ in 0..20_000 {
                if *stop.borrow() || started.elapsed() > Duration::from_secs(30) {
                    break;
                }
                let seen_one = match client.get(&url).await {
                    Ok(r) => (r.status.as_u16(), r.text()),
                    Err(e) => (0, format!("{e:#}")),
                };
                seen.lock().expect("lock").push(seen_one);
                tokio::time::sleep(Duration::from_millis(1)).await;
            }
        }));
    }
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Replace the file atomically, as a deploy would, then reload.
    let staged = proxy.dir().join("policy.wasm.new");
    std::fs::copy(wasm("spin"), &staged).expect("stage");
    std::fs::rename(&staged, &file).expect("swap");
    let reloaded = proxy.admin_post("/reload", "").await.expect("reload");
    assert_eq!(
        reloaded.status,
        200,
        "{}\n{}",
        reloaded.text(),
        proxy.logs()
    );
    let switched = eventually(Duration::from_secs(5), Duration::from_millis(20), || {
        let seen = seen.clone();
        async move {
            seen.lock()
                .expect("lock")
                .iter()
                .rev()
                .take(8)
                .all(|(_, b)| b.starts_with("spun 1000"))
        }
    })
    .await;
    tokio::time::sleep(Duration::from_millis(200)).await;
    let _ = stop_tx.send(true);
    for c in clients {
        let _ = c.await;
    }
    let seen = seen.lock().expect("lock").clone();
    assert!(
        switched,
        "responses come from the new component after reload\n{}",
        proxy.logs()
    );
    let failed: Vec<_> = seen.iter().filter(|(s, _)| *s != 200).collect();
    assert!(
        failed.is_empty(),
        "{} of {} failed: {:?}",
        failed.len(),
        seen.len(),
        failed.first()
    );
    assert!(seen.iter().any(|(_, b)| b == "before"));
    assert!(
        seen.len() > 100,
        "enough traffic to mean something: {}",
        seen.len()
    );
    assert_eq!(west.requests() + east.requests(), 0);
}

/// A reload whose plugin refuses its `init` is refused, the running plugin keeps answering,
/// and the refusal is counted as `kind="init"`: before, a rollout of a bad plugin config by
/// SIGHUP showed only in the log (round 12).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_reload_refused_by_a_plugin_s_init_is_counted_and_keeps_the_running_plugin() {
    let (_west, _east, config, proxy, file) =
        decider_as_policy_wasm(r#"{ decision = "local:200:before" }"#).await;
    let init_errors = "switchyard_plugin_errors_total{plugin=\"policy\",kind=\"init\"}";
    assert_eq!(metric(&proxy, init_errors).await, Some(0.0));

    let staged = proxy.dir().join("policy.wasm.new");
    std::fs::copy(wasm("init_fail"), &staged).expect("stage");
    std::fs::rename(&staged, &file).expect("swap");
    let reloaded = proxy.admin_post("/reload", "").await.expect("reload");
    assert_eq!(reloaded.status, 400, "{}", reloaded.text());
    assert!(
        reloaded.text().contains("refuses every config"),
        "{}",
        reloaded.text()
    );

    assert_eq!(get(&config, "/", &[]).await.text(), "before");
    assert_eq!(
        metric(&proxy, init_errors).await,
        Some(1.0),
        "{}",
        proxy.logs()
    );
}

/// `switchyard.toml:LINE:COL` of the `path` value of the plugin entry for `file` in `config`.
fn entry(config: &str, file: &std::path::Path) -> String {
    let line = format!("path = {:?}", file.display().to_string());
    let number = config
        .lines()
        .position(|l| l == line)
        .expect("the plugin's path line");
    format!("switchyard.toml:{}:8", number + 1)
}

/// A request answered without being forwarded (here a plugin's local answer to a POST) leaves
/// the client's keep-alive connection usable: the body, which a client may send a moment after
/// the head, is read and discarded, so the next request on the connection is answered instead
/// of finding the connection closed (a client cannot safely resend a POST that met a closed
/// connection).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_answer_to_a_post_keeps_the_clients_connection_open() {
    use tokio::io::AsyncWriteExt;

    let (_w, _e, cfg, proxy) = one_plugin(
        "decider",
        "fail-open",
        r#"{ decision = "local:503:down", only_path = "/orders" }"#,
    )
    .await;
    let mut conn = tokio::net::TcpStream::connect(cfg.addr())
        .await
        .expect("connect");
    conn.write_all(b"POST /orders HTTP/1.1\r\nHost: sidecar\r\nContent-Length: 5\r\n\r\n")
        .await
        .expect("write head");
    // The body follows the head a moment later, as from a client that writes them apart.
    tokio::time::sleep(Duration::from_millis(100)).await;
    conn.write_all(b"hello").await.expect("write body");
    conn.write_all(b"GET /next HTTP/1.1\r\nHost: sidecar\r\n\r\n")
        .await
        .expect("write next request");
    let answers = switchyard_tests::read_until(&mut conn, Duration::from_secs(5), |got| {
        got.contains("http/1.1 200")
    })
    .await;
    assert!(answers.starts_with("http/1.1 503"), "{answers}");
    assert!(
        answers.contains("http/1.1 200"),
        "the next request on the connection was answered:\n{answers}\n{}",
        proxy.logs()
    );

    // A body that does not come (or is too large to throw away): the answer says the
    // connection closes, instead of closing it unannounced.
    let request = b"POST /orders HTTP/1.1\r\nHost: sidecar\r\nContent-Length: 1000000\r\n\r\n";
    let answer = switchyard_tests::raw_http(cfg.addr(), request)
        .await
        .expect("an answer");
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    assert!(
        answer.to_ascii_lowercase().contains("connection: close"),
        "{answer}"
    );
}
