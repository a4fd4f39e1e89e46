//! `em-sim`: a faithful Enterprise Manager REST API for tests, benchmarks and the demo.
//!
//! It follows `em-api.md`: logon sessions with idle expiry and cookie-over-header precedence,
//! session-scoped tasks that finish after a set time with EM's `Related` links, EM's business-rule
//! failures, EM's `Error` bodies, XML with strict element order, JSON by content negotiation,
//! cloud gateways and pools, Cloud Connect tenants with their storage quotas, repositories,
//! seeded backup servers, repositories, WAN accelerators and tenants ([`seed`]), `/query` with
//! filters, and fault injection through a control API (see [`control`]).

pub mod body;
pub mod control;
pub mod password;
pub mod query;
pub mod render;
pub mod routes;
pub mod seed;
pub mod state;
pub mod tls;
pub mod views;

use std::net::SocketAddr;
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use actix_web::{App, HttpServer, web};
use serde::{Deserialize, Serialize};

pub use seed::Seed;
use state::World;
use views::Hrefs;

/// How the simulator starts.
#[derive(Debug, Clone)]
pub struct SimConfig {
    pub listen: SocketAddr,
    /// Base of the Hrefs it writes (EM's idea of its own host), e.g. `https://em.example:9398`.
    /// Default: the address it listens on.
    pub public_url: Option<String>,
    pub username: String,
    pub password: String,
    /// How long an operation runs before its task finishes.
    pub task_time: Duration,
    /// How long a finished operation shows `OperationFinished` before `Finished`.
    pub operation_finished_time: Duration,
    /// Idle time after which a logon session expires (EM: 15 minutes).
    pub session_idle: Duration,
    pub seed: Seed,
    pub faults: Faults,
    pub workers: usize,
    /// Serve HTTPS with a generated certificate.
    pub tls: Option<tls::TlsMode>,
}

impl SimConfig {
    pub fn new(listen: SocketAddr, username: &str, password: &str) -> Self {
        SimConfig {
            listen,
            public_url: None,
            username: username.into(),
            password: password.into(),
            task_time: Duration::from_millis(500),
            operation_finished_time: Duration::ZERO,
            session_idle: Duration::from_secs(15 * 60),
            seed: Seed::default(),
            faults: Faults::default(),
            workers: 2,
            tls: None,
        }
    }
}

/// Fault injection, changeable at run time through `PUT /_sim/faults`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Faults {
    /// Added to every EM request.
    pub latency_ms: u64,
    /// Share of EM requests answered with `error_status` before anything is done (0..1).
    pub error_rate: f64,
    pub error_status: u16,
    /// The next this many EM requests are answered with `error_status`, before `error_rate`
    /// is drawn: a deterministic fault for tests.
    pub error_next: u32,
    /// Share of EM requests whose connection is dropped after they were processed (0..1).
    pub drop_rate: f64,
    /// Share of operations whose task finishes with `Success="false"` (0..1).
    pub task_failure_rate: f64,
    /// Share of EM requests answered 200 with an HTML page instead (a proxy or a wrong port).
    pub garbage_rate: f64,
    /// JSON answers with camelCase keys, as some v13 builds send.
    pub camel_case_json: bool,
    /// `Type="Task"` on a task's Delete link (the hand-written docs have it, real EM does not).
    pub task_delete_link_type: bool,
}

impl Default for Faults {
    fn default() -> Self {
        Faults {
            latency_ms: 0,
            error_rate: 0.0,
            error_status: 503,
            error_next: 0,
            drop_rate: 0.0,
            task_failure_rate: 0.0,
            garbage_rate: 0.0,
            camel_case_json: false,
            task_delete_link_type: false,
        }
    }
}

impl Faults {
    pub fn checked(self) -> Result<Self, String> {
        for (name, rate) in [
            ("error_rate", self.error_rate),
            ("drop_rate", self.drop_rate),
            ("task_failure_rate", self.task_failure_rate),
            ("garbage_rate", self.garbage_rate),
        ] {
            if !(0.0..=1.0).contains(&rate) {
                return Err(format!("{name} must be between 0 and 1"));
            }
        }
        // 408 is what IIS answers a request it did not take in, before EM sees it.
        if !(500..=599).contains(&self.error_status) && self.error_status != 408 {
            return Err("error_status must be a 5xx status or 408".into());
        }
        Ok(self)
    }
}

/// The simulator's shared state.
pub struct Sim {
    world: Mutex<World>,
    faults: Mutex<Faults>,
    hrefs: Hrefs,
    username: String,
    /// Changeable through `PUT /_sim/account`, as an administrator resets a password.
    password: Mutex<String>,
}

impl Sim {
    fn world(&self) -> MutexGuard<'_, World> {
        // A panic while holding the lock must not take the simulator down with it.
        self.world.lock().unwrap_or_else(|p| p.into_inner())
    }

    fn faults(&self) -> Faults {
        self.faults
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .clone()
    }

    /// Whether this request is one of the `error_next` to fail (and counts it).
    fn take_error_next(&self) -> bool {
        let mut faults = self.faults.lock().unwrap_or_else(|p| p.into_inner());
        let due = faults.error_next > 0;
        faults.error_next = faults.error_next.saturating_sub(1);
        due
    }

    fn set_faults(&self, faults: Faults) {
        *self.faults.lock().unwrap_or_else(|p| p.into_inner()) = faults;
    }

    fn is_account(&self, user: &str, password: &str) -> bool {
        user == self.username
            && *self.password.lock().unwrap_or_else(|p| p.into_inner()) == password
    }

    fn set_password(&self, password: String) {
        *self.password.lock().unwrap_or_else(|p| p.into_inner()) = password;
    }
}

/// A running simulator.
pub struct RunningSim {
    pub addr: SocketAddr,
    /// EM's base URL including `/api` (what `EMGW_EM_URL` takes).
    pub api_url: String,
    pub handle: actix_web::dev::ServerHandle,
    pub server: tokio::task::JoinHandle<std::io::Result<()>>,
    /// With TLS: the certificate's fingerprint and the PEM clients can trust.
    pub tls: Option<(String, String)>,
}

impl RunningSim {
    pub async fn stop(self) {
        self.handle.stop(true).await;
        let _ = self.server.await;
    }
}

/// How long EM's web server (HTTP.sys: `ConnectionTimeout`, `HeaderWait`) waits on a client.
pub const IIS_CONNECTION_TIMEOUT: Duration = Duration::from_secs(120);

/// Binds and starts the simulator on the current tokio runtime.
pub fn start(config: SimConfig, handle_signals: bool) -> std::io::Result<RunningSim> {
    let listener = std::net::TcpListener::bind(config.listen)?;
    let addr = listener.local_addr()?;
    let scheme = if config.tls.is_some() {
        "https"
    } else {
        "http"
    };
    let public = config
        .public_url
        .clone()
        .unwrap_or_else(|| format!("{scheme}://{addr}"));
    let api_url = format!("{}/api", public.trim_end_matches('/'));
    let seed = config.seed;
    let mut world = World::new(
        seed.backup_servers,
        seed.tenants,
        seed.repositories,
        seed.wan_accelerators,
        config.session_idle,
        config.task_time,
    );
    world.operation_finished_time = config.operation_finished_time;
    let sim = web::Data::new(Sim {
        world: Mutex::new(world),
        faults: Mutex::new(config.faults),
        hrefs: Hrefs {
            base: api_url.clone(),
        },
        username: config.username,
        password: Mutex::new(config.password),
    });
    let server = HttpServer::new(move || {
        App::new()
            .app_data(sim.clone())
            .app_data(web::PayloadConfig::new(1024 * 1024))
            .default_service(web::to(routes::dispatch))
    })
    .workers(config.workers.max(1))
    // As IIS (HTTP.sys) does in front of EM: connections idle for up to 120 s are kept, and a
    // request's head may take as long. actix-web's 5 s defaults answered 408 to a request the
    // gateway sent on a connection that had waited in its pool.
    .keep_alive(IIS_CONNECTION_TIMEOUT)
    .client_request_timeout(IIS_CONNECTION_TIMEOUT);
    let mut tls_info = None;
    let mut server = match config.tls {
        None => server.listen(listener)?,
        Some(mode) => {
            let mut names = vec!["localhost".to_string(), addr.ip().to_string()];
            if let Some(host) = reqwest::Url::parse(&public)
                .ok()
                .and_then(|u| u.host_str().map(str::to_string))
                && !names.contains(&host)
            {
                names.push(host);
            }
            let material = tls::generate(mode, &names).map_err(std::io::Error::other)?;
            tls_info = Some((material.fingerprint, material.trust_pem));
            server.listen_rustls_0_23(listener, material.server)?
        }
    };
    if !handle_signals {
        server = server.disable_signals();
    }
    let server = server.shutdown_timeout(5).run();
    let handle = server.handle();
    Ok(RunningSim {
        addr,
        api_url,
        handle,
        server: tokio::spawn(server),
        tls: tls_info,
    })
}
