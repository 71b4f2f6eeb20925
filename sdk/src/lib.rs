//! Write Switchyard policy plugins in Rust.
//!
//! A plugin is one [`Plugin`] impl plus [`export_plugin!`]; `cargo build --release --target
//! wasm32-wasip2` turns the crate into a WebAssembly component that the sidecar loads. The
//! ABI is `wit/policy.wit` (package `switchyard:policy`); this crate hides the generated
//! bindings behind the plain types below.
//!
//! ```
//! use switchyard_sdk::{Decision, Plugin, Request, export_plugin, host};
//!
//! /// Sends reads to the write region while it is healthy.
//! struct ReadFromPrimary;
//!
//! impl Plugin for ReadFromPrimary {
//!     fn init(_config: serde_json::Value) -> Result<Self, String> {
//!         Ok(ReadFromPrimary)
//!     }
//!
//!     fn on_request(&self, req: &Request) -> Decision {
//!         match host::write_region() {
//!             Some(write) if req.is_read() && write.healthy => Decision::prefer([write.name]),
//!             _ => Decision::Default,
//!         }
//!     }
//! }
//!
//! export_plugin!(ReadFromPrimary);
//! ```
//!
//! On targets other than wasm32 the [`host`] functions are backed by
//! [`testing::MockHost`], so `cargo test` runs plugin logic natively.
//!
//! # Layout
//!
//! - `types`: [`Request`], [`Response`], [`Decision`], [`LocalResponse`], [`ResponseAction`],
//!   [`UnavailableAction`], [`Region`], [`LogLevel`].
//! - [`host`]: functions the sidecar provides (headers, regions, log, counters, key-value, clock).
//! - [`config`]: reading the plugin's JSON config, durations as in the sidecar config.
//! - `runtime`: the instance's plugin value and hook dispatch.
//! - `guest` (wasm32): generated bindings and the exported hooks.
//! - `small_blocks` (wasm32): the plugin's allocator, free lists of small blocks (feature
//!   `allocator`, on by default).
//! - [`testing`] (not wasm32): the mock host.

pub mod config;
#[cfg(target_arch = "wasm32")]
mod guest;
pub mod host;
mod runtime;
#[cfg(any(test, target_arch = "wasm32"))]
#[allow(unsafe_code)] // an allocator is unsafe code by nature; each block says why it holds
mod small_blocks;
#[cfg(not(target_arch = "wasm32"))]
pub mod testing;
mod types;

/// See `small_blocks`: a hook call's allocations cost a dozen instructions instead of hundreds.
#[cfg(all(target_arch = "wasm32", feature = "allocator"))]
#[global_allocator]
static ALLOCATOR: small_blocks::SmallBlocks = small_blocks::SmallBlocks::new();

pub use types::{
    Decision, Header, Hook, LocalResponse, LogLevel, Region, Regions, Request, Response,
    ResponseAction, UnavailableAction,
};

/// A policy plugin. The host builds one value per instance with [`Plugin::init`] and calls the
/// hooks on it; every hook defaults to "do nothing special".
///
/// An instance is one of several warm copies the host keeps, so a plugin value is not a
/// singleton: state that other requests must see goes in the key-value store
/// ([`host::kv_set`]), not in fields.
pub trait Plugin: 'static {
    /// Builds the plugin from its `config` table (`{}` when absent). The error is shown to
    /// the operator as the reason the config is refused.
    fn init(config: serde_json::Value) -> Result<Self, String>
    where
        Self: Sized;

    /// Decides where a request goes, before any region is contacted.
    fn on_request(&self, req: &Request) -> Decision {
        let _ = req;
        Decision::Default
    }

    /// Adjusts a region's response before it is sent to the client.
    ///
    /// Leave it out unless you need it: the default also tells the host it need not call this
    /// hook again, which saves about a microsecond per request.
    fn on_response(&self, req: &Request, resp: &Response) -> ResponseAction {
        let _ = (req, resp);
        host::skip_hook(Hook::OnResponse);
        ResponseAction::Pass
    }

    /// Answers a request no region could serve.
    fn on_unavailable(&self, req: &Request) -> UnavailableAction {
        let _ = req;
        host::skip_hook(Hook::OnUnavailable);
        UnavailableAction::Default
    }
}

/// Exports a [`Plugin`] type as the component's hooks. Use once per plugin crate. On targets
/// other than wasm32 it only checks that the type implements [`Plugin`].
#[macro_export]
macro_rules! export_plugin {
    ($plugin:ty) => {
        const _: () = {
            fn assert_plugin<P: $crate::Plugin>() {}
            let _ = assert_plugin::<$plugin>;
        };
        #[cfg(target_arch = "wasm32")]
        const _: () = {
            type SwitchyardPlugin = $crate::__private::Adapter<$plugin>;
            $crate::__private::bindings::__export_policy_world!(
                SwitchyardPlugin with_types_in $crate::__private::bindings
            );
        };
    };
}

#[doc(hidden)]
#[cfg(target_arch = "wasm32")]
pub mod __private {
    pub use crate::guest::{Adapter, bindings};
}
