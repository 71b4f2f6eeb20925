//! The host side of the plugin ABI: the one `bindgen!` over `sdk/wit/policy.wit`.
//!
//! Host functions never trap on a plugin's input (the WIT promises that), so the imports are
//! plain, not trappable.

wasmtime::component::bindgen!({
    path: "../sdk/wit/policy.wit",
    world: "policy",
});

pub use self::switchyard::policy::{host, types};
