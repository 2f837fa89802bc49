//! A global allocator that counts live and peak bytes (CPU memory measurement).
//!
//! ```no_run
//! #[global_allocator]
//! static ALLOC: slimfit_memory::CountingAllocator = slimfit_memory::CountingAllocator;
//!
//! # fn run_step() {}
//! slimfit_memory::counting::reset_peak();
//! run_step();
//! let peak = slimfit_memory::counting::peak();
//! ```
//!
//! A second, independent window ([`window_peak`], [`reset_window`]) measures a part of a run
//! — one training step, say — without disturbing the whole run's [`peak`].
//!
//! Every allocation, reallocation and deallocation of the process goes through two relaxed
//! atomic updates; the peak is maintained with `fetch_max`, so it is exact even with several
//! threads allocating at once.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicU64, Ordering};

use crate::Bytes;

static LIVE: AtomicU64 = AtomicU64::new(0);
static PEAK: AtomicU64 = AtomicU64::new(0);
static ACTIVE: AtomicU64 = AtomicU64::new(0);
static WINDOW_PEAK: AtomicU64 = AtomicU64::new(0);

/// The system allocator with live/peak byte counters. Install it with `#[global_allocator]`.
#[derive(Debug, Default, Clone, Copy)]
pub struct CountingAllocator;

fn grow(bytes: usize) {
    let live = LIVE.fetch_add(bytes as u64, Ordering::Relaxed) + bytes as u64;
    PEAK.fetch_max(live, Ordering::Relaxed);
    WINDOW_PEAK.fetch_max(live, Ordering::Relaxed);
}

fn shrink(bytes: usize) {
    LIVE.fetch_sub(bytes as u64, Ordering::Relaxed);
}

// SAFETY: every method forwards to `System` with the caller's layout and only adds counter
// updates, which cannot affect the memory returned.
unsafe impl GlobalAlloc for CountingAllocator {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let ptr = unsafe { System.alloc(layout) };
        if !ptr.is_null() {
            ACTIVE.store(1, Ordering::Relaxed);
            grow(layout.size());
        }
        ptr
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let ptr = unsafe { System.alloc_zeroed(layout) };
        if !ptr.is_null() {
            ACTIVE.store(1, Ordering::Relaxed);
            grow(layout.size());
        }
        ptr
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: forwarded unchanged.
        unsafe { System.dealloc(ptr, layout) };
        shrink(layout.size());
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        // SAFETY: forwarded unchanged.
        let new = unsafe { System.realloc(ptr, layout, new_size) };
        if !new.is_null() {
            if new_size >= layout.size() {
                grow(new_size - layout.size());
            } else {
                shrink(layout.size() - new_size);
            }
        }
        new
    }
}

/// `true` once the counting allocator has served an allocation, i.e. it is installed.
pub fn is_installed() -> bool {
    ACTIVE.load(Ordering::Relaxed) == 1
}

/// Bytes currently allocated through the counting allocator.
pub fn live() -> Bytes {
    Bytes(LIVE.load(Ordering::Relaxed))
}

/// Highest live byte count since the last [`reset_peak`].
pub fn peak() -> Bytes {
    Bytes(PEAK.load(Ordering::Relaxed))
}

/// Starts a new peak window at the current live byte count.
pub fn reset_peak() {
    PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}

/// Highest live byte count since the last [`reset_window`] (independent of [`peak`]).
pub fn window_peak() -> Bytes {
    Bytes(WINDOW_PEAK.load(Ordering::Relaxed))
}

/// Sets [`peak`] and [`window_peak`] back to values read earlier (each at least the live
/// count): work done in between that is not part of what is measured — writing a
/// checkpoint during training, say — leaves no trace in either.
pub fn restore_peaks(peak: Bytes, window: Bytes) {
    let live = LIVE.load(Ordering::Relaxed);
    PEAK.store(peak.0.max(live), Ordering::Relaxed);
    WINDOW_PEAK.store(window.0.max(live), Ordering::Relaxed);
}

/// Starts a new window at the current live byte count; [`peak`] is left alone.
pub fn reset_window() {
    WINDOW_PEAK.store(LIVE.load(Ordering::Relaxed), Ordering::Relaxed);
}
