//! Switchyard: a failover sidecar proxy.
//!
//! # Layout
//! The modules below, in the order a request meets them.
//!
//! - [`config`]: TOML -> validated [`config::Config`], every error with `FILE:LINE:COL`.
//! - [`app`], [`server`], [`framing`]: listeners (HTTP/1.1, h2c, TLS with ALPN), the first-bytes
//!   timeout, graceful drain.
//! - [`pipeline`]: one request: decide -> select -> attempts (`pipeline/attempt.rs`: one
//!   attempt under its timer) -> respond (`pipeline/answer.rs`: what goes back to the client;
//!   `pipeline/unanswered.rs`: requests whose client went away are counted too).
//! - [`policy`], [`plugin`]: who decides where a request goes (built-in or WebAssembly).
//! - [`router`]: decision + health snapshot -> ordered regions.
//! - [`retry`]: the write-safety rule and the retry budget.
//! - [`upstream`]: pooled clients per region (`upstream/dial.rs`: a name's addresses raced;
//!   `upstream/keep_alive.rs`: a region's own idle timeout), rustls, drill faults.
//! - [`request_body`], [`body`], [`headers`], [`upgrade`]: what crosses the proxy and how
//!   (`body/stall.rs`: a region body that stops part-way is cut off after `per_try_timeout`).
//! - [`degraded`], [`stale`]: responses the sidecar makes itself, the stale-if-error cache.
//! - [`write_gate`]: manual write-region moves that lose and reorder nothing.
//! - [`health`]: probes, outlier ejection, failback, the snapshot the data path reads.
//! - [`admin`], [`reload`], [`signals`]: operating the sidecar.
//! - [`telemetry`]: logs, traces, metrics.
//! - [`demo`]: `switchyard demo`.

pub mod admin;
pub mod app;
pub mod body;
pub mod config;
pub mod degraded;
pub mod demo;
pub mod error;
pub mod framing;
pub mod headers;
pub mod health;
pub mod pipeline;
pub mod plugin;
pub mod policy;
pub mod reload;
pub mod request_body;
pub mod retry;
pub mod router;
pub mod server;
pub mod service;
pub mod signals;
pub mod stale;
pub mod telemetry;
pub mod upgrade;
pub mod upstream;
pub mod write_gate;
