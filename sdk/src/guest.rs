//! The component glue (wasm32 only): bindings generated from `wit/policy.wit`, the exported
//! hooks, and conversions between generated and public types.

use std::marker::PhantomData;

use crate::{
    Decision, LocalResponse, LogLevel, Plugin, Region, Request, Response, ResponseAction,
    UnavailableAction, runtime,
};

/// The generated bindings. Public only so `export_plugin!` can reach them from a plugin crate.
#[doc(hidden)]
#[allow(unsafe_code)]
pub mod bindings {
    wit_bindgen::generate!({
        path: "wit/policy.wit",
        world: "policy",
        pub_export_macro: true,
        export_macro_name: "__export_policy_world",
    });
}

use bindings::exports::switchyard::policy::plugin::Guest;
use bindings::switchyard::policy::{host, types as wit};

/// Implements the exported hooks for plugin type `P`; `export_plugin!` exports it.
#[doc(hidden)]
pub struct Adapter<P>(PhantomData<P>);

impl<P: Plugin> Guest for Adapter<P> {
    fn init(config: String) -> Result<(), String> {
        runtime::init::<P>(&config)
    }

    fn on_request(req: wit::RequestHead) -> wit::Decision {
        runtime::on_request(&req.into()).into()
    }

    fn on_response(req: wit::RequestHead, resp: wit::ResponseHead) -> wit::ResponseAction {
        let resp = Response {
            status: resp.status,
            region: resp.region,
            headers: resp.headers,
        };
        runtime::on_response(&req.into(), &resp).into()
    }

    fn on_unavailable(req: wit::RequestHead) -> wit::UnavailableAction {
        runtime::on_unavailable(&req.into()).into()
    }
}

impl From<wit::RequestHead> for Request {
    fn from(head: wit::RequestHead) -> Self {
        let req = Request::new(head.method, head.path).with_id(head.id);
        match head.authority {
            Some(authority) => req.with_authority(authority),
            None => req,
        }
    }
}

impl From<LocalResponse> for wit::LocalResponse {
    fn from(resp: LocalResponse) -> Self {
        wit::LocalResponse {
            status: resp.status,
            headers: resp.headers,
            body: resp.body,
        }
    }
}

impl From<Decision> for wit::Decision {
    fn from(decision: Decision) -> Self {
        match decision {
            Decision::Default => wit::Decision::Default,
            Decision::Prefer(regions) => wit::Decision::Prefer(regions),
            Decision::Pin(region) => wit::Decision::Pin(region),
            Decision::Local(resp) => wit::Decision::Local(resp.into()),
        }
    }
}

impl From<ResponseAction> for wit::ResponseAction {
    fn from(action: ResponseAction) -> Self {
        match action {
            ResponseAction::Pass => wit::ResponseAction::Pass,
            ResponseAction::SetHeaders(headers) => wit::ResponseAction::SetHeaders(headers),
            ResponseAction::Replace(resp) => wit::ResponseAction::Replace(resp.into()),
        }
    }
}

impl From<UnavailableAction> for wit::UnavailableAction {
    fn from(action: UnavailableAction) -> Self {
        match action {
            UnavailableAction::Default => wit::UnavailableAction::Default,
            UnavailableAction::Stale => wit::UnavailableAction::Stale,
            UnavailableAction::Local(resp) => wit::UnavailableAction::Local(resp.into()),
        }
    }
}

/// The host functions behind [`crate::host`] on wasm32.
pub(crate) mod wasm {
    use std::cell::RefCell;

    use super::{LogLevel, Region, host, wit};
    use crate::Regions;

    thread_local! {
        /// The last region list and the `regions-version` it was fetched at.
        static REGIONS: RefCell<Option<(u64, Regions)>> = const { RefCell::new(None) };
    }

    pub(crate) fn get_header(name: &str) -> Option<String> {
        host::get_header(name)
    }

    /// The cached list while the host's version is the one it was fetched at; one host call
    /// that copies nothing, instead of one that copies every region and its name.
    pub(crate) fn regions() -> Regions {
        let version = host::regions_version();
        REGIONS.with(|cache| {
            let mut cache = cache.borrow_mut();
            if let Some((v, regions)) = cache.as_ref()
                && *v == version
            {
                return regions.clone();
            }
            let regions: Regions = host::regions()
                .into_iter()
                .map(|r| Region {
                    name: r.name,
                    priority: r.priority,
                    healthy: r.healthy,
                    write: r.write,
                    latency_ms: r.latency_ms,
                })
                .collect();
            *cache = Some((version, regions.clone()));
            regions
        })
    }

    pub(crate) fn log(level: LogLevel, message: &str) {
        let level = match level {
            LogLevel::Trace => wit::LogLevel::Trace,
            LogLevel::Debug => wit::LogLevel::Debug,
            LogLevel::Info => wit::LogLevel::Info,
            LogLevel::Warn => wit::LogLevel::Warn,
            LogLevel::Error => wit::LogLevel::Error,
        };
        host::log(level, message)
    }

    pub(crate) fn counter_add(name: &str, delta: u64) {
        host::counter_add(name, delta)
    }

    pub(crate) fn kv_get(key: &str) -> Option<Vec<u8>> {
        host::kv_get(key)
    }

    pub(crate) fn kv_set(key: &str, value: &[u8], ttl_ms: u32) {
        host::kv_set(key, value, ttl_ms)
    }

    pub(crate) fn kv_delete(key: &str) {
        host::kv_delete(key)
    }

    pub(crate) fn now_ms() -> u64 {
        host::now_ms()
    }

    pub(crate) fn skip_hook(hook: crate::Hook) {
        host::skip_hook(match hook {
            crate::Hook::OnResponse => wit::Hook::OnResponse,
            crate::Hook::OnUnavailable => wit::Hook::OnUnavailable,
        })
    }
}
