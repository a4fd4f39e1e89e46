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
use crate::secrets::{self, KeySource, Keyring};
use crate::store::{PoolFor, Store, StoreError};
use crate::tasks::{Attacher, OwnTasks, Poller, PollerConfig, Replay, Submitter};
use crate::webhooks::{Deliverer, DelivererConfig};

/// Whether the poller, the deliverer and the writer of EM's task ids behind their answers run
/// by themselves.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Workers {
    /// On their own schedules (the service).
    Background,
    /// Only when stepped through [`Application::workers`] (tests): EM's task ids written
    /// behind their answers then wait for a poller tick (or the stop).
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
    /// Writes EM's task ids recorded behind their answers (each poller tick does too).
    pub attacher: Arc<Attacher>,
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
    #[error("{0}")]
    SecretKey(String),
}

/// The server key the service runs with ([`secrets::resolve`]), said once in the log (its id,
/// never the key).
pub fn keyring(settings: &Settings) -> Result<Keyring, StartError> {
    let (keys, source) = secrets::resolve(
        settings.secret_key.as_ref(),
        &settings.secret_keys_previous,
        &settings.database_url,
    )
    .map_err(StartError::SecretKey)?;
    let key_id = keys.current_id();
    match source {
        KeySource::Configured => tracing::info!(key_id, "server key from EMGW_SECRET_KEY"),
        KeySource::File { path, created } => tracing::info!(
            key_id,
            path = %path.display(),
            created,
            "server key from the key file beside the SQLite database (set EMGW_SECRET_KEY to choose one)"
        ),
        KeySource::Ephemeral => {
            tracing::warn!(key_id, "server key made for this in-memory database only")
        }
    }
    Ok(keys)
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
    /// Writes EM's task ids recorded behind their answers.
    attacher: Arc<Attacher>,
    write_behind: Option<JoinHandle<()>>,
    handles: Handles,
    em: Arc<EmClient>,
    store: Store,
    /// The poller's, the deliverer's and the hand-over's.
    background_store: Store,
    owner: ReplicaId,
    keys: Keyring,
}

impl Application {
    /// Connects, migrates, binds (port 0 picks a free one) and starts the background work.
    pub async fn build(settings: &Settings, options: Options) -> Result<Self, StartError> {
        // Before anything is recorded (the logons just below included).
        crate::telemetry::install();
        // Ends with the runtime; one per application (each test's runtime has its own).
        tokio::spawn(crate::telemetry::fold_samples());
        let clock = options.clock.clone();
        let em_config = settings
            .em
            .as_ref()
            .ok_or(ConfigError::Missing("EMGW_EM_URL"))?;
        let keys = keyring(settings)?;
        let store = Store::connect(settings.database_url.expose_secret())
            .await?
            .sealing_with(keys.clone());
        store.migrate().await?;
        let resealed = store.seal_stored_secrets().await?;
        if resealed.total() > 0 {
            tracing::info!(
                webhook_secrets = resealed.webhook_secrets,
                answers = resealed.answers,
                key_id = keys.current_id(),
                "sealed stored secrets with the current server key"
            );
        }
        // A Postgres connection belongs to the tokio runtime that opened it, and actix runs each
        // HTTP worker on a runtime of its own, shut down with the server: a connection a request
        // opened is dead once the server has stopped ("A Tokio 1.x context was found, but it is
        // being shutdown"). What runs after that — the poller and the deliverer finishing, the
        // hand-over of this replica's sessions and leases — uses a pool that only this runtime
        // opens connections for.
        // The deliverer opens webhook secrets: this pool seals and opens with the same keys.
        let background_store =
            Store::connect_for(settings.database_url.expose_secret(), PoolFor::Background)
                .await?
                .sealing_with(keys.clone());
        let writes = Store::connect_for(settings.database_url.expose_secret(), PoolFor::Writes)
            .await?
            .sealing_with(keys.clone());
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
        // Filled by the submitter; the in-flight set emptied and resynced by the poller, the
        // unanswered intents emptied by the submitter and the poller's looks.
        let own = OwnTasks::new(writes.clone(), background_store.clone(), owner);
        let attacher = own.attacher.clone();
        let write_behind = (options.workers == Workers::Background)
            .then(|| tokio::spawn(attacher.clone().write_behind_loop()));
        let deliverer = Arc::new(
            Deliverer::new(
                background_store.clone(),
                owner,
                clock.clone(),
                DelivererConfig {
                    schedule: settings.webhook_retry_schedule.clone(),
                    timeout: settings.webhook_timeout,
                    allow_private: settings.webhook_allow_private,
                    concurrency: settings.webhook_concurrency,
                    per_subscription: settings.webhook_concurrency_per_subscription,
                    proxy: settings.webhook_proxy.clone(),
                },
                wake_deliverer.clone(),
            )
            .map_err(StartError::Webhooks)?,
        );
        let poller = Arc::new(Poller::new(
            background_store.clone(),
            em.clone(),
            owner,
            clock.clone(),
            PollerConfig {
                interval: settings.poll_interval,
                grace: settings.settle_grace,
                unsent_after: em_config.request_timeout + Duration::from_secs(5),
            },
            own.clone(),
            deliverer.handoff(),
        ));
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
            submitter: Submitter::new(
                store.clone(),
                writes,
                em.clone(),
                clock.clone(),
                own.clone(),
            ),
            // A claim this old whose request never reached EM may be taken over.
            replay: Replay::new(
                store.clone(),
                own.unanswered,
                clock.clone(),
                em_config.request_timeout * 2 + Duration::from_secs(1),
                keys.clone(),
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
            attacher: attacher.clone(),
            write_behind,
            handles: Handles {
                poller,
                deliverer,
                attacher,
                clock,
            },
            em,
            store,
            background_store,
            owner,
            keys,
        })
    }

    /// The server keys it seals and fingerprints with.
    pub fn keys(&self) -> &Keyring {
        &self.keys
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
    /// writes EM's task ids still waiting, stops the poller, logs off EM and gives this
    /// replica's sessions up.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        // Every request is answered: what was answered is recorded before the poller stops
        // and this replica's sessions are handed over.
        if self.attacher.write_behind_now().await.is_err() {
            // Their intents are on disk: another replica settles them from EM's objects.
            tracing::warn!("could not record every EM task id before stopping");
        }
        if let Some(writer) = self.write_behind {
            writer.abort();
        }
        let _ = self.stop.send(true);
        for worker in self.background {
            let _ = worker.await;
        }
        self.keepalive.abort();
        self.em.log_off_all().await;
        // The hand-over: the other replicas' next ticks take this one's tasks over as orphans.
        let handover = &self.background_store;
        let now = self.handles.clock.now();
        if let Err(e) = handover.release_sessions(self.owner, now).await {
            tracing::warn!(error = %e, "could not release this replica's EM sessions");
        }
        if let Err(e) = handover.release_leases(self.owner).await {
            tracing::warn!(error = %e, "could not release this replica's leases");
        }
        self.store.close().await;
        handover.close().await;
        tracing::info!("stopped");
        result
    }
}
