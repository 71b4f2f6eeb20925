//! Throughput cost of one plugin on the request path: two `switchyard` processes side by side
//! in front of the same fake regions, one without plugins and one with `read-preference`,
//! driven in alternating rounds by the same keep-alive clients; prints both request rates and
//! their ratio. Because the machine is shared (clients, fake regions and both proxies on 2
//! cores, plus whatever else runs), it also reports what is immune to that noise: each
//! proxy's own CPU time per request (from `/proc/PID/stat`), and their ratio.
//!
//! ```text
//! cargo build --release -p switchyard
//! cargo run --release -p switchyard-tests --bin plugin_overhead -- [REQUESTS] [CONNECTIONS] [ROUNDS]
//! ```
//!
//! The proxy binary is `SWITCHYARD_BIN` or the one next to this program (build both with the
//! same profile). Everything runs on 127.0.0.1; every loop is bounded by count and time.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use anyhow::{Context, Result, bail};
use switchyard_tests::{FakeRegion, ProxyProcess, TestConfig, http1_client, plugin};

/// Bound on one measured round.
const ROUND_LIMIT: Duration = Duration::from_secs(60);

/// Sends `requests` GETs to `url` over `connections` concurrent keep-alive clients;
/// returns requests per second. Any failure aborts the measurement.
async fn drive(url: &str, requests: u64, connections: u64) -> Result<f64> {
    let next = Arc::new(AtomicU64::new(0));
    let started = Instant::now();
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (url, next) = (url.to_owned(), next.clone());
        tasks.push(tokio::spawn(async move {
            let client = http1_client().with_timeout(Duration::from_secs(10));
            while next.fetch_add(1, Ordering::Relaxed) < requests {
                if started.elapsed() > ROUND_LIMIT {
                    bail!("round took longer than {ROUND_LIMIT:?}");
                }
                let resp = client.get(&url).await?;
                if resp.status != 200 {
                    bail!("status {} from {url}", resp.status);
                }
            }
            Ok(())
        }));
    }
    for t in tasks {
        t.await.context("client task")??;
    }
    Ok(requests as f64 / started.elapsed().as_secs_f64())
}

/// CPU time (user + system, all threads) the process `pid` has used, in seconds.
fn cpu_seconds(pid: Option<u32>) -> Result<f64> {
    let pid = pid.context("proxy has exited")?;
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat"))?;
    // Fields after the parenthesised command name; utime and stime are fields 14 and 15.
    let rest = stat.rsplit_once(')').map(|(_, r)| r).unwrap_or_default();
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks = |i: usize| -> Result<f64> {
        Ok(fields.get(i).context("short /proc stat")?.parse::<f64>()?)
    };
    // Field 14 is index 11 after the state field (field 3 is index 0).
    Ok((ticks(11)? + ticks(12)?) / 100.0)
}

/// Drives `proxy` and returns (requests per second, CPU seconds the proxy used).
async fn measure(
    proxy: &ProxyProcess,
    url: &str,
    requests: u64,
    connections: u64,
) -> Result<(f64, f64)> {
    let before = cpu_seconds(proxy.pid())?;
    let rate = drive(url, requests, connections).await?;
    Ok((rate, cpu_seconds(proxy.pid())? - before))
}

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(|a, b| a.total_cmp(b));
    v.get(v.len() / 2).copied().unwrap_or(f64::NAN)
}

fn arg(n: usize, default: u64) -> Result<u64> {
    match std::env::args().nth(n) {
        Some(a) => a.parse().with_context(|| format!("argument {n}: {a:?}")),
        None => Ok(default),
    }
}

#[tokio::main(flavor = "multi_thread", worker_threads = 1)]
async fn main() -> Result<()> {
    let requests = arg(1, 40_000)?;
    let connections = arg(2, 8)?;
    let rounds = arg(3, 20)?.max(2);
    let west = FakeRegion::new("westus").start().await;
    let east = FakeRegion::new("northeurope").start().await;
    let plain = TestConfig::new(&[&west, &east]);
    let with_plugin = TestConfig::new(&[&west, &east]).plugin(
        &plugin("read_preference")?,
        "fail-closed",
        r#"{ preferred = ["westus"] }"#,
    );
    let a_proxy = ProxyProcess::start(&plain.render()).await?;
    let b_proxy = ProxyProcess::start(&with_plugin.render()).await?;
    let (url_a, url_b) = (plain.url("/orders/42"), with_plugin.url("/orders/42"));
    println!(
        "proxy without plugin: pid {:?}, with plugin: pid {:?}",
        a_proxy.pid(),
        b_proxy.pid()
    );
    // Warm both (connections, plugin instances, caches).
    drive(&url_a, 2_000, connections).await?;
    drive(&url_b, 2_000, connections).await?;

    let outcome = rounds_of(
        &a_proxy,
        &b_proxy,
        (&url_a, &url_b),
        requests,
        connections,
        rounds,
    )
    .await;
    if outcome.is_err() {
        for (name, p) in [("without plugin", &a_proxy), ("with plugin", &b_proxy)] {
            let logs = p.stderr();
            let tail: Vec<&str> = logs.lines().rev().take(10).collect();
            eprintln!(
                "--- proxy {name}, last log lines (newest first) ---\n{}",
                tail.join("\n")
            );
        }
    }
    outcome
}

async fn rounds_of(
    a_proxy: &ProxyProcess,
    b_proxy: &ProxyProcess,
    (url_a, url_b): (&str, &str),
    requests: u64,
    connections: u64,
    rounds: u64,
) -> Result<()> {
    let per_round = (requests / rounds).max(1);
    let (mut rates_a, mut rates_b, mut ratios) = (Vec::new(), Vec::new(), Vec::new());
    let (mut cpu_a, mut cpu_b) = (0.0, 0.0);
    for round in 0..rounds {
        // Alternate which proxy goes first, so drift on the shared machine hits both.
        let ((a, ca), (b, cb)) = if round % 2 == 0 {
            let a = measure(a_proxy, url_a, per_round, connections).await?;
            (a, measure(b_proxy, url_b, per_round, connections).await?)
        } else {
            let b = measure(b_proxy, url_b, per_round, connections).await?;
            (measure(a_proxy, url_a, per_round, connections).await?, b)
        };
        println!(
            "round {round:>2}: without plugin {a:>7.0} req/s   with read-preference {b:>7.0} req/s   ratio {:.3}",
            b / a
        );
        rates_a.push(a);
        rates_b.push(b);
        ratios.push(b / a);
        cpu_a += ca;
        cpu_b += cb;
    }
    let total = (per_round * rounds) as f64;
    let (us_a, us_b) = (cpu_a / total * 1e6, cpu_b / total * 1e6);
    let ratio = median(ratios);
    println!(
        "{} requests per proxy, {connections} connections, {rounds} rounds\n\
         throughput (median): without plugin {:.0} req/s, with one plugin (read-preference) {:.0} req/s\n\
         throughput ratio with/without (median of rounds): {ratio:.3} (cost {:.1}%)\n\
         proxy CPU per request: without {us_a:.1} us, with {us_b:.1} us: ratio {:.3} (+{:.1} us, cost {:.1}%)",
        per_round * rounds,
        median(rates_a),
        median(rates_b),
        (1.0 - ratio) * 100.0,
        us_b / us_a,
        us_b - us_a,
        (1.0 - us_a / us_b) * 100.0
    );
    Ok(())
}
