//! The ranges of `mechanism-y`'s options.
//!
//! - Count thresholds take any `u64`, and one that no count reaches means "never", exactly:
//!   the pipeline agrees with the independent reference at 0, 1, 2^63−1, 2^63 and 2^64−1 for
//!   each count threshold (random streams), and `18446744073709551615` switches a pattern off
//!   from a flag, a `TXFLOW_*` variable and a `--variant` alike (a generated set). A value
//!   past the range is a usage error naming the option and the range.
//! - A boolean set by a `TXFLOW_*` variable is turned off with `--name=false`.
//! - Out-of-range `-w`/`-n`/`-p` and a `--poll-ms` under 10 are usage errors (exit status 2).

use crate::common;

use std::collections::BTreeMap;
use std::path::Path;
use std::process::Command;
use std::time::Duration;

use common::process::{ChildGuard, Finished};
use common::reference::{self, ledger_identities, PAT_CHILD, PAT_DEI, PAT_UPGRADE};
use common::streams::{self, StreamOptions};
use txflow::mechanism_x::{self, XOptions};
use txflow::mechanism_y;
use txflow::model::{Thresholds, Variant};
use txflow::sinks::state::{self, LedgerRow, StateConfig};

const Y: &str = env!("CARGO_BIN_EXE_mechanism-y");
const TIMEOUT: Duration = Duration::from_secs(60);

/// The values every count threshold is checked at: the edges of `i64` and of `u64`.
const EDGES: [u64; 5] = [0, 1, i64::MAX as u64, 1 << 63, u64::MAX];

/// A count threshold: its option name (a variant key), its pattern, and how to set it.
type CountKey = (&'static str, &'static str, fn(&mut Thresholds, u64));

const COUNT_KEYS: [CountKey; 3] = [
    ("upgrade-min-merchant-txns", PAT_UPGRADE, |t, v| {
        t.upgrade_min_merchant_txns = v
    }),
    ("child-min-txns", PAT_CHILD, |t, v| t.child_min_txns = v),
    ("dei-min-female-customers", PAT_DEI, |t, v| {
        t.dei_min_female_customers = v
    }),
];

type Ledger = Vec<LedgerRow>;

fn count_of(ledger: &[LedgerRow], pattern: &str) -> usize {
    ledger.iter().filter(|r| r.pattern.id() == pattern).count()
}

// ------------------------------------------------------------------------------------------
// The pipeline and the reference agree at the edges
// ------------------------------------------------------------------------------------------

/// One replay per random stream: its baseline has every count threshold at 2^64−1 (no
/// variant involved), and one variant per count threshold and edge value; every ledger must
/// be the reference's for the same thresholds.
#[test]
fn count_thresholds_at_the_edges_match_the_reference() {
    let mut fired_at_zero = [0usize; 3];
    let mut problems = Vec::new();
    for seed in 0..4 {
        let stream = streams::random_stream(31_000 + seed, &StreamOptions::default());
        let mut baseline = stream.thresholds;
        for (_, _, set) in COUNT_KEYS {
            set(&mut baseline, u64::MAX);
        }
        let mut variants = Vec::new();
        for (name, _, set) in COUNT_KEYS {
            for value in EDGES {
                let mut t = stream.thresholds;
                set(&mut t, value);
                variants.push(Variant {
                    name: format!("{name}-{value}"),
                    thresholds: t,
                });
            }
        }
        let work = tempfile::tempdir().unwrap();
        let landing = streams::write_landing(work.path(), &stream);
        let mut opts = landing.replay_options(&work.path().join("out"), &work.path().join("s.db"));
        let config = opts.state.clone();
        opts.thresholds = baseline;
        opts.mode = txflow::mechanism_y::Mode::Replay {
            range: Default::default(),
            variants: variants.clone(),
        };
        opts.timely.workers = 1 + seed as usize % 2;
        mechanism_y::run(&opts).unwrap_or_else(|e| panic!("seed {seed}: {e:#}"));
        let mut store = state::open(&config).unwrap();
        let mut ledgers = BTreeMap::new();
        ledgers.insert(
            "baseline".to_string(),
            (
                baseline,
                store
                    .ledger(txflow::sinks::state::LedgerId::Baseline)
                    .unwrap(),
            ),
        );
        for v in &variants {
            let ledger = store
                .ledger(txflow::sinks::state::LedgerId::Variant(&v.name))
                .unwrap();
            ledgers.insert(v.name.clone(), (v.thresholds, ledger));
        }
        for (name, (thresholds, ledger)) in &ledgers {
            let expected = reference::expected(&stream.chunks, &stream.importance, thresholds);
            if let Err(e) = expected.check_ledger(&ledger_identities(ledger)) {
                problems.push(format!("seed {seed}, {name}: {e}"));
            }
        }
        for (i, (name, pattern, _)) in COUNT_KEYS.iter().enumerate() {
            fired_at_zero[i] += count_of(&ledgers[&format!("{name}-0")].1, pattern);
        }
    }
    assert!(problems.is_empty(), "{}", problems.join("\n"));
    // At 0 every pattern fires on some stream, so the edges above are not vacuous.
    assert!(fired_at_zero.iter().all(|&n| n > 0), "{fired_at_zero:?}");
}

// ------------------------------------------------------------------------------------------
// The largest count switches a pattern off, from every source
// ------------------------------------------------------------------------------------------

const MOST: &str = "18446744073709551615";

/// A small generated set cut into a landing store: `(landing, importance, PatId1's N(m)
/// threshold at which the generator's planted UPGRADE customers fire)`.
fn generated(dir: &Path) -> (String, String, u64) {
    let data = dir.join("data");
    let gen = txgen::generate_with_summary(&data, &txgen::GenOptions::new(4_000, 3)).unwrap();
    let landing = dir.join("landing");
    let mut x = XOptions::new(gen.transactions_path.clone(), &landing.to_string_lossy());
    x.chunk_rows = 1_000;
    x.interval = Duration::ZERO;
    mechanism_x::run(&x).unwrap();
    let importance = gen.importance_path.display().to_string();
    (
        landing.display().to_string(),
        importance,
        gen.pat1_min_transactions,
    )
}

/// Replays the landing with `args` (and `env`) into `<dir>/<name>`; the ledgers of the
/// baseline and of the named variants.
fn replay(
    dir: &Path,
    name: &str,
    (landing, importance): (&str, &str),
    args: &[&str],
    env: &[(&str, &str)],
    variants: &[&str],
) -> (Ledger, Vec<Ledger>) {
    let run = dir.join(name);
    let state = format!("sqlite://{}", run.join("state.db").display());
    let output = run.join("out").display().to_string();
    let mut command = Command::new(Y);
    command
        .args(["--landing", landing, "--importance", importance])
        .args(["--output", &output, "--state", &state, "--replay"])
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
    for (k, v) in env {
        command.env(k, v);
    }
    let finished = ChildGuard::spawn(command).wait(TIMEOUT);
    assert!(finished.status.success(), "{}", finished.describe());
    let mut store = state::open(&StateConfig::parse(&state).unwrap()).unwrap();
    let variants = variants
        .iter()
        .map(|v| {
            store
                .ledger(txflow::sinks::state::LedgerId::Variant(v))
                .unwrap()
        })
        .collect();
    (
        store
            .ledger(txflow::sinks::state::LedgerId::Baseline)
            .unwrap(),
        variants,
    )
}

#[test]
fn the_largest_count_switches_a_pattern_off_from_a_flag_a_variable_and_a_variant() {
    let tmp = tempfile::tempdir().unwrap();
    let (landing, importance, pat1_min) = generated(tmp.path());
    let inputs = (landing.as_str(), importance.as_str());
    let on = pat1_min.to_string();
    let control = format!("control:upgrade-min-merchant-txns={on}");

    // The flag; the control variant shows that PatId1 fires on this set otherwise.
    let flag = ["--upgrade-min-merchant-txns", MOST, "--variant", &control];
    let (baseline, variants) = replay(tmp.path(), "flag", inputs, &flag, &[], &["control"]);
    assert_eq!(count_of(&baseline, PAT_UPGRADE), 0, "{baseline:?}");
    assert!(
        count_of(&variants[0], PAT_UPGRADE) > 0,
        "PatId1 fires at {on}"
    );

    // The environment, for every count threshold: nothing fires at all.
    let env = [
        ("TXFLOW_UPGRADE_MIN_MERCHANT_TXNS", MOST),
        ("TXFLOW_CHILD_MIN_TXNS", MOST),
        ("TXFLOW_DEI_MIN_FEMALE_CUSTOMERS", MOST),
    ];
    let (baseline, _) = replay(tmp.path(), "env", inputs, &[], &env, &[]);
    assert_eq!(baseline.len(), 0, "{baseline:?}");

    // Variants, against a baseline where every pattern fires.
    let off = format!("off:upgrade-min-merchant-txns={MOST}");
    let child_off = format!("child-off:child-min-txns={MOST}");
    let dei_off = format!("dei-off:dei-min-female-customers={MOST}");
    let args = [
        "--upgrade-min-merchant-txns",
        &on,
        "--child-min-txns",
        "1",
        "--dei-min-female-customers",
        "0",
        "--variant",
        &off,
        "--variant",
        &child_off,
        "--variant",
        &dei_off,
    ];
    let names = ["off", "child-off", "dei-off"];
    let (baseline, variants) = replay(tmp.path(), "variant", inputs, &args, &[], &names);
    for (pattern, ledger) in [PAT_UPGRADE, PAT_CHILD, PAT_DEI].iter().zip(&variants) {
        assert!(
            count_of(&baseline, pattern) > 0,
            "{pattern} fires in the baseline"
        );
        assert_eq!(count_of(ledger, pattern), 0, "{pattern} switched off");
    }
}

/// A usage error: exit status 2 and one `error:` line naming every one of `mentions`.
fn assert_usage_error(finished: &Finished, mentions: &[&str]) {
    finished.assert_one_line_error(mentions);
    assert_eq!(finished.status.code(), Some(2), "{}", finished.describe());
}

fn run_y(args: &[&str], env: &[(&str, &str)]) -> Finished {
    let mut command = Command::new(Y);
    command.args(args).env("RUST_LOG", "off");
    for (k, v) in env {
        command.env(k, v);
    }
    ChildGuard::spawn(command).wait(TIMEOUT)
}

/// A valid one-chunk setup; each run of `mechanism-y` on it gets a fresh state store and
/// output location.
struct Setup {
    tmp: tempfile::TempDir,
    args: Vec<String>,
    runs: std::cell::Cell<usize>,
}

impl Setup {
    fn new() -> Setup {
        let tmp = tempfile::tempdir().unwrap();
        let (landing, importance) = streams::write_one_chunk_landing(tmp.path());
        let args = ["--landing", landing.to_str().unwrap()]
            .into_iter()
            .chain(["--importance", importance.to_str().unwrap()])
            .map(String::from)
            .collect();
        Setup {
            tmp,
            args,
            runs: std::cell::Cell::new(0),
        }
    }

    /// Runs `mechanism-y` with the setup's arguments, `extra` ones, `env` and `RUST_LOG`.
    fn run(&self, extra: &[&str], env: &[(&str, &str)], rust_log: &str) -> Finished {
        let run = self.runs.replace(self.runs.get() + 1);
        let state = format!(
            "sqlite://{}",
            self.tmp.path().join(format!("state{run}.db")).display()
        );
        let output = self.tmp.path().join(format!("out{run}"));
        let mut command = Command::new(Y);
        command
            .args(&self.args)
            .args(["--state", &state, "--output", output.to_str().unwrap()])
            .args(extra)
            .env("RUST_LOG", rust_log)
            .env("NO_COLOR", "1");
        for (k, v) in env {
            command.env(k, v);
        }
        ChildGuard::spawn(command).wait(TIMEOUT)
    }

    /// Whether no run has written an output location.
    fn nothing_written(&self) -> bool {
        (0..self.runs.get()).all(|run| !self.tmp.path().join(format!("out{run}")).exists())
    }
}

#[test]
fn a_count_past_the_range_is_a_usage_error_naming_the_option_and_the_range() {
    let setup = Setup::new();
    let range = "from 0 to 18446744073709551615";
    for (option, _, _) in COUNT_KEYS {
        let flag = format!("--{option}");
        for value in ["-1", "18446744073709551616", "1e3"] {
            let finished = setup.run(&[&flag, value], &[], "off");
            assert_usage_error(&finished, &[&flag, range]);
        }
        let variable = format!("TXFLOW_{}", option.to_uppercase().replace('-', "_"));
        let finished = setup.run(&[], &[(&variable, "-5")], "off");
        assert_usage_error(&finished, &[&flag, range]);
    }
    assert!(setup.nothing_written());
}

// ------------------------------------------------------------------------------------------
// Booleans, timely's options and --poll-ms
// ------------------------------------------------------------------------------------------

/// A boolean set by a `TXFLOW_*` variable is turned off on the command line with
/// `--name=false`; `--help` shows the form.
#[test]
fn a_boolean_from_the_environment_is_turned_off_on_the_command_line() {
    let setup = Setup::new();
    let loud = setup.run(&["--quiet=false"], &[("TXFLOW_QUIET", "true")], "info");
    assert!(loud.status.success(), "{}", loud.describe());
    assert!(
        loud.stderr.contains("epoch committed"),
        "{}",
        loud.describe()
    );
    let quiet = setup.run(&["--quiet"], &[("TXFLOW_QUIET", "false")], "info");
    assert!(quiet.status.success(), "{}", quiet.describe());
    assert_eq!(quiet.stderr, "", "--quiet alone is --quiet=true");
    // A replay, although the environment asks to follow (the two exclude each other).
    let replay = setup.run(
        &["--follow=false", "--replay"],
        &[("TXFLOW_FOLLOW", "1")],
        "off",
    );
    assert!(replay.status.success(), "{}", replay.describe());
    assert!(
        replay.stdout.contains("stream ended"),
        "{}",
        replay.describe()
    );
    let both = setup.run(&["--replay"], &[("TXFLOW_FOLLOW", "1")], "off");
    assert_usage_error(&both, &["--follow", "--replay"]);
    let from = setup.run(
        &["--replay=false", "--from", "0"],
        &[("TXFLOW_REPLAY", "1")],
        "off",
    );
    assert_usage_error(&from, &["--from needs --replay"]);
    let help = run_y(&["--help"], &[]);
    for form in ["--quiet[=<BOOL>]", "--replay[=<BOOL>]", "--follow[=<BOOL>]"] {
        assert!(help.stdout.contains(form), "{form}: {}", help.describe());
    }
    assert!(
        help.stdout.contains("--follow=false turns off"),
        "{}",
        help.describe()
    );
}

/// Out-of-range `-w`, `-n` and `-p` are usage errors: exit status 2, one line naming the
/// bound, nothing opened.
#[test]
fn out_of_range_timely_options_are_usage_errors() {
    let setup = Setup::new();
    let cases: [(&[&str], &str); 6] = [
        (&["-w", "1000"], "-w 1000 is above the maximum of 64"),
        (&["-w", "0"], "-w must be at least 1"),
        (&["-n", "65", "-p", "0"], "-n 65 is above the maximum of 64"),
        (&["-w", "64", "-n", "5"], "above the maximum of 256 workers"),
        (&["-n", "2", "-p", "2"], "-p 2 is out of range for -n 2"),
        (&["-n", "0"], "-n must be at least 1"),
    ];
    for (extra, mentions) in cases {
        assert_usage_error(&setup.run(extra, &[], "off"), &[mentions]);
    }
    let env = setup.run(&[], &[("TXFLOW_WORKERS", "1000")], "off");
    assert_usage_error(&env, &["-w 1000"]);
    assert!(setup.nothing_written());
}

/// `--poll-ms` has a floor of 10 ms: a smaller value is a usage error (an idle Y would spin
/// a core).
#[test]
fn poll_ms_has_a_floor_of_ten() {
    let setup = Setup::new();
    for value in ["0", "9"] {
        let finished = setup.run(&["--poll-ms", value], &[], "off");
        assert_usage_error(&finished, &["--poll-ms", "10"]);
    }
    let env = setup.run(&[], &[("TXFLOW_POLL_MS", "1")], "off");
    assert_usage_error(&env, &["--poll-ms", "10"]);
    assert!(setup.nothing_written());
    let ten = setup.run(&["--poll-ms", "10"], &[], "off");
    assert!(ten.status.success(), "{}", ten.describe());
}
