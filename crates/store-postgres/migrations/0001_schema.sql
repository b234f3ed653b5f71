-- The whole schema of the PostgreSQL store: the same tables as the embedded store, with UUID
-- keys, JSONB documents, timestamptz, foreign keys, full-text search and pgvector.

CREATE EXTENSION IF NOT EXISTS vector;

CREATE TABLE sessions (
    org_id      TEXT        NOT NULL,
    id          UUID        NOT NULL PRIMARY KEY,
    user_id     TEXT        NOT NULL,
    agent_id    TEXT,
    scope       JSONB       NOT NULL,
    state       JSONB       NOT NULL,
    metadata    JSONB       NOT NULL,
    created_at  TIMESTAMPTZ NOT NULL,
    updated_at  TIMESTAMPTZ NOT NULL,
    expires_at  TIMESTAMPTZ,
    event_count BIGINT      NOT NULL DEFAULT 0 -- the last event's seq
);

CREATE INDEX sessions_by_org_created ON sessions (org_id, created_at DESC, id DESC);
CREATE INDEX sessions_by_org_user_created ON sessions (org_id, user_id, created_at DESC, id DESC);
CREATE INDEX sessions_by_org_agent_created ON sessions (org_id, agent_id, created_at DESC, id DESC);
CREATE INDEX sessions_by_expiry ON sessions (expires_at) WHERE expires_at IS NOT NULL;

CREATE TABLE events (
    session_id    UUID        NOT NULL REFERENCES sessions (id) ON DELETE CASCADE,
    seq           BIGINT      NOT NULL,
    org_id        TEXT        NOT NULL,
    id            UUID        NOT NULL UNIQUE,
    author        TEXT        NOT NULL,
    role          TEXT        NOT NULL CHECK (role IN ('user', 'assistant', 'tool', 'system')),
    content       JSONB       NOT NULL,
    metadata      JSONB       NOT NULL,
    timestamp     TIMESTAMPTZ NOT NULL,
    invocation_id TEXT,
    PRIMARY KEY (session_id, seq)
);

CREATE TABLE api_keys (
    id                    UUID        NOT NULL PRIMARY KEY,
    org_id                TEXT        NOT NULL,
    name                  TEXT        NOT NULL,
    key_hash              TEXT        NOT NULL UNIQUE,
    prefix                TEXT        NOT NULL,
    permissions           JSONB       NOT NULL,
    scope                 JSONB,
    rate_limit_per_second BIGINT,
    created_at            TIMESTAMPTZ NOT NULL,
    expires_at            TIMESTAMPTZ,
    revoked_at            TIMESTAMPTZ,
    last_used_at          TIMESTAMPTZ
);

CREATE INDEX api_keys_by_org_created ON api_keys (org_id, created_at DESC);

-- `scope_key` is the canonical text of the scope (keys sorted), the form every lookup uses.
CREATE TABLE memories (
    org_id            TEXT        NOT NULL,
    id                UUID        NOT NULL PRIMARY KEY,
    scope             JSONB       NOT NULL,
    scope_key         TEXT        NOT NULL,
    fact              TEXT        NOT NULL,
    topic             TEXT,
    confidence        DOUBLE PRECISION NOT NULL,
    source_session_id UUID,
    source_event_ids  JSONB       NOT NULL,
    metadata          JSONB       NOT NULL,
    embedding         vector      NOT NULL, -- unit length; its size is the model's
    fact_search       tsvector    GENERATED ALWAYS AS (to_tsvector('english', fact)) STORED,
    created_at        TIMESTAMPTZ NOT NULL,
    updated_at        TIMESTAMPTZ NOT NULL,
    expires_at        TIMESTAMPTZ,
    deleted_at        TIMESTAMPTZ
);

CREATE INDEX memories_by_org_scope_created ON memories (org_id, scope_key, created_at DESC, id DESC);
CREATE INDEX memories_by_expiry ON memories (expires_at) WHERE expires_at IS NOT NULL;
CREATE INDEX memories_fact_search ON memories USING gin (fact_search);
-- The HNSW index depends on the model's dimension: created by `set_embedding_model`.

CREATE TABLE memory_revisions (
    id         UUID        NOT NULL PRIMARY KEY,
    memory_id  UUID        NOT NULL REFERENCES memories (id) ON DELETE CASCADE,
    org_id     TEXT        NOT NULL,
    action     TEXT        NOT NULL CHECK (action IN ('created', 'updated', 'deleted', 'restored')),
    before     JSONB,
    after      JSONB,
    actor      TEXT        NOT NULL,
    job_id     UUID,
    cause      JSONB,
    created_at TIMESTAMPTZ NOT NULL
);

CREATE INDEX memory_revisions_by_memory ON memory_revisions (memory_id, created_at, id);

CREATE TABLE embedding_model (
    singleton BOOLEAN NOT NULL PRIMARY KEY DEFAULT TRUE CHECK (singleton),
    model_id  TEXT    NOT NULL,
    dimension INTEGER NOT NULL
);

CREATE TABLE memory_generation_jobs (
    id           UUID        NOT NULL PRIMARY KEY,
    org_id       TEXT        NOT NULL,
    scope        JSONB       NOT NULL,
    scope_key    TEXT        NOT NULL,
    status       TEXT        NOT NULL CHECK (status IN ('pending', 'running', 'completed', 'failed')),
    source       JSONB       NOT NULL,
    config       JSONB       NOT NULL,
    actor        TEXT        NOT NULL,
    attempts     INTEGER     NOT NULL,
    max_attempts INTEGER     NOT NULL,
    error        TEXT,
    outcome      JSONB       NOT NULL,
    created_at   TIMESTAMPTZ NOT NULL,
    updated_at   TIMESTAMPTZ NOT NULL,
    started_at   TIMESTAMPTZ,
    finished_at  TIMESTAMPTZ,
    run_after    TIMESTAMPTZ NOT NULL,
    lease_until  TIMESTAMPTZ,
    -- When the broker (RabbitMQ) confirmed the job's last message: the job row is its own
    -- outbox, so a job and its message cannot diverge.
    published_at TIMESTAMPTZ,
    -- The W3C trace context of the request that queued the job.
    trace_context JSONB
);

CREATE INDEX memory_generation_jobs_runnable ON memory_generation_jobs (run_after)
    WHERE status IN ('pending', 'running');
CREATE INDEX memory_generation_jobs_by_scope ON memory_generation_jobs (org_id, scope_key, status, created_at);
CREATE INDEX memory_generation_jobs_finished ON memory_generation_jobs (finished_at)
    WHERE status IN ('completed', 'failed');

CREATE TABLE generation_watermarks (
    org_id     TEXT   NOT NULL,
    session_id UUID   NOT NULL,
    scope_key  TEXT   NOT NULL,
    last_seq   BIGINT NOT NULL,
    PRIMARY KEY (org_id, session_id, scope_key)
);
