//! A counting global allocator for the tests that prove a path allocates nothing.
//!
//! The allocator type lives here; each test crate that wants it installs it itself
//! (a `#[global_allocator]` must be declared in the crate):
//!
//! ```ignore
//! mod common;
//! use common::alloc::{allocations, assert_counter_works};
//!
//! #[global_allocator]
//! static GLOBAL: common::alloc::Counting = common::alloc::Counting;
//! ```
//!
//! Every allocation and reallocation (`alloc_zeroed` included) is counted twice: per
//! thread ([`allocs`], [`allocations`]), so that the test harness's threads and tests
//! running in parallel do not disturb the figure, and for the whole process
//! ([`all_allocs`]), for paths that allocate on threads of their own.

// Each test crate compiles this module on its own and uses a different subset of it;
// what one crate does not call would warn as dead code there.
#![allow(dead_code)]

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::sync::atomic::{AtomicU64, Ordering};

/// Forwards to the system allocator unchanged; only counts.
pub struct Counting;

static ALL: AtomicU64 = AtomicU64::new(0);

thread_local! {
    // const-initialised and without Drop: reaching it never allocates, so it is safe
    // inside the allocator.
    static THREAD: Cell<u64> = const { Cell::new(0) };
}

fn count() {
    ALL.fetch_add(1, Ordering::Relaxed);
    // `try_with`: the allocator may run while this thread's locals are torn down.
    let _ = THREAD.try_with(|n| n.set(n.get() + 1));
}

// SAFETY: forwards every call unchanged to the system allocator; the bookkeeping touches
// only an atomic and a const-initialised thread-local, neither of which allocates.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: `ptr` came from `System` with this layout (every call above forwards).
        unsafe { System.dealloc(ptr, layout) }
    }
}

/// Allocations made so far by this thread.
pub fn allocs() -> u64 {
    THREAD.with(Cell::get)
}

/// Allocations made so far by every thread of the process.
pub fn all_allocs() -> u64 {
    ALL.load(Ordering::SeqCst)
}

/// Allocations made by `f` on this thread, and what `f` returned.
pub fn allocations<T>(f: impl FnOnce() -> T) -> (u64, T) {
    let before = allocs();
    let out = f();
    (allocs() - before, out)
}

/// The counter sees this thread's allocations (so a zero measured after it means
/// something, and a crate that forgot to install [`Counting`] fails here).
#[track_caller]
pub fn assert_counter_works() {
    let (thread, all) = (allocs(), all_allocs());
    let v = std::hint::black_box(vec![1u8; 16]);
    drop(v);
    assert_eq!(
        allocs(),
        thread + 1,
        "the counting allocator is not installed"
    );
    assert!(all_allocs() > all, "the process-wide count did not move");
}
