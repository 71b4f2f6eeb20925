//! Switchyard: a failover sidecar proxy.
//!
//! # Layout
//! The modules below, in the order a request meets them.
//!
//! - [`config`]: TOML -> validated [`config::Config`], every error with `FILE:LINE:COL`.

pub mod config;
