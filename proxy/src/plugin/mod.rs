//! WebAssembly policy plugins: the wasmtime host implementing [`crate::policy::Policy`].

use std::fmt;
use std::sync::Arc;

use crate::config::{Config, ServiceConfig};
use crate::policy::Policy;

/// Every plugin problem found, one per line as `FILE: message`.
#[derive(Debug)]
pub struct PluginErrors(pub Vec<String>);

impl fmt::Display for PluginErrors {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for e in &self.0 {
            writeln!(f, "{e}")?;
        }
        Ok(())
    }
}

impl std::error::Error for PluginErrors {}

/// Loads every plugin of every service, as `switchyard check` must.
pub fn check_all(config: &Config) -> Result<(), PluginErrors> {
    for svc in &config.services {
        build_policy(svc)?;
    }
    Ok(())
}

/// The service's plugin chain, or `None` when it has no plugins.
pub fn build_policy(svc: &ServiceConfig) -> Result<Option<Arc<dyn Policy>>, PluginErrors> {
    if svc.plugins.is_empty() {
        return Ok(None);
    }
    Err(PluginErrors(
        svc.plugins
            .iter()
            .map(|p| format!("{}: plugin host not built yet", p.path.display()))
            .collect(),
    ))
}
