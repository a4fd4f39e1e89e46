//! em-gateway: a JSON API in front of Veeam Backup Enterprise Manager.
//!
//! Data flows one way: HTTP request → validated domain value → EM call ([`em`]) → stored task →
//! poller → webhook. [`sim`] is a faithful Enterprise Manager for tests and the demo.

pub mod em;
pub mod sim;
