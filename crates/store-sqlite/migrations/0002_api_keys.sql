-- API keys: only the SHA-256 of each key is stored.

CREATE TABLE api_keys (
    id                    TEXT    NOT NULL PRIMARY KEY,
    org_id                TEXT    NOT NULL,
    name                  TEXT    NOT NULL,
    key_hash              TEXT    NOT NULL UNIQUE, -- hex SHA-256 of the key text
    prefix                TEXT    NOT NULL,        -- first characters, to recognise a key
    permissions           TEXT    NOT NULL,        -- JSON array of permission names
    scope                 TEXT,                    -- canonical JSON object, or NULL: the whole org
    rate_limit_per_second INTEGER,
    created_at            INTEGER NOT NULL,
    expires_at            INTEGER,
    revoked_at            INTEGER,
    last_used_at          INTEGER
) STRICT;

CREATE INDEX api_keys_by_org_created ON api_keys (org_id, created_at DESC);
