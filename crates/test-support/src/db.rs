//! A fresh database per test: a SQLite file, or a new Postgres database.

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

/// A fresh, empty database for one test. (Postgres databases of tests are left behind; CI
/// drops the `emgw_t_` ones before it runs.)
pub async fn fresh_database(db: Db) -> String {
    match db {
        Db::Sqlite => {
            let name = format!("emgw_t_{}", uuid::Uuid::new_v4().simple());
            let path = std::env::temp_dir().join(format!("{name}.db"));
            format!("sqlite://{}", path.display())
        }
        Db::Postgres => {
            PostgresDatabase::create("emgw_t_")
                .await
                .unwrap_or_else(|e| panic!("{e}"))
                .url
        }
    }
}

/// A new Postgres database, reached over loopback without TLS (sqlx's default `prefer` would
/// encrypt same-host traffic for nothing).
pub struct PostgresDatabase {
    pub name: String,
    pub url: String,
}

impl PostgresDatabase {
    pub async fn create(prefix: &str) -> Result<Self, String> {
        let admin = postgres_admin_url();
        let name = format!("{prefix}{}", uuid::Uuid::new_v4().simple());
        let mut conn = sqlx::PgConnection::connect(&admin).await.map_err(|e| {
            format!(
                "PostgreSQL is needed: set EMGW_TEST_POSTGRES_URL to a superuser URL such as \
                 postgres://postgres@127.0.0.1:5432/postgres (tried {admin}): {e}"
            )
        })?;
        conn.execute(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
            .await
            .map_err(|e| format!("CREATE DATABASE {name}: {e}"))?;
        let (base, _) = admin
            .rsplit_once('/')
            .ok_or("EMGW_TEST_POSTGRES_URL names no database")?;
        let sep = if base.contains('?') { '&' } else { '?' };
        let url = format!("{base}/{name}{sep}sslmode=disable");
        Ok(PostgresDatabase { name, url })
    }

    /// The server processes of the clients connected to it (not autovacuum, not the
    /// server's own background work).
    pub async fn client_backends(&self) -> Result<Vec<u32>, String> {
        let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .map_err(|e| e.to_string())?;
        let pids: Vec<(i32,)> = sqlx::query_as(
            "SELECT pid FROM pg_stat_activity \
             WHERE datname = $1 AND backend_type = 'client backend' AND pid <> pg_backend_pid()",
        )
        .bind(&self.name)
        .fetch_all(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
        Ok(pids
            .into_iter()
            .filter_map(|(pid,)| u32::try_from(pid).ok())
            .collect())
    }

    /// PostgreSQL's counters of what was done to each of its tables (`pg_stat_user_tables`),
    /// as of the backends' last report (each reports within a second of a transaction), and
    /// of the database as a whole (`pg_stat_database`, named `*`).
    pub async fn table_activity(&self) -> Result<Vec<TableActivity>, String> {
        let mut conn = sqlx::PgConnection::connect(&self.url)
            .await
            .map_err(|e| e.to_string())?;
        type Row = (String, i64, i64, i64, i64, i64, i64, i64, i64);
        let rows: Vec<Row> = sqlx::query_as(
            "SELECT relname::text, seq_scan, seq_tup_read, coalesce(idx_scan, 0), \
                    coalesce(idx_tup_fetch, 0), n_tup_ins, n_tup_upd, n_tup_hot_upd, n_tup_del \
             FROM pg_stat_user_tables \
             UNION ALL \
             SELECT '*', xact_commit + xact_rollback, tup_returned, 0, tup_fetched, \
                    tup_inserted, tup_updated, 0, tup_deleted \
             FROM pg_stat_database WHERE datname = current_database()",
        )
        .fetch_all(&mut conn)
        .await
        .map_err(|e| e.to_string())?;
        Ok(rows
            .into_iter()
            .map(|(table, a, b, c, d, e, f, g, h)| TableActivity {
                table,
                counts: [a, b, c, d, e, f, g, h],
            })
            .collect())
    }

    /// Drops it, closing what is still connected.
    pub async fn drop(self) -> Result<(), String> {
        let mut conn = sqlx::PgConnection::connect(&postgres_admin_url())
            .await
            .map_err(|e| e.to_string())?;
        let sql = format!("DROP DATABASE IF EXISTS {} WITH (FORCE)", self.name);
        conn.execute(sqlx::AssertSqlSafe(sql))
            .await
            .map_err(|e| format!("could not drop {}: {e}", self.name))?;
        Ok(())
    }
}

/// One table's counters (see [`PostgresDatabase::table_activity`]), in the order of
/// [`TableActivity::NAMES`]. For the database (`*`): transactions, rows returned by scans, -,
/// rows fetched, inserted, updated, -, deleted.
#[derive(Debug, Clone, PartialEq)]
pub struct TableActivity {
    pub table: String,
    pub counts: [i64; 8],
}

impl TableActivity {
    pub const NAMES: [&str; 8] = [
        "seq scans",
        "rows seq-read",
        "index scans",
        "rows index-fetched",
        "inserted",
        "updated",
        "HOT-updated",
        "deleted",
    ];

    /// What each table did between `before` and `after`, the busiest (by rows read) first.
    pub fn since(after: &[TableActivity], before: &[TableActivity]) -> Vec<TableActivity> {
        let mut delta: Vec<TableActivity> = after
            .iter()
            .map(|a| {
                let b = before.iter().find(|b| b.table == a.table);
                let mut counts = a.counts;
                if let Some(b) = b {
                    for (c, was) in counts.iter_mut().zip(b.counts) {
                        *c -= was;
                    }
                }
                TableActivity {
                    table: a.table.clone(),
                    counts,
                }
            })
            .filter(|d| d.counts.iter().any(|&c| c != 0))
            .collect();
        delta.sort_by_key(|d| std::cmp::Reverse(d.counts[1] + d.counts[3]));
        delta
    }
}
