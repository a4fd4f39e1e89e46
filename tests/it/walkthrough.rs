//! The README's walk-through runs as written against `em-gateway demo`: the shell blocks it
//! marks `<!-- walk-through -->` are taken from README.md itself and run, in order, by bash
//! with curl and jq, against the demo's printed base URL and key.

use std::process::Stdio;
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::support::*;

const MARKER: &str = "<!-- walk-through";
/// How the README says to start the demo for the walk-through.
const DEMO: &str = "EMGW_WEBHOOK_ALLOW_PRIVATE=true cargo run --release -- demo";

/// The ```sh blocks that follow a marker line, in order.
fn walk_through(readme: &str) -> Vec<String> {
    let mut blocks = Vec::new();
    let mut lines = readme.lines();
    while let Some(line) = lines.next() {
        if !line.starts_with(MARKER) {
            continue;
        }
        assert_eq!(
            lines.next(),
            Some("```sh"),
            "a walk-through marker is followed by a ```sh block"
        );
        let block: Vec<&str> = lines.by_ref().take_while(|l| *l != "```").collect();
        blocks.push(block.join("\n"));
    }
    blocks
}

#[test]
fn the_walk_through_is_found_in_the_readme() {
    let readme = "intro\n<!-- walk-through -->\n```sh\necho one\necho two\n```\nprose\n```sh\nnot this\n```\n<!-- walk-through -->\n```sh\necho three\n```\n";
    assert_eq!(
        walk_through(readme),
        vec!["echo one\necho two".to_string(), "echo three".to_string()]
    );
}

fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_readme_walk_through_runs_as_written_against_the_demo() {
    for tool in ["bash", "curl", "jq", "python3"] {
        let found = std::process::Command::new("sh")
            .args(["-c", &format!("command -v {tool}")])
            .output()
            .is_ok_and(|o| o.status.success());
        assert!(
            found,
            "the README walk-through needs {tool} (.ci/run installs it)"
        );
    }
    let readme =
        std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/README.md")).unwrap();
    assert!(
        readme.contains(DEMO),
        "the README starts the demo with {DEMO}"
    );
    let blocks = walk_through(&readme);
    assert!(blocks.len() >= 2, "the walk-through's blocks: {blocks:?}");
    let script = blocks.join("\n");
    for uses in ["$BASE", "$KEY", "$HOOK_PORT", "/v1/cloud-tenants"] {
        assert!(script.contains(uses), "the walk-through uses {uses}");
    }

    let database = format!(
        "sqlite://{}",
        std::env::temp_dir()
            .join(format!("emgw_t_{}.db", uuid::Uuid::new_v4().simple()))
            .display()
    );
    let mut demo = Command::new(GATEWAY_BIN)
        .arg("demo")
        .env_clear()
        .env("EMGW_LISTEN", "127.0.0.1:0")
        .env("DATABASE_URL", &database)
        .env("EMGW_WEBHOOK_ALLOW_PRIVATE", "true")
        .env("RUST_LOG", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let mut printed = BufReader::new(demo.stdout.take().unwrap()).lines();
    let (base, key) = tokio::time::timeout(Duration::from_secs(30), async {
        let mut base = None;
        while let Some(line) = printed.next_line().await.unwrap() {
            if let Some(url) = line.trim().strip_prefix("base URL") {
                base = Some(url.trim().to_string());
            }
            if line.starts_with("emgw_") {
                return (base.expect("the demo prints its base URL"), line);
            }
        }
        panic!("the demo ended before printing its key");
    })
    .await
    .expect("the demo prints its key");

    // As the reader runs it: one shell, stopping at the first failed command (curl -f fails on
    // any HTTP error), the receiver it starts stopped when it ends.
    let run = Command::new("bash")
        .arg("-c")
        .arg(format!(
            "set -euo pipefail\ntrap 'kill $(jobs -p) 2>/dev/null || true' EXIT\n{script}"
        ))
        .env("BASE", &base)
        .env("KEY", &key)
        .env("HOOK_PORT", free_port().to_string())
        // Loopback, never through a proxy the environment may name.
        .env_remove("http_proxy")
        .env_remove("HTTP_PROXY")
        .env_remove("https_proxy")
        .env_remove("HTTPS_PROXY")
        .env_remove("all_proxy")
        .env_remove("ALL_PROXY")
        .stdin(Stdio::null())
        .kill_on_drop(true)
        .output();
    let out = tokio::time::timeout(Duration::from_secs(180), run)
        .await
        .expect("the walk-through ends within 3 minutes")
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success(),
        "the walk-through failed ({}):\n--- stdout\n{stdout}\n--- stderr\n{stderr}",
        out.status
    );

    // What the README shows a command printing, it printed (lines with an elision aside).
    let shown: Vec<&str> = script
        .lines()
        .filter_map(|l| l.trim().strip_prefix("# {"))
        .filter(|l| !l.contains('…'))
        .collect();
    assert!(shown.len() >= 4, "{shown:?}");
    for line in shown {
        let line = format!("{{{line}");
        assert!(
            stdout.lines().any(|l| l == line),
            "the README shows {line}, the run printed:\n{stdout}"
        );
    }

    // Each step did what the README says.
    let get = |path: String| {
        let (base, key) = (base.clone(), key.clone());
        async move {
            let resp = http()
                .get(format!("{base}{path}"))
                .bearer_auth(&key)
                .send()
                .await
                .unwrap();
            assert_eq!(resp.status(), 200, "GET {path}");
            resp.json::<Value>().await.unwrap()
        }
    };
    let tasks = get("/v1/tasks?limit=50".into()).await;
    let mut done: Vec<String> = tasks["items"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| {
            format!(
                "{} {}",
                t["operation"].as_str().unwrap(),
                t["state"].as_str().unwrap()
            )
        })
        .collect();
    done.sort();
    assert_eq!(
        done,
        [
            "create_cloud_gateway failed",
            "create_cloud_gateway succeeded",
            "create_cloud_gateway_pool succeeded",
            "create_cloud_tenant succeeded",
            "delete_cloud_tenant succeeded",
            "update_cloud_tenant succeeded",
            "update_cloud_tenant succeeded",
        ],
        "{tasks}"
    );
    assert!(stdout.contains("Server gw01.example.local is already a cloud gateway."));
    let tenants = get("/v1/cloud-tenants?name=abc-company".into()).await;
    assert_eq!(
        tenants["items"],
        serde_json::json!([]),
        "removed at the end"
    );
    let pools = get("/v1/cloud-gateway-pools".into()).await;
    assert_eq!(pools["items"][0]["name"], "EU pool");

    // The receiver printed the webhooks of the onboarding and of both changes (the removal's
    // may come after it stopped).
    let events: Vec<Value> = stdout
        .lines()
        .filter_map(|l| l.strip_prefix("webhook: "))
        .map(|e| serde_json::from_str(e).unwrap())
        .collect();
    let announced = |operation: &str| {
        events
            .iter()
            .filter(|e| e["type"] == "task.succeeded" && e["data"]["operation"] == operation)
            .count()
    };
    assert_eq!(announced("create_cloud_tenant"), 1, "{stdout}");
    assert_eq!(announced("update_cloud_tenant"), 2, "{stdout}");
    demo.kill().await.ok();
}
