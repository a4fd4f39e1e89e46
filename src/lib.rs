//! em-gateway: a JSON API in front of Veeam Backup Enterprise Manager.
//!
//! Data flows one way: HTTP request → validated domain value → EM call ([`em`]) → stored task →
//! poller → webhook. [`sim`] is a faithful Enterprise Manager for tests and the demo.

pub mod access;
pub mod api;
pub mod clock;
pub mod config;
pub mod domain;
pub mod em;
pub mod logs;
pub mod memory;
pub mod outbound;
pub mod secrets;
pub mod sim;
pub mod startup;
pub mod store;
pub mod tasks;
pub mod telemetry;
pub mod webhooks;
