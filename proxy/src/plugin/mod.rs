//! WebAssembly policy plugins: the wasmtime host implementing [`crate::policy::Policy`].
//!
//! # Layout
//!
//! - `engine`: the process-wide wasmtime engine, its 5 ms epoch ticker, the compile cache.
//! - `bindings`: the one `bindgen!` over `sdk/wit/policy.wit`.
//! - `wasi`: the WASI subset plugins get (no files, no network, output to the log).
//! - `host`: store data, memory limits, and the `host` functions (headers, regions, log, ...).
//! - `kv`: the per-plugin key-value store.
//! - `pool`: warm instances, calls under a deadline, fault classification.
//! - `precompile`: compiling in a child process, so Cranelift never runs in the sidecar.
//! - `memory`: handing what loading freed back to the OS.
//! - `load`: file -> compiled, linked, initialized plugin, with `check`'s messages.
//! - `chain`: [`PluginChain`], the plugins of one service as a `Policy`.

mod bindings;
mod chain;
mod engine;
mod host;
mod kv;
mod load;
mod memory;
mod pool;
mod precompile;
mod wasi;

use std::fmt;
use std::sync::Arc;

pub use chain::{BREAKER_COOLDOWN_MS, BREAKER_FAULTS, ChainPlugin, PluginChain};
pub use host::MEMORY_LIMIT;
pub use pool::{CALL_DEADLINE_TICKS, FaultKind, INIT_DEADLINE_TICKS};
pub use precompile::{
    SUBCOMMAND as COMPILER_SUBCOMMAND, child_main as compiler_main, compile_in_child_process,
};

use crate::config::{Config, ServiceConfig, SourcePos};
use crate::policy::Policy;

/// A plugin that could not be loaded: where its entry is in the config, and why.
#[derive(Debug)]
pub struct PluginError {
    pub at: Option<SourcePos>,
    pub message: String,
}

impl fmt::Display for PluginError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match &self.at {
            Some(at) => write!(f, "{at}: {}", self.message),
            None => f.write_str(&self.message),
        }
    }
}

/// Every plugin problem found, one per line as `FILE:LINE:COL: plugin PATH: message`.
#[derive(Debug)]
pub struct PluginErrors(pub Vec<PluginError>);

impl fmt::Display for PluginErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PluginErrors {}

/// Loads every plugin of every service, as `switchyard check` must: compiles, links and
/// instantiates each one and runs its `init` with its config. Reports every problem found.
pub fn check_all(config: &Config) -> Result<(), PluginErrors> {
    let mut errors = Vec::new();
    for svc in &config.services {
        if let Err(PluginErrors(mut e)) = build_policy(svc) {
            errors.append(&mut e);
        }
    }
    if errors.is_empty() {
        Ok(())
    } else {
        Err(PluginErrors(errors))
    }
}

/// The service's plugin chain, or `None` when it has no plugins.
pub fn build_policy(svc: &ServiceConfig) -> Result<Option<Arc<dyn Policy>>, PluginErrors> {
    Ok(build_chain(svc)?.map(|chain| Arc::new(chain) as Arc<dyn Policy>))
}

/// Like [`build_policy`], with the concrete type (benchmarks and tests look inside).
pub fn build_chain(svc: &ServiceConfig) -> Result<Option<PluginChain>, PluginErrors> {
    if svc.plugins.is_empty() {
        return Ok(None);
    }
    let mut plugins = Vec::with_capacity(svc.plugins.len());
    let mut errors = Vec::new();
    for (slot, cfg) in svc.plugins.iter().enumerate() {
        match load::load(svc, slot, cfg) {
            Ok(instances) => plugins.push(ChainPlugin::new(instances, cfg.on_error)),
            Err(message) => errors.push(PluginError {
                at: cfg.at.clone(),
                message: format!("plugin {}: {message}", cfg.path.display()),
            }),
        }
    }
    // Loading allocated and freed a few MiB on this thread; do not keep them resident.
    memory::release_freed();
    if !errors.is_empty() {
        return Err(PluginErrors(errors));
    }
    Ok(Some(PluginChain::new(plugins)))
}
