//! The backtest variants of `mechanism-y`: `--variants FILE` (TOML, one table per variant),
//! `--variant NAME:KEY=VALUE[,KEY=VALUE…]` and `--sweep KEY=FROM..TO/STEP`, each a name and
//! [`ThresholdOverrides`] on the run's own thresholds (the baseline). The keys are the
//! threshold options without `--` ([`Thresholds::keys`]) and every value is read by
//! [`ThresholdOverrides`]' serde form, i.e. by the option's own parser.
//!
//! Variants come in the order of the options: the file's tables in file order, then
//! `--variant` in order, then each `--sweep`'s values ascending (the order names the ledgers
//! in the store and the report). A variant identical to the baseline or to another variant
//! is allowed (e.g. a control copy): it is reported as a warning. This module reads text;
//! the caller reads the file.

use std::fmt;

use serde::Deserialize;
use serde_json::{Map, Value};
use toml::de::{DeTable, DeValue};

use super::{format_millionths, parse_count, ThresholdOverrides, Thresholds, Variant};
use crate::decimal::parse_decimal_micros;

/// The most variants a run takes, from all three options together: each one instantiates its
/// own threshold-dependent operators and writes its own ledger and files.
pub const MAX_VARIANTS: usize = 32;
/// The most values one `--sweep` may expand to.
pub const MAX_SWEEP_VALUES: u128 = 64;
/// The longest variant name (it names a folder and a ledger).
pub const MAX_NAME_LEN: usize = 64;
/// The name the run's own thresholds go by in the ledgers and the report.
pub const RESERVED_NAME: &str = "baseline";

/// A variant name: `[A-Za-z0-9._-]{1,64}`, not starting with `.` (it names the folder
/// `<output>/variants/<name>/`: no hidden folder, no `..`), and not `baseline` in any case
/// (reserved for the run's own thresholds; any case, for case-insensitive file systems).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct VariantName(String);

impl VariantName {
    pub fn parse(name: &str) -> Result<VariantName, &'static str> {
        let allowed = |b: u8| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'_' | b'-');
        match name {
            "" => Err("it is empty"),
            _ if name.len() > MAX_NAME_LEN => Err("longer than 64 characters"),
            _ if !name.bytes().all(allowed) => {
                Err("only letters, digits, '.', '_' and '-' are allowed")
            }
            _ if name.starts_with('.') => Err("it must not start with '.'"),
            _ if name.eq_ignore_ascii_case(RESERVED_NAME) => {
                Err("\"baseline\" is reserved for the run's own thresholds")
            }
            _ => Ok(VariantName(name.to_string())),
        }
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
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
    #[error("unknown key {key:?} (valid keys: {})", Thresholds::keys().join(", "))]
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

fn invalid(place: impl fmt::Display, problem: Problem) -> VariantOptionError {
    let place = place.to_string();
    VariantOptionError::Invalid { place, problem }
}

/// `--variants FILE`'s place in messages, with a table when known.
pub fn file_place(file: &str, table: Option<&str>) -> String {
    match table {
        Some(table) => format!("--variants {file} [{table}]"),
        None => format!("--variants {file}"),
    }
}

/// A variant as given: its name, its overrides and the option that gave it.
struct Given {
    name: VariantName,
    overrides: ThresholdOverrides,
    origin: String,
}

/// The variants of `--variants` (the file as named in messages, and its text), `--variant`
/// and `--sweep`, in that order, each on `baseline`.
pub fn resolve(
    baseline: &Thresholds,
    file: Option<(&str, &str)>,
    variant_specs: &[String],
    sweep_specs: &[String],
) -> Result<ResolvedVariants, VariantOptionError> {
    let mut given = match file {
        Some((file, text)) => variants_of_toml(file, text)?,
        None => Vec::new(),
    };
    for spec in variant_specs {
        given.push(variant_of_flag(spec)?);
    }
    for spec in sweep_specs {
        given.extend(variants_of_sweep(spec)?);
    }
    // Names compare ignoring ASCII case: they become folder names.
    for (i, later) in given.iter().enumerate() {
        let name = later.name.as_str();
        if let Some(first) = given[..i]
            .iter()
            .find(|g| g.name.0.eq_ignore_ascii_case(name))
        {
            let (name, first) = (name.to_string(), first.origin.clone());
            return Err(invalid(&later.origin, Problem::Duplicate { name, first }));
        }
    }
    if given.len() > MAX_VARIANTS {
        return Err(VariantOptionError::TooMany { count: given.len() });
    }
    let variants: Vec<Variant> = given
        .into_iter()
        .map(|g| Variant {
            name: g.name.0,
            thresholds: g.overrides.apply(baseline),
        })
        .collect();
    Ok(ResolvedVariants {
        warnings: identical_thresholds(baseline, &variants),
        variants,
    })
}

/// A warning for each variant whose thresholds equal the baseline's or an earlier variant's:
/// allowed, but its results can only repeat those.
fn identical_thresholds(baseline: &Thresholds, variants: &[Variant]) -> Vec<String> {
    let mut warnings = Vec::new();
    for (i, v) in variants.iter().enumerate() {
        if v.thresholds == *baseline {
            warnings.push(format!(
                "variant {:?} has the baseline's thresholds: its results will be the baseline's",
                v.name
            ));
        } else if let Some(earlier) = variants[..i].iter().find(|e| e.thresholds == v.thresholds) {
            warnings.push(format!(
                "variant {:?} has the same thresholds as variant {:?}: its results will be the same",
                v.name, earlier.name
            ));
        }
    }
    warnings
}

/// A variant's overrides as its keys are set, each key at most once, each value read by
/// [`ThresholdOverrides`]' serde form.
#[derive(Default)]
struct Settings {
    set: Map<String, Value>,
    overrides: ThresholdOverrides,
}

impl Settings {
    fn set(&mut self, key: &str, text: &str) -> Result<(), Problem> {
        let key = known_key(key)?;
        if self.set.contains_key(key) {
            return Err(Problem::KeySetTwice { key });
        }
        self.set
            .insert(key.to_string(), Value::String(text.to_string()));
        // Every earlier key was read: an error is this key's value.
        self.overrides =
            ThresholdOverrides::deserialize(Value::Object(self.set.clone())).map_err(|e| {
                Problem::Value {
                    key,
                    reason: e.to_string(),
                }
            })?;
        Ok(())
    }
}

fn known_key(key: &str) -> Result<&'static str, Problem> {
    let unknown = || Problem::UnknownKey {
        key: key.to_string(),
    };
    Thresholds::keys()
        .iter()
        .copied()
        .find(|k| *k == key)
        .ok_or_else(unknown)
}

fn variant_name(place: &str, name: &str) -> Result<VariantName, VariantOptionError> {
    VariantName::parse(name).map_err(|reason| {
        invalid(
            place,
            Problem::Name {
                name: name.to_string(),
                reason,
            },
        )
    })
}

/// `--variant NAME:KEY=VALUE[,KEY=VALUE…]`.
fn variant_of_flag(spec: &str) -> Result<Given, VariantOptionError> {
    let syntax = || {
        invalid(
            "--variant",
            Problem::VariantSyntax {
                spec: spec.to_string(),
            },
        )
    };
    let (name, assignments) = spec.split_once(':').ok_or_else(syntax)?;
    let name = variant_name("--variant", name)?;
    let place = format!("--variant {}", name.as_str());
    let mut settings = Settings::default();
    for assignment in assignments.split(',') {
        let (key, value) = assignment.split_once('=').ok_or_else(syntax)?;
        settings
            .set(key, value)
            .map_err(|problem| invalid(&place, problem))?;
    }
    Ok(Given {
        name,
        overrides: settings.overrides,
        origin: "--variant".to_string(),
    })
}

/// `--variants FILE`: one table per variant, in file order.
fn variants_of_toml(file: &str, text: &str) -> Result<Vec<Given>, VariantOptionError> {
    let document = DeTable::parse(text).map_err(|e| {
        let before = text
            .get(..e.span().map_or(0, |span| span.start))
            .unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        let message = e.message().replace('\n', " ");
        invalid(
            file_place(file, None),
            Problem::Toml {
                line,
                column,
                message,
            },
        )
    })?;
    // The parsed tables are sorted by name; the keys' positions give the file's order.
    let mut tables: Vec<_> = document.get_ref().iter().collect();
    tables.sort_by_key(|(name, _)| name.span().start);
    let mut given = Vec::with_capacity(tables.len());
    for (name, table) in tables {
        let name = name.get_ref().as_ref();
        let Some(table) = table.get_ref().as_table() else {
            let entry = name.to_string();
            return Err(invalid(
                file_place(file, None),
                Problem::NotATable { entry },
            ));
        };
        let valid = variant_name(&file_place(file, None), name)?;
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        let mut settings = Settings::default();
        for (key, value) in entries {
            let key = key.get_ref().as_ref();
            // An unknown key is reported as such, whatever its value.
            known_key(key)
                .and_then(|known| {
                    let text = toml_value_text(value.get_ref())
                        .map_err(|kind| Problem::ValueKind { key: known, kind })?;
                    settings.set(key, &text)
                })
                .map_err(|problem| invalid(file_place(file, Some(name)), problem))?;
        }
        let origin = file_place(file, None);
        given.push(Given {
            name: valid,
            overrides: settings.overrides,
            origin,
        });
    }
    Ok(given)
}

/// A TOML value as the text its threshold option would be given: strings as they are,
/// numbers as written (`0.85` stays `0.85`, never a binary approximation; TOML's `_`
/// separators are dropped by the parser), integers in another base in decimal. Err: the kind
/// of a value no option takes.
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

/// `text` as a value of `key` in integer units, so that sweeps step exactly: the count, or
/// millionths for a decimal (the serde form writes counts as numbers, decimals as strings);
/// and whether it is a decimal.
fn units(key: &'static str, text: &str) -> Result<(u64, bool), Problem> {
    let mut settings = Settings::default();
    settings.set(key, text)?;
    let value = serde_json::to_value(settings.overrides).unwrap_or_default();
    match value.get(key) {
        Some(Value::Number(count)) => Ok((count.as_u64().unwrap_or_default(), false)),
        Some(Value::String(decimal)) => Ok((
            parse_decimal_micros(decimal)
                .unwrap_or_default()
                .unsigned_abs(),
            true,
        )),
        _ => Err(Problem::Value {
            key,
            reason: "not a threshold".into(),
        }),
    }
}

/// `--sweep KEY=FROM..TO/STEP`: one variant per value, ascending, named `KEY-VALUE`.
fn variants_of_sweep(spec: &str) -> Result<Vec<Given>, VariantOptionError> {
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
    let ((from, decimal), (to, _)) = (
        units(key, from_text).map_err(problem)?,
        units(key, to_text).map_err(problem)?,
    );
    let step = if decimal {
        parse_decimal_micros(step_text).map(i64::unsigned_abs)
    } else {
        parse_count(step_text).ok()
    };
    let Some(step) = step.filter(|step| *step > 0) else {
        return Err(problem(Problem::Step {
            step: step_text.to_string(),
        }));
    };
    if from > to {
        let (from, to) = (from_text.to_string(), to_text.to_string());
        return Err(problem(Problem::EmptyRange { from, to }));
    }
    let count = u128::from(to - from) / u128::from(step) + 1;
    if count > MAX_SWEEP_VALUES {
        return Err(problem(Problem::SweepTooLong { count }));
    }
    // count <= 64 and from + (count - 1) * step <= to: no overflow.
    (0..count as u64)
        .map(|i| {
            let units = from + i * step;
            let value = if decimal {
                format_millionths(units)
            } else {
                units.to_string()
            };
            let mut settings = Settings::default();
            settings.set(key, &value).map_err(problem)?;
            let name = variant_name(&place, &format!("{key}-{value}"))?;
            Ok(Given {
                name,
                overrides: settings.overrides,
                origin: place.clone(),
            })
        })
        .collect()
}

#[cfg(test)]
mod tests;
