//! Mechanism X: the producer (SPEC §3). Cuts `transactions.csv` into chunk objects of the
//! header plus up to `chunk_rows` records, copied byte for byte, one every `interval`.
//!
//! Resuming: X lists the landing store (canonical chunk names only: another `chunk-*` key, such
//! as `chunk-0000003.csv`, is ignored with a warning and is neither a chunk nor a gap; see
//! `sources::landing`), re-derives the last chunk present from the source and
//! checks it is byte-identical (a verified resume point: same source, same chunk size), then
//! continues with the next one. Every chunk is created with a conditional write
//! (`put_if_absent`); if one already exists (a concurrent or earlier X), its bytes must equal
//! ours, so no chunk is ever written twice with different content and none is skipped.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::error::{Context, Error, Result, SourceError};
use crate::objectstore::{self, ObjectStore, PutOutcome, S3Options};
use crate::redact;
use crate::sources::framing::{self, Header, Step};
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

/// Reads a source's records as X copies them: streamed in blocks and framed by the SPEC's
/// rules ([`framing`]), so a chunk holds exactly the records Y will count.
pub(crate) struct SourceRecords<R> {
    reader: R,
    buf: Vec<u8>,
    /// Start of the unread part of `buf`.
    pos: usize,
    eof: bool,
    /// The header's field count.
    fields: usize,
}

/// How much X reads at a time; a record still undecided at the end of the buffer makes the
/// next read at least as large as the buffer, so rescanning stays linear.
const READ_BLOCK: usize = 1 << 20;

/// The header must end within this many bytes: a source with no line break (an unknown
/// terminator) is refused instead of being read whole as one line.
const MAX_HEADER_BYTES: usize = 1 << 20;

impl<R: Read> SourceRecords<R> {
    /// Reads up to the header; returns the reader and the header line with its terminator
    /// (a byte-order mark kept), or `None` for a source with no header (empty or blank).
    pub(crate) fn open(reader: R) -> Result<(SourceRecords<R>, Option<Vec<u8>>), SourceError> {
        let mut records = SourceRecords {
            reader,
            buf: Vec::new(),
            pos: 0,
            eof: false,
            fields: 0,
        };
        loop {
            let bom = framing::bom_len(&records.buf);
            match framing::header_at(&records.buf, bom, records.eof) {
                Header::Line(header) if !header.terminated() => {
                    return Err(SourceError::NoLineBreak)
                }
                Header::Line(header) => {
                    records.fields = framing::field_count(&header, &records.buf);
                    records.pos = header.next;
                    let mut line = records.buf[..bom].to_vec();
                    line.extend_from_slice(header.with_terminator(&records.buf));
                    return Ok((records, Some(line)));
                }
                Header::Absent => return Ok((records, None)),
                _ if records.buf.len() > MAX_HEADER_BYTES => return Err(SourceError::NoLineBreak),
                _ => records.fill()?,
            }
        }
    }

    /// Appends the next record (or unbalanced line) with its terminator to `out` (`\n` added
    /// when the source's last line has none); `false` at the end of the source.
    pub(crate) fn append_next(&mut self, out: &mut Vec<u8>) -> std::io::Result<bool> {
        loop {
            if self.pos >= self.buf.len() {
                if self.eof {
                    return Ok(false);
                }
                self.fill()?;
                continue;
            }
            match framing::frame_at(&self.buf, self.pos, self.fields, self.eof) {
                Step::Blank { next } => self.pos = next,
                Step::Frame(frame) => {
                    out.extend_from_slice(frame.with_terminator(&self.buf));
                    if !frame.terminated() {
                        out.push(b'\n');
                    }
                    self.pos = frame.next;
                    return Ok(true);
                }
                Step::NeedMore => self.fill()?,
            }
        }
    }

    /// Drops the consumed bytes and reads the next block (at least as large as what is kept).
    fn fill(&mut self) -> std::io::Result<()> {
        self.buf.drain(..self.pos);
        self.pos = 0;
        let want = READ_BLOCK.max(self.buf.len());
        let kept = self.buf.len();
        self.buf.resize(kept + want, 0);
        let mut filled = kept;
        while filled < self.buf.len() {
            match self.reader.read(&mut self.buf[filled..]) {
                Ok(0) => {
                    self.eof = true;
                    break;
                }
                Ok(n) => filled += n,
                Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
                Err(e) => {
                    self.buf.truncate(filled);
                    return Err(e);
                }
            }
        }
        self.buf.truncate(filled);
        Ok(())
    }
}

/// Runs X to the end of the source (or `max_chunks`).
pub fn run(options: &XOptions) -> Result<XSummary> {
    if options.chunk_rows == 0 {
        return Err(Error::configuration("--chunk-rows must be at least 1"));
    }
    // The source first: a wrong source leaves the landing untouched.
    let file = open_source(&options.source)?;
    let landing = open_landing(options)?;
    let source = options.source.display();
    let (records, header) =
        SourceRecords::open(file).with_context(|| format!("reading the source {source}"))?;
    let header = header
        .ok_or_else(|| Error::input(format!("the source {source} is empty: no header row")))?;
    let resume_at = resume_point(landing.as_ref())?;
    let mut producer = Producer {
        options,
        landing,
        records,
        header,
        resume_at,
        summary: XSummary::default(),
        started: Instant::now(),
    };
    match producer.cut()? {
        Cut::Stopped(index) => Ok(summary_with_total(producer.summary, index)),
        Cut::Exhausted(index) => producer.finish(index),
    }
}

/// Opens the source file, refusing a directory.
fn open_source(path: &Path) -> Result<File> {
    let source = path.display();
    let file = File::open(path)
        .map_err(SourceError::Io)
        .with_context(|| format!("opening the source {source}"))?;
    // Opening a directory succeeds; reading it would fail with a bare "Is a directory".
    if file.metadata().is_ok_and(|m| m.is_dir()) {
        return Err(Error::configuration(format!(
            "the source {source} is a directory, not a file"
        )));
    }
    Ok(file)
}

/// Opens the landing store and checks it can be written (removing killed writers' temporary
/// files).
fn open_landing(options: &XOptions) -> Result<Arc<dyn ObjectStore>> {
    let location = redact::url(&options.landing);
    let landing = objectstore::open(&options.landing, &options.s3)
        .with_context(|| format!("opening the landing store {location}"))?;
    landing
        .check()
        .with_context(|| format!("checking the landing store {location}"))?;
    if let Some(dir) = objectstore::as_local(landing.as_ref()) {
        dir.check_writable()
            .with_context(|| format!("the landing {location} is not writable"))?;
        dir.remove_stale_temporaries().with_context(|| {
            format!("removing stale temporary files from the landing {location}")
        })?;
    }
    Ok(landing)
}

/// The number of chunks already in the landing store (chunks `0..n`, without a gap).
fn resume_point(landing: &dyn ObjectStore) -> Result<u64> {
    let present = list_chunks(landing)?;
    for (expected, (index, _)) in present.iter().enumerate() {
        if *index != expected as u64 {
            return Err(Error::input(format!(
                "landing store {} has a gap: chunk {} is missing but {} exists",
                landing.describe(),
                chunk_key(expected as u64),
                chunk_key(*index)
            )));
        }
    }
    let resume_at = present.len() as u64;
    if resume_at > 0 {
        tracing::info!(
            chunks = resume_at,
            "landing store already holds chunks; verifying the resume point"
        );
    }
    Ok(resume_at)
}

/// How cutting the source ended: the number of chunks it yielded so far.
enum Cut {
    /// `max_chunks` were written; the source is not exhausted.
    Stopped(u64),
    /// The source is exhausted.
    Exhausted(u64),
}

/// One run of X: the source being cut, the landing it goes to, and what was done so far.
struct Producer<'o> {
    options: &'o XOptions,
    landing: Arc<dyn ObjectStore>,
    records: SourceRecords<File>,
    /// The header line, with its terminator, that starts every chunk.
    header: Vec<u8>,
    /// Chunks already in the landing store at start.
    resume_at: u64,
    summary: XSummary,
    started: Instant,
}

impl Producer<'_> {
    /// Cuts the source into chunks and writes those past the resume point.
    fn cut(&mut self) -> Result<Cut> {
        let mut index = 0u64;
        while let Some((body, rows)) = self.next_chunk()? {
            // Chunks before the resume point are only re-derived (to skip the source
            // forward); the last present one is compared byte for byte.
            if index + 1 < self.resume_at {
                index += 1;
                continue;
            }
            if index + 1 == self.resume_at {
                verify_same(self.landing.as_ref(), index, &body)?;
                self.summary.chunks_already_present = self.resume_at;
                index += 1;
                continue;
            }
            if self
                .options
                .max_chunks
                .is_some_and(|max| self.summary.chunks_written >= max)
            {
                return Ok(Cut::Stopped(index));
            }
            self.pace();
            self.write_chunk(index, &body, rows)?;
            index += 1;
        }
        Ok(Cut::Exhausted(index))
    }

    /// The next chunk's bytes (the header and up to `chunk_rows` records) and its record
    /// count; `None` at the end of the source.
    fn next_chunk(&mut self) -> Result<Option<(Vec<u8>, usize)>> {
        let mut body = self.header.clone();
        let mut rows = 0usize;
        while rows < self.options.chunk_rows
            && self
                .records
                .append_next(&mut body)
                .map_err(SourceError::Io)
                .with_context(|| format!("reading the source {}", self.options.source.display()))?
        {
            rows += 1;
        }
        Ok((rows > 0).then_some((body, rows)))
    }

    /// Sleeps until the next chunk is due (one every `interval` from the start).
    fn pace(&self) {
        let written = self.summary.chunks_written;
        if self.options.interval.is_zero() || written == 0 {
            return;
        }
        let due = self.options.interval * written as u32;
        if let Some(wait) = due.checked_sub(self.started.elapsed()) {
            std::thread::sleep(wait);
        }
    }

    /// Creates chunk `index`, or checks that the one already there has the same bytes.
    fn write_chunk(&mut self, index: u64, body: &[u8], rows: usize) -> Result<()> {
        let landing = self.landing.as_ref();
        match landing.put_if_absent(&chunk_key(index), body)? {
            PutOutcome::Created => {}
            PutOutcome::AlreadyExists => verify_same(landing, index, body)?,
        }
        let summary = &mut self.summary;
        summary.chunks_written += 1;
        summary.rows_written += rows as u64;
        let elapsed = self.started.elapsed().as_secs_f64().max(1e-9);
        tracing::info!(
            chunk = %chunk_key(index),
            rows,
            chunks_written = summary.chunks_written,
            rows_per_s = (summary.rows_written as f64 / elapsed) as u64,
            "chunk written"
        );
        Ok(())
    }

    /// The source is exhausted after `index` chunks: checks them against the landing and
    /// writes (or checks) `_COMPLETE`.
    fn finish(mut self, index: u64) -> Result<XSummary> {
        let landing = self.landing.as_ref();
        let resume_at = self.resume_at;
        if index < resume_at {
            return Err(Error::configuration(format!(
                "landing store {} holds {resume_at} chunks but the source yields only {index}: a different source?",
                landing.describe()
            )));
        }
        match read_complete(landing)? {
            Some(n) if n == index => {}
            Some(n) => {
                return Err(Error::configuration(format!(
                    "landing store {} is marked complete with {n} chunks, but the source yields {index}",
                    landing.describe()
                )))
            }
            None => landing.put(COMPLETE_KEY, index.to_string().as_bytes())?,
        }
        tracing::info!(chunks = index, "source exhausted; {COMPLETE_KEY} written");
        self.summary.complete = true;
        Ok(summary_with_total(self.summary, index))
    }
}

fn summary_with_total(mut summary: XSummary, total: u64) -> XSummary {
    summary.chunks_total = total;
    summary
}

fn verify_same(landing: &dyn ObjectStore, index: u64, body: &[u8]) -> Result<()> {
    let key = chunk_key(index);
    let existing = landing
        .get(&key)?
        .ok_or_else(|| Error::input(format!("{key} vanished from {}", landing.describe())))?;
    if existing.body[..] != body[..] {
        return Err(Error::configuration(format!(
            "{key} in {} differs from what this source and --chunk-rows produce: refusing to continue \
             (use an empty landing location, or the same source and chunk size)",
            landing.describe()
        )));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The header and the records X copies from `text`, read in blocks of `block` bytes.
    fn records(text: &str, block: usize) -> Vec<String> {
        let reader = BlockReader {
            data: text.as_bytes(),
            block,
        };
        let (mut r, header) = SourceRecords::open(reader).unwrap();
        let mut out: Vec<String> = header.into_iter().map(|h| lossy(&h)).collect();
        let mut record = Vec::new();
        while r.append_next(&mut record).unwrap() {
            out.push(lossy(&record));
            record.clear();
        }
        out
    }

    fn lossy(bytes: &[u8]) -> String {
        String::from_utf8_lossy(bytes).into_owned()
    }

    /// A reader that returns at most `block` bytes per read, to cut records anywhere.
    struct BlockReader<'a> {
        data: &'a [u8],
        block: usize,
    }

    impl Read for BlockReader<'_> {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let n = self.block.min(out.len()).min(self.data.len());
            out[..n].copy_from_slice(&self.data[..n]);
            self.data = &self.data[n..];
            Ok(n)
        }
    }

    #[test]
    fn frames_records_like_y_in_any_block_size() {
        let text = "h1,h2\r\na,b\r\n\r\n\"x\ny\",c\rz\"q,1\n\"open,2\nnext,3\r\nlast,row";
        let want = [
            "h1,h2\r\n",
            "a,b\r\n",
            "\"x\ny\",c\r",
            "z\"q,1\n",
            "\"open,2\n",
            "next,3\r\n",
            "last,row\n",
        ];
        for block in [1, 2, 3, 7, 1 << 20] {
            assert_eq!(records(text, block), want, "block {block}");
        }
        assert!(records("", 4).is_empty());
        assert_eq!(records("\n\r\nh\n", 1), ["h\n"]);
    }

    /// A 190 MB source made on the fly: the header, a row whose customer opens a quote that is
    /// never closed, then ordinary rows; counts the bytes X reads.
    struct UnclosedQuoteSource {
        produced: usize,
        pending: Vec<u8>,
    }

    const SOURCE_BYTES: usize = 190_000_000;
    const GOOD_ROW: &[u8] = b"1,'C1','4','M','28007','M1','28007','es_food',4.55,0\n";
    const OPEN_ROW: &[u8] = b"0,\"'C0','4','M','28007','M1','28007','es_food',4.55,0\n";

    impl Read for UnclosedQuoteSource {
        fn read(&mut self, out: &mut [u8]) -> std::io::Result<usize> {
            let mut n = 0;
            while n < out.len() && self.produced < SOURCE_BYTES {
                if self.pending.is_empty() {
                    self.pending = GOOD_ROW.to_vec();
                }
                let take = (out.len() - n)
                    .min(self.pending.len())
                    .min(SOURCE_BYTES - self.produced);
                out[n..n + take].copy_from_slice(&self.pending[..take]);
                self.pending.drain(..take);
                n += take;
                self.produced += take;
            }
            Ok(n)
        }
    }

    #[test]
    fn an_unclosed_quote_is_decided_within_the_record_limit() {
        let mut start =
            b"step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud\n"
                .to_vec();
        start.extend_from_slice(OPEN_ROW);
        let source = UnclosedQuoteSource {
            produced: 0,
            pending: start,
        };
        let (mut records, _) = SourceRecords::open(source).unwrap();
        let mut out = Vec::new();
        assert!(records.append_next(&mut out).unwrap());
        // The open quote's line alone, decided after a few MiB of the 190 MB source.
        assert_eq!(out, OPEN_ROW);
        let read = records.reader.produced;
        let bound = 2 * READ_BLOCK + framing::MAX_RECORD_BYTES;
        assert!(read <= bound, "read {read} bytes before deciding");
        assert!(records.buf.capacity() <= bound);
        // Then the next lines, each a record.
        for _ in 0..3 {
            out.clear();
            assert!(records.append_next(&mut out).unwrap());
            assert_eq!(out, GOOD_ROW);
        }
    }

    #[test]
    fn a_source_without_line_breaks_is_an_error() {
        let reader = BlockReader {
            data: b"h1,h2\x1ea,b\x1ec,d",
            block: 4,
        };
        assert!(matches!(
            SourceRecords::open(reader),
            Err(SourceError::NoLineBreak)
        ));
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
