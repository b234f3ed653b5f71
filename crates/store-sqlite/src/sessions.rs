//! Session writes on SQLite, applied by the writer: creation, appends (sequence numbers reserved
//! on the session row), state patches, deletion and the expiry purge.

use chrono::{DateTime, Utc};
use contextiq_core::session::{AppendTotals, SessionPatch, apply_event_state, check_state_size};
use contextiq_core::{Appended, Error, Event, NewEvent, OrgId, Resource, Result, Session};
use serde_json::{Map, Value};
use sqlx::{QueryBuilder, Sqlite};
use uuid::Uuid;

use crate::rows::{count, event_detail, micros, session_from_row};
use crate::writer::{Completion, SessionWrite, Writer, applied_at, complete, json_text};

impl Writer {
    pub(crate) async fn apply_session_write(&mut self, write: SessionWrite) -> sqlx::Result<Completion> {
        Ok(match write {
            SessionWrite::Create { session, reply } => complete(reply, self.create_session(*session).await?),
            SessionWrite::AppendEvents { org, session_id, events, max_state_bytes, now, reply } => {
                let appended = self.append_events(&org, session_id, events, max_state_bytes, applied_at(now)).await?;
                complete(reply, appended)
            }
            SessionWrite::PatchState { org, session_id, patch, max_state_bytes, now, reply } => {
                let patched = self.patch_state(&org, session_id, &patch, max_state_bytes, applied_at(now)).await?;
                complete(reply, patched)
            }
            SessionWrite::Delete { org, id, now, reply } => {
                complete(reply, self.delete_session(&org, id, applied_at(now)).await?)
            }
            SessionWrite::Fork { org, source_id, through_seq, fork, now, reply } => {
                complete(reply, self.fork_session(&org, source_id, through_seq, *fork, applied_at(now)).await?)
            }
            SessionWrite::PurgeExpired { now, batch, reply } => {
                complete(reply, self.purge_expired_sessions(now, batch).await?)
            }
        })
    }

    async fn create_session(&mut self, session: Session) -> sqlx::Result<Result<Session>> {
        let result = sqlx::query(concat!(
            "INSERT INTO sessions (org_id, id, user_id, agent_id, scope, state, metadata, ",
            "created_at, updated_at, expires_at, event_count, compaction_policy, parent_session_id, ",
            "forked_from_session_id, forked_from_seq, initial_state) ",
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?) ",
            // A client may name the session it creates: a name taken is refused, not an error of
            // the whole group.
            "ON CONFLICT (id) DO NOTHING"
        ))
        .bind(session.org_id.as_str())
        .bind(session.id.to_string())
        .bind(session.user_id.as_str())
        .bind(session.agent_id.as_deref())
        .bind(json_text(&session.scope)?)
        .bind(json_text(&session.state)?)
        .bind(json_text(&session.metadata)?)
        .bind(micros(session.created_at))
        .bind(micros(session.updated_at))
        .bind(session.expires_at.map(micros))
        .bind(session.event_count)
        .bind(session.compaction.policy.as_ref().map(json_text).transpose()?)
        .bind(session.parent_session_id.map(|id| id.to_string()))
        .bind(session.forked_from.map(|origin| origin.session_id.to_string()))
        .bind(session.forked_from.map(|origin| origin.seq))
        .bind(json_text(&session.state)?)
        .execute(&mut self.conn)
        .await;
        if count("insert", "sessions", result)?.rows_affected() == 0 {
            return Ok(Err(Error::AlreadyExists { resource: Resource::Session }));
        }
        Ok(Ok(session))
    }

    async fn delete_session(&mut self, org: &OrgId, id: Uuid, now: DateTime<Utc>) -> sqlx::Result<Result<Vec<Uuid>>> {
        // The session (if alive) and its descendants, whatever their expiry.
        let found: sqlx::Result<Vec<(String,)>> = sqlx::query_as(concat!(
            "WITH RECURSIVE doomed(id) AS (SELECT id FROM sessions WHERE org_id = ? AND id = ? ",
            "AND (expires_at IS NULL OR expires_at > ?) ",
            "UNION SELECT s.id FROM sessions s JOIN doomed d ON s.parent_session_id = d.id WHERE s.org_id = ?) ",
            "DELETE FROM sessions WHERE id IN (SELECT id FROM doomed) RETURNING id"
        ))
        .bind(org.as_str())
        .bind(id.to_string())
        .bind(micros(now))
        .bind(org.as_str())
        .fetch_all(&mut self.conn)
        .await;
        let deleted = count("delete", "sessions", found)?;
        if deleted.is_empty() {
            return Ok(Err(Error::session_not_found()));
        }
        let mut ids = Vec::with_capacity(deleted.len());
        for (text,) in deleted {
            ids.push(Uuid::parse_str(&text).map_err(|err| sqlx::Error::Decode(Box::new(err)))?);
        }
        Ok(Ok(ids))
    }

    async fn fork_session(
        &mut self,
        org: &OrgId,
        source_id: Uuid,
        through_seq: i64,
        fork: Session,
        now: DateTime<Utc>,
    ) -> sqlx::Result<Result<Session>> {
        let source: sqlx::Result<Option<(i64, Option<String>)>> = sqlx::query_as(concat!(
            "SELECT event_count, initial_state FROM sessions WHERE org_id = ? AND id = ? ",
            "AND (expires_at IS NULL OR expires_at > ?)"
        ))
        .bind(org.as_str())
        .bind(source_id.to_string())
        .bind(micros(now))
        .fetch_optional(&mut self.conn)
        .await;
        let Some((event_count, initial_state)) = count("select", "sessions", source)? else {
            return Ok(Err(Error::session_not_found()));
        };
        if event_count < through_seq {
            return Ok(Err(Error::session_not_found()));
        }
        let fork_id = fork.id.to_string();
        if let Err(err) = self.create_session(fork).await? {
            return Ok(Err(err));
        }
        // The fork's history rebuilds like its source's: the same initial state and state log.
        let initialised = sqlx::query("UPDATE sessions SET initial_state = ? WHERE id = ?")
            .bind(initial_state)
            .bind(&fork_id)
            .execute(&mut self.conn)
            .await;
        count("update", "sessions", initialised)?;
        let copied = sqlx::query(concat!(
            "INSERT INTO events (session_id, seq, org_id, id, author, role, content, metadata, timestamp, ",
            "invocation_id, token_count, state_delta, kind, detail) ",
            "SELECT ?, seq, org_id, ",
            // A random (version 4) UUID for each copy.
            "lower(hex(randomblob(4)) || '-' || hex(randomblob(2)) || '-4' || substr(hex(randomblob(2)), 2) ",
            "|| '-' || substr('89ab', 1 + (abs(random()) % 4), 1) || substr(hex(randomblob(2)), 2) || '-' ",
            "|| hex(randomblob(6))), ",
            "author, role, content, metadata, timestamp, invocation_id, token_count, state_delta, kind, detail ",
            "FROM events WHERE session_id = ? AND seq <= ? ORDER BY seq"
        ))
        .bind(&fork_id)
        .bind(source_id.to_string())
        .bind(through_seq)
        .execute(&mut self.conn)
        .await;
        count("insert", "events", copied)?;
        let patches = sqlx::query(concat!(
            "INSERT INTO state_patches (session_id, after_seq, patch) SELECT ?, after_seq, patch ",
            "FROM state_patches WHERE session_id = ? AND after_seq <= ? ORDER BY rowid"
        ))
        .bind(&fork_id)
        .bind(source_id.to_string())
        .bind(through_seq)
        .execute(&mut self.conn)
        .await;
        count("insert", "state_patches", patches)?;
        let totals = sqlx::query(concat!(
            "UPDATE sessions SET ",
            "token_count = (SELECT coalesce(sum(e.token_count), 0) FROM events e WHERE e.session_id = sessions.id), ",
            "compacted_through_seq = (SELECT coalesce(max(json_extract(e.detail, '$.end_seq')), 0) FROM events e ",
            "WHERE e.session_id = sessions.id AND e.kind = 'compaction') WHERE id = ?"
        ))
        .bind(&fork_id)
        .execute(&mut self.conn)
        .await;
        count("update", "sessions", totals)?;
        self.recount_uncompacted(&fork_id).await?;
        self.session_row(&fork_id).await
    }

    /// Sets the uncompacted counts to those of the message events after `compacted_through_seq`.
    async fn recount_uncompacted(&mut self, session_id: &str) -> sqlx::Result<()> {
        let recounted = sqlx::query(concat!(
            "UPDATE sessions SET ",
            "uncompacted_events = (SELECT count(*) FROM events e WHERE e.session_id = sessions.id ",
            "AND e.seq > sessions.compacted_through_seq AND e.kind = 'message'), ",
            "uncompacted_tokens = (SELECT coalesce(sum(e.token_count), 0) FROM events e ",
            "WHERE e.session_id = sessions.id AND e.seq > sessions.compacted_through_seq AND e.kind = 'message') ",
            "WHERE id = ?"
        ))
        .bind(session_id)
        .execute(&mut self.conn)
        .await;
        count("update", "sessions", recounted)?;
        Ok(())
    }

    async fn session_row(&mut self, session_id: &str) -> sqlx::Result<Result<Session>> {
        let row = sqlx::query("SELECT * FROM sessions WHERE id = ?").bind(session_id).fetch_one(&mut self.conn).await;
        Ok(session_from_row(&count("select", "sessions", row)?))
    }

    async fn purge_expired_sessions(&mut self, now: DateTime<Utc>, batch: u32) -> sqlx::Result<Result<u64>> {
        let result = sqlx::query(concat!(
            "DELETE FROM sessions WHERE id IN (SELECT id FROM sessions ",
            "WHERE expires_at IS NOT NULL AND expires_at <= ? LIMIT ?)"
        ))
        .bind(micros(now))
        .bind(i64::from(batch))
        .execute(&mut self.conn)
        .await;
        Ok(Ok(count("purge", "sessions", result)?.rows_affected()))
    }

    async fn append_events(
        &mut self,
        org: &OrgId,
        session_id: Uuid,
        new_events: Vec<NewEvent>,
        max_state_bytes: u64,
        now: DateTime<Utc>,
    ) -> sqlx::Result<Result<Appended>> {
        let n_events = new_events.len() as i64;
        // The state first: a delta that outgrows the limit refuses the append before any write.
        if new_events.iter().any(NewEvent::changes_state) {
            let current: sqlx::Result<Option<(String,)>> = sqlx::query_as(
                "SELECT state FROM sessions WHERE org_id = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)",
            )
            .bind(org.as_str())
            .bind(session_id.to_string())
            .bind(micros(now))
            .fetch_optional(&mut self.conn)
            .await;
            let Some((state_text,)) = count("select", "sessions", current)? else {
                return Ok(Err(Error::session_not_found()));
            };
            let mut state: Map<String, Value> =
                serde_json::from_str(&state_text).map_err(|err| sqlx::Error::Decode(Box::new(err)))?;
            for event in &new_events {
                apply_event_state(&mut state, &event.state_delta, &event.kind);
            }
            if let Err(err) = check_state_size(&state, max_state_bytes) {
                return Ok(Err(err));
            }
            let updated = sqlx::query("UPDATE sessions SET state = ? WHERE org_id = ? AND id = ?")
                .bind(json_text(&state)?)
                .bind(org.as_str())
                .bind(session_id.to_string())
                .execute(&mut self.conn)
                .await;
            count("update", "sessions", updated)?;
        }
        let AppendTotals { tokens: n_tokens, messages: n_messages, message_tokens, compacted_through } =
            AppendTotals::of(&new_events);
        // Checks the session is alive and reserves the sequence numbers in one statement; the
        // single writer makes the reservation race-free.
        let reserved: sqlx::Result<Option<(i64,)>> = sqlx::query_as(concat!(
            "UPDATE sessions SET event_count = event_count + ?, updated_at = ?, token_count = token_count + ?, ",
            "uncompacted_events = uncompacted_events + ?, uncompacted_tokens = uncompacted_tokens + ? ",
            "WHERE org_id = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?) RETURNING event_count"
        ))
        .bind(n_events)
        .bind(micros(now))
        .bind(n_tokens)
        .bind(n_messages)
        .bind(message_tokens)
        .bind(org.as_str())
        .bind(session_id.to_string())
        .bind(micros(now))
        .fetch_optional(&mut self.conn)
        .await;
        let Some((last_seq,)) = count("update", "sessions", reserved)? else {
            return Ok(Err(Error::session_not_found()));
        };
        let events: Vec<Event> = new_events
            .into_iter()
            .zip(last_seq - n_events + 1..)
            .map(|(new, seq)| new.into_event(session_id, seq, now))
            .collect();
        let mut encoded = Vec::with_capacity(events.len());
        for event in &events {
            encoded.push((json_text(&event.content)?, json_text(&event.metadata)?, json_text(&event.state_delta)?));
        }
        let mut insert = QueryBuilder::<Sqlite>::new(concat!(
            "INSERT INTO events (session_id, seq, org_id, id, author, role, content, metadata, timestamp, ",
            "invocation_id, token_count, state_delta, kind, detail) "
        ));
        insert.push_values(events.iter().zip(encoded), |mut row, (event, (content, metadata, state_delta))| {
            row.push_bind(session_id.to_string())
                .push_bind(event.seq)
                .push_bind(org.as_str())
                .push_bind(event.id.to_string())
                .push_bind(event.author.as_str())
                .push_bind(event.role.as_str())
                .push_bind(content)
                .push_bind(metadata)
                .push_bind(micros(event.timestamp))
                .push_bind(event.invocation_id.as_deref())
                .push_bind(i64::from(event.token_count))
                .push_bind(state_delta)
                .push_bind(event.kind.name())
                .push_bind(event_detail(&event.kind));
        });
        count("insert", "events", insert.build().execute(&mut self.conn).await)?;
        if let Some(end_seq) = compacted_through {
            // What the next compaction reads: the message events after the furthest one.
            let moved =
                sqlx::query("UPDATE sessions SET compacted_through_seq = max(compacted_through_seq, ?) WHERE id = ?")
                    .bind(end_seq)
                    .bind(session_id.to_string())
                    .execute(&mut self.conn)
                    .await;
            count("update", "sessions", moved)?;
            self.recount_uncompacted(&session_id.to_string()).await?;
        }
        let session = match self.session_row(&session_id.to_string()).await? {
            Ok(session) => session,
            Err(err) => return Ok(Err(err)),
        };
        Ok(Ok(Appended { events, session }))
    }

    async fn patch_state(
        &mut self,
        org: &OrgId,
        session_id: Uuid,
        patch: &SessionPatch,
        max_state_bytes: u64,
        now: DateTime<Utc>,
    ) -> sqlx::Result<Result<Session>> {
        let current: sqlx::Result<Option<(String, String)>> = sqlx::query_as(concat!(
            "SELECT state, metadata FROM sessions WHERE org_id = ? AND id = ? ",
            "AND (expires_at IS NULL OR expires_at > ?)"
        ))
        .bind(org.as_str())
        .bind(session_id.to_string())
        .bind(micros(now))
        .fetch_optional(&mut self.conn)
        .await;
        let Some((state_text, metadata_text)) = count("select", "sessions", current)? else {
            return Ok(Err(Error::session_not_found()));
        };
        let decode = |text: &str| -> sqlx::Result<Map<String, Value>> {
            serde_json::from_str(text).map_err(|err| sqlx::Error::Decode(Box::new(err)))
        };
        let (state, metadata) = match patch.apply(decode(&state_text)?, decode(&metadata_text)?, max_state_bytes) {
            Ok(patched) => patched,
            Err(err) => return Ok(Err(err)),
        };
        // The state log: what rebuilds the state at an earlier event.
        if patch.state.as_object().is_some_and(|changes| !changes.is_empty()) {
            let logged = sqlx::query(concat!(
                "INSERT INTO state_patches (session_id, after_seq, patch) ",
                "SELECT id, event_count, ? FROM sessions WHERE id = ?"
            ))
            .bind(json_text(&patch.state)?)
            .bind(session_id.to_string())
            .execute(&mut self.conn)
            .await;
            count("insert", "state_patches", logged)?;
        }
        let updated = sqlx::query(
            "UPDATE sessions SET state = ?, metadata = ?, updated_at = ? WHERE org_id = ? AND id = ? RETURNING *",
        )
        .bind(json_text(&state)?)
        .bind(json_text(&metadata)?)
        .bind(micros(now))
        .bind(org.as_str())
        .bind(session_id.to_string())
        .fetch_one(&mut self.conn)
        .await;
        let row = count("update", "sessions", updated)?;
        Ok(session_from_row(&row))
    }
}
