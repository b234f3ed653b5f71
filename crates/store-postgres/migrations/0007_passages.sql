-- The vectors of a long fact's passages (each two adjacent sentences); NULL for a fact of
-- fewer than three sentences, and for memories stored before this column existed until
-- `contextiq reindex`. A memory scores as its best vector, the fact's or a passage's.
ALTER TABLE memories ADD COLUMN passages vector[];
