//! Mechanism X: the producer (SPEC §3). Cuts `transactions.csv` into chunk objects of the
//! header plus up to `chunk_rows` records, copied byte for byte, one every `interval`.
//!
//! Resuming: X lists the landing store, re-derives the last chunk present from the source and
//! checks it is byte-identical (a verified resume point: same source, same chunk size), then
//! continues with the next one. Every chunk is created with a conditional write
//! (`put_if_absent`); if one already exists (a concurrent or earlier X), its bytes must equal
//! ours, so no chunk is ever written twice with different content and none is skipped.

use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::time::{Duration, Instant};

use anyhow::Context;

use crate::objectstore::{self, ObjectStore, PutOutcome, S3Options};
use crate::sources::landing::{chunk_key, list_chunks, read_complete, COMPLETE_KEY};

#[derive(Clone, Debug)]
pub struct XOptions {
    pub source: PathBuf,
    pub landing: String,
    pub chunk_rows: usize,
    pub interval: Duration,
    pub s3: S3Options,
    /// Stop after writing this many chunks in this run, without `_COMPLETE` (tests, demos).
    pub max_chunks: Option<u64>,
}

impl XOptions {
    pub fn new(source: impl Into<PathBuf>, landing: &str) -> XOptions {
        XOptions {
            source: source.into(),
            landing: landing.into(),
            chunk_rows: 10_000,
            interval: Duration::from_secs(1),
            s3: S3Options::default(),
            max_chunks: None,
        }
    }
}

/// What a run of X did.
#[derive(Clone, Debug, Default)]
pub struct XSummary {
    pub chunks_total: u64,
    pub chunks_written: u64,
    pub chunks_already_present: u64,
    pub rows_written: u64,
    pub complete: bool,
}

/// Reads CSV records as raw bytes: a record ends at a newline outside double quotes.
/// Blank lines are not records and are skipped.
pub struct RawRecords<R> {
    reader: R,
}

impl<R: BufRead> RawRecords<R> {
    pub fn new(reader: R) -> Self {
        RawRecords { reader }
    }

    /// The next record with its line terminator (one is added when the file lacks it).
    pub fn next_record(&mut self) -> std::io::Result<Option<Vec<u8>>> {
        loop {
            let mut record = Vec::new();
            let mut quotes = 0usize;
            loop {
                let start = record.len();
                let n = self.reader.read_until(b'\n', &mut record)?;
                if n == 0 {
                    break;
                }
                quotes += record[start..].iter().filter(|&&b| b == b'"').count();
                if quotes.is_multiple_of(2) {
                    break;
                }
            }
            if record.is_empty() {
                return Ok(None);
            }
            if !record.ends_with(b"\n") {
                record.push(b'\n');
            }
            if record.iter().all(|b| *b == b'\n' || *b == b'\r') {
                continue;
            }
            return Ok(Some(record));
        }
    }
}

/// Runs X to the end of the source (or `max_chunks`).
pub fn run(options: &XOptions) -> anyhow::Result<XSummary> {
    anyhow::ensure!(options.chunk_rows > 0, "--chunk-rows must be at least 1");
    // The source first: a wrong source leaves the landing untouched.
    let source = options.source.display();
    let file = std::fs::File::open(&options.source)
        .with_context(|| format!("opening the source {source}"))?;
    // Opening a directory succeeds; reading it would fail with a bare "Is a directory".
    anyhow::ensure!(
        !file.metadata().is_ok_and(|m| m.is_dir()),
        "the source {source} is a directory, not a file"
    );
    let landing = objectstore::open(&options.landing, &options.s3)
        .with_context(|| format!("opening the landing store {}", options.landing))?;
    landing
        .check()
        .with_context(|| format!("checking the landing store {}", options.landing))?;
    landing
        .check_writable()
        .with_context(|| format!("the landing {} is not writable", options.landing))?;
    landing.remove_stale_temporaries().with_context(|| {
        format!(
            "removing stale temporary files from the landing {}",
            options.landing
        )
    })?;
    let mut records = RawRecords::new(BufReader::with_capacity(1 << 20, file));
    let header = records
        .next_record()
        .with_context(|| format!("reading the source {source}"))?
        .with_context(|| {
            format!(
                "the source {} is empty: no header row",
                options.source.display()
            )
        })?;

    let present = list_chunks(landing.as_ref())?;
    for (expected, (index, _)) in present.iter().enumerate() {
        anyhow::ensure!(
            *index == expected as u64,
            "landing store {} has a gap: chunk {} is missing but {} exists",
            landing.describe(),
            chunk_key(expected as u64),
            chunk_key(*index)
        );
    }
    let resume_at = present.len() as u64;
    if resume_at > 0 {
        tracing::info!(
            chunks = resume_at,
            "landing store already holds chunks; verifying the resume point"
        );
    }

    let mut summary = XSummary::default();
    let started = Instant::now();
    let mut index = 0u64;
    loop {
        let mut body = header.clone();
        let mut rows = 0usize;
        while rows < options.chunk_rows {
            match records
                .next_record()
                .with_context(|| format!("reading the source {source}"))?
            {
                Some(record) => {
                    body.extend_from_slice(&record);
                    rows += 1;
                }
                None => break,
            }
        }
        if rows == 0 {
            break;
        }
        // Chunks before the resume point are only re-derived (to skip the source forward);
        // the last present one is compared byte for byte.
        if index + 1 < resume_at {
            index += 1;
            continue;
        }
        if index + 1 == resume_at {
            verify_same(landing.as_ref(), index, &body)?;
            summary.chunks_already_present = resume_at;
            index += 1;
            continue;
        }
        if options
            .max_chunks
            .is_some_and(|max| summary.chunks_written >= max)
        {
            return Ok(summary_with_total(summary, index));
        }
        if !options.interval.is_zero() && summary.chunks_written > 0 {
            let due = options.interval * summary.chunks_written as u32;
            if let Some(wait) = due.checked_sub(started.elapsed()) {
                std::thread::sleep(wait);
            }
        }
        match landing.put_if_absent(&chunk_key(index), &body)? {
            PutOutcome::Created => {}
            PutOutcome::AlreadyExists => verify_same(landing.as_ref(), index, &body)?,
        }
        summary.chunks_written += 1;
        summary.rows_written += rows as u64;
        let elapsed = started.elapsed().as_secs_f64().max(1e-9);
        tracing::info!(
            chunk = %chunk_key(index),
            rows,
            chunks_written = summary.chunks_written,
            rows_per_s = (summary.rows_written as f64 / elapsed) as u64,
            "chunk written"
        );
        index += 1;
    }
    anyhow::ensure!(
        index >= resume_at,
        "landing store {} holds {resume_at} chunks but the source yields only {index}: a different source?",
        landing.describe()
    );
    match read_complete(landing.as_ref())? {
        Some(n) if n == index => {}
        Some(n) => anyhow::bail!(
            "landing store {} is marked complete with {n} chunks, but the source yields {index}",
            landing.describe()
        ),
        None => landing.put(COMPLETE_KEY, index.to_string().as_bytes())?,
    }
    tracing::info!(chunks = index, "source exhausted; {COMPLETE_KEY} written");
    summary.complete = true;
    Ok(summary_with_total(summary, index))
}

fn summary_with_total(mut summary: XSummary, total: u64) -> XSummary {
    summary.chunks_total = total;
    summary
}

fn verify_same(landing: &dyn ObjectStore, index: u64, body: &[u8]) -> anyhow::Result<()> {
    let key = chunk_key(index);
    let existing = landing
        .get(&key)?
        .with_context(|| format!("{key} vanished from {}", landing.describe()))?;
    anyhow::ensure!(
        existing.body[..] == body[..],
        "{key} in {} differs from what this source and --chunk-rows produce: refusing to continue \
         (use an empty landing location, or the same source and chunk size)",
        landing.describe()
    );
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn records(text: &str) -> Vec<String> {
        let mut r = RawRecords::new(text.as_bytes());
        let mut out = Vec::new();
        while let Some(rec) = r.next_record().unwrap() {
            out.push(String::from_utf8(rec).unwrap());
        }
        out
    }

    #[test]
    fn splits_records_on_unquoted_newlines_and_skips_blank_lines() {
        assert_eq!(
            records("h1,h2\r\na,b\r\n\r\n\"x\ny\",c\nlast,row"),
            ["h1,h2\r\n", "a,b\r\n", "\"x\ny\",c\n", "last,row\n"]
        );
        assert!(records("").is_empty());
    }

    #[test]
    fn chunks_resume_and_complete() {
        let dir = tempfile::tempdir().unwrap();
        let source = dir.path().join("t.csv");
        let mut text = String::from("step,amount\n");
        for i in 0..25 {
            text.push_str(&format!("{i},{i}.5\n"));
        }
        std::fs::write(&source, &text).unwrap();
        let landing = dir.path().join("landing");
        let mut options = XOptions::new(&source, landing.to_str().unwrap());
        options.chunk_rows = 10;
        options.interval = Duration::ZERO;
        options.max_chunks = Some(1);
        let first = run(&options).unwrap();
        assert_eq!((first.chunks_written, first.complete), (1, false));
        options.max_chunks = None;
        let second = run(&options).unwrap();
        assert_eq!(
            (
                second.chunks_already_present,
                second.chunks_written,
                second.complete
            ),
            (1, 2, true)
        );
        let chunk2 = std::fs::read_to_string(landing.join("chunk-000002.csv")).unwrap();
        assert_eq!(
            chunk2,
            "step,amount\n20,20.5\n21,21.5\n22,22.5\n23,23.5\n24,24.5\n"
        );
        assert_eq!(
            std::fs::read_to_string(landing.join("_COMPLETE")).unwrap(),
            "3"
        );
        // Running again is a no-op; a different chunk size is refused.
        assert_eq!(run(&options).unwrap().chunks_written, 0);
        options.chunk_rows = 7;
        assert!(run(&options).is_err());
    }
}
