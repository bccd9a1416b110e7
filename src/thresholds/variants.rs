//! The backtest variants of `mechanism-y` from the text of `--variants FILE` (TOML, one table
//! per variant), `--variant NAME:KEY=VALUE[,KEY=VALUE…]` and `--sweep KEY=FROM..TO/STEP`: each
//! a name and [`ThresholdOverrides`] on the run's own thresholds (the baseline), its keys
//! [`Thresholds::keys`], its values read by the overrides' serde form (the options' parsers).
//! Variants come in the order of the options (file tables, `--variant`s, each sweep ascending):
//! the order names the ledgers. A variant repeating the baseline or another one is a warning.

use serde::Deserialize;
use serde_json::{Map, Value};
use toml::de::{DeTable, DeValue};

use super::ThresholdOverrides as Overrides;
use super::{format_millionths, parse_count, Thresholds, Variant, VariantName};
use crate::decimal::parse_decimal_micros;

/// The most variants a run takes, from all three options together: each one instantiates its
/// own threshold-dependent operators and writes its own ledger and files.
pub(crate) const MAX_VARIANTS: usize = 32;
/// The most values one `--sweep` may expand to.
pub(crate) const MAX_SWEEP_VALUES: u128 = 64;

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

fn invalid(place: impl ToString, problem: Problem) -> VariantOptionError {
    let place = place.to_string();
    VariantOptionError::Invalid { place, problem }
}

/// A variant as given: its name, its overrides and the option that gave it.
type Given = (VariantName, Overrides, String);

/// The variants of `--variants` (the file as named in messages, and its text), `--variant`
/// and `--sweep`, in that order, each on `baseline`. The caller reads the file.
pub fn resolve(
    baseline: &Thresholds,
    file: Option<(&str, &str)>,
    variant_specs: &[String],
    sweep_specs: &[String],
) -> Result<ResolvedVariants, VariantOptionError> {
    let file = file.map(|(file, text)| variants_of_toml(file, text));
    let mut given = file.transpose()?.unwrap_or_default();
    for spec in variant_specs {
        given.push(variant_of_flag(spec)?);
    }
    for spec in sweep_specs {
        given.extend(variants_of_sweep(spec)?);
    }
    // Names compare ignoring ASCII case: they become folder names.
    for (i, (name, _, origin)) in given.iter().enumerate() {
        let name = name.as_str();
        let same = |g: &&Given| g.0.as_str().eq_ignore_ascii_case(name);
        if let Some((_, _, first)) = given[..i].iter().find(same) {
            let (name, first) = (name.to_string(), first.clone());
            return Err(invalid(origin, Problem::Duplicate { name, first }));
        }
    }
    if given.len() > MAX_VARIANTS {
        return Err(VariantOptionError::TooMany { count: given.len() });
    }
    let variant = |(name, overrides, _): Given| Variant {
        name: name.as_str().to_string(),
        thresholds: overrides.apply(baseline),
    };
    let variants: Vec<Variant> = given.into_iter().map(variant).collect();
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

/// Sets `key` to `text` in `set`, each key at most once; the overrides `set` gives, read by
/// their serde form.
fn set_key(set: &mut Map<String, Value>, key: &str, text: &str) -> Result<Overrides, Problem> {
    let key = known_key(key)?;
    if set.insert(key.into(), Value::String(text.into())).is_some() {
        return Err(Problem::KeySetTwice { key });
    }
    // Every earlier key was read: an error is this key's value.
    let reason = |e: serde_json::Error| e.to_string();
    let overrides = Overrides::deserialize(Value::Object(set.clone())).map_err(reason);
    overrides.map_err(|reason| Problem::Value { key, reason })
}

fn known_key(key: &str) -> Result<&'static str, Problem> {
    let known = Thresholds::keys().iter().find(|k| **k == key).copied();
    known.ok_or(Problem::UnknownKey { key: key.into() })
}

fn variant_name(place: &str, name: &str) -> Result<VariantName, VariantOptionError> {
    let problem = |reason| Problem::Name {
        name: name.into(),
        reason,
    };
    VariantName::parse(name).map_err(|reason| invalid(place, problem(reason)))
}

/// `--variant NAME:KEY=VALUE[,KEY=VALUE…]`.
fn variant_of_flag(spec: &str) -> Result<Given, VariantOptionError> {
    let syntax = || invalid("--variant", Problem::VariantSyntax { spec: spec.into() });
    let (name, assignments) = spec.split_once(':').ok_or_else(syntax)?;
    let name = variant_name("--variant", name)?;
    let place = format!("--variant {}", name.as_str());
    let (mut set, mut overrides) = (Map::new(), Overrides::default());
    for assignment in assignments.split(',') {
        let (key, value) = assignment.split_once('=').ok_or_else(syntax)?;
        overrides = set_key(&mut set, key, value).map_err(|p| invalid(&place, p))?;
    }
    Ok((name, overrides, "--variant".to_string()))
}

/// `--variants FILE`: one table per variant, in file order.
fn variants_of_toml(file: &str, text: &str) -> Result<Vec<Given>, VariantOptionError> {
    let whole = format!("--variants {file}");
    let document = DeTable::parse(text).map_err(|e| {
        let before = text.get(..e.span().map_or(0, |s| s.start)).unwrap_or(text);
        let line_start = before.rfind('\n').map_or(0, |i| i + 1);
        let line = before.matches('\n').count() + 1;
        let column = before[line_start..].chars().count() + 1;
        let message = e.message().replace('\n', " ");
        invalid(
            &whole,
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
            return Err(invalid(&whole, Problem::NotATable { entry: name.into() }));
        };
        let valid = variant_name(&whole, name)?;
        let mut entries: Vec<_> = table.iter().collect();
        entries.sort_by_key(|(key, _)| key.span().start);
        let (mut set, mut overrides) = (Map::new(), Overrides::default());
        for (key, value) in entries {
            let key = key.get_ref().as_ref();
            // An unknown key is reported as such, whatever its value.
            let text = known_key(key).and_then(|known| {
                let kind = |kind| Problem::ValueKind { key: known, kind };
                toml_value_text(value.get_ref()).map_err(kind)
            });
            overrides = text
                .and_then(|text| set_key(&mut set, key, &text))
                .map_err(|problem| invalid(format!("{whole} [{name}]"), problem))?;
        }
        given.push((valid, overrides, whole.clone()));
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
    let overrides = set_key(&mut Map::new(), key, text)?;
    Ok(
        match &serde_json::to_value(overrides).unwrap_or_default()[key] {
            Value::String(decimal) => (parse_decimal_micros(decimal).unwrap_or(0) as u64, true),
            count => (count.as_u64().unwrap_or(0), false),
        },
    )
}

/// `--sweep KEY=FROM..TO/STEP`: one variant per value, ascending, named `KEY-VALUE`.
fn variants_of_sweep(spec: &str) -> Result<Vec<Given>, VariantOptionError> {
    let place = format!("--sweep {spec}");
    let problem = |problem| invalid(&place, problem);
    let syntax = || problem(Problem::SweepSyntax { spec: spec.into() });
    let (key, range) = spec.split_once('=').ok_or_else(syntax)?;
    let (bounds, step_text) = range.rsplit_once('/').ok_or_else(syntax)?;
    let (from_text, to_text) = bounds.split_once("..").ok_or_else(syntax)?;
    let key = known_key(key).map_err(problem)?;
    let (from, decimal) = units(key, from_text).map_err(problem)?;
    let (to, _) = units(key, to_text).map_err(problem)?;
    let step = match decimal {
        true => parse_decimal_micros(step_text).map(|micros| micros as u64),
        false => parse_count(step_text).ok(),
    };
    let Some(step) = step.filter(|step| *step > 0) else {
        return Err(problem(Problem::Step {
            step: step_text.into(),
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
            let value = match decimal {
                true => format_millionths(units),
                false => units.to_string(),
            };
            let overrides = set_key(&mut Map::new(), key, &value).map_err(problem)?;
            let name = variant_name(&place, &format!("{key}-{value}"))?;
            Ok((name, overrides, place.clone()))
        })
        .collect()
}

#[cfg(test)]
mod tests;
