//! Each subscription as lately read: the URL, secrets and state an attempt uses when it starts.
//!
//! A delivery carries its subscription as it was when it was queued or claimed, and a handed
//! or waiting one may start up to a lease's start-by later (20 s with the default timeout). A
//! deletion (whose pending deliveries are dropped), a `410` that disabled the subscription or a
//! rotated secret must not wait that long: an attempt uses what was read about [`FRESH`] ago
//! at most, one read per subscription a second, however many attempts start. (Longer only while
//! a read is slow, up to half an attempt's timeout, when what was known before is used; and at a
//! subscription's first attempts here, which use their own while its first read is under way.)

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::domain::WebhookId;

/// How old what an attempt uses of its subscription may be, when its read is not slow.
pub const FRESH: Duration = Duration::from_secs(1);

/// A read under way this long is taken as abandoned: the next attempt reads again.
const READ_ABANDONED: Duration = Duration::from_secs(5);

/// A subscription not read for this long is forgotten (its secrets with it), looked for at most
/// every [`PRUNE_EVERY`].
const FORGET_AFTER: Duration = Duration::from_secs(60);
const PRUNE_EVERY: Duration = Duration::from_secs(10);

/// Where and how a subscription's deliveries go now.
#[derive(Debug, Clone)]
pub struct Target {
    pub url: String,
    pub secrets: Vec<SecretString>,
    pub disabled: bool,
}

/// What to do for an attempt about to start.
#[derive(Debug, Clone)]
pub enum Look {
    /// Use this (`None`: the subscription is deleted).
    Use(Option<Target>),
    /// Read the subscription, then [`Current::read`] (or [`Current::unread`] if that failed);
    /// this attempt's is the one read for now, the others use what is known meanwhile.
    Read,
    /// Nothing read yet and another attempt is reading it: use the delivery's own.
    Own,
}

#[derive(Debug)]
struct Entry {
    read_at: Instant,
    /// `None` until first read.
    target: Option<Option<Target>>,
    /// Since when a read is under way.
    reading: Option<Instant>,
    /// An attempt was answered `410 Gone`: disabled, whatever a read that began before its
    /// record found (nothing enables a subscription again).
    gone: bool,
}

#[derive(Debug, Default)]
pub struct Current {
    entries: Mutex<(HashMap<WebhookId, Entry>, Option<Instant>)>,
}

impl Current {
    pub fn look(&self, id: WebhookId, now: Instant) -> Look {
        let Ok(mut guard) = self.entries.lock() else {
            return Look::Own;
        };
        let (entries, pruned) = &mut *guard;
        if pruned.is_none_or(|at| now.duration_since(at) >= PRUNE_EVERY) {
            *pruned = Some(now);
            entries.retain(|_, e| {
                e.reading
                    .is_some_and(|since| now.duration_since(since) < READ_ABANDONED)
                    || now.duration_since(e.read_at) < FORGET_AFTER
            });
        }
        let entry = entries.entry(id).or_insert(Entry {
            read_at: now,
            target: None,
            reading: None,
            gone: false,
        });
        let fresh = now.duration_since(entry.read_at) < FRESH;
        let reading = entry
            .reading
            .is_some_and(|since| now.duration_since(since) < READ_ABANDONED);
        let gone = entry.gone;
        match (&entry.target, reading) {
            (Some(target), true) => Look::Use(marked(target, gone)),
            (Some(target), false) if fresh => Look::Use(marked(target, gone)),
            (None, true) => Look::Own,
            _ => {
                entry.reading = Some(now);
                Look::Read
            }
        }
    }

    /// What a [`Look::Read`] found, read at `at`.
    pub fn read(&self, id: WebhookId, target: Option<Target>, at: Instant) {
        if let Ok(mut guard) = self.entries.lock() {
            let gone = guard.0.get(&id).is_some_and(|e| e.gone);
            guard.0.insert(
                id,
                Entry {
                    read_at: at,
                    target: Some(target),
                    reading: None,
                    gone,
                },
            );
        }
    }

    /// A [`Look::Read`] failed (or was given up): the next attempt reads again, or, if
    /// something is known, the first attempt half a second on.
    pub fn unread(&self, id: WebhookId, now: Instant) {
        if let Ok(mut guard) = self.entries.lock()
            && let Some(entry) = guard.0.get_mut(&id)
        {
            entry.reading = None;
            if entry.target.is_some()
                && let Some(half_stale) = now.checked_sub(FRESH / 2)
            {
                entry.read_at = entry.read_at.max(half_stale);
            }
        }
    }

    /// An attempt was answered `410 Gone`: the subscription is disabled (once recorded), and
    /// the attempts that start meanwhile see it so.
    pub fn gone(&self, id: WebhookId) {
        if let Ok(mut guard) = self.entries.lock()
            && let Some(entry) = guard.0.get_mut(&id)
        {
            entry.gone = true;
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.0.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

fn marked(target: &Option<Target>, gone: bool) -> Option<Target> {
    target.clone().map(|mut t| {
        t.disabled |= gone;
        t
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn target(url: &str) -> Target {
        Target {
            url: url.into(),
            secrets: Vec::new(),
            disabled: false,
        }
    }

    fn url(look: Look) -> String {
        match look {
            Look::Use(Some(t)) => t.url,
            Look::Use(None) => "deleted".into(),
            Look::Read => "read".into(),
            Look::Own => "own".into(),
        }
    }

    #[test]
    fn an_attempt_uses_what_was_read_within_a_second_and_one_attempt_reads_again() {
        let current = Current::default();
        let (a, b) = (WebhookId::new(), WebhookId::new());
        let t0 = Instant::now();
        let ms = Duration::from_millis;
        assert_eq!(
            url(current.look(a, t0)),
            "read",
            "never read: the first reads"
        );
        assert_eq!(
            url(current.look(a, t0)),
            "own",
            "meanwhile: the delivery's own"
        );
        current.read(a, Some(target("https://one")), t0);
        assert_eq!(url(current.look(a, t0 + ms(999))), "https://one");
        assert_eq!(url(current.look(a, t0 + ms(1_000))), "read", "a second on");
        assert_eq!(
            url(current.look(a, t0 + ms(1_001))),
            "https://one",
            "while it is read again, what was known"
        );
        current.read(a, Some(target("https://two")), t0 + ms(1_002));
        assert_eq!(url(current.look(a, t0 + ms(1_003))), "https://two");
        // Deleted: known as such.
        assert_eq!(url(current.look(b, t0)), "read");
        current.read(b, None, t0);
        assert_eq!(url(current.look(b, t0 + ms(10))), "deleted");
        // A read that failed: the next attempt reads again.
        assert_eq!(url(current.look(b, t0 + ms(2_000))), "read");
        current.unread(b, t0 + ms(2_000));
        assert_eq!(
            url(current.look(b, t0 + ms(2_000))),
            "deleted",
            "half a second more"
        );
        assert_eq!(
            url(current.look(b, t0 + ms(2_500))),
            "read",
            "then read again"
        );
        // A read under way for five seconds is taken as abandoned.
        assert_eq!(url(current.look(b, t0 + ms(7_400))), "deleted");
        assert_eq!(url(current.look(b, t0 + ms(7_500))), "read");
        // Gone: disabled for the attempts that start before it is read again.
        current.gone(a);
        match current.look(a, t0 + ms(1_500)) {
            Look::Use(Some(t)) => assert!(t.disabled),
            other => panic!("{other:?}"),
        }
        // ... and stays so, whatever a read that began before its record found.
        current.read(a, Some(target("https://two")), t0 + ms(1_600));
        match current.look(a, t0 + ms(1_700)) {
            Look::Use(Some(t)) => assert!(t.disabled),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subscriptions_not_read_for_a_minute_are_forgotten() {
        let current = Current::default();
        let t0 = Instant::now();
        let s = Duration::from_secs;
        let (old, slow) = (WebhookId::new(), WebhookId::new());
        let _ = current.look(old, t0);
        current.read(old, None, t0);
        // `slow` is never read: each read is given up, and the next attempt reads again.
        let _ = current.look(slow, t0);
        let _ = current.look(slow, t0 + s(58));
        let _ = current.look(slow, t0 + s(64));
        assert_eq!(current.len(), 2, "looked for at most every ten seconds");
        let _ = current.look(WebhookId::new(), t0 + s(68));
        assert_eq!(
            current.len(),
            2,
            "the one not read for a minute is forgotten, the one being read kept"
        );
        let _ = current.look(WebhookId::new(), t0 + s(80));
        assert_eq!(current.len(), 2, "the given-up read is forgotten too");
    }
}
