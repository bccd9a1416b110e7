-- txflow state store schema, version 6: the failures of earlier runs, so that the next run,
-- txflow-report and the console can show why the last one ended. History only: a later
-- successful run leaves them. Only the newest few are kept. Portable SQL: SQLite and
-- PostgreSQL read it as is.

CREATE TABLE IF NOT EXISTS run_failures (
    -- Ascending in the order they were recorded.
    seq       BIGINT PRIMARY KEY,
    -- When the run failed: milliseconds since the Unix epoch, and the same instant as IST
    -- RFC 3339 text.
    at_ms     BIGINT NOT NULL,
    at        TEXT NOT NULL,
    -- The error's one line, its domain (input, configuration, external service, internal)
    -- and the exit status the process ended with.
    message   TEXT NOT NULL,
    domain    TEXT NOT NULL,
    exit_code BIGINT NOT NULL
);
