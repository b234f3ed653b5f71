//! `KeyStore` on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::{ApiKey, Error, KeyStore, OrgId, Result};
use uuid::Uuid;

use crate::rows::{key_from_row, record};
use crate::{PostgresStore, applied_at};

#[async_trait]
impl KeyStore for PostgresStore {
    async fn create_key(&self, key: ApiKey) -> Result<ApiKey> {
        let result = sqlx::query(concat!(
            "INSERT INTO api_keys (id, org_id, name, key_hash, prefix, permissions, scope, ",
            "rate_limit_per_second, created_at, expires_at) VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)"
        ))
        .bind(key.id)
        .bind(key.org_id.as_str())
        .bind(key.name.as_str())
        .bind(key.key_hash.as_str())
        .bind(key.prefix.as_str())
        .bind(sqlx::types::Json(&key.permissions))
        .bind(key.scope.as_ref().map(sqlx::types::Json))
        .bind(key.rate_limit_per_second.map(i64::from))
        .bind(key.created_at)
        .bind(key.expires_at)
        .execute(&self.pool)
        .await;
        record("insert", "api_keys", result)?;
        Ok(key)
    }

    async fn find_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        let row =
            sqlx::query("SELECT * FROM api_keys WHERE key_hash = $1").bind(key_hash).fetch_optional(&self.pool).await;
        record("select", "api_keys", row)?.as_ref().map(key_from_row).transpose()
    }

    async fn list_keys(&self, org: Option<&OrgId>) -> Result<Vec<ApiKey>> {
        let rows = sqlx::query(
            "SELECT * FROM api_keys WHERE ($1::text IS NULL OR org_id = $1) ORDER BY created_at DESC, id DESC",
        )
        .bind(org.map(OrgId::as_str))
        .fetch_all(&self.pool)
        .await;
        record("select", "api_keys", rows)?.iter().map(key_from_row).collect()
    }

    async fn get_key(&self, org: Option<&OrgId>, id: Uuid) -> Result<ApiKey> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = $1 AND ($2::text IS NULL OR org_id = $2)")
            .bind(id)
            .bind(org.map(OrgId::as_str))
            .fetch_optional(&self.pool)
            .await;
        record("select", "api_keys", row)?.as_ref().map(key_from_row).transpose()?.ok_or_else(Error::key_not_found)
    }

    async fn revoke_key(&self, org: Option<&OrgId>, id: Uuid, now: DateTime<Utc>) -> Result<ApiKey> {
        let row = sqlx::query(concat!(
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, $1) ",
            "WHERE id = $2 AND ($3::text IS NULL OR org_id = $3) RETURNING *"
        ))
        .bind(applied_at(now))
        .bind(id)
        .bind(org.map(OrgId::as_str))
        .fetch_optional(&self.pool)
        .await;
        record("update", "api_keys", row)?.as_ref().map(key_from_row).transpose()?.ok_or_else(Error::key_not_found)
    }

    async fn touch_key(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        let result = sqlx::query("UPDATE api_keys SET last_used_at = $1 WHERE id = $2")
            .bind(now)
            .bind(id)
            .execute(&self.pool)
            .await;
        record("update", "api_keys", result).map(|_| ())
    }

    async fn count_keys(&self) -> Result<u64> {
        let count: sqlx::Result<(i64,)> = sqlx::query_as("SELECT count(*) FROM api_keys").fetch_one(&self.pool).await;
        Ok(record("select", "api_keys", count)?.0.max(0) as u64)
    }
}
