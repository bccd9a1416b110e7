-- txflow state store schema, version 3 (backtest variants, evidence). Portable SQL:
-- SQLite and PostgreSQL read it as is.

-- Why each detection fired (model::Evidence as a JSON object). NULL for rows committed before
-- this version.
ALTER TABLE detections ADD COLUMN evidence TEXT;

-- The backtest variants of the run, in the order given (`position` from 0). Recorded by the
-- first run of the store; a restart must name the same ones.
CREATE TABLE IF NOT EXISTS variants (
    position   BIGINT PRIMARY KEY,
    name       TEXT NOT NULL UNIQUE,
    thresholds TEXT NOT NULL
);

-- Each variant's detection ledger: the columns of `detections`, numbered per variant.
CREATE TABLE IF NOT EXISTS variant_detections (
    variant        TEXT NOT NULL,
    seq            BIGINT NOT NULL,
    epoch          BIGINT NOT NULL,
    pattern_id     TEXT NOT NULL,
    action_type    TEXT NOT NULL,
    customer_name  TEXT NOT NULL,
    merchant_id    TEXT NOT NULL,
    y_start_time   TEXT NOT NULL,
    detection_time TEXT NOT NULL,
    file_seq       BIGINT,
    evidence       TEXT,
    PRIMARY KEY (variant, seq),
    UNIQUE (variant, pattern_id, customer_name, merchant_id)
);

-- The first unwritten row of one variant (`file_seq IS NULL`).
CREATE INDEX IF NOT EXISTS variant_detections_file_seq ON variant_detections (variant, file_seq);
