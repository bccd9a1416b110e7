//! The run identity (SPEC §6): what run a store belongs to, how it is recorded in `run_meta`
//! (one key per component), and what `begin_run` does when the stored identity differs.

use std::collections::BTreeMap;
use std::fmt;

use crate::error::StateError;
use crate::objectstore::canonical_location;
use crate::redact;

/// Live or replay (`run.mode` in `run_meta`: `live`, `replay`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum RunMode {
    Live,
    Replay,
}

impl RunMode {
    /// `live` or `replay`, as stored.
    pub fn as_str(self) -> &'static str {
        match self {
            RunMode::Live => "live",
            RunMode::Replay => "replay",
        }
    }
}

impl fmt::Display for RunMode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What run a store belongs to (SPEC §6): mode, landing, resolved replay range, thresholds
/// and the importance file's digest. A store that holds epochs of another run is refused,
/// naming what differs.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RunIdentity {
    pub mode: RunMode,
    /// The landing location (canonical when local: `objectstore::canonical_location`;
    /// shown through [`redact::url`]).
    pub landing: String,
    /// Replay: the range as resolved from the landing listing when the run started (its
    /// first and last chunk), so that chunks arriving later make a rerun another run.
    /// Live: `None`.
    pub from: Option<u64>,
    pub to: Option<u64>,
    /// The pattern thresholds, as their canonical JSON (`Thresholds::to_json`): resuming a
    /// store under other thresholds would mix two configurations in one ledger.
    pub thresholds: String,
    /// Where the importance file was read from (named in messages; not compared: the same
    /// bytes read from elsewhere are the same input).
    pub importance: String,
    /// The importance file's digest (`sources::landing::chunk_digest` of its bytes).
    pub importance_digest: String,
}

/// `run_meta` keys of the identity's components (`run` holds [`RunIdentity::describe`], for
/// people; it is not compared).
const META_RUN: &str = "run";
const META_MODE: &str = "run.mode";
const META_LANDING: &str = "run.landing";
const META_FROM: &str = "run.from";
const META_TO: &str = "run.to";
const META_THRESHOLDS: &str = "run.thresholds";
const META_IMPORTANCE: &str = "run.importance";
const META_IMPORTANCE_DIGEST: &str = "run.importance_digest";

/// The components every identity recorded by this version has (a store whose identity lacks
/// one was created by an earlier version).
const META_COMPARED: [&str; 6] = [
    META_MODE,
    META_LANDING,
    META_FROM,
    META_TO,
    META_THRESHOLDS,
    META_IMPORTANCE_DIGEST,
];

impl RunIdentity {
    /// A stable one-line description, stored in `run_meta` (for people) and logged; the
    /// landing as [`redact::url`] shows it.
    pub fn describe(&self) -> String {
        let bound = |b: Option<u64>| b.map_or_else(|| "*".to_string(), |v| v.to_string());
        let landing = redact::url(&self.landing);
        let run = match self.mode {
            RunMode::Replay => format!(
                "replay of {landing} chunks [{}, {}]",
                bound(self.from),
                bound(self.to)
            ),
            RunMode::Live => format!("{} of {landing}", self.mode),
        };
        if self.thresholds.is_empty() {
            run
        } else {
            format!("{run} with thresholds {}", self.thresholds)
        }
    }

    /// The `run_meta` entries recording this identity, one per component.
    /// What a checkpoint is keyed by: the identity's components that decide the dataflow's
    /// state (mode, range, thresholds, the importance file's bytes), hashed.
    pub(crate) fn checkpoint_key(&self) -> String {
        let bound = |b: Option<u64>| b.map_or_else(String::new, |v| v.to_string());
        let text = format!(
            "{}\n{}\n{}\n{}\n{}",
            self.mode.as_str(),
            bound(self.from),
            bound(self.to),
            self.thresholds,
            self.importance_digest
        );
        blake3::hash(text.as_bytes()).to_hex().to_string()
    }

    pub(super) fn meta_entries(&self) -> Vec<(&'static str, String)> {
        let bound = |b: Option<u64>| b.map_or_else(String::new, |v| v.to_string());
        vec![
            (META_RUN, self.describe()),
            (META_MODE, self.mode.as_str().to_string()),
            (META_LANDING, self.landing.clone()),
            (META_FROM, bound(self.from)),
            (META_TO, bound(self.to)),
            (META_THRESHOLDS, self.thresholds.clone()),
            (META_IMPORTANCE, self.importance.clone()),
            (META_IMPORTANCE_DIGEST, self.importance_digest.clone()),
        ]
    }
}

/// How a digest is shown in messages: its first 16 hex digits.
fn short_digest(digest: &str) -> &str {
    digest.get(..16).unwrap_or(digest)
}

/// The stored identity (`run_meta` entries) next to the requested one.
struct Comparison<'a> {
    stored: &'a BTreeMap<String, String>,
    requested: &'a RunIdentity,
    new: BTreeMap<&'static str, String>,
}

impl Comparison<'_> {
    fn old(&self, key: &str) -> &str {
        self.stored.get(key).map_or("", String::as_str)
    }

    fn differs(&self, key: &str) -> bool {
        self.old(key) != self.new[key]
    }

    /// Whether the landing differs other than in spelling: a store recorded before local
    /// landings were canonical holds the path as it was given (a relative one is taken from
    /// the current directory).
    fn landing_differs(&self) -> bool {
        self.differs(META_LANDING)
            && canonical_location(self.old(META_LANDING))
                != canonical_location(&self.new[META_LANDING])
    }

    /// The replay range clause, if the range differs (and the mode does not).
    fn range(&self) -> Option<String> {
        if self.differs(META_MODE) || !(self.differs(META_FROM) || self.differs(META_TO)) {
            return None;
        }
        let range = |from: &str, to: &str| {
            let b = |v: &str| (if v.is_empty() { "*" } else { v }).to_string();
            format!("[{}, {}]", b(from), b(to))
        };
        let grown = !self.differs(META_FROM)
            && matches!(
                (self.old(META_TO).parse::<u64>(), self.requested.to),
                (Ok(was), Some(now)) if now > was
            );
        Some(format!(
            "the replay range was {}, now {}{}",
            range(self.old(META_FROM), self.old(META_TO)),
            range(&self.new[META_FROM], &self.new[META_TO]),
            if grown {
                ": more chunks arrived (or --to changed)"
            } else {
                ""
            }
        ))
    }

    /// The importance file clause, if its digest differs.
    fn importance(&self) -> Option<String> {
        if !self.differs(META_IMPORTANCE_DIGEST) {
            return None;
        }
        let requested = self.requested;
        let was = self.old(META_IMPORTANCE);
        let now = redact::url(&requested.importance);
        let file = if was.is_empty() || was == requested.importance {
            now
        } else {
            format!("{now} (the run started with {})", redact::url(was))
        };
        Some(format!(
            "the importance file {file} changed since this run started (digest {}, was {})",
            short_digest(&requested.importance_digest),
            short_digest(self.old(META_IMPORTANCE_DIGEST))
        ))
    }
}

/// The clause refusing an identity recorded by an earlier version, if it is one.
fn earlier_version(stored: &BTreeMap<String, String>) -> Option<String> {
    let missing = META_COMPARED.iter().find(|k| !stored.contains_key(**k))?;
    Some(format!(
        "it was recorded by an earlier version of txflow ({}), without {}",
        stored
            .get(META_RUN)
            .map_or("no description", String::as_str),
        match *missing {
            META_IMPORTANCE_DIGEST => "the importance file's digest",
            META_FROM | META_TO => "the resolved replay range",
            _ => "every component of the run's identity",
        }
    ))
}

/// What differs between the stored identity (`run_meta` entries) and `requested`, each as
/// a clause naming it; empty = the same run.
fn identity_differences(stored: &BTreeMap<String, String>, requested: &RunIdentity) -> Vec<String> {
    if let Some(clause) = earlier_version(stored) {
        return vec![clause];
    }
    let c = Comparison {
        stored,
        requested,
        new: requested.meta_entries().into_iter().collect(),
    };
    let mut out = Vec::new();
    if c.differs(META_MODE) {
        out.push(format!(
            "the mode was {}, now {}",
            c.old(META_MODE),
            requested.mode
        ));
    }
    if c.landing_differs() {
        out.push(format!(
            "the landing was {}, now {}",
            redact::url(c.old(META_LANDING)),
            redact::url(&requested.landing)
        ));
    }
    out.extend(c.range());
    out.extend(thresholds_difference(
        c.old(META_THRESHOLDS),
        &requested.thresholds,
    ));
    out.extend(c.importance());
    out
}

/// The thresholds clause, if the recorded thresholds differ: the keys whose values differ
/// when both records are JSON objects (as recorded since schema version 5, which converted
/// earlier records), the records themselves otherwise.
fn thresholds_difference(was: &str, now: &str) -> Option<String> {
    use serde_json::{Map, Value};
    let object = |text: &str| match serde_json::from_str::<Value>(text) {
        Ok(Value::Object(map)) => Some(map),
        _ => None,
    };
    let (Some(was_map), Some(now_map)) = (object(was), object(now)) else {
        return (was != now).then(|| format!("the thresholds were {was}, now {now}"));
    };
    let shown = |map: &Map<String, Value>, key: &str| match map.get(key) {
        Some(Value::String(text)) => text.clone(),
        Some(value) => value.to_string(),
        None => "unset".to_string(),
    };
    let keys: std::collections::BTreeSet<&String> = was_map.keys().chain(now_map.keys()).collect();
    let changes: Vec<String> = keys
        .into_iter()
        .filter(|key| was_map.get(*key) != now_map.get(*key))
        .map(|key| {
            let (old, new) = (shown(&was_map, key), shown(&now_map, key));
            format!("{key} was {old}, now {new}")
        })
        .collect();
    (!changes.is_empty()).then(|| format!("the thresholds differ: {}", changes.join(", ")))
}

/// What `begin_run` does with the stored run identity (its `run_meta` entries): `Ok(true)` =
/// record `requested` (none stored, or different but the store holds no epochs),
/// `Ok(false)` = the same run, an error naming every difference otherwise.
pub(super) fn record_identity(
    stored: &BTreeMap<String, String>,
    requested: &RunIdentity,
    has_epochs: bool,
) -> Result<bool, StateError> {
    if stored.is_empty() {
        return Ok(true);
    }
    let differences = identity_differences(stored, requested);
    if differences.is_empty() {
        Ok(false)
    } else if has_epochs {
        Err(StateError::DifferentRun { differences })
    } else {
        tracing::info!(
            differences = %differences.join("; "),
            "state store holds no epochs: recording the new run identity"
        );
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn replay(from: u64, to: u64) -> RunIdentity {
        RunIdentity {
            mode: RunMode::Replay,
            landing: "/data/landing".into(),
            from: Some(from),
            to: Some(to),
            thresholds: "t1".into(),
            importance: "/data/CustomerImportance.csv".into(),
            importance_digest: "a".repeat(64),
        }
    }

    fn stored(run: &RunIdentity) -> BTreeMap<String, String> {
        run.meta_entries()
            .into_iter()
            .map(|(k, v)| (k.to_string(), v))
            .collect()
    }

    fn refusal(stored: &BTreeMap<String, String>, requested: &RunIdentity) -> String {
        match record_identity(stored, requested, true) {
            Err(e @ StateError::DifferentRun { .. }) => e.to_string(),
            other => panic!("expected DifferentRun, got {other:?}"),
        }
    }

    #[test]
    fn identity_decisions() {
        let run = replay(0, 29);
        assert!(record_identity(&BTreeMap::new(), &run, true).unwrap());
        assert!(!record_identity(&stored(&run), &run, true).unwrap());
        // The importance file read from elsewhere, same bytes: the same run.
        let moved = RunIdentity {
            importance: "/elsewhere/imp.csv".into(),
            ..run.clone()
        };
        assert!(!record_identity(&stored(&run), &moved, true).unwrap());
        // Different, without epochs: recorded; with epochs: refused.
        assert!(record_identity(&stored(&run), &replay(0, 39), false).unwrap());
        refusal(&stored(&run), &replay(0, 39));
    }

    #[test]
    fn identity_refusals_name_the_difference() {
        let run = replay(0, 29);
        let old = stored(&run);
        let grown = refusal(&old, &replay(0, 39));
        assert!(
            grown.contains("different run")
                && grown.contains("the replay range was [0, 29], now [0, 39]: more chunks arrived")
                && grown.contains("a new run needs a new state store"),
            "{grown}"
        );
        let shifted = refusal(&old, &replay(3, 29));
        assert!(
            shifted.contains("the replay range was [0, 29], now [3, 29]"),
            "{shifted}"
        );
        assert!(!shifted.contains("more chunks"), "{shifted}");

        let edited = RunIdentity {
            importance_digest: "b".repeat(64),
            ..run.clone()
        };
        let message = refusal(&old, &edited);
        assert!(
            message.contains(
                "the importance file /data/CustomerImportance.csv changed since this run started \
                 (digest bbbbbbbbbbbbbbbb, was aaaaaaaaaaaaaaaa)"
            ),
            "{message}"
        );
        assert!(!message.contains("replay range"), "{message}");

        let other = RunIdentity {
            thresholds: "t2".into(),
            landing: "/data/other".into(),
            ..run.clone()
        };
        let message = refusal(&old, &other);
        assert!(
            message.contains("the landing was /data/landing, now /data/other")
                && message.contains("the thresholds were t1, now t2"),
            "{message}"
        );
        let live = RunIdentity {
            mode: RunMode::Live,
            from: None,
            to: None,
            ..run.clone()
        };
        let message = refusal(&old, &live);
        assert!(
            message.contains("the mode was replay, now live"),
            "{message}"
        );
        assert!(!message.contains("replay range"), "{message}");
    }

    /// A secret in a location is stored as given (the identity is compared as stored) and
    /// shown redacted.
    #[test]
    fn locations_are_stored_as_given_and_shown_redacted() {
        let run = RunIdentity {
            landing: "s3://b/landing?token=LeakMe".into(),
            importance: "s3://b/imp.csv?X-Amz-Security-Token=LeakMe".into(),
            ..replay(0, 29)
        };
        let entries = stored(&run);
        assert_eq!(entries[META_LANDING], "s3://b/landing?token=LeakMe");
        assert_eq!(
            entries[META_RUN],
            "replay of s3://b/landing?token=*** chunks [0, 29] with thresholds t1"
        );
        let other = RunIdentity {
            landing: "s3://b/other?token=LeakMe2".into(),
            importance_digest: "b".repeat(64),
            ..run.clone()
        };
        let message = refusal(&entries, &other);
        assert!(
            message
                .contains("the landing was s3://b/landing?token=***, now s3://b/other?token=***")
                && message.contains("the importance file s3://b/imp.csv?X-Amz-Security-Token=***"),
            "{message}"
        );
        assert!(!message.contains("LeakMe"), "{message}");
    }

    #[test]
    fn a_landing_recorded_in_another_spelling_is_the_same_landing() {
        let cwd = std::fs::canonicalize(".").unwrap();
        let run = |landing: &str| RunIdentity {
            landing: landing.into(),
            ..replay(0, 29)
        };
        let canonical = cwd.join("src").display().to_string();
        // Stores recorded with the spelling given (relative ones from this directory).
        for recorded in ["src", "./src", "src/"] {
            let old = stored(&run(recorded));
            assert!(
                !record_identity(&old, &run(&canonical), true).unwrap(),
                "{recorded}"
            );
        }
        let message = refusal(&stored(&run("src")), &run("/data/other"));
        assert!(
            message.contains("the landing was src, now /data/other"),
            "{message}"
        );
        assert!(!record_identity(&stored(&run("s3://b/l")), &run("s3://b/l"), true).unwrap());
        refusal(&stored(&run("s3://b/l")), &run("s3://b/m"));
    }

    #[test]
    fn recorded_thresholds_compare_by_value_and_name_the_keys_that_differ() {
        let json = |count: u64, percentile: &str| {
            format!(r#"{{"child-min-txns":{count},"upgrade-count-percentile":"{percentile}"}}"#)
        };
        let with = |thresholds: String| RunIdentity {
            thresholds,
            ..replay(0, 29)
        };
        let old = stored(&with(json(80, "0.9")));
        assert!(!record_identity(&old, &with(json(80, "0.9")), true).unwrap());
        // The same values in another key order or spacing: the same thresholds.
        let spaced = r#"{ "upgrade-count-percentile": "0.9", "child-min-txns": 80 }"#;
        assert!(!record_identity(&old, &with(spaced.into()), true).unwrap());
        let message = refusal(&old, &with(json(100, "0.9")));
        assert!(
            message.contains("the thresholds differ: child-min-txns was 80, now 100"),
            "{message}"
        );
        assert!(!message.contains("upgrade-count-percentile"), "{message}");
        let message = refusal(&old, &with(json(100, "0.5")));
        assert!(
            message.contains(
                "child-min-txns was 80, now 100, upgrade-count-percentile was 0.9, now 0.5"
            ),
            "{message}"
        );
    }

    #[test]
    fn an_identity_of_an_earlier_version_is_another_run() {
        let legacy: BTreeMap<String, String> =
            [("run".to_string(), "live of /data/landing".to_string())].into();
        let message = refusal(&legacy, &replay(0, 29));
        assert!(
            message.contains("earlier version") && message.contains("live of /data/landing"),
            "{message}"
        );
        // Without epochs the new identity is simply recorded.
        assert!(record_identity(&legacy, &replay(0, 29), false).unwrap());
    }
}
