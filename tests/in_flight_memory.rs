//! What the poller's in-flight set holds per task followed: 100,000 tasks in flight must stay
//! within the gateway's memory target with room for everything else. A binary of its own: it
//! counts the bytes the whole process holds, which tests running beside it would move.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicIsize, Ordering};

use em_gateway::domain::{Operation, TaskId};
use em_gateway::store::InFlight;
use em_gateway::tasks::InFlightSet;

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

#[test]
fn a_task_in_flight_costs_its_ids_and_little_more() {
    const TASKS: usize = 100_000;
    // As EM names them: four logon sessions, each counting its own tasks.
    let sessions: Vec<String> = (0..4)
        .map(|i| format!("a7b3c1d2-0000-4000-8000-00000000000{i}"))
        .collect();
    let before = HELD.load(Ordering::Relaxed);
    let tasks: Vec<InFlight> = (0..TASKS)
        .map(|n| InFlight {
            id: TaskId::new(),
            operation: Operation::CreateCloudGateway,
            target_id: None,
            em_task_id: format!("task-{}", n / 4 + 1),
            em_session_id: sessions[n % 4].clone(),
        })
        .collect();
    let ids: Vec<TaskId> = tasks.iter().map(|t| t.id).collect();
    let set = InFlightSet::new();
    // What is held once the rows are handed over and gone: the set, and the list of ids.
    set.add(tasks);
    let held =
        HELD.load(Ordering::Relaxed) - before - (ids.capacity() * size_of::<TaskId>()) as isize;
    assert_eq!(set.len(), TASKS);
    let per_task = held / TASKS as isize;
    eprintln!("{TASKS} tasks in flight hold {held} bytes, {per_task} a task");
    // 191 bytes a task when EM's task id was a string shared by two maps; under 64 MiB at
    // 100,000 in flight leaves the rest of the gateway ~50 MiB.
    assert!(per_task <= 128, "{per_task} bytes a task");
    set.forget(ids.iter().copied());
    assert!(set.is_empty());
    drop(ids);
    // Emptied, the set gives its tables' room back.
    let left = HELD.load(Ordering::Relaxed) - before;
    assert!(
        left < 64 * 1024,
        "{left} bytes held once every task is forgotten"
    );
}
