//! Hostile input against the framing rules (SPEC §2.1, §3): sources full of stray
//! and unclosed quotes, quoted line breaks, CR / CRLF / LF mixes, control characters in
//! names, blank lines and a last line without terminator go through Mechanism X, then
//! through Mechanism Y (replay, one and three workers), and every count is compared with
//! the test-only reference framer (`tests/common/reference.rs`), which is written from the
//! SPEC alone and shares no code with the crate.
//!
//! For each source:
//! - (x) X runs to the end and writes `_COMPLETE` holding its chunk count;
//! - (a) every chunk but the last holds exactly `chunk_rows` records as the reference frames
//!   the chunk's bytes (unbalanced-quote lines included), the last 1..=`chunk_rows`;
//! - (b) every chunk ends with a line terminator;
//! - (c) the chunks' records add up to the source's records;
//! - (d) nothing lost, nothing mixed: each chunk starts with the source's header line, and
//!   its records are the source's next records byte for byte (each with its terminator; `\n`
//!   for a last line that has none);
//! - (y) Y's epochs table holds, per chunk, the reference's accepted and rejected counts;
//! - (r) each chunk's rejects file lists exactly the reference's rejected line numbers, with
//!   the record's raw bytes (decoded from the escaped `raw` text, which must be one line of
//!   printable UTF-8), and the reasons `unbalanced quote` / `expected N fields, found M`
//!   where the reference says so; the importance rejects likewise.
//!
//! Environment:
//! - `TXFLOW_HOSTILE_SEEDS=N`: number of random sources (default 32);
//! - `TXFLOW_HOSTILE_SEED_BASE=B`: seeds `B..B+N` (default 0);
//! - `TXFLOW_HOSTILE_SEED=S`: only seed `S`, and print it;
//! - `TXFLOW_HOSTILE_KEEP=1`: keep each source's work directory (landing, outputs, state)
//!   and print where;
//! - `TXFLOW_HOSTILE_SHRINK=1`: on failure, shrink the first failing source (drop source
//!   lines and importance rows while a problem of the same kind remains) and print it.

use crate::common;

use std::collections::BTreeMap;
use std::fs;
use std::path::Path;
use std::time::{Duration, Instant};

use common::reference::{self, RejectReason};
use common::streams::{self, escape_bytes, HostileOptions, HostileSource, SplitMix64};
use txflow::mechanism_x::{self, XOptions};
use txflow::mechanism_y::{self, Mode, ReplayRange, YOptions};
use txflow::sinks::state::StateConfig;

const HEADER: &str =
    "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud";
const IMPORTANCE_HEADER: &str = "Source,Target,Weight,typeTrans,fraud";

// ------------------------------------------------------------------------------------------
// Seeds
// ------------------------------------------------------------------------------------------

fn env_u64(name: &str) -> Option<u64> {
    std::env::var(name).ok().and_then(|v| v.parse().ok())
}

fn seed_count() -> u64 {
    env_u64("TXFLOW_HOSTILE_SEEDS").unwrap_or(32)
}

fn seeds() -> Vec<u64> {
    if let Some(seed) = env_u64("TXFLOW_HOSTILE_SEED") {
        return vec![seed];
    }
    let base = env_u64("TXFLOW_HOSTILE_SEED_BASE").unwrap_or(0);
    (base..base + seed_count()).collect()
}

// ------------------------------------------------------------------------------------------
// One source, end to end
// ------------------------------------------------------------------------------------------

/// The landing's chunks `(index, bytes)` in index order, and `_COMPLETE`'s body.
fn read_landing(landing: &Path) -> (Vec<(u64, Vec<u8>)>, Option<String>) {
    let mut chunks = Vec::new();
    for entry in fs::read_dir(landing).unwrap() {
        let entry = entry.unwrap();
        let name = entry.file_name().to_string_lossy().into_owned();
        let index = name
            .strip_prefix("chunk-")
            .and_then(|n| n.strip_suffix(".csv"))
            .and_then(|n| n.parse::<u64>().ok());
        if let Some(index) = index {
            chunks.push((index, fs::read(entry.path()).unwrap()));
        }
    }
    chunks.sort();
    let complete = fs::read_to_string(landing.join("_COMPLETE")).ok();
    (chunks, complete)
}

/// Rows `(line, reason, raw)` of a rejects file (absent file: none); `raw` is the record's
/// bytes, decoded from the file's escaped text.
fn read_rejects(path: &Path, problems: &mut Vec<String>) -> Vec<(u64, String, Vec<u8>)> {
    let Ok(bytes) = fs::read(path) else {
        return Vec::new();
    };
    let mut reader = csv::ReaderBuilder::new()
        .has_headers(true)
        .from_reader(bytes.as_slice());
    match reader.byte_headers() {
        Ok(h) if h.iter().eq([&b"chunk"[..], b"line", b"reason", b"raw"]) => {}
        other => problems.push(format!("(r) {}: header {other:?}", path.display())),
    }
    let mut rows = Vec::new();
    for record in reader.byte_records() {
        match record {
            Ok(r) if r.len() == 4 => {
                let text = |i: usize| String::from_utf8_lossy(&r[i]).into_owned();
                // The raw text is one line of printable UTF-8.
                let raw = std::str::from_utf8(&r[3]).ok();
                if raw.is_none_or(|raw| raw.chars().any(char::is_control)) {
                    problems.push(format!("(r) {}: raw {:?}", path.display(), text(3)));
                }
                let raw = common::outputs::unescape_raw(raw.unwrap_or_default());
                match text(1).parse::<u64>() {
                    Ok(line) => rows.push((line, text(2), raw)),
                    Err(_) => problems.push(format!("(r) {}: line {:?}", path.display(), text(1))),
                }
            }
            other => problems.push(format!("(r) {}: row {other:?}", path.display())),
        }
    }
    rows
}

/// Compares a rejects file with the reference's rejects of the same bytes.
fn check_rejects(
    what: &str,
    path: &Path,
    expected: &[reference::RefReject],
    missing_column: Option<&str>,
    problems: &mut Vec<String>,
) {
    let got = read_rejects(path, problems);
    let mut got_lines: Vec<u64> = got.iter().map(|r| r.0).collect();
    let want_lines: Vec<u64> = expected.iter().map(|r| r.line).collect();
    if missing_column.is_some() {
        // A chunk rejected whole may also report its header (line 1).
        got_lines.retain(|&l| l != 1);
    }
    if got_lines != want_lines {
        problems.push(format!(
            "(r) {what}: reject lines {got_lines:?}, the reference rejects {want_lines:?}"
        ));
        return;
    }
    let by_line: BTreeMap<u64, &(u64, String, Vec<u8>)> = got.iter().map(|r| (r.0, r)).collect();
    for want in expected {
        let (_, reason, raw) = by_line[&want.line];
        if *raw != want.raw {
            problems.push(format!(
                "(r) {what}: line {} raw {:?}, the reference has {:?}",
                want.line,
                escape_bytes(raw),
                escape_bytes(&want.raw)
            ));
        }
        let must_say = match &want.reason {
            RejectReason::UnbalancedQuote => Some("unbalanced quote".to_string()),
            RejectReason::FieldCount { expected, found } => {
                Some(format!("expected {expected} fields, found {found}"))
            }
            RejectReason::MissingColumn(c) => Some(c.clone()),
            RejectReason::BadValue(_) => None,
        };
        if let Some(text) = must_say {
            if !reason.to_lowercase().contains(&text.to_lowercase()) {
                problems.push(format!(
                    "(r) {what}: line {} reason {reason:?}, the reference says {:?}",
                    want.line, want.reason
                ));
            }
        }
    }
}

/// Runs X then Y (replay, each of `workers`) on `src`; every way they differ from the
/// reference, as one line each (tagged `(x)`, `(a)`–`(d)`, `(y)`, `(r)`).
fn check_source(src: &HostileSource, workers: &[usize]) -> Vec<String> {
    let tmp = tempfile::tempdir().unwrap();
    if std::env::var("TXFLOW_HOSTILE_KEEP").is_ok_and(|v| v == "1") {
        let kept = tmp.keep();
        eprintln!("seed {}: work directory kept: {}", src.seed, kept.display());
        return check_source_in(src, workers, &kept);
    }
    check_source_in(src, workers, tmp.path())
}

fn check_source_in(src: &HostileSource, workers: &[usize], dir: &Path) -> Vec<String> {
    let mut problems = Vec::new();
    let source_path = dir.join("transactions.csv");
    let importance_path = dir.join("importance.csv");
    let landing = dir.join("landing");
    fs::write(&source_path, &src.source).unwrap();
    fs::write(&importance_path, &src.importance).unwrap();
    fs::create_dir_all(&landing).unwrap();

    let mut x = XOptions::new(&source_path, landing.to_str().unwrap());
    x.chunk_rows = src.chunk_rows;
    x.interval = Duration::ZERO;
    if let Err(e) = mechanism_x::run(&x) {
        problems.push(format!("(x) X failed: {e:#}"));
        return problems;
    }
    let (chunks, complete) = read_landing(&landing);

    // X against the reference's framing of the source.
    let source = reference::frame_records(&src.source);
    let n = src.chunk_rows;
    let want_chunks = source.records.len().div_ceil(n);
    if complete.as_deref().map(str::trim) != Some(want_chunks.to_string().as_str()) {
        problems.push(format!(
            "(x) _COMPLETE {complete:?}, the source has {} records: {want_chunks} chunks of {n}",
            source.records.len()
        ));
    }
    let indices: Vec<u64> = chunks.iter().map(|c| c.0).collect();
    if indices != (0..indices.len() as u64).collect::<Vec<_>>() {
        problems.push(format!("(x) chunk indices {indices:?}"));
    }
    let mut total = 0;
    for (pos, (k, bytes)) in chunks.iter().enumerate() {
        let name = format!("chunk-{k:06}.csv");
        let framed = reference::frame_records(bytes);
        let count = framed.records.len();
        total += count;
        let last = pos + 1 == chunks.len();
        if (!last && count != n) || (last && !(1..=n).contains(&count)) {
            problems.push(format!(
                "(a) {name} holds {count} records (chunk_rows {n}, last: {last})"
            ));
        }
        if !matches!(bytes.last(), Some(b'\n' | b'\r')) {
            problems.push(format!("(b) {name} does not end with a line terminator"));
        }
        let header = framed.header.as_ref().map(|h| &h.bytes);
        if header != source.header.as_ref().map(|h| &h.bytes) {
            problems.push(format!(
                "(d) {name} header {:?}, the source's {:?}",
                header.map(|h| escape_bytes(h)),
                source.header.as_ref().map(|h| escape_bytes(&h.bytes))
            ));
        }
        let copied: Vec<Vec<u8>> = framed.records.iter().map(|r| r.copied()).collect();
        let from = (pos * n).min(source.records.len());
        let to = (from + n).min(source.records.len());
        let want: Vec<Vec<u8>> = source.records[from..to]
            .iter()
            .map(|r| r.copied())
            .collect();
        if copied != want {
            let i = (0..copied.len().max(want.len()))
                .find(|&i| copied.get(i) != want.get(i))
                .unwrap();
            let show = |r: Option<&Vec<u8>>| r.map(|r| escape_bytes(r));
            problems.push(format!(
                "(d) {name}: record {i} is {:?}, the source's record {} is {:?} ({} records, \
                 the source's {from}..{to})",
                show(copied.get(i)),
                from + i,
                show(want.get(i)),
                copied.len()
            ));
        }
    }
    if total != source.records.len() {
        problems.push(format!(
            "(c) the chunks hold {total} records, the source {}",
            source.records.len()
        ));
    }

    // Y against the reference's parse of each chunk X wrote.
    let outcomes: Vec<(u64, reference::ChunkOutcome)> = chunks
        .iter()
        .map(|(k, bytes)| (*k, reference::parse_chunk(bytes)))
        .collect();
    let want_epochs: Vec<(u64, u64, u64)> = outcomes
        .iter()
        .map(|(k, o)| (*k, o.accepted.len() as u64, o.rejected_lines.len() as u64))
        .collect();
    let importance = reference::parse_importance(&src.importance);
    if chunks.is_empty() && source.records.is_empty() {
        // Nothing to replay (a replay of an empty landing is refused by design).
        return problems;
    }
    for &w in workers {
        let output = dir.join(format!("out-w{w}"));
        let state = format!("sqlite://{}", dir.join(format!("state-w{w}.db")).display());
        let mut y = YOptions::new(
            landing.to_str().unwrap(),
            importance_path.to_str().unwrap(),
            output.to_str().unwrap(),
            StateConfig::parse(&state).unwrap(),
        );
        y.mode = Mode::replay(ReplayRange::default());
        y.timely.workers = w;
        if let Err(e) = mechanism_y::run(&y) {
            problems.push(format!("(y) -w {w}: Y failed: {e:#}"));
            continue;
        }
        let mut store = txflow::sinks::state::open(&StateConfig::parse(&state).unwrap()).unwrap();
        let epochs: Vec<(u64, u64, u64)> = store
            .epoch_rows()
            .unwrap()
            .iter()
            .map(|e| (e.epoch, e.rows_accepted, e.rows_rejected))
            .collect();
        if epochs != want_epochs {
            problems.push(format!(
                "(y) -w {w}: epochs (epoch, accepted, rejected) {epochs:?}, the reference {want_epochs:?}"
            ));
        }
        for (k, outcome) in &outcomes {
            let name = format!("chunk-{k:06}.csv");
            check_rejects(
                &format!("-w {w} {name}"),
                &output.join("rejects").join(&name),
                &outcome.rejects,
                outcome.missing_column.as_deref(),
                &mut problems,
            );
        }
        check_rejects(
            &format!("-w {w} CustomerImportance.csv"),
            &output.join("rejects").join("CustomerImportance.csv"),
            &importance.rejects,
            None,
            &mut problems,
        );
    }
    problems
}

/// Runs [`check_source`] and panics with the source and every problem.
fn assert_source_ok(src: &HostileSource) {
    let problems = check_source(src, &[1, 3]);
    assert!(
        problems.is_empty(),
        "{}\n{}",
        src.describe(),
        problems.join("\n")
    );
}

// ------------------------------------------------------------------------------------------
// The property
// ------------------------------------------------------------------------------------------

#[test]
fn hostile_framing_property() {
    let opts = HostileOptions::default();
    let started = Instant::now();
    let mut failures = Vec::new();
    let seeds = seeds();
    for &seed in &seeds {
        let src = streams::hostile_source(seed, &opts);
        if seeds.len() == 1 {
            eprintln!("{}", src.describe());
        }
        let problems = check_source(&src, &[1, 3]);
        if !problems.is_empty() {
            failures.push((src, problems));
        }
    }
    eprintln!(
        "hostile_framing_property: {} sources in {:.1?}, {} failed",
        seeds.len(),
        started.elapsed(),
        failures.len()
    );
    if let Some((src, problems)) = failures.first() {
        if std::env::var("TXFLOW_HOSTILE_SHRINK").is_ok_and(|v| v == "1") {
            let small = shrink(src, &problems[0]);
            eprintln!(
                "==== SHRUNK seed {}:\n{}\n{}",
                src.seed,
                small.describe(),
                check_source(&small, &[1, 3]).join("\n")
            );
        }
    }
    for (src, problems) in failures.iter().take(3) {
        eprintln!("==== FAILED {}", src.describe());
        for p in problems.iter().take(20) {
            eprintln!("  {p}");
        }
    }
    let summary: Vec<String> = failures
        .iter()
        .map(|(src, problems)| format!("seed {}: {}", src.seed, problems[0]))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} hostile sources disagree with the reference (rerun one with \
         TXFLOW_HOSTILE_SEED=S):\n{}",
        failures.len(),
        seeds.len(),
        summary.join("\n")
    );
}

/// The tag of a problem: `(x)`, `(a)`, … `(r)`.
fn tag(problem: &str) -> &str {
    problem.split_once(' ').map_or(problem, |(t, _)| t)
}

/// `bytes` without its lines `from..to` (0-based; the header line is kept).
fn without_lines(bytes: &[u8], from: usize, to: usize) -> Vec<u8> {
    let lines = reference::physical_lines(bytes);
    let header = lines.iter().position(|l| !l.is_blank());
    let mut out = Vec::new();
    for (i, l) in lines.iter().enumerate() {
        if Some(i) == header || !(from..to).contains(&i) {
            out.extend_from_slice(&l.bytes);
            out.extend_from_slice(&l.terminator);
        }
    }
    out
}

/// Drops runs of source lines, then importance lines, while a problem with the same tag
/// as `problem` remains.
fn shrink(src: &HostileSource, problem: &str) -> HostileSource {
    let want = tag(problem).to_string();
    let fails = |s: &HostileSource| check_source(s, &[1]).iter().any(|p| tag(p) == want);
    let mut best = src.clone();
    for importance in [false, true] {
        let mut run = 8;
        while run >= 1 {
            let mut i = 0;
            loop {
                let bytes = if importance {
                    &best.importance
                } else {
                    &best.source
                };
                if i >= reference::physical_lines(bytes).len() {
                    break;
                }
                let smaller = without_lines(bytes, i, i + run);
                let same = smaller == *bytes;
                let mut candidate = best.clone();
                if importance {
                    candidate.importance = smaller;
                } else {
                    candidate.source = smaller;
                }
                if !same && fails(&candidate) {
                    best = candidate;
                } else {
                    i += run;
                }
            }
            run /= 2;
        }
    }
    best
}

/// The generator is deterministic and, over the default seeds, writes every case the
/// property relies on (as the reference frames them), so it cannot silently lose its teeth.
#[test]
fn hostile_generator_covers_edge_cases() {
    let opts = HostileOptions::default();
    assert_eq!(
        streams::hostile_source(5, &opts).source,
        streams::hostile_source(5, &opts).source
    );
    let mut seen: BTreeMap<&str, u64> = BTreeMap::new();
    let mut bump = |what: &'static str, yes: bool| *seen.entry(what).or_insert(0) += yes as u64;
    for seed in seeds() {
        let src = streams::hostile_source(seed, &opts);
        let s = &src.source;
        let lines = reference::physical_lines(s);
        let framed = reference::frame_records(s);
        let out = reference::parse_chunk(s);
        let has = |needle: &[u8]| s.windows(needle.len()).any(|w| w == needle);
        let crlf = has(b"\r\n");
        let lone_cr =
            s.windows(2).any(|w| w[0] == b'\r' && w[1] != b'\n') || s.last() == Some(&b'\r');
        let bare_lf = s
            .iter()
            .enumerate()
            .any(|(i, b)| *b == b'\n' && (i == 0 || s[i - 1] != b'\r'));
        let only = |t: &[u8]| {
            lines
                .iter()
                .all(|l| l.terminator == t || l.terminator.is_empty())
        };
        bump("CR-only line ends", only(b"\r"));
        bump("CRLF-only line ends", only(b"\r\n"));
        bump("LF-only line ends", only(b"\n"));
        bump("mixed line ends", lone_cr && bare_lf && crlf);
        bump("blank line", lines.iter().any(|l| l.is_blank()));
        bump(
            "blank line before the header",
            lines.first().is_some_and(|l| l.is_blank()),
        );
        bump(
            "last line without terminator",
            lines.last().is_some_and(|l| l.terminator.is_empty()),
        );
        bump("header lacks a column", out.missing_column.is_some());
        bump("chunk_rows 1", src.chunk_rows == 1);
        bump(
            "short last chunk",
            !framed.records.len().is_multiple_of(src.chunk_rows),
        );
        bump("several chunks", framed.records.len() > 2 * src.chunk_rows);
        bump("non-UTF-8", std::str::from_utf8(s).is_err());
        let multi = |r: &reference::RefRecord| r.raw.iter().any(|b| *b == b'\n' || *b == b'\r');
        let unbalanced = |r: &reference::RefRecord| r.fields == reference::RefFields::Unbalanced;
        bump("unbalanced quote", framed.records.iter().any(unbalanced));
        bump(
            "unbalanced quote as the last record",
            framed.records.last().is_some_and(unbalanced),
        );
        bump(
            "several unbalanced quotes",
            framed.records.iter().filter(|r| unbalanced(r)).count() > 1,
        );
        if out.missing_column.is_none() {
            let rejected: Vec<u64> = out.rejected_lines.clone();
            let multi_lines: Vec<u64> = framed
                .records
                .iter()
                .filter(|r| multi(r))
                .map(|r| r.line)
                .collect();
            bump(
                "multi-line record accepted",
                multi_lines.iter().any(|l| !rejected.contains(l)),
            );
            bump(
                "multi-line record rejected",
                multi_lines.iter().any(|l| rejected.contains(l)),
            );
            bump(
                "control character in a name rejected",
                out.rejects.iter().any(|r| {
                    matches!(r.reason, RejectReason::BadValue(_))
                        && r.raw.iter().any(|b| *b < 0x20 || *b == 0x7f)
                }),
            );
            bump(
                "NUL in a name rejected",
                out.rejects
                    .iter()
                    .any(|r| matches!(r.reason, RejectReason::BadValue(_)) && r.raw.contains(&0)),
            );
            bump(
                "wrong field count",
                out.rejects
                    .iter()
                    .any(|r| matches!(r.reason, RejectReason::FieldCount { .. })),
            );
            bump(
                "non-UTF-8 name rejected",
                out.rejects.iter().any(|r| {
                    matches!(r.reason, RejectReason::BadValue(_))
                        && std::str::from_utf8(&r.raw).is_err()
                }),
            );
            bump(
                "C1 control in an accepted name",
                out.accepted.iter().any(|t| {
                    [&t.customer, &t.merchant]
                        .iter()
                        .any(|n| n.chars().any(|c| ('\u{80}'..='\u{9f}').contains(&c)))
                }),
            );
            bump(
                "stray quote in an accepted name",
                out.accepted
                    .iter()
                    .any(|t| t.customer.contains('"') || t.merchant.contains('"')),
            );
            bump(
                "control character in an accepted row",
                framed.records.iter().any(|r| {
                    !rejected.contains(&r.line)
                        && r.raw
                            .iter()
                            .any(|b| (*b < 0x20 && *b != b'\n' && *b != b'\r') || *b == 0x7f)
                }),
            );
        }
        let imp = reference::parse_importance(&src.importance);
        bump(
            "importance unbalanced quote",
            imp.rejects
                .iter()
                .any(|r| r.reason == RejectReason::UnbalancedQuote),
        );
        bump(
            "importance control character",
            imp.rejects.iter().any(|r| {
                matches!(r.reason, RejectReason::BadValue(_))
                    && r.raw.iter().any(|b| *b < 0x20 || *b == 0x7f)
            }),
        );
    }
    eprintln!(
        "hostile generator coverage over {} seeds: {seen:#?}",
        seeds().len()
    );
    for (what, n) in &seen {
        assert!(*n > 0, "no seed produced {what}");
    }
}

// ------------------------------------------------------------------------------------------
// Framing cases that once broke X or Y, one test each (same checks as the property)
// ------------------------------------------------------------------------------------------

/// A BankSim row for customer `C<i>` (`customer` replaces the quoted name when given).
fn row(i: usize, customer: Option<&str>) -> String {
    let name = customer.map_or(format!("'C{i}'"), str::to_string);
    format!(
        "{},{name},'4','{}','28007','M{}','28007','es_food',{}.5,0",
        i % 7,
        ["F", "M"][i % 2],
        i % 3,
        i % 40
    )
}

fn importance() -> Vec<u8> {
    format!("{IMPORTANCE_HEADER}\n'C1','M1',0.5,'es_food',0\n").into_bytes()
}

/// `rows` rows (row `i` replaced by `special(i)` when it says so), joined by `eol`.
fn source(rows: usize, eol: &str, mut special: impl FnMut(usize) -> Option<String>) -> Vec<u8> {
    let mut lines = vec![HEADER.to_string()];
    for i in 0..rows {
        lines.push(special(i).unwrap_or_else(|| row(i, None)));
    }
    let mut text = lines.join(eol);
    text.push_str(eol);
    text.into_bytes()
}

fn hostile(source: Vec<u8>, chunk_rows: usize) -> HostileSource {
    HostileSource {
        seed: 0,
        source,
        importance: importance(),
        chunk_rows,
    }
}

#[test]
fn hostile_framing_stray_quote_in_unquoted_customer() {
    // Once: X put everything from that row to the end into chunk 0.
    let src = hostile(
        source(300, "\n", |i| (i == 4).then(|| row(i, Some("'C4\"x'")))),
        100,
    );
    let out = reference::parse_chunk(&src.source);
    assert_eq!((out.record_lines.len(), out.rejected_lines.len()), (300, 0));
    assert_source_ok(&src);
}

#[test]
fn hostile_framing_unclosed_quote_at_field_start() {
    // Once: Y swallowed every following row into one reject.
    let src = hostile(
        source(300, "\n", |i| (i == 8).then(|| row(i, Some("\"'C8'")))),
        100,
    );
    let out = reference::parse_chunk(&src.source);
    assert_eq!(out.record_lines.len(), 300);
    assert_eq!(out.rejected_lines, vec![10]);
    assert_source_ok(&src);
}

#[test]
fn hostile_framing_cr_only_source() {
    // Once: 0 chunks and exit 0.
    let src = hostile(source(250, "\r", |_| None), 100);
    assert_eq!(reference::frame_records(&src.source).records.len(), 250);
    assert_source_ok(&src);
}

#[test]
fn hostile_framing_lone_crs_in_lf_source() {
    // Once: X counted 4 records where Y counted 6.
    let src = hostile(
        source(6, "\n", |i| match i {
            1 => Some(format!("{}\r{}", row(1, None), row(100, None))),
            3 => Some(format!("{}\r\r{}", row(3, None), row(101, None))),
            _ => None,
        }),
        2,
    );
    let out = reference::parse_chunk(&src.source);
    assert_eq!(out.record_lines, vec![2, 3, 4, 5, 6, 8, 9, 10]);
    assert_source_ok(&src);
}

#[test]
fn hostile_framing_quoted_line_breaks_and_resync() {
    // Line breaks inside quotes: with the header's field count one record (accepted when
    // the break is in a zip code, rejected when in a name), without it one rejected line.
    let src = hostile(
        source(12, "\r\n", |i| match i {
            1 => Some(row(1, None).replacen("'28007'", "\"'280\n07'\"", 1)),
            3 => Some(row(3, Some("\"'C\r\n3'\""))),
            5 => Some(format!("{},\"x\ry\",extra", row(5, None))),
            7 => Some(row(7, Some("\"'C7"))),
            9 => Some(format!("{},\"tail", row(9, None))),
            _ => None,
        }),
        3,
    );
    let out = reference::parse_chunk(&src.source);
    // Lines: 2, 3–4 (accepted), 5, 6–7 (name with CRLF), 8, 9 (unbalanced: 12 fields over
    // lines 9–10), 10 (`y",extra`: 2 fields), 11, 12 (unbalanced: the quote meets `"t` on
    // line 14, a malformed quoted field), 13, 14 (unbalanced: open to the end), 15, 16.
    assert_eq!(
        out.record_lines,
        vec![2, 3, 5, 6, 8, 9, 10, 11, 12, 13, 14, 15, 16]
    );
    assert_eq!(out.rejected_lines, vec![6, 9, 10, 12, 14]);
    assert_source_ok(&src);
}

#[test]
fn hostile_framing_control_characters_in_names() {
    // Once: a NUL in a name was accepted and poisoned the state store.
    let src = hostile(
        source(9, "\n", |i| match i {
            0 => Some(row(0, Some("'C\u{0}0'"))),
            2 => Some(row(2, None).replace("'M2'", "'M\u{7f}'")),
            4 => Some(row(4, None).replace("es_food", "es\tfood")),
            6 => Some(row(6, None).replace("'28007'", "'28\u{0}007'")),
            _ => None,
        }),
        4,
    );
    let out = reference::parse_chunk(&src.source);
    assert_eq!(out.rejected_lines, vec![2, 4, 6]);
    assert_source_ok(&src);
}

#[test]
fn hostile_framing_last_line_without_terminator() {
    let mut bytes = source(7, "\r", |_| None);
    bytes.pop();
    let src = hostile(bytes, 7);
    assert_source_ok(&src);
    let mut bytes = source(7, "\n", |i| (i == 6).then(|| row(6, Some("\"'C6'"))));
    bytes.pop();
    assert_source_ok(&hostile(bytes, 3));
}

#[test]
fn hostile_framing_odd_lines_and_names() {
    // Lines and names at the edges of the rules; every one checked end to end as above.
    let one = |i: usize, text: &str| {
        let text = text.to_string();
        source(4, "\n", move |j| (j == i).then(|| text.clone()))
    };
    let cases: Vec<(&str, Vec<u8>, Vec<u64>)> = vec![
        // (name, source, the lines the reference rejects)
        ("a line of spaces is not blank", one(1, "   "), vec![3]),
        ("a line holding a NUL", one(1, "\0"), vec![3]),
        ("a line holding a tab", one(1, "\t"), vec![3]),
        ("ten empty fields", one(1, ",,,,,,,,,"), vec![3]),
        (
            "a quoted empty customer",
            one(1, &row(1, Some("\"\""))),
            vec![3],
        ),
        (
            "C1 controls are not in the SPEC's range",
            one(1, &row(1, Some("'C\u{85}1'")).replace("'M1'", "'M\u{9f}'")),
            vec![],
        ),
        (
            "a quote open to the end, over blank lines",
            one(1, &format!("{}\n\n\r\n", row(1, Some("\"'C1")))),
            vec![3],
        ),
        (
            "a quoted zip spanning blank lines",
            one(1, &row(1, None).replacen("'28007'", "\"28\r\n\r\n007\"", 1)),
            vec![],
        ),
        (
            "header names with doubled quotes",
            String::from_utf8(source(3, "\r", |_| None))
                .unwrap()
                .replacen("step", "\"step\"", 1)
                .replacen("fraud", "\"fra\"\"ud\"", 1)
                .into_bytes(),
            vec![2, 3, 4],
        ),
        (
            "a NUL in a header name",
            {
                let mut b = source(3, "\n", |_| None);
                b[2] = 0;
                b
            },
            vec![2, 3, 4],
        ),
        (
            "a name that is not UTF-8",
            {
                let mut b = one(1, &row(1, Some("'C1#'")));
                let at = b.windows(3).position(|w| w == b"C1#").unwrap();
                b[at + 2] = 0xff;
                b
            },
            vec![3],
        ),
        (
            "no record after the header",
            format!("{HEADER}\n\n\r\n\r").into_bytes(),
            vec![],
        ),
    ];
    let mut bad = Vec::new();
    for (name, bytes, rejected) in cases {
        let out = reference::parse_chunk(&bytes);
        assert_eq!(out.rejected_lines, rejected, "{name}: the reference");
        for chunk_rows in [1, 3] {
            let src = hostile(bytes.clone(), chunk_rows);
            let problems = check_source(&src, &[1]);
            if !problems.is_empty() {
                bad.push(format!(
                    "== {name} (chunk_rows {chunk_rows})\n{}{}",
                    src.describe(),
                    problems.join("\n")
                ));
            }
        }
    }
    assert!(bad.is_empty(), "{}", bad.join("\n"));
}

// ------------------------------------------------------------------------------------------
// SPEC §2.1 as amended: an unclosed quote never pairs with a later stray quote; records
// spanning lines are at most 1 MiB
// ------------------------------------------------------------------------------------------

/// A source of `rows` BankSim rows where about 0.05 % open a quote at the start of the
/// customer field and never close it, and about 0.2 % hold a stray quote inside the customer
/// field; also the 2-based line numbers of the unclosed ones.
fn unclosed_and_stray_quotes(seed: u64, rows: usize) -> (HostileSource, Vec<u64>) {
    let mut rng = SplitMix64::new(seed);
    let mut unclosed = Vec::new();
    let src = source(rows, "\n", |i| match rng.below(10_000) {
        0..5 => {
            unclosed.push(i as u64 + 2);
            Some(row(i, Some(&format!("\"'C{i}'"))))
        }
        5..25 => Some(row(i, Some(&format!("'C{}\"{}'", i / 100, i % 100)))),
        _ => None,
    });
    (hostile(src, 10_000), unclosed)
}

#[test]
fn hostile_framing_unclosed_quotes_never_pair_with_stray_quotes() {
    const ROWS: usize = 50_000;
    let (src, unclosed) = unclosed_and_stray_quotes(1, ROWS);
    let strays = src
        .source
        .windows(2)
        .filter(|w| w[1] == b'"' && w[0] != b',');
    assert!(unclosed.len() >= 10 && strays.count() >= 50);
    // Every line is a frame of its own, and only the unclosed ones are not records: no
    // well-formed record is lost.
    let framed = reference::frame_records(&src.source);
    assert_eq!(framed.records.len(), ROWS);
    let unbalanced: Vec<u64> = framed
        .records
        .iter()
        .filter(|r| r.fields == reference::RefFields::Unbalanced)
        .map(|r| r.line)
        .collect();
    assert_eq!(unbalanced, unclosed);
    let out = reference::parse_chunk(&src.source);
    assert_eq!(out.accepted.len(), ROWS - unclosed.len());
    assert_eq!(out.rejected_lines, unclosed);
    // X and Y (one and three workers) count the same, chunk by chunk.
    assert_source_ok(&src);
}

#[test]
fn hostile_framing_records_spanning_lines_are_at_most_1_mib() {
    // A quoted zip code holding a line break: a record whose length is `len` bytes.
    let spanning = |i: usize, len: usize| {
        let short = row(i, None);
        let filler = len - (short.len() - "'28007'".len() + "\"\n\"".len());
        let zip = format!(
            "\"{}\n{}\"",
            "1".repeat(filler / 2),
            "2".repeat(filler - filler / 2)
        );
        let long = row(i, None).replacen("'28007'", &zip, 1);
        assert_eq!(long.len(), len);
        long
    };
    const MIB: usize = 1024 * 1024;
    let src = hostile(
        source(8, "\n", |i| match i {
            2 => Some(spanning(2, MIB)),
            5 => Some(spanning(5, MIB + 1)),
            _ => None,
        }),
        3,
    );
    let out = reference::parse_chunk(&src.source);
    // Lines 4–5 are one record of 1 MiB (accepted); line 8 opens one of 1 MiB + 1 byte: not
    // a record, and its second line (9) is a record of the wrong field count.
    assert_eq!(out.record_lines, vec![2, 3, 4, 6, 7, 8, 9, 10, 11]);
    assert_eq!(out.rejected_lines, vec![8, 9]);
    assert_eq!(out.rejects[0].reason, RejectReason::UnbalancedQuote);
    assert_source_ok(&src);
}

// ------------------------------------------------------------------------------------------
// Rejects keep the raw bytes of their records
// ------------------------------------------------------------------------------------------

#[test]
fn hostile_framing_rejects_keep_raw_bytes() {
    let with = |i: usize, from: &str, to: &[u8]| {
        let text = row(i, None);
        let at = text.find(from).unwrap();
        [
            &text.as_bytes()[..at],
            to,
            &text.as_bytes()[at + from.len()..],
        ]
        .concat()
    };
    // (line, bytes) of the rejected rows; row `i` is on line `i + 2`.
    let bad: Vec<(u64, Vec<u8>)> = vec![
        (3, with(1, "'C1'", b"'C\xff1'")),
        (4, with(2, "'C2'", b"'C\x002'")),
        (5, with(3, "'M0'", b"'M\x1b[31m\x7f'")),
        (6, with(4, "es_food", b"es\tfood\x85")),
        (7, with(5, ",5.5,", b",-5.5,\\x41\\\\x4\\xff\xc3,")),
        (8, with(6, "'C6'", b"\"'C\r\n6'\"")),
        (10, with(7, "'M'", b"'X'")),
    ];
    let mut source = format!("{HEADER}\n{}\n", row(0, None)).into_bytes();
    for (_, bytes) in &bad {
        source.extend_from_slice(bytes);
        source.push(b'\n');
    }
    source.extend_from_slice(format!("{}\n", row(8, None)).as_bytes());
    let importance = [
        IMPORTANCE_HEADER.as_bytes(),
        b"\n'C\xfe1','M1',0.5,'es_food',0\n'C1','M\x001',0.5,'es_food',0\n",
    ]
    .concat();
    let src = HostileSource {
        seed: 0,
        source,
        importance: importance.clone(),
        chunk_rows: 100,
    };
    // X and Y against the reference, raw bytes compared exactly.
    assert_source_ok(&src);

    // Decoded by the rule alone, each rejects row gives back its record's bytes.
    let dir = tempfile::tempdir().unwrap();
    let landing = dir.path().join("landing");
    fs::write(dir.path().join("t.csv"), &src.source).unwrap();
    fs::write(dir.path().join("imp.csv"), &importance).unwrap();
    let mut x = XOptions::new(dir.path().join("t.csv"), landing.to_str().unwrap());
    x.interval = Duration::ZERO;
    mechanism_x::run(&x).unwrap();
    let output = dir.path().join("out");
    let state = format!("sqlite://{}", dir.path().join("s.db").display());
    let mut y = YOptions::new(
        landing.to_str().unwrap(),
        dir.path().join("imp.csv").to_str().unwrap(),
        output.to_str().unwrap(),
        StateConfig::parse(&state).unwrap(),
    );
    y.mode = Mode::replay(ReplayRange::default());
    mechanism_y::run(&y).unwrap();
    let raw = |name: &str| -> Vec<(u64, String)> {
        let rows = common::outputs::read_csv(&output.join("rejects").join(name));
        rows[1..]
            .iter()
            .map(|r| (r[1].parse().unwrap(), r[3].clone()))
            .collect()
    };
    let got = raw("chunk-000000.csv");
    let decoded: Vec<(u64, Vec<u8>)> = got
        .iter()
        .map(|(line, text)| (*line, common::outputs::unescape_raw(text)))
        .collect();
    assert_eq!(decoded, bad);
    // A printable row reads exactly as in the input; none holds a control character.
    assert_eq!(got.last().unwrap().1.as_bytes(), bad.last().unwrap().1);
    assert!(got.iter().all(|(_, t)| !t.chars().any(char::is_control)));
    let imp: Vec<Vec<u8>> = raw("CustomerImportance.csv")
        .iter()
        .map(|(_, text)| common::outputs::unescape_raw(text))
        .collect();
    assert_eq!(
        imp,
        [
            b"'C\xfe1','M1',0.5,'es_food',0".to_vec(),
            b"'C1','M\x001',0.5,'es_food',0".to_vec()
        ]
    );
}
