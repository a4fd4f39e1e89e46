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
