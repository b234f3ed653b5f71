//! Conversions between PostgreSQL rows and domain types, and the `db_operations_total` metric.

use contextiq_core::{ApiKey, Error, Event, OrgId, Permission, Resource, Result, Role, Session};
use sqlx::Row;
use sqlx::postgres::PgRow;

/// A row that breaks the schema's invariants.
#[derive(Debug, thiserror::Error)]
#[error("corrupt row in {table}: {detail}")]
pub(crate) struct CorruptRow {
    table: &'static str,
    detail: String,
}

pub(crate) fn corrupt(table: &'static str, detail: impl ToString) -> Error {
    Error::store(CorruptRow { table, detail: detail.to_string() })
}

/// Counts the operation in `db_operations_total` and maps a failure to a store error; a closed
/// pool (shutting down) and a server that cannot serve now are 503s, not failures.
pub(crate) fn record<T>(operation: &'static str, table: &'static str, result: sqlx::Result<T>) -> Result<T> {
    let status = if result.is_ok() { "success" } else { "error" };
    metrics::counter!("db_operations_total", "operation" => operation, "table" => table, "status" => status)
        .increment(1);
    result.map_err(|err| match err {
        sqlx::Error::PoolClosed => Error::Unavailable,
        err if is_outage(&err) => Error::outage(err),
        // A client may name the session or memory it creates: a name taken is its error.
        sqlx::Error::Database(db) if db.is_unique_violation() && operation == "insert" => match table {
            "sessions" => Error::AlreadyExists { resource: Resource::Session },
            "memories" => Error::AlreadyExists { resource: Resource::Memory },
            _ => Error::store(sqlx::Error::Database(db)),
        },
        err => Error::store(err),
    })
}

/// Whether a failure says PostgreSQL cannot serve now, not that the request was wrong: no
/// connection (I/O, TLS, a lost connection task, none to be had within the acquire timeout), or SQLSTATE class 08 (connection exception),
/// 57 (operator intervention: shutdown, crash recovery, cancelled by the admin) or 53
/// (insufficient resources: disk full, out of memory, too many connections).
pub(crate) fn is_outage(err: &sqlx::Error) -> bool {
    match err {
        sqlx::Error::Io(_) | sqlx::Error::Tls(_) | sqlx::Error::WorkerCrashed | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => {
            db.code().is_some_and(|code| ["08", "57", "53"].iter().any(|class| code.starts_with(class)))
        }
        _ => false,
    }
}

/// A column of a row, its decoding failure reported as a corrupt row of `table`.
pub(crate) fn get<'r, T>(row: &'r PgRow, table: &'static str, column: &str) -> Result<T>
where
    T: sqlx::Decode<'r, sqlx::Postgres> + sqlx::Type<sqlx::Postgres>,
{
    row.try_get(column).map_err(|err| corrupt(table, err))
}

/// A JSONB column decoded into `T`.
pub(crate) fn json<T: serde::de::DeserializeOwned>(row: &PgRow, table: &'static str, column: &str) -> Result<T> {
    let value: serde_json::Value = get(row, table, column)?;
    serde_json::from_value(value).map_err(|err| corrupt(table, err))
}

pub(crate) fn session_from_row(row: &PgRow) -> Result<Session> {
    const TABLE: &str = "sessions";
    Ok(Session {
        org_id: OrgId::new(get::<String>(row, TABLE, "org_id")?),
        id: get(row, TABLE, "id")?,
        user_id: get(row, TABLE, "user_id")?,
        agent_id: get(row, TABLE, "agent_id")?,
        scope: json(row, TABLE, "scope")?,
        state: json(row, TABLE, "state")?,
        metadata: json(row, TABLE, "metadata")?,
        created_at: get(row, TABLE, "created_at")?,
        updated_at: get(row, TABLE, "updated_at")?,
        expires_at: get(row, TABLE, "expires_at")?,
        event_count: get(row, TABLE, "event_count")?,
        token_count: get(row, TABLE, "token_count")?,
        compaction: contextiq_core::CompactionStatus {
            policy: get::<Option<serde_json::Value>>(row, TABLE, "compaction_policy")?
                .map(serde_json::from_value)
                .transpose()
                .map_err(|err| corrupt(TABLE, err))?,
            through_seq: get(row, TABLE, "compacted_through_seq")?,
            uncompacted_events: get(row, TABLE, "uncompacted_events")?,
            uncompacted_tokens: get(row, TABLE, "uncompacted_tokens")?,
        },
        parent_session_id: get(row, TABLE, "parent_session_id")?,
        forked_from: match (
            get::<Option<uuid::Uuid>>(row, TABLE, "forked_from_session_id")?,
            get::<Option<i64>>(row, TABLE, "forked_from_seq")?,
        ) {
            (Some(session_id), Some(seq)) => Some(contextiq_core::ForkOrigin { session_id, seq }),
            _ => None,
        },
        events: None,
    })
}

pub(crate) fn event_from_row(row: &PgRow) -> Result<Event> {
    const TABLE: &str = "events";
    let role: String = get(row, TABLE, "role")?;
    Ok(Event {
        id: get(row, TABLE, "id")?,
        session_id: get(row, TABLE, "session_id")?,
        seq: get(row, TABLE, "seq")?,
        author: get(row, TABLE, "author")?,
        role: Role::parse(&role).ok_or_else(|| corrupt(TABLE, format!("role {role}")))?,
        content: get(row, TABLE, "content")?,
        metadata: json(row, TABLE, "metadata")?,
        timestamp: get(row, TABLE, "timestamp")?,
        invocation_id: get(row, TABLE, "invocation_id")?,
        token_count: u32::try_from(get::<i64>(row, TABLE, "token_count")?).map_err(|err| corrupt(TABLE, err))?,
        state_delta: json(row, TABLE, "state_delta")?,
        kind: match get::<String>(row, TABLE, "kind")?.as_str() {
            "message" => contextiq_core::EventKind::Message,
            "compaction" => contextiq_core::EventKind::Compaction(json(row, TABLE, "detail")?),
            "rewind" => contextiq_core::EventKind::Rewind(json(row, TABLE, "detail")?),
            kind => return Err(corrupt(TABLE, format!("kind {kind}"))),
        },
    })
}

pub(crate) fn key_from_row(row: &PgRow) -> Result<ApiKey> {
    const TABLE: &str = "api_keys";
    let permissions: Vec<Permission> = json(row, TABLE, "permissions")?;
    let scope: Option<serde_json::Value> = get(row, TABLE, "scope")?;
    let rate: Option<i64> = get(row, TABLE, "rate_limit_per_second")?;
    Ok(ApiKey {
        id: get(row, TABLE, "id")?,
        org_id: OrgId::new(get::<String>(row, TABLE, "org_id")?),
        name: get(row, TABLE, "name")?,
        key_hash: get(row, TABLE, "key_hash")?,
        prefix: get(row, TABLE, "prefix")?,
        permissions: permissions.into_iter().collect(),
        scope: scope.map(serde_json::from_value).transpose().map_err(|err| corrupt(TABLE, err))?,
        rate_limit_per_second: rate.map(u32::try_from).transpose().map_err(|err| corrupt(TABLE, err))?,
        created_at: get(row, TABLE, "created_at")?,
        expires_at: get(row, TABLE, "expires_at")?,
        revoked_at: get(row, TABLE, "revoked_at")?,
        last_used_at: get(row, TABLE, "last_used_at")?,
        parent_id: get(row, TABLE, "parent_id")?,
    })
}
