//! Loading one plugin file: read, compile (cached), link against the policy world, and make
//! a first instance with `init`, so every problem surfaces at load time with a clear message.

use std::sync::{Arc, OnceLock};

use wasmtime::component::Linker;

use super::bindings::{Policy, PolicyPre};
use super::host::{HostState, PluginShared};
use super::kv::KvStore;
use super::pool::{FaultKind, Instances, PREWARM};
use super::{engine, wasi};
use crate::config::{PluginConfig, ServiceConfig};
use crate::health::HealthSnapshot;

/// The world a plugin must target, for error messages.
const WORLD: &str = "switchyard:policy/policy@0.1.0";

/// The linker every plugin is instantiated with: WASI subset plus the policy host functions.
fn linker() -> Result<&'static Linker<HostState>, String> {
    static LINKER: OnceLock<Result<Linker<HostState>, String>> = OnceLock::new();
    LINKER
        .get_or_init(|| {
            let engine = engine::engine()?;
            let mut linker = Linker::new(engine);
            wasi::add_to_linker(&mut linker).map_err(|e| format!("linking WASI: {e}"))?;
            Policy::add_to_linker::<HostState, wasmtime::component::HasSelf<HostState>>(
                &mut linker,
                |s| s,
            )
            .map_err(|e| format!("linking the policy host: {e}"))?;
            Ok(linker)
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The name logs, metrics and `PolicyRefused` use for a plugin: its file stem.
pub fn plugin_name(cfg: &PluginConfig) -> String {
    cfg.path
        .file_stem()
        .map(|s| s.to_string_lossy().into_owned())
        .unwrap_or_else(|| cfg.path.display().to_string())
}

/// Loads plugin number `slot` of `svc`; the error is the message after `plugin PATH: `.
pub fn load(svc: &ServiceConfig, slot: usize, cfg: &PluginConfig) -> Result<Instances, String> {
    let service = svc.name.as_str();
    let bytes = std::fs::read(&cfg.path).map_err(|e| format!("cannot read the plugin: {e}"))?;
    shape(&bytes)?;
    let component = engine::compile(&bytes).map_err(|e| {
        let first = e.lines().next().unwrap_or_default().to_owned();
        format!("not a valid WebAssembly component: {first}")
    })?;
    let pre = linker()?
        .instantiate_pre(&component)
        .map_err(|e| format!("not a plugin for {WORLD}: {}", engine::describe(&e)))?;
    let pre = PolicyPre::new(pre)
        .map_err(|e| format!("not a plugin for {WORLD}: {}", engine::describe(&e)))?;
    let shared = Arc::new(PluginShared::new(
        plugin_name(cfg).into(),
        service.into(),
        KvStore::for_plugin(service, slot, cfg.path.clone()),
        HealthSnapshot::configured(&svc.regions),
    ));
    let kinds = FaultKind::ALL.map(FaultKind::as_str);
    crate::telemetry::metrics().prepare_plugin_errors(&shared.name, &kinds);
    let name = shared.name.clone();
    let instances = Instances::new(pre, cfg.config.to_string(), shared);
    // Counted here too, not only when a running plugin's fresh instance fails `init`: a
    // reload refused for a plugin's bad config is otherwise visible only in the log.
    instances.prewarm(PREWARM).map_err(|f| {
        crate::telemetry::metrics().plugin_error(&name, FaultKind::Init.as_str());
        f.message
    })?;
    Ok(instances)
}

/// Refuses files that are not components at all, with a message that says what they are.
fn shape(bytes: &[u8]) -> Result<(), String> {
    match bytes.get(..8) {
        Some([0, b'a', b's', b'm', 0x0d, 0, 1, 0]) => Ok(()),
        Some([0, b'a', b's', b'm', 1, 0, 0, 0]) => Err(
            "a core WebAssembly module, not a component: build the plugin with \
             `cargo build --target wasm32-wasip2`"
                .into(),
        ),
        _ => {
            Err("not a WebAssembly component (no WebAssembly header: garbage or truncated)".into())
        }
    }
}

#[cfg(test)]
mod tests {
    use super::shape;

    #[test]
    fn files_that_are_not_components_are_named_for_what_they_are() {
        assert!(
            shape(b"garbage bytes")
                .expect_err("garbage")
                .contains("garbage")
        );
        assert!(
            shape(b"\0asm\x01\0\0\0")
                .expect_err("module")
                .contains("core WebAssembly module")
        );
        assert_eq!(shape(b"\0asm\x0d\0\x01\0"), Ok(()));
    }
}
