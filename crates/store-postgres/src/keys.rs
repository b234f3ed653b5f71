//! `KeyStore` on PostgreSQL.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::{ApiKey, Error, KeyStore, OrgId, Result};
use uuid::Uuid;

use crate::rows::{key_from_row, record};
use crate::{PostgresStore, applied_at};

/// The ids of the key `$1` and of every key minted under it, at any depth.
macro_rules! minted {
    () => {
        concat!(
            "WITH RECURSIVE minted (id) AS (SELECT $1::uuid UNION ",
            "SELECT child.id FROM api_keys AS child JOIN minted ON child.parent_id = minted.id) SELECT id FROM minted"
        )
    };
}

#[async_trait]
impl KeyStore for PostgresStore {
    async fn create_key(&self, key: ApiKey) -> Result<ApiKey> {
        // A child is inserted only while its parent is unrevoked. FOR SHARE holds the parent's
        // revocation (an UPDATE of that row) until this insert commits, so the revocation's
        // next pass sees the child; an insert that waits on a revocation sees it afterwards.
        let result = sqlx::query(concat!(
            "INSERT INTO api_keys (id, org_id, name, key_hash, prefix, permissions, scope, ",
            "rate_limit_per_second, created_at, expires_at, parent_id) ",
            "SELECT $1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11 WHERE $11::uuid IS NULL OR EXISTS ",
            "(SELECT 1 FROM api_keys WHERE id = $11 AND revoked_at IS NULL FOR SHARE)"
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
        .bind(key.parent_id)
        .execute(&self.pool)
        .await;
        if record("insert", "api_keys", result)?.rows_affected() == 0 {
            return Err(Error::Forbidden("the key minting a key has been revoked".to_owned()));
        }
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

    async fn revoke_key(&self, org: Option<&OrgId>, id: Uuid, now: DateTime<Utc>) -> Result<Vec<ApiKey>> {
        let mut tx = record("begin", "api_keys", self.pool.begin().await)?;
        let found = sqlx::query("SELECT id FROM api_keys WHERE id = $1 AND ($2::text IS NULL OR org_id = $2)")
            .bind(id)
            .bind(org.map(OrgId::as_str))
            .fetch_optional(&mut *tx)
            .await;
        if record("select", "api_keys", found)?.is_none() {
            return Err(Error::key_not_found());
        }
        // Each pass reads the tree anew: a child committed while a pass waited on its parent's
        // row lock is revoked by the next one.
        loop {
            let result = sqlx::query(concat!(
                "UPDATE api_keys SET revoked_at = $2 WHERE revoked_at IS NULL AND id IN (",
                minted!(),
                ")"
            ))
            .bind(id)
            .bind(applied_at(now))
            .execute(&mut *tx)
            .await;
            if record("update", "api_keys", result)?.rows_affected() == 0 {
                break;
            }
        }
        let rows = sqlx::query(concat!("SELECT * FROM api_keys WHERE id IN (", minted!(), ")"))
            .bind(id)
            .fetch_all(&mut *tx)
            .await;
        let mut keys = record("select", "api_keys", rows)?.iter().map(key_from_row).collect::<Result<Vec<_>>>()?;
        record("commit", "api_keys", tx.commit().await)?;
        keys.sort_by_key(|key| key.id != id);
        Ok(keys)
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
