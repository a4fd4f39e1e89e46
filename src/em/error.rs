//! Everything that can go wrong between the gateway and Enterprise Manager.

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

    /// EM refused our credentials.
    #[error("Enterprise Manager refused the logon ({status}): {message}")]
    LogonRefused { status: u16, message: String },

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
