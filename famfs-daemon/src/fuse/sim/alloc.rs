//! Allocation counting for test binaries: [`CountingAlloc`], the system allocator counting
//! allocations per thread, and [`thread_allocations`], this thread's count.
//!
//! Owns the per-thread counter only; it forwards every call to the system allocator unchanged.

use std::{
    alloc::{GlobalAlloc, Layout, System},
    cell::Cell,
};

// Allocation counting.

thread_local! {
    static ALLOCATIONS: Cell<u64> = const { Cell::new(0) };
}

/// Heap allocations (`alloc`, `alloc_zeroed`, `realloc`) this thread has made so far, when the
/// binary's global allocator is [`CountingAlloc`]; 0 otherwise.
pub fn thread_allocations() -> u64 {
    ALLOCATIONS.try_with(Cell::get).unwrap_or(0)
}

fn count_allocation() {
    // `try_with`: allocations during thread-local teardown are not counted (never a panic).
    let _ = ALLOCATIONS.try_with(|c| c.set(c.get() + 1));
}

/// The system allocator, counting allocations per thread ([`thread_allocations`]). For test
/// binaries that check a thread allocates nothing per request:
/// `#[global_allocator] static GLOBAL: CountingAlloc = CountingAlloc;`
pub struct CountingAlloc;

// SAFETY: forwards every call to the system allocator unchanged; only counts (in a const-initialised
// thread-local `Cell`, which itself never allocates).
unsafe impl GlobalAlloc for CountingAlloc {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }

    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        count_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }

    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        count_allocation();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}
