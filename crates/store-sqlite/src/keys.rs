//! `KeyStore` on SQLite: reads from the pool, writes through the writer.

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::{ApiKey, Error, KeyStore, OrgId, Result};
use uuid::Uuid;

use crate::SqliteStore;
use crate::rows::{count, key_from_row, micros, record};
use crate::writer::{Completion, KeyWrite, WriteOp, Writer, applied_at, complete, json_text};

#[async_trait]
impl KeyStore for SqliteStore {
    async fn create_key(&self, key: ApiKey) -> Result<ApiKey> {
        self.submit(|reply| WriteOp::Key(KeyWrite::Create { key: Box::new(key), reply })).await
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
        self.submit(|reply| WriteOp::Key(KeyWrite::Revoke { org, id, now, reply })).await
    }

    async fn touch_key(&self, id: Uuid, now: DateTime<Utc>) -> Result<()> {
        self.submit(|reply| WriteOp::Key(KeyWrite::Touch { id, now, reply })).await
    }

    async fn count_keys(&self) -> Result<u64> {
        let count: sqlx::Result<(i64,)> =
            sqlx::query_as("SELECT count(*) FROM api_keys").fetch_one(&self.readers).await;
        Ok(record("select", "api_keys", count)?.0.max(0) as u64)
    }
}

impl Writer {
    pub(crate) async fn apply_key_write(&mut self, write: KeyWrite) -> sqlx::Result<Completion> {
        Ok(match write {
            KeyWrite::Create { key, reply } => complete(reply, self.create_key(*key).await?),
            KeyWrite::Revoke { org, id, now, reply } => {
                complete(reply, self.revoke_key(org.as_ref(), id, applied_at(now)).await?)
            }
            KeyWrite::Touch { id, now, reply } => {
                let result = sqlx::query("UPDATE api_keys SET last_used_at = ? WHERE id = ?")
                    .bind(micros(now))
                    .bind(id.to_string())
                    .execute(&mut self.conn)
                    .await;
                count("update", "api_keys", result)?;
                complete(reply, Ok(()))
            }
        })
    }

    async fn create_key(&mut self, key: ApiKey) -> sqlx::Result<Result<ApiKey>> {
        // The parent's revocation goes through this same writer, so the check and the insert
        // cannot interleave with it.
        if let Some(parent_id) = key.parent_id {
            let parent: sqlx::Result<Option<(Option<i64>,)>> =
                sqlx::query_as("SELECT revoked_at FROM api_keys WHERE id = ?")
                    .bind(parent_id.to_string())
                    .fetch_optional(&mut self.conn)
                    .await;
            if !matches!(count("select", "api_keys", parent)?, Some((None,))) {
                return Ok(Err(Error::Forbidden("the key minting a key has been revoked".to_owned())));
            }
        }
        let result = sqlx::query(concat!(
            "INSERT INTO api_keys (id, org_id, name, key_hash, prefix, permissions, scope, ",
            "rate_limit_per_second, created_at, expires_at, parent_id) VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)"
        ))
        .bind(key.id.to_string())
        .bind(key.org_id.as_str())
        .bind(key.name.as_str())
        .bind(key.key_hash.as_str())
        .bind(key.prefix.as_str())
        .bind(json_text(&key.permissions)?)
        .bind(key.scope.as_ref().map(json_text).transpose()?)
        .bind(key.rate_limit_per_second.map(i64::from))
        .bind(micros(key.created_at))
        .bind(key.expires_at.map(micros))
        .bind(key.parent_id.map(|id| id.to_string()))
        .execute(&mut self.conn)
        .await;
        count("insert", "api_keys", result)?;
        Ok(Ok(key))
    }

    async fn revoke_key(
        &mut self,
        org: Option<&OrgId>,
        id: Uuid,
        now: DateTime<Utc>,
    ) -> sqlx::Result<Result<Vec<ApiKey>>> {
        let result = sqlx::query(concat!(
            "WITH RECURSIVE minted (id) AS (",
            "SELECT id FROM api_keys WHERE id = ?2 AND (?3 IS NULL OR org_id = ?3) ",
            "UNION SELECT child.id FROM api_keys AS child JOIN minted ON child.parent_id = minted.id) ",
            "UPDATE api_keys SET revoked_at = COALESCE(revoked_at, ?1) ",
            "WHERE id IN (SELECT id FROM minted) RETURNING *"
        ))
        .bind(micros(now))
        .bind(id.to_string())
        .bind(org.map(OrgId::as_str))
        .fetch_all(&mut self.conn)
        .await;
        let revoked = count("update", "api_keys", result)?;
        Ok(revoked.iter().map(key_from_row).collect::<Result<Vec<_>>>().and_then(|mut keys| {
            keys.sort_by_key(|key| key.id != id);
            if keys.is_empty() { Err(Error::key_not_found()) } else { Ok(keys) }
        }))
    }
}
