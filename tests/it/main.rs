//! Black-box tests over real HTTP on loopback.

mod access;
mod cli;
mod egress;
mod em_client;
mod em_tenants;
mod faults;
mod fuzz;
mod gateway;
mod golden;
mod hostile_clients;
mod logon_backoff;
mod operations;
mod outage;
mod owners;
mod poller;
mod sim_tenants;
mod simulator;
mod store;
mod support;
mod surface;
mod tenant_recovery;
mod tenant_secrets;
mod tenants;
mod tls;
mod walkthrough;
mod webhooks;
