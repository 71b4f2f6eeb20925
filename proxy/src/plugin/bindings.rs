//! The host side of the plugin ABI: the one `bindgen!` over `sdk/wit/policy.wit`.
//!
//! Host functions never trap on a plugin's input (the WIT promises that), so the imports are
//! plain, not trappable. What the host passes to hooks is borrowed (`&str`, slices): the
//! request's method, path and headers are lowered into the plugin straight from the host's
//! own copies, with no owned intermediate per call.

wasmtime::component::bindgen!({
    path: "../sdk/wit/policy.wit",
    world: "policy",
    ownership: Borrowing {
        duplicate_if_necessary: true
    },
});

pub use self::switchyard::policy::{host, types};
