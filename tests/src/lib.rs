//! Black-box test harness for Switchyard: fake regions, the real binary, and test clients.
//!
//! # Layout
//!
//! - [`fake_region`]: `FakeRegion`, a real HTTP/1.1 + HTTP/2 (+ TLS, WebSocket) server on
//!   127.0.0.1 whose failure mode a test switches at runtime, and which counts and logs what
//!   it received.
//! - [`otlp`]: `FakeCollector`, an OTLP trace receiver (gRPC or HTTP) that keeps the spans.
//! - [`pki`]: `TestPki`, a throwaway CA with server and client certificates as PEM files.
//! - [`plugins`]: the plugin components (shipped and fault-test ones), built once per process.
//! - [`prometheus`]: `Scrape`, `/metrics` parsed strictly as Prometheus text.
//! - [`proxy`]: `ProxyProcess`, the `switchyard` binary run as a child with a temp-dir config.
//! - [`cli`]: where the binary is, and one-shot commands (`run_check`, `run_command`).
//! - [`configs`]: `TestConfig`, one service in front of fake regions with fast timers.
//! - [`template`]: `free_port` and `render` for configs with `{placeholder}`s.
//! - [`client`]: HTTP/1.1, h2c and HTTPS test clients, and `raw_http` for malformed requests.
//! - [`keep_alive_region`]: `KeepAliveRegion`, a region with a 1 s keep-alive timeout that it
//!   announces and enforces.
//! - [`raw_region`]: `RawRegion`, a region that answers with bytes that are not HTTP.
//! - [`silent_port`]: `SilentPort`, a port whose SYNs go unanswered, as a blackholed address.
//! - [`wait`]: bounded polling for conditions such as "the region shows as ejected".
//!
//! Everything binds and connects to 127.0.0.1 only, and every wait is bounded.
//!
//! The proxy runs as the real binary, which this crate does not build: run
//! `cargo build -p switchyard` before `cargo test -p switchyard-tests` (or set `SWITCHYARD_BIN`).
//!
//! ```ignore
//! let west = FakeRegion::new("westus").start().await;
//! let eu = FakeRegion::new("northeurope").start().await;
//! let (admin, port) = (free_port(), free_port());
//! let config = render(CONFIG_WITH_PLACEHOLDERS, &[
//!     ("admin", &admin), ("port", &port), ("west", &west.url()), ("eu", &eu.url()),
//! ]);
//! let proxy = ProxyProcess::start(&config).await?;
//! west.kill().await;
//! let resp = get(&format!("http://127.0.0.1:{port}/orders")).await?;
//! assert_eq!(resp.region(), Some("northeurope"));
//! ```

pub mod cli;
pub mod client;
pub mod configs;
pub mod fake_region;
pub mod keep_alive_region;
pub mod otlp;
pub mod pki;
pub mod plugins;
pub mod prometheus;
pub mod proxy;
pub mod raw_region;
pub mod silent_port;
pub mod template;
pub mod wait;

pub use cli::{CommandOutput, binary_path, run_check, run_check_in, run_command};
pub use client::{
    HttpClient, Protocol, TestBody, TestResponse, channel_body, empty, full, get, h2c_client,
    http1_client, https_client, mtls_client, post, raw_http, raw_http_timeout, read_until,
};
pub use configs::TestConfig;
pub use fake_region::{
    DRIP_LINE, FakeRegion, FakeRegionBuilder, Mode, RecordedRequest, pattern_bytes, sha256_hex,
};
pub use keep_alive_region::KeepAliveRegion;
pub use otlp::{CollectedSpan, FakeCollector};
pub use pki::TestPki;
pub use plugins::{copy_plugin, plugin, plugin_service_toml};
pub use prometheus::Scrape;
pub use proxy::{ProxyBuilder, ProxyProcess};
pub use raw_region::RawRegion;
pub use silent_port::SilentPort;
pub use template::{free_port, render};
pub use wait::{eventually, wait_until};
