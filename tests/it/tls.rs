//! TLS towards EM: `em-sim --tls` with a generated certificate, and the three ways to trust it.

use em_gateway::em::tls::parse_fingerprint;
use em_gateway::em::{EmClient, EmError};
use em_gateway::sim::tls::TlsMode;

use crate::support::*;

fn pem_file(pem: &str) -> std::path::PathBuf {
    let path = std::env::temp_dir().join(format!("emgw_t_{}.pem", uuid::Uuid::new_v4().simple()));
    std::fs::write(&path, pem).unwrap();
    path
}

async fn reaches(
    sim: &em_gateway::sim::RunningSim,
    tweak: impl FnOnce(&mut em_gateway::em::EmSettings),
) -> Result<(), EmError> {
    let mut s = settings(sim, 1);
    tweak(&mut s);
    let client = EmClient::new(s).expect("client");
    client.backup_servers().await.map(|_| ())
}

#[tokio::test]
async fn ems_default_self_signed_certificate_is_reached_by_pin_or_insecure_only() {
    let sim = spawn_sim(|c| c.tls = Some(TlsMode::SelfSigned));
    assert!(sim.api_url.starts_with("https://"));
    let (fingerprint, pem) = sim.tls.clone().unwrap();

    let refused = reaches(&sim, |_| {}).await.unwrap_err();
    assert!(
        matches!(refused, EmError::Unreachable(_)),
        "refused by default: {refused:?}"
    );

    // A self-signed certificate marked as a CA is no trust anchor for rustls: the CA file fails.
    let ca = pem_file(&pem);
    let as_ca = reaches(&sim, |s| s.tls.ca_file = Some(ca.clone())).await;
    assert!(
        as_ca.is_err(),
        "rustls refuses a CA certificate used as the server's own"
    );

    reaches(&sim, |s| {
        s.tls.cert_sha256 = Some(parse_fingerprint(&fingerprint).unwrap())
    })
    .await
    .expect("the pin reaches it");
    let wrong = reaches(&sim, |s| s.tls.cert_sha256 = Some([7u8; 32]))
        .await
        .unwrap_err();
    match wrong {
        EmError::Unreachable(reason) => assert!(
            reason.contains("fingerprint") || reason.contains("certificate"),
            "{reason}"
        ),
        other => panic!("a wrong pin must fail: {other:?}"),
    }
    reaches(&sim, |s| s.tls.insecure = true)
        .await
        .expect("insecure reaches anything");
    std::fs::remove_file(ca).ok();
    sim.stop().await;
}

#[tokio::test]
async fn a_ca_issued_certificate_is_reached_through_the_ca_file() {
    let sim = spawn_sim(|c| c.tls = Some(TlsMode::CaIssued));
    let (fingerprint, ca_pem) = sim.tls.clone().unwrap();
    assert!(
        reaches(&sim, |_| {}).await.is_err(),
        "not in the system roots"
    );
    let ca = pem_file(&ca_pem);
    reaches(&sim, |s| s.tls.ca_file = Some(ca.clone()))
        .await
        .expect("trusted through its CA");
    reaches(&sim, |s| {
        s.tls.cert_sha256 = Some(parse_fingerprint(&fingerprint).unwrap())
    })
    .await
    .expect("pinned");
    std::fs::remove_file(ca).ok();
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_gateway_runs_against_a_pinned_em() {
    let sim = spawn_sim(|c| c.tls = Some(TlsMode::SelfSigned));
    let (fingerprint, _) = sim.tls.clone().unwrap();
    let url = fresh_database(Db::Sqlite).await;
    let app = spawn_app(&test_settings_with(
        &sim,
        &url,
        &[("EMGW_EM_CERT_SHA256", &fingerprint)],
    ))
    .await;
    let task: serde_json::Value = app
        .post(
            "/v1/cloud-gateways",
            &app.write_key,
            serde_json::json!({"backup_server_uid": VBR01, "server_host_name": "tls.example"}),
        )
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        app.settled(task["id"].as_str().unwrap()).await["state"],
        "succeeded"
    );
    app.stop().await;
    sim.stop().await;
}
