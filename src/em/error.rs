//! Everything that can go wrong between the gateway and Enterprise Manager.

use std::time::Duration;

/// An EM call that did not give the answer asked for. Carries EM's own status and message where
/// EM sent one; never carries a session token or the password.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum EmError {
    /// No answer, and nothing happened on EM: the connection failed before the request was sent,
    /// or a read-only call timed out. Safe to try again later.
    #[error("Enterprise Manager is unreachable: {0}")]
    Unreachable(String),

    /// A write was sent but no answer came back (timeout, dropped connection). EM may or may not
    /// have started the operation; the caller must look at EM's objects instead of repeating it.
    #[error(
        "Enterprise Manager did not answer a {method} to {path}; its outcome is unknown: {reason}"
    )]
    OutcomeUnknown {
        method: String,
        path: String,
        reason: String,
    },

    /// EM refused our credentials (401/403 to the logon). No logon is tried for `retry_in`
    /// (the logon back-off): each refusal counts towards locking the account out.
    #[error(
        "Enterprise Manager refused the gateway's credentials ({status}): {message}; {}",
        next_logon(*.retry_in)
    )]
    LogonRefused {
        status: u16,
        message: String,
        retry_in: Duration,
    },

    /// EM answered with an error status; `message` is EM's own `Message`.
    #[error("Enterprise Manager answered {status}: {message}")]
    Refused { status: u16, message: String },

    /// The logon session a task belongs to no longer exists (expired, EM restarted, re-logged on).
    /// EM's tasks are session-scoped, so the task can no longer be read.
    #[error("the Enterprise Manager logon session that owns this task is gone")]
    SessionLost,

    /// EM does not know this task in its session (EM answers 500 for this).
    #[error("Enterprise Manager has no task {0} in this logon session")]
    TaskUnknown(String),

    /// EM answered something that is not one of its documents.
    #[error("Enterprise Manager sent an answer the gateway cannot read: {0}")]
    BadAnswer(String),
}

impl EmError {
    /// A short, bounded name for metrics.
    pub fn kind(&self) -> &'static str {
        match self {
            EmError::Unreachable(_) => "unreachable",
            EmError::OutcomeUnknown { .. } => "outcome_unknown",
            EmError::LogonRefused { .. } => "logon_refused",
            EmError::Refused { .. } => "refused",
            EmError::SessionLost => "session_lost",
            EmError::TaskUnknown(_) => "task_unknown",
            EmError::BadAnswer(_) => "bad_answer",
        }
    }

    /// EM's HTTP status, where EM answered with one.
    pub fn em_status(&self) -> Option<u16> {
        match self {
            EmError::Refused { status, .. } | EmError::LogonRefused { status, .. } => Some(*status),
            _ => None,
        }
    }

    /// How long before the call may succeed: the logon back-off's wait.
    pub fn retry_in(&self) -> Option<Duration> {
        match self {
            EmError::LogonRefused { retry_in, .. } => Some(*retry_in),
            _ => None,
        }
    }

    /// True for "EM says this object does not exist". EM is not consistent here: 404 is the
    /// documented answer, but some versions answer 400 or 500 with a "not found" text.
    pub fn is_not_found(&self) -> bool {
        match self {
            EmError::Refused { status: 404, .. } => true,
            EmError::Refused {
                status: 400 | 500,
                message,
            } => {
                let m = message.to_ascii_lowercase();
                m.contains("not found") || m.contains("does not exist")
            }
            _ => false,
        }
    }
}

/// Whole seconds, rounded up: what a `Retry-After` of `d` says (at least 1, as 0 invites an
/// immediate retry).
pub fn retry_after_secs(d: Duration) -> u64 {
    d.as_secs()
        .saturating_add(u64::from(d.subsec_nanos() > 0))
        .max(1)
}

fn next_logon(retry_in: Duration) -> String {
    if retry_in.is_zero() {
        "a logon may be tried again now".into()
    } else {
        format!("next logon in {} s", retry_after_secs(retry_in))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn retry_after_rounds_up_to_whole_seconds_at_least_one() {
        for (ms, secs) in [(0, 1), (1, 1), (999, 1), (1000, 1), (1001, 2), (12_000, 12)] {
            assert_eq!(retry_after_secs(Duration::from_millis(ms)), secs, "{ms} ms");
        }
    }

    #[test]
    fn a_refusal_says_when_the_next_logon_is() {
        let refused = |ms| EmError::LogonRefused {
            status: 401,
            message: "Invalid user name or password.".into(),
            retry_in: Duration::from_millis(ms),
        };
        assert_eq!(
            refused(11_200).to_string(),
            "Enterprise Manager refused the gateway's credentials (401): Invalid user name or password.; next logon in 12 s"
        );
        assert!(
            refused(0)
                .to_string()
                .ends_with("a logon may be tried again now")
        );
    }
}
