//! The validated configuration: what the rest of the proxy consumes.
//!
//! Every value here has passed validation in `config::load`; runtime code never re-checks it
//! and never panics on it. Relative paths are already resolved against the config file's folder.

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use bytes::Bytes;
use http::StatusCode;
use http::uri::{Authority, Scheme};

/// The whole file, validated.
#[derive(Debug, Clone)]
pub struct Config {
    /// Where the config was read from; reload reads the same file again.
    pub source: PathBuf,
    /// How long in-flight requests may run after a stop signal.
    pub shutdown_grace: Duration,
    /// Runtime worker threads; 0 means one per core.
    pub workers: usize,
    pub admin: AdminConfig,
    pub telemetry: TelemetryConfig,
    pub services: Vec<ServiceConfig>,
}

#[derive(Debug, Clone)]
pub struct AdminConfig {
    pub listen: SocketAddr,
    /// Name of the environment variable holding the bearer token.
    pub token_env: Option<String>,
    /// The token read from `token_env` at load time; `None` or empty means no auth required.
    pub token: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LogFormat {
    Text,
    Json,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TelemetryConfig {
    pub service_name: String,
    pub otlp_endpoint: Option<String>,
    pub log_format: LogFormat,
}

#[derive(Debug, Clone)]
pub struct ServiceConfig {
    pub name: String,
    pub listen: SocketAddr,
    /// Bounds the whole request (all attempts) until response headers arrive.
    pub request_timeout: Duration,
    pub tls: Option<ServerTls>,
    pub health: HealthConfig,
    pub outlier: OutlierConfig,
    pub failback: FailbackConfig,
    pub retry: RetryConfig,
    pub degraded: DegradedConfig,
    /// Sorted by priority (lowest number first), ties in file order.
    pub regions: Vec<RegionConfig>,
    pub plugins: Vec<PluginConfig>,
}

#[derive(Debug, Clone)]
pub struct ServerTls {
    pub cert: PathBuf,
    pub key: PathBuf,
}

#[derive(Debug, Clone)]
pub struct HealthConfig {
    /// Path (with optional query) probed on every region.
    pub path: String,
    pub interval: Duration,
    pub timeout: Duration,
    pub unhealthy_threshold: u32,
    pub healthy_threshold: u32,
    pub expect_status: StatusRange,
}

/// An inclusive range of acceptable status codes, e.g. `200-399`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct StatusRange {
    pub low: u16,
    pub high: u16,
}

impl StatusRange {
    pub fn contains(&self, status: StatusCode) -> bool {
        (self.low..=self.high).contains(&status.as_u16())
    }
}

#[derive(Debug, Clone)]
pub struct OutlierConfig {
    /// Consecutive failed attempts (connect errors, resets, timeouts, 5xx) that eject a region.
    pub consecutive_failures: u32,
    pub base_ejection: Duration,
    pub max_ejection: Duration,
}

#[derive(Debug, Clone)]
pub struct FailbackConfig {
    /// How long a recovered higher-priority region must stay healthy before it serves again.
    pub stable_for: Duration,
}

/// Which failures an attempt may be retried on (SPEC section 3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct RetryOn {
    pub connect_failure: bool,
    pub refused_stream: bool,
    pub reset: bool,
    pub timeout: bool,
    pub status_5xx: bool,
}

#[derive(Debug, Clone)]
pub struct RetryConfig {
    /// Total attempts, the first included; at least 1.
    pub max_attempts: u32,
    pub per_try_timeout: Duration,
    pub budget_ratio: f64,
    pub min_retries_per_sec: u32,
    pub retry_on: RetryOn,
    /// Request bodies up to this many bytes are buffered so they can be replayed.
    pub buffer_body_limit: usize,
}

#[derive(Debug, Clone)]
pub struct DegradedConfig {
    /// Zero disables the stale-if-error cache.
    pub stale_if_error: Duration,
    pub status: StatusCode,
    pub body: Bytes,
    pub content_type: String,
    /// Zero omits `Retry-After`.
    pub retry_after: Duration,
}

#[derive(Debug, Clone)]
pub struct RegionConfig {
    pub name: String,
    pub priority: u32,
    pub scheme: Scheme,
    pub authority: Authority,
    /// Path prefix from the URL without a trailing slash ("" when the URL has none).
    pub base_path: String,
    /// The URL as written, for logs and status.
    pub url: String,
    pub write: bool,
    pub tls: Option<UpstreamTls>,
}

impl RegionConfig {
    pub fn is_https(&self) -> bool {
        self.scheme == Scheme::HTTPS
    }
}

#[derive(Debug, Clone, Default)]
pub struct UpstreamTls {
    pub ca_file: Option<PathBuf>,
    pub client_cert: Option<PathBuf>,
    pub client_key: Option<PathBuf>,
    /// SNI and verification name; defaults to the URL's host.
    pub server_name: Option<String>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OnError {
    FailOpen,
    FailClosed,
}

#[derive(Debug, Clone)]
pub struct PluginConfig {
    pub path: PathBuf,
    pub on_error: OnError,
    /// The plugin's `config` table, handed to its `init` as JSON.
    pub config: serde_json::Value,
    /// Where the entry's `path` is written, for errors found when the plugin is loaded.
    pub at: Option<super::SourcePos>,
}
