//! Completion webhooks: signed per the Standard Webhooks specification, delivered at least once
//! from a durable outbox that the poller fills in the transaction that settles a task.

pub mod address;
pub mod current;
pub mod deliverer;
pub mod fair;
pub mod handoff;
pub mod retry;
pub mod signature;
pub mod target;

pub use deliverer::{Deliverer, DelivererConfig};
pub use handoff::Handoff;
