-- txflow state store schema, version 4: checkpoints of the dataflow's state. Portable SQL:
-- SQLite and PostgreSQL read it as is.

-- A checkpoint is recorded only once its manifest (written after every shard) is whole and
-- its epoch is committed; a restart loads the newest valid one and replays only the chunks
-- after it. Only the newest few are kept (rows and objects).
CREATE TABLE IF NOT EXISTS checkpoints (
    epoch          BIGINT PRIMARY KEY,
    -- The manifest's location (the checkpoint store's root, then the manifest's key).
    location       TEXT NOT NULL,
    -- The checkpoint's size: shards and manifest.
    bytes          BIGINT NOT NULL,
    -- BLAKE3 of the manifest's bytes, which name the shards (each shard checks itself).
    digest         TEXT NOT NULL,
    format_version BIGINT NOT NULL,
    created_at     TEXT NOT NULL
);
