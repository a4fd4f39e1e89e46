//! The gateway under test, in-process on a loopback port.

use em_gateway::access;
use em_gateway::clock::Clock;
use em_gateway::config::Settings;
use em_gateway::domain::{Owner, Scope};
use em_gateway::sim::RunningSim;
use em_gateway::startup::{Application, Handles, Options, Workers};
use em_gateway::tasks::TickReport;
use secrecy::ExposeSecret;
use std::time::Duration;

use crate::sim::{PASSWORD, USER, http};
use crate::wait::eventually;

/// The server key every test gateway seals with (`EMGW_SECRET_KEY`): a fixed one, so a gateway
/// restarted on the same database opens what its predecessor sealed. A test value, no secret.
pub const TEST_SECRET_KEY: &str = "dGVzdC1vbmx5IHNlcnZlciBrZXksIG5vIHNlY3JldCE=";

/// [`TEST_SECRET_KEY`] as a keyring, for tests that use the store directly.
pub fn test_keyring() -> em_gateway::secrets::Keyring {
    em_gateway::secrets::Keyring::new(
        em_gateway::secrets::ServerKey::parse(TEST_SECRET_KEY).expect("the test key parses"),
        Vec::new(),
    )
}

pub struct TestApp {
    pub base: String,
    pub store: em_gateway::store::Store,
    pub admin_key: String,
    pub write_key: String,
    pub read_key: String,
    /// The server keys it seals and fingerprints with.
    pub keys: em_gateway::secrets::Keyring,
    /// The poller, the deliverer and the clock: the test steps them when it spawned the app
    /// with [`spawn_stepped_app`].
    pub workers: Handles,
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
        ("EMGW_SECRET_KEY".into(), TEST_SECRET_KEY.into()),
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

/// The gateway with its poller and deliverer running on their own, on the wall clock.
pub async fn spawn_app(settings: &Settings) -> TestApp {
    spawn(settings, Workers::Background, Clock::system()).await
}

/// The gateway with its poller and deliverer still and a hand-moved clock: the test drives them
/// with [`TestApp::tick_poller`], [`TestApp::deliver_due`] and [`TestApp::advance`].
pub async fn spawn_stepped_app(settings: &Settings) -> TestApp {
    spawn(settings, Workers::Manual, Clock::manual()).await
}

async fn spawn(settings: &Settings, workers: Workers, clock: Clock) -> TestApp {
    let options = Options {
        handle_signals: false,
        workers,
        clock: clock.clone(),
    };
    let app = Application::build(settings, options)
        .await
        .expect("the gateway starts");
    let base = format!("http://127.0.0.1:{}", app.port());
    let store = app.store().clone();
    let keys = app.keys().clone();
    let key = |name: &'static str, scope| {
        let store = store.clone();
        let now = clock.now();
        async move {
            access::issue(&store, name, scope, Owner::default(), None, now)
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
    let workers = app.workers();
    let join = tokio::spawn(app.run_until_stopped());
    TestApp {
        base,
        store,
        admin_key,
        write_key,
        read_key,
        keys,
        workers,
        handle,
        join,
    }
}

impl TestApp {
    /// One poller round (of a stepped app).
    pub async fn tick_poller(&self) -> TickReport {
        self.workers.poller.tick().await.expect("a poller tick")
    }

    /// One turn of an interval's `turns`, as the running service takes them.
    pub async fn turn_poller(&self, turn: usize, turns: usize) -> TickReport {
        self.workers
            .poller
            .turn(turn, turns)
            .await
            .expect("a poller turn")
    }

    /// Writes EM's task ids that wait behind their answers (of a stepped app: a tick does too).
    pub async fn write_behind(&self) {
        self.workers
            .attacher
            .write_behind_now()
            .await
            .expect("EM's task ids written");
    }

    /// Sends every webhook delivery due now and records the attempts (of a stepped app).
    pub async fn deliver_due(&self) -> usize {
        self.workers
            .deliverer
            .deliver_due()
            .await
            .expect("webhook deliveries")
    }

    /// Ticks a stepped app's poller until the task leaves `running` (EM finishes on the wall
    /// clock).
    pub async fn settle_by_ticking(&self, task_id: &str) -> serde_json::Value {
        eventually(
            &format!("task {task_id} to settle"),
            Duration::from_secs(15),
            || async {
                self.tick_poller().await;
                let task = self.get_json(&format!("/v1/tasks/{task_id}")).await;
                (task["state"] != "running").then_some(task)
            },
        )
        .await
    }

    /// The app's clock (a stepped app's moves only with [`TestApp::advance`]).
    pub fn now(&self) -> em_gateway::clock::Timestamp {
        self.workers.clock.now()
    }

    /// Moves a stepped app's clock.
    pub fn advance(&self, by: Duration) {
        self.workers.clock.advance(by);
    }

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
