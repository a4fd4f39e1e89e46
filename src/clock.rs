//! Time in one place: [`Timestamp`] is how the store and every decision speak of a moment,
//! [`Clock`] says what "now" is — the wall clock in the service, a hand-moved one in tests, so
//! that a test can make a webhook retry due without waiting for it.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};
use std::time::Duration;

use chrono::{DateTime, TimeZone, Utc};

/// A moment, to the millisecond (what the database stores: Unix milliseconds).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Timestamp(i64);

impl Timestamp {
    pub const fn from_millis(ms: i64) -> Self {
        Timestamp(ms)
    }

    pub const fn as_millis(self) -> i64 {
        self.0
    }

    pub fn from_datetime(t: DateTime<Utc>) -> Self {
        Timestamp(t.timestamp_millis())
    }

    pub fn to_datetime(self) -> DateTime<Utc> {
        Utc.timestamp_millis_opt(self.0)
            .single()
            .unwrap_or_default()
    }

    /// How long after `earlier` this is; zero when it is not after.
    pub fn since(self, earlier: Timestamp) -> Duration {
        Duration::from_millis(u64::try_from(self.0.saturating_sub(earlier.0)).unwrap_or(0))
    }
}

fn millis(d: Duration) -> i64 {
    i64::try_from(d.as_millis()).unwrap_or(i64::MAX)
}

impl std::ops::Add<Duration> for Timestamp {
    type Output = Timestamp;
    fn add(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_add(millis(d)))
    }
}

impl std::ops::Sub<Duration> for Timestamp {
    type Output = Timestamp;
    fn sub(self, d: Duration) -> Timestamp {
        Timestamp(self.0.saturating_sub(millis(d)))
    }
}

impl From<DateTime<Utc>> for Timestamp {
    fn from(t: DateTime<Utc>) -> Self {
        Timestamp::from_datetime(t)
    }
}

impl From<Timestamp> for DateTime<Utc> {
    fn from(t: Timestamp) -> Self {
        t.to_datetime()
    }
}

/// What "now" is. Cheap to clone; every clone reads the same time.
#[derive(Debug, Clone)]
pub struct Clock(Arc<Source>);

#[derive(Debug)]
enum Source {
    System,
    /// Moves only when told to: `advance`.
    Manual(AtomicI64),
}

impl Clock {
    /// The wall clock.
    pub fn system() -> Self {
        Clock(Arc::new(Source::System))
    }

    /// A clock that starts at the wall clock's now and moves only by [`Clock::advance`].
    pub fn manual() -> Self {
        Clock(Arc::new(Source::Manual(AtomicI64::new(
            Utc::now().timestamp_millis(),
        ))))
    }

    pub fn now(&self) -> Timestamp {
        match &*self.0 {
            Source::System => Timestamp(Utc::now().timestamp_millis()),
            Source::Manual(ms) => Timestamp(ms.load(Ordering::SeqCst)),
        }
    }

    /// Moves a manual clock forward; the wall clock cannot be moved, so this does nothing to it.
    pub fn advance(&self, d: Duration) {
        if let Source::Manual(ms) = &*self.0 {
            ms.fetch_add(millis(d), Ordering::SeqCst);
        }
    }
}

impl Default for Clock {
    fn default() -> Self {
        Clock::system()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timestamps_add_subtract_and_measure_without_overflow() {
        let t = Timestamp::from_millis(1_000);
        assert_eq!((t + Duration::from_millis(500)).as_millis(), 1_500);
        assert_eq!((t - Duration::from_secs(2)).as_millis(), -1_000);
        assert_eq!(
            t.since(Timestamp::from_millis(400)),
            Duration::from_millis(600)
        );
        assert_eq!(Timestamp::from_millis(400).since(t), Duration::ZERO);
        assert_eq!(
            Timestamp::from_millis(i64::MAX) + Duration::MAX,
            Timestamp::from_millis(i64::MAX)
        );
        let now = Utc::now();
        assert_eq!(
            Timestamp::from(now).to_datetime().timestamp_millis(),
            now.timestamp_millis()
        );
    }

    #[test]
    fn a_manual_clock_moves_only_when_advanced() {
        let clock = Clock::manual();
        let start = clock.now();
        assert_eq!(clock.now(), start);
        clock.clone().advance(Duration::from_secs(5));
        assert_eq!(clock.now().since(start), Duration::from_secs(5));
    }
}
