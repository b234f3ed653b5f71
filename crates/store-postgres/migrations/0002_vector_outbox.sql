-- The outbox of memories whose vectors an external index (Qdrant) may lack. On a connection
-- whose setting `contextiq.vector_outbox` is 'on' (every connection of a store opened with the
-- `vector_outbox` option), triggers on `memories` record the id of every memory a write
-- creates, changes in a way the index sees (vector, deletion, scope, org), or erases, in the
-- write's own transaction. The switch is the connection's, not the database's: writes on other
-- connections record nothing, and cost the trigger one lookup of a setting.

-- No foreign key: the entry of a purged memory outlives it. Seqs are never reused, but may
-- commit out of order: entries are acknowledged by their seqs, never up to one.
CREATE TABLE vector_outbox (
    seq        BIGINT      GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    memory_id  UUID        NOT NULL,
    created_at TIMESTAMPTZ NOT NULL DEFAULT clock_timestamp()
);

-- The relay walks the entries in seq order (the primary key); a sync reads them by memory.
CREATE INDEX vector_outbox_by_memory ON vector_outbox (memory_id);

CREATE FUNCTION memories_vector_outbox() RETURNS trigger LANGUAGE plpgsql AS $$
BEGIN
    -- missing_ok: NULL where the setting was never set.
    IF current_setting('contextiq.vector_outbox', true) = 'on' THEN
        IF TG_OP = 'DELETE' THEN
            INSERT INTO vector_outbox (memory_id) VALUES (OLD.id);
        ELSE
            INSERT INTO vector_outbox (memory_id) VALUES (NEW.id);
        END IF;
    END IF;
    RETURN NULL;
END
$$;

CREATE TRIGGER memories_vector_outbox_insert AFTER INSERT ON memories
    FOR EACH ROW EXECUTE FUNCTION memories_vector_outbox();
CREATE TRIGGER memories_vector_outbox_update AFTER UPDATE OF org_id, scope_key, embedding, deleted_at ON memories
    FOR EACH ROW EXECUTE FUNCTION memories_vector_outbox();
CREATE TRIGGER memories_vector_outbox_delete AFTER DELETE ON memories
    FOR EACH ROW EXECUTE FUNCTION memories_vector_outbox();
