//! The counting global allocator of the test binaries that measure memory: live heap bytes
//! (the whole binary's), their peak since a reset, and what one thread allocates. Included with
//! `#[path = "alloc/mod.rs"] mod alloc;` by a binary of its own: it replaces the allocator of
//! every test in the binary, whose tests then measure one at a time ([`SERIAL`]).
#![allow(unsafe_code, dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicIsize, AtomicUsize, Ordering};

/// Bytes allocated and not yet freed, by the whole test binary.
static LIVE: AtomicIsize = AtomicIsize::new(0);
/// The most `LIVE` reached since the last [`reset_peak`].
static PEAK: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// Bytes allocated by this thread so far (never decreased): what one call allocates,
    /// whatever other threads do meanwhile.
    static ALLOCATED: Cell<usize> = const { Cell::new(0) };
}

/// Held by each test while it measures: the counters are process-wide.
pub(crate) static SERIAL: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

struct Counting;

fn grew(bytes: isize) {
    let live = LIVE.fetch_add(bytes, Ordering::Relaxed) + bytes;
    PEAK.fetch_max(live.max(0) as usize, Ordering::Relaxed);
}

/// Adds `bytes` to this thread's allocated total (not during thread teardown).
fn allocated(bytes: usize) {
    let _ = ALLOCATED.try_with(|total| total.set(total.get() + bytes));
}

// SAFETY: every call is forwarded to the system allocator unchanged; only counters are added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        grew(layout.size() as isize);
        allocated(layout.size());
        // SAFETY: the caller's layout contract is passed on.
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        LIVE.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        // SAFETY: `ptr` came from `alloc` with this layout.
        unsafe { System.dealloc(ptr, layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        grew(new_size as isize - layout.size() as isize);
        allocated(new_size);
        // SAFETY: as for `alloc` and `dealloc`.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

/// Live heap bytes of the whole binary now.
pub(crate) fn live() -> isize {
    LIVE.load(Ordering::Relaxed)
}

/// Starts measuring the peak from the live bytes now.
pub(crate) fn reset_peak() {
    PEAK.store(live().max(0) as usize, Ordering::Relaxed);
}

/// The most live heap bytes since [`reset_peak`].
pub(crate) fn peak() -> isize {
    PEAK.load(Ordering::Relaxed) as isize
}

/// The bytes this thread allocates while running `f`.
pub(crate) fn allocated_by(f: impl FnOnce()) -> usize {
    let before = ALLOCATED.with(Cell::get);
    f();
    ALLOCATED.with(Cell::get) - before
}
