-- Sessions and their events. Every table carries org_id (the tenant) from the start.
-- Timestamps are integer microseconds since the Unix epoch (UTC); ids are UUID text.

CREATE TABLE sessions (
    org_id      TEXT    NOT NULL,
    id          TEXT    NOT NULL PRIMARY KEY,
    user_id     TEXT    NOT NULL,
    agent_id    TEXT,
    scope       TEXT    NOT NULL, -- canonical JSON object, keys sorted
    state       TEXT    NOT NULL, -- JSON object
    metadata    TEXT    NOT NULL, -- JSON object
    created_at  INTEGER NOT NULL,
    updated_at  INTEGER NOT NULL,
    expires_at  INTEGER,
    event_count INTEGER NOT NULL DEFAULT 0 -- the last event's seq
) STRICT;

CREATE INDEX sessions_by_org_created ON sessions (org_id, created_at DESC, id DESC);
CREATE INDEX sessions_by_org_user_created ON sessions (org_id, user_id, created_at DESC, id DESC);
CREATE INDEX sessions_by_org_agent_created ON sessions (org_id, agent_id, created_at DESC, id DESC);
CREATE INDEX sessions_by_expiry ON sessions (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE events (
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
    PRIMARY KEY (session_id, seq)
) STRICT, WITHOUT ROWID;
