//! `Idempotency-Key`: a write runs at most once per key; a repeat gets the first answer, kept as
//! bytes (status, body, `Location`) for 24 hours. The HTTP layer reads the header and sends
//! answers; what a key means lives here.

use std::sync::Arc;
use std::time::Duration;

use crate::clock::{Clock, Timestamp};
use crate::domain::{TaskId, TaskState};
use crate::secrets::Keyring;
use crate::store::{Claim, IdempotencyKey, Store, StoreError, StoredAnswer};

use super::answer;
use super::unanswered::Unanswered;

/// What to do with a request that carries a key.
#[derive(Debug, Clone, PartialEq)]
pub enum Decision {
    /// First time: do the work, then [`Replay::finish`].
    Run,
    /// Answer this (the first request's answer) again.
    Answer(StoredAnswer),
    /// The same key with another request.
    Mismatch,
    /// The first request is still at work; try again shortly.
    InProgress,
}

/// What makes two requests "the same": method, path and query, body. Only its keyed hash is
/// kept ([`Keyring::fingerprints`]): a plain hash of a body that carries a password could be
/// checked against guesses by anyone with a copy of the database.
pub fn request_bytes(method: &str, path: &str, query: &str, body: &[u8]) -> Vec<u8> {
    let mut data = Vec::with_capacity(body.len() + 64);
    data.extend_from_slice(method.as_bytes());
    data.push(b'\n');
    data.extend_from_slice(path.as_bytes());
    data.push(b'?');
    data.extend_from_slice(query.as_bytes());
    data.push(b'\n');
    data.extend_from_slice(body);
    data
}

/// A claim still in progress after `stale` whose task was recorded belongs to a request that
/// died after recording its task (its answer may have died with it): that task is the answer,
/// and the poller settles it from EM's objects.
pub fn recovered_task(
    task: Option<TaskId>,
    started_at: Timestamp,
    now: Timestamp,
    stale: Duration,
) -> Option<TaskId> {
    task.filter(|_| now.since(started_at) > stale)
}

pub struct Replay {
    store: Store,
    /// Where an intent found without its fate is entered, for the poller to look for.
    unanswered: Arc<Unanswered>,
    clock: Clock,
    /// A claim this old whose request never reached EM may be taken over.
    stale: Duration,
    /// Keys the fingerprints.
    keys: Keyring,
}

impl Replay {
    pub fn new(
        store: Store,
        unanswered: Arc<Unanswered>,
        clock: Clock,
        stale: Duration,
        keys: Keyring,
    ) -> Self {
        Replay {
            store,
            unanswered,
            clock,
            stale,
            keys,
        }
    }

    /// `request` is [`request_bytes`] of the request under the key.
    pub async fn claim(
        &self,
        key: &IdempotencyKey,
        request: &[u8],
    ) -> Result<Decision, StoreError> {
        let now = self.clock.now();
        let fingerprints = self.keys.fingerprints(request);
        Ok(
            match self
                .store
                .claim_idempotency(key, &fingerprints, now, self.stale)
                .await?
            {
                Claim::Fresh => Decision::Run,
                Claim::Replay(stored) => Decision::Answer(stored),
                Claim::Mismatch => Decision::Mismatch,
                Claim::InProgress {
                    task_id,
                    started_at,
                } => match recovered_task(task_id, started_at, now, self.stale) {
                    Some(id) => match self.store.task(id).await? {
                        Some(task) => {
                            if task.state == TaskState::Running && task.em_task_id.is_none() {
                                // Its request died before EM's answer was recorded: the poller
                                // looks for it among the intents EM's answer never came for.
                                let at = Timestamp::from_millis(task.created_at.timestamp_millis());
                                self.unanswered.left_behind(task.id, at);
                            }
                            let stored = answer::accepted(&task);
                            self.store.finish_idempotency(key, &stored).await?;
                            Decision::Answer(stored)
                        }
                        None => Decision::InProgress,
                    },
                    None => Decision::InProgress,
                },
            },
        )
    }

    /// Keeps the answer under the key — unless it is 500 or above (EM or the database was
    /// unavailable, say): then the key is given up, so the request can be tried again.
    pub async fn finish(
        &self,
        key: &IdempotencyKey,
        answer: &StoredAnswer,
    ) -> Result<(), StoreError> {
        if answer.status >= 500 {
            self.store.release_idempotency(key).await
        } else {
            self.store.finish_idempotency(key, answer).await
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_stale_claim_is_answered_with_its_task_only_when_one_was_recorded() {
        let stale = Duration::from_secs(10);
        let start = Timestamp::from_millis(1_000_000);
        let task = TaskId::new();
        let cases = [
            (Some(task), Duration::from_secs(11), Some(task)),
            (Some(task), Duration::from_secs(10), None),
            (Some(task), Duration::from_secs(1), None),
            (None, Duration::from_secs(60), None),
        ];
        for (recorded, after, expected) in cases {
            assert_eq!(
                recovered_task(recorded, start, start + after, stale),
                expected,
                "{recorded:?} after {after:?}"
            );
        }
    }

    #[test]
    fn fingerprints_tell_requests_apart_by_method_path_query_and_body() {
        let (key, _) = crate::secrets::ServerKey::generate().unwrap();
        let keys = Keyring::new(key, Vec::new());
        let fingerprint = |m, p, q, b| keys.fingerprints(&request_bytes(m, p, q, b))[0].clone();
        let base = fingerprint("POST", "/v1/x", "", b"{}");
        assert_eq!(base, fingerprint("POST", "/v1/x", "", b"{}"));
        for other in [
            fingerprint("PATCH", "/v1/x", "", b"{}"),
            fingerprint("POST", "/v1/y", "", b"{}"),
            fingerprint("POST", "/v1/x", "a=1", b"{}"),
            fingerprint("POST", "/v1/x", "", b"{ }"),
        ] {
            assert_ne!(base, other);
        }
        // Keyed: not the plain hash of what was sent.
        assert_ne!(
            base,
            crate::em::tls::sha256_hex(&request_bytes("POST", "/v1/x", "", b"{}"))
        );
    }
}
