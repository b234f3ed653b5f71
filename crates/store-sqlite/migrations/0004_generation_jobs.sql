-- Memory generation jobs: the durable queue of the embedded deployment. A worker claims a
-- job by leasing it; a job whose lease passed is taken over (its worker died).

CREATE TABLE memory_generation_jobs (
    id           TEXT    NOT NULL PRIMARY KEY,
    org_id       TEXT    NOT NULL,
    scope        TEXT    NOT NULL, -- canonical JSON object, keys sorted
    status       TEXT    NOT NULL, -- pending, running, completed, failed
    source       TEXT    NOT NULL, -- JSON
    config       TEXT    NOT NULL, -- JSON
    actor        TEXT    NOT NULL,
    attempts     INTEGER NOT NULL,
    max_attempts INTEGER NOT NULL,
    error        TEXT,
    outcome      TEXT    NOT NULL, -- JSON
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    started_at   INTEGER,
    finished_at  INTEGER,
    run_after    INTEGER NOT NULL,
    lease_until  INTEGER
) STRICT;

CREATE INDEX memory_generation_jobs_runnable ON memory_generation_jobs (run_after)
    WHERE status IN ('pending', 'running');
CREATE INDEX memory_generation_jobs_by_scope ON memory_generation_jobs (org_id, scope, status);

-- How far each (session, scope) has been processed, so re-generating a grown session reads
-- only its new events. Advanced in the transaction that completes a job.
CREATE TABLE generation_watermarks (
    org_id     TEXT    NOT NULL,
    session_id TEXT    NOT NULL,
    scope      TEXT    NOT NULL,
    last_seq   INTEGER NOT NULL,
    PRIMARY KEY (org_id, session_id, scope)
) STRICT, WITHOUT ROWID;
