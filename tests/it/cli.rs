//! The binaries as users run them.

use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::*;

const GATEWAY: &str = GATEWAY_BIN;
const SIM: &str = SIM_BIN;

fn temp_sqlite() -> String {
    let path = std::env::temp_dir().join(format!("emgw_t_{}.db", uuid::Uuid::new_v4().simple()));
    format!("sqlite://{}", path.display())
}

async fn gateway(args: &[&str], database_url: &str) -> std::process::Output {
    Command::new(GATEWAY)
        .args(args)
        .env_clear()
        .env("DATABASE_URL", database_url)
        .env("RUST_LOG", "warn")
        .output()
        .await
        .expect("em-gateway runs")
}

#[tokio::test]
async fn keys_are_created_listed_and_revoked_from_the_command_line() {
    let db = temp_sqlite();
    let out = gateway(&["migrate"], &db).await;
    assert!(out.status.success(), "{out:?}");

    let out = gateway(
        &["keys", "create", "--name", "ci portal", "--scope", "write"],
        &db,
    )
    .await;
    assert!(out.status.success(), "{out:?}");
    let stdout = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = stdout.lines().collect();
    let key = *lines.last().unwrap();
    assert!(
        key.starts_with("emgw_") && !key.contains(' '),
        "the key alone on the last line: {stdout}"
    );
    let id = lines[0].split_whitespace().nth(3).unwrap().to_string();

    let out = gateway(&["keys", "list"], &db).await;
    let listed = String::from_utf8(out.stdout).unwrap();
    assert!(
        listed.contains("ci portal") && listed.contains(&id) && listed.contains("active"),
        "{listed}"
    );
    assert!(!listed.contains(key), "never the secret");

    let out = gateway(&["keys", "revoke", &id], &db).await;
    assert!(out.status.success(), "{out:?}");
    let listed = String::from_utf8(gateway(&["keys", "list"], &db).await.stdout).unwrap();
    assert!(listed.contains("revoked"), "{listed}");

    let again = gateway(&["keys", "revoke", &id], &db).await;
    assert!(!again.status.success());
    let stderr = String::from_utf8(again.stderr).unwrap();
    assert_eq!(stderr.lines().count(), 1, "one-line reason: {stderr}");

    let bad = gateway(&["keys", "create", "--name", "x", "--scope", "root"], &db).await;
    assert!(!bad.status.success());

    // Owners: named at creation, shown in the list, which can be narrowed to one.
    let owned = gateway(
        &[
            "keys",
            "create",
            "--name",
            "eu portal",
            "--scope",
            "read",
            "--owner",
            "portal-eu",
        ],
        &db,
    )
    .await;
    assert!(owned.status.success(), "{owned:?}");
    let stdout = String::from_utf8(owned.stdout).unwrap();
    assert!(stdout.contains("owner portal-eu"), "{stdout}");
    let listed = String::from_utf8(gateway(&["keys", "list"], &db).await.stdout).unwrap();
    let owner_of = |name: &str| {
        listed
            .lines()
            .find(|l| l.ends_with(name))
            .and_then(|l| l.split_whitespace().nth(2))
            .map(str::to_string)
    };
    assert_eq!(
        owner_of("eu portal").as_deref(),
        Some("portal-eu"),
        "{listed}"
    );
    assert_eq!(
        owner_of("ci portal").as_deref(),
        Some("default"),
        "{listed}"
    );
    let narrowed = gateway(&["keys", "list", "--owner", "portal-eu"], &db).await;
    let narrowed = String::from_utf8(narrowed.stdout).unwrap();
    assert!(
        narrowed.contains("eu portal") && !narrowed.contains("ci portal"),
        "{narrowed}"
    );
    let bad = gateway(
        &[
            "keys", "create", "--name", "x", "--scope", "read", "--owner", "no owner",
        ],
        &db,
    )
    .await;
    assert!(!bad.status.success());
    let stderr = String::from_utf8(bad.stderr).unwrap();
    assert!(stderr.contains("--owner"), "{stderr}");
}

#[tokio::test]
async fn commands_explain_themselves_and_fail_in_one_line() {
    for args in [
        &["--help"][..],
        &["serve", "--help"],
        &["demo", "--help"],
        &["keys", "create", "--help"],
        &["openapi", "--help"],
        &["secret-key", "--help"],
    ] {
        let out = gateway(args, "sqlite://unused.db").await;
        assert!(out.status.success(), "{args:?}");
    }
    let sim_help = Command::new(SIM).arg("--help").output().await.unwrap();
    let help = String::from_utf8(sim_help.stdout).unwrap();
    for flag in [
        "--listen",
        "--username",
        "--password",
        "--task-ms",
        "--seed",
        "--session-idle-secs",
        "--error-rate",
        "--drop-rate",
    ] {
        assert!(help.contains(flag), "em-sim --help documents {flag}");
    }
    for model in ["Cloud Connect tenants", "storage quotas", "repositories"] {
        assert!(help.contains(model), "em-sim --help says it serves {model}");
    }
    let out = gateway(&["serve"], &temp_sqlite()).await;
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert!(stderr.contains("EMGW_EM_URL is required"), "{stderr}");
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let openapi = gateway(&["openapi"], "sqlite://unused.db").await;
    assert_eq!(
        String::from_utf8(openapi.stdout).unwrap(),
        em_gateway::api::openapi::document()
    );
}

/// `serve` on PostgreSQL without `EMGW_SECRET_KEY` stops at once and says how to make one;
/// `em-gateway secret-key` makes one, and with it `serve` starts.
#[tokio::test]
async fn serve_on_postgres_needs_a_server_key_and_says_how_to_make_one() {
    let sim = spawn_sim(|_| {});
    let database = fresh_database(Db::Postgres).await;
    let serve = |key: Option<String>| {
        let mut command = Command::new(GATEWAY);
        command
            .arg("serve")
            .env_clear()
            .env("DATABASE_URL", &database)
            .env("EMGW_LISTEN", "127.0.0.1:0")
            .env("EMGW_EM_URL", &sim.api_url)
            .env("EMGW_EM_USERNAME", USER)
            .env("EMGW_EM_PASSWORD", PASSWORD)
            .env("EMGW_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(Stdio::null())
            .stderr(Stdio::piped())
            .kill_on_drop(true);
        if let Some(key) = key {
            command.env("EMGW_SECRET_KEY", key);
        }
        command
    };
    // Were it to start, it would serve on: a deadline turns that into a failure.
    let out = tokio::time::timeout(Duration::from_secs(60), serve(None).output())
        .await
        .expect("serve without a server key stops at once")
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8(out.stderr).unwrap();
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");
    assert!(
        stderr.starts_with("em-gateway: EMGW_SECRET_KEY is required on PostgreSQL")
            && stderr.contains("em-gateway secret-key")
            && stderr.contains("openssl rand -base64 32"),
        "{stderr}"
    );

    let made = |out: std::process::Output| {
        assert!(out.status.success(), "{out:?}");
        let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
        use base64::Engine;
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(&key)
            .unwrap();
        assert_eq!(bytes.len(), 32, "{key}");
        key
    };
    let key = made(gateway(&["secret-key"], "sqlite://unused.db").await);
    assert_ne!(
        key,
        made(gateway(&["secret-key"], "sqlite://unused.db").await),
        "fresh each time"
    );
    let mut child = serve(Some(key.clone())).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut log = Vec::new();
    tokio::time::timeout(Duration::from_secs(60), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            let listening = line.contains("em-gateway listening");
            log.push(line);
            if listening {
                return;
            }
        }
        panic!("serve exited: {log:#?}");
    })
    .await
    .expect("serve starts with a key");
    child.kill().await.ok();
    let key_id = em_gateway::secrets::ServerKey::parse(&key).unwrap();
    assert!(
        log.iter().any(|l| l.contains(key_id.id())),
        "the key id is logged"
    );
    assert!(!log.iter().any(|l| l.contains(&key)), "never the key");
    sim.stop().await;
}

#[tokio::test]
async fn the_demo_runs_and_settles_a_gateway() {
    let database = temp_sqlite();
    let mut child = Command::new(GATEWAY)
        .arg("demo")
        .env_clear()
        .env("EMGW_LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", &database)
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut lines = BufReader::new(child.stdout.take().unwrap()).lines();
    let mut base = None;
    let key = tokio::time::timeout(Duration::from_secs(30), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(url) = line.trim().strip_prefix("base URL") {
                base = Some(url.trim().to_string());
            }
            if line.starts_with("emgw_") {
                return line;
            }
        }
        panic!("the demo ended before printing a key");
    })
    .await
    .expect("the demo prints its key");
    let base = base.expect("the demo prints its base URL");
    let resp = http()
        .post(format!("{base}/v1/cloud-gateways"))
        .bearer_auth(&key)
        .json(&json!({"backup_server_uid": VBR01, "server_host_name": "demo.example"}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 202);
    let task: Value = resp.json().await.unwrap();
    let url = format!("{base}/v1/tasks/{}", task["id"].as_str().unwrap());
    let done = eventually(
        "the demo's task to settle",
        Duration::from_secs(20),
        || async {
            let t: Value = http()
                .get(&url)
                .bearer_auth(&key)
                .send()
                .await
                .unwrap()
                .json()
                .await
                .unwrap();
            (t["state"] != "running").then_some(t)
        },
    )
    .await;
    assert_eq!(done["state"], "succeeded", "{done}");
    let docs = http().get(format!("{base}/docs/")).send().await.unwrap();
    assert_eq!(docs.status(), 200);
    child.kill().await.ok();
    // Its server key, made beside its database, readable by its owner alone.
    let key_file = format!("{}.key", database.trim_start_matches("sqlite://"));
    let text = std::fs::read_to_string(&key_file).expect("the demo's key file");
    em_gateway::secrets::ServerKey::parse(&text).expect("a server key");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&key_file).unwrap().permissions().mode();
    assert_eq!(mode & 0o777, 0o600);
}

/// `em-gateway openapi`, which reads the settings like every command, with only these variables.
async fn openapi_with(vars: &[(&str, &str)], config: Option<&std::path::Path>) -> (bool, String) {
    let mut command = Command::new(GATEWAY);
    if let Some(path) = config {
        command.arg("--config").arg(path);
    }
    let out = command
        .arg("openapi")
        .env_clear()
        .envs(vars.iter().copied())
        .output()
        .await
        .expect("em-gateway runs");
    (out.status.success(), String::from_utf8(out.stderr).unwrap())
}

#[tokio::test]
async fn settings_come_from_the_environment_over_the_file() {
    // Variables the gateway does not read (an old one, a misspelt one) stop nothing.
    let (ok, stderr) = openapi_with(
        &[("EMGW_NOT_A_SETTING", "1"), ("EMGW_POLL_INTERVALL_MS", "5")],
        None,
    )
    .await;
    assert!(ok, "{stderr}");
    let (ok, stderr) = openapi_with(&[("EMGW_POLL_INTERVAL_MS", "soon")], None).await;
    assert!(!ok);
    assert!(
        stderr.starts_with("em-gateway: EMGW_POLL_INTERVAL_MS: "),
        "{stderr}"
    );
    assert_eq!(stderr.trim().lines().count(), 1, "{stderr}");

    let file = std::env::temp_dir().join(format!("emgw_t_{}.toml", uuid::Uuid::new_v4().simple()));
    std::fs::write(&file, "poll_interval_ms = \"soon\"\n").unwrap();
    let (ok, stderr) = openapi_with(&[], Some(&file)).await;
    assert!(
        !ok && stderr.starts_with("em-gateway: EMGW_POLL_INTERVAL_MS: "),
        "{stderr}"
    );
    let (ok, stderr) = openapi_with(&[("EMGW_POLL_INTERVAL_MS", "500")], Some(&file)).await;
    assert!(ok, "the environment wins over the file: {stderr}");
    std::fs::write(&file, "poll_intervall_ms = 5\n").unwrap();
    let (ok, stderr) = openapi_with(&[], Some(&file)).await;
    std::fs::remove_file(&file).ok();
    assert!(!ok && stderr.contains("poll_intervall_ms"), "{stderr}");
}
