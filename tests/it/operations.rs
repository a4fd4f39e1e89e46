//! Running it: metrics, logs without secrets, graceful shutdown, limits, packaging.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const GATEWAY: &str = GATEWAY_BIN;
const SIM: &str = SIM_BIN;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn metrics_cover_http_em_tasks_and_webhooks() {
    let sim = spawn_sim(|_| {});
    let app = spawn_app(&test_settings(&sim, &fresh_database(Db::Sqlite).await)).await;
    let receiver = Receiver::start(Answer::Ok);
    app.post("/v1/webhooks", &app.write_key, json!({"url": receiver.url}))
        .await;
    let task: Value = app
        .post(
            "/v1/cloud-gateways",
            &app.write_key,
            json!({"backup_server_uid": VBR01, "server_host_name": "metrics.example"}),
        )
        .await
        .json()
        .await
        .unwrap();
    app.settled(task["id"].as_str().unwrap()).await;
    receiver.wait_for(1).await;
    let text = eventually(
        "the webhook attempt to be counted",
        Duration::from_secs(5),
        || async {
            let text = http()
                .get(app.url("/metrics"))
                .send()
                .await
                .unwrap()
                .text()
                .await
                .unwrap();
            text.contains(r#"emgw_webhook_attempts_total{outcome="delivered"}"#)
                .then_some(text)
        },
    )
    .await;
    for expected in [
        r#"emgw_http_requests_total{route="/v1/cloud-gateways",method="POST",status="202"}"#,
        r#"emgw_http_request_duration_seconds_bucket{route="/v1/tasks/{id}",method="GET""#,
        r#"emgw_em_calls_total{operation="POST /cloud/gateways",outcome="ok"}"#,
        r#"emgw_em_call_duration_seconds_bucket{operation="GET /tasks""#,
        r#"emgw_em_logons_total{outcome="ok"}"#,
        "emgw_tasks_in_flight",
        r#"emgw_tasks_settled_total{state="succeeded",how="em"}"#,
        "emgw_poller_lag_seconds",
        "emgw_poller_tick_duration_seconds_bucket",
        "emgw_webhook_delay_seconds_bucket",
        r#"emgw_store_write_answered_seconds_bucket{write="intent""#,
        r#"emgw_store_write_answered_seconds_bucket{write="attach""#,
    ] {
        assert!(text.contains(expected), "/metrics lacks {expected}");
    }
    for secret in [
        app.admin_key.as_str(),
        app.write_key.as_str(),
        app.read_key.as_str(),
        PASSWORD,
    ] {
        assert!(!text.contains(secret), "a secret in /metrics");
    }
    assert!(
        !text.contains(task["id"].as_str().unwrap()),
        "no ids as labels"
    );
    app.stop().await;
    sim.stop().await;
}

/// `/metrics` has no authentication: nothing a client sends may add series to it. (The registry
/// is the process's, shared with the tests running beside this one: so the test looks at the
/// method labels, which only it makes odd, not at the whole scrape.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn clients_cannot_grow_the_metrics() {
    const METHODS: [&str; 10] = [
        "GET", "POST", "PUT", "PATCH", "DELETE", "HEAD", "OPTIONS", "TRACE", "CONNECT", "other",
    ];
    let sim = spawn_sim(|_| {});
    let app = spawn_app(&test_settings(&sim, &fresh_database(Db::Sqlite).await)).await;
    // The HTTP series, by their method label.
    let series = || async {
        let text = http()
            .get(app.url("/metrics"))
            .send()
            .await
            .unwrap()
            .text()
            .await
            .unwrap();
        text.lines()
            .filter(|l| l.starts_with("emgw_http_request"))
            .filter_map(|l| {
                let method = l.split("method=\"").nth(1)?.split('"').next()?;
                Some((
                    method.to_string(),
                    l.rsplit_once(' ').map_or(l, |(k, _)| k).to_string(),
                ))
            })
            .collect::<Vec<(String, String)>>()
    };
    let mut rng = fastrand::Rng::with_seed(7);
    for i in 0..1000 {
        let len = rng.usize(3..if i % 10 == 0 { 2000 } else { 12 });
        let method: String = (0..len).map(|_| rng.uppercase()).collect();
        let path = ["/v1/tasks", "/healthz", &format!("/nowhere/{i}")][i % 3].to_string();
        let resp = http()
            .request(
                reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
                app.url(&path),
            )
            .send()
            .await
            .unwrap();
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }
    let after = series().await;
    let odd: Vec<&String> = after
        .iter()
        .filter(|(method, _)| !METHODS.contains(&method.as_str()))
        .map(|(_, line)| line)
        .take(5)
        .collect();
    assert!(odd.is_empty(), "methods as sent became labels: {odd:?}");
    let other = after
        .iter()
        .filter(|(m, line)| m == "other" && line.starts_with("emgw_http_requests_total"))
        .count();
    assert!(
        (1..=10).contains(&other),
        "1,000 odd methods made {other} series labelled `other`: a route or status as sent?"
    );
    app.stop().await;
    sim.stop().await;
}

/// The real binary, with a marker password, at debug level: no log line carries a secret; a
/// SIGTERM stops it cleanly, logging its EM sessions off.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn secrets_stay_out_of_the_logs_and_sigterm_stops_cleanly() {
    let marker = "Marker-Pa55-7f3e91";
    let sim = spawn_sim(|c| c.password = marker.to_string());
    let db = format!(
        "sqlite://{}",
        std::env::temp_dir()
            .join(format!("emgw_t_{}.db", uuid::Uuid::new_v4().simple()))
            .display()
    );
    let envs = |cmd: &mut tokio::process::Command| {
        cmd.env_clear()
            .env("DATABASE_URL", &db)
            .env("EMGW_LISTEN", "127.0.0.1:0")
            .env("EMGW_EM_URL", &sim.api_url)
            .env("EMGW_EM_USERNAME", USER)
            .env("EMGW_EM_PASSWORD", marker)
            .env("EMGW_POLL_INTERVAL_MS", "50")
            .env("EMGW_WEBHOOK_ALLOW_PRIVATE", "true")
            .env("EMGW_LOG_FORMAT", "json")
            .env("RUST_LOG", "debug");
    };
    let mut create = tokio::process::Command::new(GATEWAY);
    create.args(["keys", "create", "--name", "logs", "--scope", "admin"]);
    envs(&mut create);
    let out = create.output().await.unwrap();
    let key = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();
    let mut logs = String::from_utf8(out.stderr).unwrap();

    let mut serve = tokio::process::Command::new(GATEWAY);
    serve
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    envs(&mut serve);
    let mut child = serve.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    // The port is in the log line "em-gateway listening".
    let mut seen = String::new();
    let port = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stderr.read(&mut buf).await.unwrap();
            assert!(n > 0, "the gateway exited: {seen}");
            seen.push_str(&String::from_utf8_lossy(&buf[..n]));
            if let Some(line) = seen.lines().find(|l| l.contains("em-gateway listening")) {
                let v: Value = serde_json::from_str(line).unwrap();
                return v["port"].as_u64().unwrap();
            }
        }
    })
    .await
    .expect("the gateway starts");
    let base = format!("http://127.0.0.1:{port}");
    let receiver = Receiver::start(Answer::Ok);
    let hook: Value = http()
        .post(format!("{base}/v1/webhooks"))
        .bearer_auth(&key)
        .json(&json!({"url": receiver.url}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let webhook_secret = hook["secret"].as_str().unwrap().to_string();
    let task: Value = http()
        .post(format!("{base}/v1/cloud-gateways"))
        .bearer_auth(&key)
        .json(&json!({"backup_server_uid": VBR01, "server_host_name": "logs.example"}))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();
    let wrong = "emgw_WrongMarkerKey0000000000000000000000000";
    assert_eq!(
        http()
            .get(format!("{base}/v1/tasks"))
            .bearer_auth(wrong)
            .send()
            .await
            .unwrap()
            .status(),
        401
    );
    receiver.wait_for(1).await;
    assert_eq!(task["state"], "running");
    assert_eq!(sim_state(&sim).await["sessions"], 4, "the pool logged on");

    // SIGTERM: requests finish, EM sessions are logged off, the process exits 0.
    let pid = child.id().unwrap().to_string();
    assert!(
        tokio::process::Command::new("kill")
            .args(["-TERM", &pid])
            .status()
            .await
            .unwrap()
            .success()
    );
    let status = tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops in time")
        .unwrap();
    assert!(status.success(), "{status:?}");
    stderr.read_to_string(&mut seen).await.unwrap();
    logs.push_str(&seen);
    assert_eq!(
        sim_state(&sim).await["sessions"],
        0,
        "EM sessions were logged off"
    );
    assert!(logs.contains("\"stopped\""), "the shutdown is logged");

    for secret in [marker, key.as_str(), wrong, webhook_secret.as_str()] {
        let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(secret)).collect();
        assert!(leaks.is_empty(), "a secret in the logs: {leaks:?}");
    }
    assert!(
        logs.lines().count() > 20,
        "the run was logged at debug level"
    );
    sim.stop().await;
}

/// The real binary at debug level, sent a key in a query string: no log line carries it, while
/// the harmless parameters beside it are still there to read. And 5,000 bad items in one body
/// do not make megabytes of log.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn query_values_stay_out_of_the_logs_but_harmless_ones() {
    let marker = "emgw_QueryMarker0c41d7";
    let sim = spawn_sim(|_| {});
    let db = format!(
        "sqlite://{}",
        std::env::temp_dir()
            .join(format!("emgw_t_{}.db", uuid::Uuid::new_v4().simple()))
            .display()
    );
    let envs = |cmd: &mut tokio::process::Command| {
        cmd.env_clear()
            .env("DATABASE_URL", &db)
            .env("EMGW_LISTEN", "127.0.0.1:0")
            .env("EMGW_EM_URL", &sim.api_url)
            .env("EMGW_EM_USERNAME", USER)
            .env("EMGW_EM_PASSWORD", PASSWORD)
            .env("EMGW_LOG_FORMAT", "json")
            .env("RUST_LOG", "debug");
    };
    let mut create = tokio::process::Command::new(GATEWAY);
    create.args(["keys", "create", "--name", "logs", "--scope", "write"]);
    envs(&mut create);
    let out = create.output().await.unwrap();
    let key = String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .last()
        .unwrap()
        .to_string();

    let mut serve = tokio::process::Command::new(GATEWAY);
    serve
        .arg("serve")
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .kill_on_drop(true);
    envs(&mut serve);
    let mut child = serve.spawn().unwrap();
    let mut stderr = child.stderr.take().unwrap();
    let mut logs = String::new();
    let port = tokio::time::timeout(Duration::from_secs(20), async {
        let mut buf = [0u8; 4096];
        loop {
            let n = stderr.read(&mut buf).await.unwrap();
            assert!(n > 0, "the gateway exited: {logs}");
            logs.push_str(&String::from_utf8_lossy(&buf[..n]));
            if let Some(line) = logs.lines().find(|l| l.contains("em-gateway listening")) {
                let v: Value = serde_json::from_str(line).unwrap();
                return v["port"].as_u64().unwrap();
            }
        }
    })
    .await
    .expect("the gateway starts");
    // Read on while it runs: a pipe left full would stall the gateway mid-request.
    let rest = tokio::spawn(async move {
        let mut rest = String::new();
        stderr.read_to_string(&mut rest).await.ok();
        rest
    });
    let base = format!("http://127.0.0.1:{port}");
    // Refused (an unknown parameter), so the answer is logged with the request's span.
    let refused = http()
        .get(format!("{base}/v1/tasks?api_key={marker}&limit=5"))
        .bearer_auth(&key)
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 400);
    for path in [
        format!("/healthz?{marker}"),
        format!("/v1/nowhere?token={marker}&state=failed"),
    ] {
        http()
            .get(format!("{base}{path}"))
            .bearer_auth(&key)
            .send()
            .await
            .unwrap();
    }
    let bad: Vec<String> = (0..5000).map(|i| format!("x{i}")).collect();
    let refused = http()
        .post(format!("{base}/v1/cloud-gateway-pools"))
        .bearer_auth(&key)
        .json(&json!({"backup_server_uid": VBR01, "name": "big", "cloud_gateway_uids": bad}))
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), 422);
    let pid = child.id().unwrap().to_string();
    let stopped = tokio::process::Command::new("kill")
        .args(["-TERM", &pid])
        .status()
        .await
        .unwrap();
    assert!(stopped.success());
    tokio::time::timeout(Duration::from_secs(30), child.wait())
        .await
        .expect("stops in time")
        .unwrap();
    logs.push_str(&rest.await.unwrap());

    let leaks: Vec<&str> = logs.lines().filter(|l| l.contains(marker)).collect();
    assert!(leaks.is_empty(), "a query value in the logs: {leaks:?}");
    assert!(
        logs.contains(r#""http.target":"/v1/tasks?api_key=…&limit=5""#),
        "the request is logged with its harmless parameters"
    );
    assert!(logs.contains(r#""http.target":"/v1/nowhere?token=…&state=failed""#));
    // A refusal's line carries its status (recorded on the span for that line alone).
    assert!(
        logs.lines().any(|l| l.contains(r#""http.status_code":400"#)
            && l.contains(r#""http.target":"/v1/tasks?api_key=…&limit=5""#)),
        "the refusal is logged with its status"
    );
    let longest = logs.lines().map(str::len).max().unwrap_or(0);
    assert!(longest < 16 * 1024, "a log line of {longest} bytes");
    assert!(
        logs.contains("5000 fields are invalid"),
        "the refusal is logged"
    );
    sim.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_and_slow_requests_are_cut_off() {
    let sim = spawn_sim(|_| {});
    let url = fresh_database(Db::Sqlite).await;
    let app = spawn_app(&test_settings_with(
        &sim,
        &url,
        &[("EMGW_CLIENT_TIMEOUT_MS", "1000")],
    ))
    .await;
    let huge_header = http()
        .get(app.url("/v1/tasks"))
        .bearer_auth(&app.read_key)
        .header("X-Padding", "x".repeat(20 * 1024))
        .send()
        .await
        .unwrap();
    assert_eq!(huge_header.status(), 431);
    assert_eq!(
        huge_header.headers()["content-type"],
        "application/problem+json"
    );
    let long_path = http()
        .get(app.url(&format!("/v1/tasks/{}", "a".repeat(5 * 1024))))
        .bearer_auth(&app.read_key)
        .send()
        .await
        .unwrap();
    assert_eq!(long_path.status(), 414);
    // Far beyond: the HTTP layer itself refuses or hangs up; either way nothing is served.
    let absurd = http()
        .get(app.url("/v1/tasks"))
        .header("X-Padding", "x".repeat(512 * 1024))
        .send()
        .await;
    if let Ok(resp) = absurd {
        assert!(resp.status().is_client_error(), "{}", resp.status());
    }
    // A client that never finishes its request head is answered 408 and dropped.
    let port: u16 = app.base.rsplit(':').next().unwrap().parse().unwrap();
    let mut slow = tokio::net::TcpStream::connect(("127.0.0.1", port))
        .await
        .unwrap();
    slow.write_all(b"GET /healthz HTTP/1.1\r\nHost: x\r\n")
        .await
        .unwrap();
    let mut answer = Vec::new();
    tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut answer))
        .await
        .expect("the server hangs up")
        .ok();
    let answer = String::from_utf8_lossy(&answer);
    assert!(
        answer.is_empty() || answer.starts_with("HTTP/1.1 408"),
        "{answer}"
    );
    assert_eq!(
        http()
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "still serving"
    );
    app.stop().await;
    sim.stop().await;
}

/// No Docker engine runs here, so the compose file is checked against the binaries instead:
/// every command, flag and variable it uses must exist.
#[tokio::test]
async fn the_compose_file_uses_only_what_the_binaries_have() {
    let compose =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/docker-compose.yml"))
            .unwrap();
    let dockerfile =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/Dockerfile")).unwrap();
    for service in [
        "postgres:",
        "em-sim:",
        "gateway:",
        "healthcheck:",
        "depends_on:",
    ] {
        assert!(
            compose.contains(service),
            "docker-compose.yml lacks {service}"
        );
    }
    // Variables set for the gateway.
    let mut in_env = false;
    let mut vars = Vec::new();
    for line in compose.lines() {
        let trimmed = line.trim();
        if trimmed == "environment:" {
            in_env = true;
            continue;
        }
        if in_env {
            match trimmed.split_once(':') {
                Some((k, _))
                    if k.chars().all(|c| c.is_ascii_uppercase() || c == '_') && !k.is_empty() =>
                {
                    vars.push(k.to_string())
                }
                _ => in_env = false,
            }
        }
    }
    let known = em_gateway::config::variables();
    let gateway_vars: Vec<&String> = vars
        .iter()
        .filter(|v| v.starts_with("EMGW_") || *v == "DATABASE_URL")
        .collect();
    assert!(gateway_vars.len() >= 5, "{vars:?}");
    for v in gateway_vars {
        assert!(
            known.contains(v),
            "docker-compose.yml sets {v}, which em-gateway does not read"
        );
    }
    // Each service's entrypoint and command, as JSON arrays.
    let mut services: Vec<(String, Option<Vec<String>>, Vec<String>)> = Vec::new();
    for line in compose.lines() {
        if let Some(name) = line
            .strip_prefix("  ")
            .and_then(|l| l.strip_suffix(':'))
            .filter(|n| !n.starts_with(' '))
        {
            services.push((name.to_string(), None, Vec::new()));
            continue;
        }
        let Some((_, entrypoint, command)) = services.last_mut() else {
            continue;
        };
        let array = |key: &str| {
            line.trim()
                .strip_prefix(key)
                .and_then(|a| serde_json::from_str::<Vec<String>>(a.trim()).ok())
        };
        if let Some(a) = array("entrypoint:") {
            *entrypoint = Some(a);
        } else if let Some(a) = array("command:") {
            *command = a;
        }
    }
    let sim_help = String::from_utf8(
        tokio::process::Command::new(SIM)
            .arg("--help")
            .output()
            .await
            .unwrap()
            .stdout,
    )
    .unwrap();
    let gateway_help = String::from_utf8(
        tokio::process::Command::new(GATEWAY)
            .arg("--help")
            .output()
            .await
            .unwrap()
            .stdout,
    )
    .unwrap();
    // The gateway's subcommands, from its own help: the lines under "Commands:".
    let subcommands: Vec<&str> = gateway_help
        .lines()
        .skip_while(|l| !l.starts_with("Commands:"))
        .skip(1)
        .take_while(|l| l.starts_with("  "))
        .filter_map(|l| l.split_whitespace().next())
        .collect();
    let mut checked = 0;
    for (service, entrypoint, command) in &services {
        // The image's own entrypoint is em-gateway.
        let binary = entrypoint
            .as_ref()
            .and_then(|e| e.first().cloned())
            .unwrap_or_else(|| "em-gateway".into());
        if entrypoint.is_some() {
            assert!(
                dockerfile.contains(&format!("--bin {binary}")),
                "{service} runs {binary}, which the Dockerfile does not build"
            );
        }
        let help = match binary.as_str() {
            "em-sim" => &sim_help,
            "em-gateway" => &gateway_help,
            _ => continue,
        };
        for (i, word) in command.iter().enumerate() {
            if word.starts_with("--") {
                assert!(
                    help.contains(word.as_str()),
                    "{service}: {binary} has no {word}"
                );
                checked += 1;
            } else if i == 0 && binary == "em-gateway" {
                assert!(
                    subcommands.contains(&word.as_str()),
                    "{service} runs `em-gateway {word}`, which is not a subcommand"
                );
                checked += 1;
            }
        }
    }
    assert!(checked >= 4, "the compose file's commands were not found");
    for bin in ["em-gateway", "em-sim"] {
        assert!(
            dockerfile.contains(&format!("--bin {bin}")),
            "the Dockerfile builds {bin}"
        );
    }
    let healthy = compose.matches("/readyz").count() + compose.matches("/api/").count();
    assert!(healthy >= 2, "health checks use /readyz and EM's /api/");
}
