-- Context engineering: token counts, state deltas and compaction events.
ALTER TABLE events ADD COLUMN token_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN state_delta JSONB NOT NULL DEFAULT '{}';
ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT 'message' CHECK (kind IN ('message', 'compaction'));
ALTER TABLE events ADD COLUMN detail JSONB; -- what a compaction covers
-- Events stored before token counting get the documented approximation (a token per 4 bytes).
UPDATE events SET token_count = (octet_length(content::text) + 3) / 4;
CREATE INDEX events_compactions ON events (session_id, seq) WHERE kind <> 'message';

ALTER TABLE sessions ADD COLUMN token_count BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN compaction_policy JSONB; -- NULL: the server's
ALTER TABLE sessions ADD COLUMN compacted_through_seq BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN uncompacted_events BIGINT NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN uncompacted_tokens BIGINT NOT NULL DEFAULT 0;
UPDATE sessions SET token_count = sums.tokens, uncompacted_events = sessions.event_count,
    uncompacted_tokens = sums.tokens
FROM (SELECT session_id, sum(token_count) AS tokens FROM events GROUP BY session_id) AS sums
WHERE sums.session_id = sessions.id;
