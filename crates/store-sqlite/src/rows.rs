//! Conversions between SQLite rows and domain types, and the `db_operations_total` metric.

use chrono::{DateTime, Utc};
use contextiq_core::{CompactionStatus, Error, Event, EventKind, ForkOrigin, OrgId, Result, Role, Session};
use serde_json::{Map, Value};
use sqlx::Row;
use sqlx::sqlite::SqliteRow;
use uuid::Uuid;

/// A row that breaks the schema's invariants: the file was changed behind our back.
#[derive(Debug, thiserror::Error)]
#[error("corrupt row in {table}: {detail}")]
pub(crate) struct CorruptRow {
    table: &'static str,
    detail: String,
}

pub(crate) fn corrupt(table: &'static str, detail: impl ToString) -> Error {
    Error::store(CorruptRow { table, detail: detail.to_string() })
}

pub(crate) fn micros(at: DateTime<Utc>) -> i64 {
    at.timestamp_micros()
}

pub(crate) fn timestamp(table: &'static str, value: i64) -> Result<DateTime<Utc>> {
    DateTime::from_timestamp_micros(value).ok_or_else(|| corrupt(table, format!("timestamp {value} out of range")))
}

/// Counts the operation in `db_operations_total`.
pub(crate) fn count<T>(operation: &'static str, table: &'static str, result: sqlx::Result<T>) -> sqlx::Result<T> {
    let status = if result.is_ok() { "success" } else { "error" };
    metrics::counter!("db_operations_total", "operation" => operation, "table" => table, "status" => status)
        .increment(1);
    result
}

/// Counts the operation and maps a failure to a store error; a closed pool (shutting down) and a
/// database that cannot serve now are 503s, not failures.
pub(crate) fn record<T>(operation: &'static str, table: &'static str, result: sqlx::Result<T>) -> Result<T> {
    count(operation, table, result).map_err(|err| match err {
        sqlx::Error::PoolClosed => Error::Unavailable,
        err if is_outage(&err) => Error::outage(err),
        err => Error::store(err),
    })
}

/// Whether a failure says SQLite cannot serve now, not that the request was wrong: the
/// database is busy or locked past the busy timeout, out of memory or disk, or unreadable
/// (I/O error, cannot open), or no connection within the acquire timeout. Primary result codes; extended codes carry them in the low byte.
pub(crate) fn is_outage(err: &sqlx::Error) -> bool {
    const BUSY: i64 = 5;
    const LOCKED: i64 = 6;
    const NOMEM: i64 = 7;
    const IOERR: i64 = 10;
    const FULL: i64 = 13;
    const CANTOPEN: i64 = 14;
    match err {
        sqlx::Error::Io(_) | sqlx::Error::WorkerCrashed | sqlx::Error::PoolTimedOut => true,
        sqlx::Error::Database(db) => db
            .code()
            .and_then(|code| code.parse::<i64>().ok())
            .is_some_and(|code| matches!(code & 0xff, BUSY | LOCKED | NOMEM | IOERR | FULL | CANTOPEN)),
        _ => false,
    }
}

fn json_object(table: &'static str, text: &str) -> Result<Map<String, Value>> {
    serde_json::from_str(text).map_err(|err| corrupt(table, err))
}

pub(crate) fn uuid(table: &'static str, text: &str) -> Result<Uuid> {
    Uuid::parse_str(text).map_err(|err| corrupt(table, err))
}

fn optional_uuid(table: &'static str, text: Option<String>) -> Result<Option<Uuid>> {
    text.map(|text| uuid(table, &text)).transpose()
}

pub(crate) fn session_from_row(row: &SqliteRow) -> Result<Session> {
    const TABLE: &str = "sessions";
    let get_text = |column: &str| row.try_get::<String, _>(column).map_err(|err| corrupt(TABLE, err));
    let get_int = |column: &str| row.try_get::<i64, _>(column).map_err(|err| corrupt(TABLE, err));
    let expires_at: Option<i64> = row.try_get("expires_at").map_err(|err| corrupt(TABLE, err))?;
    Ok(Session {
        org_id: OrgId::new(get_text("org_id")?),
        id: uuid(TABLE, &get_text("id")?)?,
        user_id: get_text("user_id")?,
        agent_id: row.try_get("agent_id").map_err(|err| corrupt(TABLE, err))?,
        scope: serde_json::from_str(&get_text("scope")?).map_err(|err| corrupt(TABLE, err))?,
        state: json_object(TABLE, &get_text("state")?)?,
        metadata: json_object(TABLE, &get_text("metadata")?)?,
        created_at: timestamp(TABLE, get_int("created_at")?)?,
        updated_at: timestamp(TABLE, get_int("updated_at")?)?,
        expires_at: expires_at.map(|at| timestamp(TABLE, at)).transpose()?,
        event_count: get_int("event_count")?,
        token_count: get_int("token_count")?,
        compaction: CompactionStatus {
            policy: row
                .try_get::<Option<String>, _>("compaction_policy")
                .map_err(|err| corrupt(TABLE, err))?
                .map(|text| serde_json::from_str(&text))
                .transpose()
                .map_err(|err| corrupt(TABLE, err))?,
            through_seq: get_int("compacted_through_seq")?,
            uncompacted_events: get_int("uncompacted_events")?,
            uncompacted_tokens: get_int("uncompacted_tokens")?,
        },
        parent_session_id: optional_uuid(TABLE, row.try_get("parent_session_id").map_err(|err| corrupt(TABLE, err))?)?,
        forked_from: match (
            optional_uuid(TABLE, row.try_get("forked_from_session_id").map_err(|err| corrupt(TABLE, err))?)?,
            row.try_get::<Option<i64>, _>("forked_from_seq").map_err(|err| corrupt(TABLE, err))?,
        ) {
            (Some(session_id), Some(seq)) => Some(ForkOrigin { session_id, seq }),
            _ => None,
        },
        events: None,
    })
}

pub(crate) fn event_from_row(row: &SqliteRow) -> Result<Event> {
    const TABLE: &str = "events";
    let get_text = |column: &str| row.try_get::<String, _>(column).map_err(|err| corrupt(TABLE, err));
    let get_int = |column: &str| row.try_get::<i64, _>(column).map_err(|err| corrupt(TABLE, err));
    let role = get_text("role")?;
    Ok(Event {
        id: uuid(TABLE, &get_text("id")?)?,
        session_id: uuid(TABLE, &get_text("session_id")?)?,
        seq: get_int("seq")?,
        author: get_text("author")?,
        role: Role::parse(&role).ok_or_else(|| corrupt(TABLE, format!("unknown role {role:?}")))?,
        content: serde_json::from_str(&get_text("content")?).map_err(|err| corrupt(TABLE, err))?,
        metadata: json_object(TABLE, &get_text("metadata")?)?,
        timestamp: timestamp(TABLE, get_int("timestamp")?)?,
        invocation_id: row.try_get("invocation_id").map_err(|err| corrupt(TABLE, err))?,
        token_count: u32::try_from(get_int("token_count")?).map_err(|err| corrupt(TABLE, err))?,
        state_delta: json_object(TABLE, &get_text("state_delta")?)?,
        kind: event_kind(&get_text("kind")?, row.try_get("detail").map_err(|err| corrupt(TABLE, err))?)
            .map_err(|err| corrupt(TABLE, err))?,
    })
}

/// An event's kind from its `kind` and `detail` columns.
pub(crate) fn event_kind(kind: &str, detail: Option<String>) -> std::result::Result<EventKind, String> {
    match (kind, detail) {
        ("message", _) => Ok(EventKind::Message),
        ("compaction", Some(detail)) => {
            serde_json::from_str(&detail).map(EventKind::Compaction).map_err(|err| err.to_string())
        }
        ("rewind", Some(detail)) => serde_json::from_str(&detail).map(EventKind::Rewind).map_err(|err| err.to_string()),
        (kind, _) => Err(format!("unknown event kind {kind:?} or missing detail")),
    }
}

/// The `detail` column of an event: what a compaction covers, where a rewind returns to.
pub(crate) fn event_detail(kind: &EventKind) -> Option<String> {
    kind.detail().map(|detail| detail.to_string())
}

pub(crate) fn key_from_row(row: &SqliteRow) -> Result<contextiq_core::ApiKey> {
    const TABLE: &str = "api_keys";
    let get_text = |column: &str| row.try_get::<String, _>(column).map_err(|err| corrupt(TABLE, err));
    let get_opt_int = |column: &str| row.try_get::<Option<i64>, _>(column).map_err(|err| corrupt(TABLE, err));
    let get_opt_time = |column: &str| get_opt_int(column)?.map(|at| timestamp(TABLE, at)).transpose();
    let scope: Option<String> = row.try_get("scope").map_err(|err| corrupt(TABLE, err))?;
    Ok(contextiq_core::ApiKey {
        id: uuid(TABLE, &get_text("id")?)?,
        org_id: OrgId::new(get_text("org_id")?),
        name: get_text("name")?,
        key_hash: get_text("key_hash")?,
        prefix: get_text("prefix")?,
        permissions: serde_json::from_str(&get_text("permissions")?).map_err(|err| corrupt(TABLE, err))?,
        scope: scope.map(|text| serde_json::from_str(&text)).transpose().map_err(|err| corrupt(TABLE, err))?,
        rate_limit_per_second: get_opt_int("rate_limit_per_second")?
            .map(|rate| rate.clamp(1, i64::from(u32::MAX)) as u32),
        created_at: timestamp(TABLE, row.try_get("created_at").map_err(|err| corrupt(TABLE, err))?)?,
        expires_at: get_opt_time("expires_at")?,
        revoked_at: get_opt_time("revoked_at")?,
        last_used_at: get_opt_time("last_used_at")?,
        parent_id: row
            .try_get::<Option<String>, _>("parent_id")
            .map_err(|err| corrupt(TABLE, err))?
            .map(|id| uuid(TABLE, &id))
            .transpose()?,
    })
}

pub(crate) fn memory_from_row(row: &SqliteRow) -> Result<contextiq_core::memory::StoredMemory> {
    const TABLE: &str = "memories";
    let get_text = |column: &str| row.try_get::<String, _>(column).map_err(|err| corrupt(TABLE, err));
    let get_opt_text = |column: &str| row.try_get::<Option<String>, _>(column).map_err(|err| corrupt(TABLE, err));
    let get_int = |column: &str| row.try_get::<i64, _>(column).map_err(|err| corrupt(TABLE, err));
    let get_opt_time = |column: &str| {
        row.try_get::<Option<i64>, _>(column)
            .map_err(|err| corrupt(TABLE, err))?
            .map(|at| timestamp(TABLE, at))
            .transpose()
    };
    let memory = contextiq_core::Memory {
        org_id: OrgId::new(get_text("org_id")?),
        id: uuid(TABLE, &get_text("id")?)?,
        scope: serde_json::from_str(&get_text("scope")?).map_err(|err| corrupt(TABLE, err))?,
        fact: get_text("fact")?,
        topic: get_opt_text("topic")?,
        confidence: row.try_get("confidence").map_err(|err| corrupt(TABLE, err))?,
        source_session_id: get_opt_text("source_session_id")?.map(|id| uuid(TABLE, &id)).transpose()?,
        source_event_ids: serde_json::from_str(&get_text("source_event_ids")?).map_err(|err| corrupt(TABLE, err))?,
        metadata: json_object(TABLE, &get_text("metadata")?)?,
        said_at: timestamp(TABLE, get_int("said_at")?)?,
        created_at: timestamp(TABLE, get_int("created_at")?)?,
        updated_at: timestamp(TABLE, get_int("updated_at")?)?,
        expires_at: get_opt_time("expires_at")?,
    };
    Ok(contextiq_core::memory::StoredMemory { memory, deleted_at: get_opt_time("deleted_at")? })
}

pub(crate) fn revision_from_row(row: &SqliteRow) -> Result<contextiq_core::Revision> {
    const TABLE: &str = "memory_revisions";
    let get_text = |column: &str| row.try_get::<String, _>(column).map_err(|err| corrupt(TABLE, err));
    let get_opt_text = |column: &str| row.try_get::<Option<String>, _>(column).map_err(|err| corrupt(TABLE, err));
    let snapshot = |column: &str| -> Result<Option<contextiq_core::memory::MemorySnapshot>> {
        get_opt_text(column)?.map(|text| serde_json::from_str(&text)).transpose().map_err(|err| corrupt(TABLE, err))
    };
    let action = get_text("action")?;
    Ok(contextiq_core::Revision {
        id: uuid(TABLE, &get_text("id")?)?,
        memory_id: uuid(TABLE, &get_text("memory_id")?)?,
        org_id: OrgId::new(get_text("org_id")?),
        action: contextiq_core::RevisionAction::parse(&action)
            .ok_or_else(|| corrupt(TABLE, format!("unknown action {action:?}")))?,
        before: snapshot("before")?,
        after: snapshot("after")?,
        actor: get_text("actor")?,
        job_id: get_opt_text("job_id")?.map(|id| uuid(TABLE, &id)).transpose()?,
        cause: get_opt_text("cause")?
            .map(|text| serde_json::from_str(&text))
            .transpose()
            .map_err(|err| corrupt(TABLE, err))?,
        created_at: timestamp(TABLE, row.try_get("created_at").map_err(|err| corrupt(TABLE, err))?)?,
    })
}
