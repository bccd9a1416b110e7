-- txflow state store schema, version 1. Applied by both the embedded (SQLite) and the
-- PostgreSQL state stores; only portable SQL (TEXT, BIGINT) is used so both read it as is.

-- Which run this store belongs to (mode, landing location, replay range), the lease, and
-- whether the stream ended. Key/value so later versions can add entries without migrations.
CREATE TABLE IF NOT EXISTS run_meta (
    key   TEXT PRIMARY KEY,
    value TEXT NOT NULL
);

-- N(m) after the last committed epoch: each epoch's counter deltas are added here.
CREATE TABLE IF NOT EXISTS merchant_transaction_counts (
    merchant_id        TEXT PRIMARY KEY,
    total_transactions BIGINT NOT NULL
);

-- One row per committed epoch: the progress record, committed with the epoch's data.
CREATE TABLE IF NOT EXISTS epochs (
    epoch         BIGINT PRIMARY KEY,
    chunk_key     TEXT NOT NULL,
    rows_accepted BIGINT NOT NULL,
    rows_rejected BIGINT NOT NULL,
    committed_at  TEXT NOT NULL
);

-- The detection ledger: every detection ever emitted, numbered in output order.
CREATE TABLE IF NOT EXISTS detections (
    seq            BIGINT PRIMARY KEY,
    epoch          BIGINT NOT NULL,
    pattern_id     TEXT NOT NULL,
    action_type    TEXT NOT NULL,
    customer_name  TEXT NOT NULL,
    merchant_id    TEXT NOT NULL,
    y_start_time   TEXT NOT NULL,
    detection_time TEXT NOT NULL,
    file_seq       BIGINT,
    UNIQUE (pattern_id, customer_name, merchant_id)
);

CREATE INDEX IF NOT EXISTS detections_file_seq ON detections (file_seq);
