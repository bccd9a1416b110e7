//! The one record framer (SPEC §2.1): where each CSV record of a transactions or importance
//! file begins and ends. Mechanism X cuts chunks with it, Y parses chunks with it, and the
//! importance reader reads with it, so all three count the same records.
//!
//! # Rules
//!
//! - LF, CRLF and a lone CR each end a line (`\r\n` is one terminator).
//! - A blank line (no bytes before its terminator) is skipped; it is not a record.
//! - The header is the first non-blank line, always exactly one line: a quote left open at its
//!   end does not continue it. Its field count is what multi-line records must have.
//! - RFC 4180 quoting: a `"` at the start of a field opens a quoted field, in which `""` is a
//!   quote and `,`, CR and LF are data. A quoted field ends only at a `"` followed by a `,`, a
//!   line terminator or the end of the data; a `"` followed by anything else makes the field
//!   **malformed**. A `"` inside an unquoted field is an ordinary character.
//! - **Resynchronisation**: a record that spans several lines and does not have the header's
//!   field count, or that holds a malformed quoted field, or that is longer than
//!   [`MAX_RECORD_BYTES`], is not a record. Its first line alone is framed as
//!   [`FrameKind::Unbalanced`] and framing resumes at the next line, so one bad quote costs
//!   one line, and an unclosed quote never pairs with a stray quote on a later line. A quote
//!   still open at the end of the data makes the first line of its record unbalanced too, and
//!   so does a malformed quoted field on a single line (its field has no value).
//!
//! Because a record spanning lines is at most [`MAX_RECORD_BYTES`] long, a reader decides
//! an open quote within that many bytes of its first line's start (or at the end of that
//! line, when the line alone is longer): memory is bounded by the record limit, not by the
//! source. A single line is one frame whatever its length.
//!
//! Framing never fails and never panics: every non-blank line after the header belongs to
//! exactly one frame.

use memchr::{memchr, memchr2};

/// The longest a record spanning several lines may be, in bytes without its final terminator
/// (SPEC §2.1: 1 MiB). A longer one is not a record (its first line is unbalanced).
pub const MAX_RECORD_BYTES: usize = 1 << 20;

/// What a frame is.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum FrameKind {
    /// A record (one line, or several when a quoted field holds line breaks).
    Record,
    /// The first line of a would-be record that is not one: a multi-line record without the
    /// header's field count or longer than [`MAX_RECORD_BYTES`], a record holding a malformed
    /// quoted field, or a quote still open at the end of the data.
    Unbalanced,
}

/// One record (or one unbalanced line) of a byte buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Frame {
    /// First byte of the record.
    pub start: usize,
    /// End of the record's bytes, before its terminator.
    pub end: usize,
    /// First byte after its terminator (`end` when the data ends without one).
    pub next: usize,
    pub kind: FrameKind,
    /// Whether the frame holds a `"` (its fields need quote-aware splitting).
    pub quoted: bool,
}

impl Frame {
    /// The frame's bytes without its terminator.
    pub fn bytes<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        &data[self.start..self.end]
    }

    /// The frame's bytes with its terminator, if it has one.
    pub(crate) fn with_terminator<'a>(&self, data: &'a [u8]) -> &'a [u8] {
        &data[self.start..self.next]
    }

    /// Whether the frame ends with a line terminator.
    pub fn terminated(&self) -> bool {
        self.next > self.end
    }
}

/// The result of framing at a line start.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Step {
    /// A blank line; the next line starts here.
    Blank {
        next: usize,
    },
    Frame(Frame),
    /// The buffer ends before the frame is decided: read more (only when not at the end).
    NeedMore,
}

/// Where the line starting at `pos` ends: `(end, next)`, or `None` when more data is needed to
/// know (no terminator yet, or a `\r` as the last byte, which may be half of a CRLF).
#[inline]
fn line_end(data: &[u8], pos: usize, at_eof: bool) -> Option<(usize, usize)> {
    match memchr2(b'\r', b'\n', &data[pos..]) {
        None if at_eof => Some((data.len(), data.len())),
        None => None,
        Some(offset) => terminator_at(data, pos + offset, at_eof).map(|next| (pos + offset, next)),
    }
}

/// The end of the terminator whose first byte (`\r` or `\n`) is at `at`.
#[inline]
fn terminator_at(data: &[u8], at: usize, at_eof: bool) -> Option<usize> {
    if data[at] == b'\n' {
        return Some(at + 1);
    }
    match data.get(at + 1) {
        Some(b'\n') => Some(at + 2),
        Some(_) => Some(at + 1),
        None if at_eof => Some(at + 1),
        None => None,
    }
}

/// What [`header_at`] finds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Header {
    Line(Frame),
    /// The data holds only blank lines (or nothing).
    Absent,
    /// More data is needed to decide (only when not at the end).
    NeedMore,
}

/// The header line: the first non-blank line at or after `pos` (a single line whatever its
/// quotes).
pub(crate) fn header_at(data: &[u8], mut pos: usize, at_eof: bool) -> Header {
    while pos < data.len() {
        let Some((end, next)) = line_end(data, pos, at_eof) else {
            return Header::NeedMore;
        };
        if end > pos {
            let quoted = memchr(b'"', &data[pos..end]).is_some();
            return Header::Line(Frame {
                start: pos,
                end,
                next,
                kind: FrameKind::Record,
                quoted,
            });
        }
        pos = next;
    }
    if at_eof {
        Header::Absent
    } else {
        Header::NeedMore
    }
}

/// Frames the record that starts at `pos` (a line start, `pos < data.len()`), for a file whose
/// header has `fields` fields. With `at_eof` false, `data` may be the prefix of a longer
/// stream and [`Step::NeedMore`] asks for more of it; it never asks for more than the line at
/// `pos` and [`MAX_RECORD_BYTES`] after `pos` (plus one byte to tell CRLF from CR).
pub(crate) fn frame_at(data: &[u8], pos: usize, fields: usize, at_eof: bool) -> Step {
    let Some((end, next)) = line_end(data, pos, at_eof) else {
        return Step::NeedMore;
    };
    if end == pos {
        return Step::Blank { next };
    }
    if memchr(b'"', &data[pos..end]).is_none() {
        return Step::Frame(Frame {
            start: pos,
            end,
            next,
            kind: FrameKind::Record,
            quoted: false,
        });
    }
    let frame = |end, next, kind| {
        Step::Frame(Frame {
            start: pos,
            end,
            next,
            kind,
            quoted: true,
        })
    };
    let mut scan = QuoteScan::new();
    scan.feed(&data[pos..end]);
    match scan.state {
        State::Malformed => return frame(end, next, FrameKind::Unbalanced),
        State::Quoted => {}
        _ => return frame(end, next, FrameKind::Record),
    }
    // A line break inside quotes: the record goes on over the next lines.
    let unbalanced = frame(end, next, FrameKind::Unbalanced);
    match scan.run_until_terminator(data, pos, end) {
        Run::Terminator(term) => match terminator_at(data, term, at_eof) {
            None => Step::NeedMore,
            Some(_) if scan.fields != fields => unbalanced,
            Some(after) => frame(term, after, FrameKind::Record),
        },
        Run::NotARecord => unbalanced,
        Run::DataEnds if !at_eof => Step::NeedMore,
        Run::DataEnds if scan.state == State::Quoted || scan.fields != fields => unbalanced,
        Run::DataEnds => frame(data.len(), data.len(), FrameKind::Record),
    }
}

/// How a record spanning lines ends.
enum Run {
    /// At a line terminator outside quotes, at this position (within the record limit).
    Terminator(usize),
    /// Not a record: a malformed quoted field, or longer than [`MAX_RECORD_BYTES`].
    NotARecord,
    /// The data ends first (within the record limit).
    DataEnds,
}

/// The quote state machine of one record, counting its fields.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum State {
    FieldStart,
    Unquoted,
    Quoted,
    /// A `"` seen inside a quoted field: a doubled quote or the closing one.
    QuoteInQuoted,
    /// A quoted field's `"` followed by something other than `"`, `,`, a line terminator or
    /// the end: the record is not one, whatever follows.
    Malformed,
}

struct QuoteScan {
    state: State,
    fields: usize,
}

impl QuoteScan {
    fn new() -> QuoteScan {
        QuoteScan {
            state: State::FieldStart,
            fields: 1,
        }
    }

    /// One byte that is not a line terminator outside quotes.
    #[inline]
    fn step(&mut self, b: u8) {
        self.state = match (self.state, b) {
            (State::Malformed, _) => State::Malformed,
            (State::FieldStart, b'"') => State::Quoted,
            (State::Quoted, b'"') => State::QuoteInQuoted,
            (State::Quoted, _) => State::Quoted,
            (State::QuoteInQuoted, b'"') => State::Quoted,
            (_, b',') => {
                self.fields += 1;
                State::FieldStart
            }
            (State::QuoteInQuoted, _) => State::Malformed,
            _ => State::Unquoted,
        };
    }

    /// Runs over one line's bytes (without its terminator), stopping at a malformed field.
    fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.step(b);
            if self.state == State::Malformed {
                return;
            }
        }
    }

    /// Runs from `at` (a line terminator inside the quoted field of the record starting at
    /// `start`) until the record ends, is found not to be one, or the data ends; it never
    /// reads past `start + MAX_RECORD_BYTES`.
    fn run_until_terminator(&mut self, data: &[u8], start: usize, at: usize) -> Run {
        // A terminator at `start + MAX_RECORD_BYTES` still ends a record of the limit's length.
        let limit = start + MAX_RECORD_BYTES + 1;
        if at >= limit {
            return Run::NotARecord;
        }
        let stop = data.len().min(limit);
        for (i, &b) in data[at..stop].iter().enumerate() {
            if matches!(b, b'\r' | b'\n') && self.state != State::Quoted {
                return Run::Terminator(at + i);
            }
            self.step(b);
            if self.state == State::Malformed {
                return Run::NotARecord;
            }
        }
        if stop == limit {
            Run::NotARecord
        } else {
            Run::DataEnds
        }
    }
}

/// The fields of one record, unquoted: values are byte slices of a reused buffer (like the
/// `csv` crate's `ByteRecord`).
#[derive(Clone, Debug, Default)]
pub struct Fields {
    buf: Vec<u8>,
    /// `(start, end)` of each field in `buf`.
    spans: Vec<(usize, usize)>,
}

impl Fields {
    /// Number of fields.
    pub fn len(&self) -> usize {
        self.spans.len()
    }

    pub fn is_empty(&self) -> bool {
        self.spans.is_empty()
    }

    /// Field `i`, or an empty slice past the end.
    #[inline]
    pub fn get(&self, i: usize) -> &[u8] {
        match self.spans.get(i) {
            Some(&(start, end)) => &self.buf[start..end],
            None => &[],
        }
    }

    pub fn iter(&self) -> impl Iterator<Item = &[u8]> {
        (0..self.len()).map(|i| self.get(i))
    }

    /// Splits `record` (a frame's bytes, without its terminator); `quoted` as the frame says.
    /// A record frame holds no malformed quoted field; a header line may, and then the bytes
    /// after its closing quote up to the next `,` stay in the field (`"a"x` is `ax`).
    pub fn split(&mut self, record: &[u8], quoted: bool) {
        self.buf.clear();
        self.spans.clear();
        if !quoted {
            self.buf.extend_from_slice(record);
            let mut start = 0;
            for comma in memchr::memchr_iter(b',', record) {
                self.spans.push((start, comma));
                start = comma + 1;
            }
            self.spans.push((start, record.len()));
            return;
        }
        let mut start = 0;
        let mut state = State::FieldStart;
        for &b in record {
            state = match (state, b) {
                (State::FieldStart, b'"') => State::Quoted,
                (State::Quoted, b'"') => State::QuoteInQuoted,
                (State::QuoteInQuoted, b'"') => {
                    self.buf.push(b'"');
                    State::Quoted
                }
                (State::Quoted, _) => {
                    self.buf.push(b);
                    State::Quoted
                }
                (_, b',') => {
                    self.spans.push((start, self.buf.len()));
                    start = self.buf.len();
                    State::FieldStart
                }
                _ => {
                    self.buf.push(b);
                    State::Unquoted
                }
            };
        }
        self.spans.push((start, self.buf.len()));
    }
}

/// Iterates over the frames of an in-memory object after its header, skipping blank lines.
pub struct Frames<'a> {
    data: &'a [u8],
    pos: usize,
    fields: usize,
}

impl<'a> Frames<'a> {
    /// Frames `data[pos..]` (a line start) for a header of `fields` fields.
    pub fn new(data: &'a [u8], pos: usize, fields: usize) -> Frames<'a> {
        Frames { data, pos, fields }
    }
}

impl Iterator for Frames<'_> {
    type Item = Frame;

    fn next(&mut self) -> Option<Frame> {
        while self.pos < self.data.len() {
            match frame_at(self.data, self.pos, self.fields, true) {
                Step::Blank { next } => self.pos = next,
                Step::Frame(frame) => {
                    self.pos = frame.next;
                    return Some(frame);
                }
                Step::NeedMore => unreachable!("framing at the end of the data needs no more"),
            }
        }
        None
    }
}

/// A UTF-8 byte-order mark's length at the start of `data` (0 or 3).
pub(crate) fn bom_len(data: &[u8]) -> usize {
    if data.starts_with(b"\xEF\xBB\xBF") {
        3
    } else {
        0
    }
}

/// The number of header fields of the header line `header` (quote-aware).
pub(crate) fn field_count(header: &Frame, data: &[u8]) -> usize {
    let mut fields = Fields::default();
    fields.split(header.bytes(data), header.quoted);
    fields.len()
}

/// Counts lines (1-based) of positions in one buffer, incrementally for increasing positions:
/// every terminator (LF, CRLF, lone CR) ends a line.
#[derive(Clone, Debug, Default)]
pub(crate) struct LineCounter {
    scanned: usize,
    lines_before: u64,
}

impl LineCounter {
    /// The 1-based line on which the byte at `pos` lies (`pos` must be a line start or inside
    /// a line; cheap when called with increasing positions).
    pub(crate) fn line_at(&mut self, data: &[u8], pos: usize) -> u64 {
        if pos < self.scanned {
            *self = LineCounter::default();
        }
        self.lines_before += count_terminators(&data[self.scanned..pos], data.get(pos).copied());
        self.scanned = pos;
        self.lines_before + 1
    }
}

/// Terminators in `bytes`, where `following` is the byte after them (a `\r` followed by `\n`
/// is half of a CRLF, counted at its `\n`).
fn count_terminators(bytes: &[u8], following: Option<u8>) -> u64 {
    let mut count = 0u64;
    for at in memchr::memchr2_iter(b'\r', b'\n', bytes) {
        let next = bytes.get(at + 1).copied().or(following);
        if bytes[at] == b'\n' || next != Some(b'\n') {
            count += 1;
        }
    }
    count
}

/// Line starts used to split an object without any `"` into contiguous shares: the first line
/// start at or after `target` (in `data[start..]`), or `data.len()`.
pub(crate) fn line_start_at_or_after(data: &[u8], start: usize, target: usize) -> usize {
    if target <= start {
        return start;
    }
    if target >= data.len() {
        return data.len();
    }
    // A line starts at `target` when the byte before ends a line (a `\r` only if not half of
    // a CRLF).
    let before = data[target - 1];
    if before == b'\n' || (before == b'\r' && data[target] != b'\n') {
        return target;
    }
    match memchr2(b'\r', b'\n', &data[target..]) {
        None => data.len(),
        Some(offset) => terminator_at(data, target + offset, true).unwrap_or(data.len()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// `(kind, text)` of every frame after the header.
    fn frames(text: &str) -> Vec<(FrameKind, String)> {
        let data = text.as_bytes();
        let Header::Line(header) = header_at(data, 0, true) else {
            panic!("no header")
        };
        let fields = field_count(&header, data);
        Frames::new(data, header.next, fields)
            .map(|f| (f.kind, String::from_utf8_lossy(f.bytes(data)).into_owned()))
            .collect()
    }

    fn records(text: &str) -> Vec<String> {
        frames(text)
            .into_iter()
            .map(|(k, t)| match k {
                FrameKind::Record => t,
                FrameKind::Unbalanced => format!("!{t}"),
            })
            .collect()
    }

    fn split(record: &str) -> Vec<String> {
        let mut f = Fields::default();
        f.split(record.as_bytes(), record.contains('"'));
        f.iter()
            .map(|v| String::from_utf8_lossy(v).into_owned())
            .collect()
    }

    #[test]
    fn line_terminators() {
        assert_eq!(records("a,b\nx,1\r\ny,2\rz,3"), ["x,1", "y,2", "z,3"]);
        assert_eq!(records("a,b\r\n\r\n\nx,1\r\r\ny,2\n"), ["x,1", "y,2"]);
        assert!(records("a,b").is_empty());
    }

    #[test]
    fn quoted_fields_and_resynchronisation() {
        // A quoted field with a comma, doubled quotes, and a line break (right field count).
        assert_eq!(
            records("a,b\n\"x,1\",2\n\"he said \"\"hi\"\"\",3\n\"two\nlines\",4\n"),
            ["\"x,1\",2", "\"he said \"\"hi\"\"\",3", "\"two\nlines\",4"]
        );
        // A `"` inside an unquoted field is ordinary.
        assert_eq!(records("a,b\nC\"1,2\nx,3\n"), ["C\"1,2", "x,3"]);
        // An unclosed quote at the start of a field costs one line.
        assert_eq!(records("a,b\n\"x,1\ny,2\nz,3\n"), ["!\"x,1", "y,2", "z,3"]);
        // ... also when it spans to the end of the data.
        assert_eq!(records("a,b\ny,2\n\"x,1"), ["y,2", "!\"x,1"]);
        // A multi-line record whose quote closes but whose field count differs.
        assert_eq!(
            records("a,b,c\n\"x\ny\",1\nz,2,3\n"),
            ["!\"x", "y\",1", "z,2,3"]
        );
        // With the header's field count it is one record, CRLF inside included.
        assert_eq!(
            records("a,b\n\"x\r\ny\",1\r\nz,2\r\n"),
            ["\"x\r\ny\",1", "z,2"]
        );
        // A single-line record with another field count is a record (the parser rejects it).
        assert_eq!(records("a,b\nx,1,2\n"), ["x,1,2"]);
    }

    #[test]
    fn a_quoted_field_ends_only_before_a_comma_a_line_end_or_the_end() {
        // Closing quotes before `,`, LF, CR, CRLF and the end of the data.
        assert_eq!(
            records("a,b\n\"x\",\"y\"\n\"x\",\"y\"\r\"x\",\"y\"\r\n\"x\",\"y\""),
            ["\"x\",\"y\"", "\"x\",\"y\"", "\"x\",\"y\"", "\"x\",\"y\""]
        );
        // A quote followed by anything else makes the field malformed: the line is unbalanced.
        assert_eq!(records("a,b\n\"x\"y,1\nz,2\n"), ["!\"x\"y,1", "z,2"]);
        assert_eq!(records("a,b\n1,\"x\" \n"), ["!1,\"x\" "]);
        assert_eq!(records("a,b\n\"x\"\"\"y,1\n"), ["!\"x\"\"\"y,1"]);
        // A malformed quote on a later line ends the would-be record: one line lost.
        assert_eq!(
            records("a,b\n\"x\ny,2\n\"z\"q\",3\nw,4\n"),
            ["!\"x", "y,2", "!\"z\"q\",3", "w,4"]
        );
    }

    #[test]
    fn an_unclosed_quote_never_pairs_with_a_later_stray_quote() {
        // Without the strict closing quote, `"C1` would close at `C5"x` and the four lines
        // would be one record of two fields.
        let text = "a,b\n\"C1,1\nC2,2\nC3,3\nC5\"x,5\nC6,6\n";
        assert_eq!(
            records(text),
            ["!\"C1,1", "C2,2", "C3,3", "C5\"x,5", "C6,6"]
        );
        // A stray quote that ends its field (before a comma) closes the quote, as RFC 4180 says:
        // with the header's field count that is one record.
        assert_eq!(records("a,b\n\"C1,1\nC5\",5\n"), ["\"C1,1\nC5\",5"]);
    }

    /// `a,b`, then a quoted field spanning two lines making a record of `len` bytes, then
    /// `z,2`.
    fn record_of(len: usize) -> Vec<u8> {
        let mut data = b"a,b\n\"".to_vec();
        let filler = len - "\"\n\",1".len();
        data.extend(std::iter::repeat_n(b'x', filler / 2));
        data.push(b'\n');
        data.extend(std::iter::repeat_n(b'y', filler - filler / 2));
        data.extend_from_slice(b"\",1\nz,2\n");
        data
    }

    #[test]
    fn a_record_spanning_lines_is_at_most_the_record_limit() {
        let kinds = |data: &[u8]| -> Vec<(FrameKind, usize)> {
            Frames::new(data, 4, 2)
                .map(|f| (f.kind, f.end - f.start))
                .collect()
        };
        let at_limit = record_of(MAX_RECORD_BYTES);
        assert_eq!(
            kinds(&at_limit),
            [
                (FrameKind::Record, MAX_RECORD_BYTES),
                (FrameKind::Record, 3)
            ]
        );
        let over = record_of(MAX_RECORD_BYTES + 1);
        let first_line = 1 + (MAX_RECORD_BYTES + 1 - 5) / 2;
        assert_eq!(
            kinds(&over),
            [
                (FrameKind::Unbalanced, first_line),
                (FrameKind::Record, MAX_RECORD_BYTES + 1 - first_line - 1),
                (FrameKind::Record, 3)
            ]
        );
    }

    #[test]
    fn an_open_quote_is_decided_within_the_record_limit() {
        // A quote opened on line 2 and never closed, then far more than the limit of lines:
        // decided as soon as the limit is passed, without the rest of the data.
        let mut data = b"a,b\n\"open,1\n".to_vec();
        while data.len() < 4 + MAX_RECORD_BYTES + 2 {
            data.extend_from_slice(b"x,1\n");
        }
        let step = frame_at(&data[..4 + MAX_RECORD_BYTES], 4, 2, false);
        assert_eq!(step, Step::NeedMore);
        let step = frame_at(&data[..4 + MAX_RECORD_BYTES + 1], 4, 2, false);
        assert!(
            matches!(step, Step::Frame(f) if f.kind == FrameKind::Unbalanced && f.next == 12),
            "{step:?}"
        );
        // A first line longer than the limit is decided at its end.
        let mut long = b"\"".to_vec();
        long.extend(std::iter::repeat_n(b'x', MAX_RECORD_BYTES + 10));
        long.extend_from_slice(b"\nmore");
        assert!(matches!(
            frame_at(&long, 0, 2, false),
            Step::Frame(f) if f.kind == FrameKind::Unbalanced && f.next == MAX_RECORD_BYTES + 12
        ));
    }

    #[test]
    fn header_is_one_line() {
        let data = b"\n\r\n\"a,b\nx,1\n";
        let Header::Line(header) = header_at(data, 0, true) else {
            panic!("no header")
        };
        assert_eq!(header.bytes(data), b"\"a,b");
        assert_eq!(field_count(&header, data), 1);
        assert_eq!(header_at(b"\n\r\n", 0, true), Header::Absent);
        assert_eq!(header_at(b"\n\r\n", 0, false), Header::NeedMore);
        assert_eq!(header_at(b"a,b", 0, false), Header::NeedMore);
        assert_eq!(header_at(b"a,b\r", 0, false), Header::NeedMore);
    }

    #[test]
    fn need_more_until_decided() {
        let data = b"\"x,1\ny";
        assert_eq!(frame_at(data, 0, 2, false), Step::NeedMore);
        assert_eq!(frame_at(b"x,1\r", 0, 2, false), Step::NeedMore);
        assert_eq!(frame_at(b"x,1", 0, 2, false), Step::NeedMore);
        assert!(matches!(frame_at(b"x,1\rz", 0, 2, false), Step::Frame(f) if f.next == 4));
        assert!(matches!(frame_at(b"x,1\r\n", 0, 2, false), Step::Frame(f) if f.next == 5));
    }

    #[test]
    fn fields_unquote() {
        assert_eq!(split("a,,b"), ["a", "", "b"]);
        assert_eq!(split("\"a,b\",c"), ["a,b", "c"]);
        assert_eq!(split("\"a\"\"b\",c"), ["a\"b", "c"]);
        // Only a header line may hold a malformed quoted field.
        assert_eq!(split("\"a\"x,c"), ["ax", "c"]);
        assert_eq!(split("a\"b,c"), ["a\"b", "c"]);
        assert_eq!(split("\"a\nb\",\"\""), ["a\nb", ""]);
        assert_eq!(split(""), [""]);
    }

    #[test]
    fn line_numbers_count_every_terminator() {
        let data = b"h\nA\r\nB\rC\n\nD";
        let mut lines = LineCounter::default();
        let at = |c: u8| data.iter().position(|&b| b == c).unwrap();
        assert_eq!(lines.line_at(data, 0), 1);
        assert_eq!(lines.line_at(data, at(b'A')), 2);
        assert_eq!(lines.line_at(data, at(b'B')), 3);
        assert_eq!(lines.line_at(data, at(b'C')), 4);
        assert_eq!(lines.line_at(data, at(b'D')), 6);
        assert_eq!(lines.line_at(data, at(b'B')), 3);
    }

    #[test]
    fn share_boundaries_are_line_starts() {
        let data = b"h\nab\r\ncd\ref\n";
        assert_eq!(line_start_at_or_after(data, 2, 3), 6);
        assert_eq!(line_start_at_or_after(data, 2, 5), 6);
        assert_eq!(line_start_at_or_after(data, 2, 6), 6);
        assert_eq!(line_start_at_or_after(data, 2, 7), 9);
        assert_eq!(line_start_at_or_after(data, 2, 9), 9);
        assert_eq!(line_start_at_or_after(data, 2, 10), 12);
        assert_eq!(line_start_at_or_after(data, 2, 99), 12);
    }
}
