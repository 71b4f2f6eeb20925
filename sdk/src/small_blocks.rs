//! The plugin's memory allocator: a free list per size class for small blocks, in front of
//! the system allocator.
//!
//! Each hook call allocates a few small blocks and frees them as it returns: the strings of
//! its arguments (the host asks the plugin to allocate them), the names in a decision, the
//! bindings' scratch lists. wasi-libc's dlmalloc, the default on `wasm32-wasip2`, spends
//! about 300 instructions on each allocation and free with Rust's shims around it: measured
//! with `bench/instructions.sh`, a third of a whole `on-request` call of the read-preference
//! plugin. Popping and pushing a free list takes a few instructions; with it the whole call
//! costs a fifth less (bench/README.md).
//!
//! Blocks of up to [`MAX_SMALL`] bytes are rounded up to a power of two and never given back
//! to the system allocator: a freed block waits on its class's list for the next allocation
//! of that class. So a plugin's memory stays at the most it ever had in use per class, which
//! for code that handles one request at a time is small, and the host's memory cap still
//! bounds it. Larger or over-aligned blocks go to the system allocator unchanged.
//!
//! Installed as the global allocator of plugins built with the SDK's default `allocator`
//! feature (wasm32 only). A plugin that wants its own turns the feature off.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::ptr;

/// The smallest class: 16 bytes, so every block is 16-aligned and can hold the list link.
const MIN_SHIFT: u32 = 4;
/// Classes of 16, 32, ... 1024 bytes.
const CLASSES: usize = 7;
/// Largest block served from a free list.
pub const MAX_SMALL: usize = 1 << (MIN_SHIFT as usize + CLASSES - 1);
/// Alignment of every block of a class (the system allocator gives at least this when asked).
const BLOCK_ALIGN: usize = 1 << MIN_SHIFT;

/// Free lists of small blocks; see the module documentation.
pub struct SmallBlocks {
    /// Head of each class's list; a free block's first word points to the next one.
    heads: [Cell<*mut u8>; CLASSES],
}

// SAFETY: the allocator is only shared as a `static` on wasm32 without the `atomics` target
// feature, where there is exactly one thread: nothing can touch the lists concurrently.
#[cfg(all(target_arch = "wasm32", not(target_feature = "atomics")))]
unsafe impl Sync for SmallBlocks {}

impl SmallBlocks {
    pub const fn new() -> Self {
        SmallBlocks {
            heads: [const { Cell::new(ptr::null_mut()) }; CLASSES],
        }
    }
}

impl Default for SmallBlocks {
    fn default() -> Self {
        Self::new()
    }
}

/// The class of a block of this layout, or `None` when it is the system allocator's.
fn class_of(layout: Layout) -> Option<usize> {
    if layout.size() > MAX_SMALL || layout.align() > BLOCK_ALIGN {
        return None;
    }
    let rounded = layout.size().max(BLOCK_ALIGN).next_power_of_two();
    Some((rounded.trailing_zeros() - MIN_SHIFT) as usize)
}

/// The layout a block of `class` is taken from the system allocator with.
fn class_layout(class: usize) -> Layout {
    // Powers of two from 16 to MAX_SMALL with an alignment of 16: always valid.
    Layout::from_size_align(BLOCK_ALIGN << class, BLOCK_ALIGN).unwrap_or(Layout::new::<u128>())
}

// SAFETY: every block handed out is either fresh from `System` with at least the requested
// size and alignment (a class block is the class's size, a power of two at least as large as
// the request, aligned to 16 which is at least the requested alignment), or a block of the same
// class that was freed and so is no longer in use. A block goes back to the list of the class
// its layout maps to, which is the class it was allocated from, since `dealloc` and `realloc`
// are given the layout the block was allocated with.
unsafe impl GlobalAlloc for SmallBlocks {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        let Some(class) = class_of(layout) else {
            // SAFETY: the caller's layout contract passes through.
            return unsafe { System.alloc(layout) };
        };
        let head = self.heads[class].get();
        if head.is_null() {
            // SAFETY: a valid, non-zero-sized layout.
            return unsafe { System.alloc(class_layout(class)) };
        }
        // SAFETY: `head` is a free block of this class; its first word, written by `dealloc`
        // (blocks are 16-aligned and at least 16 bytes), is the next free block or null.
        self.heads[class].set(unsafe { head.cast::<*mut u8>().read() });
        head
    }

    unsafe fn dealloc(&self, block: *mut u8, layout: Layout) {
        let Some(class) = class_of(layout) else {
            // SAFETY: a block of this layout came from `System.alloc` (see `alloc`).
            return unsafe { System.dealloc(block, layout) };
        };
        // SAFETY: the caller no longer uses `block`, which is a whole block of this class.
        unsafe { block.cast::<*mut u8>().write(self.heads[class].get()) };
        self.heads[class].set(block);
    }

    unsafe fn realloc(&self, block: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: `GlobalAlloc::realloc`'s contract: `new_size`, rounded up to the alignment,
        // does not overflow `isize`.
        let new_layout = unsafe { Layout::from_size_align_unchecked(new_size, layout.align()) };
        match (class_of(layout), class_of(new_layout)) {
            // The block already has room: a string growing by a few bytes stays where it is.
            (Some(old), Some(new)) if old == new => block,
            // SAFETY: both are the system allocator's blocks; the contract passes through.
            (None, None) => unsafe { System.realloc(block, layout, new_size) },
            _ => {
                // SAFETY: as `alloc`, `dealloc`; the two blocks are distinct live blocks.
                unsafe {
                    let moved = self.alloc(new_layout);
                    if !moved.is_null() {
                        ptr::copy_nonoverlapping(block, moved, layout.size().min(new_size));
                        self.dealloc(block, layout);
                    }
                    moved
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn make_layout(size: usize, align: usize) -> Layout {
        Layout::from_size_align(size, align).expect("a valid layout")
    }

    #[test]
    fn sizes_map_to_the_smallest_class_that_holds_them() {
        let class = |size, align| class_of(make_layout(size, align));
        assert_eq!(class(1, 1), Some(0));
        assert_eq!(class(16, 8), Some(0));
        assert_eq!(class(17, 1), Some(1));
        assert_eq!(class(100, 4), Some(3));
        assert_eq!(class(1024, 16), Some(6));
        assert_eq!(class(1025, 1), None);
        assert_eq!(class(8, 32), None, "over-aligned blocks go to the system");
    }

    /// Allocates, fills, reallocates and frees blocks of many sizes in an interleaved order,
    /// checking that no live block is handed out twice or loses its contents.
    #[test]
    fn live_blocks_keep_their_contents_through_reuse_and_realloc() {
        let heap = SmallBlocks::new();
        let mut live: Vec<(*mut u8, Layout, u8)> = Vec::new();
        let fill = |p: *mut u8, len: usize, tag: u8| unsafe { ptr::write_bytes(p, tag, len) };
        let intact = |p: *const u8, len: usize, tag: u8| unsafe {
            std::slice::from_raw_parts(p, len).iter().all(|&b| b == tag)
        };
        // A fixed pseudo-random sequence: sizes across every class and beyond.
        let mut seed = 0x2545_f491_u32;
        let mut next = move || {
            seed ^= seed << 13;
            seed ^= seed >> 17;
            seed ^= seed << 5;
            seed
        };
        for round in 0..4000u32 {
            let tag = (round % 251) as u8 + 1;
            match next() % 4 {
                0 | 1 => {
                    let size = 1 + (next() as usize % 1500);
                    let align = 1 << (next() % 6);
                    let layout = make_layout(size, align);
                    let p = unsafe { heap.alloc(layout) };
                    assert!(!p.is_null());
                    assert_eq!(p as usize % align, 0, "alignment of {layout:?}");
                    fill(p, size, tag);
                    live.push((p, layout, tag));
                }
                2 if !live.is_empty() => {
                    let (p, layout, tag) = live.swap_remove(next() as usize % live.len());
                    assert!(
                        intact(p, layout.size(), tag),
                        "block of {layout:?} overwritten"
                    );
                    unsafe { heap.dealloc(p, layout) };
                }
                3 if !live.is_empty() => {
                    let i = next() as usize % live.len();
                    let (p, layout, old) = live[i];
                    let new_size = 1 + (next() as usize % 1500);
                    let q = unsafe { heap.realloc(p, layout, new_size) };
                    assert!(!q.is_null());
                    let kept = layout.size().min(new_size);
                    assert!(intact(q, kept, old), "realloc lost contents of {layout:?}");
                    let layout = make_layout(new_size, layout.align());
                    fill(q, new_size, tag);
                    live[i] = (q, layout, tag);
                }
                _ => {}
            }
            // Every live block still holds what was written to it.
            if round % 500 == 0 {
                for &(p, layout, tag) in &live {
                    assert!(
                        intact(p, layout.size(), tag),
                        "block of {layout:?} overwritten"
                    );
                }
            }
        }
        for (p, layout, tag) in live {
            assert!(intact(p, layout.size(), tag));
            unsafe { heap.dealloc(p, layout) };
        }
    }

    #[test]
    fn a_freed_block_is_reused_by_its_class() {
        let heap = SmallBlocks::new();
        let layout = make_layout(40, 8);
        let first = unsafe { heap.alloc(layout) };
        unsafe { heap.dealloc(first, layout) };
        let same_class = make_layout(64, 1);
        assert_eq!(unsafe { heap.alloc(same_class) }, first);
        let other_class = make_layout(65, 1);
        let other = unsafe { heap.alloc(other_class) };
        assert_ne!(other, first);
        unsafe {
            heap.dealloc(first, same_class);
            heap.dealloc(other, other_class);
        }
    }
}
