//! A fixed set of EM logon sessions ("slots").
//!
//! EM's tasks live in the logon session that created them, so every submitted task remembers its
//! session by [`SessionRef`]. A slot whose session has expired is logged on again lazily; the new
//! session gets a new `SessionId`, and tasks of the old one are then known to be lost.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

/// Which EM logon session a task belongs to: the pool slot and EM's `SessionId` in it.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct SessionRef {
    pub slot: usize,
    pub session_id: String,
}

/// One live EM logon session. The token is a secret: never logged, never in errors.
#[derive(Debug)]
pub(crate) struct Session {
    pub(crate) token: SecretString,
    pub(crate) session_id: String,
    /// Milliseconds since the pool's epoch of the last request sent with this session.
    last_used_ms: AtomicU64,
}

impl Session {
    pub(crate) fn new(token: SecretString, session_id: String, now_ms: u64) -> Self {
        Session {
            token,
            session_id,
            last_used_ms: AtomicU64::new(now_ms),
        }
    }
}

#[derive(Debug, Default)]
struct Slot {
    current: RwLock<Option<Arc<Session>>>,
    /// Held while logging on, so that many callers that find the slot empty log on once.
    logon: tokio::sync::Mutex<()>,
}

#[derive(Debug)]
pub(crate) struct SessionPool {
    slots: Vec<Slot>,
    next: AtomicUsize,
    epoch: Instant,
}

impl SessionPool {
    pub(crate) fn new(size: usize) -> Self {
        SessionPool {
            slots: (0..size.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
        }
    }

    pub(crate) fn size(&self) -> usize {
        self.slots.len()
    }

    /// Round-robin over the slots, so load and tasks spread over all sessions.
    pub(crate) fn next_slot(&self) -> usize {
        self.next.fetch_add(1, Ordering::Relaxed) % self.slots.len()
    }

    pub(crate) fn now_ms(&self) -> u64 {
        u64::try_from(self.epoch.elapsed().as_millis()).unwrap_or(u64::MAX)
    }

    pub(crate) fn current(&self, slot: usize) -> Option<Arc<Session>> {
        let slot = self.slots.get(slot)?;
        slot.current.read().ok()?.clone()
    }

    pub(crate) fn logon_lock(&self, slot: usize) -> Option<&tokio::sync::Mutex<()>> {
        self.slots.get(slot).map(|s| &s.logon)
    }

    pub(crate) fn install(&self, slot: usize, session: Arc<Session>) {
        if let Some(slot) = self.slots.get(slot)
            && let Ok(mut current) = slot.current.write()
        {
            *current = Some(session);
        }
    }

    /// Forgets `session` if it is still the slot's current one (another caller may already have
    /// logged on again).
    pub(crate) fn invalidate(&self, slot: usize, session: &Arc<Session>) {
        if let Some(slot) = self.slots.get(slot)
            && let Ok(mut current) = slot.current.write()
            && current.as_ref().is_some_and(|c| Arc::ptr_eq(c, session))
        {
            *current = None;
        }
    }

    pub(crate) fn touch(&self, session: &Session) {
        session.last_used_ms.store(self.now_ms(), Ordering::Relaxed);
    }

    /// Sessions with no request for at least `idle`.
    pub(crate) fn idle_sessions(&self, idle: Duration) -> Vec<(usize, Arc<Session>)> {
        let now = self.now_ms();
        let idle_ms = u64::try_from(idle.as_millis()).unwrap_or(u64::MAX);
        (0..self.slots.len())
            .filter_map(|i| self.current(i).map(|s| (i, s)))
            .filter(|(_, s)| now.saturating_sub(s.last_used_ms.load(Ordering::Relaxed)) >= idle_ms)
            .collect()
    }

    /// Every live session, emptying the slots (shutdown).
    pub(crate) fn take_all(&self) -> Vec<Arc<Session>> {
        self.slots
            .iter()
            .filter_map(|s| s.current.write().ok().and_then(|mut c| c.take()))
            .collect()
    }

    pub(crate) fn live(&self) -> Vec<SessionRef> {
        (0..self.slots.len())
            .filter_map(|i| {
                self.current(i).map(|s| SessionRef {
                    slot: i,
                    session_id: s.session_id.clone(),
                })
            })
            .collect()
    }
}
