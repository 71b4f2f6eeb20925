//! The plugin host in process, with the real built components: what it saves is invisible on
//! the wire, so these tests drive `PluginChain` directly.
//!
//! - The host stops calling a hook a plugin leaves at its default (the SDK says so through
//!   `skip-hook` the first time the default runs), and keeps calling hooks a plugin implements.
//! - The SDK keeps a plugin's region list and asks for it again only when `regions-version`
//!   moves, so every new routing snapshot must reach the plugin at once.

use std::path::Path;

use http::{HeaderMap, Method, StatusCode};
use switchyard::health::{HealthSnapshot, RegionState, RegionView};
use switchyard::plugin::{PluginChain, build_chain};
use switchyard::policy::{Decision, Policy, RequestHead, ResponseAction};

fn chain(plugin: &str, config: &str) -> PluginChain {
    let wasm = switchyard_tests::plugin(plugin).expect("plugin components build");
    let text = switchyard_tests::plugin_service_toml(&wasm, config);
    let cfg = switchyard::config::parse(Path::new("host.toml"), &text).expect("valid config");
    let svc = cfg.services.into_iter().next().expect("one service");
    build_chain(&svc)
        .expect("plugin loads")
        .expect("a chain for a service with plugins")
}

fn region(name: &str, priority: u32, healthy: bool, write: bool) -> RegionView {
    RegionView {
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
        recovering_since: None,
    }
}

fn get(headers: &HeaderMap) -> RequestHead<'_> {
    RequestHead {
        id: 1,
        method: &Method::GET,
        path: "/orders/1",
        headers,
        authority: None,
    }
}

/// One request through `chain`'s hooks, as the pipeline calls them when it may.
fn one_request(chain: &PluginChain) -> Option<ResponseAction> {
    let headers = HeaderMap::new();
    let head = get(&headers);
    let snapshot = HealthSnapshot::new(vec![region("westus", 0, true, true)]);
    chain.on_request(&head, &snapshot).expect("not refused");
    chain
        .wants_responses()
        .then(|| chain.on_response(&head, StatusCode::OK, "westus", &HeaderMap::new()))
}

#[test]
fn a_default_on_response_is_called_once_then_skipped() {
    let chain = chain("read_preference", r#"{ preferred = ["westus"] }"#);
    assert!(
        chain.wants_responses(),
        "nothing is known before the first call"
    );
    assert_eq!(one_request(&chain), Some(ResponseAction::Pass));
    assert!(!chain.wants_responses(), "the SDK default said skip");
    for _ in 0..3 {
        assert_eq!(one_request(&chain), None);
    }
}

#[test]
fn an_implemented_on_response_keeps_being_called() {
    let chain = chain(
        "decider",
        r#"{ decision = "default", stamp = "x-seen-by" }"#,
    );
    for _ in 0..3 {
        let action = one_request(&chain);
        assert!(
            matches!(&action, Some(ResponseAction::SetHeaders(h)) if h.iter().any(|(n, v)| n == "x-seen-by" && v == "westus")),
            "{action:?}"
        );
        assert!(chain.wants_responses());
    }
}

#[test]
fn every_new_snapshot_reaches_a_plugin_that_caches_regions() {
    let chain = chain("read_preference", r#"{ preferred = ["northeurope"] }"#);
    let headers = HeaderMap::new();
    let head = get(&headers);
    let snapshot = |northeurope_healthy| {
        HealthSnapshot::new(vec![
            region("westus", 0, true, true),
            region("northeurope", 1, northeurope_healthy, false),
        ])
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
