//! Where the machine's time goes while a run is measured: for each process, how long its
//! threads ran and how long they waited, runnable, for a core (the kernel's schedstat, summed
//! over `/proc/PID/task/*/schedstat`). On two shared cores a request that hops between
//! processes and threads waits for a core at every hop; this measures that wait.

use std::ops::Sub;
use std::time::Duration;

#[derive(Debug, Clone, Copy, Default)]
pub struct Sched {
    pub run: Duration,
    pub wait: Duration,
    /// Times a thread was put on a core: each wake of a sleeping thread is one, so this counts
    /// the hops a request makes between threads and processes.
    pub slices: u64,
}

impl Sub for Sched {
    type Output = Sched;
    fn sub(self, before: Sched) -> Sched {
        Sched {
            run: self.run.saturating_sub(before.run),
            wait: self.wait.saturating_sub(before.wait),
            slices: self.slices.saturating_sub(before.slices),
        }
    }
}

impl std::ops::Add for Sched {
    type Output = Sched;
    fn add(self, other: Sched) -> Sched {
        Sched {
            run: self.run + other.run,
            wait: self.wait + other.wait,
            slices: self.slices + other.slices,
        }
    }
}

/// The threads of one process, summed (threads that ended meanwhile are not counted).
pub fn of(pid: u32) -> Sched {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return Sched::default();
    };
    tasks
        .filter_map(Result::ok)
        .map(|t| thread(&t.path().join("schedstat")))
        .fold(Sched::default(), |a, b| a + b)
}

fn thread(path: &std::path::Path) -> Sched {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let mut fields = text
        .split_whitespace()
        .map(|f| f.parse::<u64>().unwrap_or(0));
    Sched {
        run: Duration::from_nanos(fields.next().unwrap_or(0)),
        wait: Duration::from_nanos(fields.next().unwrap_or(0)),
        slices: fields.next().unwrap_or(0),
    }
}

/// Each of these processes.
pub fn each(pids: &[u32]) -> std::collections::HashMap<u32, Sched> {
    pids.iter().map(|&pid| (pid, of(pid))).collect()
}

/// What these processes did since `before` (one that was not there then: all of its life).
pub fn since(pids: &[u32], before: &std::collections::HashMap<u32, Sched>) -> Sched {
    pids.iter()
        .map(|pid| of(*pid) - before.get(pid).copied().unwrap_or_default())
        .fold(Sched::default(), |a, b| a + b)
}

/// Every PostgreSQL process on the machine.
pub fn of_postgres() -> Sched {
    postgres_pids()
        .into_iter()
        .map(of)
        .fold(Sched::default(), |a, b| a + b)
}

/// The PostgreSQL server's processes (by their command name).
pub fn postgres_pids() -> Vec<u32> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(Result::ok)
        .filter_map(|e| e.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/comm"))
                .is_ok_and(|c| c.trim_end().starts_with("postgres"))
        })
        .collect()
}

/// The processes of a front run: the load generator (this process), em-sim, the gateway (when
/// there is one) and PostgreSQL.
#[derive(Debug, Clone, Copy, Default)]
pub struct Machine {
    pub bench: Sched,
    pub sim: Sched,
    pub gateway: Sched,
    pub postgres: Sched,
}

impl Machine {
    pub fn now(sim: u32, gateway: Option<u32>) -> Machine {
        Machine {
            bench: of(std::process::id()),
            sim: of(sim),
            gateway: gateway.map(of).unwrap_or_default(),
            postgres: of_postgres(),
        }
    }

    pub fn since(self, before: Machine) -> Machine {
        Machine {
            bench: self.bench - before.bench,
            sim: self.sim - before.sim,
            gateway: self.gateway - before.gateway,
            postgres: self.postgres - before.postgres,
        }
    }

    pub fn total(&self) -> Sched {
        self.bench + self.sim + self.gateway + self.postgres
    }
}
