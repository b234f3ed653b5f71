-- Parent sessions, forks, rewinds, and the state log that rebuilds a session's state at any event.
ALTER TABLE sessions ADD COLUMN parent_session_id TEXT;
ALTER TABLE sessions ADD COLUMN forked_from_session_id TEXT;
ALTER TABLE sessions ADD COLUMN forked_from_seq INTEGER;
-- The state the session was created or forked with; NULL for sessions created before this log.
ALTER TABLE sessions ADD COLUMN initial_state TEXT;
CREATE INDEX sessions_by_parent ON sessions (org_id, parent_session_id, created_at DESC, id DESC)
    WHERE parent_session_id IS NOT NULL;

-- Every state merge patch (PATCH /state), after the event it followed; applied in rowid order.
CREATE TABLE state_patches (
    session_id TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    after_seq  INTEGER NOT NULL,
    patch      TEXT    NOT NULL -- JSON object, an RFC 7396 merge patch
) STRICT;
CREATE INDEX state_patches_by_session ON state_patches (session_id, after_seq);

-- A new event kind, `rewind`: SQLite changes a CHECK constraint only by rebuilding the table.
CREATE TABLE events_new (
    session_id    TEXT    NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq           INTEGER NOT NULL,
    org_id        TEXT    NOT NULL,
    id            TEXT    NOT NULL UNIQUE,
    author        TEXT    NOT NULL,
    role          TEXT    NOT NULL CHECK (role IN ('user', 'assistant', 'tool', 'system')),
    content       TEXT    NOT NULL, -- JSON value: a string for text
    metadata      TEXT    NOT NULL, -- JSON object
    timestamp     INTEGER NOT NULL,
    invocation_id TEXT,
    token_count   INTEGER NOT NULL DEFAULT 0,
    state_delta   TEXT    NOT NULL DEFAULT '{}', -- JSON object
    kind          TEXT    NOT NULL DEFAULT 'message' CHECK (kind IN ('message', 'compaction', 'rewind')),
    detail        TEXT, -- JSON: what a compaction covers, where a rewind returns to
    PRIMARY KEY (session_id, seq)
) STRICT, WITHOUT ROWID;
INSERT INTO events_new (session_id, seq, org_id, id, author, role, content, metadata, timestamp, invocation_id,
    token_count, state_delta, kind, detail)
SELECT session_id, seq, org_id, id, author, role, content, metadata, timestamp, invocation_id,
    token_count, state_delta, kind, detail FROM events;
DROP TABLE events;
ALTER TABLE events_new RENAME TO events;
CREATE INDEX events_compactions ON events (session_id, seq) WHERE kind <> 'message';
