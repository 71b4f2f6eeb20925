//! The command line: `check` errors with positions, exit codes, signals, degraded answers.

use std::time::{Duration, Instant};

use switchyard_tests::{FakeRegion, ProxyProcess, TestConfig, free_port, http1_client, run_check};

#[tokio::test]
async fn check_accepts_a_good_config() {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]).render();
    let (code, stdout, stderr) = run_check(&config).await.expect("check runs");
    assert_eq!(code, 0, "stdout: {stdout}\nstderr: {stderr}");
}

#[tokio::test]
async fn check_reports_every_error_with_its_line_and_column() {
    let config = r#"shutdown_grace = "10 seconds"

[[services]]
name = "orders"
listen = "127.0.0.1:8080"
retry_atempts = 3

[services.retry]
max_attempts = 0

[[services.regions]]
name = "westus"
url = "ftp://westus.example.com"
write = true

[[services.regions]]
name = "westus"
url = "http://127.0.0.1:9002"
write = true
"#;
    let (code, _stdout, stderr) = run_check(config).await.expect("check runs");
    assert_eq!(code, 1, "{stderr}");
    let lines: Vec<&str> = stderr.lines().collect();
    let expect = [
        "switchyard.toml:1:18:", // bad duration, at the value
        "switchyard.toml:6:1:",  // unknown key, at the key
        "switchyard.toml:9:16:", // max_attempts out of range, at the value
        "switchyard.toml:13:7:", // bad URL scheme, at the value
        "switchyard.toml:17:8:", // duplicate region name, at the second one
        "switchyard.toml:19:9:", // second write region
    ];
    for prefix in expect {
        assert!(
            lines.iter().any(|l| l.starts_with(prefix)),
            "missing an error at {prefix}\n{stderr}"
        );
    }
    assert!(stderr.contains("retry_atempts"), "{stderr}");
}

#[tokio::test]
async fn check_reports_a_missing_file_and_a_non_loopback_admin_without_token() {
    let config = r#"
[admin]
listen = "0.0.0.0:9901"
token_env = "SWITCHYARD_TEST_TOKEN_THAT_IS_NOT_SET"

[[services]]
name = "orders"
listen = "127.0.0.1:8080"
tls = { cert = "missing.pem", key = "missing.key" }

[[services.regions]]
name = "westus"
url = "http://127.0.0.1:9001"
"#;
    let (code, _stdout, stderr) = run_check(config).await.expect("check runs");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("switchyard.toml:3:10:") && stderr.contains("not loopback"),
        "{stderr}"
    );
    assert!(
        stderr.contains("file not found") && stderr.contains("missing.pem"),
        "{stderr}"
    );
}

/// PEM files that exist but hold no certificate or key are refused by `check` with the
/// position of the `tls` table, and `run` refuses them the same way (exit 1, invalid config),
/// before binding anything.
#[tokio::test]
async fn check_and_run_refuse_tls_files_that_hold_no_certificate() {
    let dir = tempfile::tempdir().expect("temp dir");
    std::fs::write(dir.path().join("not-a-cert.pem"), "hello\n").expect("write");
    let config = format!(
        r#"[admin]
listen = "127.0.0.1:{admin}"
[[services]]
name = "orders"
listen = "127.0.0.1:{port}"
tls = {{ cert = "not-a-cert.pem", key = "not-a-cert.pem" }}
[[services.regions]]
name = "westus"
url = "https://127.0.0.1:9"
tls = {{ ca_file = "not-a-cert.pem" }}
"#,
        admin = free_port(),
        port = free_port()
    );
    let (code, _stdout, stderr) = switchyard_tests::run_check_in(dir.path(), &config)
        .await
        .expect("check runs");
    assert_eq!(code, 1, "{stderr}");
    assert!(
        stderr.contains("switchyard.toml:6:7: listener tls:")
            && stderr.contains("switchyard.toml:10:7: region tls:")
            && stderr.contains("not-a-cert.pem holds no certificate"),
        "{stderr}"
    );
    let out = switchyard_tests::run_command(
        &["run", "--config", "switchyard.toml"],
        dir.path(),
        Duration::from_secs(20),
    )
    .await
    .expect("run runs");
    assert_eq!(out.code, 1, "{}", out.stderr);
    assert!(
        out.stderr.contains("switchyard.toml:6:7: listener tls:"),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn a_taken_port_exits_with_code_2_and_says_why() {
    let taken = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
    let port = taken.local_addr().expect("addr").port();
    let config = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"
[[services]]
name = "orders"
listen = "127.0.0.1:{port}"
[[services.regions]]
name = "westus"
url = "http://127.0.0.1:9"
"#,
        admin = free_port()
    );
    let mut proxy = ProxyProcess::spawn(&config).expect("spawn");
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits");
    assert_eq!(status.code(), Some(2));
    assert!(
        proxy.stderr().contains("address already in use"),
        "{}",
        proxy.logs()
    );
}

#[tokio::test]
async fn sigterm_lets_in_flight_requests_finish_then_exits_0() {
    let west = FakeRegion::new("westus")
        .slow(Duration::from_millis(800))
        .start()
        .await;
    let config = TestConfig::new(&[&west]).service("[services.health]\ninterval = \"30s\"");
    let mut proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    let url = config.url("/slow");
    let in_flight = tokio::spawn(async move { http1_client().get(&url).await });
    assert!(
        west.wait_for_requests(1, Duration::from_secs(5)).await,
        "request reached the region"
    );
    let sent = Instant::now();
    proxy.terminate().expect("SIGTERM");
    let resp = in_flight
        .await
        .expect("task")
        .expect("in-flight request completes");
    assert_eq!(resp.status.as_u16(), 200, "{}", proxy.logs());
    let status = proxy
        .wait_exit(Duration::from_secs(10))
        .await
        .expect("exits");
    assert_eq!(status.code(), Some(0), "{}", proxy.logs());
    assert!(sent.elapsed() < Duration::from_secs(5));
    // Stopped accepting: new connections are refused.
    let after = http1_client()
        .with_timeout(Duration::from_secs(2))
        .get(&config.url("/"))
        .await;
    assert!(after.is_err());
}

#[tokio::test]
async fn no_region_left_gets_the_configured_degraded_answer() {
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let config = TestConfig::new(&[&west, &east]).service(
        r#"
[services.degraded]
status = 503
body = "orders are paused; try again soon"
content_type = "text/plain; charset=utf-8"
retry_after = "20s"
"#,
    );
    let proxy = ProxyProcess::start(&config.render())
        .await
        .expect("proxy starts");
    west.kill().await;
    east.kill().await;
    let started = Instant::now();
    let resp = http1_client()
        .get(&config.url("/orders"))
        .await
        .expect("an answer");
    assert!(started.elapsed() < Duration::from_secs(3), "no hang");
    assert_eq!(resp.status.as_u16(), 503, "{}", proxy.logs());
    assert_eq!(resp.text(), "orders are paused; try again soon");
    assert_eq!(resp.header("retry-after"), Some("20"));
    assert_eq!(
        resp.header("content-type"),
        Some("text/plain; charset=utf-8")
    );
    assert_eq!(resp.header("x-switchyard-degraded"), Some("1"));
    assert!(resp.header("x-switchyard-attempts").is_some());
}

#[tokio::test]
async fn the_shipped_examples_are_valid() {
    let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let out = switchyard_tests::run_command(
        &["check", "--config", "examples/two-regions.toml"],
        &root,
        Duration::from_secs(20),
    )
    .await
    .expect("check runs");
    assert_eq!(out.code, 0, "{}", out.stderr);
    // The HTTPS example names PEM files a reader supplies: those, and only those, are missing.
    let out = switchyard_tests::run_command(
        &["check", "--config", "examples/https-regions.toml"],
        &root,
        Duration::from_secs(20),
    )
    .await
    .expect("check runs");
    assert_eq!(out.code, 1);
    assert!(
        out.stderr.lines().all(|l| l.contains("file not found")),
        "{}",
        out.stderr
    );
}

#[tokio::test]
async fn several_services_run_in_one_process_each_on_its_own_port() {
    let orders = FakeRegion::new("orders-west").start().await;
    let users = FakeRegion::new("users-west").start().await;
    let (admin, p1, p2) = (free_port(), free_port(), free_port());
    let config = format!(
        r#"
[admin]
listen = "127.0.0.1:{admin}"
[[services]]
name = "orders"
listen = "127.0.0.1:{p1}"
[[services.regions]]
name = "west"
url = "{orders}"
[[services]]
name = "users"
listen = "127.0.0.1:{p2}"
[[services.regions]]
name = "west"
url = "{users}"
"#,
        orders = orders.url(),
        users = users.url()
    );
    let proxy = ProxyProcess::start(&config).await.expect("proxy starts");
    let client = http1_client();
    let a = client
        .get(&format!("http://127.0.0.1:{p1}/"))
        .await
        .expect("orders");
    let b = client
        .get(&format!("http://127.0.0.1:{p2}/"))
        .await
        .expect("users");
    assert_eq!(a.fake_region(), Some("orders-west"));
    assert_eq!(b.fake_region(), Some("users-west"));
    let status = proxy.status().await.expect("status");
    assert_eq!(
        status["services"].as_array().map(Vec::len),
        Some(2),
        "{status}"
    );
}

/// A soft open-files limit of a few hundred would cap the sidecar at a few hundred clients;
/// `run` raises it to the hard limit.
#[tokio::test]
async fn run_raises_the_open_files_limit_to_the_hard_limit() {
    let west = FakeRegion::new("westus").start().await;
    let config = TestConfig::new(&[&west]);
    let dir = tempfile::tempdir().expect("temp dir");
    let path = dir.path().join("switchyard.toml");
    std::fs::write(&path, config.render()).expect("write config");
    let bin = switchyard_tests::binary_path().expect("binary");
    let mut child = tokio::process::Command::new("bash")
        .arg("-c")
        .arg(r#"ulimit -Sn 256 && exec "$0" run --config "$1""#)
        .arg(&bin)
        .arg(&path)
        .kill_on_drop(true)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .expect("spawn");
    let pid = child.id().expect("pid");
    let limits = format!("/proc/{pid}/limits");
    let comm = format!("/proc/{pid}/comm");
    let read_soft_hard = || -> Option<(String, String)> {
        // Only once bash has set the low limit and exec'd the sidecar.
        let name = std::fs::read_to_string(&comm).ok()?;
        if name.trim() != "switchyard" {
            return None;
        }
        let text = std::fs::read_to_string(&limits).ok()?;
        let line = text.lines().find(|l| l.starts_with("Max open files"))?;
        let mut fields = line.split_whitespace().skip(3);
        Some((fields.next()?.to_owned(), fields.next()?.to_owned()))
    };
    let raised = switchyard_tests::eventually(
        Duration::from_secs(10),
        Duration::from_millis(50),
        || async { read_soft_hard().is_some_and(|(soft, hard)| soft == hard && soft != "256") },
    )
    .await;
    let seen = read_soft_hard();
    let _ = child.kill().await;
    assert!(raised, "soft limit not raised: {seen:?}");
}
