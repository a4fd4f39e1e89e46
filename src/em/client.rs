//! The HTTP client for Enterprise Manager's REST API.
//!
//! Every call goes through a pool of logon sessions (no logon per request), speaks XML both ways
//! (EM's schema is fixed there; JSON key casing drifts between versions), and turns every failure
//! into an [`EmError`]. A 401 is answered by logging on again and sending the call once more:
//! EM checks the session before it does anything, so a call refused with 401 did nothing and is
//! safe to repeat, writes included. A write that got no answer at all is never repeated: it may
//! have started an operation (see [`EmError::OutcomeUnknown`]).

use std::cell::RefCell;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use base64::Engine;
use futures_util::stream;
use reqwest::{Method, StatusCode, Url};
use secrecy::{ExposeSecret, SecretString};
use tokio::sync::Semaphore;
use tracing::Instrument;
use uuid::Uuid;

use super::error::EmError;
use super::session::{LogonBackoff, LogonState, Session, SessionPool, SessionRef};
use super::skim;
use super::tls::{self, TlsTrust};
use super::xml;
use crate::telemetry::EmLogon;

/// EM's session token header; read case-insensitively (EM has been seen to vary its case).
pub const SESSION_HEADER: &str = "X-RestSvcSessionId";

/// The API version the gateway speaks. Pinned: `latest` changes the schema under us after an EM
/// upgrade.
pub const API_VERSION: &str = "v1_7";

const XML: &str = "application/xml";

/// Everything needed to reach EM.
#[derive(Debug, Clone)]
pub struct EmSettings {
    /// EM's base URL including `/api`, e.g. `https://em.example:9398/api`.
    pub base_url: Url,
    pub username: String,
    pub password: SecretString,
    /// Size of the logon-session pool.
    pub sessions: usize,
    pub tls: TlsTrust,
    pub connect_timeout: Duration,
    pub request_timeout: Duration,
    /// At most this many EM calls in flight at once, over all sessions.
    pub max_in_flight: usize,
    /// A session with no request for this long is sent a keep-alive (EM expires them after 15
    /// idle minutes).
    pub keepalive_after: Duration,
    /// How long no logon is tried after EM refused the credentials.
    pub logon_backoff: LogonBackoff,
}

impl EmSettings {
    /// The pool size unless `EMGW_EM_SESSIONS` says otherwise.
    pub const DEFAULT_SESSIONS: usize = 4;
    /// Per EM call unless `EMGW_EM_TIMEOUT_MS` says otherwise.
    pub const DEFAULT_REQUEST_TIMEOUT: Duration = Duration::from_secs(30);

    pub fn new(base_url: Url, username: impl Into<String>, password: SecretString) -> Self {
        EmSettings {
            base_url,
            username: username.into(),
            password,
            tls: TlsTrust::default(),
            connect_timeout: Duration::from_secs(5),
            request_timeout: Self::DEFAULT_REQUEST_TIMEOUT,
            keepalive_after: Duration::from_secs(5 * 60),
            logon_backoff: LogonBackoff::DEFAULT,
            sessions: 0,
            max_in_flight: 0,
        }
        .with_sessions(Self::DEFAULT_SESSIONS)
    }

    /// Sets the pool size and the EM calls allowed in flight with it: 16 a session, 16 at least.
    pub fn with_sessions(mut self, sessions: usize) -> Self {
        self.sessions = sessions;
        self.max_in_flight = (sessions * 16).max(16);
        self
    }
}

#[derive(Debug, thiserror::Error)]
pub enum EmSetupError {
    #[error("EMGW_EM_URL must be an http(s) URL, got {0}")]
    BadUrl(String),
    #[error(transparent)]
    Tls(#[from] tls::TlsError),
    #[error("cannot build the HTTP client: {0}")]
    Http(String),
}

/// An operation EM accepted: its task, and the session that can see it.
#[derive(Debug, Clone, PartialEq)]
pub struct Submitted {
    pub task: xml::Task,
    pub session: SessionRef,
}

/// Which session a call must use.
#[derive(Debug, Clone, Copy)]
enum Via<'a> {
    /// Any session; a lost session is replaced and the call repeated once.
    AnySession,
    /// Exactly this session (tasks are session-scoped): a lost session is an error.
    Session(&'a SessionRef),
}

/// An answer's body: read as the call needs it when EM said yes (2xx), as text otherwise (what
/// [`refusal`] reads).
enum Body<T> {
    Success(T),
    Failure(String),
}

impl<T> Body<T> {
    /// The text of a refusal; nothing for a success.
    fn failure_text(&self) -> &str {
        match self {
            Body::Success(_) => "",
            Body::Failure(text) => text,
        }
    }
}

impl Body<String> {
    fn into_text(self) -> String {
        match self {
            Body::Success(text) | Body::Failure(text) => text,
        }
    }
}

thread_local! {
    /// Each EM client's client for writes on this thread.
    static WRITERS: RefCell<Vec<(u64, reqwest::Client)>> = const { RefCell::new(Vec::new()) };
}

/// Writers' clients kept per thread, at most.
const WRITERS_KEPT: usize = 8;

/// Idle connections to EM are closed after this, with a margin before EM's web server closes
/// them (IIS: 120 s), so that no request goes out on a connection EM is closing.
const IDLE_CONNECTIONS_KEPT: Duration = Duration::from_secs(60);

const NOT_TAKEN_IN: &str =
    "EM's web server answered 408 Request Timeout: it did not take the request in";

pub struct EmClient {
    /// Logons and the anonymous ping: small answers.
    http: reqwest::Client,
    /// Writes go through a client of the calling thread's own (see [`EmClient::writer`]),
    /// made by this; `id` tells this EM client's from another's on the same thread.
    make_writer: Box<dyn Fn() -> Result<reqwest::Client, EmSetupError> + Send + Sync>,
    id: u64,
    /// Reads, whose answers may be large (a session's task list, 10 MB and more). A connection
    /// keeps a read buffer as large as the largest answer it read quickly (up to ~400 KB): on
    /// one pool, the 64 connections a burst of creates opened each came to read task lists,
    /// and their buffers were 25 MB of the gateway's 60 MB at 100,000 tasks in flight
    /// (heaptrack). Apart, only as many as reads run at once grow.
    reads: reqwest::Client,
    base: Url,
    username: String,
    password: SecretString,
    pool: SessionPool,
    in_flight: Semaphore,
    keepalive_after: Duration,
}

impl std::fmt::Debug for EmClient {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EmClient")
            .field("base", &self.base.as_str())
            .field("username", &self.username)
            .field("sessions", &self.pool.size())
            .finish_non_exhaustive()
    }
}

impl EmClient {
    pub fn new(settings: EmSettings) -> Result<Self, EmSetupError> {
        let mut base = settings.base_url.clone();
        if !matches!(base.scheme(), "http" | "https") || base.cannot_be_a_base() {
            return Err(EmSetupError::BadUrl(base.to_string()));
        }
        if !base.path().ends_with('/') {
            let path = format!("{}/", base.path());
            base.set_path(&path);
        }
        let tls = tls::client_config(&settings.tls)?;
        let (connect_timeout, request_timeout, idle) = (
            settings.connect_timeout,
            settings.request_timeout,
            settings.max_in_flight.max(1),
        );
        let client = move || {
            reqwest::Client::builder()
                .tls_backend_preconfigured(tls.clone())
                .connect_timeout(connect_timeout)
                .timeout(request_timeout)
                // No cookie store (reqwest is built without one): EM prefers its cookie over the
                // header, so a stale cookie would shadow a fresh token after a re-logon.
                .redirect(reqwest::redirect::Policy::none())
                .pool_max_idle_per_host(idle)
                .pool_idle_timeout(IDLE_CONNECTIONS_KEPT)
                .build()
                .map_err(|e| EmSetupError::Http(e.to_string()))
        };
        let (http, reads) = (client()?, client()?);
        static NEXT: AtomicU64 = AtomicU64::new(0);
        Ok(EmClient {
            http,
            make_writer: Box::new(client),
            id: NEXT.fetch_add(1, Ordering::Relaxed),
            reads,
            base,
            username: settings.username,
            password: settings.password,
            pool: SessionPool::new(settings.sessions, settings.logon_backoff),
            in_flight: Semaphore::new(settings.max_in_flight.max(1)),
            keepalive_after: settings.keepalive_after,
        })
    }

    pub fn base_url(&self) -> &Url {
        &self.base
    }

    pub fn pool_size(&self) -> usize {
        self.pool.size()
    }

    /// The sessions currently logged on.
    pub fn live_sessions(&self) -> Vec<SessionRef> {
        self.pool.live()
    }

    /// EM's refusal of the gateway's credentials while the last logon was refused (`/readyz`
    /// shows it); `None` before any refusal and once a logon succeeded.
    pub fn logon_refusal(&self) -> Option<EmError> {
        self.pool.logon_state().refusal(Instant::now())
    }

    /// Logs every slot on now instead of on first use.
    pub async fn warm_up(&self) -> Result<(), EmError> {
        for slot in 0..self.pool.size() {
            self.session_for(slot).await?;
        }
        Ok(())
    }

    /// EM's anonymous entry point: is EM there at all?
    pub async fn ping(&self) -> Result<(), EmError> {
        let url = self.url(&[], &[]);
        let _permit = self.permit().await?;
        let resp = self
            .http
            .get(url)
            .header("Accept", XML)
            .send()
            .await
            .map_err(|e| EmError::Unreachable(crate::outbound::describe(&e)))?;
        let status = resp.status();
        let body = resp.text().await.unwrap_or_default();
        if status.is_success() {
            Ok(())
        } else {
            Err(refusal(status, &body))
        }
    }

    // -----------------------------------------------------------------------------------------
    // Writes: each answers 202 with a Task in the session that sent it.
    // -----------------------------------------------------------------------------------------

    pub async fn create_cloud_gateway(
        &self,
        spec: &xml::CreateCloudGatewaySpec,
    ) -> Result<Submitted, EmError> {
        self.submit(Method::POST, &["cloud", "gateways"], Some(body(spec)?))
            .await
    }

    pub async fn edit_cloud_gateway(
        &self,
        id: Uuid,
        edit: &xml::CloudGatewayEdit,
    ) -> Result<Submitted, EmError> {
        let id = id.to_string();
        self.submit(Method::PUT, &["cloud", "gateways", &id], Some(body(edit)?))
            .await
    }

    pub async fn delete_cloud_gateway(&self, id: Uuid) -> Result<Submitted, EmError> {
        let id = id.to_string();
        self.submit(Method::DELETE, &["cloud", "gateways", &id], None)
            .await
    }

    pub async fn create_cloud_gateway_pool(
        &self,
        spec: &xml::CreateCloudGatewayPoolSpec,
    ) -> Result<Submitted, EmError> {
        self.submit(Method::POST, &["cloud", "gatewayPools"], Some(body(spec)?))
            .await
    }

    pub async fn edit_cloud_gateway_pool(
        &self,
        id: Uuid,
        edit: &xml::CloudGatewayPoolEdit,
    ) -> Result<Submitted, EmError> {
        let id = id.to_string();
        self.submit(
            Method::PUT,
            &["cloud", "gatewayPools", &id],
            Some(body(edit)?),
        )
        .await
    }

    pub async fn delete_cloud_gateway_pool(&self, id: Uuid) -> Result<Submitted, EmError> {
        let id = id.to_string();
        self.submit(Method::DELETE, &["cloud", "gatewayPools", &id], None)
            .await
    }

    async fn submit(
        &self,
        method: Method,
        path: &[&str],
        body: Option<String>,
    ) -> Result<Submitted, EmError> {
        self.submit_to(method, self.url(path, &[]), body).await
    }

    /// [`Self::submit`] to a URL with a query (`?includeBackups=true`).
    async fn submit_to(
        &self,
        method: Method,
        url: Url,
        body: Option<String>,
    ) -> Result<Submitted, EmError> {
        let (method_name, path_name) = (method.to_string(), url.path().to_string());
        let span = tracing::info_span!("em_submit", %method, path = %url.path(), em_task_id = tracing::field::Empty);
        async {
            let (session, status, text) = self.call(Via::AnySession, method, url, body).await?;
            if status != StatusCode::ACCEPTED && !status.is_success() {
                return Err(refusal(status, &text));
            }
            // EM said yes but the answer is unreadable: it may have started the operation.
            let task: xml::Task = xml::from_xml(&text).map_err(|e| EmError::OutcomeUnknown {
                method: method_name.clone(),
                path: path_name.clone(),
                reason: format!("EM answered {status} with something that is not a Task: {e}"),
            })?;
            tracing::Span::current().record("em_task_id", task.task_id.as_str());
            tracing::info!(operation = %task.operation, "EM accepted the operation");
            Ok(Submitted { task, session })
        }
        .instrument(span)
        .await
    }

    // -----------------------------------------------------------------------------------------
    // Tasks: only the session that created a task can see it.
    // -----------------------------------------------------------------------------------------

    /// All tasks of one session: one call covers every task in flight there.
    pub async fn tasks(&self, session: &SessionRef) -> Result<Vec<xml::Task>, EmError> {
        let tasks: xml::Tasks = self
            .read(Via::Session(session), self.url(&["tasks"], &[]))
            .await?;
        Ok(tasks.tasks)
    }

    /// The finished tasks among those `wanted`, from the same one call (see
    /// [`skim::finished_tasks_streamed`]: the list is read as it arrives, never held whole, and
    /// the others are not built).
    pub async fn finished_tasks(
        &self,
        session: &SessionRef,
        wanted: impl Fn(&str) -> bool,
    ) -> Result<Vec<xml::Task>, EmError> {
        let url = self.url(&["tasks"], &[]);
        let wanted = &wanted;
        let skim = move |resp: reqwest::Response| async move {
            let chunks = stream::unfold(resp, |mut resp| async move {
                resp.chunk().await.transpose().map(|chunk| (chunk, resp))
            });
            match skim::finished_tasks_streamed(std::pin::pin!(chunks), wanted).await {
                Ok(found) => Ok(Ok(found)),
                // The body could not be read: retried as a read whose answer was lost.
                Err(skim::SkimError::Read(e)) => Err(e),
                Err(skim::SkimError::Document(e)) => Ok(Err(e)),
            }
        };
        let (_, status, body) = self
            .call_reading(Via::Session(session), Method::GET, url, None, &skim)
            .await?;
        match body {
            Body::Success(found) => found.map_err(|e| EmError::BadAnswer(e.to_string())),
            Body::Failure(text) => Err(refusal(status, &text)),
        }
    }

    pub async fn task(&self, session: &SessionRef, task_id: &str) -> Result<xml::Task, EmError> {
        self.read(Via::Session(session), self.url(&["tasks", task_id], &[]))
            .await
    }

    // -----------------------------------------------------------------------------------------
    // Reads of EM's objects, as entities.
    // -----------------------------------------------------------------------------------------

    pub async fn cloud_gateways(&self) -> Result<Vec<xml::CloudGateway>, EmError> {
        let list: xml::CloudGateways = self.entities(&["cloud", "gateways"]).await?;
        Ok(list.items)
    }

    pub async fn cloud_gateway(&self, id: Uuid) -> Result<Option<xml::CloudGateway>, EmError> {
        self.entity(&["cloud", "gateways", &id.to_string()]).await
    }

    pub async fn cloud_gateway_pools(&self) -> Result<Vec<xml::CloudGatewayPool>, EmError> {
        let list: xml::CloudGatewayPools = self.entities(&["cloud", "gatewayPools"]).await?;
        Ok(list.items)
    }

    pub async fn cloud_gateway_pool(
        &self,
        id: Uuid,
    ) -> Result<Option<xml::CloudGatewayPool>, EmError> {
        self.entity(&["cloud", "gatewayPools", &id.to_string()])
            .await
    }

    pub async fn backup_servers(&self) -> Result<Vec<xml::BackupServer>, EmError> {
        let list: xml::BackupServers = self.entities(&["backupServers"]).await?;
        Ok(list.items)
    }

    pub async fn backup_server(&self, id: Uuid) -> Result<Option<xml::BackupServer>, EmError> {
        self.entity(&["backupServers", &id.to_string()]).await
    }

    pub async fn cloud_tenants(&self) -> Result<Vec<xml::CloudTenant>, EmError> {
        let list: xml::CloudTenants = self.entities(&["cloud", "tenants"]).await?;
        Ok(list.items)
    }

    pub async fn cloud_tenant(&self, id: Uuid) -> Result<Option<xml::CloudTenant>, EmError> {
        self.entity(&["cloud", "tenants", &id.to_string()]).await
    }

    async fn entities<T: for<'de> serde::Deserialize<'de> + xml::Document>(
        &self,
        path: &[&str],
    ) -> Result<T, EmError> {
        self.read(Via::AnySession, self.url(path, &[("format", "Entity")]))
            .await
    }

    async fn entity<T: for<'de> serde::Deserialize<'de> + xml::Document>(
        &self,
        path: &[&str],
    ) -> Result<Option<T>, EmError> {
        match self.entities(path).await {
            Ok(entity) => Ok(Some(entity)),
            Err(e) if e.is_not_found() => Ok(None),
            Err(e) => Err(e),
        }
    }

    async fn read<T: for<'de> serde::Deserialize<'de> + xml::Document>(
        &self,
        via: Via<'_>,
        url: Url,
    ) -> Result<T, EmError> {
        let (_, status, text) = self.call(via, Method::GET, url, None).await?;
        if !status.is_success() {
            return Err(refusal(status, &text));
        }
        xml::from_xml(&text).map_err(|e| EmError::BadAnswer(e.to_string()))
    }

    // -----------------------------------------------------------------------------------------
    // Cloud Connect tenants, their storage quotas and backup repositories (em-api.md §16).
    // Writes answer 202 with a Task, as the gateway writes do. The tenant reads themselves are
    // `cloud_tenants` and `cloud_tenant` above.
    // -----------------------------------------------------------------------------------------

    /// `POST /cloud/tenants`; the finished task's `Related` link names the new tenant.
    pub async fn create_cloud_tenant(
        &self,
        spec: &xml::CreateCloudTenantSpec,
    ) -> Result<Submitted, EmError> {
        self.submit(Method::POST, &["cloud", "tenants"], Some(body(spec)?))
            .await
    }

    /// `PUT /cloud/tenants/{id}`: changes what the edit holds, keeps the rest.
    pub async fn edit_cloud_tenant(
        &self,
        id: Uuid,
        edit: &xml::CloudTenantEdit,
    ) -> Result<Submitted, EmError> {
        let id = id.to_string();
        self.submit(Method::PUT, &["cloud", "tenants", &id], Some(body(edit)?))
            .await
    }

    /// `DELETE /cloud/tenants/{id}`. Without `include_backups` the tenant's backups stay on the
    /// repositories (EM's default: the parameter is then left out).
    pub async fn delete_cloud_tenant(
        &self,
        id: Uuid,
        include_backups: bool,
    ) -> Result<Submitted, EmError> {
        let id = id.to_string();
        let query: &[(&str, &str)] = if include_backups {
            &[("includeBackups", "true")]
        } else {
            &[]
        };
        let url = self.url(&["cloud", "tenants", &id], query);
        self.submit_to(Method::DELETE, url, None).await
    }

    /// `POST /cloud/tenants/{id}/resources`: a new storage quota; the finished task's `Related`
    /// link names it.
    pub async fn create_cloud_tenant_resource(
        &self,
        tenant: Uuid,
        spec: &xml::CreateCloudTenantResourceSpec,
    ) -> Result<Submitted, EmError> {
        let tenant = tenant.to_string();
        let body = xml::to_xml_resource_spec(spec)
            .map_err(|e| EmError::BadAnswer(format!("cannot write the EM request: {e}")))?;
        self.submit(
            Method::POST,
            &["cloud", "tenants", &tenant, "resources"],
            Some(body),
        )
        .await
    }

    /// `DELETE /cloud/tenants/{id}/resources/{rid}`: the quota goes, its backups stay.
    pub async fn delete_cloud_tenant_resource(
        &self,
        tenant: Uuid,
        resource: Uuid,
    ) -> Result<Submitted, EmError> {
        let (tenant, resource) = (tenant.to_string(), resource.to_string());
        self.submit(
            Method::DELETE,
            &["cloud", "tenants", &tenant, "resources", &resource],
            None,
        )
        .await
    }

    /// A tenant's storage quotas, with their links; `None` when there is no such tenant.
    pub async fn cloud_tenant_resources(
        &self,
        tenant: Uuid,
    ) -> Result<Option<Vec<xml::CloudTenantResource>>, EmError> {
        // Always entities: EM has no reference form of quotas, so no `?format=Entity`.
        let url = self.url(&["cloud", "tenants", &tenant.to_string(), "resources"], &[]);
        let list: Option<xml::CloudTenantResources> = found(self.read(Via::AnySession, url).await)?;
        Ok(list.map(|l| l.items))
    }

    pub async fn cloud_tenant_resource(
        &self,
        tenant: Uuid,
        resource: Uuid,
    ) -> Result<Option<xml::CloudTenantResource>, EmError> {
        let (tenant, resource) = (tenant.to_string(), resource.to_string());
        let url = self.url(&["cloud", "tenants", &tenant, "resources", &resource], &[]);
        found(self.read(Via::AnySession, url).await)
    }

    /// The repositories of every backup server (their `Up` link names the server).
    pub async fn repositories(&self) -> Result<Vec<xml::Repository>, EmError> {
        let list: xml::Repositories = self.entities(&["repositories"]).await?;
        Ok(list.items)
    }

    pub async fn repository(&self, id: Uuid) -> Result<Option<xml::Repository>, EmError> {
        self.entity(&["repositories", &id.to_string()]).await
    }

    // -----------------------------------------------------------------------------------------
    // Sessions
    // -----------------------------------------------------------------------------------------

    /// Sends a keep-alive on every session idle for `keepalive_after`, so that sessions holding
    /// tasks do not reach EM's idle expiry. Run it periodically (see [`Self::keep_alive_loop`]).
    pub async fn keep_alive(&self) {
        for (slot, session) in self.pool.idle_sessions(self.keepalive_after) {
            let url = self.url(&["logonSessions", &session.session_id], &[]);
            match self.send_with(&session, Method::GET, url, None).await {
                Ok((status, _)) if status == StatusCode::UNAUTHORIZED => {
                    tracing::warn!(slot, "EM logon session expired before its keep-alive");
                    self.pool.invalidate(slot, &session);
                }
                Ok(_) => {}
                Err(e) => tracing::warn!(slot, error = %e, "EM keep-alive failed"),
            }
        }
    }

    /// Runs [`Self::keep_alive`] forever; spawn it beside the service.
    pub async fn keep_alive_loop(self: Arc<Self>) {
        let every = (self.keepalive_after / 4).max(Duration::from_millis(50));
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            self.keep_alive().await;
        }
    }

    /// Logs every session off (on shutdown). A 401 means EM already forgot it.
    pub async fn log_off_all(&self) {
        for session in self.pool.take_all() {
            let url = self.url(&["logonSessions", &session.session_id], &[]);
            match self.send_with(&session, Method::DELETE, url, None).await {
                Ok((status, _)) if status.is_success() || status == StatusCode::UNAUTHORIZED => {}
                Ok((status, _)) => tracing::warn!(%status, "EM logoff refused"),
                Err(e) => tracing::warn!(error = %e, "EM logoff failed"),
            }
        }
    }

    /// The slot's session, logging on if it has none. Logons go one at a time over the whole
    /// pool: a caller that waited while another logon failed takes that failure instead of
    /// trying again, and while the back-off runs (EM refused the credentials) nobody tries.
    async fn session_for(&self, slot: usize) -> Result<Arc<Session>, EmError> {
        if let Some(session) = self.pool.current(slot) {
            return Ok(session);
        }
        let seen = self.pool.logons_finished();
        let mut last = self.pool.logon_lock().await;
        if let Some(session) = self.pool.current(slot) {
            return Ok(session);
        }
        let before = self.pool.logon_state();
        before.check(Instant::now())?;
        if last.finished != seen
            && let Some(failure) = &last.failure
        {
            return Err(failure.clone());
        }
        let result = self.log_on().await;
        let now = Instant::now();
        let after = self
            .pool
            .record_logon(&mut last, result.as_ref().map(|_| ()), now);
        match result {
            Ok(session) => {
                let session = Arc::new(session);
                crate::telemetry::em_logon(EmLogon::Ok);
                if let LogonState::Refused { refusals, .. } = before {
                    tracing::info!(
                        slot,
                        refusals,
                        "Enterprise Manager accepted the gateway's credentials again"
                    );
                }
                tracing::info!(slot, "logged on to Enterprise Manager");
                self.pool.install(slot, session.clone());
                Ok(session)
            }
            Err(e @ EmError::LogonRefused { .. }) => {
                crate::telemetry::em_logon(EmLogon::Refused);
                let refused = after.refusal(now).unwrap_or(e);
                tracing::warn!(slot, error = %refused, "no logon until the back-off ends");
                Err(refused)
            }
            Err(e) => {
                crate::telemetry::em_logon(EmLogon::Failed);
                Err(e)
            }
        }
    }

    async fn log_on(&self) -> Result<Session, EmError> {
        let mut url = self.url(&["sessionMngr", ""], &[]);
        url.set_query(Some(&format!("v={API_VERSION}")));
        let credentials = format!("{}:{}", self.username, self.password.expose_secret());
        let basic = base64::engine::general_purpose::STANDARD.encode(credentials);
        let _permit = self.permit().await?;
        let resp = self
            .http
            .post(url)
            .header("Authorization", format!("Basic {basic}"))
            .header("Accept", XML)
            .send()
            .instrument(tracing::debug_span!("em_logon"))
            .await
            .map_err(|e| EmError::Unreachable(crate::outbound::describe(&e)))?;
        let status = resp.status();
        let token = resp
            .headers()
            .get(SESSION_HEADER)
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let location = resp
            .headers()
            .get("Location")
            .and_then(|v| v.to_str().ok())
            .map(str::to_owned);
        let text = resp
            .text()
            .await
            .map_err(|e| EmError::Unreachable(crate::outbound::describe(&e)))?;
        if status == StatusCode::UNAUTHORIZED || status == StatusCode::FORBIDDEN {
            let message = xml::from_xml::<xml::Error>(&text)
                .ok()
                .and_then(|e| e.message)
                .unwrap_or_else(|| "the user name or password is wrong".to_string());
            return Err(EmError::LogonRefused {
                status: status.as_u16(),
                message,
                // The back-off's to say (see `session_for`).
                retry_in: Duration::ZERO,
            });
        }
        if !status.is_success() {
            return Err(refusal(status, &text));
        }
        let token = token.ok_or_else(|| {
            EmError::BadAnswer(format!(
                "the logon answered {status} without an {SESSION_HEADER} header; is EMGW_EM_URL EM's REST API?"
            ))
        })?;
        let session_id = match xml::from_xml::<xml::LogonSession>(&text) {
            Ok(body) => body.session_id,
            Err(_) => location
                .as_deref()
                .map(|l| xml::id_of(l).to_string())
                .filter(|id| !id.is_empty())
                .ok_or_else(|| EmError::BadAnswer("the logon answer has no SessionId".into()))?,
        };
        Ok(Session::new(
            SecretString::from(token),
            session_id,
            self.pool.now_ms(),
        ))
    }

    /// Sends one call through a session, handling a lost session as described on the module;
    /// the answer as text.
    async fn call(
        &self,
        via: Via<'_>,
        method: Method,
        url: Url,
        body: Option<String>,
    ) -> Result<(SessionRef, StatusCode, String), EmError> {
        let (session, status, answer) = self
            .call_reading(via, method, url, body, &|resp: reqwest::Response| {
                resp.text()
            })
            .await?;
        Ok((session, status, answer.into_text()))
    }

    /// [`Self::call`], with a success's body read by `read` (the rest as text, for
    /// [`refusal`]).
    async fn call_reading<T, F, Fut>(
        &self,
        via: Via<'_>,
        method: Method,
        url: Url,
        body: Option<String>,
        read: &F,
    ) -> Result<(SessionRef, StatusCode, Body<T>), EmError>
    where
        F: Fn(reqwest::Response) -> Fut,
        Fut: Future<Output = Result<T, reqwest::Error>>,
    {
        let slot = match via {
            Via::AnySession => self.pool.next_slot(),
            Via::Session(r) => r.slot,
        };
        let span = tracing::info_span!("em_call", %method, path = %url.path(), slot);
        let operation = crate::telemetry::em_operation(method.as_str(), url.path());
        let started = std::time::Instant::now();
        let result = async {
            let mut session = self.pinned_or_any(via, slot).await?;
            for attempt in 0..2 {
                let (status, answer) = self
                    .exchange(&session, method.clone(), url.clone(), body.clone(), read)
                    .await?;
                if status != StatusCode::UNAUTHORIZED {
                    tracing::debug!(%status, "EM answered");
                    let session_ref = SessionRef {
                        slot,
                        session_id: session.session_id.clone(),
                    };
                    return Ok((session_ref, status, answer));
                }
                self.pool.invalidate(slot, &session);
                tracing::info!(attempt, "EM logon session expired");
                match via {
                    Via::Session(_) => return Err(EmError::SessionLost),
                    Via::AnySession if attempt == 0 => session = self.session_for(slot).await?,
                    Via::AnySession => return Err(refusal(status, answer.failure_text())),
                }
            }
            Err(EmError::SessionLost)
        }
        .instrument(span)
        .await;
        let outcome = match &result {
            Ok((_, status, _)) if status.is_success() => "ok".to_string(),
            Ok((_, status, _)) => format!("http_{}", status.as_u16()),
            Err(e) => e.kind().to_string(),
        };
        crate::telemetry::em_call(&operation, &outcome, started.elapsed());
        result
    }

    async fn pinned_or_any(&self, via: Via<'_>, slot: usize) -> Result<Arc<Session>, EmError> {
        match via {
            Via::AnySession => self.session_for(slot).await,
            Via::Session(r) => match self.pool.current(r.slot) {
                Some(s) if s.session_id == r.session_id => Ok(s),
                _ => Err(EmError::SessionLost),
            },
        }
    }

    /// One HTTP exchange with one session's token, the answer as text.
    async fn send_with(
        &self,
        session: &Session,
        method: Method,
        url: Url,
        body: Option<String>,
    ) -> Result<(StatusCode, String), EmError> {
        let read = |resp: reqwest::Response| resp.text();
        let (status, answer) = self.exchange(session, method, url, body, &read).await?;
        Ok((status, answer.into_text()))
    }

    /// One HTTP exchange with one session's token: a success's body read by `read`, any other
    /// as text. A read is sent again once when the first try got no (whole) answer; a write
    /// only when the connection never opened or EM's web server did not take it in (408). The
    /// call counts as in flight until its body is read.
    async fn exchange<T, F, Fut>(
        &self,
        session: &Session,
        method: Method,
        url: Url,
        body: Option<String>,
        read: &F,
    ) -> Result<(StatusCode, Body<T>), EmError>
    where
        F: Fn(reqwest::Response) -> Fut,
        Fut: Future<Output = Result<T, reqwest::Error>>,
    {
        let idempotent = method == Method::GET;
        let mut last_error = String::new();
        for _ in 0..2 {
            let _permit = self.permit().await?;
            // Reads (GET) are what may be retried, and what may answer large.
            let client = match idempotent {
                true => self.reads.clone(),
                false => self.writer(),
            };
            let mut req = client
                .request(method.clone(), url.clone())
                .header(SESSION_HEADER, session.token.expose_secret())
                .header("Accept", XML);
            if let Some(body) = &body {
                req = req.header("Content-Type", XML).body(body.clone());
            }
            self.pool.touch(session);
            let result = match req.send().await {
                // EM's web server did not take the request in (it closes the connection with
                // this answer): nothing happened, so a write is as safe to send again as a read.
                // A 408 in EM's own words came from EM, which may have begun: EM's to explain.
                Ok(resp) if resp.status() == StatusCode::REQUEST_TIMEOUT => {
                    let status = resp.status();
                    match resp.text().await {
                        Ok(text) if em_message(&text).is_some() => {
                            Ok((status, Body::Failure(text)))
                        }
                        _ => {
                            last_error = NOT_TAKEN_IN.to_string();
                            continue;
                        }
                    }
                }
                Ok(resp) if resp.status().is_success() => {
                    let status = resp.status();
                    read(resp).await.map(|t| (status, Body::Success(t)))
                }
                Ok(resp) => {
                    let status = resp.status();
                    resp.text().await.map(|text| (status, Body::Failure(text)))
                }
                Err(e) => Err(e),
            };
            match result {
                Ok(answer) => return Ok(answer),
                Err(e) if idempotent || e.is_connect() => {
                    last_error = crate::outbound::describe(&e);
                }
                Err(e) => {
                    return Err(EmError::OutcomeUnknown {
                        method: method.to_string(),
                        path: url.path().to_string(),
                        reason: crate::outbound::describe(&e),
                    });
                }
            }
        }
        Err(EmError::Unreachable(last_error))
    }

    /// This thread's client for writes. A connection's I/O is driven by the runtime that
    /// opened it: on one pool, an HTTP worker's create often went out over a connection another
    /// worker opened, and each of its round trips woke that worker's thread as well. A client
    /// per thread keeps a write's connection on the thread that makes it.
    fn writer(&self) -> reqwest::Client {
        WRITERS.with(|writers| {
            let mut writers = writers.borrow_mut();
            if let Some((_, client)) = writers.iter().find(|(id, _)| *id == self.id) {
                return client.clone();
            }
            let Ok(client) = (self.make_writer)() else {
                return self.http.clone();
            };
            // Those of EM clients gone (tests make many) are let go, oldest first.
            if writers.len() >= WRITERS_KEPT {
                writers.remove(0);
            }
            writers.push((self.id, client.clone()));
            client
        })
    }

    async fn permit(&self) -> Result<tokio::sync::SemaphorePermit<'_>, EmError> {
        self.in_flight
            .acquire()
            .await
            .map_err(|_| EmError::Unreachable("the EM client is shutting down".into()))
    }

    fn url(&self, segments: &[&str], query: &[(&str, &str)]) -> Url {
        let mut url = self.base.clone();
        if let Ok(mut path) = url.path_segments_mut() {
            path.pop_if_empty().extend(segments);
        }
        if !query.is_empty() {
            url.query_pairs_mut().extend_pairs(query);
        }
        url
    }
}

/// A read of one object: EM's 404 means there is none.
fn found<T>(read: Result<T, EmError>) -> Result<Option<T>, EmError> {
    match read {
        Ok(value) => Ok(Some(value)),
        Err(e) if e.is_not_found() => Ok(None),
        Err(e) => Err(e),
    }
}

fn body<T: serde::Serialize>(value: &T) -> Result<String, EmError> {
    xml::to_xml(value).map_err(|e| EmError::BadAnswer(format!("cannot write the EM request: {e}")))
}

/// EM's own message, where the answer is EM's `Error` document with one.
fn em_message(text: &str) -> Option<String> {
    let parsed = xml::from_xml::<xml::Error>(text).ok()?;
    parsed
        .message
        .or(parsed.first_chance_exception_message)
        .filter(|m| !m.is_empty())
}

/// EM's error answer as a typed error, with EM's own message where it sent one.
fn refusal(status: StatusCode, text: &str) -> EmError {
    let message = em_message(text);
    // The web server in front of EM gave up waiting for the request: EM never saw it.
    if status == StatusCode::REQUEST_TIMEOUT && message.is_none() {
        return EmError::Unreachable(NOT_TAKEN_IN.to_string());
    }
    match message {
        Some(message) => {
            // EM answers 500 for a task it does not know in this session.
            if status == StatusCode::INTERNAL_SERVER_ERROR
                && message.contains("task with id")
                && message.starts_with("There is no")
            {
                let id = message
                    .split(['[', ']'])
                    .nth(1)
                    .unwrap_or_default()
                    .to_string();
                return EmError::TaskUnknown(id);
            }
            EmError::Refused {
                status: status.as_u16(),
                message,
            }
        }
        None if status.is_server_error() => EmError::Refused {
            status: status.as_u16(),
            message: format!(
                "{} (no EM error body)",
                status.canonical_reason().unwrap_or("error")
            ),
        },
        None => EmError::BadAnswer(format!("HTTP {} without an EM error body", status.as_u16())),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn client() -> EmClient {
        let url = Url::parse("http://127.0.0.1:9/api/").unwrap();
        EmClient::new(EmSettings::new(url, "u", SecretString::from("p"))).unwrap()
    }

    fn kept() -> Vec<u64> {
        WRITERS.with(|w| w.borrow().iter().map(|(id, _)| *id).collect())
    }

    #[test]
    fn a_thread_keeps_one_writer_per_em_client_and_a_bounded_few() {
        let first = client();
        first.writer();
        first.writer();
        assert_eq!(kept(), vec![first.id], "made once, then reused");
        let others: Vec<EmClient> = (0..WRITERS_KEPT).map(|_| client()).collect();
        for other in &others {
            other.writer();
        }
        let now = kept();
        assert_eq!(now.len(), WRITERS_KEPT);
        assert!(!now.contains(&first.id), "the oldest let go");
        let on_another = std::thread::scope(|s| {
            s.spawn(|| {
                first.writer();
                kept()
            })
            .join()
            .unwrap()
        });
        assert_eq!(on_another, vec![first.id], "each thread has its own");
    }

    #[test]
    fn em_error_answers_become_errors() {
        let with_body = |status: u16| {
            format!(r#"<Error Message="The tenant name is taken." StatusCode="{status}"/>"#)
        };
        let unknown_task = r#"<Error Message="There is no task with id [task-7] in this session" StatusCode="500"/>"#;
        let cases: &[(u16, String, &str)] = &[
            (400, with_body(400), "refused"),
            (400, String::new(), "bad_answer"),
            (404, with_body(404), "refused"),
            (500, with_body(500), "refused"),
            (500, unknown_task.to_string(), "task_unknown"),
            (502, String::new(), "refused"),
            (503, "<html>busy</html>".to_string(), "refused"),
            // Not taken in by EM's web server: EM is unavailable. In EM's own words: EM's.
            (408, String::new(), "unreachable"),
            (408, "<h2>Request Timeout</h2>".to_string(), "unreachable"),
            (408, with_body(408), "refused"),
        ];
        for (status, body, kind) in cases {
            let error = refusal(StatusCode::from_u16(*status).unwrap(), body);
            assert_eq!(error.kind(), *kind, "{status} {body:?}: {error:?}");
        }
        assert!(matches!(
            refusal(StatusCode::INTERNAL_SERVER_ERROR, unknown_task),
            EmError::TaskUnknown(id) if id == "task-7"
        ));
        assert!(matches!(
            refusal(StatusCode::BAD_REQUEST, &with_body(400)),
            EmError::Refused { status: 400, message } if message == "The tenant name is taken."
        ));
    }
}
