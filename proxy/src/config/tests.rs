//! Whole-file tests of valid configs: a full round trip, the defaults, the environment, `load`.

#![allow(clippy::unwrap_used)]

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use super::*;

/// A scratch folder holding a config and the files it names; removed on drop.
pub(super) struct Scratch(pub(super) PathBuf);

impl Scratch {
    pub(super) fn new(files: &[&str]) -> Self {
        static NEXT: AtomicUsize = AtomicUsize::new(0);
        let dir = std::env::temp_dir().join(format!(
            "switchyard-config-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::Relaxed)
        ));
        for file in files {
            let path = dir.join(file);
            std::fs::create_dir_all(path.parent().unwrap()).unwrap();
            std::fs::write(path, contents(file)).unwrap();
        }
        std::fs::create_dir_all(&dir).unwrap();
        Self(dir)
    }

    pub(super) fn config(&self) -> PathBuf {
        self.0.join("switchyard.toml")
    }
}

/// What a scratch file holds: TLS files must parse (the config reads them as the proxy will),
/// so `.pem` files get one self-signed certificate and `.key` files its key.
fn contents(file: &str) -> Vec<u8> {
    static PAIR: std::sync::OnceLock<(String, String)> = std::sync::OnceLock::new();
    let (cert, key) = PAIR.get_or_init(|| {
        let pair = rcgen::generate_simple_self_signed(vec!["localhost".to_owned()]).unwrap();
        (pair.cert.pem(), pair.signing_key.serialize_pem())
    });
    match Path::new(file).extension().and_then(|e| e.to_str()) {
        Some("pem") => cert.clone().into_bytes(),
        Some("key") => key.clone().into_bytes(),
        _ => b"x".to_vec(),
    }
}

impl Drop for Scratch {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

pub(super) const MINIMAL: &str = r#"
[[services]]
name = "orders"
listen = "127.0.0.1:8080"

[[services.regions]]
name = "westus"
url = "http://127.0.0.1:9001"
"#;

/// Every diagnostic for `text`, formatted as `check` prints them.
pub(super) fn errors(text: &str) -> Vec<String> {
    match parse(Path::new("sy.toml"), text) {
        Ok(_) => panic!("expected errors for:\n{text}"),
        Err(errors) => errors.0.iter().map(|d| d.to_string()).collect(),
    }
}

#[test]
fn full_config_round_trip() {
    let dir = Scratch::new(&[
        "server.pem",
        "server.key",
        "certs/ca.pem",
        "c.pem",
        "c.key",
        "plugins/rp.wasm",
    ]);
    let text = r#"
shutdown_grace = "30s"
workers = 4

[admin]
listen = "0.0.0.0:9901"
token_env = "MY_TOKEN"

[telemetry]
service_name = "edge"
otlp_endpoint = "http://127.0.0.1:4317"
log_format = "json"

[[services]]
name = "orders"
listen = "127.0.0.1:8080"
request_timeout = "20s"
tls = { cert = "server.pem", key = "server.key" }

[services.health]
path = "/ready?deep=1"
interval = "2s"
timeout = "250ms"
unhealthy_threshold = 3
healthy_threshold = 4
expect_status = "200"

[services.outlier]
consecutive_failures = 5
base_ejection = "10s"
max_ejection = "5m"

[services.failback]
stable_for = "1m"

[services.retry]
max_attempts = 5
per_try_timeout = "750ms"
budget_ratio = 0.5
min_retries_per_sec = 0
retry_on = ["connect-failure", "5xx"]
buffer_body_limit = "1MiB"

[services.degraded]
stale_if_error = "1h"
status = 502
body = "down"
content_type = "application/json"
retry_after = "0s"

[[services.regions]]
name = "northeurope"
priority = 1
url = "http://127.0.0.1:9002/base/"

[[services.regions]]
name = "westus"
priority = 0
url = "https://orders-westus.example.com"
write = true
tls = { ca_file = "certs/ca.pem", client_cert = "c.pem", client_key = "c.key", server_name = "orders.internal" }

[[services.plugins]]
path = "plugins/rp.wasm"
on_error = "fail-closed"
config = { preferred = ["northeurope", "westus"], weight = 2, ratio = 0.5, on = true, since = 1979-05-27T07:32:00Z, nested = { a = 1 } }

[[services]]
name = "users"
listen = "[::1]:8080"

[[services.regions]]
name = "a"
url = "http://[::1]:9000"
"#;
    let env = |name: &str| (name == "MY_TOKEN").then(|| "s3cret".to_owned());
    let config = parse_with_env(&dir.config(), text, &env).unwrap();
    assert_eq!(config.source, dir.config());
    assert_eq!(config.shutdown_grace, Duration::from_secs(30));
    assert_eq!(config.workers, 4);
    assert_eq!(config.admin.listen, "0.0.0.0:9901".parse().unwrap());
    assert_eq!(config.admin.token_env.as_deref(), Some("MY_TOKEN"));
    assert_eq!(config.admin.token.as_deref(), Some("s3cret"));
    assert_eq!(config.telemetry.service_name, "edge");
    assert_eq!(
        config.telemetry.otlp_endpoint.as_deref(),
        Some("http://127.0.0.1:4317")
    );
    assert_eq!(config.telemetry.log_format, LogFormat::Json);
    assert_eq!(config.services.len(), 2);

    let s = &config.services[0];
    assert_eq!(s.name, "orders");
    assert_eq!(s.listen, "127.0.0.1:8080".parse().unwrap());
    assert_eq!(s.request_timeout, Duration::from_secs(20));
    let tls = s.tls.as_ref().unwrap();
    assert_eq!(tls.cert, dir.0.join("server.pem"));
    assert_eq!(tls.key, dir.0.join("server.key"));
    assert_eq!(s.health.path, "/ready?deep=1");
    assert_eq!(s.health.interval, Duration::from_secs(2));
    assert_eq!(s.health.timeout, Duration::from_millis(250));
    assert_eq!(
        (s.health.unhealthy_threshold, s.health.healthy_threshold),
        (3, 4)
    );
    assert_eq!(
        s.health.expect_status,
        StatusRange {
            low: 200,
            high: 200
        }
    );
    assert_eq!(s.outlier.consecutive_failures, 5);
    assert_eq!(s.outlier.base_ejection, Duration::from_secs(10));
    assert_eq!(s.outlier.max_ejection, Duration::from_secs(300));
    assert_eq!(s.failback.stable_for, Duration::from_secs(60));
    assert_eq!(s.retry.max_attempts, 5);
    assert_eq!(s.retry.per_try_timeout, Duration::from_millis(750));
    assert_eq!(s.retry.budget_ratio, 0.5);
    assert_eq!(s.retry.min_retries_per_sec, 0);
    let on = RetryOn {
        connect_failure: true,
        status_5xx: true,
        ..RetryOn::default()
    };
    assert_eq!(s.retry.retry_on, on);
    assert_eq!(s.retry.buffer_body_limit, 1 << 20);
    assert_eq!(s.degraded.stale_if_error, Duration::from_secs(3600));
    assert_eq!(s.degraded.status, http::StatusCode::BAD_GATEWAY);
    assert_eq!(&s.degraded.body[..], b"down");
    assert_eq!(s.degraded.content_type, "application/json");
    assert_eq!(s.degraded.retry_after, Duration::ZERO);

    // Sorted by priority: westus (0) first although written second.
    let names: Vec<_> = s.regions.iter().map(|r| r.name.as_str()).collect();
    assert_eq!(names, ["westus", "northeurope"]);
    let west = &s.regions[0];
    assert!(west.is_https() && west.write);
    assert_eq!(west.authority.as_str(), "orders-westus.example.com");
    assert_eq!(west.base_path, "");
    assert_eq!(west.url, "https://orders-westus.example.com");
    let wtls = west.tls.as_ref().unwrap();
    assert_eq!(
        wtls.ca_file.as_deref(),
        Some(dir.0.join("certs/ca.pem").as_path())
    );
    assert_eq!(
        wtls.client_cert.as_deref(),
        Some(dir.0.join("c.pem").as_path())
    );
    assert_eq!(
        wtls.client_key.as_deref(),
        Some(dir.0.join("c.key").as_path())
    );
    assert_eq!(wtls.server_name.as_deref(), Some("orders.internal"));
    let north = &s.regions[1];
    assert!(!north.is_https() && !north.write && north.tls.is_none());
    assert_eq!((north.priority, north.base_path.as_str()), (1, "/base"));

    let plugin = &s.plugins[0];
    assert_eq!(plugin.path, dir.0.join("plugins/rp.wasm"));
    assert_eq!(plugin.on_error, OnError::FailClosed);
    assert_eq!(
        plugin.config,
        serde_json::json!({
            "preferred": ["northeurope", "westus"], "weight": 2, "ratio": 0.5, "on": true,
            "since": "1979-05-27T07:32:00Z", "nested": {"a": 1}
        })
    );
    assert_eq!(config.services[1].listen, "[::1]:8080".parse().unwrap());
}

#[test]
fn defaults_match_the_spec() {
    let config = parse(Path::new("sy.toml"), MINIMAL).unwrap();
    assert_eq!(config.shutdown_grace, Duration::from_secs(10));
    assert_eq!(config.workers, 0);
    assert_eq!(config.admin.listen, "127.0.0.1:9901".parse().unwrap());
    assert_eq!(
        config.admin.token_env.as_deref(),
        Some("SWITCHYARD_ADMIN_TOKEN")
    );
    assert_eq!(config.admin.token, None);
    assert_eq!(config.telemetry.service_name, "switchyard");
    assert_eq!(config.telemetry.otlp_endpoint, None);
    assert_eq!(config.telemetry.log_format, LogFormat::Text);
    let s = &config.services[0];
    assert_eq!(s.request_timeout, Duration::from_secs(15));
    assert!(s.tls.is_none());
    assert_eq!(s.health.path, "/healthz");
    assert_eq!(s.health.interval, Duration::from_secs(1));
    assert_eq!(s.health.timeout, Duration::from_millis(500));
    assert_eq!(
        (s.health.unhealthy_threshold, s.health.healthy_threshold),
        (2, 2)
    );
    assert_eq!(
        s.health.expect_status,
        StatusRange {
            low: 200,
            high: 399
        }
    );
    assert_eq!(s.outlier.consecutive_failures, 3);
    assert_eq!(s.outlier.base_ejection, Duration::from_secs(5));
    assert_eq!(s.outlier.max_ejection, Duration::from_secs(60));
    assert_eq!(s.failback.stable_for, Duration::from_secs(5));
    assert_eq!(s.retry.max_attempts, 3);
    assert_eq!(s.retry.per_try_timeout, Duration::from_secs(2));
    assert_eq!(s.retry.budget_ratio, 0.2);
    assert_eq!(s.retry.min_retries_per_sec, 10);
    let all = RetryOn {
        connect_failure: true,
        refused_stream: true,
        reset: true,
        timeout: true,
        status_5xx: true,
    };
    assert_eq!(s.retry.retry_on, all);
    assert_eq!(s.retry.buffer_body_limit, 64 * 1024);
    assert_eq!(s.degraded.stale_if_error, Duration::ZERO);
    assert_eq!(s.degraded.status, http::StatusCode::SERVICE_UNAVAILABLE);
    assert!(s.degraded.body.is_empty());
    assert_eq!(s.degraded.content_type, "text/plain");
    assert_eq!(s.degraded.retry_after, Duration::from_secs(30));
    let r = &s.regions[0];
    assert_eq!((r.priority, r.write, r.tls.is_none()), (0, false, true));
    assert!(s.plugins.is_empty());
}

#[test]
fn environment_supplies_token_and_otlp_endpoint() {
    let text = format!("[admin]\nlisten = \"0.0.0.0:9901\"\n{MINIMAL}");
    let env = |name: &str| match name {
        "SWITCHYARD_ADMIN_TOKEN" => Some("t".to_owned()),
        "OTEL_EXPORTER_OTLP_ENDPOINT" => Some("http://collector:4317".to_owned()),
        _ => None,
    };
    let config = parse_with_env(Path::new("sy.toml"), &text, &env).unwrap();
    assert_eq!(config.admin.token.as_deref(), Some("t"));
    assert_eq!(
        config.telemetry.otlp_endpoint.as_deref(),
        Some("http://collector:4317")
    );

    // An empty token is no token.
    let empty = |_: &str| Some(String::new());
    let err = parse_with_env(Path::new("sy.toml"), &text, &empty).unwrap_err();
    assert_eq!(
        err.to_string(),
        "sy.toml:2:10: admin listen 0.0.0.0:9901 is not loopback: the variable SWITCHYARD_ADMIN_TOKEN (token_env) is unset or empty; set it to a bearer token\n"
    );
}

#[test]
fn load_reports_unreadable_files() {
    let dir = Scratch::new(&[]);
    let err = load(&dir.config()).unwrap_err();
    assert_eq!(err.0.len(), 1);
    assert!(err.to_string().contains("cannot read config file"), "{err}");

    std::fs::write(dir.config(), b"workers = 1\nx = \"\xff\"\n").unwrap();
    let err = load(&dir.config()).unwrap_err();
    assert_eq!((err.0[0].line, err.0[0].column), (2, 6));

    std::fs::write(dir.config(), MINIMAL).unwrap();
    assert_eq!(load(&dir.config()).unwrap().services[0].name, "orders");
}
