-- Context engineering: token counts, state deltas and compaction events.
ALTER TABLE events ADD COLUMN token_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE events ADD COLUMN state_delta TEXT NOT NULL DEFAULT '{}'; -- JSON object
ALTER TABLE events ADD COLUMN kind TEXT NOT NULL DEFAULT 'message' CHECK (kind IN ('message', 'compaction'));
ALTER TABLE events ADD COLUMN detail TEXT; -- JSON: what a compaction covers
-- Events stored before token counting get the documented approximation (a token per 4 bytes).
UPDATE events SET token_count = (length(CAST(content AS BLOB)) + 3) / 4;
CREATE INDEX events_compactions ON events (session_id, seq) WHERE kind <> 'message';

ALTER TABLE sessions ADD COLUMN token_count INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN compaction_policy TEXT; -- JSON, NULL: the server's
ALTER TABLE sessions ADD COLUMN compacted_through_seq INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN uncompacted_events INTEGER NOT NULL DEFAULT 0;
ALTER TABLE sessions ADD COLUMN uncompacted_tokens INTEGER NOT NULL DEFAULT 0;
UPDATE sessions SET token_count = (SELECT COALESCE(SUM(token_count), 0) FROM events WHERE events.session_id = sessions.id),
    uncompacted_events = event_count;
UPDATE sessions SET uncompacted_tokens = token_count;
