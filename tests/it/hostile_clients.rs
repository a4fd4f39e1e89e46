//! The audit's smaller findings (issue 13, point 8), as a hostile or careless client meets
//! them: text EM's XML cannot carry, thousands of bad items in one request, the `Bearer` scheme
//! in any case, two `Authorization` headers and a body that stalls or trickles.

use std::time::{Duration, Instant};

use reqwest::header::{AUTHORIZATION, HeaderMap, HeaderValue};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::*;
use crate::tenants::REPO01;

async fn refused_field(app: &TestApp, method: &str, path: &str, key: &str, body: Value) -> String {
    let resp = http()
        .request(method.parse().unwrap(), app.url(path))
        .bearer_auth(key)
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let problem: Value = resp.json().await.unwrap();
    assert_eq!(status, 422, "{method} {path} {body}: {problem}");
    problem["errors"][0]["field"]
        .as_str()
        .unwrap_or_default()
        .to_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn text_outside_xml_1_0_is_refused_naming_the_field() {
    let sim = spawn_sim(|_| {});
    let app = spawn_app(&test_settings(&sim, &fresh_database(Db::Sqlite).await)).await;
    let gw = "/v1/cloud-gateways/3e4e6d17-ee2a-430f-807c-8d92af2a5551";
    let pool = "/v1/cloud-gateway-pools/3e4e6d17-ee2a-430f-807c-8d92af2a5552";
    let gateway = |extra: Value| {
        let mut body = json!({"backup_server_uid": VBR01, "server_host_name": "gw.example"});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let new_pool = |extra: Value| {
        let mut body = json!({"backup_server_uid": VBR01, "name": "EU pool",
            "cloud_gateway_uids": ["3e4e6d17-ee2a-430f-807c-8d92af2a5551"]});
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let tenant = |extra: Value| {
        let mut body = crate::tenants::new_tenant("hostile");
        body.as_object_mut()
            .unwrap()
            .extend(extra.as_object().unwrap().clone());
        body
    };
    let tenant_path = "/v1/cloud-tenants/5cf540af-512a-5ba8-9f12-77fba51207e0";
    let tenant_quotas = format!("{tenant_path}/backup-resources");
    let (w, a) = (app.write_key.as_str(), app.admin_key.as_str());
    // (method, path, key, body, the field named)
    let cases = [
        (
            "POST",
            "/v1/cloud-gateways",
            w,
            gateway(json!({"description": "a\u{FFFE}"})),
            "description",
        ),
        (
            "POST",
            "/v1/cloud-gateways",
            w,
            gateway(json!({"description": "bell\u{7}"})),
            "description",
        ),
        (
            "POST",
            "/v1/cloud-gateways",
            w,
            gateway(json!({"server_host_name": "gw\u{1}.example"})),
            "server_host_name",
        ),
        (
            "POST",
            "/v1/cloud-gateways",
            w,
            gateway(json!({"network_type": "nat", "external_ip": "nat\u{FFFF}.example"})),
            "external_ip",
        ),
        (
            "POST",
            "/v1/cloud-gateways",
            w,
            gateway(json!({"metadata": {"order": "4\u{0}2"}})),
            "metadata.order",
        ),
        (
            "POST",
            "/v1/cloud-gateways",
            w,
            gateway(json!({"metadata": {"order": "42\r"}})),
            "metadata.order",
        ),
        (
            "PATCH",
            gw,
            w,
            json!({"description": "\u{FFFF}"}),
            "description",
        ),
        (
            "PATCH",
            gw,
            w,
            json!({"enabled": true, "metadata": {"k": "\u{1B}[31m"}}),
            "metadata.k",
        ),
        (
            "POST",
            "/v1/cloud-gateway-pools",
            w,
            new_pool(json!({"name": "EU\u{FFFE}pool"})),
            "name",
        ),
        (
            "POST",
            "/v1/cloud-gateway-pools",
            w,
            new_pool(json!({"name": "EU\npool"})),
            "name",
        ),
        (
            "POST",
            "/v1/cloud-gateway-pools",
            w,
            new_pool(json!({"description": "\u{0}"})),
            "description",
        ),
        (
            "POST",
            "/v1/cloud-gateway-pools",
            w,
            new_pool(json!({"metadata": {"k": "\u{FFFE}"}})),
            "metadata.k",
        ),
        ("PATCH", pool, w, json!({"name": "\u{8}"}), "name"),
        (
            "PATCH",
            pool,
            w,
            json!({"description": "x\u{FFFF}"}),
            "description",
        ),
        (
            "POST",
            "/v1/webhooks",
            w,
            json!({"url": "http://127.0.0.1:9/x", "description": "\u{FFFE}"}),
            "description",
        ),
        (
            "POST",
            "/v1/api-keys",
            a,
            json!({"name": "portal\u{FFFF}", "scope": "read"}),
            "name",
        ),
        (
            "POST",
            "/v1/cloud-tenants",
            w,
            tenant(json!({"name": "acme\u{FFFE}"})),
            "name",
        ),
        (
            "POST",
            "/v1/cloud-tenants",
            w,
            tenant(json!({"description": "\u{FFFF}"})),
            "description",
        ),
        (
            "POST",
            "/v1/cloud-tenants",
            w,
            tenant(json!({"password": "pa\u{1}ss"})),
            "password",
        ),
        (
            "POST",
            "/v1/cloud-tenants",
            w,
            tenant(
                json!({"backup_resources": [{"name": "\u{7}", "repository_uid": REPO01, "quota_mb": 2048}]}),
            ),
            "backup_resources[0].name",
        ),
        (
            "PATCH",
            tenant_path,
            w,
            json!({"description": "\u{0}"}),
            "description",
        ),
        (
            "PATCH",
            tenant_path,
            w,
            json!({"password": "new\npassword"}),
            "password",
        ),
        (
            "POST",
            &tenant_quotas,
            w,
            json!({"name": "Q\u{FFFE}", "repository_uid": REPO01, "quota_mb": 2048}),
            "name",
        ),
    ];
    for (method, path, key, body, field) in cases {
        assert_eq!(
            refused_field(&app, method, path, key, body.clone()).await,
            field,
            "{body}"
        );
    }
    // A password is a secret: its problem says what is wrong, not which character or where.
    let resp = app
        .post(
            "/v1/cloud-tenants",
            w,
            tenant(json!({"password": "pa\u{1}ss"})),
        )
        .await;
    let problem = resp.text().await.unwrap();
    assert!(
        !problem.contains("U+0001") && !problem.contains("character 3"),
        "{problem}"
    );
    assert_eq!(
        app.get_json("/v1/tasks").await["items"],
        json!([]),
        "nothing refused became a task"
    );

    // Tabs and line feeds are text; so is anything XML 1.0 has, astral planes included.
    let accepted = app
        .post(
            "/v1/cloud-gateways",
            w,
            gateway(json!({"description": "line one\n\tline two 🦀 \u{FDD0}",
                "metadata": {"note": "a\tb\nc"}})),
        )
        .await;
    assert_eq!(accepted.status(), 202);
    let task: Value = accepted.json().await.unwrap();
    assert_eq!(task["metadata"]["note"], "a\tb\nc");
    app.settled(task["id"].as_str().unwrap()).await;

    // A lone surrogate is no character at all: malformed JSON, never a 500.
    let lone = http()
        .post(app.url("/v1/cloud-gateways"))
        .bearer_auth(w)
        .header("Content-Type", "application/json")
        .body(format!(
            r#"{{"backup_server_uid": "{VBR01}", "server_host_name": "gw.example", "description": "\ud800"}}"#
        ))
        .send()
        .await
        .unwrap();
    assert_eq!(lone.status(), 400);
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn thousands_of_bad_items_get_100_errors_and_a_count() {
    let sim = spawn_sim(|_| {});
    let app = spawn_app(&test_settings(&sim, &fresh_database(Db::Sqlite).await)).await;
    let bad: Vec<String> = (0..5000).map(|i| format!("x{i}")).collect();
    let resp = app
        .post(
            "/v1/cloud-gateway-pools",
            &app.write_key,
            json!({"backup_server_uid": VBR01, "name": "big", "cloud_gateway_uids": bad}),
        )
        .await;
    assert_eq!(resp.status(), 422);
    let bytes = resp.bytes().await.unwrap();
    let problem: Value = serde_json::from_slice(&bytes).unwrap();
    let errors = problem["errors"].as_array().unwrap();
    assert_eq!(errors.len(), 100);
    assert_eq!(errors[0]["field"], "cloud_gateway_uids[0]");
    assert_eq!(errors[99]["field"], "cloud_gateway_uids[99]");
    assert_eq!(problem["errors_omitted"], 4900);
    assert_eq!(
        problem["detail"],
        "5000 fields are invalid; the first 100 are listed, 4900 more are not"
    );
    assert!(bytes.len() < 16 * 1024, "{} bytes", bytes.len());
    println!("5,000 bad UIDs: a {}-byte answer", bytes.len());

    // A few stay listed whole, without a count.
    let few = app
        .post(
            "/v1/cloud-gateway-pools",
            &app.write_key,
            json!({"backup_server_uid": VBR01, "name": "small", "cloud_gateway_uids": ["x", "y"]}),
        )
        .await;
    let problem: Value = few.json().await.unwrap();
    assert_eq!(problem["errors"].as_array().unwrap().len(), 2);
    assert!(problem.get("errors_omitted").is_none(), "{problem}");
    app.stop().await;
    sim.stop().await;
}

async fn tasks_with(app: &TestApp, values: &[String]) -> (u16, Value) {
    let mut headers = HeaderMap::new();
    for v in values {
        headers.append(AUTHORIZATION, HeaderValue::from_str(v).unwrap());
    }
    let resp = http()
        .get(app.url("/v1/tasks"))
        .headers(headers)
        .send()
        .await
        .unwrap();
    (
        resp.status().as_u16(),
        resp.json().await.unwrap_or(Value::Null),
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_bearer_scheme_is_case_insensitive_and_one_authorization_header_is_required() {
    let sim = spawn_sim(|_| {});
    let app = spawn_app(&test_settings(&sim, &fresh_database(Db::Sqlite).await)).await;
    let key = &app.read_key;
    for value in [
        format!("Bearer {key}"),
        format!("bearer {key}"),
        format!("BEARER {key}"),
        format!("BeArEr {key}"),
        format!("Bearer    {key}"),
    ] {
        let (status, body) = tasks_with(&app, std::slice::from_ref(&value)).await;
        assert_eq!(status, 200, "{value}: {body}");
    }
    for value in [
        format!("Basic {key}"),
        format!("Bearer{key}"),
        "Bearer".to_string(),
    ] {
        let (status, _) = tasks_with(&app, std::slice::from_ref(&value)).await;
        assert_eq!(status, 401, "{value}");
    }

    // Two headers: refused whatever they hold, before any key is looked at.
    for pair in [
        [format!("Bearer {key}"), format!("Bearer {key}")],
        [format!("Bearer {key}"), "Bearer emgw_unknown".to_string()],
        ["Bearer emgw_unknown".to_string(), format!("Bearer {key}")],
    ] {
        let (status, problem) = tasks_with(&app, &pair).await;
        assert_eq!(status, 400, "{pair:?}: {problem}");
        assert_eq!(problem["errors"][0]["field"], "Authorization", "{problem}");
        assert!(
            problem["detail"]
                .as_str()
                .unwrap()
                .contains("Authorization"),
            "{problem}"
        );
    }
    // Nor does a write get through with two.
    let mut headers = HeaderMap::new();
    headers.append(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", app.write_key)).unwrap(),
    );
    headers.append(
        AUTHORIZATION,
        HeaderValue::from_str(&format!("Bearer {}", app.read_key)).unwrap(),
    );
    let write = http()
        .post(app.url("/v1/cloud-gateways"))
        .headers(headers)
        .json(&json!({"backup_server_uid": VBR01, "server_host_name": "two.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(write.status(), 400);
    assert_eq!(app.get_json("/v1/tasks").await["items"], json!([]));
    app.stop().await;
    sim.stop().await;
}

/// The body deadline the tests run with: short, so that waiting for it costs little.
const BODY_TIMEOUT: Duration = Duration::from_millis(1000);

async fn app_with_body_timeout() -> (em_gateway::sim::RunningSim, TestApp) {
    let sim = spawn_sim(|_| {});
    let url = fresh_database(Db::Sqlite).await;
    let millis = BODY_TIMEOUT.as_millis().to_string();
    let app = spawn_app(&test_settings_with(
        &sim,
        &url,
        &[("EMGW_BODY_TIMEOUT_MS", millis.as_str())],
    ))
    .await;
    (sim, app)
}

fn port(app: &TestApp) -> u16 {
    app.base.rsplit(':').next().unwrap().parse().unwrap()
}

/// A gateway create, as sent over a raw connection: the head announces the whole body.
fn create_head(key: &str, length: usize) -> String {
    format!(
        "POST /v1/cloud-gateways HTTP/1.1\r\nHost: gw\r\nAuthorization: Bearer {key}\r\n\
         Content-Type: application/json\r\nContent-Length: {length}\r\n\r\n"
    )
}

fn create_body(host: &str) -> Vec<u8> {
    json!({"backup_server_uid": VBR01, "server_host_name": host})
        .to_string()
        .into_bytes()
}

/// Reads one answer's head and body (by its `content-length`) off `stream`.
async fn read_answer(stream: &mut TcpStream) -> (String, Value) {
    let mut got = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let n = stream.read(&mut buf).await.unwrap();
        assert!(n > 0, "the connection closed before an answer: {got:?}");
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got).to_string();
        if let Some((head, body)) = text.split_once("\r\n\r\n") {
            let length: usize = head
                .lines()
                .find_map(|l| {
                    l.to_ascii_lowercase()
                        .strip_prefix("content-length: ")
                        .map(str::to_string)
                })
                .and_then(|v| v.trim().parse().ok())
                .unwrap_or(0);
            if body.len() >= length {
                return (
                    head.to_string(),
                    serde_json::from_str(body).unwrap_or(Value::Null),
                );
            }
        }
    }
}

/// Whether the gateway hangs up (within `patience`) after its answer.
async fn closed_within(stream: &mut TcpStream, patience: Duration) -> bool {
    let mut rest = Vec::new();
    matches!(
        tokio::time::timeout(patience, stream.read_to_end(&mut rest)).await,
        Ok(Ok(_)) | Ok(Err(_))
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_or_trickled_body_is_answered_408_and_the_connection_closed() {
    let (sim, app) = app_with_body_timeout().await;
    let body = create_body("stalled.example");

    // Stalled: the head and a few bytes, then nothing.
    let mut stalled = TcpStream::connect(("127.0.0.1", port(&app))).await.unwrap();
    stalled
        .write_all(create_head(&app.write_key, body.len()).as_bytes())
        .await
        .unwrap();
    stalled.write_all(&body[..10]).await.unwrap();
    let sent = Instant::now();
    let (head, problem) = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut stalled))
        .await
        .expect("an answer, not a connection held for ever");
    let took = sent.elapsed();
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(
        took >= BODY_TIMEOUT && took < BODY_TIMEOUT + Duration::from_millis(1500),
        "answered after {took:?}, the deadline being {BODY_TIMEOUT:?}"
    );
    let head = head.to_ascii_lowercase();
    assert!(
        head.contains("content-type: application/problem+json"),
        "{head}"
    );
    assert!(head.contains("connection: close"), "{head}");
    assert_eq!(problem["status"], 408);
    assert_eq!(
        problem["type"],
        "https://em-gateway.dev/problems/request-timeout"
    );
    assert!(
        closed_within(&mut stalled, Duration::from_secs(5)).await,
        "the connection is closed after the 408"
    );

    // Trickled: a byte every 100 ms never stalls, but never finishes in time either.
    let mut trickled = TcpStream::connect(("127.0.0.1", port(&app))).await.unwrap();
    trickled
        .write_all(create_head(&app.write_key, body.len()).as_bytes())
        .await
        .unwrap();
    let sent = Instant::now();
    let mut answer = None;
    for byte in &body[..body.len() - 1] {
        if trickled.write_all(&[*byte]).await.is_err() {
            break;
        }
        let mut peek = [0u8; 1];
        if let Ok(Ok(n)) =
            tokio::time::timeout(Duration::from_millis(100), trickled.peek(&mut peek)).await
            && n > 0
        {
            answer = Some(read_answer(&mut trickled).await);
            break;
        }
    }
    let (head, _) = answer.expect("an answer before the body ended");
    assert!(head.starts_with("HTTP/1.1 408"), "{head}");
    assert!(sent.elapsed() < BODY_TIMEOUT + Duration::from_millis(1500));
    assert!(closed_within(&mut trickled, Duration::from_secs(5)).await);

    // Neither became a task, and the gateway still serves.
    let tasks = app.get_json("/v1/tasks").await;
    assert_eq!(tasks["items"], json!([]), "{tasks}");
    app.stop().await;
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_slow_but_steady_body_within_the_deadline_is_served() {
    let (sim, app) = app_with_body_timeout().await;
    let body = create_body("steady.example");
    let mut steady = TcpStream::connect(("127.0.0.1", port(&app))).await.unwrap();
    steady
        .write_all(create_head(&app.write_key, body.len()).as_bytes())
        .await
        .unwrap();
    // Six pieces 100 ms apart: about half the deadline.
    let piece = body.len().div_ceil(6);
    for chunk in body.chunks(piece) {
        tokio::time::sleep(Duration::from_millis(100)).await;
        steady.write_all(chunk).await.unwrap();
    }
    let (head, task) = tokio::time::timeout(Duration::from_secs(10), read_answer(&mut steady))
        .await
        .expect("an answer");
    assert!(head.starts_with("HTTP/1.1 202"), "{head}");
    assert_eq!(task["state"], "running", "{task}");
    app.settled(task["id"].as_str().unwrap()).await;
    app.stop().await;
    sim.stop().await;
}
