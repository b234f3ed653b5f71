//! The PostgreSQL store: every store trait of `contextiq-core` on one database, for the
//! distributed deployment. Sessions, events, keys, memories (full-text search for lexical
//! relevance, pgvector HNSW for vectors), revisions and generation jobs. Concurrency comes from
//! PostgreSQL itself: row locks serialise appends to one session, `FOR UPDATE SKIP LOCKED`
//! hands out jobs, and every multi-row write is one transaction.

mod jobs;
mod keys;
mod memories;
mod outbox;
mod rows;
mod sessions;

use std::time::Duration;

use chrono::{DateTime, Utc};
use contextiq_core::{Error, PageCursor, Result};
use sqlx::postgres::{PgConnectOptions, PgPoolOptions};
use sqlx::{PgPool, Postgres, QueryBuilder};
use uuid::Uuid;

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Connection settings of the pool.
#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub url: String,
    /// Connections kept open.
    pub pool_size: u32,
    /// Connections opened beyond `pool_size` under load, closed when idle.
    pub max_overflow: u32,
    /// A connection older than this is closed and replaced.
    pub pool_recycle: Duration,
    pub acquire_timeout: Duration,
    /// Scopes of up to this many memories are searched by comparing every vector (exact);
    /// larger ones through the HNSW index.
    pub exact_scan_max: i64,
    /// Records every memory write of this store in the outbox of an external vector index
    /// ([`contextiq_core::VectorOutbox`]), in the write's own transaction. The switch is the
    /// connection's (the setting `contextiq.vector_outbox` of each pooled connection), not the
    /// database's: another store or server on the same database records its writes only if it
    /// was opened with the option too, and one opened without never turns it off for others.
    pub vector_outbox: bool,
}

impl PostgresOptions {
    pub fn new(url: impl Into<String>) -> PostgresOptions {
        PostgresOptions {
            url: url.into(),
            pool_size: 10,
            max_overflow: 20,
            pool_recycle: Duration::from_secs(3600),
            acquire_timeout: Duration::from_secs(10),
            exact_scan_max: 2000,
            vector_outbox: false,
        }
    }
}

pub struct PostgresStore {
    pub(crate) pool: PgPool,
    pub(crate) exact_scan_max: i64,
}

impl PostgresStore {
    /// Connects and applies pending migrations.
    pub async fn open(options: &PostgresOptions) -> Result<PostgresStore> {
        let connect: PgConnectOptions = options.url.parse().map_err(Error::store)?;
        let vector_outbox = options.vector_outbox;
        let pool = PgPoolOptions::new()
            .min_connections(options.pool_size.min(options.pool_size + options.max_overflow))
            .max_connections((options.pool_size + options.max_overflow).max(1))
            .max_lifetime(options.pool_recycle)
            .acquire_timeout(options.acquire_timeout)
            .after_connect(move |conn, _| {
                Box::pin(async move {
                    // Filtered HNSW scans continue until enough rows pass the filter (pgvector 0.8).
                    sqlx::query("SET hnsw.iterative_scan = relaxed_order").execute(&mut *conn).await?;
                    outbox::record_writes(conn, vector_outbox).await
                })
            })
            .connect_with(connect)
            .await
            .map_err(Error::store)?;
        MIGRATOR.run(&pool).await.map_err(Error::store)?;
        Ok(PostgresStore { pool, exact_scan_max: options.exact_scan_max.max(0) })
    }
}

/// The time a write applies: the later of the caller's `now` and this process's clock, in
/// microseconds (see `SessionStore`).
pub(crate) fn applied_at(now: DateTime<Utc>) -> DateTime<Utc> {
    contextiq_core::to_micros(now.max(Utc::now()))
}

/// Adds the keyset condition and order of a page, newest first, one row more than `limit` so
/// the caller can tell whether another page follows.
pub(crate) fn push_page(query: &mut QueryBuilder<Postgres>, cursor: Option<PageCursor>, limit: u32) {
    if let Some(cursor) = cursor {
        query.push(" AND (created_at, id) < (").push_bind(cursor.created_at).push(", ").push_bind(cursor.id).push(")");
    }
    query.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit) + 1);
}

/// Drops the extra row of `push_page`; the cursor of the next page, if there is one.
pub(crate) fn cut_page<T>(
    items: &mut Vec<T>,
    limit: u32,
    position: impl Fn(&T) -> (DateTime<Utc>, uuid::Uuid),
) -> Option<PageCursor> {
    if items.len() <= limit as usize {
        return None;
    }
    items.truncate(limit as usize);
    items.last().map(|last| {
        let (created_at, id) = position(last);
        PageCursor { created_at, id }
    })
}

/// Creates an empty database beside the one `url` names and returns its URL: each test (or
/// benchmark run) gets its own, so they can run in parallel on one server.
pub async fn create_scratch_database(url: &str) -> Result<String> {
    use sqlx::Connection;
    let mut conn = sqlx::PgConnection::connect(url).await.map_err(Error::store)?;
    let name = format!("contextiq_scratch_{}", Uuid::now_v7().simple());
    sqlx::query(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}")))
        .execute(&mut conn)
        .await
        .map_err(Error::store)?;
    conn.close().await.map_err(Error::store)?;
    // The same URL with the new database name (and no query string).
    let base = url.split('?').next().unwrap_or(url);
    let base = base.rsplit_once('/').map_or(base, |(head, _)| head);
    Ok(format!("{base}/{name}"))
}
