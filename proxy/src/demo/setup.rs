//! The sidecar under drill: its config (fast drill timings, the demo regions' real ports, the
//! example plugins when built) and starting it in-process.

use std::error::Error;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use tokio::sync::oneshot;
use tokio::task::JoinHandle;

use super::region::DemoRegion;
use super::report::Style;
use crate::app::App;
use crate::config;

/// The service the demo's traffic goes through.
pub const SERVICE: &str = "orders";
const PLUGIN_FILES: [&str; 3] = [
    "read_preference.wasm",
    "write_pinning.wasm",
    "degraded_mode.wasm",
];
pub const BUILD_PLUGINS: &str = "cargo build --release --target wasm32-wasip2 -p read-preference -p write-pinning -p degraded-mode";

/// The running sidecar.
pub struct Sidecar {
    pub service: SocketAddr,
    pub admin: SocketAddr,
    /// Which plugins loaded, for the banner.
    pub plugins: Option<PathBuf>,
    shutdown: oneshot::Sender<()>,
    task: JoinHandle<()>,
}

impl Sidecar {
    /// Starts it with the plugins when `plugins` is set; when that fails, says why and starts
    /// it without them (the plugins are a bonus, never a reason for the demo to fail).
    pub async fn start(
        regions: &[DemoRegion],
        plugins: Option<PathBuf>,
        style: &Style,
    ) -> Result<Sidecar, Box<dyn Error>> {
        if let Some(dir) = plugins {
            match Sidecar::start_with(regions, Some(&dir)).await {
                Ok(sidecar) => return Ok(sidecar),
                Err(e) => {
                    let why = e.to_string();
                    let why = why.trim_end().replace('\n', "; ");
                    say!(
                        "{}",
                        style.dim(&format!(
                            "plugins did not load ({why}); running without them"
                        ))
                    );
                }
            }
        }
        Sidecar::start_with(regions, None).await
    }

    async fn start_with(
        regions: &[DemoRegion],
        plugins: Option<&Path>,
    ) -> Result<Sidecar, Box<dyn Error>> {
        let text = config_text(regions, plugins);
        let config = config::parse(Path::new("demo.toml"), &text)
            .map_err(|e| format!("the demo config is invalid:\n{e}"))?;
        let app = App::build(config).await?;
        let service = app
            .service_addrs()
            .into_iter()
            .find(|(name, _)| name == SERVICE)
            .map(|(_, addr)| addr)
            .ok_or("the sidecar has no listener for the demo service")?;
        let admin = app
            .admin_addr()
            .ok_or("the sidecar has no admin listener")?;
        let (shutdown, stopped) = oneshot::channel::<()>();
        let task = tokio::spawn(app.run(async move {
            let _ = stopped.await;
        }));
        Ok(Sidecar {
            service,
            admin,
            plugins: plugins.map(Path::to_path_buf),
            shutdown,
            task,
        })
    }

    /// Stops the sidecar and waits for it (bounded: shutdown_grace is 1s).
    pub async fn stop(self) {
        let _ = self.shutdown.send(());
        let _ = tokio::time::timeout(Duration::from_secs(5), self.task).await;
    }
}

/// The folder holding all three example plugins, if they are built.
pub fn find_plugins() -> Option<PathBuf> {
    let mut candidates = Vec::new();
    if let Some(dir) = std::env::var_os("SWITCHYARD_PLUGIN_DIR") {
        candidates.push(PathBuf::from(dir));
    }
    if let Some(exe_dir) = std::env::current_exe()
        .ok()
        .and_then(|p| p.parent().map(Path::to_path_buf))
    {
        // Shipped next to the binary (a release archive, a container image)...
        candidates.push(exe_dir.clone());
        // ...or built in this workspace.
        candidates.push(exe_dir.join("../wasm32-wasip2/release"));
        candidates.push(exe_dir.join("../../wasm32-wasip2/release"));
    }
    candidates.push(PathBuf::from("target/wasm32-wasip2/release"));
    candidates
        .into_iter()
        .find(|dir| PLUGIN_FILES.iter().all(|f| dir.join(f).is_file()))
        .map(|dir| std::fs::canonicalize(&dir).unwrap_or(dir))
}

/// A TOML string literal.
fn quote(s: &str) -> String {
    toml::Value::String(s.to_owned()).to_string()
}

/// The sidecar config: drill timings so the whole show fits in well under a minute.
pub fn config_text(regions: &[DemoRegion], plugins: Option<&Path>) -> String {
    let mut text = format!(
        r#"# switchyard demo: everything on 127.0.0.1, ports picked by the OS.
shutdown_grace = "1s"

[admin]
listen = "127.0.0.1:0"

[[services]]
name = "{SERVICE}"
listen = "127.0.0.1:0"
request_timeout = "2s"

[services.health]
path = "/healthz"
interval = "200ms"
timeout = "150ms"
unhealthy_threshold = 2
healthy_threshold = 2

# max_ejection = base_ejection: no back-off between the drill's repeated outages, so every
# failback takes the same path (health checks, then stable_for).
[services.outlier]
consecutive_failures = 3
base_ejection = "2s"
max_ejection = "2s"

[services.failback]
stable_for = "3s"

[services.retry]
max_attempts = 3
per_try_timeout = "300ms"

[services.degraded]
retry_after = "1s"
"#
    );
    for (priority, region) in regions.iter().enumerate() {
        text.push_str(&format!(
            "\n[[services.regions]]\nname = {}\npriority = {priority}\nurl = {}\nwrite = {}\n",
            quote(region.name),
            quote(&region.url()),
            priority == 0,
        ));
    }
    if let Some(dir) = plugins {
        let path = |file: &str| quote(&dir.join(file).to_string_lossy());
        text.push_str(&format!(
            r#"
# Writes stay on the write region; if it is down, the next healthy region by priority is promoted.
[[services.plugins]]
path = {}
on_error = "fail-open"
config = {{ promote_on_failure = true }}

# When no region can serve, /orders answers a clear 503 instead of a generic error.
[[services.plugins]]
path = {}
on_error = "fail-open"
config = {{ rules = [{{ prefix = "/orders", status = 503, body = "ordering is temporarily unavailable" }}] }}
"#,
            path("write_pinning.wasm"),
            path("degraded_mode.wasm"),
        ));
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;

    #[tokio::test]
    async fn the_demo_config_is_valid_with_and_without_plugins() {
        let regions: Vec<DemoRegion> = ["westus", "northeurope", "eastasia"]
            .into_iter()
            .map(DemoRegion::start)
            .collect::<Result<_, _>>()
            .expect("bind loopback");
        let config =
            config::parse(Path::new("demo.toml"), &config_text(&regions, None)).expect("valid");
        let svc = &config.services[0];
        assert_eq!(svc.regions.len(), 3);
        assert_eq!(svc.regions[0].name, "westus");
        assert!(svc.regions[0].write);
        assert_eq!(svc.retry.per_try_timeout, Duration::from_millis(300));
        assert_eq!(svc.failback.stable_for, Duration::from_secs(3));

        // Plugin files must exist for the config to validate: use empty stand-ins.
        let dir = std::env::temp_dir().join(format!("switchyard-demo-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("temp dir");
        for f in PLUGIN_FILES {
            std::fs::write(dir.join(f), b"").expect("stand-in plugin");
        }
        let text = config_text(&regions, Some(&dir));
        let parsed = config::parse(Path::new("demo.toml"), &text);
        let _ = std::fs::remove_dir_all(&dir);
        let config = parsed.expect("valid with plugins");
        let plugins = &config.services[0].plugins;
        assert_eq!(plugins.len(), 2);
        assert_eq!(
            plugins[0].config["promote_on_failure"],
            serde_json::json!(true)
        );
        assert_eq!(
            plugins[1].config["rules"][0]["prefix"],
            serde_json::json!("/orders")
        );
    }
}
