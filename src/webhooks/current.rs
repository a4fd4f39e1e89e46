//! Each subscription as lately read: the URL, secrets and state an attempt uses when it starts.
//!
//! A delivery carries its subscription as it was when it was queued or claimed, and a handed
//! or waiting one may start up to a lease's start-by later (20 s with the default timeout). A
//! deletion (whose pending deliveries are dropped), a `410` that disabled the subscription or a
//! rotated secret must not wait that long: an attempt uses what was read at most
//! [`FRESH`] ago, one read per subscription a second, however many attempts start.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use secrecy::SecretString;

use crate::domain::WebhookId;

/// How old what an attempt uses of its subscription may be.
pub const FRESH: Duration = Duration::from_secs(1);

/// Past this many subscriptions remembered, those not read for a minute are forgotten.
const KEPT: usize = 1024;

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
    reading: bool,
}

#[derive(Debug, Default)]
pub struct Current {
    entries: Mutex<HashMap<WebhookId, Entry>>,
}

impl Current {
    pub fn look(&self, id: WebhookId, now: Instant) -> Look {
        let Ok(mut entries) = self.entries.lock() else {
            return Look::Own;
        };
        if entries.len() >= KEPT && !entries.contains_key(&id) {
            entries.retain(|_, e| {
                e.reading || now.duration_since(e.read_at) < Duration::from_secs(60)
            });
        }
        let entry = entries.entry(id).or_insert(Entry {
            read_at: now,
            target: None,
            reading: false,
        });
        let fresh = now.duration_since(entry.read_at) < FRESH;
        match (&entry.target, entry.reading) {
            (Some(target), true) => Look::Use(target.clone()),
            (Some(target), false) if fresh => Look::Use(target.clone()),
            (None, true) => Look::Own,
            _ => {
                entry.reading = true;
                Look::Read
            }
        }
    }

    /// What a [`Look::Read`] found, read at `at`.
    pub fn read(&self, id: WebhookId, target: Option<Target>, at: Instant) {
        if let Ok(mut entries) = self.entries.lock() {
            entries.insert(
                id,
                Entry {
                    read_at: at,
                    target: Some(target),
                    reading: false,
                },
            );
        }
    }

    /// A [`Look::Read`] failed: the next attempt reads again.
    pub fn unread(&self, id: WebhookId) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(entry) = entries.get_mut(&id)
        {
            entry.reading = false;
            if entry.target.is_some() {
                // Known, if stale: read again at the next attempt after a second, not at each.
                entry.read_at = entry.read_at.max(Instant::now() - FRESH / 2);
            }
        }
    }

    /// An attempt was answered `410 Gone`: the subscription is disabled (once recorded), and
    /// the attempts that start meanwhile see it so.
    pub fn gone(&self, id: WebhookId) {
        if let Ok(mut entries) = self.entries.lock()
            && let Some(Some(Some(target))) = entries.get_mut(&id).map(|e| e.target.as_mut())
        {
            target.disabled = true;
        }
    }

    pub fn len(&self) -> usize {
        self.entries.lock().map_or(0, |e| e.len())
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
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
        current.unread(b);
        assert_ne!(url(current.look(b, t0 + ms(2_000))), "own");
        // Gone: disabled for the attempts that start before it is read again.
        current.gone(a);
        match current.look(a, t0 + ms(1_500)) {
            Look::Use(Some(t)) => assert!(t.disabled),
            other => panic!("{other:?}"),
        }
    }

    #[test]
    fn subscriptions_not_read_for_a_minute_are_forgotten_once_many_are_known() {
        let current = Current::default();
        let t0 = Instant::now();
        for _ in 0..KEPT {
            let id = WebhookId::new();
            let _ = current.look(id, t0);
            current.read(id, None, t0);
        }
        assert_eq!(current.len(), KEPT);
        let _ = current.look(WebhookId::new(), t0 + Duration::from_secs(61));
        assert_eq!(current.len(), 1);
    }
}
