//! The backtest variants of `mechanism-y`: `--variants FILE` (TOML, one table per
//! variant), `--variant NAME:KEY=VALUE[,KEY=VALUE…]` and `--sweep KEY=FROM..TO/STEP`, checked
//! and turned into [`Variant`]s, each a full set of thresholds.
//!
//! A variant starts from the run's own thresholds (the baseline) and changes the keys it sets;
//! the keys are the threshold options without `--`, and every value goes through the parser
//! of its threshold option, so a variant accepts exactly what the option accepts. Variants
//! come in the order of the options: the file's tables in file order, then `--variant` in
//! order, then each `--sweep`'s values ascending. A variant identical to the baseline or to
//! another variant is allowed (e.g. a control copy): it is reported as a warning.

use std::fmt;
use std::path::{Path, PathBuf};

use toml::de::{DeTable, DeValue};

use crate::cli::{parse_amount, parse_count, parse_fraction};
use crate::model::{Thresholds, Variant};
use crate::objectstore::file::{read_regular_text, MAX_VARIANTS_BYTES};

/// The most variants a run takes, from all three options together: each one instantiates its
/// own threshold-dependent operators and writes its own ledger and files.
pub const MAX_VARIANTS: usize = 32;

/// The most values one `--sweep` may expand to.
pub const MAX_SWEEP_VALUES: u128 = 64;

/// The longest variant name (it names a folder and a ledger).
pub const MAX_NAME_LEN: usize = 64;

/// The name the run's own thresholds go by in the ledgers and the report.
pub const RESERVED_NAME: &str = "baseline";

/// The variant options as given on the command line (or in the environment).
#[derive(Clone, Debug, Default)]
pub struct VariantOptions {
    /// `--variants FILE`.
    pub file: Option<PathBuf>,
    /// Each `--variant NAME:KEY=VALUE[,KEY=VALUE…]`, in order.
    pub variant: Vec<String>,
    /// Each `--sweep KEY=FROM..TO/STEP`, in order.
    pub sweep: Vec<String>,
}

/// The variants of a run and the warnings to log about them.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct ResolvedVariants {
    pub variants: Vec<Variant>,
    /// One line each: a variant identical to the baseline or to an earlier variant.
    pub warnings: Vec<String>,
}

/// Why the variant options are refused; one line naming the option and the problem.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum VariantOptionError {
    #[error("--variant/--variants/--sweep need --replay: variants are a backtest feature")]
    NeedsReplay,
    /// `place`: the option (with the variant's name, the file or the sweep where known).
    #[error("{place}: {problem}")]
    Invalid { place: String, problem: Problem },
    #[error(
        "{count} variants: at most {MAX_VARIANTS} in all (--variants, --variant and --sweep together)"
    )]
    TooMany { count: usize },
}

/// What is wrong with one variant option.
#[derive(Debug, PartialEq, Eq, thiserror::Error)]
pub enum Problem {
    #[error("cannot read it: {0}")]
    Unreadable(String),
    #[error("not valid TOML at line {line}, column {column}: {message}")]
    Toml {
        line: usize,
        column: usize,
        message: String,
    },
    #[error("{entry:?} is not a table: write one table per variant, e.g. [strict] then child-min-txns = 100")]
    NotATable { entry: String },
    #[error("{spec:?} is not NAME:KEY=VALUE[,KEY=VALUE...]")]
    VariantSyntax { spec: String },
    #[error("{spec:?} is not KEY=FROM..TO/STEP")]
    SweepSyntax { spec: String },
    #[error("invalid variant name {name:?}: {reason}")]
    Name { name: String, reason: &'static str },
    #[error("unknown key {key:?} (valid keys: {})", key_names())]
    UnknownKey { key: String },
    #[error("{key} is set twice")]
    KeySetTwice { key: &'static str },
    #[error("{key}: {reason}")]
    Value { key: &'static str, reason: String },
    #[error("{key} must be a number or a string, not {kind}")]
    ValueKind {
        key: &'static str,
        kind: &'static str,
    },
    #[error("duplicate variant name {name:?} (also given by {first})")]
    Duplicate { name: String, first: String },
    #[error("empty range: {from} is above {to}")]
    EmptyRange { from: String, to: String },
    #[error("the step {step:?} must be positive")]
    Step { step: String },
    #[error("{count} values: at most {MAX_SWEEP_VALUES} per sweep")]
    SweepTooLong { count: u128 },
}

/// A threshold a variant can set: the threshold options of `mechanism-y` without `--`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ThresholdKey {
    UpgradeMinMerchantTxns,
    UpgradeCountPercentile,
    UpgradeWeightPercentile,
    ChildMinTxns,
    ChildMaxAvgAmount,
    DeiMinFemaleCustomers,
}

/// How a threshold's values are written: a whole number, or a decimal in millionths
/// (percentiles in [0, 1], amounts).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum ValueKind {
    Count,
    Fraction,
    Amount,
}

impl ThresholdKey {
    /// In the order of `mechanism-y --help`.
    pub const ALL: [ThresholdKey; 6] = [
        ThresholdKey::UpgradeMinMerchantTxns,
        ThresholdKey::UpgradeCountPercentile,
        ThresholdKey::UpgradeWeightPercentile,
        ThresholdKey::ChildMinTxns,
        ThresholdKey::ChildMaxAvgAmount,
        ThresholdKey::DeiMinFemaleCustomers,
    ];

    /// The threshold option's name without `--`.
    pub fn name(self) -> &'static str {
        match self {
            ThresholdKey::UpgradeMinMerchantTxns => "upgrade-min-merchant-txns",
            ThresholdKey::UpgradeCountPercentile => "upgrade-count-percentile",
            ThresholdKey::UpgradeWeightPercentile => "upgrade-weight-percentile",
            ThresholdKey::ChildMinTxns => "child-min-txns",
            ThresholdKey::ChildMaxAvgAmount => "child-max-avg-amount",
            ThresholdKey::DeiMinFemaleCustomers => "dei-min-female-customers",
        }
    }

    pub fn from_name(name: &str) -> Option<ThresholdKey> {
        ThresholdKey::ALL.into_iter().find(|key| key.name() == name)
    }

    fn kind(self) -> ValueKind {
        match self {
            ThresholdKey::UpgradeMinMerchantTxns
            | ThresholdKey::ChildMinTxns
            | ThresholdKey::DeiMinFemaleCustomers => ValueKind::Count,
            ThresholdKey::UpgradeCountPercentile | ThresholdKey::UpgradeWeightPercentile => {
                ValueKind::Fraction
            }
            ThresholdKey::ChildMaxAvgAmount => ValueKind::Amount,
        }
    }

    /// Parses `text` with the threshold option's own parser and sets the threshold to it.
    pub fn set(self, thresholds: &mut Thresholds, text: &str) -> Result<(), String> {
        match self {
            ThresholdKey::UpgradeMinMerchantTxns => {
                thresholds.upgrade_min_merchant_txns = parse_count(text)?
            }
            ThresholdKey::UpgradeCountPercentile => {
                thresholds.upgrade_count_percentile = parse_fraction(text)?
            }
            ThresholdKey::UpgradeWeightPercentile => {
                thresholds.upgrade_weight_percentile = parse_fraction(text)?
            }
            ThresholdKey::ChildMinTxns => thresholds.child_min_txns = parse_count(text)?,
            ThresholdKey::ChildMaxAvgAmount => {
                thresholds.child_max_avg_amount = parse_amount(text)?
            }
            ThresholdKey::DeiMinFemaleCustomers => {
                thresholds.dei_min_female_customers = parse_count(text)?
            }
        }
        Ok(())
    }

    /// A value of this key as an integer: the count, or millionths for the decimal keys (a
    /// percentile's millionths, an amount's micro-units), so that sweeps step exactly.
    fn parse_units(self, text: &str) -> Result<u64, String> {
        match self.kind() {
            ValueKind::Count => parse_count(text),
            ValueKind::Fraction => parse_fraction(text).map(|f| u64::from(f.millionths)),
            // parse_amount refuses signs, so the value is non-negative.
            ValueKind::Amount => parse_amount(text).map(|micros| micros.unsigned_abs()),
        }
    }

    /// A sweep's step: a whole number for counts, a positive decimal for the others.
    fn parse_step(self, text: &str) -> Result<u64, String> {
        match self.kind() {
            ValueKind::Count => parse_count(text),
            ValueKind::Fraction | ValueKind::Amount => {
                parse_amount(text).map(|micros| micros.unsigned_abs())
            }
        }
    }

    /// `units` as the shortest text the key's parser reads back to the same value.
    fn format_units(self, units: u64) -> String {
        match self.kind() {
            ValueKind::Count => units.to_string(),
            ValueKind::Fraction | ValueKind::Amount => format_millionths(units),
        }
    }
}

/// The valid keys, for error messages.
fn key_names() -> String {
    let names: Vec<&str> = ThresholdKey::ALL.iter().map(|k| k.name()).collect();
    names.join(", ")
}

/// `units` millionths as a decimal without trailing zeros: 850000 → `0.85`, 20000000 → `20`.
fn format_millionths(units: u64) -> String {
    let (whole, fraction) = (units / 1_000_000, units % 1_000_000);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Checks a variant name: `[A-Za-z0-9._-]{1,64}`, not starting with `.` (it names the folder
/// `<output>/variants/<name>/`: no hidden folder, no `..`), and not `baseline` in any case
/// (reserved for the run's own thresholds; any case, for case-insensitive file systems).
pub fn check_variant_name(name: &str) -> Result<(), &'static str> {
    if name.is_empty() {
        return Err("it is empty");
    }
    if name.len() > MAX_NAME_LEN {
        return Err("longer than 64 characters");
    }
    if !name
        .bytes()
        .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-'))
    {
        return Err("only letters, digits, '.', '_' and '-' are allowed");
    }
    if name.starts_with('.') {
        return Err("it must not start with '.'");
    }
    if name.eq_ignore_ascii_case(RESERVED_NAME) {
        return Err("\"baseline\" is reserved for the run's own thresholds");
    }
    Ok(())
}

/// A variant and the option that gave it (for duplicate-name errors).
struct Given {
    variant: Variant,
    origin: String,
}

impl VariantOptions {
    /// Whether no variant option is given.
    pub fn is_empty(&self) -> bool {
        self.file.is_none() && self.variant.is_empty() && self.sweep.is_empty()
    }

    /// The variants of a run whose own thresholds are `baseline`; `replay` says whether the
    /// run is a backtest (variants need one). Reads `--variants FILE`.
    pub fn resolve(
        &self,
        baseline: &Thresholds,
        replay: bool,
    ) -> Result<ResolvedVariants, VariantOptionError> {
        if self.is_empty() {
            return Ok(ResolvedVariants::default());
        }
        if !replay {
            return Err(VariantOptionError::NeedsReplay);
        }
        let file = match &self.file {
            Some(path) => Some((path.as_path(), read_file(path)?)),
            None => None,
        };
        resolve(
            baseline,
            file.as_ref().map(|(path, text)| (*path, text.as_str())),
            &self.variant,
            &self.sweep,
        )
    }
}

/// The `--variants` file's text: a regular file of at most 1 MiB.
fn read_file(path: &Path) -> Result<String, VariantOptionError> {
    read_regular_text(path, MAX_VARIANTS_BYTES).map_err(|e| VariantOptionError::Invalid {
        place: file_place(path, None),
        problem: Problem::Unreadable(e.to_string()),
    })
}

/// The variants of `--variants` (its path and text), `--variant` and `--sweep`, in that
/// order, each starting from `baseline`.
pub fn resolve(
    baseline: &Thresholds,
    file: Option<(&Path, &str)>,
    variant_specs: &[String],
    sweep_specs: &[String],
) -> Result<ResolvedVariants, VariantOptionError> {
    let mut given: Vec<Given> = Vec::new();
    if let Some((path, text)) = file {
        let origin = file_place(path, None);
        for variant in variants_of_toml(baseline, path, text)? {
            given.push(Given {
                variant,
                origin: origin.clone(),
            });
        }
    }
    for spec in variant_specs {
        given.push(Given {
            variant: variant_of_flag(baseline, spec)?,
            origin: "--variant".to_string(),
        });
    }
    for spec in sweep_specs {
        for variant in variants_of_sweep(baseline, spec)? {
            given.push(Given {
                variant,
                origin: format!("--sweep {spec}"),
            });
        }
    }
    check_unique_names(&given)?;
    if given.len() > MAX_VARIANTS {
        return Err(VariantOptionError::TooMany { count: given.len() });
    }
    let variants: Vec<Variant> = given.into_iter().map(|g| g.variant).collect();
    Ok(ResolvedVariants {
        warnings: identical_thresholds(baseline, &variants),
        variants,
    })
}

/// Names compare ignoring ASCII case: they become folder names, and some file systems
/// ignore case.
fn check_unique_names(given: &[Given]) -> Result<(), VariantOptionError> {
    for (i, later) in given.iter().enumerate() {
        let name = &later.variant.name;
        if let Some(first) = given[..i]
            .iter()
            .find(|g| g.variant.name.eq_ignore_ascii_case(name))
        {
            return Err(VariantOptionError::Invalid {
                place: later.origin.clone(),
                problem: Problem::Duplicate {
                    name: name.clone(),
                    first: first.origin.clone(),
                },
            });
        }
    }
    Ok(())
}

/// A warning for each variant whose thresholds equal the baseline's or an earlier variant's:
/// allowed, but its results can only repeat those.
fn identical_thresholds(baseline: &Thresholds, variants: &[Variant]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, variant) in variants.iter().enumerate() {
        if variant.thresholds == *baseline {
            warnings.push(format!(
                "variant {:?} has the baseline's thresholds: its results will be the baseline's",
                variant.name
            ));
        } else if let Some(earlier) = variants[..i]
            .iter()
            .find(|v| v.thresholds == variant.thresholds)
        {
            warnings.push(format!(
                "variant {:?} has the same thresholds as variant {:?}: its results will be the same",
                variant.name, earlier.name
            ));
        }
    }
    warnings
}

fn file_place(path: &Path, table: Option<&str>) -> String {
    match table {
        Some(table) => format!("--variants {} [{table}]", path.display()),
        None => format!("--variants {}", path.display()),
    }
}

fn invalid(place: impl fmt::Display, problem: Problem) -> VariantOptionError {
    VariantOptionError::Invalid {
        place: place.to_string(),
        problem,
    }
}

/// `--variant NAME:KEY=VALUE[,KEY=VALUE…]`.
fn variant_of_flag(baseline: &Thresholds, spec: &str) -> Result<Variant, VariantOptionError> {
    let syntax = || {
        invalid(
            "--variant",
            Problem::VariantSyntax {
                spec: spec.to_string(),
            },
        )
    };
    let (name, assignments) = spec.split_once(':').ok_or_else(syntax)?;
    check_variant_name(name).map_err(|reason| {
        invalid(
            "--variant",
            Problem::Name {
                name: name.to_string(),
                reason,
            },
        )
    })?;
    let place = format!("--variant {name}");
    let mut settings = Settings::new(*baseline);
    for assignment in assignments.split(',') {
        let (key, value) = assignment.split_once('=').ok_or_else(syntax)?;
        settings
            .set(key, value)
            .map_err(|problem| invalid(&place, problem))?;
    }
    Ok(Variant {
        name: name.to_string(),
        thresholds: settings.thresholds,
    })
}

/// A variant's thresholds as its keys are set, each key at most once.
struct Settings {
    thresholds: Thresholds,
    set: Vec<ThresholdKey>,
}

impl Settings {
    fn new(baseline: Thresholds) -> Settings {
        Settings {
            thresholds: baseline,
            set: Vec::new(),
        }
    }

    fn set(&mut self, key: &str, text: &str) -> Result<(), Problem> {
        let key = known_key(key)?;
        if self.set.contains(&key) {
            return Err(Problem::KeySetTwice { key: key.name() });
        }
        self.set.push(key);
        key.set(&mut self.thresholds, text)
            .map_err(|reason| Problem::Value {
                key: key.name(),
                reason,
            })
    }
}

fn known_key(key: &str) -> Result<ThresholdKey, Problem> {
    ThresholdKey::from_name(key).ok_or_else(|| Problem::UnknownKey {
        key: key.to_string(),
    })
}

/// `--variants FILE`: one table per variant, in file order.
fn variants_of_toml(
    baseline: &Thresholds,
    path: &Path,
    text: &str,
) -> Result<Vec<Variant>, VariantOptionError> {
    let document = DeTable::parse(text).map_err(|e| {
        let at = e.span().map_or(0, |span| span.start);
        let (line, column) = line_and_column(text, at);
        invalid(
            file_place(path, None),
            Problem::Toml {
                line,
                column,
                message: e.message().replace('\n', " "),
            },
        )
    })?;
    // The parsed table is sorted by name; the keys' positions give the file's order.
    let mut tables: Vec<_> = document.get_ref().iter().collect();
    tables.sort_by_key(|(name, _)| name.span().start);
    let mut variants = Vec::with_capacity(tables.len());
    for (name, table) in tables {
        let name = name.get_ref().as_ref();
        let Some(table) = table.get_ref().as_table() else {
            return Err(invalid(
                file_place(path, None),
                Problem::NotATable {
                    entry: name.to_string(),
                },
            ));
        };
        variants.push(variant_of_table(baseline, path, name, table)?);
    }
    Ok(variants)
}

fn variant_of_table(
    baseline: &Thresholds,
    path: &Path,
    name: &str,
    table: &DeTable<'_>,
) -> Result<Variant, VariantOptionError> {
    let place = file_place(path, Some(name));
    check_variant_name(name).map_err(|reason| {
        invalid(
            file_place(path, None),
            Problem::Name {
                name: name.to_string(),
                reason,
            },
        )
    })?;
    let mut entries: Vec<_> = table.iter().collect();
    entries.sort_by_key(|(key, _)| key.span().start);
    let mut settings = Settings::new(*baseline);
    for (key, value) in entries {
        let key = key.get_ref().as_ref();
        // An unknown key is reported as such, whatever its value.
        known_key(key)
            .and_then(|known| {
                let text = toml_value_text(value.get_ref()).map_err(|kind| Problem::ValueKind {
                    key: known.name(),
                    kind,
                })?;
                settings.set(key, &text)
            })
            .map_err(|problem| invalid(&place, problem))?;
    }
    Ok(Variant {
        name: name.to_string(),
        thresholds: settings.thresholds,
    })
}

/// A TOML value as the text its threshold option would be given: strings as they are,
/// numbers as written (a float's digits are kept, `0.85` stays `0.85`, never a binary
/// approximation; TOML's `_` separators are dropped by the parser). Integers in another
/// base (`0x10`) are written in decimal. Err: the kind of a value no option takes.
fn toml_value_text(value: &DeValue<'_>) -> Result<String, &'static str> {
    match value {
        DeValue::String(text) => Ok(text.to_string()),
        DeValue::Float(float) => Ok(float.as_str().to_string()),
        DeValue::Integer(integer) if integer.radix() == 10 => Ok(integer.as_str().to_string()),
        // Beyond u64 it stays as written (`0x…`), for the option's parser to refuse.
        DeValue::Integer(integer) => Ok(u64::from_str_radix(integer.as_str(), integer.radix())
            .map_or_else(|_| integer.to_string(), |v| v.to_string())),
        DeValue::Boolean(_) => Err("a boolean"),
        DeValue::Datetime(_) => Err("a date-time"),
        DeValue::Array(_) => Err("an array"),
        DeValue::Table(_) => Err("a table"),
    }
}

/// 1-based line and column (in characters) of byte `at` of `text`.
fn line_and_column(text: &str, at: usize) -> (usize, usize) {
    let before = text.get(..at).unwrap_or(text);
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let line = before.matches('\n').count() + 1;
    (line, before[line_start..].chars().count() + 1)
}

/// `--sweep KEY=FROM..TO/STEP`: one variant per value, ascending, named `KEY-VALUE`. Values
/// step as integers (counts, or millionths), so decimals never drift.
fn variants_of_sweep(
    baseline: &Thresholds,
    spec: &str,
) -> Result<Vec<Variant>, VariantOptionError> {
    let place = format!("--sweep {spec}");
    let problem = |problem| invalid(&place, problem);
    let syntax = || {
        problem(Problem::SweepSyntax {
            spec: spec.to_string(),
        })
    };
    let (key, range) = spec.split_once('=').ok_or_else(syntax)?;
    let (bounds, step_text) = range.rsplit_once('/').ok_or_else(syntax)?;
    let (from_text, to_text) = bounds.split_once("..").ok_or_else(syntax)?;
    let key = known_key(key).map_err(problem)?;
    let units = |text: &str| {
        key.parse_units(text).map_err(|reason| {
            problem(Problem::Value {
                key: key.name(),
                reason,
            })
        })
    };
    let (from, to) = (units(from_text)?, units(to_text)?);
    let step = match key.parse_step(step_text) {
        Ok(step) if step > 0 => step,
        _ => {
            return Err(problem(Problem::Step {
                step: step_text.to_string(),
            }))
        }
    };
    if from > to {
        return Err(problem(Problem::EmptyRange {
            from: from_text.to_string(),
            to: to_text.to_string(),
        }));
    }
    let count = u128::from(to - from) / u128::from(step) + 1;
    if count > MAX_SWEEP_VALUES {
        return Err(problem(Problem::SweepTooLong { count }));
    }
    // count <= 64 and from + (count - 1) * step <= to: no overflow.
    (0..count as u64)
        .map(|i| {
            let value = key.format_units(from + i * step);
            let mut settings = Settings::new(*baseline);
            settings.set(key.name(), &value).map_err(&problem)?;
            Ok(Variant {
                name: format!("{}-{value}", key.name()),
                thresholds: settings.thresholds,
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::Fraction;

    /// A baseline unlike the defaults, so that "keys not set keep the baseline" is visible.
    fn baseline() -> Thresholds {
        Thresholds {
            upgrade_min_merchant_txns: 1_000,
            upgrade_count_percentile: Fraction::from_millionths(950_000),
            upgrade_weight_percentile: Fraction::from_millionths(50_000),
            child_min_txns: 70,
            child_max_avg_amount: 25_000_000,
            dei_min_female_customers: 90,
        }
    }

    fn flags(specs: &[&str]) -> Vec<String> {
        specs.iter().map(|s| s.to_string()).collect()
    }

    fn of_flags(variants: &[&str], sweeps: &[&str]) -> Result<Vec<Variant>, VariantOptionError> {
        resolve(&baseline(), None, &flags(variants), &flags(sweeps)).map(|r| r.variants)
    }

    fn of_toml(text: &str) -> Result<Vec<Variant>, VariantOptionError> {
        resolve(&baseline(), Some((Path::new("v.toml"), text)), &[], &[]).map(|r| r.variants)
    }

    /// The problem of an `Invalid` error, and its place.
    fn problem_of<T: fmt::Debug>(result: Result<T, VariantOptionError>) -> (String, Problem) {
        match result {
            Err(VariantOptionError::Invalid { place, problem }) => (place, problem),
            other => panic!("expected an invalid option, got {other:?}"),
        }
    }

    fn names(variants: &[Variant]) -> Vec<&str> {
        variants.iter().map(|v| v.name.as_str()).collect()
    }

    #[test]
    fn variants_need_a_replay() {
        let options = VariantOptions {
            sweep: flags(&["child-min-txns=1..2/1"]),
            ..VariantOptions::default()
        };
        assert_eq!(
            options.resolve(&baseline(), false),
            Err(VariantOptionError::NeedsReplay)
        );
        let file_only = VariantOptions {
            file: Some(PathBuf::from("v.toml")),
            ..VariantOptions::default()
        };
        assert_eq!(
            file_only.resolve(&baseline(), false),
            Err(VariantOptionError::NeedsReplay)
        );
        assert_eq!(
            VariantOptions::default().resolve(&baseline(), false),
            Ok(ResolvedVariants::default())
        );
        assert_eq!(
            VariantOptions::default().resolve(&baseline(), true),
            Ok(ResolvedVariants::default())
        );
        assert!(options.resolve(&baseline(), true).is_ok());
    }

    #[test]
    fn a_variant_flag_sets_its_keys_and_keeps_the_baseline_for_the_others() {
        let got = of_flags(&["strict:child-min-txns=100,child-max-avg-amount=20"], &[]).unwrap();
        let mut expected = baseline();
        expected.child_min_txns = 100;
        expected.child_max_avg_amount = 20_000_000;
        assert_eq!(
            got,
            vec![Variant {
                name: "strict".into(),
                thresholds: expected
            }]
        );
        let all = "all:upgrade-min-merchant-txns=7,upgrade-count-percentile=0.5,\
                   upgrade-weight-percentile=0.000001,child-min-txns=0,\
                   child-max-avg-amount=12.345678,dei-min-female-customers=3";
        let got = of_flags(&[all], &[]).unwrap();
        let expected = Thresholds {
            upgrade_min_merchant_txns: 7,
            upgrade_count_percentile: Fraction::from_millionths(500_000),
            upgrade_weight_percentile: Fraction::from_millionths(1),
            child_min_txns: 0,
            child_max_avg_amount: 12_345_678,
            dei_min_female_customers: 3,
        };
        assert_eq!(got[0].thresholds, expected);
    }

    #[test]
    fn variant_flag_syntax_errors() {
        for spec in [
            "strict",
            "strict:",
            "strict:child-min-txns",
            "strict:child-min-txns=1,",
        ] {
            let (place, problem) = problem_of(of_flags(&[spec], &[]));
            assert_eq!(place, "--variant", "{spec}");
            assert_eq!(problem, Problem::VariantSyntax { spec: spec.into() });
        }
        let (_, problem) = problem_of(of_flags(&[":child-min-txns=1"], &[]));
        assert!(matches!(problem, Problem::Name { ref name, .. } if name.is_empty()));
    }

    #[test]
    fn variant_names() {
        for good in ["a", "v1.2_x-Y", "0", "a..b", &"n".repeat(64)] {
            assert_eq!(check_variant_name(good), Ok(()), "{good}");
        }
        for bad in [
            "",
            ".hidden",
            "..",
            "a/b",
            "a b",
            "é",
            "baseline",
            "BaseLine",
            &"n".repeat(65),
        ] {
            assert!(check_variant_name(bad).is_err(), "{bad:?}");
            let spec = format!("{bad}:child-min-txns=1");
            let (place, problem) = problem_of(of_flags(&[&spec], &[]));
            assert_eq!(place, "--variant");
            assert!(
                matches!(problem, Problem::Name { ref name, .. } if name == bad),
                "{problem:?}"
            );
        }
        let (place, problem) = problem_of(of_toml("[\"a b\"]\nchild-min-txns = 1\n"));
        assert_eq!(place, "--variants v.toml");
        assert!(matches!(problem, Problem::Name { ref name, .. } if name == "a b"));
    }

    #[test]
    fn unknown_keys_list_the_valid_ones() {
        let (place, problem) = problem_of(of_flags(&["s:child-min-txn=1"], &[]));
        assert_eq!(place, "--variant s");
        assert_eq!(
            problem,
            Problem::UnknownKey {
                key: "child-min-txn".into()
            }
        );
        let message = problem.to_string();
        for key in [
            "upgrade-min-merchant-txns",
            "upgrade-count-percentile",
            "upgrade-weight-percentile",
            "child-min-txns",
            "child-max-avg-amount",
            "dei-min-female-customers",
        ] {
            assert!(message.contains(key), "{message}");
        }
        // The flag's own name, with its dashes, is not a key.
        let (_, problem) = problem_of(of_flags(&["s:--child-min-txns=1"], &[]));
        assert!(matches!(problem, Problem::UnknownKey { .. }));
        let (_, problem) = problem_of(of_flags(&[], &["child-min=1..2/1"]));
        assert!(matches!(problem, Problem::UnknownKey { ref key } if key == "child-min"));
        let (place, problem) = problem_of(of_toml("[s]\nfoo = true\n"));
        assert_eq!(place, "--variants v.toml [s]");
        assert!(matches!(problem, Problem::UnknownKey { ref key } if key == "foo"));
    }

    #[test]
    fn a_key_set_twice_is_refused() {
        let (place, problem) = problem_of(of_flags(&["s:child-min-txns=1,child-min-txns=1"], &[]));
        assert_eq!(place, "--variant s");
        assert_eq!(
            problem,
            Problem::KeySetTwice {
                key: "child-min-txns"
            }
        );
    }

    #[test]
    fn invalid_values_name_the_variant_the_key_and_the_value() {
        let cases = [
            ("child-min-txns", "-1"),
            ("child-min-txns", "1.5"),
            ("child-min-txns", "18446744073709551616"),
            ("dei-min-female-customers", ""),
            ("upgrade-min-merchant-txns", "ten"),
            ("upgrade-count-percentile", "1.5"),
            ("upgrade-count-percentile", "0.1234567"),
            ("upgrade-weight-percentile", "-0.1"),
            ("child-max-avg-amount", "-1"),
            ("child-max-avg-amount", "1e3"),
            ("child-max-avg-amount", "NaN"),
            ("child-max-avg-amount", "1000000000000"),
        ];
        for (key, value) in cases {
            let spec = format!("loose:{key}={value}");
            let error = of_flags(&[&spec], &[]).unwrap_err();
            let line = error.to_string();
            assert!(
                line.starts_with(&format!("--variant loose: {key}: \"{value}\"")),
                "{line}"
            );
            assert!(!line.contains('\n'));
        }
    }

    #[test]
    fn duplicate_names_across_all_three_options() {
        let toml = "[a]\nchild-min-txns = 1\n";
        let dup = |variants: &[&str], sweeps: &[&str]| {
            problem_of(resolve(
                &baseline(),
                Some((Path::new("v.toml"), toml)),
                &flags(variants),
                &flags(sweeps),
            ))
        };
        let (place, problem) = dup(&["A:child-min-txns=2"], &[]);
        assert_eq!(place, "--variant");
        assert_eq!(
            problem,
            Problem::Duplicate {
                name: "A".into(),
                first: "--variants v.toml".into()
            }
        );
        let (place, problem) = dup(
            &["child-min-txns-5:child-min-txns=2"],
            &["child-min-txns=1..9/2"],
        );
        assert_eq!(place, "--sweep child-min-txns=1..9/2");
        assert!(matches!(problem, Problem::Duplicate { ref first, .. } if first == "--variant"));
        let (_, problem) = dup(&[], &["child-min-txns=1..2/1", "child-min-txns=2..3/1"]);
        assert!(
            matches!(problem, Problem::Duplicate { ref name, .. } if name == "child-min-txns-2")
        );
        let (_, problem) = dup(&["b:child-min-txns=1", "b:child-min-txns=2"], &[]);
        assert!(matches!(problem, Problem::Duplicate { ref name, .. } if name == "b"));
    }

    #[test]
    fn at_most_32_variants_in_all() {
        let specs: Vec<String> = (0..20)
            .map(|i| format!("v{i}:child-min-txns={i}"))
            .collect();
        let specs: Vec<&str> = specs.iter().map(String::as_str).collect();
        // 20 flags + 12 sweep values = 32.
        let got = of_flags(&specs, &["dei-min-female-customers=1..12/1"]).unwrap();
        assert_eq!(got.len(), 32);
        assert_eq!(
            of_flags(&specs, &["dei-min-female-customers=1..13/1"]),
            Err(VariantOptionError::TooMany { count: 33 })
        );
        let toml: String = (0..33)
            .map(|i| format!("[t{i}]\nchild-min-txns = {i}\n"))
            .collect();
        assert_eq!(
            of_toml(&toml),
            Err(VariantOptionError::TooMany { count: 33 })
        );
    }

    #[test]
    fn order_is_file_then_variant_flags_then_sweeps_ascending() {
        let toml = "[zeta]\nchild-min-txns = 1\n[alpha]\nchild-min-txns = 2\n[mid]\n";
        let got = resolve(
            &baseline(),
            Some((Path::new("v.toml"), toml)),
            &flags(&["z2:child-min-txns=3", "a2:child-min-txns=4"]),
            &flags(&["child-min-txns=9..10/1"]),
        )
        .unwrap();
        assert_eq!(
            names(&got.variants),
            [
                "zeta",
                "alpha",
                "mid",
                "z2",
                "a2",
                "child-min-txns-9",
                "child-min-txns-10"
            ]
        );
        let txns: Vec<u64> = got
            .variants
            .iter()
            .map(|v| v.thresholds.child_min_txns)
            .collect();
        assert_eq!(txns, [1, 2, 70, 3, 4, 9, 10]);
    }

    #[test]
    fn an_integer_sweep_is_inclusive_and_named_key_value() {
        let got = of_flags(&[], &["child-min-txns=60..120/20"]).unwrap();
        assert_eq!(
            names(&got),
            [
                "child-min-txns-60",
                "child-min-txns-80",
                "child-min-txns-100",
                "child-min-txns-120"
            ]
        );
        for (variant, expected) in got.iter().zip([60, 80, 100, 120]) {
            let mut thresholds = baseline();
            thresholds.child_min_txns = expected;
            assert_eq!(variant.thresholds, thresholds, "{}", variant.name);
        }
        // The end is included only when a step lands on it.
        let got = of_flags(&[], &["upgrade-min-merchant-txns=0..119/40"]).unwrap();
        let values: Vec<u64> = got
            .iter()
            .map(|v| v.thresholds.upgrade_min_merchant_txns)
            .collect();
        assert_eq!(values, [0, 40, 80]);
        let single = of_flags(&[], &["dei-min-female-customers=5..5/3"]).unwrap();
        assert_eq!(names(&single), ["dei-min-female-customers-5"]);
    }

    #[test]
    fn a_decimal_sweep_steps_exactly() {
        // In binary floating point 0.1 + 0.1 + 0.1 > 0.3: a float sweep would lose 0.3.
        let got = of_flags(&[], &["child-max-avg-amount=0.1..0.3/0.1"]).unwrap();
        let micros: Vec<i64> = got
            .iter()
            .map(|v| v.thresholds.child_max_avg_amount)
            .collect();
        assert_eq!(micros, [100_000, 200_000, 300_000]);
        assert_eq!(
            names(&got),
            [
                "child-max-avg-amount-0.1",
                "child-max-avg-amount-0.2",
                "child-max-avg-amount-0.3"
            ]
        );
        let got = of_flags(&[], &["upgrade-count-percentile=0..1/0.05"]).unwrap();
        assert_eq!(got.len(), 21);
        let millionths: Vec<u32> = got
            .iter()
            .map(|v| v.thresholds.upgrade_count_percentile.millionths)
            .collect();
        let expected: Vec<u32> = (0..=20).map(|i| i * 50_000).collect();
        assert_eq!(millionths, expected);
        assert_eq!(got[0].name, "upgrade-count-percentile-0");
        assert_eq!(got[17].name, "upgrade-count-percentile-0.85");
        assert_eq!(got[20].name, "upgrade-count-percentile-1");
        // Untouched keys keep the baseline.
        assert!(got.iter().all(
            |v| v.thresholds.upgrade_weight_percentile == baseline().upgrade_weight_percentile
        ));
        let got = of_flags(
            &[],
            &["upgrade-weight-percentile=0.000001..0.000003/0.000001"],
        );
        assert_eq!(
            names(&got.unwrap()),
            [
                "upgrade-weight-percentile-0.000001",
                "upgrade-weight-percentile-0.000002",
                "upgrade-weight-percentile-0.000003"
            ]
        );
        let got = of_flags(&[], &["child-max-avg-amount=19.5..21/0.75"]).unwrap();
        assert_eq!(
            names(&got),
            [
                "child-max-avg-amount-19.5",
                "child-max-avg-amount-20.25",
                "child-max-avg-amount-21"
            ]
        );
    }

    #[test]
    fn sweep_errors() {
        let sweep_problem = |spec: &str| {
            let (place, problem) = problem_of(of_flags(&[], &[spec]));
            assert_eq!(place, format!("--sweep {spec}"));
            problem
        };
        for spec in [
            "child-min-txns",
            "child-min-txns=60..120",
            "child-min-txns=60/20",
            "60..120/20",
        ] {
            assert_eq!(
                sweep_problem(spec),
                Problem::SweepSyntax { spec: spec.into() }
            );
        }
        assert_eq!(
            sweep_problem("child-min-txns=120..60/20"),
            Problem::EmptyRange {
                from: "120".into(),
                to: "60".into()
            }
        );
        assert!(matches!(
            sweep_problem("upgrade-count-percentile=0.9..0.8/0.1"),
            Problem::EmptyRange { .. }
        ));
        for (spec, step) in [
            ("child-min-txns=1..5/0", "0"),
            ("child-min-txns=1..5/-1", "-1"),
            ("child-max-avg-amount=1..5/0.0", "0.0"),
            ("child-max-avg-amount=1..5/-0.5", "-0.5"),
            ("child-min-txns=1..5/0.5", "0.5"),
            ("child-min-txns=1..5/", ""),
        ] {
            assert_eq!(
                sweep_problem(spec),
                Problem::Step { step: step.into() },
                "{spec}"
            );
        }
        assert_eq!(
            sweep_problem("child-min-txns=1..65/1"),
            Problem::SweepTooLong { count: 65 }
        );
        assert_eq!(
            sweep_problem("child-min-txns=0..18446744073709551615/1"),
            Problem::SweepTooLong {
                count: u128::from(u64::MAX) + 1
            }
        );
        assert_eq!(
            sweep_problem("upgrade-count-percentile=0..1/0.01"),
            Problem::SweepTooLong { count: 101 }
        );
        // 64 values are one sweep's most, but more than a run's variants.
        assert_eq!(
            of_flags(&[], &["child-min-txns=1..64/1"]),
            Err(VariantOptionError::TooMany { count: 64 })
        );
        for spec in [
            "upgrade-count-percentile=0.5..1.5/0.1",
            "child-max-avg-amount=x..2/1",
        ] {
            assert!(
                matches!(sweep_problem(spec), Problem::Value { .. }),
                "{spec}"
            );
        }
    }

    #[test]
    fn toml_value_kinds() {
        let toml = "[ints]\nchild-min-txns = 100\nupgrade-min-merchant-txns = 1_000\n\
                    dei-min-female-customers = 0x10\n\
                    [floats]\nupgrade-count-percentile = 0.85\nchild-max-avg-amount = 999999999999.999999\n\
                    upgrade-weight-percentile = 0.0_5\n\
                    [strings]\nchild-min-txns = \"100\"\nupgrade-count-percentile = '0.85'\n\
                    child-max-avg-amount = \"20\"\n\
                    [int-for-decimal]\nchild-max-avg-amount = 20\nupgrade-count-percentile = 1\n";
        let got = of_toml(toml).unwrap();
        assert_eq!(
            names(&got),
            ["ints", "floats", "strings", "int-for-decimal"]
        );
        let expect = |change: &dyn Fn(&mut Thresholds)| {
            let mut thresholds = baseline();
            change(&mut thresholds);
            thresholds
        };
        assert_eq!(
            got[0].thresholds,
            expect(&|t| {
                t.child_min_txns = 100;
                t.upgrade_min_merchant_txns = 1_000;
                t.dei_min_female_customers = 16;
            })
        );
        // As written, not through f64 (which has no 0.85, nor 18 significant digits).
        assert_eq!(
            got[1].thresholds,
            expect(&|t| {
                t.upgrade_count_percentile = Fraction::from_millionths(850_000);
                t.child_max_avg_amount = 999_999_999_999_999_999;
                t.upgrade_weight_percentile = Fraction::from_millionths(50_000);
            })
        );
        assert_eq!(
            got[2].thresholds,
            expect(&|t| {
                t.child_min_txns = 100;
                t.upgrade_count_percentile = Fraction::from_millionths(850_000);
                t.child_max_avg_amount = 20_000_000;
            })
        );
        assert_eq!(
            got[3].thresholds,
            expect(&|t| {
                t.child_max_avg_amount = 20_000_000;
                t.upgrade_count_percentile = Fraction::from_millionths(1_000_000);
            })
        );
        // As `--child-min-txns 18446744073709551615` takes it.
        let most = of_toml("[most]\nchild-min-txns = 0xFFFF_FFFF_FFFF_FFFF\n").unwrap();
        assert_eq!(most[0].thresholds.child_min_txns, u64::MAX);
    }

    #[test]
    fn counts_take_the_whole_u64_range_and_refuse_anything_past_it() {
        let most = u64::MAX.to_string();
        let flag = format!("off:upgrade-min-merchant-txns={most},child-min-txns={most}");
        let flag = format!("{flag},dei-min-female-customers=9223372036854775808");
        let got = of_flags(&[&flag], &[]).unwrap();
        assert_eq!(got[0].thresholds.upgrade_min_merchant_txns, u64::MAX);
        assert_eq!(got[0].thresholds.child_min_txns, u64::MAX);
        assert_eq!(got[0].thresholds.dei_min_female_customers, 1 << 63);
        // In the file as a number (past TOML's i64 too: kept as written) or as a string.
        let toml = format!("[a]\nchild-min-txns = {most}\n[b]\nchild-min-txns = \"{most}\"\n");
        let got = of_toml(&toml).unwrap();
        assert!(got.iter().all(|v| v.thresholds.child_min_txns == u64::MAX));
        let (_, problem) = problem_of(of_toml("[c]\nchild-min-txns = 18446744073709551616\n"));
        assert!(problem.to_string().contains(&most), "{problem}");
        let sweep = format!("child-min-txns=18446744073709551614..{most}/1");
        let got = of_flags(&[], &[&sweep]).unwrap();
        let values: Vec<u64> = got.iter().map(|v| v.thresholds.child_min_txns).collect();
        assert_eq!(values, [u64::MAX - 1, u64::MAX]);
        for value in ["-1", "18446744073709551616", "99999999999999999999999"] {
            let spec = format!("s:dei-min-female-customers={value}");
            let (place, problem) = problem_of(of_flags(&[&spec], &[]));
            assert_eq!(place, "--variant s");
            let reason = format!("{value:?} is not a whole number from 0 to {most}");
            assert_eq!(
                problem,
                Problem::Value {
                    key: "dei-min-female-customers",
                    reason
                }
            );
            let sweep = format!("child-min-txns=0..{value}/1");
            let (_, problem) = problem_of(of_flags(&[], &[&sweep]));
            assert!(
                problem.to_string().contains(&most),
                "names the range: {problem}"
            );
        }
    }

    #[test]
    fn toml_values_the_options_refuse() {
        // What `--child-min-txns` refuses, the file refuses too (100.0 is not a whole number).
        let refused = [
            ("child-min-txns = 100.0", "child-min-txns"),
            ("child-min-txns = -1", "child-min-txns"),
            ("child-min-txns = \"1e2\"", "child-min-txns"),
            (
                "upgrade-count-percentile = 1e-1",
                "upgrade-count-percentile",
            ),
            (
                "upgrade-count-percentile = 0.1234567",
                "upgrade-count-percentile",
            ),
            ("child-max-avg-amount = nan", "child-max-avg-amount"),
            ("child-max-avg-amount = -inf", "child-max-avg-amount"),
            ("child-max-avg-amount = +2.5", "child-max-avg-amount"),
            ("child-min-txns = 0x1_0000_0000_0000_0000", "child-min-txns"),
        ];
        for (line, key) in refused {
            let (place, problem) = problem_of(of_toml(&format!("[s]\n{line}\n")));
            assert_eq!(place, "--variants v.toml [s]", "{line}");
            assert!(
                matches!(problem, Problem::Value { key: k, .. } if k == key),
                "{line}: {problem:?}"
            );
        }
        let kinds = [
            ("child-min-txns = true", "a boolean"),
            ("child-min-txns = [1, 2]", "an array"),
            ("child-min-txns = 1979-05-27", "a date-time"),
            ("child-min-txns = { a = 1 }", "a table"),
        ];
        for (line, kind) in kinds {
            let (_, problem) = problem_of(of_toml(&format!("[s]\n{line}\n")));
            assert_eq!(
                problem,
                Problem::ValueKind {
                    key: "child-min-txns",
                    kind
                },
                "{line}"
            );
        }
    }

    #[test]
    fn toml_file_errors() {
        let (place, problem) = problem_of(of_toml("child-min-txns = 100\n[s]\n"));
        assert_eq!(place, "--variants v.toml");
        assert_eq!(
            problem,
            Problem::NotATable {
                entry: "child-min-txns".into()
            }
        );
        let (place, problem) = problem_of(of_toml("[a]\nchild-min-txns = 1\n[b\n"));
        assert_eq!(place, "--variants v.toml");
        assert!(
            matches!(
                problem,
                Problem::Toml {
                    line: 3,
                    column: 3,
                    ..
                }
            ),
            "{problem:?}"
        );
        let (_, problem) = problem_of(of_toml("[a]\nchild-min-txns = 1\nchild-min-txns = 2\n"));
        assert!(
            matches!(problem, Problem::Toml { line: 3, .. }),
            "{problem:?}"
        );
        // A nested table is a key of its parent's variant.
        let (_, problem) = problem_of(of_toml("[a.b]\nchild-min-txns = 1\n"));
        assert_eq!(problem, Problem::UnknownKey { key: "b".into() });
        let missing = VariantOptions {
            file: Some(PathBuf::from("/nonexistent/variants.toml")),
            ..VariantOptions::default()
        };
        let (place, problem) = problem_of(missing.resolve(&baseline(), true));
        assert_eq!(place, "--variants /nonexistent/variants.toml");
        assert!(matches!(problem, Problem::Unreadable(_)));
        assert!(of_toml("").unwrap().is_empty());
        for error in [
            of_toml("[a]\nchild-min-txns = \"x\\ny\"\n").unwrap_err(),
            of_toml("[a\n\n").unwrap_err(),
        ] {
            assert!(!error.to_string().contains('\n'), "one line: {error}");
        }
    }

    #[test]
    fn identical_variants_are_allowed_with_a_warning() {
        let toml = "[control]\n[same-as-baseline]\nchild-min-txns = 70\n";
        let got = resolve(
            &baseline(),
            Some((Path::new("v.toml"), toml)),
            &flags(&[
                "strict:child-min-txns=100",
                "strict2:child-min-txns=100",
                "other:child-min-txns=101",
            ]),
            &flags(&["child-min-txns=100..101/1"]),
        )
        .unwrap();
        assert_eq!(got.variants.len(), 7);
        assert_eq!(got.warnings.len(), 5, "{:#?}", got.warnings);
        let warned = |name: &str, also: &str| {
            got.warnings
                .iter()
                .any(|w| w.contains(&format!("{name:?}")) && w.contains(also))
        };
        assert!(warned("control", "baseline"));
        assert!(warned("same-as-baseline", "baseline"));
        assert!(warned("strict2", "\"strict\""));
        assert!(warned("child-min-txns-100", "\"strict\""));
        assert!(warned("child-min-txns-101", "\"other\""));
        let distinct = resolve(
            &baseline(),
            None,
            &flags(&["a:child-min-txns=1", "b:child-min-txns=2"]),
            &[],
        )
        .unwrap();
        assert_eq!(distinct.variants.len(), 2);
        assert_eq!(distinct.warnings, Vec::<String>::new());
    }

    #[test]
    fn millionths_are_written_without_trailing_zeros() {
        for (units, text) in [
            (0, "0"),
            (1, "0.000001"),
            (850_000, "0.85"),
            (1_000_000, "1"),
            (20_250_000, "20.25"),
            (999_999_999_999_999_999, "999999999999.999999"),
        ] {
            assert_eq!(format_millionths(units), text);
            assert_eq!(
                crate::decimal::parse_decimal_micros(text),
                Some(units as i64)
            );
        }
    }

    #[test]
    fn error_lines_name_the_option() {
        let line = |r: Result<Vec<Variant>, VariantOptionError>| r.unwrap_err().to_string();
        assert_eq!(
            line(of_flags(&["strict:child-min-txns=abc"], &[])),
            "--variant strict: child-min-txns: \"abc\" is not a whole number from 0 to \
             18446744073709551615"
        );
        assert_eq!(
            line(of_flags(&[], &["child-min-txns=1..5/0"])),
            "--sweep child-min-txns=1..5/0: the step \"0\" must be positive"
        );
        assert_eq!(
            VariantOptionError::NeedsReplay.to_string(),
            "--variant/--variants/--sweep need --replay: variants are a backtest feature"
        );
    }
}
