//! The `switchyard` binary: where it is, and one-shot commands such as `switchyard check`.
//!
//! The test crate does not depend on the proxy crate (so a broken proxy does not stop the
//! harness from building), hence the binary must be built first: `cargo build -p switchyard`,
//! or named by `SWITCHYARD_BIN`.

use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use tokio::process::Command;

use crate::proxy::{CONFIG_FILE, temp_dir};

/// Bound on `switchyard check` and other one-shot commands.
pub const COMMAND_TIMEOUT: Duration = Duration::from_secs(60);

/// The `switchyard` binary: `$SWITCHYARD_BIN`, else `target/<profile>/switchyard` next to the
/// `deps/` directory this test binary runs from.
pub fn binary_path() -> Result<PathBuf> {
    if let Some(bin) = std::env::var_os("SWITCHYARD_BIN") {
        return Ok(PathBuf::from(bin));
    }
    let exe = std::env::current_exe().context("current_exe")?;
    let name = format!("switchyard{}", std::env::consts::EXE_SUFFIX);
    // target/debug/deps/harness-xxxx -> target/debug/switchyard
    for dir in exe.ancestors().skip(1).take(3) {
        let candidate = dir.join(&name);
        if candidate.is_file() {
            return Ok(candidate);
        }
    }
    bail!(
        "no switchyard binary near {}: run `cargo build -p switchyard` first or set SWITCHYARD_BIN",
        exe.display()
    )
}

/// What a one-shot `switchyard` command did.
#[derive(Clone, Debug)]
pub struct CommandOutput {
    /// Exit code; -1 when killed by a signal or by the timeout.
    pub code: i32,
    pub stdout: String,
    pub stderr: String,
}

/// Runs `switchyard ARGS` in `dir`, killed after `timeout`.
pub async fn run_command(args: &[&str], dir: &Path, timeout: Duration) -> Result<CommandOutput> {
    let bin = binary_path()?;
    let child = Command::new(&bin)
        .args(args)
        .current_dir(dir)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("spawn {}", bin.display()))?;
    let output = tokio::time::timeout(timeout, child.wait_with_output())
        .await
        .map_err(|_| anyhow!("switchyard {args:?} did not finish within {timeout:?}"))??;
    Ok(CommandOutput {
        code: output.status.code().unwrap_or(-1),
        stdout: String::from_utf8_lossy(&output.stdout).into_owned(),
        stderr: String::from_utf8_lossy(&output.stderr).into_owned(),
    })
}

/// `switchyard check --config switchyard.toml` on `config_toml` in a fresh temp dir:
/// (exit code, stdout, stderr). Error messages name the file as `switchyard.toml`.
pub async fn run_check(config_toml: &str) -> Result<(i32, String, String)> {
    let dir = temp_dir()?;
    run_check_in(dir.path(), config_toml).await
}

/// Like [`run_check`] in a prepared dir (plugins, PEM files), writing `switchyard.toml` there.
pub async fn run_check_in(dir: &Path, config_toml: &str) -> Result<(i32, String, String)> {
    std::fs::write(dir.join(CONFIG_FILE), config_toml).context("write config")?;
    let out = run_command(&["check", "--config", CONFIG_FILE], dir, COMMAND_TIMEOUT).await?;
    Ok((out.code, out.stdout, out.stderr))
}
