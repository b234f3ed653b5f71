//! The embedded default store: one SQLite file in WAL mode.
//!
//! Reads go through a pool of connections, which WAL lets run beside the writer. Every write
//! goes to one writer task that owns the only write connection and commits whatever writes are
//! waiting as one transaction (group commit): SQLite allows one writer anyway, so queueing
//! them here instead of on `SQLITE_BUSY` keeps the order fair, and one commit (one fsync with
//! `synchronous=FULL`) covers the whole group. A write is acknowledged only after its group
//! has committed, so an acknowledged write survives a crash of the process.

mod jobs;
mod keys;
mod memories;
mod outbox;
mod rows;
mod sessions;
mod vectors;
mod writer;

use std::path::PathBuf;
use std::str::FromStr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use contextiq_core::session::SessionPatch;
use contextiq_core::{
    Error, Event, NewEvent, OrgId, PageCursor, Result, Session, SessionFilter, SessionPage, SessionStore, StateHistory,
    StatePatch,
};
use serde_json::{Map, Value};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{ConnectOptions, Connection, QueryBuilder, Sqlite};
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;
use uuid::Uuid;

use crate::rows::{event_from_row, micros, record, session_from_row};
use crate::vectors::VectorCache;
use crate::writer::{LastFailure, SessionWrite, WriteOp, Writer};

/// The migrations, embedded in the binary.
static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// How writes reach the disk; see SQLite's `PRAGMA synchronous`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Durability {
    /// fsync on every commit: an acknowledged write survives power loss, not just a crash of
    /// the process.
    Full,
    /// fsync only at checkpoints: acknowledged writes survive a crash of the process, the last
    /// few may be lost on power loss.
    Normal,
}

impl FromStr for Durability {
    type Err = String;

    fn from_str(text: &str) -> std::result::Result<Durability, String> {
        match text.to_ascii_lowercase().as_str() {
            "full" => Ok(Durability::Full),
            "normal" => Ok(Durability::Normal),
            _ => Err(format!("unknown durability {text:?}: expected full or normal")),
        }
    }
}

#[derive(Debug, Clone)]
pub struct SqliteOptions {
    pub path: PathBuf,
    pub read_pool_size: u32,
    pub durability: Durability,
    /// The most writes committed as one transaction.
    pub max_write_batch: usize,
    /// Records every memory write of this store in the outbox of an external vector index
    /// ([`contextiq_core::VectorOutbox`]), in the write's own transaction. The switch is this
    /// store's, not the database's: another store open on the same file records its writes
    /// only if it was opened with the option too, and one opened without never turns it off
    /// for others.
    pub vector_outbox: bool,
}

impl SqliteOptions {
    pub fn new(path: impl Into<PathBuf>) -> SqliteOptions {
        SqliteOptions {
            path: path.into(),
            read_pool_size: 8,
            durability: Durability::Full,
            max_write_batch: 256,
            vector_outbox: false,
        }
    }
}

/// The database holds every tenant's data: only its owner may read it, whatever the umask.
mod private_files {
    use std::io;
    use std::path::Path;

    /// Creates the database's directory (0700) and an empty database file (0600) if missing,
    /// and warns when an existing directory is open to the group or others.
    pub(crate) fn prepare(path: &Path) -> io::Result<()> {
        if let Some(dir) = path.parent().filter(|dir| !dir.as_os_str().is_empty()) {
            if dir.exists() {
                warn_if_shared(dir);
            } else {
                let mut builder = std::fs::DirBuilder::new();
                builder.recursive(true);
                #[cfg(unix)]
                std::os::unix::fs::DirBuilderExt::mode(&mut builder, 0o700);
                builder.create(dir)?;
                set_mode(dir, 0o700)?;
            }
        }
        let mut file = std::fs::OpenOptions::new();
        file.write(true).create(true).truncate(false);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut file, 0o600);
        file.open(path)?;
        Ok(())
    }

    /// Sets 0600 on the database file and its `-wal` and `-shm` files, where they exist.
    pub(crate) fn restrict(path: &Path) -> io::Result<()> {
        for suffix in ["", "-wal", "-shm"] {
            let mut name = path.as_os_str().to_owned();
            name.push(suffix);
            let file = Path::new(&name);
            if file.exists() {
                set_mode(file, 0o600)?;
            }
        }
        Ok(())
    }

    #[cfg(unix)]
    fn set_mode(path: &Path, mode: u32) -> io::Result<()> {
        use std::os::unix::fs::PermissionsExt;
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode))
    }

    #[cfg(not(unix))]
    fn set_mode(_path: &Path, _mode: u32) -> io::Result<()> {
        Ok(())
    }

    fn warn_if_shared(dir: &Path) {
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            if let Ok(metadata) = std::fs::metadata(dir)
                && metadata.permissions().mode() & 0o077 != 0
            {
                tracing::warn!(
                    directory = %dir.display(),
                    mode = format!("{:o}", metadata.permissions().mode() & 0o777),
                    "the data directory is open to other users of this machine; \
                     `chmod 700` it so only the server's user can reach the database"
                );
            }
        }
    }
}

pub struct SqliteStore {
    pub(crate) readers: SqlitePool,
    pub(crate) vectors: Arc<VectorCache>,
    /// `None` once closed.
    writer: Mutex<Option<mpsc::Sender<WriteOp>>>,
    writer_task: tokio::sync::Mutex<Option<JoinHandle<()>>>,
    last_failure: Arc<LastFailure>,
}

impl SqliteStore {
    /// Opens (creating if missing) the database and applies pending migrations.
    pub async fn open(options: &SqliteOptions) -> Result<SqliteStore> {
        private_files::prepare(&options.path).map_err(Error::store)?;
        let connect = SqliteConnectOptions::new()
            .filename(&options.path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(match options.durability {
                Durability::Full => SqliteSynchronous::Full,
                Durability::Normal => SqliteSynchronous::Normal,
            })
            .foreign_keys(true)
            .busy_timeout(Duration::from_secs(10));
        let mut write_conn = connect.connect().await.map_err(Error::store)?;
        MIGRATOR.run_direct(None, &mut write_conn, false).await.map_err(Error::store)?;
        if options.vector_outbox {
            outbox::record_writes(&mut write_conn).await?;
        }
        // SQLite gives `-wal` and `-shm` the database file's mode; this also tightens the files
        // of a database made before the rule.
        private_files::restrict(&options.path).map_err(Error::store)?;
        let readers = SqlitePoolOptions::new()
            .max_connections(options.read_pool_size.max(1))
            .connect_with(connect)
            .await
            .map_err(Error::store)?;
        let (sender, receiver) = mpsc::channel(4096);
        let vectors = Arc::new(VectorCache::default());
        let last_failure = Arc::new(LastFailure::default());
        let writer = Writer::new(write_conn, options.max_write_batch.max(1), vectors.clone(), last_failure.clone());
        let writer_task = tokio::spawn(writer.run(receiver));
        Ok(SqliteStore {
            readers,
            vectors,
            writer: Mutex::new(Some(sender)),
            writer_task: tokio::sync::Mutex::new(Some(writer_task)),
            last_failure,
        })
    }

    pub(crate) async fn submit<T>(&self, op: impl FnOnce(oneshot::Sender<Result<T>>) -> WriteOp) -> Result<T> {
        let sender = self.writer.lock().expect("writer lock poisoned").clone().ok_or(Error::Unavailable)?;
        let (reply, answer) = oneshot::channel();
        sender.send(op(reply)).await.map_err(|_| Error::Unavailable)?;
        // A dropped reply means the group failed and rolled back: nothing was written.
        answer.await.unwrap_or_else(|_| match self.last_failure.was_outage() {
            true => Err(Error::outage(writer::NotCommitted)),
            false => Err(Error::store(writer::NotCommitted)),
        })
    }
}

#[async_trait]
impl SessionStore for SqliteStore {
    async fn create_session(&self, session: Session) -> Result<Session> {
        self.submit(|reply| WriteOp::Session(SessionWrite::Create { session: Box::new(session), reply })).await
    }

    async fn get_session(
        &self,
        org: &OrgId,
        id: Uuid,
        events_limit: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        // One read transaction: the session and its events come from the same snapshot.
        let mut snapshot = record("begin", "sessions", self.readers.begin().await)?;
        let row = sqlx::query(
            "SELECT * FROM sessions WHERE org_id = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)",
        )
        .bind(org.as_str())
        .bind(id.to_string())
        .bind(micros(now))
        .fetch_optional(&mut *snapshot)
        .await;
        let row = record("select", "sessions", row)?.ok_or_else(Error::session_not_found)?;
        let mut session = session_from_row(&row)?;
        if let Some(limit) = events_limit {
            let rows = sqlx::query("SELECT * FROM events WHERE session_id = ? ORDER BY seq LIMIT ?")
                .bind(id.to_string())
                .bind(i64::from(limit))
                .fetch_all(&mut *snapshot)
                .await;
            session.events = Some(record("select", "events", rows)?.iter().map(event_from_row).collect::<Result<_>>()?);
        }
        Ok(session)
    }

    async fn list_sessions(&self, org: &OrgId, filter: &SessionFilter, now: DateTime<Utc>) -> Result<SessionPage> {
        let mut query = QueryBuilder::<Sqlite>::new("SELECT * FROM sessions WHERE org_id = ");
        query.push_bind(org.as_str());
        query.push(" AND (expires_at IS NULL OR expires_at > ").push_bind(micros(now)).push(")");
        if let Some(user_id) = &filter.user_id {
            query.push(" AND user_id = ").push_bind(user_id.as_str());
        }
        if let Some(agent_id) = &filter.agent_id {
            query.push(" AND agent_id = ").push_bind(agent_id.as_str());
        }
        if let Some(parent_id) = filter.parent_session_id {
            query.push(" AND parent_session_id = ").push_bind(parent_id.to_string());
        }
        if let Some(scope) = &filter.scope {
            // Containment as one expression, however many pairs the constraint holds: no pair
            // of the constraint is missing from the session's scope.
            let constraint = serde_json::to_string(scope).map_err(Error::store)?;
            query.push(" AND NOT EXISTS (SELECT 1 FROM json_each(").push_bind(constraint);
            query.push(") AS wanted WHERE NOT EXISTS (SELECT 1 FROM json_each(sessions.scope) AS held ");
            query.push("WHERE held.key = wanted.key AND held.value = wanted.value))");
        }
        push_page(&mut query, filter.cursor, filter.limit);
        let rows = record("select", "sessions", query.build().fetch_all(&self.readers).await)?;
        let mut sessions = rows.iter().map(session_from_row).collect::<Result<Vec<_>>>()?;
        let next_cursor = cut_page(&mut sessions, filter.limit, |last| (last.created_at, last.id));
        Ok(SessionPage { sessions, next_cursor })
    }

    async fn append_events(
        &self,
        org: &OrgId,
        session_id: Uuid,
        events: Vec<NewEvent>,
        max_state_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<contextiq_core::Appended> {
        let org = org.clone();
        self.submit(|reply| {
            WriteOp::Session(SessionWrite::AppendEvents { org, session_id, events, max_state_bytes, now, reply })
        })
        .await
    }

    async fn list_events(
        &self,
        org: &OrgId,
        session_id: Uuid,
        after_seq: i64,
        limit: u32,
        now: DateTime<Utc>,
    ) -> Result<Vec<Event>> {
        // The join makes events of an expired or foreign session invisible like the session.
        let rows = sqlx::query(concat!(
            "SELECT e.* FROM events e JOIN sessions s ON s.id = e.session_id ",
            "WHERE s.org_id = ? AND s.id = ? AND (s.expires_at IS NULL OR s.expires_at > ?) ",
            "AND e.seq > ? ORDER BY e.seq LIMIT ?"
        ))
        .bind(org.as_str())
        .bind(session_id.to_string())
        .bind(micros(now))
        .bind(after_seq)
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await;
        record("select", "events", rows)?.iter().map(event_from_row).collect()
    }

    async fn marker_events(&self, org: &OrgId, session_id: Uuid, limit: u32, now: DateTime<Utc>) -> Result<Vec<Event>> {
        let rows = sqlx::query(concat!(
            "SELECT e.* FROM events e JOIN sessions s ON s.id = e.session_id ",
            "WHERE s.org_id = ? AND s.id = ? AND (s.expires_at IS NULL OR s.expires_at > ?) ",
            "AND e.kind <> 'message' ORDER BY e.seq DESC LIMIT ?"
        ))
        .bind(org.as_str())
        .bind(session_id.to_string())
        .bind(micros(now))
        .bind(i64::from(limit))
        .fetch_all(&self.readers)
        .await;
        record("select", "events", rows)?.iter().map(event_from_row).collect()
    }

    async fn patch_state(
        &self,
        org: &OrgId,
        session_id: Uuid,
        patch: SessionPatch,
        max_state_bytes: u64,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        let org = org.clone();
        self.submit(|reply| {
            WriteOp::Session(SessionWrite::PatchState { org, session_id, patch, max_state_bytes, now, reply })
        })
        .await
    }

    async fn delete_session(&self, org: &OrgId, id: Uuid, now: DateTime<Utc>) -> Result<Vec<Uuid>> {
        let org = org.clone();
        self.submit(|reply| WriteOp::Session(SessionWrite::Delete { org, id, now, reply })).await
    }

    async fn state_history(
        &self,
        org: &OrgId,
        session_id: Uuid,
        through_seq: i64,
        now: DateTime<Utc>,
    ) -> Result<StateHistory> {
        let mut snapshot = record("begin", "sessions", self.readers.begin().await)?;
        let row: sqlx::Result<Option<(Option<String>, String, i64)>> = sqlx::query_as(concat!(
            "SELECT initial_state, state, event_count FROM sessions WHERE org_id = ? AND id = ? ",
            "AND (expires_at IS NULL OR expires_at > ?)"
        ))
        .bind(org.as_str())
        .bind(session_id.to_string())
        .bind(micros(now))
        .fetch_optional(&mut *snapshot)
        .await;
        let (initial, current, event_count) =
            record("select", "sessions", row)?.ok_or_else(Error::session_not_found)?;
        fn decode<T: serde::de::DeserializeOwned>(text: &str) -> Result<T> {
            serde_json::from_str(text).map_err(Error::store)
        }
        let events = sqlx::query(concat!(
            "SELECT * FROM events WHERE session_id = ? AND seq <= ? ",
            "AND (state_delta <> '{}' OR kind = 'rewind') ORDER BY seq"
        ))
        .bind(session_id.to_string())
        .bind(through_seq)
        .fetch_all(&mut *snapshot)
        .await;
        let events = record("select", "events", events)?.iter().map(event_from_row).collect::<Result<Vec<_>>>()?;
        let patches: sqlx::Result<Vec<(i64, String)>> = sqlx::query_as(
            "SELECT after_seq, patch FROM state_patches WHERE session_id = ? AND after_seq <= ? ORDER BY rowid",
        )
        .bind(session_id.to_string())
        .bind(through_seq)
        .fetch_all(&mut *snapshot)
        .await;
        let patches = record("select", "state_patches", patches)?
            .into_iter()
            .map(|(after_seq, patch)| Ok(StatePatch { after_seq, patch: decode(&patch)? }))
            .collect::<Result<Vec<_>>>()?;
        Ok(StateHistory {
            initial: initial.as_deref().map(decode::<Map<String, Value>>).transpose()?,
            current: decode(&current)?,
            event_count,
            events,
            patches,
        })
    }

    async fn fork_session(
        &self,
        org: &OrgId,
        source_id: Uuid,
        through_seq: i64,
        fork: Session,
        now: DateTime<Utc>,
    ) -> Result<Session> {
        let org = org.clone();
        let fork = Box::new(fork);
        self.submit(|reply| WriteOp::Session(SessionWrite::Fork { org, source_id, through_seq, fork, now, reply }))
            .await
    }

    async fn invocation_span(
        &self,
        org: &OrgId,
        session_id: Uuid,
        invocation_id: &str,
        now: DateTime<Utc>,
    ) -> Result<Option<(i64, i64)>> {
        let span: sqlx::Result<(Option<i64>, Option<i64>)> = sqlx::query_as(concat!(
            "SELECT min(e.seq), max(e.seq) FROM events e JOIN sessions s ON s.id = e.session_id ",
            "WHERE s.org_id = ? AND s.id = ? AND (s.expires_at IS NULL OR s.expires_at > ?) AND e.invocation_id = ?"
        ))
        .bind(org.as_str())
        .bind(session_id.to_string())
        .bind(micros(now))
        .bind(invocation_id)
        .fetch_one(&self.readers)
        .await;
        Ok(match record("select", "events", span)? {
            (Some(first), Some(last)) => Some((first, last)),
            _ => None,
        })
    }

    async fn purge_expired_sessions(&self, now: DateTime<Utc>, batch: u32) -> Result<u64> {
        self.submit(|reply| WriteOp::Session(SessionWrite::PurgeExpired { now, batch, reply })).await
    }

    async fn ping(&self) -> Result<()> {
        if self.writer.lock().expect("writer lock poisoned").is_none() {
            return Err(Error::Unavailable);
        }
        let mut conn = self.readers.acquire().await.map_err(Error::store)?;
        conn.ping().await.map_err(Error::store)
    }

    async fn close(&self) {
        // Dropping the only sender lets the writer drain what is queued, then stop.
        self.writer.lock().expect("writer lock poisoned").take();
        if let Some(task) = self.writer_task.lock().await.take()
            && let Err(err) = task.await
        {
            tracing::error!(error = %err, "the SQLite writer task failed");
        }
        self.readers.close().await;
    }
}

/// Keyset pagination, newest first: rows after `cursor` in `(created_at, id)` descending
/// order, and one row more than `limit`, which tells whether another page follows.
pub(crate) fn push_page(query: &mut QueryBuilder<Sqlite>, cursor: Option<PageCursor>, limit: u32) {
    if let Some(cursor) = cursor {
        let created = micros(cursor.created_at);
        query.push(" AND (created_at < ").push_bind(created);
        query.push(" OR (created_at = ").push_bind(created);
        query.push(" AND id < ").push_bind(cursor.id.to_string()).push("))");
    }
    query.push(" ORDER BY created_at DESC, id DESC LIMIT ").push_bind(i64::from(limit) + 1);
}

/// Cuts rows fetched by [`push_page`] to `limit`; the cursor of the next page, if there is one.
pub(crate) fn cut_page<T>(
    rows: &mut Vec<T>,
    limit: u32,
    position: impl Fn(&T) -> (DateTime<Utc>, Uuid),
) -> Option<PageCursor> {
    if rows.len() <= limit as usize {
        return None;
    }
    rows.truncate(limit as usize);
    rows.last().map(|last| {
        let (created_at, id) = position(last);
        PageCursor { created_at, id }
    })
}

#[cfg(test)]
mod tests {
    use chrono::Duration;
    use contextiq_core::{MemoryVectors, Role};

    use super::*;

    fn session(org: &OrgId, now: DateTime<Utc>, expires_at: Option<DateTime<Utc>>) -> Session {
        Session {
            org_id: org.clone(),
            id: Uuid::now_v7(),
            user_id: "u1".to_owned(),
            agent_id: None,
            scope: [("user_id".to_owned(), "u1".to_owned())].into(),
            state: Default::default(),
            metadata: Default::default(),
            created_at: now,
            updated_at: now,
            expires_at,
            event_count: 0,
            token_count: 0,
            compaction: Default::default(),
            parent_session_id: None,
            forked_from: None,
            events: None,
        }
    }

    fn event(content: &str) -> NewEvent {
        NewEvent {
            author: "u".to_owned(),
            role: Role::User,
            content: serde_json::Value::from(content),
            metadata: Default::default(),
            timestamp: None,
            invocation_id: None,
            state_delta: Default::default(),
            token_count: 0,
            kind: contextiq_core::EventKind::Message,
        }
    }

    #[tokio::test]
    async fn purge_removes_expired_sessions_with_their_events_and_nothing_else() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteOptions::new(dir.path().join("test.db"))).await.unwrap();
        let org = OrgId::default_org();
        let now = contextiq_core::to_micros(Utc::now());
        let expiring = store.create_session(session(&org, now, Some(now + Duration::seconds(10)))).await.unwrap();
        let lasting = store.create_session(session(&org, now, None)).await.unwrap();
        for id in [expiring.id, lasting.id] {
            store.append_events(&org, id, vec![event("a"), event("b")], 1 << 20, now).await.unwrap();
        }

        assert_eq!(store.purge_expired_sessions(now, 100).await.unwrap(), 0, "nothing has expired yet");
        let later = now + Duration::seconds(11);
        assert_eq!(store.purge_expired_sessions(later, 100).await.unwrap(), 1);
        assert!(matches!(store.get_session(&org, expiring.id, None, now).await, Err(Error::NotFound { .. })));
        let (n_orphans,): (i64,) = sqlx::query_as("SELECT count(*) FROM events WHERE session_id = ?")
            .bind(expiring.id.to_string())
            .fetch_one(&store.readers)
            .await
            .unwrap();
        assert_eq!(n_orphans, 0, "events go with their session");
        assert_eq!(store.list_events(&org, lasting.id, 0, 10, later).await.unwrap().len(), 2);
        store.close().await;
    }

    #[tokio::test]
    async fn purge_erases_expired_memories_their_history_and_vectors() {
        use contextiq_core::memory::{MemorySnapshot, scope_key};
        use contextiq_core::{Memory, MemoryStore, Revision, RevisionAction};

        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteOptions::new(dir.path().join("test.db"))).await.unwrap();
        let org = OrgId::default_org();
        let now = contextiq_core::to_micros(Utc::now());
        let scope: contextiq_core::Scope = [("user_id".to_owned(), "u1".to_owned())].into();
        let memory = |fact: &str, expires_at| Memory {
            org_id: org.clone(),
            id: Uuid::now_v7(),
            scope: scope.clone(),
            fact: fact.to_owned(),
            topic: None,
            confidence: 1.0,
            source_session_id: None,
            source_event_ids: Vec::new(),
            metadata: Default::default(),
            said_at: now,
            created_at: now,
            updated_at: now,
            expires_at,
        };
        let created = |memory: &Memory| Revision {
            id: Uuid::now_v7(),
            memory_id: memory.id,
            org_id: org.clone(),
            action: RevisionAction::Created,
            before: None,
            after: Some(MemorySnapshot::from(memory)),
            actor: "test".to_owned(),
            job_id: None,
            cause: None,
            created_at: now,
        };
        let expiring = memory("kites are fun", Some(now + Duration::seconds(10)));
        let lasting = memory("kites are lasting", None);
        for memory in [&expiring, &lasting] {
            store.insert_memory(memory.clone(), MemoryVectors::of_fact(vec![1.0, 0.0]), created(memory)).await.unwrap();
        }
        let key = scope_key(&scope);
        assert_eq!(store.vector_candidates(&org, &key, &[1.0, 0.0], 10).await.unwrap().len(), 2, "loads the scope");

        let later = now + Duration::seconds(11);
        assert_eq!(store.purge_expired_memories(now, 100).await.unwrap(), 0);
        assert_eq!(store.purge_expired_memories(later, 100).await.unwrap(), 1);
        assert!(store.find_memory(&org, expiring.id).await.unwrap().is_none());
        assert!(store.list_revisions(&org, expiring.id).await.unwrap().is_empty(), "its history went too");
        let lexical = store.lexical_candidates(&org, &key, "kites", 10, now).await.unwrap();
        assert_eq!(lexical.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [lasting.id], "and its index entry");
        let vectors = store.vector_candidates(&org, &key, &[1.0, 0.0], 10).await.unwrap();
        assert_eq!(vectors.iter().map(|(id, _)| *id).collect::<Vec<_>>(), [lasting.id], "and its vector");
        store.close().await;
    }

    #[tokio::test]
    async fn another_org_cannot_see_or_touch_a_session() {
        let dir = tempfile::tempdir().unwrap();
        let store = SqliteStore::open(&SqliteOptions::new(dir.path().join("test.db"))).await.unwrap();
        let (owner, stranger) = (OrgId::new("owner"), OrgId::new("stranger"));
        let now = contextiq_core::to_micros(Utc::now());
        let created = store.create_session(session(&owner, now, None)).await.unwrap();
        let not_found = |result: Result<()>| assert!(matches!(result, Err(Error::NotFound { .. })));
        not_found(store.get_session(&stranger, created.id, Some(10), now).await.map(|_| ()));
        not_found(store.append_events(&stranger, created.id, vec![event("x")], 1 << 20, now).await.map(|_| ()));
        not_found(
            store.patch_state(&stranger, created.id, serde_json::json!({"a": 1}).into(), 1000, now).await.map(|_| ()),
        );
        not_found(store.delete_session(&stranger, created.id, now).await.map(|_| ()));
        let filter = SessionFilter { limit: 10, ..SessionFilter::default() };
        assert!(store.list_sessions(&stranger, &filter, now).await.unwrap().sessions.is_empty());
        assert!(store.list_events(&stranger, created.id, 0, 10, now).await.unwrap().is_empty());
        assert_eq!(store.get_session(&owner, created.id, None, now).await.unwrap(), created);
        store.close().await;
        assert!(matches!(store.create_session(session(&owner, now, None)).await, Err(Error::Unavailable)));
    }
}
