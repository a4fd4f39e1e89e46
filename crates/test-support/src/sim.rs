//! em-sim in-process on a loopback port, and clients for it.

use em_gateway::em::{EmClient, EmSettings};
use em_gateway::sim::{self, RunningSim, SimConfig};
use secrecy::SecretString;
use std::time::Duration;

pub const USER: &str = "EM01\\svc-portal";
pub const PASSWORD: &str = "s3cret-Pa55";
pub const VBR01: &str = "urn:veeam:BackupServer:29e5d158-1f58-44bc-bbaa-2752d787a91d";
pub const VBR02: &str = "urn:veeam:BackupServer:8c88c6d6-931f-4044-8c0b-7a0c5f188b00";
pub const ACME: &str = "urn:veeam:CloudTenant:5cf540af-512a-5ba8-9f12-77fba51207e0";

/// A simulator on a free loopback port; `tweak` adjusts its configuration.
pub fn spawn_sim(tweak: impl FnOnce(&mut SimConfig)) -> RunningSim {
    let mut config = SimConfig::new("127.0.0.1:0".parse().unwrap(), USER, PASSWORD);
    config.task_time = Duration::from_millis(50);
    config.workers = 1;
    tweak(&mut config);
    sim::start(config, false).expect("em-sim starts")
}

pub fn settings(sim: &RunningSim, sessions: usize) -> EmSettings {
    let mut s = EmSettings::new(
        sim.api_url.parse().unwrap(),
        USER,
        SecretString::from(PASSWORD),
    );
    s.sessions = sessions;
    s.request_timeout = Duration::from_secs(5);
    s
}

pub fn client(sim: &RunningSim, sessions: usize) -> EmClient {
    EmClient::new(settings(sim, sessions)).expect("client builds")
}

/// A plain HTTP client for talking to the simulator directly.
pub fn http() -> reqwest::Client {
    let tls = em_gateway::em::tls::client_config(&Default::default()).unwrap();
    reqwest::Client::builder()
        .tls_backend_preconfigured(tls)
        .build()
        .unwrap()
}

/// Logs on directly and returns the session token.
pub async fn raw_logon(sim: &RunningSim) -> String {
    let resp = http()
        .post(format!("{}/sessionMngr/?v=v1_7", sim.api_url))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    resp.headers()["x-restsvcsessionid"]
        .to_str()
        .unwrap()
        .to_string()
}

pub async fn sim_state(sim: &RunningSim) -> serde_json::Value {
    let base = sim.api_url.trim_end_matches("/api");
    http()
        .get(format!("{base}/_sim/state"))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap()
}

/// Sets em-sim's faults (`PUT /_sim/faults`): rates of errors, garbage and dropped answers.
pub async fn set_sim_faults(sim: &RunningSim, faults: serde_json::Value) {
    sim_control(sim, reqwest::Method::PUT, "/_sim/faults", Some(faults)).await;
}

pub async fn sim_control(
    sim: &RunningSim,
    method: reqwest::Method,
    path: &str,
    body: Option<serde_json::Value>,
) {
    let base = sim.api_url.trim_end_matches("/api");
    let mut req = http().request(method, format!("{base}{path}"));
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.unwrap();
    assert!(
        resp.status().is_success(),
        "control call {path}: {}",
        resp.status()
    );
}

/// The intent a create of `host`'s cloud gateway records (its command as the submitter writes
/// it): for a test that plays a request that died after recording it.
pub fn gateway_intent(host: &str) -> em_gateway::store::NewTask {
    use em_gateway::domain::{Metadata, Operation, Owner, TaskId};
    let request = serde_json::json!({"backup_server": VBR01, "host": host, "description": null,
        "network": {"network_type": "direct"}, "external_port": 6180, "internal_port": 6180});
    em_gateway::store::NewTask {
        id: TaskId::new(),
        operation: Operation::CreateCloudGateway,
        target_id: None,
        request: request.to_string(),
        metadata: Metadata::default(),
        api_key_id: None,
        owner: Owner::default(),
        warnings: Vec::new(),
    }
}
