//! Shared test plumbing: a real `em-sim` on a loopback port, clients for it, and waiting on a
//! condition with a deadline (never sleeping and hoping).

use std::future::Future;
use std::time::{Duration, Instant};

use em_gateway::em::{EmClient, EmSettings};
use em_gateway::sim::{self, RunningSim, SimConfig};
use secrecy::SecretString;

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

/// Polls `check` until it yields a value or the deadline passes (then panics with `what`).
pub async fn eventually<T, F, Fut>(what: &str, timeout: Duration, mut check: F) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(v) = check().await {
            return v;
        }
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

// -------------------------------------------------------------------------------------------
// The gateway under test
// -------------------------------------------------------------------------------------------

use em_gateway::access;
use em_gateway::config::Settings;
use em_gateway::domain::Scope;
use em_gateway::startup::Application;
use secrecy::ExposeSecret;
use sqlx::{Connection, Executor};

/// Where the Postgres tests create their databases. Never skipped: without a server they fail.
pub fn postgres_admin_url() -> String {
    std::env::var("EMGW_TEST_POSTGRES_URL")
        .unwrap_or_else(|_| "postgres://postgres@127.0.0.1:5432/postgres".into())
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Db {
    Sqlite,
    Postgres,
}

/// A fresh, empty database for one test.
pub async fn fresh_database(db: Db) -> String {
    let name = format!("emgw_t_{}", uuid::Uuid::new_v4().simple());
    match db {
        Db::Sqlite => {
            let path = std::env::temp_dir().join(format!("{name}.db"));
            format!("sqlite://{}", path.display())
        }
        Db::Postgres => {
            let admin = postgres_admin_url();
            let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap_or_else(|e| {
                panic!(
                    "the Postgres tests need a server: set EMGW_TEST_POSTGRES_URL to a superuser URL \
                     such as postgres://postgres@127.0.0.1:5432/postgres (tried {admin}): {e}"
                )
            });
            conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
                .await
                .expect("CREATE DATABASE");
            let (base, _) = admin
                .rsplit_once('/')
                .expect("a database in EMGW_TEST_POSTGRES_URL");
            format!("{base}/{name}")
        }
    }
}

pub struct TestApp {
    pub base: String,
    pub store: em_gateway::store::Store,
    pub admin_key: String,
    pub write_key: String,
    pub read_key: String,
    handle: actix_web::dev::ServerHandle,
    join: tokio::task::JoinHandle<std::io::Result<()>>,
}

/// Settings for a gateway in front of `sim`, fast enough for tests.
pub fn test_settings(sim: &RunningSim, database_url: &str) -> Settings {
    test_settings_with(sim, database_url, &[])
}

/// The same, with some variables set or overridden.
pub fn test_settings_with(
    sim: &RunningSim,
    database_url: &str,
    extra: &[(&str, &str)],
) -> Settings {
    let mut vars: Vec<(String, String)> = vec![
        ("EMGW_LISTEN".into(), "127.0.0.1:0".into()),
        ("DATABASE_URL".into(), database_url.into()),
        ("EMGW_EM_URL".into(), sim.api_url.clone()),
        ("EMGW_EM_USERNAME".into(), USER.into()),
        ("EMGW_EM_PASSWORD".into(), PASSWORD.into()),
        ("EMGW_EM_SESSIONS".into(), "2".into()),
        ("EMGW_EM_TIMEOUT_MS".into(), "2000".into()),
        ("EMGW_POLL_INTERVAL_MS".into(), "50".into()),
        ("EMGW_SETTLE_GRACE_MS".into(), "3000".into()),
        ("EMGW_WEBHOOK_ALLOW_PRIVATE".into(), "true".into()),
        (
            "EMGW_WEBHOOK_RETRY_SCHEDULE".into(),
            "200ms,400ms,600ms".into(),
        ),
        ("EMGW_WEBHOOK_TIMEOUT_MS".into(), "500".into()),
    ];
    for (k, v) in extra {
        vars.retain(|(n, _)| n != k);
        vars.push((k.to_string(), v.to_string()));
    }
    Settings::from_source(
        None,
        Box::new(move |k| vars.iter().find(|(n, _)| n == k).map(|(_, v)| v.clone())),
    )
    .expect("test settings")
}

pub async fn spawn_app(settings: &Settings) -> TestApp {
    let app = Application::build(settings, false)
        .await
        .expect("the gateway starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.store().clone();
    let key = |name: &'static str, scope| {
        let store = store.clone();
        async move {
            access::issue(&store, name, scope, None)
                .await
                .unwrap()
                .token
                .expose_secret()
                .to_string()
        }
    };
    let admin_key = key("admin", Scope::Admin).await;
    let write_key = key("writer", Scope::Write).await;
    let read_key = key("reader", Scope::Read).await;
    let handle = app.handle();
    let join = tokio::spawn(app.run_until_stopped());
    TestApp {
        base,
        store,
        admin_key,
        write_key,
        read_key,
        handle,
        join,
    }
}

impl TestApp {
    /// Graceful stop: requests finish, EM sessions are logged off and released.
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.join.await;
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{path}", self.base)
    }

    pub async fn post(&self, path: &str, key: &str, body: serde_json::Value) -> reqwest::Response {
        http()
            .post(self.url(path))
            .bearer_auth(key)
            .json(&body)
            .send()
            .await
            .unwrap()
    }

    pub async fn get(&self, path: &str, key: &str) -> reqwest::Response {
        http()
            .get(self.url(path))
            .bearer_auth(key)
            .send()
            .await
            .unwrap()
    }

    pub async fn get_json(&self, path: &str) -> serde_json::Value {
        self.get_json_with(path, &self.read_key).await
    }

    pub async fn get_json_with(&self, path: &str, key: &str) -> serde_json::Value {
        let resp = self.get(path, key).await;
        assert_eq!(resp.status(), 200, "GET {path}");
        resp.json().await.unwrap()
    }

    /// Waits until the task leaves `running`.
    pub async fn settled(&self, task_id: &str) -> serde_json::Value {
        eventually(
            &format!("task {task_id} to settle"),
            Duration::from_secs(15),
            || async {
                let task = self.get_json(&format!("/v1/tasks/{task_id}")).await;
                (task["state"] != "running").then_some(task)
            },
        )
        .await
    }
}

/// Runs one test body against both databases.
#[macro_export]
macro_rules! both_databases {
    ($($name:ident),+ $(,)?) => {
        mod sqlite {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::support::Db::Sqlite).await }) +
        }
        mod postgres {
            $(#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
            async fn $name() { super::$name($crate::support::Db::Postgres).await }) +
        }
    };
}

// -------------------------------------------------------------------------------------------
// A webhook receiver whose answer can be switched
// -------------------------------------------------------------------------------------------

use std::sync::{Arc, Mutex};

#[derive(Debug, Clone)]
pub enum Answer {
    Ok,
    /// Answers 500 this many times, then 200.
    FailFirst(u32),
    Gone,
    /// 302 to another URL.
    Redirect(String),
    /// 503 with `Retry-After: n`, then 200.
    RetryAfterOnce(u64),
    /// Holds the request this long before answering 200.
    Hang(Duration),
}

#[derive(Debug, Clone)]
pub struct Received {
    pub headers: std::collections::HashMap<String, String>,
    pub body: String,
    pub at: std::time::Instant,
}

impl Received {
    pub fn json(&self) -> serde_json::Value {
        serde_json::from_str(&self.body).unwrap()
    }
}

#[derive(Clone)]
pub struct Receiver {
    pub url: String,
    answer: Arc<Mutex<Answer>>,
    got: Arc<Mutex<Vec<Received>>>,
}

impl Receiver {
    pub fn start(answer: Answer) -> Receiver {
        use actix_web::{App, HttpRequest, HttpResponse, HttpServer, web};
        let answer = Arc::new(Mutex::new(answer));
        let got: Arc<Mutex<Vec<Received>>> = Arc::new(Mutex::new(Vec::new()));
        let (a, g) = (answer.clone(), got.clone());
        let server = HttpServer::new(move || {
            let (a, g) = (a.clone(), g.clone());
            App::new().default_service(web::to(move |req: HttpRequest, body: web::Bytes| {
                let (a, g) = (a.clone(), g.clone());
                async move {
                    let headers = req
                        .headers()
                        .iter()
                        .map(|(k, v)| {
                            (k.as_str().to_string(), v.to_str().unwrap_or("").to_string())
                        })
                        .collect();
                    g.lock().unwrap().push(Received {
                        headers,
                        body: String::from_utf8_lossy(&body).into_owned(),
                        at: std::time::Instant::now(),
                    });
                    let answer = a.lock().unwrap().clone();
                    match answer {
                        Answer::Ok => HttpResponse::Ok().body("thanks"),
                        Answer::FailFirst(0) => HttpResponse::Ok().finish(),
                        Answer::FailFirst(n) => {
                            *a.lock().unwrap() = Answer::FailFirst(n - 1);
                            HttpResponse::InternalServerError().body("not yet")
                        }
                        Answer::Gone => HttpResponse::Gone().finish(),
                        Answer::Redirect(to) => HttpResponse::Found()
                            .insert_header(("Location", to))
                            .finish(),
                        Answer::RetryAfterOnce(secs) => {
                            *a.lock().unwrap() = Answer::Ok;
                            HttpResponse::ServiceUnavailable()
                                .insert_header(("Retry-After", secs.to_string()))
                                .finish()
                        }
                        Answer::Hang(d) => {
                            tokio::time::sleep(d).await;
                            HttpResponse::Ok().finish()
                        }
                    }
                }
            }))
        })
        .workers(1)
        .disable_signals()
        .bind("127.0.0.1:0")
        .unwrap();
        let port = server.addrs()[0].port();
        tokio::spawn(server.run());
        Receiver {
            url: format!("http://127.0.0.1:{port}/hook"),
            answer,
            got,
        }
    }

    pub fn set(&self, answer: Answer) {
        *self.answer.lock().unwrap() = answer;
    }

    pub fn received(&self) -> Vec<Received> {
        self.got.lock().unwrap().clone()
    }

    /// Waits until at least `n` requests arrived.
    pub async fn wait_for(&self, n: usize) -> Vec<Received> {
        eventually(
            &format!("{n} webhook request(s)"),
            Duration::from_secs(15),
            || async {
                let got = self.received();
                (got.len() >= n).then_some(got)
            },
        )
        .await
    }
}

/// Checks a delivery's signature with RustCrypto's HMAC, independently of the gateway's own
/// code (which uses ring), exactly as the Standard Webhooks specification describes.
pub fn verify_signature(secret: &str, received: &Received) -> bool {
    use base64::Engine;
    use hmac::{Hmac, Mac};
    let b64 = base64::engine::general_purpose::STANDARD;
    let key = b64.decode(secret.strip_prefix("whsec_").unwrap()).unwrap();
    let id = &received.headers["webhook-id"];
    let ts = &received.headers["webhook-timestamp"];
    let now = chrono::Utc::now().timestamp();
    let sent: i64 = ts.parse().unwrap();
    if (now - sent).abs() > 300 {
        return false;
    }
    let mut mac = Hmac::<sha2::Sha256>::new_from_slice(&key).unwrap();
    mac.update(format!("{id}.{ts}.{}", received.body).as_bytes());
    let expected = b64.encode(mac.finalize().into_bytes());
    received.headers["webhook-signature"]
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .any(|s| s == expected)
}

// -------------------------------------------------------------------------------------------
// The gateway as a separate process, for tests that kill it
// -------------------------------------------------------------------------------------------

/// A running `em-gateway serve` process.
pub struct GatewayProcess {
    pub child: tokio::process::Child,
    pub base: String,
}

impl GatewayProcess {
    /// Starts `em-gateway serve` with these variables (plus a free port) and waits until it
    /// listens.
    pub async fn start(vars: &[(String, String)]) -> GatewayProcess {
        use tokio::io::AsyncBufReadExt;
        let mut cmd = tokio::process::Command::new(env!("CARGO_BIN_EXE_em-gateway"));
        cmd.arg("serve")
            .env_clear()
            .env("EMGW_LISTEN", "127.0.0.1:0")
            .env("EMGW_LOG_FORMAT", "json")
            .env("RUST_LOG", "info")
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .kill_on_drop(true);
        for (k, v) in vars {
            cmd.env(k, v);
        }
        let mut child = cmd.spawn().expect("em-gateway starts");
        let mut lines = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let port = tokio::time::timeout(Duration::from_secs(30), async {
            while let Some(line) = lines.next_line().await.unwrap() {
                if line.contains("em-gateway listening") {
                    let v: serde_json::Value = serde_json::from_str(&line).unwrap();
                    return v["port"].as_u64().unwrap();
                }
            }
            panic!("em-gateway exited before listening");
        })
        .await
        .expect("em-gateway listens in time");
        // Keep draining its log so it never blocks on a full pipe.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        GatewayProcess {
            child,
            base: format!("http://127.0.0.1:{port}"),
        }
    }

    /// SIGKILL: no shutdown, no logoff, leases left behind.
    pub async fn kill(mut self) {
        self.child.kill().await.ok();
    }
}

/// The variables a gateway process needs to run in front of `sim` on `database_url`.
pub fn process_vars(
    sim: &RunningSim,
    database_url: &str,
    extra: &[(&str, &str)],
) -> Vec<(String, String)> {
    let mut vars: Vec<(String, String)> = [
        ("DATABASE_URL", database_url),
        ("EMGW_EM_URL", sim.api_url.as_str()),
        ("EMGW_EM_USERNAME", USER),
        ("EMGW_EM_PASSWORD", PASSWORD),
        ("EMGW_EM_SESSIONS", "2"),
        ("EMGW_EM_TIMEOUT_MS", "500"),
        ("EMGW_POLL_INTERVAL_MS", "50"),
        ("EMGW_SETTLE_GRACE_MS", "5000"),
        ("EMGW_WEBHOOK_ALLOW_PRIVATE", "true"),
        (
            "EMGW_WEBHOOK_RETRY_SCHEDULE",
            "200ms,200ms,500ms,1s,1s,2s,2s",
        ),
        ("EMGW_WEBHOOK_TIMEOUT_MS", "1000"),
    ]
    .iter()
    .map(|(k, v)| (k.to_string(), v.to_string()))
    .collect();
    for (k, v) in extra {
        vars.retain(|(n, _)| n != k);
        vars.push((k.to_string(), v.to_string()));
    }
    vars
}
