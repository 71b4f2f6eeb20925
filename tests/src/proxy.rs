//! `ProxyProcess`: the real `switchyard` binary as a child process, with its config in a temp dir.
//!
//! The binary is found by [`crate::cli::binary_path`]; it must be built first.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::{ExitStatus, Stdio};
use std::time::Duration;

use anyhow::{Context, Result, anyhow, bail};
use bytes::Bytes;
use http::Method;
use nix::sys::signal::{Signal, kill};
use nix::unistd::Pid;
use tempfile::TempDir;
use tokio::process::{Child, Command};

use crate::cli::binary_path;
use crate::client::{HttpClient, Protocol, TestResponse};

/// File name of the config inside the proxy's temp dir.
pub const CONFIG_FILE: &str = "switchyard.toml";
/// Admin port when the config names no admin address (SPEC section 4).
const DEFAULT_ADMIN_PORT: u16 = 9901;
/// How long `start` waits for `/readyz`.
pub const READY_TIMEOUT: Duration = Duration::from_secs(10);

/// The admin address a config asks for (default `127.0.0.1:9901`).
fn admin_addr(config_toml: &str) -> Result<SocketAddr> {
    let table: toml::Table = toml::from_str(config_toml).context("parse config to find admin")?;
    let Some(listen) = table
        .get("admin")
        .and_then(|a| a.get("listen"))
        .and_then(|l| l.as_str())
    else {
        return Ok(SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_ADMIN_PORT)));
    };
    listen
        .parse()
        .with_context(|| format!("admin listen {listen:?} is not an IP:port"))
}

pub(crate) fn temp_dir() -> Result<TempDir> {
    tempfile::Builder::new()
        .prefix("switchyard-test-")
        .tempdir()
        .context("create temp dir")
}

/// How to launch a proxy; see [`ProxyProcess::builder`].
pub struct ProxyBuilder {
    config: String,
    dir: Option<TempDir>,
    env: Vec<(String, String)>,
    ready_timeout: Duration,
}

impl ProxyBuilder {
    /// Runs in this dir (after the test put PEM files or plugins there) instead of a new one.
    pub fn dir(mut self, dir: TempDir) -> Self {
        self.dir = Some(dir);
        self
    }

    /// Sets an environment variable of the child (e.g. an admin token).
    pub fn env(mut self, key: &str, value: &str) -> Self {
        self.env.push((key.to_owned(), value.to_owned()));
        self
    }

    pub fn ready_timeout(mut self, timeout: Duration) -> Self {
        self.ready_timeout = timeout;
        self
    }

    /// Writes the config and starts `switchyard run`, without waiting for readiness.
    pub fn spawn(self) -> Result<ProxyProcess> {
        let dir = match self.dir {
            Some(dir) => dir,
            None => temp_dir()?,
        };
        let config_path = dir.path().join(CONFIG_FILE);
        std::fs::write(&config_path, &self.config).context("write config")?;
        // An unparsable config is fine here: tests spawn those to watch them fail.
        let admin = admin_addr(&self.config)
            .unwrap_or(SocketAddr::from((Ipv4Addr::LOCALHOST, DEFAULT_ADMIN_PORT)));
        let stdout_path = dir.path().join("stdout.log");
        let stderr_path = dir.path().join("stderr.log");
        let stdout = std::fs::File::create(&stdout_path).context("create stdout.log")?;
        let stderr = std::fs::File::create(&stderr_path).context("create stderr.log")?;
        let bin = binary_path()?;
        let mut cmd = Command::new(&bin);
        cmd.arg("run")
            .arg("--config")
            .arg(&config_path)
            .current_dir(dir.path())
            .stdin(Stdio::null())
            .stdout(stdout)
            .stderr(stderr)
            .kill_on_drop(true);
        for (key, value) in &self.env {
            cmd.env(key, value);
        }
        let child = cmd
            .spawn()
            .with_context(|| format!("spawn {}", bin.display()))?;
        Ok(ProxyProcess {
            pid: child.id(),
            child,
            dir,
            config_path,
            admin,
            stdout_path,
            stderr_path,
            ready_timeout: self.ready_timeout,
        })
    }

    /// Spawns and waits for `GET /readyz` to answer 200.
    pub async fn start(self) -> Result<ProxyProcess> {
        let mut proxy = self.spawn()?;
        let timeout = proxy.ready_timeout;
        proxy.wait_ready(timeout).await?;
        Ok(proxy)
    }
}

/// A running `switchyard run`. Dropping it kills the process; when the test is panicking
/// it first prints the proxy's stdout and stderr.
pub struct ProxyProcess {
    child: Child,
    pid: Option<u32>,
    dir: TempDir,
    config_path: PathBuf,
    admin: SocketAddr,
    stdout_path: PathBuf,
    stderr_path: PathBuf,
    ready_timeout: Duration,
}

impl ProxyProcess {
    /// A launcher for `config_toml`, to add env vars or a prepared dir.
    pub fn builder(config_toml: &str) -> ProxyBuilder {
        ProxyBuilder {
            config: config_toml.to_owned(),
            dir: None,
            env: Vec::new(),
            ready_timeout: READY_TIMEOUT,
        }
    }

    /// Writes the config to a fresh temp dir, runs the proxy there, waits for `/readyz`.
    pub async fn start(config_toml: &str) -> Result<Self> {
        Self::builder(config_toml).start().await
    }

    /// Like `start` but returns right after spawning (for tests expecting a failure).
    pub fn spawn(config_toml: &str) -> Result<Self> {
        Self::builder(config_toml).spawn()
    }

    /// A fresh temp dir to prepare files in before [`ProxyBuilder::dir`].
    pub fn new_dir() -> Result<TempDir> {
        temp_dir()
    }

    /// Polls `GET /readyz` until 200; fails early, with the logs, if the process exits.
    pub async fn wait_ready(&mut self, timeout: Duration) -> Result<()> {
        let client =
            HttpClient::new(Protocol::Http1, None, false).with_timeout(Duration::from_secs(1));
        let url = format!("{}/readyz", self.admin_url());
        let deadline = tokio::time::Instant::now() + timeout;
        let mut last = String::from("no attempt");
        // Bounded by the deadline; each attempt is bounded by the client's timeout.
        while tokio::time::Instant::now() < deadline {
            if let Some(status) = self.child.try_wait()? {
                bail!(
                    "switchyard exited with {status} before ready\n{}",
                    self.logs()
                );
            }
            match client.get(&url).await {
                Ok(resp) if resp.status.as_u16() == 200 => return Ok(()),
                Ok(resp) => last = format!("status {}", resp.status),
                Err(e) => last = format!("{e:#}"),
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        Err(anyhow!(
            "switchyard not ready within {timeout:?} (last: {last})\n{}",
            self.logs()
        ))
    }

    /// The temp dir the proxy runs in (its working directory).
    pub fn dir(&self) -> &Path {
        self.dir.path()
    }

    pub fn config_path(&self) -> &Path {
        &self.config_path
    }

    /// Overwrites the config file (then `reload()` or `POST /reload`).
    pub fn write_config(&self, config_toml: &str) -> Result<()> {
        std::fs::write(&self.config_path, config_toml).context("rewrite config")
    }

    pub fn admin_addr(&self) -> SocketAddr {
        self.admin
    }

    /// `http://127.0.0.1:PORT` of the admin API.
    pub fn admin_url(&self) -> String {
        format!("http://{}", self.admin)
    }

    pub fn pid(&self) -> Option<u32> {
        self.pid
    }

    pub fn stdout(&self) -> String {
        std::fs::read_to_string(&self.stdout_path).unwrap_or_default()
    }

    pub fn stderr(&self) -> String {
        std::fs::read_to_string(&self.stderr_path).unwrap_or_default()
    }

    /// Both output streams, labelled, for failure messages.
    pub fn logs(&self) -> String {
        format!(
            "--- switchyard stdout ---\n{}\n--- switchyard stderr ---\n{}",
            self.stdout(),
            self.stderr()
        )
    }

    /// Sends `signal` to the process.
    pub fn signal(&self, signal: Signal) -> Result<()> {
        let pid = self.pid.ok_or_else(|| anyhow!("process already reaped"))?;
        let pid = i32::try_from(pid).context("pid out of range")?;
        kill(Pid::from_raw(pid), signal).with_context(|| format!("send {signal}"))
    }

    /// SIGTERM: graceful shutdown.
    pub fn terminate(&self) -> Result<()> {
        self.signal(Signal::SIGTERM)
    }

    /// SIGHUP: reload config and plugins.
    pub fn reload(&self) -> Result<()> {
        self.signal(Signal::SIGHUP)
    }

    /// SIGKILL.
    pub fn kill(&mut self) -> Result<()> {
        self.child.start_kill().context("SIGKILL switchyard")
    }

    /// Waits for the process to exit; `None` if it is still running after `timeout`.
    pub async fn wait_exit(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let status = tokio::time::timeout(timeout, self.child.wait())
            .await
            .ok()?
            .ok()?;
        // Reaped: the pid may be reused, so stop signalling it.
        self.pid = None;
        Some(status)
    }

    /// GET on the admin API.
    pub async fn admin_get(&self, path: &str) -> Result<TestResponse> {
        self.admin_request(Method::GET, path, &[], "").await
    }

    /// POST a JSON (or empty) body to the admin API.
    pub async fn admin_post(&self, path: &str, body: &str) -> Result<TestResponse> {
        let headers: &[(&str, &str)] = if body.is_empty() {
            &[]
        } else {
            &[("content-type", "application/json")]
        };
        self.admin_request(Method::POST, path, headers, body).await
    }

    /// Any request to the admin API (e.g. DELETE a fault, or with an Authorization header).
    pub async fn admin_request(
        &self,
        method: Method,
        path: &str,
        headers: &[(&str, &str)],
        body: &str,
    ) -> Result<TestResponse> {
        let url = format!("{}{path}", self.admin_url());
        HttpClient::new(Protocol::Http1, None, false)
            .with_timeout(Duration::from_secs(10))
            .request(method, &url, headers, Bytes::from(body.to_owned()))
            .await
    }

    /// `GET /status` as JSON.
    pub async fn status(&self) -> Result<serde_json::Value> {
        self.admin_get("/status").await?.json()
    }

    /// One region's entry of `GET /status` (`name`, `priority`, `state`, `active`, `write`),
    /// whether services and regions come as arrays of objects with `name` or as maps by name.
    pub async fn region_status(
        &self,
        service: &str,
        region: &str,
    ) -> Result<Option<serde_json::Value>> {
        let status = self.status().await?;
        let found = named(&status["services"], service)
            .and_then(|svc| named(&svc["regions"], region))
            .cloned();
        Ok(found)
    }

    /// `state` of one region in `GET /status` (`healthy`, `unhealthy`, `ejected`, ...).
    pub async fn region_state(&self, service: &str, region: &str) -> Result<Option<String>> {
        Ok(self
            .region_status(service, region)
            .await?
            .and_then(|r| r["state"].as_str().map(str::to_owned)))
    }

    /// Whether `region` of `service` shows `state` in `/status` within 5 s.
    pub async fn reaches_state(&self, service: &str, region: &str, state: &str) -> bool {
        crate::wait::eventually(
            Duration::from_secs(5),
            Duration::from_millis(20),
            || async {
                self.region_state(service, region)
                    .await
                    .ok()
                    .flatten()
                    .as_deref()
                    == Some(state)
            },
        )
        .await
    }

    /// `GET /metrics` as text.
    pub async fn metrics(&self) -> Result<String> {
        Ok(self.admin_get("/metrics").await?.text())
    }
}

/// The element called `name` of a JSON array of `{"name": ...}` objects, or of a map.
fn named<'a>(list: &'a serde_json::Value, name: &str) -> Option<&'a serde_json::Value> {
    match list {
        serde_json::Value::Array(items) => items.iter().find(|i| i["name"] == name),
        serde_json::Value::Object(map) => map.get(name),
        _ => None,
    }
}

impl Drop for ProxyProcess {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("{}", self.logs());
        }
        let _ = self.child.start_kill();
    }
}
