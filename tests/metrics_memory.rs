//! The metrics recorder keeps each histogram sample until it is folded into its buckets. A
//! binary of its own: it counts the bytes the whole process holds, which tests running beside
//! it would move.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};
use std::time::Duration;

/// The system allocator, counting the bytes held.
struct Counting;

static HELD: AtomicIsize = AtomicIsize::new(0);

// SAFETY: every call goes to the system allocator unchanged; only a counter is added.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        HELD.fetch_add(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.alloc(layout) }
    }

    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        HELD.fetch_sub(layout.size() as isize, Ordering::Relaxed);
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static ALLOCATOR: Counting = Counting;

#[tokio::test]
async fn samples_nobody_scrapes_are_folded_away() {
    em_gateway::telemetry::install().expect("a recorder");
    let record = || {
        for _ in 0..200_000 {
            em_gateway::telemetry::http_request("/healthz", "GET", 200, Duration::from_micros(20));
        }
    };
    let held = || HELD.load(Ordering::Relaxed);
    let start = held();
    record();
    let first = held() - start;
    assert!(first > 1_000_000, "200,000 samples held {first} bytes");
    // Folded each time, rounds of samples come and go: what is held stops growing. (Folded
    // blocks are freed a little later, by the recorder's epoch reclamation, so the first
    // rounds are not compared.)
    fold_once().await;
    record();
    fold_once().await;
    let steady = held();
    for _ in 0..4 {
        record();
        fold_once().await;
    }
    let grown = held() - steady;
    assert!(
        grown < first / 10,
        "four more rounds of 200,000 samples, each folded, held {grown} more bytes (one round {first})"
    );
}

/// The folding task's first round runs at once; it then waits for the next.
async fn fold_once() {
    let _ = tokio::time::timeout(
        Duration::from_millis(200),
        em_gateway::telemetry::fold_samples(),
    )
    .await;
}
