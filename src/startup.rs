//! Builds the service from settings and runs it: the HTTP API, the poller, the webhook
//! deliverer and the EM keep-alive side by side in one process. A test may build it with the
//! poller and the deliverer not running and step them itself ([`Workers::Manual`]).

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::access::Authenticator;
use crate::api::{self, AppState};
use crate::clock::Clock;
use crate::config::{ConfigError, Settings};
use crate::domain::ReplicaId;
use crate::em::{EmClient, EmSettings};
use crate::store::{Store, StoreError};
use crate::tasks::{InFlightSet, Poller, PollerConfig, Replay, Submitter};
use crate::webhooks::{Deliverer, DelivererConfig};

/// Whether the poller and the deliverer run by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// On their own schedules (the service).
    Background,
    /// Only when stepped through [`Application::workers`] (tests).
    Manual,
}

/// How to run the service.
#[derive(Debug, Clone)]
pub struct Options {
    /// Stop on SIGTERM/SIGINT.
    pub handle_signals: bool,
    pub workers: Workers,
    pub clock: Clock,
}

impl Options {
    /// The service as deployed.
    pub fn service() -> Self {
        Options {
            handle_signals: true,
            workers: Workers::Background,
            clock: Clock::system(),
        }
    }
}

/// The background workers, for a test to step.
#[derive(Clone)]
pub struct Handles {
    pub poller: Arc<Poller>,
    pub deliverer: Arc<Deliverer>,
    pub clock: Clock,
}

#[derive(Debug, thiserror::Error)]
pub enum StartError {
    #[error(transparent)]
    Config(#[from] ConfigError),
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("Enterprise Manager client: {0}")]
    Em(#[from] crate::em::client::EmSetupError),
    #[error("webhook deliverer: {0}")]
    Webhooks(String),
    #[error("cannot listen on {addr}: {reason}")]
    Listen { addr: String, reason: String },
}

pub fn em_client(em: &EmSettings) -> Result<EmClient, StartError> {
    if em.tls.insecure && em.tls.cert_sha256.is_none() {
        tracing::warn!(
            "EMGW_EM_TLS_INSECURE=true: Enterprise Manager's certificate is NOT verified; pin it with EMGW_EM_CERT_SHA256 instead"
        );
    }
    Ok(EmClient::new(em.clone())?)
}

pub struct Application {
    port: u16,
    server: Server,
    stop: watch::Sender<bool>,
    background: Vec<JoinHandle<()>>,
    keepalive: JoinHandle<()>,
    handles: Handles,
    em: Arc<EmClient>,
    store: Store,
    owner: ReplicaId,
}

impl Application {
    /// Connects, migrates, binds (port 0 picks a free one) and starts the background work.
    pub async fn build(settings: &Settings, options: Options) -> Result<Self, StartError> {
        // Before anything is recorded (the logons just below included).
        crate::telemetry::install();
        let clock = options.clock.clone();
        let em_config = settings
            .em
            .as_ref()
            .ok_or(ConfigError::Missing("EMGW_EM_URL"))?;
        let store = Store::connect(settings.database_url.expose_secret()).await?;
        store.migrate().await?;
        let em = Arc::new(em_client(em_config)?);
        // Log on now so that bad credentials show at start; EM being down must not stop us.
        if let Err(e) = em.warm_up().await {
            tracing::warn!(error = %e, "could not log on to Enterprise Manager yet; will retry on use");
        }
        let owner = ReplicaId::new();
        let listener =
            std::net::TcpListener::bind(settings.listen).map_err(|e| StartError::Listen {
                addr: settings.listen.to_string(),
                reason: e.to_string(),
            })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();

        let wake_deliverer = Arc::new(tokio::sync::Notify::new());
        // Filled by the submitter, emptied and resynced by the poller.
        let in_flight = Arc::new(InFlightSet::new());
        let poller = Arc::new(Poller::new(
            store.clone(),
            em.clone(),
            owner,
            clock.clone(),
            PollerConfig {
                interval: settings.poll_interval,
                grace: settings.settle_grace,
                unsent_after: em_config.request_timeout + Duration::from_secs(5),
            },
            in_flight.clone(),
            wake_deliverer.clone(),
        ));
        let deliverer = Arc::new(
            Deliverer::new(
                store.clone(),
                owner,
                clock.clone(),
                DelivererConfig {
                    schedule: settings.webhook_retry_schedule.clone(),
                    timeout: settings.webhook_timeout,
                    allow_private: settings.webhook_allow_private,
                    concurrency: settings.webhook_concurrency,
                    proxy: settings.webhook_proxy.clone(),
                },
                wake_deliverer.clone(),
            )
            .map_err(StartError::Webhooks)?,
        );
        let (stop, stop_rx) = watch::channel(false);
        let background = match options.workers {
            Workers::Background => vec![
                tokio::spawn(poller.clone().run(stop_rx.clone())),
                tokio::spawn(deliverer.clone().run(stop_rx)),
            ],
            Workers::Manual => Vec::new(),
        };
        let keepalive = tokio::spawn(em.clone().keep_alive_loop());

        let state = web::Data::new(AppState {
            store: store.clone(),
            em: em.clone(),
            clock: clock.clone(),
            submitter: Submitter::new(store.clone(), em.clone(), owner, clock.clone(), in_flight),
            // A claim this old whose request never reached EM may be taken over.
            replay: Replay::new(
                store.clone(),
                clock.clone(),
                em_config.request_timeout * 2 + Duration::from_secs(1),
            ),
            auth: Authenticator::new(store.clone(), clock.clone()),
            webhooks: api::WebhookSettings {
                allow_private: settings.webhook_allow_private,
                per_owner: u32::try_from(settings.webhooks_per_owner).unwrap_or(u32::MAX),
                wake: wake_deliverer,
            },
            body_timeout: settings.body_timeout,
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(api::limit_request_head))
                .wrap(actix_web::middleware::from_fn(api::record_metrics))
                .wrap(tracing_actix_web::TracingLogger::<api::span::RequestSpan>::new())
                .app_data(state.clone())
                .configure(api::configure)
        })
        .client_request_timeout(settings.client_timeout)
        .client_disconnect_timeout(Duration::from_secs(2))
        .shutdown_timeout(20)
        .listen(listener)
        .map_err(|e| StartError::Listen {
            addr: settings.listen.to_string(),
            reason: e.to_string(),
        })?;
        if !options.handle_signals {
            server = server.disable_signals();
        }
        Ok(Application {
            port,
            server: server.run(),
            stop,
            background,
            keepalive,
            handles: Handles {
                poller,
                deliverer,
                clock,
            },
            em,
            store,
            owner,
        })
    }

    pub fn port(&self) -> u16 {
        self.port
    }

    pub fn handle(&self) -> ServerHandle {
        self.server.handle()
    }

    pub fn store(&self) -> &Store {
        &self.store
    }

    /// The poller, the deliverer and the clock, to step by hand under [`Workers::Manual`].
    pub fn workers(&self) -> Handles {
        self.handles.clone()
    }

    /// Serves until stopped (SIGTERM/SIGINT or the handle), then finishes requests in flight,
    /// stops the poller, logs off EM and gives this replica's sessions up.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        let _ = self.stop.send(true);
        for worker in self.background {
            let _ = worker.await;
        }
        self.keepalive.abort();
        self.em.log_off_all().await;
        let now = self.handles.clock.now();
        if let Err(e) = self.store.release_sessions(self.owner, now).await {
            tracing::warn!(error = %e, "could not release this replica's EM sessions");
        }
        if let Err(e) = self.store.release_leases(self.owner).await {
            tracing::warn!(error = %e, "could not release this replica's leases");
        }
        self.store.close().await;
        tracing::info!("stopped");
        result
    }
}
