//! When a webhook delivery is tried again: the policy, as a pure function. The deliverer only
//! applies the answer.

use std::time::Duration;

/// How one attempt ended, as far as retrying is concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The consumer answered with this status (and maybe `Retry-After`, in seconds).
    Answered {
        status: u16,
        retry_after: Option<Duration>,
    },
    /// No answer: the connection failed or the attempt timed out.
    NoAnswer,
}

/// What becomes of the delivery.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Next {
    Delivered,
    /// Try again after this long.
    RetryIn(Duration),
    /// The schedule is used up.
    GiveUp,
    /// 410 Gone: give up and disable the subscription.
    Disable,
}

/// The longest `Retry-After` honoured; a longer one is cut to this.
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(3600);
/// The shortest: a consumer asking for 0 still gets a moment.
pub const MIN_RETRY_AFTER: Duration = Duration::from_secs(1);

/// After `attempts` attempts (this one included), with `schedule` the delays before each retry:
/// a 2xx is delivered, a 410 disables the subscription, anything else waits the next delay of
/// the schedule — ±20% by `jitter` (in 0..1, so that retries from many deliveries do not arrive
/// in lockstep), or what the consumer's `Retry-After` asks within 1 s..1 h — or gives up when the
/// schedule is used up.
pub fn next(outcome: Outcome, attempts: u32, schedule: &[Duration], jitter: f64) -> Next {
    let retry_after = match outcome {
        Outcome::Answered { status, .. } if (200..300).contains(&status) => {
            return Next::Delivered;
        }
        Outcome::Answered { status: 410, .. } => return Next::Disable,
        Outcome::Answered { retry_after, .. } => retry_after,
        Outcome::NoAnswer => None,
    };
    let index = usize::try_from(attempts.saturating_sub(1)).unwrap_or(usize::MAX);
    let Some(delay) = schedule.get(index) else {
        return Next::GiveUp;
    };
    Next::RetryIn(match retry_after {
        Some(asked) => asked.clamp(MIN_RETRY_AFTER, MAX_RETRY_AFTER),
        None => delay.mul_f64(0.8 + jitter.clamp(0.0, 1.0) * 0.4),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn s(n: u64) -> Duration {
        Duration::from_secs(n)
    }

    #[test]
    fn the_schedule_table() {
        let schedule = [s(5), s(300), s(1800)];
        let answered = |status, retry_after| Outcome::Answered {
            status,
            retry_after,
        };
        // (outcome, attempts made, jitter, next)
        let table = [
            (answered(200, None), 1, 0.5, Next::Delivered),
            (answered(204, Some(s(60))), 3, 0.5, Next::Delivered),
            (answered(299, None), 9, 0.5, Next::Delivered),
            (answered(410, None), 1, 0.5, Next::Disable),
            (answered(410, None), 4, 0.5, Next::Disable),
            (answered(500, None), 1, 0.5, Next::RetryIn(s(5))),
            (answered(500, None), 1, 0.0, Next::RetryIn(s(4))),
            (answered(500, None), 1, 1.0, Next::RetryIn(s(6))),
            (answered(404, None), 2, 0.5, Next::RetryIn(s(300))),
            (answered(302, None), 3, 0.5, Next::RetryIn(s(1800))),
            (Outcome::NoAnswer, 2, 0.0, Next::RetryIn(s(240))),
            (answered(500, None), 4, 0.5, Next::GiveUp),
            (Outcome::NoAnswer, 4, 0.5, Next::GiveUp),
            (Outcome::NoAnswer, u32::MAX, 0.5, Next::GiveUp),
            // Retry-After replaces the delay, within 1 s..1 h, only while retries remain.
            (answered(503, Some(s(30))), 1, 0.5, Next::RetryIn(s(30))),
            (answered(429, Some(s(0))), 1, 0.5, Next::RetryIn(s(1))),
            (
                answered(503, Some(s(86_400))),
                2,
                0.5,
                Next::RetryIn(s(3600)),
            ),
            (answered(503, Some(s(30))), 4, 0.5, Next::GiveUp),
            // A jitter source out of range is held to it.
            (answered(500, None), 1, 7.0, Next::RetryIn(s(6))),
        ];
        for (outcome, attempts, jitter, expected) in table {
            assert_eq!(
                next(outcome, attempts, &schedule, jitter),
                expected,
                "{outcome:?} after {attempts} attempt(s), jitter {jitter}"
            );
        }
    }

    #[test]
    fn an_empty_schedule_tries_once() {
        assert_eq!(next(Outcome::NoAnswer, 1, &[], 0.5), Next::GiveUp);
        assert_eq!(
            next(
                Outcome::Answered {
                    status: 201,
                    retry_after: None
                },
                1,
                &[],
                0.5
            ),
            Next::Delivered
        );
    }
}
