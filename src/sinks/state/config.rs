//! Which state store to use ([`StateConfig`], its URL redacted in messages) and opening it:
//! [`open`] for the runner, [`open_read_only`] for reports and inspection.

use std::fmt;
use std::path::PathBuf;

use super::postgres::{self, PgOptions};
use super::sqlite;
use super::store::{StateReader, StateWriter};
use crate::error::StateError;
use crate::redact;

/// Which state store to use: the embedded SQLite file or a PostgreSQL database with its
/// connection options. `Debug` and `Display` redact the password.
#[derive(Clone)]
pub enum StateConfig {
    /// `sqlite://PATH`.
    Embedded { path: PathBuf },
    /// A `postgres://` / `postgresql://` URL (libpq's TLS options allowed, see
    /// [`postgres`]) and the options beyond it.
    Postgres { url: String, options: PgOptions },
}

impl StateConfig {
    /// `sqlite://PATH` → [`StateConfig::Embedded`]; `postgres://` or `postgresql://` →
    /// [`StateConfig::Postgres`] with default options; anything else is
    /// [`StateError::BadUrl`].
    pub fn parse(url: &str) -> Result<StateConfig, StateError> {
        if let Some(path) = url.strip_prefix("sqlite://") {
            if path.is_empty() {
                return Err(StateError::BadUrl {
                    url: url.to_string(),
                    reason: "expected sqlite://PATH".into(),
                });
            }
            Ok(StateConfig::Embedded { path: path.into() })
        } else if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            Ok(StateConfig::Postgres {
                url: url.to_string(),
                options: PgOptions::default(),
            })
        } else {
            Err(StateError::BadUrl {
                url: redact::url(url),
                reason: "expected sqlite://PATH or postgres://USER@HOST/DB".into(),
            })
        }
    }

    /// The same store with these PostgreSQL options (the embedded store has none: unchanged).
    pub fn with_pg_options(self, options: PgOptions) -> StateConfig {
        match self {
            StateConfig::Postgres { url, .. } => StateConfig::Postgres { url, options },
            embedded => embedded,
        }
    }

    /// The store's URL for messages and logs, any password redacted (also its `Display`).
    pub fn describe(&self) -> String {
        match self {
            StateConfig::Embedded { path } => format!("sqlite://{}", path.display()),
            StateConfig::Postgres { url, .. } => redact::url(url),
        }
    }
}

impl fmt::Debug for StateConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            StateConfig::Embedded { path } => {
                f.debug_struct("Embedded").field("path", path).finish()
            }
            StateConfig::Postgres { url, options } => f
                .debug_struct("Postgres")
                .field("url", &redact::url(url))
                .field("options", options)
                .finish(),
        }
    }
}

impl fmt::Display for StateConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.describe())
    }
}

/// Opens the configured state store (PostgreSQL: connects, within the options' start-up bound).
pub fn open(config: &StateConfig) -> Result<Box<dyn StateWriter>, StateError> {
    match config {
        StateConfig::Embedded { path } => Ok(Box::new(sqlite::SqliteStore::open(path)?)),
        StateConfig::Postgres { url, options } => {
            Ok(Box::new(postgres::PgStore::connect(url, options)?))
        }
    }
}

/// Opens the configured state store as [`open`] does, but never creates an embedded one: a
/// run failure is recorded only in a store that exists ([`StateWriter::record_failure`]).
pub fn open_existing(config: &StateConfig) -> Result<Box<dyn StateWriter>, StateError> {
    if let StateConfig::Embedded { path } = config {
        if !path.is_file() {
            return Err(StateError::Io {
                op: "opening",
                path: path.display().to_string(),
                source: std::io::ErrorKind::NotFound.into(),
            });
        }
    }
    open(config)
}

/// Opens the configured state store for reading only (reports, inspection): an embedded
/// store must exist and is never written, created or switched to WAL
/// ([`sqlite::SqliteStore::open_read_only`]); PostgreSQL sessions are read-only
/// ([`postgres::PgStore::connect_read_only`]). Readers refuse another schema version.
pub fn open_read_only(config: &StateConfig) -> Result<Box<dyn StateReader>, StateError> {
    match config {
        StateConfig::Embedded { path } => Ok(Box::new(sqlite::SqliteStore::open_read_only(path)?)),
        StateConfig::Postgres { url, options } => Ok(Box::new(
            postgres::PgStore::connect_read_only(url, options)?,
        )),
    }
}

#[cfg(test)]
mod tests {
    use std::path::Path;
    use std::time::Duration;

    use super::*;

    #[test]
    fn parses_state_urls() {
        let embedded = StateConfig::parse("sqlite:///tmp/state.db").unwrap();
        assert!(
            matches!(&embedded, StateConfig::Embedded { path } if path == Path::new("/tmp/state.db"))
        );
        assert_eq!(embedded.to_string(), "sqlite:///tmp/state.db");
        for url in ["postgres://u:pw@h/db", "postgresql://u:pw@h/db"] {
            let options = PgOptions {
                connect_timeout: Duration::from_secs(3),
                ..PgOptions::default()
            };
            let config = StateConfig::parse(url).unwrap().with_pg_options(options);
            match &config {
                StateConfig::Postgres { url: u, options } => {
                    assert_eq!(
                        (u.as_str(), options.connect_timeout),
                        (url, Duration::from_secs(3))
                    )
                }
                other => panic!("{url}: {other:?}"),
            }
            assert!(!config.describe().contains("pw"), "{config}");
            assert!(!format!("{config:?}").contains("pw"), "{config:?}");
        }
        for (url, shown) in [
            ("mysql://u:pw@h/db", "mysql://u:***@h/db"),
            ("sqlite://", "sqlite://"),
        ] {
            match StateConfig::parse(url) {
                Err(e @ StateError::BadUrl { .. }) => {
                    assert!(e.to_string().contains(shown), "{e}")
                }
                other => panic!("{url}: {other:?}"),
            }
        }
    }
}
