//! Enterprise Manager: its XML documents, and the client that speaks to it through a pool of
//! logon sessions.

pub mod client;
pub mod error;
pub mod session;
pub mod skim;
pub mod tls;
pub mod xml;

pub use client::{EmClient, EmSettings, Submitted};
pub use error::EmError;
pub use session::SessionRef;
