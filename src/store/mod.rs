//! Persistence: Postgres in production (several replicas), SQLite embedded (one replica).
//!
//! Both go through sqlx's `Any` driver with the same SQL: ids are text, timestamps Unix
//! milliseconds, JSON is text, so every bound value is a string or an integer that both backends
//! read the same way. The one Postgres-only clause is `FOR UPDATE SKIP LOCKED` on lease claims
//! (SQLite has a single writer and a single replica). Each backend has its own migrations folder,
//! free to diverge. The one statement that skips `Any` is the hot task read on Postgres: the
//! same SQL on a typed connection (see [`local`]).
//!
//! The store stores: it never reads the clock (every write is given its `now`), and it builds
//! no HTTP answer and no webhook payload — it keeps the bytes it is handed. What must be written
//! together is written in a [`Tx`], which the task lifecycle opens and commits.
//!
//! Secrets are sealed here, at the boundary, with the server key ([`crate::secrets`]): the
//! webhook signing secrets and the answers kept for `Idempotency-Key` are written sealed and
//! opened when read, so the rest of the code handles them in clear and the database never does.

mod batch;
mod idempotency;
mod keys;
mod local;
mod sealing;
mod sessions;
mod tasks;
mod webhooks;

use std::str::FromStr;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Once};
use std::time::Duration;

use sqlx::any::{AnyConnectOptions, AnyPoolOptions};
use sqlx::postgres::PgConnectOptions;
use sqlx::{Any, AnyConnection, AnyPool, ConnectOptions, Connection, Executor, PgConnection};

use crate::clock::Timestamp;
use crate::secrets::{Keyring, SecretError};

pub use batch::Batcher;
pub use idempotency::{Claim, IdempotencyKey, KEEP, StoredAnswer};
pub use keys::{ApiKeyRecord, NewApiKey};
pub use sealing::Resealed;
pub use sessions::{OrphanRules, SessionRow, UnsentLook, dead_sessions, replica_gone_lately};
pub use tasks::{EmAttach, InFlight, NewTask, Settlement, TaskFilter, TaskRecord};
pub use webhooks::{
    AttemptRecord, AttemptResult, DeliveryJob, DeliveryLease, DeliveryRecord, NewEvent, NewWebhook,
    Recorded, RecordedAttempt, WebhookRecord,
};

/// A pooled connection idle this long is checked before use.
const PING_IDLE_AFTER: Duration = Duration::from_secs(10);

/// Connections kept by the threads that use them, beside the pools (see [`local`]). The HTTP
/// workers' typed ones, for task reads:
const LOCAL_READ_CONNECTIONS: usize = 8;
/// The HTTP workers' `Any` ones: Idempotency-Key claims and kept answers, and task reads when
/// every typed one is in use.
const LOCAL_API_CONNECTIONS: usize = 8;
/// The intents' writers, the attach's one, and one to spare.
const LOCAL_WRITE_CONNECTIONS: usize = INTENT_WRITERS + 2;

/// Intent transactions under way at once, on Postgres (SQLite writes one transaction at a time
/// anyway). The attach a request waits for has one writer: only requests with an
/// Idempotency-Key or through a new session wait for it.
const INTENT_WRITERS: usize = 2;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Backend {
    Postgres,
    Sqlite,
}

/// The store failed; never carries connection secrets.
#[derive(Debug, Clone, thiserror::Error)]
pub enum StoreError {
    #[error("the database is unavailable: {0}")]
    Unavailable(String),
    #[error("DATABASE_URL must start with postgres:// or sqlite://")]
    UnsupportedUrl,
    #[error("database migration failed: {0}")]
    Migration(String),
    #[error("a stored row is unreadable: {0}")]
    Corrupt(String),
    /// A sealed value does not open (another server key, or damaged).
    #[error("{0}")]
    Sealed(SecretError),
    #[error("no server key: EMGW_SECRET_KEY is needed to store or read secrets")]
    NoServerKey,
}

impl From<SecretError> for StoreError {
    fn from(e: SecretError) -> Self {
        StoreError::Sealed(e)
    }
}

impl From<sqlx::Error> for StoreError {
    fn from(e: sqlx::Error) -> Self {
        match e {
            sqlx::Error::ColumnDecode { .. }
            | sqlx::Error::ColumnNotFound(_)
            | sqlx::Error::Decode(_) => StoreError::Corrupt(e.to_string()),
            other => StoreError::Unavailable(redact(&other.to_string())),
        }
    }
}

/// Database errors can quote the URL; keep any password out.
/// A connection's options from its URL, without statement logging; what is wrong with the URL
/// is told without its password.
fn connect_options<O>(url: &str) -> Result<O, StoreError>
where
    O: ConnectOptions + FromStr<Err = sqlx::Error>,
{
    Ok(O::from_str(url)
        .map_err(|e| StoreError::Unavailable(redact(&e.to_string())))?
        .disable_statement_logging())
}

fn redact(text: &str) -> String {
    match (text.find("://"), text.find('@')) {
        (Some(scheme), Some(at)) if at > scheme => {
            format!("{}://…{}", &text[..scheme], &text[at..])
        }
        _ => text.to_string(),
    }
}

/// The URL the Postgres driver is given. Without an `sslmode`, sqlx (like libpq) tries TLS
/// first; to this machine's own loopback that encrypts what never leaves the host, and costs
/// every query a TLS record on each side. So a loopback host without an `sslmode` gets
/// `sslmode=disable`; any `sslmode` written in the URL is kept as written.
fn postgres_url(url: &str) -> String {
    let Ok(parsed) = url::Url::parse(url) else {
        return url.to_string();
    };
    let chooses_tls = parsed.query_pairs().any(|(k, _)| k == "sslmode");
    let loopback = match parsed.host() {
        // Hosts of `postgres:` URLs (not a special scheme) come as names, addresses included.
        Some(url::Host::Domain(name)) => {
            name.eq_ignore_ascii_case("localhost")
                || name
                    .parse::<std::net::IpAddr>()
                    .is_ok_and(|ip| ip.is_loopback())
        }
        Some(url::Host::Ipv4(ip)) => ip.is_loopback(),
        Some(url::Host::Ipv6(ip)) => ip.is_loopback(),
        None => false,
    };
    if chooses_tls || !loopback {
        return url.to_string();
    }
    let sep = if parsed.query().is_some() { '&' } else { '?' };
    match url.split_once('#') {
        Some((before, fragment)) => format!("{before}{sep}sslmode=disable#{fragment}"),
        None => format!("{url}{sep}sslmode=disable"),
    }
}

#[derive(Debug, Clone)]
pub struct Store {
    pool: AnyPool,
    backend: Backend,
    /// Seals and opens secrets; `None` for the commands that touch none (`migrate`, `keys`).
    keys: Option<Arc<Keyring>>,
    /// Running-task rows the poller's queries returned: what a test checks to know a tick did
    /// not read every running task.
    task_rows: Arc<AtomicU64>,
    /// Connections the threads using them keep (Postgres; see [`local`]).
    local: Option<Arc<local::Local<AnyConnection>>>,
    /// Typed ones for the API's task reads (Postgres).
    reads: Option<Arc<local::Local<PgConnection>>>,
}

/// Who a pool serves, which sets how many connections it may hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PoolFor {
    /// The HTTP API (and the commands).
    Api,
    /// The poller, the deliverer and the hand-over at shutdown: work that outlives the HTTP
    /// server's worker threads (see [`crate::startup`]).
    Background,
    /// A create's group-committed writes (its intent, EM's task id), written on the thread of
    /// the request that started each writer, over that thread's connections.
    Writes,
}

impl Store {
    /// A pool for the HTTP API.
    pub async fn connect(url: &str) -> Result<Self, StoreError> {
        Self::connect_for(url, PoolFor::Api).await
    }

    pub async fn connect_for(url: &str, role: PoolFor) -> Result<Self, StoreError> {
        static DRIVERS: Once = Once::new();
        DRIVERS.call_once(sqlx::any::install_default_drivers);
        let (backend, url) = if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            (Backend::Postgres, postgres_url(url))
        } else if url.starts_with("sqlite:") {
            // Create the file on first use.
            let sep = if url.contains('?') { '&' } else { '?' };
            let url = if url.contains("mode=") {
                url.to_string()
            } else {
                format!("{url}{sep}mode=rwc")
            };
            (Backend::Sqlite, url)
        } else {
            return Err(StoreError::UnsupportedUrl);
        };
        let options = connect_options::<AnyConnectOptions>(&url)?;
        let local = match (backend, role) {
            (Backend::Postgres, PoolFor::Api) => Some(LOCAL_API_CONNECTIONS),
            (Backend::Postgres, PoolFor::Writes) => Some(LOCAL_WRITE_CONNECTIONS),
            _ => None,
        }
        .map(|limit| Arc::new(local::Local::new(options.clone(), limit)));
        let reads = match (backend, role) {
            (Backend::Postgres, PoolFor::Api) => Some(Arc::new(local::Local::new(
                connect_options::<PgConnectOptions>(&url)?,
                LOCAL_READ_CONNECTIONS,
            ))),
            _ => None,
        };
        let pool = AnyPoolOptions::new()
            .max_connections(match (backend, role) {
                // The rest of the API's statements, and its reads and claims when the kept
                // connections are all in use: 8, so that a replica's 24 for the API are as many
                // as before the typed reads were kept apart (README, Deploying: 42 in all).
                (Backend::Postgres, PoolFor::Api) => 8,
                // The poller's settles at once, its heartbeat, the deliverer's claims and records.
                (Backend::Postgres, PoolFor::Background) => 8,
                // The intents' writers and the attach's one at once (and room to reconnect).
                (Backend::Postgres, PoolFor::Writes) => INTENT_WRITERS as u32 + 4,
                (Backend::Sqlite, _) => 4,
            })
            .acquire_timeout(Duration::from_secs(5))
            // sqlx pings every connection it hands out: a round trip before each query, a
            // third of a task read's. Only one idle for a while may have been cut off (a
            // database restart, a firewall); a busy one that was is closed by its failed query.
            .test_before_acquire(false)
            .before_acquire(|conn, meta| {
                Box::pin(async move {
                    if meta.idle_for >= PING_IDLE_AFTER {
                        conn.ping().await?;
                    }
                    Ok(true)
                })
            })
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    if backend == Backend::Sqlite {
                        // WAL lets readers run beside the writer; the busy timeout queues writers.
                        conn.execute("PRAGMA journal_mode = WAL").await?;
                        conn.execute("PRAGMA busy_timeout = 5000").await?;
                        conn.execute("PRAGMA synchronous = NORMAL").await?;
                        conn.execute("PRAGMA foreign_keys = ON").await?;
                    }
                    Ok(())
                })
            })
            .connect_with(options)
            .await?;
        Ok(Store {
            pool,
            backend,
            keys: None,
            task_rows: Arc::default(),
            local,
            reads,
        })
    }

    /// The store, sealing secrets with `keys`.
    pub fn sealing_with(mut self, keys: Keyring) -> Self {
        self.keys = Some(Arc::new(keys));
        self
    }

    fn keys(&self) -> Result<&Keyring, StoreError> {
        self.keys.as_deref().ok_or(StoreError::NoServerKey)
    }

    pub fn backend(&self) -> Backend {
        self.backend
    }

    /// How many intent transactions go at once.
    pub fn intent_writers(&self) -> usize {
        match self.backend {
            Backend::Postgres => INTENT_WRITERS,
            Backend::Sqlite => 1,
        }
    }

    /// A connection for a statement or a few, to [`local::Held::give_back`] once they ran to
    /// their end: one this thread keeps (Postgres, see [`local`]), else the pool's.
    async fn connection(&self) -> Result<local::Held, StoreError> {
        self.held(true).await
    }

    /// As [`Store::connection`], but never one kept idle: for a read tried again after a kept
    /// connection failed it.
    async fn new_connection(&self) -> Result<local::Held, StoreError> {
        self.held(false).await
    }

    async fn held(&self, reuse: bool) -> Result<local::Held, StoreError> {
        if let Some(local) = &self.local
            && let Some(held) = local.acquire(reuse).await?
        {
            return Ok(local::Held::Local(held));
        }
        Ok(local::Held::Pooled(self.pool.acquire().await?))
    }

    /// How many running-task rows the poller's queries (its resync, orphan claims, counts) have
    /// returned so far.
    pub fn task_rows_read(&self) -> u64 {
        self.task_rows.load(Ordering::Relaxed)
    }

    fn count_task_rows(&self, n: usize) {
        let n = u64::try_from(n).unwrap_or(u64::MAX);
        self.task_rows.fetch_add(n, Ordering::Relaxed);
        crate::telemetry::running_task_rows_read(n);
    }

    pub async fn migrate(&self) -> Result<(), StoreError> {
        let result = match self.backend {
            Backend::Postgres => {
                sqlx::migrate!("./migrations/postgres")
                    .run(&self.pool)
                    .await
            }
            Backend::Sqlite => sqlx::migrate!("./migrations/sqlite").run(&self.pool).await,
        };
        result.map_err(|e| StoreError::Migration(e.to_string()))
    }

    pub async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await?;
        Ok(())
    }

    /// Opens a unit of work.
    pub async fn begin(&self) -> Result<Tx, StoreError> {
        Ok(Tx {
            tx: self.pool.begin().await?,
            backend: self.backend,
            keys: self.keys.clone(),
        })
    }

    pub async fn close(&self) {
        self.pool.close().await;
    }
}

/// `($1, $2), ($3, $4)` for `rows` rows of `width` values, numbered after the first `skip`
/// parameters: multi-row statements bind only placeholders, never formatted values.
pub(crate) fn placeholders(rows: usize, width: usize, skip: usize) -> String {
    // One string written in place: while 100,000 tasks finish, a string per parameter joined
    // into rows cost 5 % of the gateway's CPU.
    let mut text = String::with_capacity(rows * width * 7);
    for r in 0..rows {
        if r > 0 {
            text.push_str(", ");
        }
        text.push('(');
        push_parameters(&mut text, width, skip + r * width);
        text.push(')');
    }
    text
}

/// `$3, $4` for `count` parameters after the first `skip`: an `IN (…)` list.
pub(crate) fn parameters(count: usize, skip: usize) -> String {
    let mut text = String::with_capacity(count * 6);
    push_parameters(&mut text, count, skip);
    text
}

fn push_parameters(text: &mut String, count: usize, skip: usize) {
    use std::fmt::Write as _;
    for n in skip + 1..=skip + count {
        if n > skip + 1 {
            text.push_str(", ");
        }
        // Writing to a String cannot fail.
        let _ = write!(text, "${n}");
    }
}

/// A statement whose SQL text varies with its row count. sqlx keeps every distinct text it
/// runs prepared on that connection (up to 100 per connection), so batches of every size from 1
/// to 200 filled every connection's cache (heaptrack counted ~16 MB of statements at 45,000
/// tasks in flight). Only the counts that recur under load stay prepared: powers of two and a
/// full chunk; any other count is prepared unnamed each time (on Postgres, one more round trip).
pub(crate) fn sized_query(
    sql: String,
    rows: usize,
    full: usize,
) -> sqlx::query::Query<'static, Any, sqlx::any::AnyArguments> {
    sqlx::query(sqlx::AssertSqlSafe(sql)).persistent(keep_prepared(rows, full))
}

fn keep_prepared(rows: usize, full: usize) -> bool {
    rows.is_power_of_two() || rows == full
}

/// Writes that belong together, committed at once or not at all.
pub struct Tx {
    tx: sqlx::Transaction<'static, Any>,
    backend: Backend,
    keys: Option<Arc<Keyring>>,
}

impl Tx {
    fn keys(&self) -> Result<&Keyring, StoreError> {
        self.keys.as_deref().ok_or(StoreError::NoServerKey)
    }

    /// Lets a Postgres transaction commit without waiting for the disk. Only for writes whose
    /// loss in a database crash is recovered by design (see the callers).
    pub async fn relax_durability(&mut self) -> Result<(), StoreError> {
        if self.backend == Backend::Postgres {
            sqlx::query("SET LOCAL synchronous_commit = off")
                .execute(&mut *self.tx)
                .await?;
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        self.tx.commit().await?;
        Ok(())
    }
}

/// A stored time, read back.
pub(crate) fn time(ms: i64) -> chrono::DateTime<chrono::Utc> {
    Timestamp::from_millis(ms).to_datetime()
}

/// A stored owner, read back.
pub(crate) fn owner(text: &str) -> Result<crate::domain::Owner, StoreError> {
    crate::domain::Owner::parse(text).map_err(|_| StoreError::Corrupt(format!("owner {text:?}")))
}

/// A stored id, read back: a row with one that does not parse is corrupt.
pub(crate) fn id<T>(
    text: &str,
    parse: impl Fn(&str) -> Option<T>,
    what: &str,
) -> Result<T, StoreError> {
    parse(text).ok_or_else(|| StoreError::Corrupt(format!("{what} {text:?}")))
}

#[cfg(test)]
mod tests {
    #[test]
    fn placeholders_number_rows_after_the_fixed_parameters() {
        assert_eq!(super::placeholders(2, 3, 1), "($2, $3, $4), ($5, $6, $7)");
        assert_eq!(super::placeholders(1, 1, 0), "($1)");
        assert_eq!(super::parameters(2, 2), "$3, $4");
        assert_eq!(super::parameters(1, 9), "$10");
        assert_eq!(super::parameters(0, 3), "");
        assert_eq!(super::placeholders(0, 3, 0), "");
        let many = super::placeholders(200, 13, 0);
        assert!(many.starts_with("($1, $2, ") && many.ends_with("$2599, $2600)"));
        assert_eq!(many.matches('(').count(), 200);
    }

    #[test]
    fn only_recurring_batch_sizes_stay_prepared() {
        // (rows, full chunk, kept prepared)
        let table = [
            (1, 200, true),
            (2, 200, true),
            (64, 200, true),
            (128, 200, true),
            (200, 200, true),
            (3, 200, false),
            (63, 200, false),
            (199, 200, false),
            (100, 100, true),
        ];
        for (rows, full, kept) in table {
            assert_eq!(super::keep_prepared(rows, full), kept, "{rows} of {full}");
        }
    }

    #[test]
    fn passwords_are_redacted_from_errors() {
        let text = super::redact("error connecting to postgres://emgw:hunter2@db:5432/emgw");
        assert!(!text.contains("hunter2"), "{text}");
        assert!(text.contains("@db:5432"));
    }

    #[test]
    fn loopback_postgres_without_an_sslmode_goes_without_tls() {
        let cases = [
            // Loopback, no sslmode: TLS off.
            (
                "postgres://u@127.0.0.1:5432/db",
                "postgres://u@127.0.0.1:5432/db?sslmode=disable",
            ),
            (
                "postgres://u@localhost/db",
                "postgres://u@localhost/db?sslmode=disable",
            ),
            (
                "postgresql://u@[::1]/db?application_name=x",
                "postgresql://u@[::1]/db?application_name=x&sslmode=disable",
            ),
            (
                "postgres://u@127.8.9.1/db",
                "postgres://u@127.8.9.1/db?sslmode=disable",
            ),
            // What the URL says is kept.
            (
                "postgres://u@127.0.0.1/db?sslmode=require",
                "postgres://u@127.0.0.1/db?sslmode=require",
            ),
            (
                "postgres://u@localhost/db?sslmode=prefer",
                "postgres://u@localhost/db?sslmode=prefer",
            ),
            // Another host: sqlx's default (TLS when offered).
            ("postgres://u@db.internal/db", "postgres://u@db.internal/db"),
            ("postgres://u@10.0.0.5/db", "postgres://u@10.0.0.5/db"),
            (
                "postgres://u@localhost.example.com/db",
                "postgres://u@localhost.example.com/db",
            ),
            // A Unix socket named in the query: no host to judge.
            (
                "postgres:///db?host=/run/postgresql",
                "postgres:///db?host=/run/postgresql",
            ),
        ];
        for (given, expected) in cases {
            assert_eq!(super::postgres_url(given), expected, "{given}");
        }
    }
}
