//! The one process-wide wasmtime `Engine`, its epoch ticker, and the compiled-component cache.
//!
//! Every plugin call runs under an epoch deadline: a ticker thread bumps the engine's epoch
//! every [`TICK`], and a store given a deadline of N ticks traps once N have passed. Compiling
//! a component takes tens of milliseconds, so compiled components are cached in memory by the
//! SHA-256 of the file's bytes and the engine's compatibility hash (wasmtime version and
//! settings): a reload of unchanged files compiles nothing, and a changed file is a new key
//! whatever its path. The `switchyard` binary compiles in a child process (`precompile`).
//! There is no on-disk cache: loading a stored artifact would trust a file anyone with write
//! access to the cache directory could have replaced.

use std::collections::HashMap;
use std::collections::hash_map::DefaultHasher;
use std::hash::{Hash, Hasher};
use std::sync::{Mutex, OnceLock};
use std::time::Duration;

use sha2::{Digest, Sha256};
use wasmtime::component::Component;
use wasmtime::{Config, Engine, OptLevel};

/// Epoch tick: the resolution of plugin deadlines. A ticker thread waking 1000 times a second
/// cost about 1.5% of the proxy's CPU under load; at 5 ms it is a fifth of that, and deadlines
/// (10 ms) stay well below anything a client would notice.
pub const TICK: Duration = Duration::from_millis(5);

/// Compiled components kept at most; past that the cache starts over (live plugins keep
/// their own reference, so this only costs a recompile of a file seen before).
const CACHE_ENTRIES: usize = 64;

#[derive(Clone, Copy, PartialEq, Eq, Hash)]
struct CacheKey {
    sha256: [u8; 32],
    engine: u64,
}

struct Shared {
    engine: Engine,
    compat: u64,
    cache: Mutex<HashMap<CacheKey, Component>>,
}

/// The engine settings; the plugin compiler child (`precompile`) builds its engine from the
/// same ones, or its output would not load here.
pub fn config() -> Config {
    let mut config = Config::new();
    config
        .wasm_component_model(true)
        .epoch_interruption(true)
        .cranelift_opt_level(OptLevel::Speed);
    // For `perf`: name the plugins' compiled functions in /tmp/perf-PID.map.
    if std::env::var_os("SWITCHYARD_WASM_PERFMAP").is_some() {
        config.profiler(wasmtime::ProfilingStrategy::PerfMap);
    }
    config
}

static SHARED: OnceLock<Result<Shared, String>> = OnceLock::new();

fn shared() -> Result<&'static Shared, String> {
    SHARED
        .get_or_init(|| {
            let engine = Engine::new(&config()).map_err(|e| format!("wasmtime engine: {e}"))?;
            let ticker = engine.clone();
            std::thread::Builder::new()
                .name("switchyard-epoch".into())
                .spawn(move || {
                    loop {
                        std::thread::sleep(TICK);
                        ticker.increment_epoch();
                    }
                })
                .map_err(|e| format!("cannot start the plugin epoch ticker: {e}"))?;
            let mut hasher = DefaultHasher::new();
            engine.precompile_compatibility_hash().hash(&mut hasher);
            Ok(Shared {
                compat: hasher.finish(),
                engine,
                cache: Mutex::new(HashMap::new()),
            })
        })
        .as_ref()
        .map_err(Clone::clone)
}

/// The process-wide engine (created, with its ticker, on first use).
pub fn engine() -> Result<&'static Engine, String> {
    shared().map(|s| &s.engine)
}

/// Compiles `bytes` as a component, or returns the cached compilation of the same bytes.
pub fn compile(bytes: &[u8]) -> Result<Component, String> {
    let shared = shared()?;
    let key = CacheKey {
        sha256: Sha256::digest(bytes).into(),
        engine: shared.compat,
    };
    if let Some(hit) = shared.cache.lock().ok().and_then(|c| c.get(&key).cloned()) {
        return Ok(hit);
    }
    let component = match super::precompile::compile(&shared.engine, bytes) {
        Some(compiled) => compiled?,
        None => Component::new(&shared.engine, bytes).map_err(|e| describe(&e))?,
    };
    if let Ok(mut cache) = shared.cache.lock() {
        if cache.len() >= CACHE_ENTRIES {
            cache.clear();
        }
        cache.insert(key, component.clone());
    }
    Ok(component)
}

/// An error with its causes, on one line.
pub fn describe(e: &wasmtime::Error) -> String {
    let mut text = e.to_string();
    for cause in e.chain().skip(1) {
        let cause = cause.to_string();
        if !text.contains(&cause) {
            text.push_str(": ");
            text.push_str(&cause);
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn garbage_is_refused_and_good_bytes_compile_once() {
        assert!(compile(b"definitely not wasm").is_err());
        // The smallest component: compiled once, then served from the cache.
        let empty = b"\0asm\x0d\0\x01\0";
        let first = compile(empty).expect("empty component");
        let second = compile(empty).expect("cached");
        assert!(wasmtime::Engine::same(first.engine(), second.engine()));
    }
}
