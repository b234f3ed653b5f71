-- Parent sessions, forks, rewinds, and the state log that rebuilds a session's state at any event.
ALTER TABLE sessions ADD COLUMN parent_session_id UUID;
ALTER TABLE sessions ADD COLUMN forked_from_session_id UUID;
ALTER TABLE sessions ADD COLUMN forked_from_seq BIGINT;
-- The state the session was created or forked with; NULL for sessions created before this log.
ALTER TABLE sessions ADD COLUMN initial_state JSONB;
CREATE INDEX sessions_by_parent ON sessions (org_id, parent_session_id, created_at DESC, id DESC)
    WHERE parent_session_id IS NOT NULL;

-- Every state merge patch (PATCH /state), after the event it followed; applied in id order.
CREATE TABLE state_patches (
    id         BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    session_id UUID   NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    after_seq  BIGINT NOT NULL,
    patch      JSONB  NOT NULL -- an RFC 7396 merge patch
);
CREATE INDEX state_patches_by_session ON state_patches (session_id, after_seq);

ALTER TABLE events DROP CONSTRAINT events_kind_check;
ALTER TABLE events ADD CONSTRAINT events_kind_check CHECK (kind IN ('message', 'compaction', 'rewind'));
