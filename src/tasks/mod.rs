//! The task lifecycle, in one place.
//!
//! A write becomes a task in four steps, each in its own file:
//!
//! 1. [`command`]: the validated write as a value — recorded with the task, turned into the one
//!    EM request that carries it out.
//! 2. [`submit`]: [`precheck`] refuses at once what EM would fail later; then the task is
//!    recorded *before* EM is called, then gets EM's task id ([`attach`]: with the 202 answer
//!    kept under the request's Idempotency-Key in the same transaction, or written behind the
//!    answer when there is none).
//! 3. [`replay`]: an `Idempotency-Key` makes a write happen at most once; repeats get the first
//!    answer.
//! 4. [`poller`] settles running tasks: from EM's task list when EM still shows them, from EM's
//!    objects when EM lost them; [`in_flight`] keeps which tasks those are in memory, and [`unanswered`] which
//!    intents may have been left without their fate (what the poller's look for them needs). The decisions are [`reconcile`]'s pure functions; the poller
//!    only does the I/O. A settle and its webhook events are one transaction; [`answer`] builds
//!    what the outside sees (the task's view, the 202, the event).

pub mod answer;
pub mod attach;
pub mod command;
pub mod in_flight;
pub mod poller;
pub mod precheck;
pub mod reconcile;
pub mod replay;
pub mod submit;
pub mod unanswered;

pub use attach::{Attacher, Read};
pub use command::{Command, EmRequest, Unreadable};
pub use in_flight::InFlightSet;
pub use poller::{Poller, PollerConfig, TickReport};
pub use replay::{Decision, Replay};
pub use submit::{Requester, SubmitError, Submitter};
pub use unanswered::Unanswered;

use std::sync::Arc;

use crate::domain::ReplicaId;
use crate::store::Store;

/// What this replica knows of its own tasks, filled by the submitter and read by the poller:
/// the tasks it follows on EM, the intents whose fate it has not recorded, and where EM's task
/// ids are recorded (some behind their answers: each tick writes those first).
#[derive(Clone)]
pub struct OwnTasks {
    pub in_flight: Arc<InFlightSet>,
    pub unanswered: Arc<Unanswered>,
    pub attacher: Arc<Attacher>,
}

impl OwnTasks {
    /// `owner` is this replica. EM's task ids a request waits for go through `writes` (the
    /// group-committed writes' pool), those written behind their answers through `background`
    /// (a pool that outlives the HTTP workers: the last are written after the server stopped).
    pub fn new(writes: Store, background: Store, owner: ReplicaId) -> Self {
        let in_flight = Arc::new(InFlightSet::new());
        OwnTasks {
            attacher: Arc::new(Attacher::new(writes, background, owner, in_flight.clone())),
            in_flight,
            unanswered: Arc::new(Unanswered::new()),
        }
    }
}
