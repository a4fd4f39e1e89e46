//! Black-box tests over real HTTP on loopback.

mod em_client;
mod golden;
mod simulator;
mod support;
