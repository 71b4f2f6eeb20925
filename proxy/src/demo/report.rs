//! What the demo prints: colors (or not), the live one-line-per-second ticker, the summary table.

use std::fmt::Write as _;
use std::io::IsTerminal;
use std::sync::Arc;
use std::time::Duration;

use tokio::sync::watch;
use tokio::task::JoinHandle;
use tokio::time::{Instant, MissedTickBehavior};

use super::MAX_RUNTIME;
use super::stats::Stats;
use super::traffic::Samples;

/// ANSI colors only when stdout is a terminal (and `NO_COLOR` is unset).
#[derive(Debug, Clone, Copy)]
pub struct Style {
    color: bool,
}

impl Style {
    pub fn detect() -> Style {
        Style {
            color: std::io::stdout().is_terminal() && std::env::var_os("NO_COLOR").is_none(),
        }
    }

    fn paint(&self, code: &str, text: &str) -> String {
        if self.color {
            format!("\x1b[{code}m{text}\x1b[0m")
        } else {
            text.to_owned()
        }
    }

    pub fn bold(&self, text: &str) -> String {
        self.paint("1", text)
    }

    pub fn good(&self, text: &str) -> String {
        self.paint("32", text)
    }

    pub fn bad(&self, text: &str) -> String {
        self.paint("31", text)
    }

    pub fn dim(&self, text: &str) -> String {
        self.paint("2", text)
    }

    /// Red when non-zero.
    pub fn errors(&self, n: u64) -> String {
        if n == 0 {
            n.to_string()
        } else {
            self.bad(&n.to_string())
        }
    }
}

/// Prints one line per second until `stop` flips.
pub fn spawn_ticker(
    samples: Arc<Samples>,
    phase: watch::Receiver<String>,
    started: Instant,
    style: Style,
    mut stop: watch::Receiver<bool>,
) -> JoinHandle<()> {
    tokio::spawn(async move {
        let mut tick =
            tokio::time::interval_at(started + Duration::from_secs(1), Duration::from_secs(1));
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        let mut cursor = samples.count();
        let mut last = started;
        let end = started + MAX_RUNTIME;
        while Instant::now() < end {
            tokio::select! {
                now = tick.tick() => {
                    let batch = samples.since(cursor);
                    cursor += batch.len();
                    let elapsed = now.saturating_duration_since(last).max(Duration::from_millis(1));
                    last = now;
                    let name = phase.borrow().clone();
                    say!("{}", live_line(&style, now - started, &name, &Stats::of(&batch), elapsed));
                }
                _ = stop.changed() => break,
            }
        }
    })
}

/// `[ 12s] kill westus        | 398 req/s | errors 0 | served by northeurope 100% | attempts/req 1.02`
fn live_line(style: &Style, at: Duration, phase: &str, stats: &Stats, window: Duration) -> String {
    let rate = stats.requests as f64 / window.as_secs_f64();
    format!(
        "[{:>3}s] {:<18} | {:>3.0} req/s | errors {}{} | served by {} | attempts/req {:.2}",
        at.as_secs_f64().round() as u64,
        phase,
        rate,
        style.errors(stats.errors),
        refused_note(stats.refused),
        stats.served_by(),
        stats.attempts_per_request(),
    )
}

/// One finished phase, for the summary.
pub struct PhaseReport {
    pub name: String,
    pub stats: Stats,
    /// "failover 4 ms", "failback 3.41 s", ...
    pub outcome: String,
}

pub fn summary(style: &Style, phases: &[PhaseReport]) -> String {
    let mut out = String::new();
    let _ = writeln!(out, "\n{}", style.bold("Summary"));
    let header = format!(
        "  {:<20} {:>8} {:>7} {:>8}  {:<34} {}",
        "phase", "requests", "errors", "refused", "served by", "failover / failback"
    );
    let _ = writeln!(out, "{}", style.dim(&header));
    for p in phases {
        // Pad before painting, so colors do not break the columns.
        let errors = format!("{:>7}", p.stats.errors);
        let errors = if p.stats.errors == 0 {
            errors
        } else {
            style.bad(&errors)
        };
        let _ = writeln!(
            out,
            "  {:<20} {:>8} {} {:>8}  {:<34} {}",
            p.name,
            p.stats.requests,
            errors,
            p.stats.refused,
            p.stats.served_by(),
            p.outcome
        );
    }
    if phases.iter().any(|p| p.stats.refused > 0) {
        let _ = writeln!(
            out,
            "  {}",
            style.dim("refused: writes the sidecar answered itself with a 503 while the write region was down")
        );
    }
    out
}

/// ", 1 write refused" when there were any.
fn refused_note(refused: u64) -> String {
    match refused {
        0 => String::new(),
        1 => ", 1 write refused".to_owned(),
        n => format!(", {n} writes refused"),
    }
}
