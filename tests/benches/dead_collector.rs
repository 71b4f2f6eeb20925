//! Does a dead OTLP collector slow requests down? Three proxies in front of the same fake
//! region, side by side: telemetry off, tracing to a port where nothing listens, and tracing
//! to a live (fake) collector. Each sends the same requests in interleaved rounds, so load on
//! the machine hits them alike; the ratios against "off" are the result.
//!
//! ```text
//! cargo build --release -p switchyard
//! cargo bench -p switchyard-tests --bench dead_collector
//! ```
//!
//! `BENCH_REQUESTS` (default 4000 per proxy) and `BENCH_CONCURRENCY` (default 4) size it; the
//! whole run stops after `BENCH_MAX_SECS` (default 120) whatever it reached.

use std::time::{Duration, Instant};

use switchyard_tests::{
    FakeCollector, FakeRegion, HttpClient, ProxyProcess, TestConfig, free_port, http1_client,
    wait_until,
};

const ROUNDS: usize = 8;

fn env_usize(name: &str, default: usize) -> usize {
    std::env::var(name)
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(default)
}

struct Subject {
    name: &'static str,
    proxy: ProxyProcess,
    url: String,
    latencies: Vec<Duration>,
    busy: Duration,
    /// Process CPU time when the measured rounds started.
    cpu_before: Option<Duration>,
}

async fn start(name: &'static str, region: &FakeRegion, telemetry: Option<String>) -> Subject {
    let mut cfg = TestConfig::new(&[region]);
    if let Some(endpoint) = telemetry {
        cfg = cfg.top(&format!("[telemetry]\notlp_endpoint = \"{endpoint}\"\n"));
    }
    let proxy = ProxyProcess::builder(&cfg.render())
        // Export as often as possible: the worst case for a dead collector.
        .env("OTEL_BSP_SCHEDULE_DELAY", "100")
        .env("RUST_LOG", "warn")
        .start()
        .await
        .expect("proxy starts (run `cargo build --release -p switchyard` first)");
    Subject {
        name,
        proxy,
        url: cfg.url("/bench"),
        latencies: Vec::new(),
        busy: Duration::ZERO,
        cpu_before: None,
    }
}

/// `n` requests over `concurrency` keep-alive connections; returns each latency and the wall time.
async fn run(url: &str, n: usize, concurrency: usize) -> (Vec<Duration>, Duration) {
    let started = Instant::now();
    let mut workers = Vec::new();
    for w in 0..concurrency {
        let url = url.to_owned();
        let count = n / concurrency + usize::from(w < n % concurrency);
        workers.push(tokio::spawn(async move {
            let client: HttpClient = http1_client().with_timeout(Duration::from_secs(5));
            let mut latencies = Vec::with_capacity(count);
            for _ in 0..count {
                let t = Instant::now();
                let resp = client.get(&url).await.expect("request through the proxy");
                assert_eq!(resp.status, 200);
                latencies.push(t.elapsed());
            }
            latencies
        }));
    }
    let mut all = Vec::with_capacity(n);
    for w in workers {
        all.extend(w.await.expect("worker"));
    }
    (all, started.elapsed())
}

/// User + system CPU time of a process, all threads (Linux `/proc/PID/stat`).
fn cpu_time(pid: Option<u32>) -> Option<Duration> {
    let stat = std::fs::read_to_string(format!("/proc/{}/stat", pid?)).ok()?;
    // Fields after the parenthesised command name; utime and stime are the 12th and 13th.
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: u64 = fields.get(11)?.parse::<u64>().ok()? + fields.get(12)?.parse::<u64>().ok()?;
    // USER_HZ is 100 on every Linux this runs on.
    Some(Duration::from_millis(ticks * 10))
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    if sorted.is_empty() {
        return Duration::ZERO;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i.min(sorted.len() - 1)]
}

fn metric(text: &str, prefix: &str) -> f64 {
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0.0)
}

#[tokio::main(flavor = "multi_thread", worker_threads = 2)]
async fn main() {
    let requests = env_usize("BENCH_REQUESTS", 4000).max(ROUNDS);
    let concurrency = env_usize("BENCH_CONCURRENCY", 4).max(1);
    let max = Duration::from_secs(env_usize("BENCH_MAX_SECS", 120) as u64);

    let region = FakeRegion::new("westus").start().await;
    let collector = FakeCollector::grpc().await;
    let dead = format!("http://127.0.0.1:{}", free_port());
    let mut subjects = vec![
        start("telemetry off", &region, None).await,
        start("dead collector", &region, Some(dead)).await,
        start("live collector", &region, Some(collector.endpoint())).await,
    ];
    for s in &subjects {
        run(&s.url, 200, concurrency).await;
    }
    // Measure the steady state of a dead collector: once the proxy has found it dead.
    let noticed = wait_until(Duration::from_secs(20), || {
        subjects[1].proxy.stderr().contains("trace export failed")
    })
    .await;
    assert!(noticed, "the dead collector was never noticed");

    for s in &mut subjects {
        s.cpu_before = cpu_time(s.proxy.pid());
    }
    let started = Instant::now();
    let per_round = requests / ROUNDS;
    let mut rounds = 0;
    // Bounded by ROUNDS and by the time limit.
    for round in 0..ROUNDS {
        if started.elapsed() > max {
            eprintln!("time limit reached after {round} rounds");
            break;
        }
        // Rotate who goes first, so warm caches and background work favour no one.
        let n = subjects.len();
        for k in 0..n {
            let s = &mut subjects[(round + k) % n];
            let (latencies, busy) = run(&s.url, per_round, concurrency).await;
            s.latencies.extend(latencies);
            s.busy += busy;
        }
        rounds += 1;
    }

    println!(
        "\n{} requests per proxy ({rounds} rounds x {per_round}, {concurrency} connections)\n",
        per_round * rounds
    );
    println!(
        "{:<16} {:>10} {:>10} {:>10} {:>10} {:>14}",
        "", "req/s", "p50", "p99", "mean", "CPU/request"
    );
    let mut summary = Vec::new();
    for s in &mut subjects {
        s.latencies.sort();
        let mean = s.latencies.iter().sum::<Duration>() / s.latencies.len().max(1) as u32;
        let rps = s.latencies.len() as f64 / s.busy.as_secs_f64().max(1e-9);
        let (p50, p99) = (
            percentile(&s.latencies, 0.5),
            percentile(&s.latencies, 0.99),
        );
        let cpu = match (s.cpu_before, cpu_time(s.proxy.pid())) {
            (Some(before), Some(after)) => {
                (after.saturating_sub(before)) / s.latencies.len().max(1) as u32
            }
            _ => Duration::ZERO,
        };
        println!(
            "{:<16} {:>10.0} {:>10.1?} {:>10.1?} {:>10.1?} {:>14.1?}",
            s.name, rps, p50, p99, mean, cpu
        );
        summary.push((rps, p50, p99, cpu));
    }
    let (off, dead) = (summary[0], summary[1]);
    let live = summary[2];
    let ratio = |a: Duration, b: Duration| a.as_secs_f64() / b.as_secs_f64().max(1e-12);
    for (label, a, b) in [
        ("dead collector / off", dead, off),
        ("live collector / off", live, off),
        ("dead collector / live collector", dead, live),
    ] {
        println!(
            "{label}: throughput {:.3}, p50 {:.3}, p99 {:.3}, CPU {:.3}",
            a.0 / b.0,
            ratio(a.1, b.1),
            ratio(a.2, b.2),
            ratio(a.3, b.3)
        );
    }
    let dead_metrics = subjects[1].proxy.metrics().await.unwrap_or_default();
    let dropped = |reason: &str| {
        metric(
            &dead_metrics,
            &format!("switchyard_trace_spans_dropped_total{{reason=\"{reason}\"}}"),
        )
    };
    println!(
        "dead collector: spans dropped: export-failed {}, queue-full {}, not made (collector-down) {}; warnings logged: {}",
        dropped("export-failed"),
        dropped("queue-full"),
        dropped("collector-down"),
        subjects[1]
            .proxy
            .stderr()
            .matches("trace export failed")
            .count()
    );
    println!("live collector: {} spans received", collector.spans().len());
}
