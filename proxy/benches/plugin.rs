//! Per-call cost of a WebAssembly plugin on the request path, against the built-in policy.
//!
//! `cargo bench -p switchyard --bench plugin` builds the plugins for wasm32-wasip2 with the
//! test harness (`switchyard_tests::plugin`, into `target/plugin-wasm`), then times `Policy::on_request` and `Policy::on_response` in a loop on
//! warm instances and prints nanoseconds per call. Bounded: a fixed number of calls per case.

use std::hint::black_box;
use std::path::Path;
use std::time::{Duration, Instant};

use http::{HeaderMap, HeaderValue, Method, StatusCode};
use switchyard::health::{HealthSnapshot, RegionState, RegionView};
use switchyard::policy::{DefaultPolicy, Policy, RequestHead};

/// The proxy binary's allocator, so allocation costs what it costs in the proxy.
#[global_allocator]
static GLOBAL: mimalloc::MiMalloc = mimalloc::MiMalloc;

const WARMUP: u32 = 20_000;
const CALLS: u32 = 200_000;
/// Rounds per case; the best round is reported (the machine is shared).
const ROUNDS: u32 = 5;

fn service(plugin: &str, config: &str) -> Result<switchyard::config::ServiceConfig, String> {
    let wasm = switchyard_tests::plugin(plugin).map_err(|e| e.to_string())?;
    let text = switchyard_tests::plugin_service_toml(&wasm, config);
    let cfg = switchyard::config::parse(Path::new("bench.toml"), &text)
        .map_err(|e| format!("config: {e}"))?;
    cfg.services
        .into_iter()
        .next()
        .ok_or_else(|| "no service".to_string())
}

fn snapshot() -> HealthSnapshot {
    let view = |name: &str, priority: u32, write: bool| RegionView {
        name: name.into(),
        priority,
        state: RegionState::Healthy,
        write,
        serviceable: true,
        stable: true,
        recovering_since: None,
    };
    HealthSnapshot::new(vec![view("westus", 0, true), view("northeurope", 1, false)])
}

fn headers() -> HeaderMap {
    let mut h = HeaderMap::new();
    for (n, v) in [
        ("host", "orders.internal"),
        ("user-agent", "bench/1.0"),
        ("accept", "application/json"),
        ("x-request-id", "4bf92f3577b34da6a3ce929d0e0e4736"),
        ("x-session-id", "alice"),
    ] {
        h.insert(n, HeaderValue::from_static(v));
    }
    h
}

/// A named call to time.
type Case<'a> = (&'static str, Box<dyn FnMut() + 'a>);

/// Best-of-rounds nanoseconds per call of each case. Rounds are interleaved (every case runs
/// once per round), so a slow spell of the shared machine hits all cases alike and their
/// differences stay meaningful.
fn time_interleaved(cases: &mut [Case<'_>]) -> Vec<f64> {
    for (_, f) in cases.iter_mut() {
        for _ in 0..WARMUP {
            f();
        }
    }
    let mut best = vec![Duration::MAX; cases.len()];
    for _ in 0..ROUNDS {
        for (i, (_, f)) in cases.iter_mut().enumerate() {
            let t0 = Instant::now();
            for _ in 0..CALLS {
                f();
            }
            best[i] = best[i].min(t0.elapsed());
        }
    }
    best.iter()
        .map(|d| d.as_nanos() as f64 / f64::from(CALLS))
        .collect()
}

fn on_request(policy: &dyn Policy, method: &Method, headers: &HeaderMap, snap: &HealthSnapshot) {
    let head = RequestHead {
        id: 1,
        method,
        path: "/orders/42?expand=items",
        headers,
        authority: Some("orders.internal"),
    };
    let decided = policy.on_request(&head, snap);
    black_box(decided.is_ok());
}

fn main() -> Result<(), String> {
    let snap = snapshot();
    let req_headers = headers();
    let resp_headers = {
        let mut h = HeaderMap::new();
        h.insert("content-type", HeaderValue::from_static("application/json"));
        h.insert("content-length", HeaderValue::from_static("512"));
        h.insert(
            "date",
            HeaderValue::from_static("Sun, 22 Nov 2026 06:00:00 GMT"),
        );
        h
    };
    let read_pref = switchyard::plugin::build_policy(&service(
        "read_preference",
        r#"{ preferred = ["northeurope"] }"#,
    )?)
    .map_err(|e| e.to_string())?
    .ok_or("no chain")?;
    let write_pin = switchyard::plugin::build_policy(&service(
        "write_pinning",
        r#"{ session_header = "x-session-id" }"#,
    )?)
    .map_err(|e| e.to_string())?
    .ok_or("no chain")?;
    let builtin = DefaultPolicy;

    let get = Method::GET;
    let post = Method::POST;
    let head = RequestHead {
        id: 1,
        method: &get,
        path: "/orders/42",
        headers: &req_headers,
        authority: None,
    };
    // While routing changes on every request (the worst case for the SDK's region cache):
    // three snapshots in turn over the pool's two warm instances, so no instance sees the
    // snapshot it saw last and every call fetches the regions again.
    let changing = [snapshot(), snapshot(), snapshot()];
    let turn = std::cell::Cell::new(0usize);
    let next = || {
        turn.set((turn.get() + 1) % changing.len());
        &changing[turn.get()]
    };
    let (hdrs, snap) = (&req_headers, &snap);
    let (rp, wp) = (&*read_pref, &*write_pin);
    let mut cases: Vec<Case<'_>> = vec![
        (
            "built-in DefaultPolicy, GET",
            Box::new(|| on_request(&builtin, &get, hdrs, snap)),
        ),
        (
            "read-preference, GET (regions, cached)",
            Box::new(|| on_request(rp, &get, hdrs, snap)),
        ),
        (
            "read-preference, GET (regions fetched)",
            Box::new(|| on_request(rp, &get, hdrs, next())),
        ),
        (
            "read-preference, POST (default)",
            Box::new(|| on_request(rp, &post, hdrs, snap)),
        ),
        (
            "write-pinning, POST (regions cached, header, kv-set)",
            Box::new(|| on_request(wp, &post, hdrs, snap)),
        ),
        (
            "write-pinning, POST (regions fetched, header, kv-set)",
            Box::new(|| on_request(wp, &post, hdrs, next())),
        ),
        (
            "write-pinning, GET (header, kv-get)",
            Box::new(|| on_request(wp, &get, hdrs, snap)),
        ),
        (
            "on_response: read-preference (3 headers, pass)",
            Box::new(|| {
                let action = rp.on_response(&head, StatusCode::OK, "westus", &resp_headers);
                black_box(action);
            }),
        ),
    ];
    let times = time_interleaved(&mut cases);
    println!("ns per call (best of {ROUNDS} interleaved rounds x {CALLS} calls):");
    for ((name, _), ns) in cases.iter().zip(&times) {
        println!(
            "  {name:<54} {ns:>8.0} ns   (+{:.0} ns over built-in)",
            ns - times[0]
        );
    }
    Ok(())
}
