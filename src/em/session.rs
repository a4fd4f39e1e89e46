//! A fixed set of EM logon sessions ("slots").
//!
//! EM's tasks live in the logon session that created them, so every submitted task remembers its
//! session by [`SessionRef`]. A slot whose session has expired is logged on again lazily; the new
//! session gets a new `SessionId`, and tasks of the old one are then known to be lost.
//!
//! Logons are made one at a time over the whole pool, and a logon EM refused is not tried again
//! before the back-off ([`LogonState`]) allows it: every refusal is a failed logon of the EM
//! account in Active Directory, and enough of them lock the account out.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, RwLock};
use std::time::{Duration, Instant};

use secrecy::SecretString;
use serde::{Deserialize, Serialize};

use super::error::EmError;

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
}

/// How the last logon ended, for the callers that waited for it.
#[derive(Debug, Default)]
pub(crate) struct LastLogon {
    /// Logons finished so far (see [`SessionPool::logons_finished`]).
    pub(crate) finished: u64,
    /// The last one's error, if it failed for another reason than a refusal.
    pub(crate) failure: Option<EmError>,
}

#[derive(Debug)]
pub(crate) struct SessionPool {
    slots: Vec<Slot>,
    next: AtomicUsize,
    epoch: Instant,
    /// Held while logging on: one logon at a time over the whole pool, so that many callers, of
    /// one slot or of many, make one attempt, and each waiter then sees its outcome.
    logon: tokio::sync::Mutex<LastLogon>,
    /// A copy of `LastLogon::finished`, readable without waiting for a logon under way.
    logons_finished: AtomicU64,
    /// What EM last said of the credentials; read without waiting for a logon (`/readyz`).
    backoff: Mutex<LogonState>,
    policy: LogonBackoff,
}

impl SessionPool {
    pub(crate) fn new(size: usize, policy: LogonBackoff) -> Self {
        SessionPool {
            slots: (0..size.max(1)).map(|_| Slot::default()).collect(),
            next: AtomicUsize::new(0),
            epoch: Instant::now(),
            logon: tokio::sync::Mutex::new(LastLogon::default()),
            logons_finished: AtomicU64::new(0),
            backoff: Mutex::new(LogonState::default()),
            policy,
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

    /// The pool's logon lock (see [`SessionPool::logon`]'s field).
    pub(crate) async fn logon_lock(&self) -> tokio::sync::MutexGuard<'_, LastLogon> {
        self.logon.lock().await
    }

    /// How many logons have finished: read before waiting for the logon lock, it tells the
    /// waiter whether a logon ended while it waited.
    pub(crate) fn logons_finished(&self) -> u64 {
        self.logons_finished.load(Ordering::SeqCst)
    }

    /// Records a logon's outcome (with the logon lock held) and moves the back-off on; returns
    /// the back-off state it leaves.
    pub(crate) fn record_logon(
        &self,
        last: &mut LastLogon,
        result: Result<(), &EmError>,
        now: Instant,
    ) -> LogonState {
        last.finished += 1;
        // A refusal is the back-off's to answer, with its wait.
        last.failure = result
            .err()
            .filter(|e| !matches!(e, EmError::LogonRefused { .. }))
            .cloned();
        self.logons_finished.store(last.finished, Ordering::SeqCst);
        let mut state = self.backoff.lock().unwrap_or_else(|p| p.into_inner());
        *state = state.after(&self.policy, result, now);
        state.clone()
    }

    /// The back-off state: what EM last said of the credentials.
    pub(crate) fn logon_state(&self) -> LogonState {
        self.backoff
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
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

// ---------------------------------------------------------------------------------------------
// The logon back-off: a pure state machine. `check` says whether a logon may be tried now,
// `after` gives the state an attempt leaves; the client does the I/O around them.
// ---------------------------------------------------------------------------------------------

/// How long the pool waits after EM refused its credentials: `first` after one refusal, twice
/// as long after each further one in a row, never longer than `max`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LogonBackoff {
    pub first: Duration,
    pub max: Duration,
}

impl LogonBackoff {
    /// Unless `EMGW_EM_LOGON_BACKOFF_MS` / `EMGW_EM_LOGON_BACKOFF_MAX_MS` say otherwise.
    pub const DEFAULT: LogonBackoff = LogonBackoff {
        first: Duration::from_secs(1),
        max: Duration::from_secs(5 * 60),
    };

    /// The wait after `refusals` refusals in a row (none: no wait).
    pub fn delay(&self, refusals: u32) -> Duration {
        if refusals == 0 {
            return Duration::ZERO;
        }
        let mut delay = self.first;
        for _ in 1..refusals {
            if delay >= self.max {
                break;
            }
            delay = delay.saturating_mul(2);
        }
        delay.min(self.max)
    }
}

impl Default for LogonBackoff {
    fn default() -> Self {
        LogonBackoff::DEFAULT
    }
}

/// What EM last said of the pool's credentials.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub enum LogonState {
    /// EM has refused no logon since the last one it accepted (or since start).
    #[default]
    Clear,
    /// EM refused the last `refusals` logons in a row, the last one with `status` and
    /// `message`; no logon is tried before `retry_at`.
    Refused {
        refusals: u32,
        status: u16,
        message: String,
        retry_at: Instant,
    },
}

impl LogonState {
    /// May a logon be tried at `now`? If not, the error every caller that needs a session gets
    /// meanwhile: EM's refusal, and how long until a logon may be tried again.
    pub fn check(&self, now: Instant) -> Result<(), EmError> {
        match self.refusal(now) {
            Some(refused) if refused.retry_in().is_some_and(|wait| !wait.is_zero()) => Err(refused),
            _ => Ok(()),
        }
    }

    /// The refusal, while the last logon was refused (also once its wait is over: until a logon
    /// succeeds, the credentials are known to be wrong).
    pub fn refusal(&self, now: Instant) -> Option<EmError> {
        match self {
            LogonState::Clear => None,
            LogonState::Refused {
                status,
                message,
                retry_at,
                ..
            } => Some(EmError::LogonRefused {
                status: *status,
                message: message.clone(),
                retry_in: retry_at.saturating_duration_since(now),
            }),
        }
    }

    /// The state after a logon attempt that ended at `now`: a success clears the back-off; a
    /// refusal (401/403 to the logon) lengthens it; any other failure (EM unreachable, a 5xx, an
    /// unreadable answer) says nothing about the credentials and changes nothing.
    pub fn after(&self, policy: &LogonBackoff, result: Result<(), &EmError>, now: Instant) -> Self {
        match result {
            Ok(()) => LogonState::Clear,
            Err(EmError::LogonRefused {
                status, message, ..
            }) => {
                let refusals = match self {
                    LogonState::Clear => 1,
                    LogonState::Refused { refusals, .. } => refusals.saturating_add(1),
                };
                LogonState::Refused {
                    refusals,
                    status: *status,
                    message: message.clone(),
                    retry_at: now + policy.delay(refusals),
                }
            }
            Err(_) => self.clone(),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const S: Duration = Duration::from_secs(1);

    fn refused(status: u16) -> EmError {
        EmError::LogonRefused {
            status,
            message: "Invalid user name or password.".into(),
            retry_in: Duration::ZERO,
        }
    }

    #[test]
    fn the_wait_doubles_from_first_up_to_max() {
        let default = LogonBackoff::DEFAULT;
        let short = LogonBackoff {
            first: Duration::from_millis(300),
            max: Duration::from_millis(1000),
        };
        for (policy, refusals, wait) in [
            (default, 0, Duration::ZERO),
            (default, 1, S),
            (default, 2, 2 * S),
            (default, 3, 4 * S),
            (default, 4, 8 * S),
            (default, 9, 256 * S),
            (default, 10, 300 * S),
            (default, 11, 300 * S),
            (default, u32::MAX, 300 * S),
            (short, 1, Duration::from_millis(300)),
            (short, 2, Duration::from_millis(600)),
            (short, 3, Duration::from_millis(1000)),
            (short, 50, Duration::from_millis(1000)),
        ] {
            assert_eq!(policy.delay(refusals), wait, "{policy:?} after {refusals}");
        }
        let huge = LogonBackoff {
            first: Duration::MAX,
            max: Duration::MAX,
        };
        assert_eq!(huge.delay(3), Duration::MAX, "no overflow");
    }

    /// Refusals at the moment each wait ends: 1 s, 2 s, 4 s, … apart, capped.
    #[test]
    fn refusals_in_a_row_space_the_logons_out() {
        let policy = LogonBackoff {
            first: S,
            max: 5 * S,
        };
        let t0 = Instant::now();
        let mut state = LogonState::Clear;
        let mut now = t0;
        let mut tried_at = Vec::new();
        for _ in 0..6 {
            state.check(now).expect("the wait is over");
            tried_at.push(now.duration_since(t0).as_secs());
            state = state.after(&policy, Err(&refused(401)), now);
            let LogonState::Refused { retry_at, .. } = &state else {
                panic!("refused: {state:?}");
            };
            now = *retry_at;
        }
        assert_eq!(tried_at, [0, 1, 3, 7, 12, 17]);
    }

    #[test]
    fn while_backing_off_logons_wait_and_say_for_how_long() {
        let policy = LogonBackoff::DEFAULT;
        let t0 = Instant::now();
        let state = LogonState::Clear
            .after(&policy, Err(&refused(401)), t0)
            .after(&policy, Err(&refused(403)), t0);
        let (at, expected) = (
            t0 + Duration::from_millis(500),
            EmError::LogonRefused {
                status: 403,
                message: "Invalid user name or password.".into(),
                retry_in: Duration::from_millis(1500),
            },
        );
        assert_eq!(state.check(at), Err(expected.clone()));
        assert_eq!(state.refusal(at), Some(expected));
        assert_eq!(
            state
                .check(t0 + 2 * S - Duration::from_millis(1))
                .map_err(|e| e.retry_in()),
            Err(Some(Duration::from_millis(1)))
        );
        state.check(t0 + 2 * S).expect("the wait ends at retry_at");
        // Still refused after the wait: readiness keeps naming it until a logon succeeds.
        assert_eq!(
            state.refusal(t0 + 10 * S).map(|e| e.retry_in()),
            Some(Some(Duration::ZERO))
        );
    }

    #[test]
    fn a_success_clears_and_other_failures_do_not_count() {
        let policy = LogonBackoff::DEFAULT;
        let t0 = Instant::now();
        let once = LogonState::Clear.after(&policy, Err(&refused(401)), t0);
        let unreachable = EmError::Unreachable("connection refused".into());
        let em_500 = EmError::Refused {
            status: 500,
            message: "oops".into(),
        };
        let bad = EmError::BadAnswer("no token".into());
        for (from, result, expected) in [
            (&LogonState::Clear, Ok(()), LogonState::Clear),
            (&once, Ok(()), LogonState::Clear),
            (&LogonState::Clear, Err(&unreachable), LogonState::Clear),
            (&LogonState::Clear, Err(&em_500), LogonState::Clear),
            (&LogonState::Clear, Err(&bad), LogonState::Clear),
            (&once, Err(&unreachable), once.clone()),
            (&once, Err(&em_500), once.clone()),
            (&once, Err(&bad), once.clone()),
        ] {
            assert_eq!(
                from.after(&policy, result, t0 + S),
                expected,
                "{from:?} {result:?}"
            );
        }
        assert_eq!(LogonState::Clear.check(t0), Ok(()));
        assert_eq!(LogonState::Clear.refusal(t0), None);
        // After a success the next refusal starts the schedule over.
        let again =
            once.after(&policy, Ok(()), t0 + S)
                .after(&policy, Err(&refused(401)), t0 + 2 * S);
        assert!(
            matches!(again, LogonState::Refused { refusals: 1, retry_at, .. } if retry_at == t0 + 3 * S),
            "{again:?}"
        );
    }
}
