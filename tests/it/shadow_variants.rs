//! Shadow variants on a live run: the variants run in the live run's dataflow, beside its own
//! thresholds (the baseline), into their own ledgers and `variants/<NAME>/` files.
//!
//! - the baseline of a live run with two shadow variants equals that of the same live run
//!   without them (ledger, progress rows, counts, every production file; times aside, since
//!   a live run's times are the wall clock);
//! - each shadow variant's ledger and files equal those of a replay of the same chunks with
//!   the same variants (times aside), and match the independent reference for its thresholds;
//! - a restart naming other shadow variants is refused and changes nothing;
//! - `mechanism-y` killed (SIGKILL) during a live run with shadow variants, then restarted,
//!   leaves what an uninterrupted run leaves (times aside).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;

use common::outputs::{named_tree, timeless_epochs, timeless_ledger, TimelessLedgerRow};
use common::reference;
use common::streams::{self, Landing, StreamOptions};
use txflow::mechanism_y::{self, Mode, YOptions};
use txflow::model::{Thresholds, Variant};
use txflow::sinks::state::{self, LedgerId};

/// What a run left behind, times aside.
#[derive(Debug, PartialEq, Eq)]
struct Timeless {
    ledger: Vec<TimelessLedgerRow>,
    variant_ledgers: BTreeMap<String, Vec<TimelessLedgerRow>>,
    epochs: Vec<(u64, String, u64, u64)>,
    counts: Vec<(String, i64)>,
    /// Every output file by name; detection files without their two time columns.
    files: BTreeMap<String, String>,
}

impl Timeless {
    /// The production files only: neither a variant's nor the comparison report's.
    fn production_files(&self) -> BTreeMap<String, String> {
        self.files
            .iter()
            .filter(|(name, _)| !name.starts_with("variants/"))
            .filter(|(name, _)| {
                ![
                    "backtest-report.html",
                    "backtest-report.json",
                    "variants.csv",
                ]
                .contains(&name.as_str())
            })
            .map(|(n, b)| (n.clone(), b.clone()))
            .collect()
    }

    /// One variant's files, by name below `variants/<NAME>/`.
    fn variant_files(&self, variant: &str) -> BTreeMap<String, String> {
        let prefix = format!("variants/{variant}/");
        self.files
            .iter()
            .filter_map(|(n, b)| Some((n.strip_prefix(&prefix)?.to_string(), b.clone())))
            .collect()
    }
}

/// A detection file's lines without `YStartTime` and `detectionTime` (the first two columns);
/// a variant's added or removed list without its `y_start_time` and `detection_time`.
fn without_times(name: &str, bytes: &[u8]) -> String {
    let text = String::from_utf8_lossy(bytes);
    let base = name.rsplit('/').next().unwrap_or(name);
    if ["added.csv", "removed.csv"].contains(&base) {
        let mut reader = csv::ReaderBuilder::new()
            .has_headers(false)
            .from_reader(bytes);
        return reader
            .records()
            .map(|r| {
                let r = r.unwrap();
                let kept: Vec<&str> = (0..r.len())
                    .filter(|i| ![6, 7].contains(i))
                    .map(|i| &r[i])
                    .collect();
                kept.join("|") + "\n"
            })
            .collect();
    }
    if !base.starts_with("detections-") {
        return text.into_owned();
    }
    text.lines()
        .map(|l| l.splitn(3, ',').nth(2).unwrap_or("").to_string() + "\n")
        .collect()
}

fn run(opts: &YOptions, what: &str) -> Timeless {
    let summary = mechanism_y::run(opts).unwrap_or_else(|e| panic!("{what}: {e:#}"));
    assert!(summary.finished, "{what}: the stream ends after _COMPLETE");
    let names: Vec<&str> = opts.variants().iter().map(|v| v.name.as_str()).collect();
    read(Path::new(&opts.output), &opts.state, &names)
}

/// What a run into `output` and `state` left behind, with the ledgers of `variants`.
fn read(output: &Path, state: &state::StateConfig, variants: &[&str]) -> Timeless {
    let mut store = state::open(state).unwrap();
    let variant_ledgers = variants
        .iter()
        .map(|name| {
            let rows = store.ledger(LedgerId::Variant(name)).unwrap();
            (name.to_string(), timeless_ledger(&rows))
        })
        .collect();
    Timeless {
        ledger: timeless_ledger(&store.ledger(LedgerId::Baseline).unwrap()),
        variant_ledgers,
        epochs: timeless_epochs(&store.epoch_rows().unwrap()),
        counts: store.merchant_counts().unwrap(),
        files: named_tree(output)
            .into_iter()
            .map(|(name, bytes)| {
                let body = without_times(&name, &bytes);
                (name, body)
            })
            .collect(),
    }
}

/// Options for `mode` on the whole landing, into `<work>/out-<name>` and its own store.
fn options(landing: &Landing, work: &Path, name: &str, t: Thresholds, mode: Mode) -> YOptions {
    let output = work.join(format!("out-{name}"));
    let mut opts = landing.replay_options(&output, &work.join(format!("state-{name}.db")));
    opts.thresholds = t;
    opts.mode = mode;
    opts.timely.workers = 2;
    opts
}

/// Two variants that differ from the baseline in opposite directions.
fn shadow_variants(base: &Thresholds) -> Vec<Variant> {
    let mut loose = *base;
    loose.child_min_txns = 1;
    loose.upgrade_min_merchant_txns = 0;
    let mut strict = *base;
    strict.child_min_txns = base.child_min_txns + 2;
    strict.dei_min_female_customers = base.dei_min_female_customers + 1;
    vec![
        Variant {
            name: "loose".into(),
            thresholds: loose,
        },
        Variant {
            name: "strict".into(),
            thresholds: strict,
        },
    ]
}

#[test]
fn a_live_run_with_shadow_variants_keeps_its_baseline_and_matches_a_replay() {
    let stream_options = StreamOptions {
        min_chunks: 6,
        max_chunks: 8,
        wide_percent: 100,
        ..StreamOptions::default()
    };
    let mut checked_rows = 0;
    for seed in [11, 12] {
        let stream = streams::random_stream(seed, &stream_options);
        let work = tempfile::tempdir().unwrap();
        let landing = streams::write_landing(work.path(), &stream);
        let (base, variants) = (stream.thresholds, shadow_variants(&stream.thresholds));
        let live = |name: &str, variants: &[Variant]| {
            let mode = Mode::Live {
                forever: false,
                variants: variants.to_vec(),
            };
            run(&options(&landing, work.path(), name, base, mode), name)
        };
        let shadowed = live("shadowed", &variants);
        let plain = live("plain", &[]);
        let what = stream.describe();
        assert_eq!(shadowed.ledger, plain.ledger, "{what}: baseline ledger");
        assert_eq!(shadowed.epochs, plain.epochs, "{what}: progress rows");
        assert_eq!(shadowed.counts, plain.counts, "{what}: merchant counts");
        assert_eq!(
            shadowed.production_files(),
            plain.files,
            "{what}: production files"
        );

        let mode = Mode::Replay {
            range: Default::default(),
            variants: variants.clone(),
        };
        let replayed = run(
            &options(&landing, work.path(), "replay", base, mode),
            "replay",
        );
        for v in &variants {
            let ledger = &shadowed.variant_ledgers[&v.name];
            assert_eq!(
                ledger, &replayed.variant_ledgers[&v.name],
                "{what}: shadow variant {} against the replay's",
                v.name
            );
            assert_eq!(
                shadowed.variant_files(&v.name),
                replayed.variant_files(&v.name),
                "{what}: shadow variant {}'s files against the replay's",
                v.name
            );
            let identities: Vec<(u64, String, String, String)> = ledger
                .iter()
                .map(|r| (r.1, r.2.clone(), r.4.clone(), r.5.clone()))
                .collect();
            let expected = reference::expected(&stream.chunks, &stream.importance, &v.thresholds);
            if let Err(e) = expected.check_ledger(&identities) {
                panic!(
                    "{what}: shadow variant {} against the reference: {e}",
                    v.name
                );
            }
            checked_rows += ledger.len();
        }
        assert_ne!(
            shadowed.variant_ledgers["loose"], shadowed.ledger,
            "{what}: the loose variant detects what the baseline does not"
        );
    }
    assert!(checked_rows > 0, "some shadow detections were checked");
}

#[test]
fn a_live_restart_with_other_shadow_variants_is_refused() {
    let stream_options = StreamOptions {
        min_chunks: 3,
        max_chunks: 4,
        ..StreamOptions::default()
    };
    let stream = streams::random_stream(21, &stream_options);
    let work = tempfile::tempdir().unwrap();
    let landing = streams::write_landing(work.path(), &stream);
    let base = stream.thresholds;
    let variants = shadow_variants(&base);
    let live = |variants: &[Variant]| {
        let mode = Mode::Live {
            forever: false,
            variants: variants.to_vec(),
        };
        options(&landing, work.path(), "live", base, mode)
    };
    let first = run(&live(&variants[..1]), "first run");
    for (others, named) in [
        (&variants[..], "loose, strict"),
        (&[][..], "loose"),
        (&variants[1..], "strict"),
    ] {
        let err = mechanism_y::run(&live(others)).expect_err("another variant set is refused");
        let line = format!("{err:#}");
        assert!(
            line.contains("the state store holds epochs of a different run")
                && line.contains(named),
            "{line}"
        );
    }
    let again = run(&live(&variants[..1]), "restart with the same variant");
    assert_eq!(again, first, "a refused restart changes nothing");
}

/// `mechanism-y` (live, ending after `_COMPLETE`) with two shadow variants.
fn y_args(landing: &Landing, dir: &Path, output: &Path, state: &Path) -> Vec<String> {
    let text = |p: &Path| p.to_str().unwrap().to_string();
    let mut args: Vec<String> = vec![
        "--landing".into(),
        text(dir),
        "--importance".into(),
        text(&landing.importance),
        "--output".into(),
        text(output),
        "--state".into(),
        format!("sqlite://{}", state.display()),
        "-w".into(),
        "2".into(),
        "--child-min-txns".into(),
        "2".into(),
    ];
    for variant in [
        "loose:child-min-txns=1,upgrade-min-merchant-txns=0",
        "strict:child-min-txns=4",
    ] {
        args.extend(["--variant".to_string(), variant.to_string()]);
    }
    args
}

/// A finished process run of [`y_args`], times aside.
fn finished(output: &Path, state: &Path) -> Timeless {
    let config = state::StateConfig::Embedded {
        path: state.to_path_buf(),
    };
    read(output, &config, &["loose", "strict"])
}

#[test]
fn kill9_during_a_live_run_with_shadow_variants_then_restart_is_identical() {
    use common::process::YProc;
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(120);
    let stream_options = StreamOptions {
        min_chunks: 8,
        max_chunks: 8,
        wide_percent: 100,
        ..StreamOptions::default()
    };
    let stream = streams::random_stream(31, &stream_options);
    let work = tempfile::tempdir().unwrap();
    let logs = work.path();
    let landing = streams::write_landing(work.path(), &stream);
    let (whole_out, whole_db) = (work.path().join("out-whole"), work.path().join("whole.db"));
    let args = y_args(&landing, &landing.landing, &whole_out, &whole_db);
    YProc::spawn("whole", &args, logs).wait_ok(LIMIT);
    let want = finished(&whole_out, &whole_db);
    assert!(
        want.variant_ledgers.values().any(|l| !l.is_empty()),
        "the shadow variants detect something"
    );

    // The chunks land in two halves: the run is killed while it commits the first.
    let staged = work.path().join("staged");
    std::fs::create_dir_all(&staged).unwrap();
    let copy = |range: std::ops::Range<usize>| {
        for (_, path) in &landing.chunk_paths[range] {
            std::fs::copy(path, staged.join(path.file_name().unwrap())).unwrap();
        }
    };
    copy(0..4);
    let (out, db) = (
        work.path().join("out-killed"),
        work.path().join("killed.db"),
    );
    let args = y_args(&landing, &staged, &out, &db);
    let mut killed = YProc::spawn_with_env("killed", &args, logs, &[("RUST_LOG", "info")]);
    common::wait::poll(LIMIT, || (killed.epochs_committed() >= 2).then_some(()))
        .unwrap_or_else(|| panic!("no epoch committed: {}", killed.stderr_tail(15)));
    killed.kill9();
    copy(4..landing.chunk_paths.len());
    std::fs::copy(landing.landing.join("_COMPLETE"), staged.join("_COMPLETE")).unwrap();
    YProc::spawn("restarted", &args, logs).wait_ok(LIMIT);
    assert_eq!(finished(&out, &db), want, "after a kill -9 and a restart");
}

/// A following live run with `--http`: `/api/status` shows each shadow variant's alert volume
/// (in this run, by pattern, and in the last hour) beside the baseline's, equal to what the
/// store's ledgers hold; the console lists them.
#[test]
fn the_status_shows_each_shadow_variants_volume_beside_the_baseline() {
    use common::process::YProc;
    const LIMIT: std::time::Duration = std::time::Duration::from_secs(120);
    let stream = streams::random_stream(31, &StreamOptions::default());
    let work = tempfile::tempdir().unwrap();
    let landing = streams::write_landing(work.path(), &stream);
    let (out, db) = (work.path().join("out"), work.path().join("state.db"));
    let port = common::paths::free_port();
    let mut args = y_args(&landing, &landing.landing, &out, &db);
    args.extend(["--follow".into(), "--http".into(), port.to_string()]);
    let mut y = YProc::spawn("shadow-http", &args, work.path());
    let last = landing.chunk_paths.last().unwrap().0;
    let status = common::wait::poll(LIMIT, || {
        assert!(y.try_status().is_none(), "{}", y.stderr_tail(10));
        let (_, body) = common::http::get(port, "/api/status")?;
        let status: serde_json::Value = serde_json::from_str(&body).ok()?;
        (status["progress"]["last_committed_epoch"] == last).then_some(status)
    })
    .expect("every chunk committed");
    let store = finished(&out, &db);
    let by_pattern = |rows: &[TimelessLedgerRow]| {
        let mut counts: BTreeMap<String, u64> = ["PatId1", "PatId2", "PatId3"]
            .iter()
            .map(|p| (p.to_string(), 0))
            .collect();
        for row in rows {
            *counts.get_mut(row.2.as_str()).unwrap() += 1;
        }
        serde_json::to_value(counts).unwrap()
    };
    assert_eq!(
        status["detections"]["by_pattern"],
        by_pattern(&store.ledger)
    );
    assert_eq!(status["detections"]["last_hour"], store.ledger.len());
    let volumes = status["variants"]
        .as_array()
        .expect("variants in the status");
    let names: Vec<&str> = volumes
        .iter()
        .map(|v| v["name"].as_str().unwrap())
        .collect();
    assert_eq!(names, ["loose", "strict"]);
    for volume in volumes {
        let ledger = &store.variant_ledgers[volume["name"].as_str().unwrap()];
        assert_eq!(
            volume["detections"]["by_pattern"],
            by_pattern(ledger),
            "{volume}"
        );
        assert_eq!(volume["detections"]["total"], ledger.len());
        assert_eq!(
            volume["last_hour"],
            ledger.len(),
            "all committed within the hour"
        );
    }
    assert_eq!(volumes[1]["thresholds"]["child-min-txns"], 4);
    assert!(
        store
            .variant_ledgers
            .values()
            .any(|l| l.len() != store.ledger.len()),
        "the variants differ from the baseline, so the figures tell them apart"
    );
    #[cfg(feature = "test-browser")]
    {
        let dom = common::browser::dump_dom(
            &format!("http://127.0.0.1:{port}/"),
            &["--virtual-time-budget=4000"],
        );
        for name in ["(the run's own)", "loose", "strict"] {
            assert!(
                dom.contains(&format!("data-variant=\"{name}\"")),
                "{name} in the console's variants"
            );
        }
    }
}
