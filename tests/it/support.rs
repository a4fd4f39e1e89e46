//! The shared test plumbing lives in `emgw-test-support` (the benchmark uses it too); this adds
//! what only this crate's own tests know: where cargo built the binaries.

use std::path::Path;

pub use emgw_test_support::*;

pub const GATEWAY_BIN: &str = env!("CARGO_BIN_EXE_em-gateway");
pub const SIM_BIN: &str = env!("CARGO_BIN_EXE_em-sim");

/// `em-gateway serve` as a process, with these variables.
pub async fn gateway_process(vars: &[(String, String)]) -> GatewayProcess {
    GatewayProcess::start(Path::new(GATEWAY_BIN), vars).await
}
