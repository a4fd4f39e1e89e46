//! Connections kept by the threads that use them (Postgres): the API's task reads and claims,
//! and the group-committed writes.
//!
//! sqlx's pool answers every connection given back with a `Sync` to Postgres and waits for its
//! reply (its test on release): a second round trip for each one-statement read, in both
//! processes. Here a thread keeps the connections it used and gives them back without a round
//! trip. On an HTTP worker (a runtime of its own thread) they also stay with the runtime that
//! opened them, whose thread drives their I/O: one opened by another worker would wake that
//! worker's thread for each round trip as well. The group-committed writers run on the thread of
//! the request that started them ([`super::batch`]), so theirs stay with it too.
//!
//! A connection whose statement did not run to its end (the request was dropped mid-query, or
//! the query failed) is never given back as it is: a check on the side waits for the rest of
//! Postgres's answer, as sqlx's test on release does, and keeps it only if it is sound. When
//! the store holds its limit of these, the statement goes through the pool as before. Left
//! alone: no thread has a cap of its own, so after a burst one thread may hold most of them
//! while the others use the pool.
//!
//! Kept of two kinds: `Any` connections for the statements written once for both databases,
//! and typed Postgres ones for the hot task read, which skips `Any`'s copy of every row into
//! values of its own (the read's part in the store went from 32k instructions to 22k).

use std::cell::RefCell;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::thread::LocalKey;
use std::time::{Duration, Instant};

use sqlx::pool::PoolConnection;
use sqlx::{Any, AnyConnection, ConnectOptions, Connection, PgConnection};

/// A kept connection idle this long is checked before use. Busy, one is reused within
/// milliseconds, so the check is rare.
const CHECK_IDLE_AFTER: Duration = Duration::from_secs(1);

/// A kind of connection a thread keeps, each kind in a list of its own.
pub(super) trait Keep: Connection + Sized + 'static {
    /// This thread's idle connections of this kind, of every store.
    fn idle() -> &'static LocalKey<RefCell<Vec<Idle<Self>>>>;
}

impl Keep for AnyConnection {
    fn idle() -> &'static LocalKey<RefCell<Vec<Idle<Self>>>> {
        thread_local! {
            static IDLE: RefCell<Vec<Idle<AnyConnection>>> = const { RefCell::new(Vec::new()) };
        }
        &IDLE
    }
}

impl Keep for PgConnection {
    fn idle() -> &'static LocalKey<RefCell<Vec<Idle<Self>>>> {
        thread_local! {
            static IDLE: RefCell<Vec<Idle<PgConnection>>> = const { RefCell::new(Vec::new()) };
        }
        &IDLE
    }
}

/// One store's connections of one kind, across threads.
pub(super) struct Local<C: Keep> {
    /// Tells this store's idle connections from another's on the same thread (tests run many).
    id: u64,
    /// Gone once the store is: its idle connections are then closed.
    alive: Arc<()>,
    options: C::Options,
    /// Open now (idle or in use), on every thread, and the most there may be.
    open: Arc<AtomicUsize>,
    limit: usize,
}

impl<C: Keep> std::fmt::Debug for Local<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Local")
            .field("open", &self.open.load(Ordering::Relaxed))
            .field("limit", &self.limit)
            .finish()
    }
}

pub(super) struct Idle<C> {
    store: u64,
    alive: Weak<()>,
    connection: Box<C>,
    since: Instant,
    slot: Slot,
}

/// One connection's place in a store's count: given up when dropped, whatever drops it (a
/// connection closed, a thread's idle ones at its exit).
struct Slot(Arc<AtomicUsize>);

impl Drop for Slot {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::AcqRel);
    }
}

impl<C: Keep> Local<C> {
    pub(super) fn new(options: C::Options, limit: usize) -> Local<C> {
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Local {
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            alive: Arc::new(()),
            options,
            open: Arc::default(),
            limit,
        }
    }

    /// One of this thread's idle connections (if `reuse`), or a new one; `None` when the store
    /// holds its limit (the caller uses the pool).
    pub(super) async fn acquire(
        &self,
        reuse: bool,
    ) -> Result<Option<LocalConnection<C>>, sqlx::Error> {
        while let Some(mut held) = reuse.then(|| self.take_idle()).flatten() {
            // One idle a while may have been cut off (a restart, a firewall): check it first.
            // Sooner than the pool does: nothing else uses it to find out (a database restart
            // took seconds, and the first read after it failed).
            if held.kept_mut().idle_for < CHECK_IDLE_AFTER
                || within(held.connection().ping())
                    .await
                    .is_ok_and(|p| p.is_ok())
            {
                return Ok(Some(held));
            }
            // Dead: closed here, not checked again on the side.
            drop(held.0.take());
        }
        if self
            .open
            .fetch_update(Ordering::AcqRel, Ordering::Acquire, |n| {
                (n < self.limit).then_some(n + 1)
            })
            .is_err()
        {
            return Ok(None);
        }
        // Counted from here: if the connect fails, the slot is given up with it.
        let slot = Slot(self.open.clone());
        // The connect boxed: a typed one's future is kilobytes, and inline it would make every
        // task read's future as large, copied whole into its box on each request.
        let connection = Box::new(
            within(Box::pin(self.options.connect()))
                .await
                .map_err(|_| sqlx::Error::PoolTimedOut)??,
        );
        Ok(Some(LocalConnection(Some(Kept {
            connection,
            slot,
            idle_for: Duration::ZERO,
            reused: false,
            store: self.id,
            alive: Arc::downgrade(&self.alive),
        }))))
    }

    fn take_idle(&self) -> Option<LocalConnection<C>> {
        C::idle().with_borrow_mut(|idle| {
            // Connections of stores that are gone are closed here, on their own thread.
            idle.retain(|i| i.alive.strong_count() > 0);
            let at = idle.iter().rposition(|i| i.store == self.id)?;
            let Idle {
                connection,
                since,
                slot,
                store,
                alive,
            } = idle.swap_remove(at);
            Some(LocalConnection(Some(Kept {
                connection,
                slot,
                idle_for: since.elapsed(),
                reused: true,
                store,
                alive,
            })))
        })
    }
}

/// As the pool's acquire, a connect or check that takes longer than this fails (a silently
/// dropped path would otherwise hang the request, or the writer and every create behind it).
const WITHIN: Duration = Duration::from_secs(5);

async fn within<T>(
    work: impl std::future::Future<Output = T>,
) -> Result<T, tokio::time::error::Elapsed> {
    tokio::time::timeout(WITHIN, work).await
}

/// A connection in use; [`LocalConnection::give_back`] keeps it for the next statement on this
/// thread. Dropped instead, its statement did not run to its end (see its `Drop`).
pub(super) struct LocalConnection<C: Keep>(Option<Kept<C>>);

struct Kept<C: Keep> {
    /// Boxed, for the same reason as its connect (see [`Local::acquire`]).
    connection: Box<C>,
    slot: Slot,
    /// How long it was idle before this use.
    idle_for: Duration,
    /// Kept idle before, rather than opened for this use: it may have died unnoticed.
    reused: bool,
    store: u64,
    alive: Weak<()>,
}

impl<C: Keep> LocalConnection<C> {
    pub(super) fn connection(&mut self) -> &mut C {
        &mut self.kept_mut().connection
    }

    fn kept_mut(&mut self) -> &mut Kept<C> {
        // Present from construction until `give_back` or drop, which take `self`.
        self.0
            .as_mut()
            .unwrap_or_else(|| unreachable!("a held connection is present"))
    }

    pub(super) fn reused(&self) -> bool {
        self.0.as_ref().is_some_and(|k| k.reused)
    }

    /// Its statement ran to its end: the connection is ready for the next.
    pub(super) fn give_back(mut self) {
        if let Some(kept) = self.0.take() {
            kept.keep();
        }
    }
}

impl<C: Keep> Kept<C> {
    fn keep(self) {
        let Kept {
            connection,
            slot,
            store,
            alive,
            ..
        } = self;
        let idle = Idle {
            store,
            alive,
            connection,
            since: Instant::now(),
            slot,
        };
        // A thread on its way out has no list left: the connection is closed instead.
        let _ = C::idle().try_with(move |all| all.borrow_mut().push(idle));
    }
}

impl<C: Keep> Drop for LocalConnection<C> {
    /// Its statement did not run to its end: the request was dropped mid-statement, or the
    /// statement failed. Postgres may still be answering it, so it cannot serve the next one
    /// as it is. As sqlx's pool does, a check on the side waits for the rest of that answer and
    /// keeps the connection if it is sound, and closes it if not. Closing it at once would let a
    /// client that drops its reads make Postgres start a backend for each of them.
    fn drop(&mut self) {
        if let Some(mut kept) = self.0.take()
            && let Ok(runtime) = tokio::runtime::Handle::try_current()
        {
            runtime.spawn(async move {
                if within(kept.connection.ping())
                    .await
                    .is_ok_and(|ping| ping.is_ok())
                {
                    kept.keep();
                }
            });
        }
    }
}

/// A connection for one statement: a kept one, or the pool's.
pub(super) enum Held {
    Local(LocalConnection<AnyConnection>),
    Pooled(PoolConnection<Any>),
}

impl Held {
    /// A kept connection used again, which may have died idle unnoticed.
    pub(super) fn reused(&self) -> bool {
        matches!(self, Held::Local(held) if held.reused())
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
