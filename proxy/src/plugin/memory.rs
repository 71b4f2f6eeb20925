//! Handing memory back to the OS after loading plugins.
//!
//! The binary's allocator is mimalloc (see `main.rs`), which keeps freed pages for reuse and
//! returns them to the OS only on later allocator activity of the same thread. Loading
//! plugins is such a burst (file bytes, compiled artifacts, metadata; about 3 MiB with the
//! three example plugins) on a thread that may then sit idle, so without a nudge that memory
//! stays resident for good. Where the allocator is not mimalloc (library use), this only
//! tidies mimalloc's own, unused, heap.

/// Returns the memory this thread has freed, and any the allocator holds for purging, to
/// the OS. Costs a few syscalls: for load and reload, never the request path.
#[allow(unsafe_code)]
pub(super) fn release_freed() {
    // SAFETY: `mi_collect` has no preconditions: any thread may call it at any time, and it
    // only frees what no live allocation uses.
    unsafe { libmimalloc_sys::mi_collect(true) }
}
