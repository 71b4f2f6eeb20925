//! The instance's plugin value and hook dispatch, independent of the ABI.
//!
//! `init` builds the plugin and keeps it in a thread-local: a component instance is
//! single-threaded, and the host calls `init` once before any hook. Only the wasm glue calls
//! this module outside tests.
#![cfg_attr(not(target_arch = "wasm32"), allow(dead_code))]

use std::cell::RefCell;

use crate::{Decision, Plugin, Request, Response, ResponseAction, UnavailableAction};

thread_local! {
    static PLUGIN: RefCell<Option<Box<dyn Plugin>>> = const { RefCell::new(None) };
}

/// Parses the JSON config and builds the plugin. On error the instance is left without a
/// plugin, so a host that calls a hook anyway gets a trap rather than stale state.
pub(crate) fn init<P: Plugin>(config: &str) -> Result<(), String> {
    PLUGIN.with_borrow_mut(|slot| *slot = None);
    let config = if config.trim().is_empty() {
        serde_json::Value::Object(serde_json::Map::new())
    } else {
        serde_json::from_str(config).map_err(|e| format!("plugin config is not JSON: {e}"))?
    };
    let plugin = P::init(config)?;
    PLUGIN.with_borrow_mut(|slot| *slot = Some(Box::new(plugin)));
    Ok(())
}

/// Runs `f` on the plugin. A hook before a successful `init` breaks the host contract; the
/// panic traps, which the host handles like any plugin failure.
fn with_plugin<R>(f: impl FnOnce(&dyn Plugin) -> R) -> R {
    PLUGIN.with_borrow(|slot| match slot {
        Some(plugin) => f(plugin.as_ref()),
        None => panic!("switchyard-sdk: hook called before a successful init"),
    })
}

pub(crate) fn on_request(req: &Request) -> Decision {
    with_plugin(|p| p.on_request(req))
}

pub(crate) fn on_response(req: &Request, resp: &Response) -> ResponseAction {
    with_plugin(|p| p.on_response(req, resp))
}

pub(crate) fn on_unavailable(req: &Request) -> UnavailableAction {
    with_plugin(|p| p.on_unavailable(req))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Hook;

    struct Echo {
        region: String,
    }

    impl Plugin for Echo {
        fn init(config: serde_json::Value) -> Result<Self, String> {
            match config.get("region").and_then(|r| r.as_str()) {
                Some(region) => Ok(Echo {
                    region: region.to_owned(),
                }),
                None => Err("region is required".into()),
            }
        }

        fn on_request(&self, _req: &Request) -> Decision {
            Decision::pin(&self.region)
        }
    }

    #[test]
    fn init_then_hooks_reach_the_plugin() {
        init::<Echo>(r#"{"region":"westus"}"#).expect("init");
        let req = Request::new("GET", "/");
        assert_eq!(on_request(&req), Decision::pin("westus"));
        assert_eq!(on_unavailable(&req), UnavailableAction::Default);
        let resp = Response {
            status: 200,
            region: "westus".into(),
            headers: vec![],
        };
        assert_eq!(on_response(&req, &resp), ResponseAction::Pass);
    }

    /// Answers every response itself, so the host must keep calling `on_response`.
    struct Stamp;

    impl Plugin for Stamp {
        fn init(_config: serde_json::Value) -> Result<Self, String> {
            Ok(Stamp)
        }

        fn on_response(&self, _req: &Request, _resp: &Response) -> ResponseAction {
            ResponseAction::SetHeaders(vec![("x-stamp".into(), "1".into())])
        }
    }

    #[test]
    fn default_hooks_tell_the_host_to_skip_them_and_overrides_do_not() {
        let resp = Response {
            status: 200,
            region: "westus".into(),
            headers: vec![],
        };
        let req = Request::new("GET", "/");

        let host = crate::testing::MockHost::new();
        init::<Echo>(r#"{"region":"westus"}"#).expect("init");
        assert!(
            !host.skips(Hook::OnResponse),
            "nothing is skipped before a hook ran"
        );
        on_response(&req, &resp);
        on_unavailable(&req);
        assert!(host.skips(Hook::OnResponse));
        assert!(host.skips(Hook::OnUnavailable));

        let host = crate::testing::MockHost::new();
        init::<Stamp>("{}").expect("init");
        assert_ne!(on_response(&req, &resp), ResponseAction::Pass);
        on_request(&req);
        assert!(!host.skips(Hook::OnResponse));
    }

    #[test]
    fn config_errors_come_back_as_init_errors() {
        assert_eq!(init::<Echo>("").expect_err("refused"), "region is required");
        let err = init::<Echo>("{not json").expect_err("refused");
        assert!(err.starts_with("plugin config is not JSON"), "{err}");
    }

    #[test]
    #[should_panic(expected = "before a successful init")]
    fn a_failed_init_leaves_no_plugin_behind() {
        init::<Echo>(r#"{"region":"westus"}"#).expect("init");
        let _ = init::<Echo>("{}");
        on_request(&Request::new("GET", "/"));
    }
}
