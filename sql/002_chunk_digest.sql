-- txflow state store schema, version 2: each committed epoch records the digest of the chunk
-- it was computed from (BLAKE3, 64 hex digits), so a recovery that replays the chunk can
-- refuse one whose bytes changed since (the landing store must be append-only). NULL for
-- epochs committed before this version. Portable SQL: SQLite and PostgreSQL read it as is.
ALTER TABLE epochs ADD COLUMN chunk_digest TEXT;
