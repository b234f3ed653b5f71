-- Memories, their revisions, and their lexical index. Vectors live in the memories table and
-- are searched in memory (see vectors.rs).

CREATE TABLE memories (
    org_id            TEXT    NOT NULL,
    id                TEXT    NOT NULL PRIMARY KEY,
    scope             TEXT    NOT NULL, -- canonical JSON object, keys sorted
    fact              TEXT    NOT NULL,
    topic             TEXT,
    confidence        REAL    NOT NULL,
    source_session_id TEXT,
    source_event_ids  TEXT    NOT NULL, -- JSON array of UUIDs
    metadata          TEXT    NOT NULL, -- JSON object
    embedding         BLOB    NOT NULL, -- f32 little-endian, unit length
    created_at        INTEGER NOT NULL,
    updated_at        INTEGER NOT NULL,
    expires_at        INTEGER,
    deleted_at        INTEGER           -- set: deleted, history kept for restore
) STRICT;

CREATE INDEX memories_by_org_scope_created ON memories (org_id, scope, created_at DESC, id DESC);
CREATE INDEX memories_by_expiry ON memories (expires_at) WHERE expires_at IS NOT NULL;

-- BM25 over facts. rowid = memories.rowid; scope_tag is one token per (org, scope), so a
-- search intersects the posting lists of its scope and its terms instead of scanning.
CREATE VIRTUAL TABLE memories_fts USING fts5 (fact, scope_tag, tokenize = 'porter unicode61');

CREATE TABLE memory_revisions (
    id         TEXT    NOT NULL PRIMARY KEY,
    memory_id  TEXT    NOT NULL,
    org_id     TEXT    NOT NULL,
    action     TEXT    NOT NULL CHECK (action IN ('created', 'updated', 'deleted', 'restored')),
    before     TEXT,             -- JSON snapshot
    after      TEXT,             -- JSON snapshot
    actor      TEXT    NOT NULL,
    job_id     TEXT,
    cause      TEXT,             -- JSON
    created_at INTEGER NOT NULL
) STRICT;

CREATE INDEX memory_revisions_by_memory ON memory_revisions (memory_id, created_at, id);

-- The model every stored embedding came from.
CREATE TABLE embedding_model (
    singleton INTEGER NOT NULL PRIMARY KEY CHECK (singleton = 1),
    model_id  TEXT    NOT NULL,
    dimension INTEGER NOT NULL
) STRICT;
