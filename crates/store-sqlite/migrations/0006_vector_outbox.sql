-- The outbox of memories whose vectors an external index (Qdrant) may lack. A store opened with
-- the `vector_outbox` option creates TEMP triggers on `memories` on its own write connection
-- (see `src/outbox.rs`): they record the id of every memory a write of that store creates,
-- changes in a way the index sees (vector, deletion, scope, org), or erases, in the write's
-- own transaction. The switch is the connection's, not the database's: a store opened without
-- the option records nothing and leaves the triggers of others alone.

-- AUTOINCREMENT: a seq is never reused, so acknowledging the entries a sync read cannot remove
-- an entry written after them.
CREATE TABLE vector_outbox (
    seq        INTEGER NOT NULL PRIMARY KEY AUTOINCREMENT,
    memory_id  TEXT    NOT NULL,
    created_at INTEGER NOT NULL -- microseconds since the Unix epoch (millisecond precision)
) STRICT;

-- The relay walks the entries in seq order (the primary key); a sync reads them by memory.
CREATE INDEX vector_outbox_by_memory ON vector_outbox (memory_id);
