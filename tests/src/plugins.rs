//! Plugin components for tests: the three shipped plugins (`plugins/`) and the fault-test
//! plugins (`tests/plugins/`), built for wasm32-wasip2 once per test process.
//!
//! The builds run `$CARGO` (set by cargo for tests) with their own target directory,
//! `target/plugin-wasm`, so they never wait on the build-directory lock of the `cargo test`
//! that runs them. Several test binaries may build at once: cargo's lock on that directory
//! serializes them, and after the first the build is a no-op.

use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::OnceLock;

use anyhow::{Result, anyhow};

/// The shipped plugins' packages.
const SHIPPED: [&str; 3] = ["read-preference", "write-pinning", "degraded-mode"];

/// The workspace root (parent of this crate).
pub fn workspace_root() -> PathBuf {
    let here = Path::new(env!("CARGO_MANIFEST_DIR"));
    here.parent().unwrap_or(here).to_path_buf()
}

fn target_dir() -> PathBuf {
    workspace_root().join("target").join("plugin-wasm")
}

/// Runs one `cargo build --release --target wasm32-wasip2 ARGS`, returning its stderr on
/// failure.
fn cargo_build(args: &[&str], strip: bool) -> Result<(), String> {
    let cargo = std::env::var_os("CARGO").unwrap_or_else(|| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.current_dir(workspace_root())
        .args([
            "build",
            "--release",
            "--target",
            "wasm32-wasip2",
            "--target-dir",
        ])
        .arg(target_dir())
        .args(args)
        // Nothing of the outer build's configuration applies to this one.
        .env_remove("CARGO_TARGET_DIR")
        .env_remove("CARGO_BUILD_TARGET")
        .env_remove("RUSTFLAGS")
        .env_remove("CARGO_ENCODED_RUSTFLAGS")
        .env_remove("CARGO_MAKEFLAGS");
    if strip {
        // The shipped plugins' release profile strips them already; this also skips making
        // debug info for their dependencies, which the strip would throw away.
        cmd.env("CARGO_PROFILE_RELEASE_DEBUG", "false")
            .env("CARGO_PROFILE_RELEASE_STRIP", "true");
    }
    let out = cmd.output().map_err(|e| format!("run cargo: {e}"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(format!(
            "cargo build {args:?} failed:\n{}",
            String::from_utf8_lossy(&out.stderr)
        ))
    }
}

fn build_all() -> Result<(), String> {
    let mut shipped = Vec::new();
    for p in SHIPPED {
        shipped.extend(["-p", p]);
    }
    cargo_build(&shipped, true)?;
    let manifest = workspace_root().join("tests/plugins/Cargo.toml");
    let manifest = manifest.to_string_lossy().into_owned();
    cargo_build(&["--manifest-path", &manifest], false)
}

/// Builds every plugin (once per process) and returns the path of the component `name`:
/// a crate name with `_` for `-`, e.g. `read_preference`, `spin`, `init_fail`, `command`.
pub fn plugin(name: &str) -> Result<PathBuf> {
    static BUILT: OnceLock<Result<(), String>> = OnceLock::new();
    BUILT
        .get_or_init(build_all)
        .as_ref()
        .map_err(|e| anyhow!("{e}"))?;
    let path = target_dir()
        .join("wasm32-wasip2/release")
        .join(format!("{name}.wasm"));
    if path.is_file() {
        Ok(path)
    } else {
        Err(anyhow!("no plugin component at {}", path.display()))
    }
}

/// Copies plugin `name` into `dir` as `file` (tests that rewrite a plugin file in place).
pub fn copy_plugin(name: &str, dir: &Path, file: &str) -> Result<PathBuf> {
    let to = dir.join(file);
    std::fs::copy(plugin(name)?, &to)?;
    Ok(to)
}

/// A config with one service, `orders` (regions `westus`, the write region, and
/// `northeurope`, at unreachable loopback ports), running plugin `wasm` with its `config`
/// table (TOML inline table), `fail-closed`. For tests and benches that build a plugin chain
/// in process with `switchyard::config::parse`.
pub fn plugin_service_toml(wasm: &Path, config: &str) -> String {
    format!(
        r#"
[[services]]
name = "orders"
listen = "127.0.0.1:0"
[[services.regions]]
name = "westus"
priority = 0
url = "http://127.0.0.1:1"
write = true
[[services.regions]]
name = "northeurope"
priority = 1
url = "http://127.0.0.1:2"
[[services.plugins]]
path = {path:?}
on_error = "fail-closed"
config = {config}
"#,
        path = wasm.display().to_string()
    )
}
