//! Builds the service from settings and runs it: the HTTP API, the poller and the EM
//! keep-alive side by side in one process.

use std::sync::Arc;
use std::time::Duration;

use actix_web::dev::{Server, ServerHandle};
use actix_web::{App, HttpServer, web};
use secrecy::ExposeSecret;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::access::Authenticator;
use crate::api::{self, AppState};
use crate::config::{ConfigError, Settings};
use crate::em::{EmClient, EmSettings};
use crate::operations::Operations;
use crate::poller::{Poller, PollerConfig};
use crate::store::{Store, StoreError};
use crate::webhooks::{Deliverer, DelivererConfig};

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
    poller: JoinHandle<()>,
    deliverer: JoinHandle<()>,
    keepalive: JoinHandle<()>,
    em: Arc<EmClient>,
    store: Store,
    owner: String,
}

impl Application {
    /// Connects, migrates, binds (port 0 picks a free one) and starts the background work.
    pub async fn build(settings: &Settings, handle_signals: bool) -> Result<Self, StartError> {
        // Before anything is recorded (the logons just below included).
        crate::telemetry::install();
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
        let owner = uuid::Uuid::new_v4().to_string();
        let listener =
            std::net::TcpListener::bind(settings.listen).map_err(|e| StartError::Listen {
                addr: settings.listen.to_string(),
                reason: e.to_string(),
            })?;
        let port = listener.local_addr().map(|a| a.port()).unwrap_or_default();

        let wake_deliverer = Arc::new(tokio::sync::Notify::new());
        let poller = Poller::new(
            store.clone(),
            em.clone(),
            owner.clone(),
            PollerConfig {
                interval: settings.poll_interval,
                grace: settings.settle_grace,
                unsent_after: em_config.request_timeout + Duration::from_secs(5),
            },
            wake_deliverer.clone(),
        );
        let deliverer = Deliverer::new(
            store.clone(),
            owner.clone(),
            DelivererConfig {
                schedule: settings.webhook_retry_schedule.clone(),
                timeout: settings.webhook_timeout,
                allow_private: settings.webhook_allow_private,
                concurrency: settings.webhook_concurrency,
            },
            wake_deliverer.clone(),
        )
        .map_err(StartError::Webhooks)?;
        let (stop, stop_rx) = watch::channel(false);
        let poller = tokio::spawn(poller.run(stop_rx.clone()));
        let deliverer = tokio::spawn(Arc::new(deliverer).run(stop_rx));
        let keepalive = tokio::spawn(em.clone().keep_alive_loop());

        let state = web::Data::new(AppState {
            store: store.clone(),
            em: em.clone(),
            operations: Operations::new(store.clone(), em.clone(), owner.clone()),
            auth: Authenticator::new(store.clone()),
            webhooks: api::WebhookSettings {
                allow_private: settings.webhook_allow_private,
                wake: wake_deliverer,
            },
            idempotency_stale: em_config.request_timeout * 2 + Duration::from_secs(1),
        });
        let mut server = HttpServer::new(move || {
            App::new()
                .wrap(actix_web::middleware::from_fn(api::limit_request_head))
                .wrap(actix_web::middleware::from_fn(api::record_metrics))
                .wrap(tracing_actix_web::TracingLogger::default())
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
        if !handle_signals {
            server = server.disable_signals();
        }
        Ok(Application {
            port,
            server: server.run(),
            stop,
            poller,
            deliverer,
            keepalive,
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

    /// Serves until stopped (SIGTERM/SIGINT or the handle), then finishes requests in flight,
    /// stops the poller, logs off EM and gives this replica's sessions up.
    pub async fn run_until_stopped(self) -> std::io::Result<()> {
        let result = self.server.await;
        let _ = self.stop.send(true);
        let _ = self.poller.await;
        let _ = self.deliverer.await;
        self.keepalive.abort();
        self.em.log_off_all().await;
        if let Err(e) = self.store.release_sessions(&self.owner).await {
            tracing::warn!(error = %e, "could not release this replica's EM sessions");
        }
        if let Err(e) = self.store.release_leases(&self.owner).await {
            tracing::warn!(error = %e, "could not release this replica's leases");
        }
        self.store.close().await;
        tracing::info!("stopped");
        result
    }
}
