-- The vectors of a long fact's passages (each two adjacent sentences), one after another as
-- f32 little-endian, each as long as `embedding`; NULL for a fact of fewer than three
-- sentences, and for memories stored before this column existed until `contextiq reindex`.
ALTER TABLE memories ADD COLUMN passages BLOB;
