//! Session writes on SQLite, applied by the writer: creation, appends (sequence numbers reserved
//! on the session row), state patches, deletion and the expiry purge.

use chrono::{DateTime, Utc};
use contextiq_core::session::{SessionPatch, apply_state_delta, check_state_size};
use contextiq_core::{Appended, Error, Event, EventKind, NewEvent, OrgId, Resource, Result, Session};
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
            SessionWrite::PurgeExpired { now, batch, reply } => {
                complete(reply, self.purge_expired_sessions(now, batch).await?)
            }
        })
    }

    async fn create_session(&mut self, session: Session) -> sqlx::Result<Result<Session>> {
        let result = sqlx::query(concat!(
            "INSERT INTO sessions (org_id, id, user_id, agent_id, scope, state, metadata, ",
            "created_at, updated_at, expires_at, event_count, compaction_policy) ",
            "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, 0, ?) ",
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
        .bind(session.compaction.policy.as_ref().map(json_text).transpose()?)
        .execute(&mut self.conn)
        .await;
        if count("insert", "sessions", result)?.rows_affected() == 0 {
            return Ok(Err(Error::AlreadyExists { resource: Resource::Session }));
        }
        Ok(Ok(session))
    }

    async fn delete_session(&mut self, org: &OrgId, id: Uuid, now: DateTime<Utc>) -> sqlx::Result<Result<()>> {
        let result =
            sqlx::query("DELETE FROM sessions WHERE org_id = ? AND id = ? AND (expires_at IS NULL OR expires_at > ?)")
                .bind(org.as_str())
                .bind(id.to_string())
                .bind(micros(now))
                .execute(&mut self.conn)
                .await;
        let n_deleted = count("delete", "sessions", result)?.rows_affected();
        Ok(if n_deleted == 0 { Err(Error::session_not_found()) } else { Ok(()) })
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
        let deltas: Vec<_> =
            new_events.iter().map(|event| &event.state_delta).filter(|delta| !delta.is_empty()).collect();
        // The state first: a delta that outgrows the limit refuses the append before any write.
        if !deltas.is_empty() {
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
            for delta in deltas {
                apply_state_delta(&mut state, delta);
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
        let n_tokens: i64 = new_events.iter().map(|event| i64::from(event.token_count)).sum();
        let messages = new_events.iter().filter(|event| event.kind == EventKind::Message);
        let (n_messages, message_tokens) =
            messages.fold((0i64, 0i64), |(n, tokens), event| (n + 1, tokens + i64::from(event.token_count)));
        let compacted_through = new_events
            .iter()
            .filter_map(|event| match &event.kind {
                EventKind::Compaction(compaction) => Some(compaction.end_seq),
                EventKind::Message => None,
            })
            .max();
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
            let recounted = sqlx::query(concat!(
                "UPDATE sessions SET ",
                "uncompacted_events = (SELECT count(*) FROM events e WHERE e.session_id = sessions.id ",
                "AND e.seq > sessions.compacted_through_seq AND e.kind = 'message'), ",
                "uncompacted_tokens = (SELECT coalesce(sum(e.token_count), 0) FROM events e ",
                "WHERE e.session_id = sessions.id AND e.seq > sessions.compacted_through_seq AND e.kind = 'message') ",
                "WHERE id = ?"
            ))
            .bind(session_id.to_string())
            .execute(&mut self.conn)
            .await;
            count("update", "sessions", recounted)?;
        }
        let row = sqlx::query("SELECT * FROM sessions WHERE id = ?")
            .bind(session_id.to_string())
            .fetch_one(&mut self.conn)
            .await;
        let session = match session_from_row(&count("select", "sessions", row)?) {
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
