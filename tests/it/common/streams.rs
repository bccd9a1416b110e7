//! Random small transaction streams with dense edge cases, for the property tests.
//!
//! A stream is a few merchants (2–4), a few customers (3–12), 2–3 categories, small
//! thresholds and 3–10 chunks of 0–40 rows (one stream in five is "wide": 20–40 customers,
//! 3–4 merchants, 0–120 rows a chunk, for more than 50 detections), so that percentile ties, threshold crossings and
//! conditions that go true → false → true happen often. On top of the plain BankSim layout
//! (`0,'C1','4','M','28007','M1','28007','es_food',4.55,0`) the generator mixes in:
//!
//! - layout: permuted header columns, double-quoted header names, CRLF line endings, blank
//!   lines (after the header, between rows, at the end), a missing final newline, values
//!   without single quotes, values wrapped in CSV double quotes, quoted numbers (`'4.55'`),
//!   garbage in the unvalidated columns (step, age, zip, fraud);
//! - names that test byte order (`C10` < `C9`, `M1823072687` < `M348934600`) and, with
//!   `exotic_names`, names holding a comma, a double quote, or a non-ASCII letter;
//! - amounts exactly at the PatId2 limit, one micro-unit either side, zero, six fractional
//!   digits, leading zeros, and (with `huge_amounts`) `999999999999.999999`; per-chunk "low"
//!   and "high" amount phases so that averages cross the limit back and forth;
//! - customers that change gender, customer popularity that is uniform, skewed or round-robin
//!   (the last gives many equal counts, i.e. percentile ties);
//! - chunks that are empty (header only), hold only bad rows, or (with `header_errors`) whose
//!   header lacks a required column;
//! - bad rows of every kind: wrong field count, a garbage line, amounts `-1`, `1e3`, `NaN`,
//!   `inf`, `+5`, `''`, empty, 7 fractional digits, 10^12, `1,5`, `0x10`, `1.2.3`; genders
//!   `X`, `f`, `MF`, empty; empty customer, merchant or category;
//! - importance: missing keys, duplicate keys (mean of 2 or 3 rows), weights on a coarse grid
//!   (`0`, `0.25`, … exact ties between customers) and arbitrary six-digit weights, negative
//!   weights, bad weights (`abc`, `1e3`, `+1`, `--1`, `NaN`, …), rows of wrong field count,
//!   rows of customers and merchants that never transact.
//!
//! Deliberately NOT generated (the SPEC leaves them open, or the reference does not model
//! them): `5.` and `.5` amounts, whitespace around values, quoted fields spanning lines,
//! blank lines before the header, duplicate or extra header columns, a broken importance
//! header, non-UTF-8 bytes.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use txflow::model::{Amount, Fraction, Thresholds};

use super::reference::{IMPORTANCE_COLUMNS, TRANSACTION_COLUMNS};

/// splitmix64: tiny, deterministic, good enough for test data.
#[derive(Clone, Debug)]
pub struct SplitMix64 {
    state: u64,
}

impl SplitMix64 {
    pub fn new(seed: u64) -> SplitMix64 {
        SplitMix64 { state: seed }
    }

    pub fn next_u64(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// Uniform-ish in `0..n` (`n > 0`).
    pub fn below(&mut self, n: u64) -> u64 {
        self.next_u64() % n
    }

    /// Uniform-ish in `lo..=hi`.
    pub fn range(&mut self, lo: u64, hi: u64) -> u64 {
        lo + self.below(hi - lo + 1)
    }

    /// True with probability `percent`/100.
    pub fn percent(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len() as u64) as usize]
    }

    pub fn pick_str(&mut self, items: &[&'static str]) -> &'static str {
        items[self.below(items.len() as u64) as usize]
    }

    pub fn shuffle<T>(&mut self, items: &mut [T]) {
        for i in (1..items.len()).rev() {
            let j = self.below(i as u64 + 1) as usize;
            items.swap(i, j);
        }
    }
}

/// What the generator may produce.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    pub min_chunks: u64,
    pub max_chunks: u64,
    /// Maximum records of a normal chunk.
    pub max_rows: u64,
    /// Layout variations (header order and quoting, CRLF, blank lines, value quoting).
    pub quirks: bool,
    pub bad_rows: bool,
    /// Chunks whose header lacks a required column.
    pub header_errors: bool,
    /// Names with a comma, a double quote or a non-ASCII letter.
    pub exotic_names: bool,
    /// Amounts near 10^12.
    pub huge_amounts: bool,
    /// Percent of streams that are "wide": 20–40 customers, 3–4 merchants and 3× the rows,
    /// so that more than 50 detections (several output files) happen.
    pub wide_percent: u64,
}

impl Default for StreamOptions {
    fn default() -> Self {
        StreamOptions {
            min_chunks: 3,
            max_chunks: 10,
            max_rows: 40,
            quirks: true,
            bad_rows: true,
            header_errors: true,
            exotic_names: true,
            huge_amounts: true,
            wide_percent: 20,
        }
    }
}

/// A generated stream: the landing chunks, the importance file and the thresholds.
#[derive(Clone, Debug)]
pub struct Stream {
    pub seed: u64,
    /// `(chunk index, bytes)`, indices 0, 1, 2, …
    pub chunks: Vec<(u64, Vec<u8>)>,
    pub importance: Vec<u8>,
    pub thresholds: Thresholds,
}

impl Stream {
    /// The whole stream as text, for failure reports.
    pub fn describe(&self) -> String {
        let mut s = format!("seed {} thresholds {:?}\n", self.seed, self.thresholds);
        for (k, bytes) in &self.chunks {
            s.push_str(&format!(
                "--- chunk-{k:06}.csv ---\n{}\n",
                String::from_utf8_lossy(bytes)
            ));
        }
        s.push_str(&format!(
            "--- importance.csv ---\n{}\n",
            String::from_utf8_lossy(&self.importance)
        ));
        s
    }
}

#[derive(Clone, Debug)]
struct Customer {
    name: String,
    gender: &'static str,
    popularity: u64,
}

struct World {
    customers: Vec<Customer>,
    merchants: Vec<String>,
    categories: Vec<String>,
    round_robin: bool,
    wide: bool,
    next_customer: usize,
    limit_micros: i64,
}

impl World {
    fn new(rng: &mut SplitMix64, opts: &StreamOptions) -> World {
        let mut numbers = vec![
            "1",
            "2",
            "3",
            "7",
            "9",
            "10",
            "11",
            "19",
            "42",
            "100",
            "583110837",
            "1093826151",
        ];
        rng.shuffle(&mut numbers);
        let wide = rng.percent(opts.wide_percent);
        let n_customers = if wide {
            rng.range(20, 40)
        } else {
            rng.range(3, 12)
        } as usize;
        let mut names: Vec<String> = (0..n_customers)
            .map(|i| match numbers.get(i) {
                Some(n) => format!("C{n}"),
                None => format!("C{}", 5000 + 37 * i),
            })
            .collect();
        if opts.exotic_names && rng.percent(40) {
            // ... and names past the 15 bytes a `Name` holds inline (the heap kind).
            let exotic = [
                "C,7",
                "C\u{e9}5",
                "C\"8",
                "C'q",
                "C1093826151-\u{e9}-long",
                "C15bytes-exact!",
            ];
            let i = rng.below(names.len() as u64) as usize;
            names[i] = rng.pick(&exotic).to_string();
        }
        let popularity_mode = rng.below(3);
        let customers = names
            .into_iter()
            .map(|name| Customer {
                name,
                gender: rng.pick_str(&["F", "F", "F", "F", "M", "M", "M", "M", "E", "U"]),
                popularity: if popularity_mode == 1 {
                    rng.range(1, 8)
                } else {
                    1
                },
            })
            .collect();

        let mut merchant_pool = vec!["M1823072687", "M348934600", "M9", "M10", "M2", "M85975013"];
        rng.shuffle(&mut merchant_pool);
        let n_merchants = rng.range(if wide { 3 } else { 2 }, 4) as usize;
        let mut merchants: Vec<String> = merchant_pool[..n_merchants]
            .iter()
            .map(|m| m.to_string())
            .collect();
        if opts.exotic_names && rng.percent(15) {
            merchants[0] = "M\u{e9}1".to_string();
        }
        if opts.exotic_names && rng.percent(15) {
            // Past the 15 bytes a `Name` holds inline: a merchant of the heap kind.
            merchants[n_merchants - 1] = "M1823072687-a-long-name".to_string();
        }

        let mut category_pool = vec!["es_food", "es_transportation", "es_health", "es_tech"];
        rng.shuffle(&mut category_pool);
        let n_categories = rng.range(2, 3) as usize;
        let categories = category_pool[..n_categories]
            .iter()
            .map(|c| c.to_string())
            .collect();

        let limit_micros = *rng.pick(&[20_000_000, 20_000_000, 15_500_000, 23_000_000, 20_000_001]);
        World {
            customers,
            merchants,
            categories,
            round_robin: popularity_mode == 2,
            wide,
            next_customer: 0,
            limit_micros,
        }
    }

    fn customer(&mut self, rng: &mut SplitMix64) -> Customer {
        if self.round_robin {
            let c = self.customers[self.next_customer % self.customers.len()].clone();
            self.next_customer += 1;
            return c;
        }
        let total: u64 = self.customers.iter().map(|c| c.popularity).sum();
        let mut r = rng.below(total);
        for c in &self.customers {
            if r < c.popularity {
                return c.clone();
            }
            r -= c.popularity;
        }
        unreachable!()
    }
}

/// Single-quotes a value, as the real file does.
fn sq(value: &str) -> String {
    format!("'{value}'")
}

/// Formats micro-units as a decimal, in one of the equivalent spellings.
fn format_micros(rng: &mut SplitMix64, micros: i64) -> String {
    let (units, frac) = (micros / 1_000_000, micros % 1_000_000);
    let zeros = if rng.percent(3) { "00" } else { "" };
    if frac == 0 {
        let tail = *rng.pick(&["", "", "", ".0", ".000000"]);
        return format!("{zeros}{units}{tail}");
    }
    let mut digits = format!("{frac:06}");
    while digits.ends_with('0') {
        digits.pop();
    }
    if rng.percent(20) {
        digits = format!("{digits:0<6}");
    }
    format!("{zeros}{units}.{digits}")
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum AmountPhase {
    Low,
    High,
    Mixed,
}

fn good_amount(
    rng: &mut SplitMix64,
    world: &World,
    phase: AmountPhase,
    opts: &StreamOptions,
) -> String {
    let limit = world.limit_micros;
    let r = rng.below(100);
    let micros = if opts.huge_amounts && r == 0 {
        999_999_999_999_999_999
    } else if r < 10 {
        limit
    } else if r < 15 {
        limit + *rng.pick(&[-1, 1])
    } else if r < 20 {
        0
    } else {
        let low = match phase {
            AmountPhase::Low => rng.percent(85),
            AmountPhase::High => rng.percent(15),
            AmountPhase::Mixed => rng.percent(50),
        };
        let raw = if low {
            rng.below(limit as u64) as i64
        } else {
            limit + 1 + rng.below(2 * limit as u64) as i64
        };
        if rng.percent(70) {
            raw / 10_000 * 10_000
        } else {
            raw
        }
    };
    let text = format_micros(rng, micros);
    if opts.quirks && rng.percent(30) {
        sq(&text)
    } else {
        text
    }
}

/// A valid row, fields in `TRANSACTION_COLUMNS` order (before CSV escaping).
fn good_row(
    rng: &mut SplitMix64,
    world: &mut World,
    phase: AmountPhase,
    opts: &StreamOptions,
) -> Vec<String> {
    let customer = world.customer(rng);
    let merchant = rng.pick(&world.merchants).clone();
    let category = rng.pick(&world.categories).clone();
    let gender = if rng.percent(8) {
        *rng.pick(&["F", "M", "E", "U"])
    } else {
        customer.gender
    };
    let quirky = |rng: &mut SplitMix64, v: String| -> String {
        if opts.quirks && rng.percent(3) {
            rng.pick(&["", "'x'", "''", "x y"]).to_string()
        } else {
            v
        }
    };
    let maybe_bare = |rng: &mut SplitMix64, v: &str| -> String {
        // One enclosing pair of single quotes is optional: `C1` and `'C1'` are the same.
        if opts.quirks && rng.percent(5) && !v.contains('\'') {
            v.to_string()
        } else {
            sq(v)
        }
    };
    let step = rng.below(180).to_string();
    let fraud = rng.pick(&["0", "1"]).to_string();
    let age = sq(rng.pick_str(&["0", "1", "2", "3", "4", "5", "6", "U"]));
    vec![
        quirky(rng, step),
        maybe_bare(rng, &customer.name),
        quirky(rng, age),
        maybe_bare(rng, gender),
        quirky(rng, sq("28007")),
        maybe_bare(rng, &merchant),
        quirky(rng, sq("28007")),
        maybe_bare(rng, &category),
        good_amount(rng, world, phase, opts),
        quirky(rng, fraud),
    ]
}

/// A row that must be rejected. Returns fields (the count may be wrong on purpose).
fn bad_row(
    rng: &mut SplitMix64,
    world: &mut World,
    phase: AmountPhase,
    opts: &StreamOptions,
) -> Vec<String> {
    let mut row = good_row(rng, world, phase, opts);
    let col = |name: &str| TRANSACTION_COLUMNS.iter().position(|c| *c == name).unwrap();
    match rng.below(8) {
        0 => {
            let i = rng.below(row.len() as u64) as usize;
            row.remove(i);
        }
        1 => row.push(sq("extra")),
        2 => {
            row = vec![rng.pick(&["garbage", "0", "''", "x y z"]).to_string()];
        }
        3 | 4 => {
            row[col("amount")] = rng
                .pick(&[
                    "-1",
                    "'-1'",
                    "-0.5",
                    "1e3",
                    "'1E3'",
                    "NaN",
                    "'NaN'",
                    "inf",
                    "",
                    "''",
                    "+5",
                    "1.1234567",
                    "1000000000000",
                    "'1000000000000.0'",
                    "1,5",
                    "abc",
                    "0x10",
                    "1.2.3",
                ])
                .to_string();
        }
        5 => {
            row[col("gender")] = rng.pick(&["'X'", "''", "'f'", "'MF'", "X", ""]).to_string();
        }
        6 => {
            let name = *rng.pick(&["customer", "merchant", "category"]);
            row[col(name)] = rng.pick(&["''", ""]).to_string();
        }
        _ => {
            row[col("customer")] = "''".to_string();
            row[col("amount")] = "'-3'".to_string();
        }
    }
    row
}

/// CSV-escapes one field; `force` wraps it in double quotes even when not needed.
fn csv_field(value: &str, force: bool) -> String {
    if force || value.contains(',') || value.contains('"') {
        format!("\"{}\"", value.replace('"', "\"\""))
    } else {
        value.to_string()
    }
}

/// How one file is laid out.
struct Layout {
    /// Output column `j` is canonical column `order[j]`.
    order: Vec<usize>,
    quote_names: Vec<bool>,
    eol: &'static str,
    blank_lines: bool,
    trailing_newline: bool,
    quote_values: bool,
}

impl Layout {
    fn random(rng: &mut SplitMix64, columns: usize, quirks: bool) -> Layout {
        let mut order: Vec<usize> = (0..columns).collect();
        let mut layout = Layout {
            order: order.clone(),
            quote_names: vec![false; columns],
            eol: "\n",
            blank_lines: false,
            trailing_newline: true,
            quote_values: false,
        };
        if !quirks {
            return layout;
        }
        if rng.percent(35) {
            rng.shuffle(&mut order);
            layout.order = order;
        }
        if rng.percent(20) {
            layout.quote_names = (0..columns).map(|_| rng.percent(50)).collect();
        }
        if rng.percent(25) {
            layout.eol = "\r\n";
        }
        layout.blank_lines = rng.percent(20);
        layout.trailing_newline = rng.percent(85);
        layout.quote_values = rng.percent(15);
        layout
    }

    fn header(&self, names: &[&str]) -> String {
        self.order
            .iter()
            .zip(&self.quote_names)
            .map(|(&i, &q)| csv_field(names[i], q))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// One record; `fields` in canonical order. Rows of a wrong field count keep their order.
    fn record(&self, rng: &mut SplitMix64, fields: &[String]) -> String {
        let ordered: Vec<&String> = if fields.len() == self.order.len() {
            self.order.iter().map(|&i| &fields[i]).collect()
        } else {
            fields.iter().collect()
        };
        ordered
            .into_iter()
            .map(|f| csv_field(f, self.quote_values && rng.percent(30)))
            .collect::<Vec<_>>()
            .join(",")
    }

    /// Joins the header and records into file bytes, with blank lines and line endings.
    fn file(&self, rng: &mut SplitMix64, header: String, records: Vec<String>) -> Vec<u8> {
        let mut lines = vec![header];
        if self.blank_lines && rng.percent(40) {
            lines.push(String::new());
        }
        for record in records {
            if self.blank_lines && rng.percent(12) {
                lines.push(String::new());
            }
            lines.push(record);
        }
        if self.blank_lines && rng.percent(40) {
            lines.push(String::new());
        }
        let mut text = lines.join(self.eol);
        if self.trailing_newline {
            text.push_str(self.eol);
        }
        text.into_bytes()
    }
}

fn random_thresholds(rng: &mut SplitMix64, world: &World) -> Thresholds {
    let count_p = *rng.pick(&[
        0, 100_000, 500_000, 900_000, 900_000, 1_000_000, 333_333, 750_000,
    ]);
    let weight_p = *rng.pick(&[0, 100_000, 100_000, 500_000, 900_000, 1_000_000, 250_000]);
    Thresholds {
        upgrade_min_merchant_txns: *rng.pick(&[0, 3, 5, 8, 10, 15, 20, 30]),
        upgrade_count_percentile: Fraction::from_millionths(count_p),
        upgrade_weight_percentile: Fraction::from_millionths(weight_p),
        child_min_txns: *rng.pick(&[1, 2, 2, 3, 4, 5]),
        child_max_avg_amount: Amount::from_micros(world.limit_micros),
        dei_min_female_customers: *rng.pick(&[0, 1, 1, 2]),
    }
}

fn chunk_bytes(rng: &mut SplitMix64, world: &mut World, opts: &StreamOptions) -> Vec<u8> {
    let layout = Layout::random(rng, TRANSACTION_COLUMNS.len(), opts.quirks);
    let phase = *rng.pick(&[AmountPhase::Low, AmountPhase::High, AmountPhase::Mixed]);
    let kind = rng.below(100);
    let mut names: Vec<String> = TRANSACTION_COLUMNS.iter().map(|s| s.to_string()).collect();
    let mut records = Vec::new();
    if kind < 7 {
        // Empty: header only.
    } else if kind < 13 && opts.bad_rows {
        for _ in 0..rng.range(1, 6) {
            let row = bad_row(rng, world, phase, opts);
            records.push(layout.record(rng, &row));
        }
    } else if kind < 18 && opts.header_errors {
        // The header lacks a column: every record is rejected, good or not.
        let victim = rng.below(names.len() as u64) as usize;
        let renamed = match rng.below(3) {
            0 => format!("{}_x", names[victim]),
            1 => names[victim].to_uppercase(),
            _ => String::new(),
        };
        names[victim] = renamed;
        for _ in 0..rng.range(0, 12) {
            let row = good_row(rng, world, phase, opts);
            records.push(layout.record(rng, &row));
        }
    } else {
        let bad_percent = if opts.bad_rows { 12 } else { 0 };
        let max_rows = if world.wide {
            3 * opts.max_rows
        } else {
            opts.max_rows
        };
        for _ in 0..rng.range(0, max_rows) {
            let row = if rng.percent(bad_percent) {
                bad_row(rng, world, phase, opts)
            } else {
                good_row(rng, world, phase, opts)
            };
            records.push(layout.record(rng, &row));
        }
    }
    let name_refs: Vec<&str> = names.iter().map(String::as_str).collect();
    let header = layout.header(&name_refs);
    layout.file(rng, header, records)
}

fn importance_bytes(rng: &mut SplitMix64, world: &World, opts: &StreamOptions) -> Vec<u8> {
    let layout = Layout::random(rng, IMPORTANCE_COLUMNS.len(), opts.quirks);
    let grid = [
        "0", "0.25", "0.5", "0.75", "1", "1.5", "2", "-0.5", "0.50", "-0",
    ];
    let weight = |rng: &mut SplitMix64| -> String {
        let text = if rng.percent(75) {
            rng.pick(&grid).to_string()
        } else {
            let micros = rng.below(5_000_000) as i64;
            let sign = if rng.percent(15) { "-" } else { "" };
            format!("{sign}{}", format_micros(rng, micros))
        };
        if opts.quirks && rng.percent(20) {
            sq(&text)
        } else {
            text
        }
    };
    let bad_weight = |rng: &mut SplitMix64| -> String {
        rng.pick(&[
            "abc",
            "",
            "''",
            "1e3",
            "+1",
            "--1",
            "NaN",
            "1.1234567",
            "- 1",
            "inf",
            "1000000000000",
        ])
        .to_string()
    };
    let row = |c: &str, m: &str, t: &str, w: String| vec![sq(c), sq(m), w, sq(t), "0".to_string()];

    let mut rows: Vec<Vec<String>> = Vec::new();
    for c in &world.customers {
        for m in &world.merchants {
            for t in &world.categories {
                if rng.percent(55) {
                    for _ in 0..*rng.pick(&[1, 1, 1, 1, 2, 2, 3]) {
                        let w = weight(rng);
                        rows.push(row(&c.name, m, t, w));
                    }
                }
                if opts.bad_rows && rng.percent(6) {
                    let w = bad_weight(rng);
                    rows.push(row(&c.name, m, t, w));
                }
                if opts.bad_rows && rng.percent(2) {
                    let mut r = row(&c.name, m, t, weight(rng));
                    r.pop();
                    rows.push(r);
                }
            }
        }
    }
    for _ in 0..rng.range(0, 3) {
        let t = rng.pick(&world.categories).clone();
        let w = weight(rng);
        rows.push(row("C999", "M777", &t, w));
    }
    rng.shuffle(&mut rows);
    let records = rows.iter().map(|r| layout.record(rng, r)).collect();
    let header = layout.header(&IMPORTANCE_COLUMNS);
    layout.file(rng, header, records)
}

/// A random stream for `seed`.
pub fn random_stream(seed: u64, opts: &StreamOptions) -> Stream {
    let mut rng = SplitMix64::new(seed ^ 0x7478_666c_6f77); // "txflow"
    let mut world = World::new(&mut rng, opts);
    let thresholds = random_thresholds(&mut rng, &world);
    let n_chunks = rng.range(opts.min_chunks, opts.max_chunks);
    let chunks = (0..n_chunks)
        .map(|k| (k, chunk_bytes(&mut rng, &mut world, opts)))
        .collect();
    let importance = importance_bytes(&mut rng, &world, opts);
    Stream {
        seed,
        chunks,
        importance,
        thresholds,
    }
}

/// Where [`write_landing`] put things.
#[derive(Clone, Debug)]
pub struct Landing {
    /// The landing directory (chunks and `_COMPLETE`).
    pub landing: PathBuf,
    /// The importance file (outside the landing directory).
    pub importance: PathBuf,
    /// `(chunk index, path)`.
    pub chunk_paths: Vec<(u64, PathBuf)>,
    /// The chunk files' last-modified times, milliseconds since the Unix epoch.
    pub mtimes_ms: Vec<i64>,
}

impl Landing {
    /// Options replaying this whole landing into `output` with an embedded state store at
    /// `state` (a path): the caller sets thresholds, variants and workers.
    pub fn replay_options(&self, output: &Path, state: &Path) -> txflow::mechanism_y::YOptions {
        let config = txflow::sinks::state::StateConfig::Embedded {
            path: state.to_path_buf(),
        };
        let mut opts = txflow::mechanism_y::YOptions::new(
            self.landing.to_str().unwrap(),
            self.importance.to_str().unwrap(),
            output.to_str().unwrap(),
            config,
        );
        opts.mode = txflow::mechanism_y::Mode::replay(Default::default());
        opts
    }
}

/// Milliseconds since the Unix epoch of a UTC civil time (simple day counting).
pub fn unix_ms(year: i64, month: i64, day: i64, h: i64, m: i64, s: i64, ms: i64) -> i64 {
    assert!(year >= 1970);
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let month_days = |y: i64, mo: i64| match mo {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ => {
            if leap(y) {
                29
            } else {
                28
            }
        }
    };
    let mut days = 0;
    for y in 1970..year {
        days += if leap(y) { 366 } else { 365 };
    }
    for mo in 1..month {
        days += month_days(year, mo);
    }
    days += day - 1;
    ((days * 24 + h) * 60 + m) * 60_000 + s * 1000 + ms
}

/// The mtime of chunk `k`: starting one and a half seconds before midnight IST of the
/// 2028 leap day (2028-02-28T23:59:58.500+05:30), 1.234 s apart.
pub fn chunk_mtime_ms(k: u64) -> i64 {
    unix_ms(2028, 2, 28, 18, 29, 58, 500) + k as i64 * 1234
}

/// Writes the stream: `<dir>/landing/chunk-<k:06>.csv` (mtimes set by [`chunk_mtime_ms`]),
/// then `<dir>/landing/_COMPLETE` (body: the number of chunks), and `<dir>/importance.csv`.
pub fn write_landing(dir: &Path, stream: &Stream) -> Landing {
    let landing = dir.join("landing");
    fs::create_dir_all(&landing).unwrap();
    let mut chunk_paths = Vec::new();
    let mut mtimes_ms = Vec::new();
    for (k, bytes) in &stream.chunks {
        let path = landing.join(format!("chunk-{k:06}.csv"));
        fs::write(&path, bytes).unwrap();
        let ms = chunk_mtime_ms(*k);
        let when = UNIX_EPOCH + Duration::from_millis(ms as u64);
        let file = fs::OpenOptions::new().write(true).open(&path).unwrap();
        file.set_modified(when).unwrap();
        drop(file);
        let got = fs::metadata(&path).unwrap().modified().unwrap();
        assert_eq!(got, when, "the file system keeps millisecond mtimes");
        chunk_paths.push((*k, path));
        mtimes_ms.push(ms);
    }
    fs::write(landing.join("_COMPLETE"), stream.chunks.len().to_string()).unwrap();
    let importance = dir.join("importance.csv");
    fs::write(&importance, &stream.importance).unwrap();
    Landing {
        landing,
        importance,
        chunk_paths,
        mtimes_ms,
    }
}

/// `ms` since the Unix epoch as IST RFC 3339 with milliseconds (`2028-02-29T00:00:00.500+05:30`),
/// by plain day counting (independent of the crate's formatter).
pub fn format_ist(ms: i64) -> String {
    assert!(ms >= 0);
    let local = ms + (5 * 60 + 30) * 60_000;
    let (mut days, in_day) = (local / 86_400_000, local % 86_400_000);
    let leap = |y: i64| (y % 4 == 0 && y % 100 != 0) || y % 400 == 0;
    let mut year = 1970;
    loop {
        let len = if leap(year) { 366 } else { 365 };
        if days < len {
            break;
        }
        days -= len;
        year += 1;
    }
    let lengths = [
        31,
        if leap(year) { 29 } else { 28 },
        31,
        30,
        31,
        30,
        31,
        31,
        30,
        31,
        30,
        31,
    ];
    let mut month = 1;
    for len in lengths {
        if days < len {
            break;
        }
        days -= len;
        month += 1;
    }
    format!(
        "{year:04}-{month:02}-{:02}T{:02}:{:02}:{:02}.{:03}+05:30",
        days + 1,
        in_day / 3_600_000,
        in_day / 60_000 % 60,
        in_day / 1000 % 60,
        in_day % 1000
    )
}

/// `SystemTime` of `ms` since the Unix epoch.
pub fn system_time(ms: i64) -> SystemTime {
    UNIX_EPOCH + Duration::from_millis(ms as u64)
}

// ------------------------------------------------------------------------------------------
// Hostile sources: a whole `transactions.csv` full of framing edge cases
// ------------------------------------------------------------------------------------------

/// A hostile source for X: BankSim-like rows with injected stray and unclosed quotes, quoted
/// fields holding line breaks (with the header's field count or not), doubled quotes, bytes
/// after a closing quote (malformed quoted fields), control characters (NUL included) in names and in unvalidated
/// columns, C1 controls in names (outside the SPEC's range: good names), wrong field counts,
/// garbage lines, blank lines (also before the header), LF / CRLF / lone-CR line endings (one
/// kind per file, or mixed line by line), a last line without terminator, optionally
/// non-UTF-8 bytes (in zip codes, or in names) and headers that lose a column.
/// The importance file is hostile in the same ways. What each row *is* is decided by the
/// reference framer alone; the generator does not predict it.
#[derive(Clone, Debug)]
pub struct HostileSource {
    pub seed: u64,
    pub source: Vec<u8>,
    pub importance: Vec<u8>,
    pub chunk_rows: usize,
}

impl HostileSource {
    /// The source and importance file, escaped, for failure reports.
    pub fn describe(&self) -> String {
        format!(
            "seed {} chunk_rows {}\n--- transactions.csv ---\n{}\n--- importance.csv ---\n{}\n",
            self.seed,
            self.chunk_rows,
            escape_bytes(&self.source),
            escape_bytes(&self.importance)
        )
    }
}

/// Bytes as text, one source line per output line: `\r`, `\n`, control characters and
/// non-UTF-8 bytes shown escaped (`\r\n` and `\n` end an output line).
pub fn escape_bytes(bytes: &[u8]) -> String {
    let mut out = String::new();
    for chunk in bytes.utf8_chunks() {
        for c in chunk.valid().chars() {
            match c {
                '\n' => out.push_str("\\n\n"),
                '\r' => out.push_str("\\r"),
                c if c.is_control() => out.push_str(&c.escape_default().to_string()),
                c => out.push(c),
            }
        }
        for b in chunk.invalid() {
            out.push_str(&format!("\\x{b:02x}"));
        }
    }
    out
}

#[derive(Clone, Debug)]
pub struct HostileOptions {
    /// Rows of the source: 1..=max_rows.
    pub max_rows: u64,
    /// X's chunk size: 1..=max_chunk_rows.
    pub max_chunk_rows: u64,
    /// Non-UTF-8 bytes in zip codes (unvalidated columns) and in names (rejected).
    pub non_utf8: bool,
    /// Headers that lose a column (an open quote in the header, a renamed column).
    pub header_errors: bool,
}

impl Default for HostileOptions {
    fn default() -> Self {
        HostileOptions {
            max_rows: 40,
            max_chunk_rows: 6,
            non_utf8: true,
            header_errors: true,
        }
    }
}

/// How a file ends its lines.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum EolMode {
    Lf,
    CrLf,
    Cr,
    /// Each line picks one.
    Mixed,
}

impl EolMode {
    fn random(rng: &mut SplitMix64) -> EolMode {
        *rng.pick(&[EolMode::Lf, EolMode::CrLf, EolMode::Cr, EolMode::Mixed])
    }

    fn eol(self, rng: &mut SplitMix64) -> &'static [u8] {
        match self {
            EolMode::Lf => b"\n",
            EolMode::CrLf => b"\r\n",
            EolMode::Cr => b"\r",
            EolMode::Mixed => pick_bytes(rng, &[b"\n", b"\r\n", b"\r"]),
        }
    }
}

const CONTROL_CHARS: [&[u8]; 7] = [b"\0", b"\x01", b"\t", b"\x0b", b"\x1b", b"\x1f", b"\x7f"];

/// One of `items`.
fn pick_bytes(rng: &mut SplitMix64, items: &[&'static [u8]]) -> &'static [u8] {
    items[rng.below(items.len() as u64) as usize]
}

/// Inserts `what` into `field` at a random position strictly inside the value.
fn insert_inside(rng: &mut SplitMix64, field: &mut Vec<u8>, what: &[u8]) {
    let at = if field.len() < 2 {
        field.len()
    } else {
        rng.range(1, field.len() as u64 - 1) as usize
    };
    field.splice(at..at, what.iter().copied());
}

/// Wraps `value` in CSV double quotes, doubling the quotes it holds.
fn dq(value: &[u8]) -> Vec<u8> {
    let mut out = vec![b'"'];
    for &b in value {
        out.push(b);
        if b == b'"' {
            out.push(b'"');
        }
    }
    out.push(b'"');
    out
}

/// Injects one hostile thing into a row (`names[i]` is the column of `fields[i]`).
fn inject(
    rng: &mut SplitMix64,
    fields: &mut Vec<Vec<u8>>,
    names: &[&str],
    mode: EolMode,
    opts: &HostileOptions,
) {
    // The index of a random column among `candidates` that this file has (any column if none).
    // (Clamped to the row's fields: an earlier injection may have removed some.)
    let choose = |n: usize, rng: &mut SplitMix64, candidates: &[&str]| -> usize {
        let present: Vec<usize> = candidates
            .iter()
            .filter_map(|c| names.iter().position(|n| n == c))
            .collect();
        let i = if present.is_empty() {
            rng.below(names.len() as u64) as usize
        } else {
            present[rng.below(present.len() as u64) as usize]
        };
        i.min(n - 1)
    };
    let any = |rng: &mut SplitMix64, n: usize| rng.below(n as u64) as usize;
    match rng.below(100) {
        0..=39 => {}
        40..=45 => {
            // A stray quote inside an unquoted field: an ordinary character.
            let i = any(rng, fields.len());
            insert_inside(rng, &mut fields[i], b"\"");
        }
        46..=51 => {
            // An opening quote that this line never closes.
            let i = any(rng, fields.len());
            fields[i].insert(0, b'"');
        }
        52..=61 => {
            // A quoted field holding a line break (maybe several, maybe a blank line), with
            // the header's field count, or (one in three) not.
            let i = choose(
                fields.len(),
                rng,
                &[
                    "step",
                    "customer",
                    "zipcodeOri",
                    "zipMerchant",
                    "category",
                    "fraud",
                    "Source",
                    "typeTrans",
                ],
            );
            let breaks = *rng.pick(&[1, 1, 1, 2, 3]);
            for _ in 0..breaks {
                // Mostly the file's own line ending.
                let eol = if rng.percent(15) {
                    EolMode::Mixed.eol(rng)
                } else {
                    mode.eol(rng)
                };
                insert_inside(rng, &mut fields[i], eol);
            }
            fields[i] = dq(&fields[i]);
            if rng.percent(33) {
                if rng.percent(50) {
                    fields.push(b"'extra'".to_vec());
                } else {
                    let j = (i + 1) % fields.len();
                    fields.remove(j);
                }
            }
        }
        62..=65 => {
            // Doubled quotes (and maybe a comma) inside a quoted name: a good name.
            let i = choose(
                fields.len(),
                rng,
                &["customer", "merchant", "Source", "Target"],
            );
            let what = pick_bytes(rng, &[b"\"", b"\",", b","]);
            insert_inside(rng, &mut fields[i], what);
            fields[i] = dq(&fields[i]);
        }
        66..=69 => {
            // Bytes after a closing quote: a malformed quoted field (its line is unbalanced),
            // unless they start with a quote (a doubled one, so the field goes on).
            let i = any(rng, fields.len());
            let mut quoted = dq(&fields[i]);
            quoted.extend_from_slice(pick_bytes(rng, &[b"x", b"\"", b"'", b" y\"z"]));
            fields[i] = quoted;
        }
        70..=79 => {
            // A control character in a name (rejected), maybe quoted.
            let i = choose(
                fields.len(),
                rng,
                &[
                    "customer",
                    "merchant",
                    "category",
                    "Source",
                    "Target",
                    "typeTrans",
                ],
            );
            let c = pick_bytes(rng, &CONTROL_CHARS);
            insert_inside(rng, &mut fields[i], c);
            if rng.percent(30) {
                fields[i] = dq(&fields[i]);
            }
        }
        80..=83 => {
            // A control character in a column the SPEC does not validate (carried).
            let i = choose(fields.len(), rng, &["step", "zipcodeOri", "fraud", "age"]);
            let c = pick_bytes(rng, &CONTROL_CHARS);
            insert_inside(rng, &mut fields[i], c);
        }
        84..=87 => {
            // A single-line record of the wrong field count.
            if rng.percent(50) && fields.len() > 1 {
                let i = any(rng, fields.len());
                fields.remove(i);
            } else {
                fields.push(b"'x'".to_vec());
            }
        }
        88..=90 => {
            // A bad amount or weight.
            let i = choose(fields.len(), rng, &["amount", "Weight"]);
            fields[i] = pick_bytes(rng, &[b"-1", b"1e3", b"NaN", b"", b"4,55"]).to_vec();
        }
        91..=94 => {
            // A garbage line made of quotes and commas.
            let line = pick_bytes(
                rng,
                &[
                    b"\"", b"\"\"", b"\",\"", b"\"\"\"", b"x\"y", b",", b"'", b"\"\r", b"  ",
                    b"\t", b"\0",
                ],
            );
            *fields = vec![line.to_vec()];
        }
        95..=97 if opts.non_utf8 => {
            // Non-UTF-8 bytes in a column the SPEC does not validate (carried), or in a name
            // (not text: rejected).
            let i = if rng.percent(70) {
                choose(fields.len(), rng, &["zipcodeOri", "zipMerchant", "fraud"])
            } else {
                choose(fields.len(), rng, &["customer", "category", "Target"])
            };
            let what = pick_bytes(rng, &[b"\xff", b"\xc3", b"\xe2\x82"]);
            insert_inside(rng, &mut fields[i], what);
        }
        _ => {
            // A quoted name holding a comma, or a C1 control (U+0080–U+009F, outside the
            // SPEC's range): a good name.
            let i = choose(fields.len(), rng, &["customer", "merchant", "Source"]);
            let what = pick_bytes(rng, &[b",", b"\xc2\x85", b"\xc2\x9f"]);
            insert_inside(rng, &mut fields[i], what);
            fields[i] = dq(&fields[i]);
        }
    }
}

/// Lines (each row's bytes, possibly holding line breaks) into a file: blank lines here and
/// there, terminators by `mode`, maybe no final terminator.
fn hostile_file(
    rng: &mut SplitMix64,
    mode: EolMode,
    header: Vec<u8>,
    rows: Vec<Vec<u8>>,
) -> Vec<u8> {
    let blank_percent = *rng.pick(&[0, 0, 5, 15]);
    let mut out = Vec::new();
    if rng.percent(25) {
        for _ in 0..rng.range(1, 2) {
            out.extend_from_slice(mode.eol(rng));
        }
    }
    out.extend_from_slice(&header);
    out.extend_from_slice(mode.eol(rng));
    let n = rows.len();
    for (i, row) in rows.into_iter().enumerate() {
        if rng.percent(blank_percent) {
            out.extend_from_slice(mode.eol(rng));
        }
        out.extend_from_slice(&row);
        if i + 1 < n || rng.percent(65) {
            out.extend_from_slice(mode.eol(rng));
        }
    }
    if out.last().is_some_and(|b| *b == b'\n' || *b == b'\r') && rng.percent(10) {
        out.extend_from_slice(mode.eol(rng));
    }
    out
}

/// A hostile source for `seed`.
pub fn hostile_source(seed: u64, opts: &HostileOptions) -> HostileSource {
    let mut rng = SplitMix64::new(seed ^ 0x0068_6f73_7469_6c65); // "hostile"
    let customers: Vec<String> = (0..rng.range(2, 8))
        .map(|i| format!("C{}", 10 + 7 * i))
        .collect();
    let merchants: Vec<String> = (0..rng.range(1, 3))
        .map(|i| format!("M{}", 300 + i))
        .collect();
    let categories = ["es_food", "es_health", "es_tech"];

    // Header: canonical or permuted order, names maybe double-quoted, rarely broken.
    let mut order: Vec<usize> = (0..TRANSACTION_COLUMNS.len()).collect();
    if rng.percent(25) {
        rng.shuffle(&mut order);
    }
    let names: Vec<&str> = order.iter().map(|&i| TRANSACTION_COLUMNS[i]).collect();
    let mut header_fields: Vec<Vec<u8>> = names
        .iter()
        .map(|n| {
            if rng.percent(10) {
                dq(n.as_bytes())
            } else {
                n.as_bytes().to_vec()
            }
        })
        .collect();
    if opts.header_errors && rng.percent(6) {
        let i = rng.below(header_fields.len() as u64) as usize;
        if rng.percent(50) {
            // An open quote: the rest of the header is one field.
            header_fields[i].insert(0, b'"');
        } else {
            header_fields[i].push(b'X');
        }
    }
    let header = header_fields.join(&b","[..]);

    // The source's line ending kind cycles with the seed, so that a few seeds cover them all.
    let mode = [EolMode::Lf, EolMode::CrLf, EolMode::Cr, EolMode::Mixed][seed as usize % 4];
    let n_rows = rng.range(1, opts.max_rows);
    let mut rows = Vec::new();
    for _ in 0..n_rows {
        let canonical: Vec<Vec<u8>> = vec![
            rng.below(100).to_string().into_bytes(),
            sq(rng.pick::<String>(&customers)).into_bytes(),
            sq(rng.pick_str(&["0", "3", "U"])).into_bytes(),
            sq(rng.pick_str(&["F", "M", "E", "U"])).into_bytes(),
            sq("28007").into_bytes(),
            sq(rng.pick::<String>(&merchants)).into_bytes(),
            sq("28007").into_bytes(),
            sq(rng.pick_str(&categories)).into_bytes(),
            format!("{}.{:02}", rng.below(60), rng.below(100)).into_bytes(),
            rng.pick_str(&["0", "1"]).as_bytes().to_vec(),
        ];
        let mut fields: Vec<Vec<u8>> = order.iter().map(|&i| canonical[i].clone()).collect();
        inject(&mut rng, &mut fields, &names, mode, opts);
        if rng.percent(10) {
            inject(&mut rng, &mut fields, &names, mode, opts);
        }
        rows.push(fields.join(&b","[..]));
    }
    if rng.percent(15) {
        // A quote still open at the end of the data.
        let last = rows.last_mut().unwrap();
        let starts: Vec<usize> = (0..=last.len())
            .filter(|&i| i == 0 || last[i - 1] == b',')
            .collect();
        let at = starts[rng.below(starts.len() as u64) as usize];
        last.insert(at, b'"');
    }
    let source = hostile_file(&mut rng, mode, header, rows);

    let imp_names = IMPORTANCE_COLUMNS.to_vec();
    let imp_mode = EolMode::random(&mut rng);
    let mut imp_rows = Vec::new();
    for _ in 0..rng.range(1, 25) {
        let mut fields: Vec<Vec<u8>> = vec![
            sq(rng.pick::<String>(&customers)).into_bytes(),
            sq(rng.pick::<String>(&merchants)).into_bytes(),
            format!("{}.{}", rng.below(3), rng.below(10)).into_bytes(),
            sq(rng.pick_str(&categories)).into_bytes(),
            b"0".to_vec(),
        ];
        inject(&mut rng, &mut fields, &imp_names, imp_mode, opts);
        imp_rows.push(fields.join(&b","[..]));
    }
    let importance = hostile_file(
        &mut rng,
        imp_mode,
        IMPORTANCE_COLUMNS.join(",").into_bytes(),
        imp_rows,
    );
    HostileSource {
        seed,
        source,
        importance,
        chunk_rows: rng.range(1, opts.max_chunk_rows) as usize,
    }
}

/// The smallest valid input, for option and start-up checks: `root/landing` with one good
/// chunk and `_COMPLETE` = 1, and `root/CustomerImportance.csv` with one row. Returns
/// `(landing, importance)`.
pub fn write_one_chunk_landing(root: &Path) -> (PathBuf, PathBuf) {
    let landing = root.join("landing");
    fs::create_dir_all(&landing).unwrap();
    fs::write(
        landing.join("chunk-000000.csv"),
        "step,customer,age,gender,zipcodeOri,merchant,zipMerchant,category,amount,fraud\n\
         0,'C1','4','F','28007','M1','28007','es_food',4.55,0\n",
    )
    .unwrap();
    fs::write(landing.join("_COMPLETE"), "1").unwrap();
    let importance = root.join("CustomerImportance.csv");
    fs::write(
        &importance,
        "Source,Target,Weight,typeTrans,fraud\n'C1','M1',0.5,'es_food',0\n",
    )
    .unwrap();
    (landing, importance)
}
