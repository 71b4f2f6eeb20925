//! What a plugin sees of the service's regions: the SDK keeps the list between calls and asks
//! the host for it again only when `regions-version` moves, so every new routing snapshot
//! must reach the plugin at once. In process, with the real built read-preference component,
//! alternating snapshots many times on the same warm instances.

use std::path::Path;

use http::{HeaderMap, Method};
use switchyard::health::{HealthSnapshot, RegionState, RegionView};
use switchyard::plugin::build_chain;
use switchyard::policy::{Decision, Policy, RequestHead};

fn snapshot(northeurope_healthy: bool) -> HealthSnapshot {
    let view = |name: &str, priority: u32, healthy: bool, write: bool| RegionView {
        name: name.into(),
        priority,
        state: if healthy {
            RegionState::Healthy
        } else {
            RegionState::Unhealthy
        },
        write,
        serviceable: healthy,
        stable: healthy,
    };
    HealthSnapshot::new(vec![
        view("westus", 0, true, true),
        view("northeurope", 1, northeurope_healthy, false),
    ])
}

#[test]
fn every_new_snapshot_reaches_a_plugin_that_caches_regions() {
    let wasm = switchyard_tests::plugin("read_preference").expect("plugin components build");
    let text = switchyard_tests::plugin_service_toml(&wasm, r#"{ preferred = ["northeurope"] }"#);
    let cfg = switchyard::config::parse(Path::new("regions.toml"), &text).expect("valid config");
    let svc = cfg.services.into_iter().next().expect("one service");
    let chain = build_chain(&svc)
        .expect("plugin loads")
        .expect("a chain for a service with plugins");
    let headers = HeaderMap::new();
    let head = RequestHead {
        id: 1,
        method: &Method::GET,
        path: "/orders/1",
        headers: &headers,
        authority: None,
    };
    let both = Decision::Prefer(vec!["northeurope".into(), "westus".into()]);
    let west_only = Decision::Prefer(vec!["westus".into()]);
    let (up, down) = (snapshot(true), snapshot(false));
    for round in 0..50 {
        // The same snapshot twice (served from the cache), then the other one.
        for (snap, expected) in [(&up, &both), (&up, &both), (&down, &west_only)] {
            let decided = chain.on_request(&head, snap).expect("not refused");
            assert_eq!(&decided, expected, "round {round}");
        }
    }
}
