//! `em-sim` over raw HTTP: what a client of EM would see.

use std::time::Duration;

use reqwest::{Method, StatusCode};
use serde_json::{Value, json};

use crate::support::*;

const NS: &str = "http://www.veeam.com/ent/v1.0";

async fn post_xml(api: &str, token: &str, path: &str, body: &str) -> (StatusCode, String) {
    let resp = http()
        .post(format!("{api}{path}"))
        .header("X-RestSvcSessionId", token)
        .header("Content-Type", "application/xml")
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    (resp.status(), resp.text().await.unwrap())
}

fn gateway_xml(inner: &str) -> String {
    format!(
        r#"<?xml version="1.0" encoding="utf-8"?><CreateCloudGatewaySpec xmlns="{NS}">{inner}</CreateCloudGatewaySpec>"#
    )
}

#[tokio::test]
async fn bad_bodies_get_400_with_an_error_that_names_the_problem() {
    let sim = spawn_sim(|_| {});
    let token = raw_logon(&sim).await;
    let ok_tail =
        format!("<NetworkType>Direct</NetworkType><BackupServerUid>{VBR01}</BackupServerUid>");
    let cases: Vec<(String, &str)> = vec![
        ("<CreateCloudGatewaySpec".into(), "not well-formed"),
        ("".into(), "Node [root] does not exist"),
        (
            format!(r#"<CloudGateway xmlns="{NS}"/>"#),
            "root element must be <CreateCloudGatewaySpec>",
        ),
        (
            format!(
                "<CreateCloudGatewaySpec><ServerHostName>a</ServerHostName>{ok_tail}</CreateCloudGatewaySpec>"
            ),
            "namespace",
        ),
        (
            gateway_xml(&format!(
                "<NetworkType>Direct</NetworkType><ServerHostName>a</ServerHostName><BackupServerUid>{VBR01}</BackupServerUid>"
            )),
            "<ServerHostName> is out of order",
        ),
        (
            gateway_xml(&format!("<Description>x</Description>{ok_tail}")),
            "<ServerHostName> is missing",
        ),
        (
            gateway_xml(&format!(
                "<ServerHostName>a</ServerHostName><Colour>red</Colour>{ok_tail}"
            )),
            "<Colour> is not expected",
        ),
        (
            gateway_xml(&format!(
                "<ServerHostName>a</ServerHostName><NetworkType>Bridge</NetworkType><BackupServerUid>{VBR01}</BackupServerUid>"
            )),
            "one of Direct, NAT",
        ),
        (
            gateway_xml(&format!(
                "<ServerHostName>a</ServerHostName><ExternalPort>70000</ExternalPort>{ok_tail}"
            )),
            "between 1 and 65535",
        ),
        (
            gateway_xml(&format!(
                "<ServerHostName>a</ServerHostName><NetworkType>NAT</NetworkType><BackupServerUid>{VBR01}</BackupServerUid>"
            )),
            "<ExternalIp> must be specified",
        ),
        (
            gateway_xml(
                "<ServerHostName>a</ServerHostName><NetworkType>Direct</NetworkType><BackupServerUid>urn:veeam:BackupServer:8c88c6d6-931f-4044-8c0b-7a0c5f188b00 179011f9-62c3-498c-9b5a-d5f227fd1dce</BackupServerUid>",
            ),
            "not a valid BackupServer UID",
        ),
        (
            gateway_xml("<ServerHostName>a</ServerHostName><NetworkType>Direct</NetworkType>"),
            "<BackupServerUid> is missing",
        ),
    ];
    for (body, expected) in cases {
        let (status, text) = post_xml(&sim.api_url, &token, "/cloud/gateways", &body).await;
        assert_eq!(status, 400, "{body}: {text}");
        let error: em_gateway::em::xml::Error =
            em_gateway::em::xml::from_xml(&text).expect("an EM Error body");
        assert_eq!(error.status_code, Some(400));
        let message = error.message.unwrap_or_default();
        assert!(
            message.contains(expected),
            "{body}\nexpected {expected:?} in {message}"
        );
    }
    // Nothing of that reached the task engine.
    assert_eq!(sim_state(&sim).await["operations_pending"], 0);
    sim.stop().await;
}

#[tokio::test]
async fn garbage_never_panics_the_simulator() {
    let sim = spawn_sim(|_| {});
    let token = raw_logon(&sim).await;
    let mut rng = fastrand::Rng::with_seed(7);
    let pieces = [
        "<",
        ">",
        "</",
        "/>",
        "&amp;",
        "&bogus;",
        "&#0;",
        "<![CDATA[",
        "]]>",
        "xmlns=",
        "\"",
        "CreateCloudGatewaySpec",
        "ServerHostName",
        "<!DOCTYPE x>",
        "é",
        "\u{0}",
    ];
    for _ in 0..300 {
        let body: String = (0..rng.usize(0..30))
            .map(|_| pieces[rng.usize(..pieces.len())])
            .collect();
        for path in ["/cloud/gateways", "/cloud/gatewayPools"] {
            let (status, _) = post_xml(&sim.api_url, &token, path, &body).await;
            assert!(status == 400 || status == 202, "{body:?} gave {status}");
        }
    }
    let resp = http()
        .get(format!("{}/cloud/gateways", sim.api_url))
        .header("X-RestSvcSessionId", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200, "still serving");
    sim.stop().await;
}

#[tokio::test]
async fn sessions_401_with_basic_realm_and_the_cookie_wins() {
    let sim = spawn_sim(|_| {});
    let resp = http()
        .get(format!("{}/backupServers", sim.api_url))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 401);
    assert_eq!(resp.headers()["www-authenticate"], "Basic Realm=RestSvc");

    let token = raw_logon(&sim).await;
    let with_stale_cookie = http()
        .get(format!("{}/backupServers", sim.api_url))
        .header("X-RestSvcSessionId", &token)
        .header("Cookie", "X-RestSvcSessionId=stale")
        .send()
        .await
        .unwrap();
    assert_eq!(
        with_stale_cookie.status(),
        401,
        "EM uses the cookie and ignores the header"
    );
    let with_good_cookie = http()
        .get(format!("{}/backupServers", sim.api_url))
        .header("Cookie", format!("X-RestSvcSessionId={token}"))
        .send()
        .await
        .unwrap();
    assert_eq!(with_good_cookie.status(), 200);

    let wrong = http()
        .post(format!("{}/sessionMngr/?v=v1_7", sim.api_url))
        .basic_auth(USER, Some("nope"))
        .send()
        .await
        .unwrap();
    assert_eq!(wrong.status(), 401);
    let anonymous = http()
        .post(format!("{}/sessionMngr/?v=v1_7", sim.api_url))
        .send()
        .await
        .unwrap();
    assert_eq!(anonymous.status(), 401);
    let counters = &sim_state(&sim).await["counters"];
    assert_eq!(
        (&counters["logons"], &counters["logons_refused"]),
        (&json!(1), &json!(2)),
        "refused logons are counted apart from the ones that made a session"
    );
    let version = http()
        .post(format!("{}/sessionMngr/?v=v9_9", sim.api_url))
        .basic_auth(USER, Some(PASSWORD))
        .send()
        .await
        .unwrap();
    assert_eq!(version.status(), 400);
    sim.stop().await;
}

#[tokio::test]
async fn the_account_password_can_be_reset() {
    let sim = spawn_sim(|_| {});
    let token = raw_logon(&sim).await;
    let log_on = |password: &'static str| {
        http()
            .post(format!("{}/sessionMngr/?v=v1_7", sim.api_url))
            .basic_auth(USER, Some(password))
            .send()
    };
    sim_control(
        &sim,
        Method::PUT,
        "/_sim/account",
        Some(json!({"password": "n3w-Pa55"})),
    )
    .await;
    assert_eq!(log_on(PASSWORD).await.unwrap().status(), 401);
    assert_eq!(log_on("n3w-Pa55").await.unwrap().status(), 201);
    let still = http()
        .get(format!("{}/backupServers", sim.api_url))
        .header("X-RestSvcSessionId", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(still.status(), 200, "a session logged on before stays");
    let bad = http()
        .put(format!(
            "{}/_sim/account",
            sim.api_url.trim_end_matches("/api")
        ))
        .json(&json!({"pass": "x"}))
        .send()
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    let state = sim_state(&sim).await;
    assert!(!state.to_string().contains("n3w-Pa55"), "never shown");
    sim.stop().await;
}

#[tokio::test]
async fn sessions_expire_when_idle() {
    // Long enough that the logon and the first call fit in it on a busy machine.
    let idle = Duration::from_millis(1000);
    let sim = spawn_sim(|c| c.session_idle = idle);
    let token = raw_logon(&sim).await;
    let get = || {
        http()
            .get(format!("{}/tasks", sim.api_url))
            .header("X-RestSvcSessionId", &token)
            .send()
    };
    assert_eq!(get().await.unwrap().status(), 200);
    // Untouched (a request would reset its idle clock) until the idle limit is over.
    let last_use = std::time::Instant::now();
    eventually("the idle limit to pass", Duration::from_secs(3), || async {
        (last_use.elapsed() > idle).then_some(())
    })
    .await;
    assert_eq!(get().await.unwrap().status(), 401);
    sim.stop().await;
}

#[tokio::test]
async fn tasks_are_scoped_to_their_session_and_finish_with_a_related_link() {
    // OperationFinished shows for a whole second: wide enough to be seen under any load.
    let sim = spawn_sim(|c| c.operation_finished_time = Duration::from_millis(1000));
    let a = raw_logon(&sim).await;
    let b = raw_logon(&sim).await;
    let body = gateway_xml(&format!(
        "<ServerHostName>scoped.example</ServerHostName><NetworkType>Direct</NetworkType><BackupServerUid>{VBR01}</BackupServerUid>"
    ));
    let (status, text) = post_xml(&sim.api_url, &a, "/cloud/gateways", &body).await;
    assert_eq!(status, 202, "{text}");
    assert!(
        text.contains("<TaskId>task-1</TaskId>") && text.contains("<State>Running</State>"),
        "{text}"
    );

    let get = |token: &str| {
        http()
            .get(format!("{}/tasks/task-1", sim.api_url))
            .header("X-RestSvcSessionId", token.to_string())
            .send()
    };
    let other = get(&b).await.unwrap();
    assert_eq!(other.status(), 500);
    assert!(
        other
            .text()
            .await
            .unwrap()
            .contains("There is no backup task with id [task-1] in current rest session")
    );

    let seen = std::sync::atomic::AtomicBool::new(false);
    let text = eventually("the task to finish", Duration::from_secs(5), || async {
        let text = get(&a).await.unwrap().text().await.unwrap();
        if text.contains("<State>OperationFinished</State>") {
            seen.store(true, std::sync::atomic::Ordering::Relaxed);
        }
        text.contains("<State>Finished</State>").then_some(text)
    })
    .await;
    assert!(seen.into_inner(), "OperationFinished shows before Finished");
    assert!(
        text.contains(r#"<Result Success="true"><Message>Ok</Message></Result>"#),
        "{text}"
    );
    assert!(
        text.contains(r#"Type="CloudGateway" Rel="Related""#),
        "{text}"
    );
    sim.stop().await;
}

#[tokio::test]
async fn json_is_negotiated_both_ways() {
    let sim = spawn_sim(|_| {});
    let token = raw_logon(&sim).await;
    let resp = http()
        .post(format!("{}/cloud/gateways", sim.api_url))
        .header("X-RestSvcSessionId", &token)
        .header("Accept", "application/json")
        .json(&json!({"ServerHostName": "json.example", "NetworkType": "Direct", "ExternalPort": 6180, "BackupServerUid": VBR01}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let task: Value = resp.json().await.unwrap();
    assert_eq!(task["TaskId"], "task-1");
    assert_eq!(task["Links"][0]["Rel"], "Delete");

    let pools: Value = http()
        .get(format!("{}/cloud/tenants?format=Entity", sim.api_url))
        .header("X-RestSvcSessionId", &token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(pools["CloudTenants"][0]["Name"], "acme");

    let err = http()
        .post(format!("{}/cloud/gateways", sim.api_url))
        .header("X-RestSvcSessionId", &token)
        .header("Accept", "application/json")
        .json(&json!({"ServerHostName": "json.example", "NetworkType": "Bridge", "BackupServerUid": VBR01}))
        .send()
        .await
        .unwrap();
    assert_eq!(err.status(), 400);
    let err: Value = err.json().await.unwrap();
    assert_eq!(err["StatusCode"], 400);
    assert!(err["Message"].as_str().unwrap().contains("NetworkType"));
    assert!(err["StackTrace"].is_null());

    set_sim_faults(&sim, json!({"camel_case_json": true})).await;
    let refs: Value = http()
        .get(format!("{}/backupServers", sim.api_url))
        .header("X-RestSvcSessionId", &token)
        .header("Accept", "application/json")
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    assert_eq!(refs["refs"][0]["uid"], VBR01);
    sim.stop().await;
}

#[tokio::test]
async fn paths_and_parameters_are_case_insensitive_and_query_filters() {
    let sim = spawn_sim(|_| {});
    let token = raw_logon(&sim).await;
    let get = |path: String| {
        http()
            .get(format!("{}{path}", sim.api_url))
            .header("x-restsvcsessionid", token.clone())
            .send()
    };
    assert_eq!(get("/BACKUPSERVERS/".into()).await.unwrap().status(), 200);
    let text = get(
        r#"/query?TYPE=backupServer&format=Entities&filter=name=="vbr02.example.local""#.into(),
    )
    .await
    .unwrap()
    .text()
    .await
    .unwrap();
    assert!(
        text.contains("<QueryResult") && text.contains("vbr02.example.local"),
        "{text}"
    );
    assert!(!text.contains("vbr01.example.local"), "{text}");
    assert!(text.contains(r#"PagesCount="1""#), "{text}");
    let text = get("/query?type=CloudTenant&filter=BackupServerUId==29e5d158-1f58-44bc-bbaa-2752d787a91d;Name!=acme".into())
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(
        text.contains("globex") && !text.contains(r#"Name="acme""#),
        "{text}"
    );
    let bad = get("/query?type=CloudTenant&filter=(Name==x".into())
        .await
        .unwrap();
    assert_eq!(bad.status(), 400);
    sim.stop().await;
}

#[tokio::test]
async fn restart_forgets_sessions_and_tasks_but_keeps_objects() {
    let sim = spawn_sim(|_| {});
    let token = raw_logon(&sim).await;
    let body = gateway_xml(&format!(
        "<ServerHostName>kept.example</ServerHostName><NetworkType>Direct</NetworkType><BackupServerUid>{VBR01}</BackupServerUid>"
    ));
    assert_eq!(
        post_xml(&sim.api_url, &token, "/cloud/gateways", &body)
            .await
            .0,
        202
    );
    sim_control(&sim, Method::POST, "/_sim/restart", None).await;
    let old = http()
        .get(format!("{}/tasks", sim.api_url))
        .header("X-RestSvcSessionId", &token)
        .send()
        .await
        .unwrap();
    assert_eq!(old.status(), 401);
    let token = raw_logon(&sim).await;
    let text = eventually("the gateway to appear", Duration::from_secs(5), || async {
        let text = http()
            .get(format!("{}/cloud/gateways", sim.api_url))
            .header("X-RestSvcSessionId", &token)
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.contains("kept.example").then_some(text)
    })
    .await;
    assert!(text.contains("CloudGatewayReference"));
    sim.stop().await;
}

/// A client's pool may open a connection and send on it only seconds later, or keep one
/// between two requests. EM's web server (IIS) waits 120 s for a request either way;
/// actix-web's 5 s defaults answered the first 408 and closed the second.
#[tokio::test]
async fn connections_wait_for_requests_as_iis_would() {
    use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
    let sim = spawn_sim(|_| {});
    let addr = reqwest::Url::parse(&sim.api_url).unwrap();
    let addr = format!("{}:{}", addr.host_str().unwrap(), addr.port().unwrap());
    // Longer than actix-web's defaults, far below IIS's.
    let idle = Duration::from_secs(6);
    // One request on a kept connection; its answer's status line.
    async fn ask(conn: &mut BufReader<tokio::net::TcpStream>) -> String {
        conn.get_mut()
            .write_all(b"GET /api/ HTTP/1.1\r\nHost: em\r\n\r\n")
            .await
            .unwrap();
        let (mut status, mut length, mut line) = (String::new(), 0, String::new());
        loop {
            line.clear();
            let read = tokio::time::timeout(Duration::from_secs(10), conn.read_line(&mut line))
                .await
                .expect("an answer within 10 s")
                .unwrap();
            if read == 0 {
                return format!("closed after {status:?}");
            }
            if status.is_empty() {
                status = line.trim_end().to_string();
            } else if let Some(v) = line.to_ascii_lowercase().strip_prefix("content-length:") {
                length = v.trim().parse().unwrap();
            } else if line == "\r\n" {
                break;
            }
        }
        let mut body = vec![0; length];
        conn.read_exact(&mut body).await.unwrap();
        status
    }
    let connect = || async { BufReader::new(tokio::net::TcpStream::connect(&addr).await.unwrap()) };
    let opened_early = async {
        let mut conn = connect().await;
        tokio::time::sleep(idle).await;
        ask(&mut conn).await
    };
    let kept = async {
        let mut conn = connect().await;
        let first = ask(&mut conn).await;
        tokio::time::sleep(idle).await;
        (first, ask(&mut conn).await)
    };
    let (early, (first, second)) = tokio::join!(opened_early, kept);
    assert_eq!(early, "HTTP/1.1 200 OK", "a connection opened early");
    assert_eq!(first, "HTTP/1.1 200 OK");
    assert_eq!(
        second, "HTTP/1.1 200 OK",
        "a connection kept between requests"
    );
    sim.stop().await;
}
