//! Memory the process has freed, given back to the system.
//!
//! glibc's malloc keeps what is freed in its arenas for reuse and returns it to the system only
//! from the top of a heap. After a burst (100,000 creates in 30 s, or a busy tick's task lists,
//! settles and webhooks) most of what was used stays resident though free. Asking for it back
//! once a second took the gateway at 100,000 tasks in flight from 89.5 to 62.7 MiB, and its
//! peak from 111 to 87 MiB (em-bench, back to back).

use std::time::Duration;

/// How often freed memory is given back.
const EVERY: Duration = Duration::from_secs(1);

/// glibc's malloc arenas kept at most: with one per thread that ever allocates (the runtime's
/// workers, actix's, the blocking pool's), each keeps its own free memory and its own
/// fragments. Call before any thread starts.
///
/// An operator's `MALLOC_ARENA_MAX` is left to glibc.
pub fn limit_arenas() {
    #[cfg(all(target_os = "linux", target_env = "gnu"))]
    if std::env::var_os("MALLOC_ARENA_MAX").is_none() {
        // SAFETY: mallopt takes no pointers; called before other threads exist.
        unsafe {
            libc::mallopt(libc::M_ARENA_MAX, 2);
        }
    }
}

/// Gives freed memory back every [`EVERY`]; runs until aborted. Does nothing where the
/// allocator is not glibc's.
pub async fn give_back_freed_memory() {
    if !cfg!(all(target_os = "linux", target_env = "gnu")) {
        return;
    }
    let mut every = tokio::time::interval(EVERY);
    every.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        every.tick().await;
        // It walks every arena under that arena's lock: not on an async worker.
        let _ = tokio::task::spawn_blocking(trim).await;
    }
}

/// Whether any memory went back.
#[cfg(all(target_os = "linux", target_env = "gnu"))]
fn trim() -> bool {
    // SAFETY: malloc_trim takes no pointers and locks each arena it walks: it may be called
    // from any thread at any time.
    unsafe { libc::malloc_trim(0) == 1 }
}

#[cfg(not(all(target_os = "linux", target_env = "gnu")))]
fn trim() -> bool {
    false
}

#[cfg(all(test, target_os = "linux", target_env = "gnu"))]
mod tests {
    #[test]
    fn memory_freed_below_what_is_still_used_goes_back_to_the_system() {
        // 64 MiB in small blocks, all freed but the last, which keeps the top of its heap in
        // use so that glibc cannot return the rest by itself. (Whether pages went back is what
        // malloc_trim answers; resident size is process-wide, moved by tests running beside.)
        let mut blocks: Vec<Box<[u8; 1024]>> =
            (0..64 * 1024).map(|_| Box::new([1u8; 1024])).collect();
        let last = blocks.pop();
        drop(blocks);
        assert!(super::trim(), "nothing went back to the system");
        drop(last);
    }
}
