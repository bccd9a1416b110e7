//! The SQL both state stores run: the migrations from `sql/` and every statement, in one
//! place. Statements are written once, in PostgreSQL's placeholder convention (`$1`, `$2`,
//! ...); the SQLite store runs them through [`sqlite`], which rewrites each `$N` to `?N`
//! (the same parameter numbering). Where the dialects differ (timestamps, casts, batched
//! inserts through `UNNEST`) the two versions stand side by side, `PG_` and `SQLITE_`.
//! Statements only PostgreSQL needs (the advisory lock) live with the lease.

use std::borrow::Cow;

/// Versioned migrations, applied in order, each at most once (`schema_migrations`).
pub const MIGRATIONS: &[(i64, &str)] = &[
    (1, include_str!("../../../sql/001_init.sql")),
    (2, include_str!("../../../sql/002_chunk_digest.sql")),
    (3, include_str!("../../../sql/003_variants_evidence.sql")),
    (4, include_str!("../../../sql/004_checkpoints.sql")),
    (5, include_str!("../../../sql/005_thresholds_json.sql")),
    (6, include_str!("../../../sql/006_run_failures.sql")),
];

/// `sql` with every `$N` placeholder written `?N`, for SQLite. No statement here has a `$`
/// in a string literal.
pub fn sqlite(sql: &str) -> Cow<'_, str> {
    if sql.contains('$') {
        Cow::Owned(sql.replace('$', "?"))
    } else {
        Cow::Borrowed(sql)
    }
}

/// The statements whose text differs between the two dialects (the batched inserts are the
/// adapters' own).
pub struct Dialect {
    /// Whether the migrations table exists (a reader must not create it).
    pub has_migrations: &'static str,
    pub record_migration: &'static str,
    pub insert_epoch: &'static str,
    pub insert_failure: &'static str,
}

pub(crate) const SQLITE_DIALECT: Dialect = Dialect {
    has_migrations: SQLITE_HAS_MIGRATIONS,
    record_migration: SQLITE_RECORD_MIGRATION,
    insert_epoch: SQLITE_INSERT_EPOCH,
    insert_failure: SQLITE_INSERT_FAILURE,
};

pub(crate) const PG_DIALECT: Dialect = Dialect {
    has_migrations: PG_HAS_MIGRATIONS,
    record_migration: PG_RECORD_MIGRATION,
    insert_epoch: PG_INSERT_EPOCH,
    insert_failure: PG_INSERT_FAILURE,
};

// --- migrations -------------------------------------------------------------------------

pub(crate) const CREATE_SCHEMA_MIGRATIONS: &str = "CREATE TABLE IF NOT EXISTS schema_migrations \
                                            (version BIGINT PRIMARY KEY, applied_at TEXT)";
pub(crate) const NEWEST_MIGRATION: &str = "SELECT max(version) FROM schema_migrations";
/// Whether the migrations table exists (a reader must not create it).
pub(crate) const SQLITE_HAS_MIGRATIONS: &str = "SELECT EXISTS (SELECT 1 FROM sqlite_master \
     WHERE type = 'table' AND name = 'schema_migrations')";
pub(crate) const PG_HAS_MIGRATIONS: &str = "SELECT to_regclass('schema_migrations') IS NOT NULL";
/// Records a migration with the time (UTC, milliseconds) it was applied.
pub(crate) const SQLITE_RECORD_MIGRATION: &str =
    "INSERT INTO schema_migrations (version, applied_at) \
     VALUES ($1, strftime('%Y-%m-%dT%H:%M:%fZ', 'now'))";
pub(crate) const PG_RECORD_MIGRATION: &str = "INSERT INTO schema_migrations (version, applied_at) \
     VALUES ($1, to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.MS\"Z\"'))";

// --- run identity and the end of the stream ---------------------------------------------

/// The identity's `run_meta` rows (`run`, `run.*`).
pub(crate) const SELECT_IDENTITY: &str =
    "SELECT key, value FROM run_meta WHERE key = 'run' OR key LIKE 'run.%'";
pub(crate) const ANY_EPOCH: &str = "SELECT EXISTS (SELECT 1 FROM epochs)";
pub(crate) const UPSERT_META: &str = "INSERT INTO run_meta (key, value) VALUES ($1, $2) \
                               ON CONFLICT (key) DO UPDATE SET value = excluded.value";
pub(crate) const CLEAR_FINISHED: &str = "DELETE FROM run_meta WHERE key = 'finished'";
pub(crate) const MARK_FINISHED: &str =
    "INSERT INTO run_meta (key, value) VALUES ('finished', '1') \
                                 ON CONFLICT (key) DO UPDATE SET value = excluded.value";
pub(crate) const IS_FINISHED: &str = "SELECT 1 FROM run_meta WHERE key = 'finished'";
/// Every `run_meta` entry (inspection).
pub(crate) const ALL_META: &str = "SELECT key, value FROM run_meta ORDER BY key";

// --- recovery ---------------------------------------------------------------------------

pub(crate) const EPOCH_DIGESTS: &str = "SELECT epoch, chunk_digest FROM epochs ORDER BY epoch";
pub(crate) const EMITTED: &str =
    "SELECT pattern_id, customer_name, merchant_id FROM detections ORDER BY seq";
pub(crate) const MAX_SEQ: &str = "SELECT max(seq) FROM detections";
pub(crate) const MAX_EPOCH: &str = "SELECT max(epoch) FROM epochs";

// --- the epoch commit -------------------------------------------------------------------

/// The progress row, inserted only if no epoch at or above it is committed (0 rows = refused).
pub(crate) const SQLITE_INSERT_EPOCH: &str =
    "INSERT INTO epochs (epoch, chunk_key, rows_accepted, rows_rejected, committed_at, \
     chunk_digest) SELECT $1, $2, $3, $4, $5, $6 \
     WHERE NOT EXISTS (SELECT 1 FROM epochs WHERE epoch >= $1)";
pub(crate) const PG_INSERT_EPOCH: &str =
    "INSERT INTO epochs (epoch, chunk_key, rows_accepted, rows_rejected, committed_at, \
     chunk_digest) SELECT $1::int8, $2::text, $3::int8, $4::int8, $5::text, $6::text \
     WHERE NOT EXISTS (SELECT 1 FROM epochs WHERE epoch >= $1::int8)";
/// Adds counter deltas: SQLite one merchant per execution, PostgreSQL all in one (arrays).
pub(crate) const SQLITE_UPSERT_COUNT: &str =
    "INSERT INTO merchant_transaction_counts (merchant_id, total_transactions) \
     VALUES ($1, $2) ON CONFLICT (merchant_id) DO UPDATE SET total_transactions = \
     merchant_transaction_counts.total_transactions + excluded.total_transactions";
pub(crate) const PG_UPSERT_COUNTS: &str =
    "INSERT INTO merchant_transaction_counts (merchant_id, total_transactions) \
     SELECT * FROM UNNEST($1::text[], $2::int8[]) \
     ON CONFLICT (merchant_id) DO UPDATE SET total_transactions = \
     merchant_transaction_counts.total_transactions + excluded.total_transactions";
/// Inserts ledger rows: SQLite one per execution, PostgreSQL all in one (arrays).
pub(crate) const SQLITE_INSERT_DETECTION: &str =
    "INSERT INTO detections (seq, epoch, pattern_id, action_type, customer_name, merchant_id, \
     y_start_time, detection_time, file_seq, evidence) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10)";
pub(crate) const PG_INSERT_DETECTIONS: &str =
    "INSERT INTO detections (seq, epoch, pattern_id, action_type, customer_name, merchant_id, \
     y_start_time, detection_time, file_seq, evidence) \
     SELECT * FROM UNNEST($1::int8[], $2::int8[], $3::text[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::int8[], $10::text[])";
/// Inserts variant ledger rows (the variant's name first): SQLite one per execution,
/// PostgreSQL every variant's rows of the epoch in one (arrays).
pub(crate) const SQLITE_INSERT_VARIANT_DETECTION: &str =
    "INSERT INTO variant_detections (variant, seq, epoch, pattern_id, action_type, \
     customer_name, merchant_id, y_start_time, detection_time, file_seq, evidence) \
     VALUES ($1, $2, $3, $4, $5, $6, $7, $8, $9, $10, $11)";
pub(crate) const PG_INSERT_VARIANT_DETECTIONS: &str =
    "INSERT INTO variant_detections (variant, seq, epoch, pattern_id, action_type, \
     customer_name, merchant_id, y_start_time, detection_time, file_seq, evidence) \
     SELECT * FROM UNNEST($1::text[], $2::int8[], $3::int8[], $4::text[], $5::text[], \
     $6::text[], $7::text[], $8::text[], $9::text[], $10::int8[], $11::text[])";

// --- the ledger and inspection ----------------------------------------------------------

/// Ledger rows with `seq` in `[$1, $2)`; [`super::LedgerRow`]'s fields in order.
pub(crate) const LEDGER_RANGE: &str = "SELECT seq, epoch, pattern_id, action_type, customer_name, \
     merchant_id, y_start_time, detection_time, file_seq, evidence FROM detections \
     WHERE seq >= $1 AND seq < $2 ORDER BY seq";
/// The whole ledger; [`super::LedgerRow`]'s fields in order.
pub(crate) const LEDGER: &str = "SELECT seq, epoch, pattern_id, action_type, customer_name, \
     merchant_id, y_start_time, detection_time, file_seq, evidence FROM detections ORDER BY seq";
pub(crate) const FIRST_UNWRITTEN: &str = "SELECT min(seq) FROM detections WHERE file_seq IS NULL";
pub(crate) const MARK_WRITTEN: &str =
    "UPDATE detections SET file_seq = $1 WHERE seq >= $2 AND seq < $3";
pub(crate) const MERCHANT_COUNTS: &str = "SELECT merchant_id, total_transactions \
     FROM merchant_transaction_counts ORDER BY merchant_id";
/// The progress table; [`super::EpochRow`]'s fields in order.
pub(crate) const EPOCH_ROWS: &str = "SELECT epoch, chunk_key, rows_accepted, rows_rejected, \
     committed_at, chunk_digest FROM epochs ORDER BY epoch";

// --- checkpoints ------------------------------------------------------------------------

/// Records a checkpoint (a rewrite of the same epoch's, after a crash, replaces it).
pub(crate) const UPSERT_CHECKPOINT: &str =
    "INSERT INTO checkpoints (epoch, location, bytes, digest, \
     format_version, created_at) VALUES ($1, $2, $3, $4, $5, $6) ON CONFLICT (epoch) DO UPDATE \
     SET location = excluded.location, bytes = excluded.bytes, digest = excluded.digest, \
     format_version = excluded.format_version, created_at = excluded.created_at";
/// The recorded checkpoints; [`super::CheckpointRow`]'s fields in order, oldest first.
pub(crate) const CHECKPOINTS: &str = "SELECT epoch, location, bytes, digest, format_version, \
     created_at FROM checkpoints ORDER BY epoch";
pub(crate) const DELETE_CHECKPOINT: &str = "DELETE FROM checkpoints WHERE epoch = $1";

// --- run failures ---------------------------------------------------------------------

/// Records a run's failure after the newest recorded (`seq` one past the highest).
pub(crate) const SQLITE_INSERT_FAILURE: &str =
    "INSERT INTO run_failures (seq, at_ms, at, message, domain, exit_code) \
     SELECT coalesce(max(seq), 0) + 1, $1, $2, $3, $4, $5 FROM run_failures";
pub(crate) const PG_INSERT_FAILURE: &str =
    "INSERT INTO run_failures (seq, at_ms, at, message, domain, exit_code) \
     SELECT coalesce(max(seq), 0) + 1, $1::int8, $2::text, $3::text, $4::text, $5::int8 \
     FROM run_failures";
/// Forgets all but the newest `$1` failures.
pub(crate) const PRUNE_FAILURES: &str =
    "DELETE FROM run_failures WHERE seq <= (SELECT max(seq) FROM run_failures) - $1";
/// The newest recorded failure; [`super::FailureRow`]'s fields in order.
pub(crate) const LAST_FAILURE: &str = "SELECT at_ms, at, message, domain, exit_code \
     FROM run_failures ORDER BY seq DESC LIMIT 1";

// --- backtest variants ------------------------------------------------------------------

/// The recorded variants, in their order; [`super::VariantSpec`]'s fields in order.
pub const VARIANTS: &str = "SELECT name, thresholds FROM variants ORDER BY position";
pub(crate) const VARIANT_KNOWN: &str = "SELECT 1 FROM variants WHERE name = $1";
pub(crate) const DELETE_VARIANTS: &str = "DELETE FROM variants";
pub(crate) const INSERT_VARIANT: &str =
    "INSERT INTO variants (position, name, thresholds) VALUES ($1, $2, $3)";
/// Every variant's detections (`variant`, then the detection key), for recovery.
pub(crate) const VARIANT_EMITTED: &str = "SELECT variant, pattern_id, customer_name, merchant_id \
     FROM variant_detections ORDER BY variant, seq";
/// Each variant ledger's length and highest sequence number (a consistency check).
pub(crate) const VARIANT_LEDGER_SIZES: &str =
    "SELECT variant, count(*), max(seq) FROM variant_detections GROUP BY variant";
/// A variant's ledger rows with `seq` in `[$2, $3)`; [`super::LedgerRow`]'s fields in order.
pub(crate) const VARIANT_LEDGER_RANGE: &str = "SELECT seq, epoch, pattern_id, action_type, \
     customer_name, merchant_id, y_start_time, detection_time, file_seq, evidence \
     FROM variant_detections WHERE variant = $1 AND seq >= $2 AND seq < $3 ORDER BY seq";
/// A variant's whole ledger; [`super::LedgerRow`]'s fields in order.
pub(crate) const VARIANT_LEDGER: &str = "SELECT seq, epoch, pattern_id, action_type, \
     customer_name, merchant_id, y_start_time, detection_time, file_seq, evidence \
     FROM variant_detections WHERE variant = $1 ORDER BY seq";
pub(crate) const VARIANT_FIRST_UNWRITTEN: &str =
    "SELECT min(seq) FROM variant_detections WHERE variant = $1 AND file_seq IS NULL";
pub(crate) const VARIANT_MARK_WRITTEN: &str = "UPDATE variant_detections SET file_seq = $2 \
     WHERE variant = $1 AND seq >= $3 AND seq < $4";

/// The statements of one kind of ledger: a variant's take the variant as `$1`, then the
/// parameters the baseline's take.
pub(crate) struct LedgerSql {
    pub all: &'static str,
    pub range: &'static str,
    pub first_unwritten: &'static str,
    pub mark_written: &'static str,
}

/// The statements of a variant's ledger (`variant`) or of the baseline's.
pub(crate) fn ledger_sql(variant: bool) -> &'static LedgerSql {
    const BASELINE: LedgerSql = LedgerSql {
        all: LEDGER,
        range: LEDGER_RANGE,
        first_unwritten: FIRST_UNWRITTEN,
        mark_written: MARK_WRITTEN,
    };
    const VARIANT: LedgerSql = LedgerSql {
        all: VARIANT_LEDGER,
        range: VARIANT_LEDGER_RANGE,
        first_unwritten: VARIANT_FIRST_UNWRITTEN,
        mark_written: VARIANT_MARK_WRITTEN,
    };
    if variant {
        &VARIANT
    } else {
        &BASELINE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rewrites_placeholders_for_sqlite() {
        assert_eq!(
            sqlite(MARK_WRITTEN),
            "UPDATE detections SET file_seq = ?1 WHERE seq >= ?2 AND seq < ?3"
        );
        assert!(matches!(sqlite(MAX_SEQ), Cow::Borrowed(_)));
    }

    #[test]
    fn migrations_are_numbered_in_order() {
        let versions: Vec<i64> = MIGRATIONS.iter().map(|(v, _)| *v).collect();
        assert_eq!(versions, (1..=MIGRATIONS.len() as i64).collect::<Vec<_>>());
    }
}
