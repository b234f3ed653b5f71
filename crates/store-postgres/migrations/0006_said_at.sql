-- When a memory was said: the conversation turn its current value comes from, or the time the
-- client gave. Memories stored before this column existed were said, as far as anyone knows,
-- when they were created.
ALTER TABLE memories ADD COLUMN said_at TIMESTAMPTZ;
UPDATE memories SET said_at = created_at;
ALTER TABLE memories ALTER COLUMN said_at SET NOT NULL;
