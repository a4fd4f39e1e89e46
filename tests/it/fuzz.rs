//! Property-based: whatever JSON (or bytes) a client sends to a write route, the gateway answers
//! with a 2xx or a 4xx problem — never a 500, never a panic.

use proptest::prelude::*;
use proptest::test_runner::{Config, TestRunner};
use serde_json::{Map, Value};

use crate::support::*;

const FIELDS: &[&str] = &[
    "backup_server_uid",
    "server_host_name",
    "description",
    "network_type",
    "external_ip",
    "external_port",
    "internal_port",
    "metadata",
    "name",
    "cloud_gateway_uids",
    "cloud_tenant_uids",
    "enabled",
    "url",
    "event_types",
    "scope",
    "expires_in_days",
    "overlap_seconds",
];

fn text() -> impl Strategy<Value = String> {
    prop_oneof![
        Just(VBR01.to_string()),
        Just(ACME.to_string()),
        Just("29e5d158-1f58-44bc-bbaa-2752d787a91d".to_string()),
        Just("urn:veeam:CloudGateway:".to_string()),
        Just("direct".to_string()),
        Just("nat".to_string()),
        Just("gw.example.local".to_string()),
        Just("http://127.0.0.1:9/x".to_string()),
        Just("task.failed".to_string()),
        Just("admin".to_string()),
        "[a-z0-9.-]{0,20}",
        "\\PC{0,30}",
        ".{0,300}",
    ]
}

fn json() -> impl Strategy<Value = Value> {
    let leaf = prop_oneof![
        Just(Value::Null),
        any::<bool>().prop_map(Value::Bool),
        any::<i64>().prop_map(Value::from),
        (-70000i64..70000).prop_map(Value::from),
        any::<f64>()
            .prop_filter("finite", |f| f.is_finite())
            .prop_map(Value::from),
        text().prop_map(Value::String),
    ];
    leaf.prop_recursive(3, 40, 8, |inner| {
        prop_oneof![
            prop::collection::vec(inner.clone(), 0..6).prop_map(Value::Array),
            prop::collection::vec(
                (prop::sample::select(FIELDS).prop_map(str::to_string), inner),
                0..8
            )
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        ]
    })
}

/// Mostly objects over our own field names, so the parsers (not just serde) are exercised.
fn body() -> impl Strategy<Value = Value> {
    prop_oneof![
        3 => prop::collection::vec((prop::sample::select(FIELDS).prop_map(str::to_string), json()), 0..10)
            .prop_map(|pairs| Value::Object(pairs.into_iter().collect::<Map<_, _>>())),
        1 => json(),
    ]
}

#[test]
fn no_input_yields_a_500() {
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .unwrap();
    let (sim, app) = runtime.block_on(async {
        let sim = spawn_sim(|_| {});
        let app = spawn_app(&test_settings(&sim, &fresh_database(Db::Sqlite).await)).await;
        (sim, app)
    });
    let routes: Vec<(reqwest::Method, String)> = vec![
        (reqwest::Method::POST, "/v1/cloud-gateways".into()),
        (reqwest::Method::POST, "/v1/cloud-gateway-pools".into()),
        (
            reqwest::Method::PATCH,
            "/v1/cloud-gateways/29e5d158-1f58-44bc-bbaa-2752d787a91d".into(),
        ),
        (
            reqwest::Method::PATCH,
            "/v1/cloud-gateway-pools/29e5d158-1f58-44bc-bbaa-2752d787a91d".into(),
        ),
        (reqwest::Method::POST, "/v1/webhooks".into()),
        (reqwest::Method::POST, "/v1/api-keys".into()),
    ];
    let cases = std::env::var("EMGW_FUZZ_CASES")
        .ok()
        .and_then(|v| v.parse().ok())
        .unwrap_or(150);
    let mut runner = TestRunner::new(Config {
        cases,
        failure_persistence: None,
        ..Config::default()
    });
    let strategy = (
        prop::sample::select(routes),
        body(),
        prop::option::of(prop::collection::vec(any::<u8>(), 0..200)),
        any::<bool>(),
    );
    runner
        .run(&strategy, |((method, path), body, raw, with_key)| {
            let status = runtime.block_on(async {
                let mut req = http()
                    .request(method.clone(), app.url(&path))
                    .bearer_auth(&app.admin_key)
                    .header("Content-Type", "application/json");
                if with_key {
                    req = req.header("Idempotency-Key", format!("k-{}", uuid::Uuid::new_v4()));
                }
                let req = match &raw {
                    Some(bytes) => req.body(bytes.clone()),
                    None => req.body(body.to_string()),
                };
                let resp = req.send().await.unwrap();
                let status = resp.status().as_u16();
                let ct = resp
                    .headers()
                    .get("content-type")
                    .map(|v| v.to_str().unwrap().to_string())
                    .unwrap_or_default();
                let text = resp.text().await.unwrap();
                if status >= 400 {
                    prop_assert_eq!(
                        ct,
                        "application/problem+json",
                        "{} {} -> {}: {}",
                        method,
                        path,
                        status,
                        text
                    );
                    let problem: Value = serde_json::from_str(&text).unwrap();
                    prop_assert_eq!(problem["status"].as_u64(), Some(u64::from(status)));
                }
                Ok(status)
            })?;
            prop_assert!(status < 500, "{} {} answered {}", method, path, status);
            Ok(())
        })
        .unwrap();
    runtime.block_on(async {
        app.stop().await;
        sim.stop().await;
    });
}
