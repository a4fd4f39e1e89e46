//! Connections kept by each thread for the API's one-statement reads (Postgres).
//!
//! sqlx's pool answers every connection given back with a `Sync` to Postgres and waits for its
//! reply (its test on release): a second round trip for each one-statement read, in both
//! processes. And a connection's I/O is driven by the runtime that opened it, so one opened by
//! another HTTP worker wakes that worker's thread for each round trip as well. Here a thread
//! keeps the connections it opened and gives them back without a round trip. A connection whose
//! statement did not run to its end (the request was dropped mid-query, or the query failed) is
//! closed, never kept: that is what sqlx's test on release guards against. When the store holds
//! its limit of these, the read goes through the pool as before.

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{Duration, Instant};

use sqlx::any::AnyConnectOptions;
use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, ConnectOptions, Connection};

/// A kept connection idle this long is checked before use. Busy, one is reused within
/// milliseconds, so the check is rare.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// One store's connections, across threads.
pub(super) struct Local {
    /// Tells this store's idle connections from another's on the same thread (tests run many).
    id: u64,
    /// Gone once the store is: its idle connections are then closed.
    alive: Arc<()>,
    options: AnyConnectOptions,
    /// Open now (idle or in use), on every thread, and the most there may be.
    open: Arc<AtomicUsize>,
    limit: usize,
}

impl std::fmt::Debug for Local {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("open", &self.open.load(Ordering::Relaxed))
            .field("limit", &self.limit)
            .finish()
    }
}

struct Idle {
    store: u64,
    alive: Weak<()>,
    connection: AnyConnection,
    since: Instant,
}

thread_local! {
    /// This thread's idle connections, of every store.
    static IDLE: RefCell<Vec<Idle>> = const { RefCell::new(Vec::new()) };
}

impl Local {
    pub(super) fn new(options: AnyConnectOptions, limit: usize) -> Local {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Local {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
            options,
            open: Arc::default(),
            limit,
        }
    }

    /// One of this thread's idle connections, or a new one; `None` when the store holds its
    /// limit (the caller uses the pool).
    pub(super) async fn acquire(&self) -> Result<Option<LocalConnection>, sqlx::Error> {
        while let Some((connection, since)) = self.take_idle() {
            let mut held = self.hold(Some(connection));
            // One idle a while may have been cut off (a restart, a firewall): check it first.
            // Sooner than the pool does: nothing else uses it to find out (a database restart
            // took seconds, and the first read after it failed).
            if since.elapsed() < CHECK_IDLE_AFTER || held.connection().ping().await.is_ok() {
                return Ok(Some(held));
            }
        }
        self.open_new().await
    }

    /// A new connection, not one kept idle; `None` when the store holds its limit.
    pub(super) async fn open_new(&self) -> Result<Option<LocalConnection>, sqlx::Error> {
        if self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_err()
        {
            return Ok(None);
        }
        // Counted from here: dropped on a failed connect, it leaves the count again.
        let mut opened = self.hold(None);
        opened.connection = Some(self.options.connect().await?);
        Ok(Some(opened))
    }

    fn take_idle(&self) -> Option<(AnyConnection, Instant)> {
        IDLE.with_borrow_mut(|idle| {
            // Connections of stores that are gone are closed here, on their own thread.
            idle.retain(|i| i.alive.strong_count() > 0);
            let at = idle.iter().rposition(|i| i.store == self.id)?;
            let Idle {
                connection, since, ..
            } = idle.swap_remove(at);
            Some((connection, since))
        })
    }

    fn hold(&self, connection: Option<AnyConnection>) -> LocalConnection {
        LocalConnection {
            connection,
            kept: false,
            store: self.id,
            alive: Arc::downgrade(&self.alive),
            open: self.open.clone(),
        }
    }
}

/// A connection in use; [`LocalConnection::give_back`] keeps it for the next read on this
/// thread, dropping it closes it.
pub(super) struct LocalConnection {
    connection: Option<AnyConnection>,
    /// Given back to its thread's idle ones: still open, still counted.
    kept: bool,
    store: u64,
    alive: Weak<()>,
    open: Arc<AtomicUsize>,
}

impl LocalConnection {
    pub(super) fn connection(&mut self) -> &mut AnyConnection {
        // Present from construction until `give_back` or drop, which take `self`.
        self.connection
            .as_mut()
            .unwrap_or_else(|| unreachable!("a held connection is present"))
    }

    /// Its statement ran to its end: the connection is ready for the next.
    pub(super) fn give_back(mut self) {
        if let Some(connection) = self.connection.take() {
            self.kept = true;
            let idle = Idle {
                store: self.store,
                alive: self.alive.clone(),
                connection,
                since: Instant::now(),
            };
            IDLE.with_borrow_mut(|all| all.push(idle));
        }
    }
}

impl Drop for LocalConnection {
    fn drop(&mut self) {
        // Not given back: closed with it (if it was ever opened), so it leaves the count.
        if !self.kept {
            self.open.fetch_sub(1, Ordering::AcqRel);
        }
    }
}

/// A connection for one statement: a kept one, or the pool's.
pub(super) enum Held {
    Local(LocalConnection),
    Pooled(PoolConnection<Any>),
}

impl Held {
    /// One this thread kept, which may have died idle unnoticed.
    pub(super) fn is_kept(&self) -> bool {
        matches!(self, Held::Local(_))
    }

    pub(super) fn connection(&mut self) -> &mut AnyConnection {
        match self {
            Held::Local(held) => held.connection(),
            Held::Pooled(pooled) => pooled,
        }
    }

    /// Its statements ran to their end.
    pub(super) fn give_back(self) {
        match self {
            Held::Local(held) => held.give_back(),
            // sqlx tests it on the way back, as before.
            Held::Pooled(pooled) => drop(pooled),
        }
    }
}
