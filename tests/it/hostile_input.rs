//! Hostile source files (issue "Nothing lost, nothing mixed", cases 1 and 3): stray and
//! unclosed quotes, CR-only and mixed line endings, an unknown terminator, and control
//! characters in names. Each test builds its source itself, so it knows which records exist
//! and which are bad, and checks X's chunks and Y's epochs, rejects and stores against that.

use crate::common;

use std::fs;
use std::path::PathBuf;
use std::process::Command;
use std::time::Duration;

use common::paths::s;
use common::process::{ChildGuard, Finished};
use txflow::sinks::state::StateConfig;
use txflow::sinks::state::{self, EpochRow, LedgerRow};

const HEADER: &str =
    "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud";
const Y: &str = env!("CARGO_BIN_EXE_mechanism-y");
const X: &str = env!("CARGO_BIN_EXE_mechanism-x");
const TIMEOUT: Duration = Duration::from_secs(120);
const ROWS: usize = 300;
const CHUNK_ROWS: usize = 100;

/// Row `i` of the synthetic source, with `customer` as its customer field (as written).
fn row(i: usize, customer: &str) -> String {
    format!(
        "{},{customer},'4','{}','28007','M{}','28007','es_food',{}.50,0",
        i / 50,
        if i.is_multiple_of(2) { "F" } else { "M" },
        i % 3,
        i % 40
    )
}

fn customer(i: usize) -> String {
    format!("'C{}'", i % 20)
}

/// A source of [`ROWS`] rows where `edit(i)` may replace row `i`; each row `i` is followed by
/// `terminator(i)`.
fn source(
    edit: impl Fn(usize) -> Option<String>,
    terminator: impl Fn(usize) -> &'static str,
) -> Vec<u8> {
    let mut text = format!("{HEADER}{}", terminator(usize::MAX));
    for i in 0..ROWS {
        text.push_str(&edit(i).unwrap_or_else(|| row(i, &customer(i))));
        text.push_str(terminator(i));
    }
    text.into_bytes()
}

struct Run {
    _tmp: tempfile::TempDir,
    root: PathBuf,
}

impl Run {
    fn new(source: &[u8]) -> Run {
        let tmp = tempfile::tempdir().unwrap();
        let root = tmp.path().to_path_buf();
        fs::write(root.join("transactions.csv"), source).unwrap();
        fs::write(
            root.join("CustomerImportance.csv"),
            "Source,Target,Weight,typeTrans,fraud\n'C1','M1',0.5,'es_food',0\n",
        )
        .unwrap();
        Run { _tmp: tmp, root }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn x(&self) -> Finished {
        run(
            X,
            &[
                "--source",
                s(&self.path("transactions.csv")),
                "--landing",
                s(&self.path("landing")),
                "--chunk-rows",
                &CHUNK_ROWS.to_string(),
                "--interval-ms",
                "0",
            ],
        )
    }

    /// A replay of the whole landing with thresholds that make every pair with a row a
    /// PatId2 detection (so an accepted name always reaches the ledger and the files).
    fn y(&self, state: &str) -> Finished {
        run(
            Y,
            &[
                "--landing",
                s(&self.path("landing")),
                "--importance",
                s(&self.path("CustomerImportance.csv")),
                "--output",
                s(&self.path("output")),
                "--state",
                state,
                "--replay",
                "-w",
                "2",
                "--child-min-txns",
                "1",
                "--child-max-avg-amount",
                "1000",
            ],
        )
    }

    fn sqlite(&self) -> String {
        format!("sqlite://{}", self.path("state.db").display())
    }

    fn chunks(&self) -> Vec<Vec<u8>> {
        let mut names: Vec<String> = fs::read_dir(self.path("landing"))
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .filter(|n| n.starts_with("chunk-"))
            .collect();
        names.sort();
        names
            .iter()
            .map(|n| fs::read(self.path("landing").join(n)).unwrap())
            .collect()
    }

    /// `(reason, raw)` of every rejected row, in file order.
    fn rejects(&self) -> Vec<(String, String)> {
        let dir = self.path("output").join("rejects");
        let mut names: Vec<PathBuf> = match fs::read_dir(&dir) {
            Ok(entries) => entries.map(|e| e.unwrap().path()).collect(),
            Err(_) => return Vec::new(),
        };
        names.sort();
        names
            .iter()
            .flat_map(|p| common::outputs::read_csv(p).into_iter().skip(1))
            .map(|r| (r[2].clone(), r[3].clone()))
            .collect()
    }
}

fn run(bin: &str, args: &[&str]) -> Finished {
    let mut command = Command::new(bin);
    command
        .args(args)
        .env("RUST_LOG", "warn")
        .env("NO_COLOR", "1");
    ChildGuard::spawn(command).wait(TIMEOUT)
}

fn ok(f: &Finished) {
    assert!(f.status.success(), "{}", f.describe());
}

fn epochs(state_url: &str) -> Vec<EpochRow> {
    state::open(&StateConfig::parse(state_url).unwrap())
        .unwrap()
        .epoch_rows()
        .unwrap()
}

fn ledger(state_url: &str) -> Vec<LedgerRow> {
    state::open(&StateConfig::parse(state_url).unwrap())
        .unwrap()
        .ledger(txflow::sinks::state::LedgerId::Baseline)
        .unwrap()
}

/// Non-blank lines of a chunk after its header, split on every terminator.
fn lines_after_header(chunk: &[u8]) -> usize {
    let text = String::from_utf8_lossy(chunk)
        .replace("\r\n", "\n")
        .replace('\r', "\n");
    text.split('\n').filter(|l| !l.is_empty()).count() - 1
}

/// X cut three chunks of 100 records, each ending with a line terminator; Y committed three
/// epochs of 100 records each, `rejected` in total.
fn assert_three_full_chunks(run: &Run, state_url: &str, rejected: u64) {
    let chunks = run.chunks();
    assert_eq!(chunks.len(), ROWS / CHUNK_ROWS, "chunks written");
    for chunk in &chunks {
        assert!(
            matches!(chunk.last(), Some(b'\n' | b'\r')),
            "chunk ends a line"
        );
        // No record here spans lines, so records are the non-blank lines after the header.
        assert_eq!(lines_after_header(chunk), CHUNK_ROWS);
    }
    let epochs = epochs(state_url);
    assert_eq!(epochs.len(), 3);
    for e in &epochs {
        assert_eq!(
            e.rows_accepted + e.rows_rejected,
            CHUNK_ROWS as u64,
            "{e:?}"
        );
    }
    assert_eq!(
        epochs.iter().map(|e| e.rows_rejected).sum::<u64>(),
        rejected
    );
}

#[test]
fn stray_quote_inside_an_unquoted_field_is_an_ordinary_character() {
    let run = Run::new(&source(|i| (i == 5).then(|| row(i, "'C\"5'")), |_| "\n"));
    ok(&run.x());
    ok(&run.y(&run.sqlite()));
    assert_three_full_chunks(&run, &run.sqlite(), 0);
    let customers: Vec<String> = ledger(&run.sqlite())
        .into_iter()
        .map(|r| r.customer_name)
        .collect();
    assert!(customers.contains(&"C\"5".to_string()), "{customers:?}");
}

#[test]
fn an_unclosed_quote_costs_one_line() {
    // Row 5's quote closes at row 150's, but that would-be record has 6 fields, not 10; row
    // 150's quote stays open to the end of the file.
    let bad = |i: usize| row(i, &customer(i)).replace(",'M", ",\"M");
    let run = Run::new(&source(
        |i| match i {
            5 => Some(row(i, "\"C5")),
            150 => Some(bad(i)),
            _ => None,
        },
        |_| "\n",
    ));
    ok(&run.x());
    ok(&run.y(&run.sqlite()));
    assert_three_full_chunks(&run, &run.sqlite(), 2);
    let rejects = run.rejects();
    assert_eq!(
        rejects,
        [
            ("unbalanced quote".to_string(), row(5, "\"C5")),
            ("unbalanced quote".to_string(), bad(150)),
        ]
    );
}

#[test]
fn cr_only_line_endings_make_chunks() {
    let run = Run::new(&source(|_| None, |_| "\r"));
    let x = run.x();
    ok(&x);
    ok(&run.y(&run.sqlite()));
    assert_three_full_chunks(&run, &run.sqlite(), 0);
}

#[test]
fn mixed_line_endings_count_the_same_in_x_and_y() {
    let endings = ["\n", "\r", "\r\n", "\r\n\r", "\n\n"];
    let run = Run::new(&source(|_| None, |i| endings[i % endings.len()]));
    ok(&run.x());
    ok(&run.y(&run.sqlite()));
    assert_three_full_chunks(&run, &run.sqlite(), 0);
}

#[test]
fn a_source_without_line_breaks_is_an_error() {
    let text = format!("{HEADER}\u{1e}{}\u{1e}{}", row(0, "'C0'"), row(1, "'C1'"));
    let run = Run::new(text.as_bytes());
    let x = run.x();
    assert!(!x.status.success(), "{}", x.describe());
    let last = x.stderr.lines().last().unwrap_or_default().to_string();
    assert!(
        last.starts_with("error:")
            && last.contains("no line break")
            && last.contains("transactions.csv"),
        "{}",
        x.describe()
    );
}

/// A name with a NUL (and one with another control character) is rejected with a reason;
/// every epoch commits, and no stored or written name holds a control character.
fn control_characters_rejected(state_url: &str) {
    let run = Run::new(&source(
        |i| match i {
            7 => Some(row(i, "'C\u{0}7'")),
            120 => Some(row(i, "'C\u{1b}[31m'")),
            _ => None,
        },
        |_| "\n",
    ));
    ok(&run.x());
    ok(&run.y(state_url));
    assert_three_full_chunks(&run, state_url, 2);
    let reasons: Vec<String> = run.rejects().into_iter().map(|(r, _)| r).collect();
    assert_eq!(
        reasons,
        [
            "invalid customer 'C\\x007': control character U+0000 is not allowed",
            "invalid customer 'C\\x1B[31m': control character U+001B is not allowed",
        ]
    );
    let ledger = ledger(state_url);
    assert!(!ledger.is_empty());
    for r in &ledger {
        assert!(!r.customer_name.chars().any(char::is_control), "{r:?}");
    }
    for entry in fs::read_dir(run.path("output")).unwrap() {
        let path = entry.unwrap().path();
        if path.is_file() {
            let bytes = fs::read(&path).unwrap();
            assert!(!bytes.contains(&0), "{} holds a NUL", path.display());
        }
    }
}

#[test]
fn control_characters_in_names_never_reach_sqlite() {
    let tmp = tempfile::tempdir().unwrap();
    control_characters_rejected(&format!("sqlite://{}", tmp.path().join("s.db").display()));
}

#[cfg(feature = "test-services")]
#[test]
fn control_characters_in_names_never_reach_postgres() {
    control_characters_rejected(&common::pg::fresh_database_url("hostile_nul"));
}

#[test]
fn names_longer_than_256_bytes_are_rejected_in_chunks_and_the_importance_file() {
    let at_limit = format!("C{}", "9".repeat(255));
    let over = format!("C{}", "9".repeat(256));
    let run = Run::new(&source(
        |i| match i {
            3 => Some(row(i, &format!("'{over}'"))),
            4 => Some(row(i, &format!("'{at_limit}'"))),
            140 => Some(row(i, "'C140'").replace("'M2'", &format!("'M{}'", "1".repeat(256)))),
            260 => Some(row(i, "'C260'").replace("es_food", &"e".repeat(257))),
            _ => None,
        },
        |_| "\n",
    ));
    fs::write(
        run.path("CustomerImportance.csv"),
        format!("Source,Target,Weight,typeTrans,fraud\n'{over}','M1',0.5,'es_food',0\n"),
    )
    .unwrap();
    ok(&run.x());
    ok(&run.y(&run.sqlite()));
    assert_three_full_chunks(&run, &run.sqlite(), 3);
    let reasons: Vec<String> = run.rejects().into_iter().map(|(r, _)| r).collect();
    assert_eq!(
        reasons,
        [
            "name too long: Source of 257 bytes (at most 256)",
            "name too long: customer of 257 bytes (at most 256)",
            "name too long: merchant of 257 bytes (at most 256)",
            "name too long: category of 257 bytes (at most 256)",
        ]
    );
    // A name of exactly 256 bytes is a name like any other.
    let customers: Vec<String> = ledger(&run.sqlite())
        .into_iter()
        .map(|r| r.customer_name)
        .collect();
    assert!(customers.contains(&at_limit), "{customers:?}");
}
