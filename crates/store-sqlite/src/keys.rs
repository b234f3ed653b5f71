//! `KeyStore` on SQLite: reads from the pool, writes through the writer.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::{ApiKey, Error, KeyStore, OrgId, Result};
use uuid::Uuid;

use crate::SqliteStore;
use crate::rows::{key_from_row, record};
use crate::writer::WriteOp;

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_key(&self, key: ApiKey) -> Result<ApiKey> {
        self.write(|reply| WriteOp::CreateKey { key, reply }).await
    }

    async fn find_key_by_hash(&self, key_hash: &str) -> Result<Option<ApiKey>> {
        let row =
            sqlx::query("SELECT * FROM api_keys WHERE key_hash = ?").bind(key_hash).fetch_optional(&self.readers).await;
        record("select", "api_keys", row)?.as_ref().map(key_from_row).transpose()
    }

    async fn list_keys(&self, org: Option<&OrgId>) -> Result<Vec<ApiKey>> {
        let rows =
            sqlx::query("SELECT * FROM api_keys WHERE (?1 IS NULL OR org_id = ?1) ORDER BY created_at DESC, id DESC")
                .bind(org.map(OrgId::as_str))
                .fetch_all(&self.readers)
                .await;
        record("select", "api_keys", rows)?.iter().map(key_from_row).collect()
    }

    async fn get_key(&self, org: Option<&OrgId>, id: Uuid) -> Result<ApiKey> {
        let row = sqlx::query("SELECT * FROM api_keys WHERE id = ?1 AND (?2 IS NULL OR org_id = ?2)")
            .bind(id.to_string())
            .bind(org.map(OrgId::as_str))
            .fetch_optional(&self.readers)
            .await;
        record("select", "api_keys", row)?.as_ref().map(key_from_row).transpose()?.ok_or_else(Error::key_not_found)
    }

    async fn revoke_key(&self, org: Option<&OrgId>, id: Uuid, now: DateTime<Utc>) -> Result<Vec<ApiKey>> {
        let org = org.cloned();
        self.write(|reply| WriteOp::RevokeKey { org, id, now, reply }).await
    }

    async fn touch_key(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        self.write(|reply| WriteOp::TouchKey { id, now, reply }).await
    }

    async fn count_keys(&self) -> Result<u64> {
        let count: sqlx::Result<(i64,)> =
            sqlx::query_as("SELECT count(*) FROM api_keys").fetch_one(&self.readers).await;
        Ok(record("select", "api_keys", count)?.0.max(0) as u64)
    }
}
