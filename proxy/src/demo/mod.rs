//! `switchyard demo`: a self-contained failover drill on loopback.
//!
//! Three demo regions and the sidecar run in this process on 127.0.0.1 (ports picked by the
//! OS); a steady client sends traffic through the sidecar while the drill kills, restarts,
//! blackholes and heals the primary region, then does the same through the admin API. One
//! line per second shows what the application saw; a table sums it up at the end.
//!
//! - [`region`]: the demo regions and their faults.
//! - [`setup`]: the sidecar's config and starting it (with the example plugins when built).
//! - [`traffic`]: the steady client and its samples.
//! - [`drill`]: the phases and what each one measures.
//! - [`stats`], [`report`], [`admin_client`]: what gets counted and printed.

/// `println!` that ignores a closed stdout (`switchyard demo | head` must not panic).
macro_rules! say {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout().lock(), $($arg)*);
    }};
}

/// Prints text that already ends in a newline, ignoring a closed stdout.
macro_rules! say_raw {
    ($text:expr) => {{
        use std::io::Write as _;
        let _ = std::io::stdout().lock().write_all(($text).as_bytes());
    }};
}

mod admin_client;
mod drill;
mod region;
mod report;
mod setup;
mod stats;
mod traffic;

use std::error::Error;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::time::Instant;

use crate::config::LogFormat;
use admin_client::AdminClient;
use drill::Drill;
use region::DemoRegion;
use report::Style;
use setup::Sidecar;
use traffic::{Samples, Traffic};

/// The demo regions, by priority; the first is the primary and the write region.
pub const REGIONS: [&str; 3] = ["westus", "northeurope", "eastasia"];

/// No task of the demo outlives this, whatever happens.
const MAX_RUNTIME: Duration = Duration::from_secs(120);

/// Runs the drill.
pub async fn run() -> Result<(), Box<dyn Error>> {
    // The sidecar logs through `tracing`; stay quiet unless asked, so the drill output is clean.
    if std::env::var_os("RUST_LOG").is_some() {
        crate::telemetry::init_logs(LogFormat::Text);
    }
    let style = Style::detect();
    let mut regions = Vec::with_capacity(REGIONS.len());
    for name in REGIONS {
        regions.push(DemoRegion::start(name)?);
    }

    let plugin_dir = setup::find_plugins();
    if plugin_dir.is_none() {
        say!(
            "{}",
            style.dim(&format!(
                "example plugins not found; running without them (build them with: {})",
                setup::BUILD_PLUGINS
            ))
        );
    }
    let sidecar = Sidecar::start(&regions, plugin_dir, &style).await?;
    banner(&style, &regions, &sidecar);

    let samples = Arc::new(Samples::default());
    let (phase_tx, phase_rx) = watch::channel(String::from("starting"));
    let (stop_tx, stop_rx) = watch::channel(false);
    let started = Instant::now();
    let traffic = Traffic::start(sidecar.service, samples.clone());
    let ticker = report::spawn_ticker(samples.clone(), phase_rx, started, style, stop_rx);

    let mut drill = Drill {
        samples: samples.clone(),
        phase: phase_tx,
        style,
        admin: AdminClient::new(sidecar.admin, style),
        reports: Vec::new(),
        plugins: sidecar.plugins.is_some(),
    };
    let outcome = script(&mut drill, &mut regions).await;
    if outcome.is_ok() {
        say!("{}", style.bold("== final state"));
        drill.admin.show_status().await;
    }

    traffic.stop().await;
    stop_tx.send_replace(true);
    let _ = tokio::time::timeout(Duration::from_secs(2), ticker).await;
    sidecar.stop().await;
    for region in &mut regions {
        region.kill().await;
    }
    outcome?;

    say_raw!(report::summary(&style, &drill.reports));
    closing(&style, &drill, started.elapsed());
    Ok(())
}

/// Every phase, in order.
async fn script(drill: &mut Drill, regions: &mut [DemoRegion]) -> Result<(), Box<dyn Error>> {
    let primary = regions.first_mut().ok_or("no demo regions")?;
    drill.warm_up().await;
    drill.kill(primary).await;
    drill.restart(primary).await?;
    drill.blackhole(primary).await;
    drill.heal(primary).await;
    drill.switchboard().await;
    Ok(())
}

fn banner(style: &Style, regions: &[DemoRegion], sidecar: &Sidecar) {
    say!(
        "{}",
        style.bold("switchyard demo: a failover drill on this machine (about 30 s)")
    );
    let names: Vec<String> = regions
        .iter()
        .enumerate()
        .map(|(i, r)| {
            let role = if i == 0 { ", writes" } else { "" };
            format!("{} {} (priority {i}{role})", r.name, r.addr())
        })
        .collect();
    say!("  regions  {}", names.join("  "));
    say!(
        "  sidecar  service {} on http://{}   admin API on http://{}",
        setup::SERVICE,
        sidecar.service,
        sidecar.admin
    );
    match &sidecar.plugins {
        Some(dir) => say!(
            "  plugins  write-pinning, degraded-mode (from {})",
            dir.display()
        ),
        None => say!("  plugins  none (built-in priority routing)"),
    }
    say!(
        "  traffic  {} clients, up to {} req/s: GET /orders/ID, and every {}th request a POST /orders",
        traffic::CLIENTS,
        traffic::MAX_RATE,
        traffic::WRITE_EVERY
    );
    say!(
        "  timings  health every 200ms (2 to flip), eject after 3 failures, per-try timeout 300ms, stable_for 3s"
    );
    say!();
}

fn closing(style: &Style, drill: &Drill, took: Duration) {
    let total: u64 = drill.reports.iter().map(|p| p.stats.requests).sum();
    let errors: u64 = drill.reports.iter().map(|p| p.stats.errors).sum();
    let refused: u64 = drill.reports.iter().map(|p| p.stats.refused).sum();
    let refused = match refused {
        0 => String::new(),
        n => format!(
            " and {}",
            stats::plural(n, "refused write", "refused writes")
        ),
    };
    let failovers = drill
        .reports
        .iter()
        .filter(|p| p.outcome.starts_with("failover"))
        .count();
    let failbacks = drill
        .reports
        .iter()
        .filter(|p| p.outcome.starts_with("failback"))
        .count();
    let verdict = format!(
        "Drill done in {:.0} s: {failovers} failovers and {failbacks} failbacks, {}{refused} out of {total}.",
        took.as_secs_f64(),
        stats::plural(errors, "failed request", "failed requests"),
    );
    say!();
    say!(
        "{}",
        if errors == 0 {
            style.good(&verdict)
        } else {
            style.bold(&verdict)
        }
    );
    say!(
        "Next: write a switchyard.toml for your service and run `switchyard run --config switchyard.toml`."
    );
}
