//! Postgres stopped and started under the gateway: 503 with Retry-After meanwhile, never a 500,
//! and recovery without restarting the gateway. Runs its own private Postgres cluster, so the
//! machine's shared server (and the tests using it) are never disturbed.

use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use serde_json::{Value, json};

use crate::support::*;

/// A throwaway Postgres cluster, run as the `postgres` user (initdb refuses root).
struct PrivatePostgres {
    bin: PathBuf,
    dir: PathBuf,
    port: u16,
}

impl PrivatePostgres {
    fn as_postgres(&self, program: &str, args: &[&str]) -> std::process::Output {
        let tool = self.bin.join(program);
        let mut line = format!("{}", tool.display());
        for a in args {
            line.push_str(&format!(" '{a}'"));
        }
        let output = if std::env::var("USER").as_deref() == Ok("postgres") || !running_as_root() {
            Command::new(&tool).args(args).output()
        } else {
            Command::new("su")
                .args(["postgres", "-s", "/bin/sh", "-c", &line])
                .output()
        };
        output.unwrap_or_else(|e| panic!("{program}: {e}"))
    }

    fn create() -> PrivatePostgres {
        let bin = std::fs::read_dir("/usr/lib/postgresql")
            .expect("PostgreSQL's server binaries under /usr/lib/postgresql (package postgresql)")
            .filter_map(|e| e.ok())
            .map(|e| e.path().join("bin"))
            .find(|p| p.join("initdb").exists())
            .expect("initdb");
        let dir = std::env::temp_dir().join(format!("emgw_pg_{}", uuid::Uuid::new_v4().simple()));
        std::fs::create_dir_all(&dir).unwrap();
        if running_as_root() {
            assert!(
                Command::new("chown")
                    .args(["-R", "postgres", dir.to_str().unwrap()])
                    .status()
                    .unwrap()
                    .success()
            );
        }
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .unwrap()
            .local_addr()
            .unwrap()
            .port();
        let pg = PrivatePostgres { bin, dir, port };
        let data = pg.dir.join("data");
        let out = pg.as_postgres(
            "initdb",
            &[
                "-D",
                data.to_str().unwrap(),
                "-U",
                "postgres",
                "--auth=trust",
                "-E",
                "UTF8",
            ],
        );
        assert!(
            out.status.success(),
            "initdb: {}",
            String::from_utf8_lossy(&out.stderr)
        );
        pg.start();
        pg
    }

    fn start(&self) {
        let data = self.dir.join("data");
        let opts = format!(
            "-p {} -k {} -c listen_addresses=127.0.0.1",
            self.port,
            self.dir.display()
        );
        let log = self.dir.join("log");
        let out = self.as_postgres(
            "pg_ctl",
            &[
                "-D",
                data.to_str().unwrap(),
                "-l",
                log.to_str().unwrap(),
                "-o",
                &opts,
                "-w",
                "start",
            ],
        );
        assert!(
            out.status.success(),
            "pg_ctl start: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn stop(&self) {
        let data = self.dir.join("data");
        let out = self.as_postgres(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "fast", "-w", "stop"],
        );
        assert!(
            out.status.success(),
            "pg_ctl stop: {}",
            String::from_utf8_lossy(&out.stderr)
        );
    }

    fn url(&self) -> String {
        format!("postgres://postgres@127.0.0.1:{}/postgres", self.port)
    }
}

impl Drop for PrivatePostgres {
    fn drop(&mut self) {
        let data = self.dir.join("data");
        let _ = self.as_postgres(
            "pg_ctl",
            &["-D", data.to_str().unwrap(), "-m", "immediate", "stop"],
        );
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

fn running_as_root() -> bool {
    Command::new("id")
        .arg("-u")
        .output()
        .map(|o| String::from_utf8_lossy(&o.stdout).trim() == "0")
        .unwrap_or(false)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_stopped_and_started_is_503_then_recovers() {
    let pg = PrivatePostgres::create();
    let sim = spawn_sim(|c| c.task_time = Duration::from_millis(200));
    let app = spawn_app(&test_settings(&sim, &pg.url())).await;
    let body = |host: &str| json!({"backup_server_uid": VBR01, "server_host_name": host});
    let before: Value = app
        .post("/v1/cloud-gateways", &app.write_key, body("before.example"))
        .await
        .json()
        .await
        .unwrap();
    assert_eq!(
        app.settled(before["id"].as_str().unwrap()).await["state"],
        "succeeded"
    );

    pg.stop();
    // Keys are cached for a few seconds; once that lapses every route needs the database.
    eventually(
        "requests to meet the outage",
        Duration::from_secs(20),
        || async {
            let resp = http()
                .get(app.url("/v1/tasks"))
                .bearer_auth(&app.write_key)
                .send()
                .await
                .unwrap();
            assert!(
                resp.status() == 200 || resp.status() == 503,
                "{}",
                resp.status()
            );
            (resp.status() == 503).then_some(())
        },
    )
    .await;
    for (method, path) in [("POST", "/v1/cloud-gateways"), ("GET", "/v1/tasks")] {
        let req = http()
            .request(method.parse().unwrap(), app.url(path))
            .bearer_auth(&app.write_key);
        let req = if method == "POST" {
            req.json(&body("during.example"))
        } else {
            req
        };
        let resp = req.send().await.unwrap();
        assert_eq!(resp.status(), 503, "{method} {path}");
        assert_eq!(resp.headers()["retry-after"], "5");
        let problem: Value = resp.json().await.unwrap();
        assert_eq!(
            problem["type"],
            "https://em-gateway.dev/problems/database-unavailable"
        );
    }
    let ready = http().get(app.url("/readyz")).send().await.unwrap();
    assert_eq!(ready.status(), 503);
    assert_ne!(ready.json::<Value>().await.unwrap()["database"], "ok");
    assert_eq!(
        http()
            .get(app.url("/healthz"))
            .send()
            .await
            .unwrap()
            .status(),
        200,
        "the process lives"
    );

    pg.start();
    let after = eventually(
        "the gateway to recover by itself",
        Duration::from_secs(30),
        || async {
            let resp = app
                .post("/v1/cloud-gateways", &app.write_key, body("after.example"))
                .await;
            (resp.status() == 202).then_some(resp)
        },
    )
    .await;
    let task: Value = after.json().await.unwrap();
    assert_eq!(
        app.settled(task["id"].as_str().unwrap()).await["state"],
        "succeeded"
    );
    assert_eq!(
        app.get_json(&format!("/v1/tasks/{}", before["id"].as_str().unwrap()))
            .await["state"],
        "succeeded",
        "nothing lost"
    );
    assert_eq!(
        http()
            .get(app.url("/readyz"))
            .send()
            .await
            .unwrap()
            .status(),
        200
    );
    app.stop().await;
    sim.stop().await;
}
