//! API keys: only a hash of each key is stored.

use chrono::{DateTime, Utc};
use sqlx::any::AnyRow;
use sqlx::{AssertSqlSafe, Row};

use super::{Store, StoreError, id, owner, time};
use crate::clock::Timestamp;
use crate::domain::{ApiKeyId, Owner, Scope};

const COLUMNS: &str =
    "id, name, scope, owner, prefix, created_at, last_used_at, expires_at, revoked_at";

#[derive(Debug, Clone, PartialEq)]
pub struct ApiKeyRecord {
    pub id: ApiKeyId,
    pub name: String,
    pub scope: Scope,
    /// Whose tasks and subscriptions the key sees (an admin key sees everyone's).
    pub owner: Owner,
    /// The key's first characters, to recognise it in a list; never enough to use it.
    pub prefix: String,
    pub created_at: DateTime<Utc>,
    pub last_used_at: Option<DateTime<Utc>>,
    pub expires_at: Option<DateTime<Utc>>,
    pub revoked_at: Option<DateTime<Utc>>,
}

impl ApiKeyRecord {
    pub fn usable(&self, now: Timestamp) -> bool {
        self.revoked_at.is_none() && self.expires_at.is_none_or(|e| e > now.to_datetime())
    }
}

#[derive(Debug, Clone)]
pub struct NewApiKey {
    pub id: ApiKeyId,
    pub name: String,
    pub scope: Scope,
    pub owner: Owner,
    pub prefix: String,
    pub hash: String,
    pub expires_at: Option<DateTime<Utc>>,
}

fn decode(row: &AnyRow) -> Result<ApiKeyRecord, StoreError> {
    let scope: String = row.try_get("scope")?;
    Ok(ApiKeyRecord {
        id: id(
            &row.try_get::<String, _>("id")?,
            ApiKeyId::parse,
            "api key id",
        )?,
        name: row.try_get("name")?,
        scope: Scope::parse(&scope).ok_or_else(|| StoreError::Corrupt("api key scope".into()))?,
        owner: owner(&row.try_get::<String, _>("owner")?)?,
        prefix: row.try_get("prefix")?,
        created_at: time(row.try_get("created_at")?),
        last_used_at: row.try_get::<Option<i64>, _>("last_used_at")?.map(time),
        expires_at: row.try_get::<Option<i64>, _>("expires_at")?.map(time),
        revoked_at: row.try_get::<Option<i64>, _>("revoked_at")?.map(time),
    })
}

impl Store {
    pub async fn insert_api_key(
        &self,
        key: &NewApiKey,
        now: Timestamp,
    ) -> Result<ApiKeyRecord, StoreError> {
        let sql = format!(
            "INSERT INTO api_keys (id, name, scope, prefix, hash, created_at, expires_at, owner) \
             VALUES ($1, $2, $3, $4, $5, $6, $7, $8) RETURNING {COLUMNS}"
        );
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(key.id.to_string())
            .bind(key.name.as_str())
            .bind(key.scope.as_str())
            .bind(key.prefix.as_str())
            .bind(key.hash.as_str())
            .bind(now.as_millis())
            .bind(key.expires_at.map(|e| e.timestamp_millis()))
            .bind(key.owner.as_str())
            .fetch_one(&self.pool)
            .await?;
        decode(&row)
    }

    pub async fn api_key(&self, id: ApiKeyId) -> Result<Option<ApiKeyRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE id = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(id.to_string())
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    pub async fn api_key_by_hash(&self, hash: &str) -> Result<Option<ApiKeyRecord>, StoreError> {
        let sql = format!("SELECT {COLUMNS} FROM api_keys WHERE hash = $1");
        let row = sqlx::query(AssertSqlSafe(sql))
            .bind(hash)
            .fetch_optional(&self.pool)
            .await?;
        row.as_ref().map(decode).transpose()
    }

    /// Every key, or one owner's.
    pub async fn list_api_keys(
        &self,
        owner: Option<&Owner>,
    ) -> Result<Vec<ApiKeyRecord>, StoreError> {
        let sql = format!(
            "SELECT {COLUMNS} FROM api_keys WHERE ($1 IS NULL OR owner = $1) \
             ORDER BY created_at, id"
        );
        let rows = sqlx::query(AssertSqlSafe(sql))
            .bind(owner.map(Owner::as_str))
            .fetch_all(&self.pool)
            .await?;
        rows.iter().map(decode).collect()
    }

    /// `false` when there is no such key or it was already revoked.
    pub async fn revoke_api_key(&self, id: ApiKeyId, now: Timestamp) -> Result<bool, StoreError> {
        let done =
            sqlx::query("UPDATE api_keys SET revoked_at = $2 WHERE id = $1 AND revoked_at IS NULL")
                .bind(id.to_string())
                .bind(now.as_millis())
                .execute(&self.pool)
                .await?;
        Ok(done.rows_affected() == 1)
    }

    /// Admin keys that work at `now` (not revoked, not expired).
    pub async fn active_admin_keys(&self, now: Timestamp) -> Result<i64, StoreError> {
        let row = sqlx::query(
            "SELECT COUNT(*) AS n FROM api_keys WHERE scope = 'admin' AND revoked_at IS NULL \
             AND (expires_at IS NULL OR expires_at > $1)",
        )
        .bind(now.as_millis())
        .fetch_one(&self.pool)
        .await?;
        Ok(row.try_get("n")?)
    }

    /// Records use at most once a minute per key, so reads do not become writes.
    pub async fn touch_api_key(&self, id: ApiKeyId, now: Timestamp) -> Result<(), StoreError> {
        sqlx::query(
            "UPDATE api_keys SET last_used_at = $2 WHERE id = $1 \
             AND (last_used_at IS NULL OR last_used_at < $3)",
        )
        .bind(id.to_string())
        .bind(now.as_millis())
        .bind((now - std::time::Duration::from_secs(60)).as_millis())
        .execute(&self.pool)
        .await?;
        Ok(())
    }
}
