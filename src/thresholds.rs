//! The pattern thresholds (SPEC §4) in one schema: [`Thresholds`] is at once the
//! `mechanism-y` options (clap), the run identity's record (serde, canonical JSON) and the
//! keys of a backtest variant ([`ThresholdOverrides`], [`variants`]). A field added here is an
//! option, an identity component and a variant key, with one parser for all three.
//!
//! The serde form is kebab-case, the option names without `--`: counts are JSON numbers,
//! fractions and amounts decimal strings (`"0.9"`, `"23"`: exact, never a binary float). A
//! fraction or an amount is read from a string or a number; a count from a number or a
//! string; each through the option's own parser, so every form accepts what the option does.

use std::fmt;

use clap::Args;
use serde::de::{self, Deserializer, Visitor};
use serde::{Deserialize, Serialize, Serializer};

use crate::decimal::{parse_decimal_micros, Micros, MICROS_PER_UNIT};

pub mod variants;

/// A count threshold (`N(m)`, `n(c,m)`, `F(m)`): any whole number from 0 to 2^64−1.
///
/// The counts it is compared with are `i64`, so a threshold of 2^63 or more is one no count
/// passes: the condition never holds (2^64−1, the largest, is a natural "off"). Compare only
/// with [`count_above`] and [`count_reaches`], which are exact; never convert it to `i64`
/// (`as i64` wraps 2^64−1 to −1, a condition every count passes).
pub type CountThreshold = u64;

/// `count > threshold`, exactly, for every count and every threshold.
pub fn count_above(count: i64, threshold: CountThreshold) -> bool {
    i128::from(count) > i128::from(threshold)
}

/// `count >= threshold`, exactly, for every count and every threshold.
pub fn count_reaches(count: i64, threshold: CountThreshold) -> bool {
    i128::from(count) >= i128::from(threshold)
}

/// A percentile parameter `p` in [0, 1], kept exactly as millionths so that the count
/// percentile can be compared without rounding.
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Fraction {
    pub millionths: u32,
}

impl Fraction {
    pub const fn from_millionths(millionths: u32) -> Fraction {
        Fraction { millionths }
    }

    pub fn as_f64(self) -> f64 {
        self.millionths as f64 / 1e6
    }

    /// Parses a decimal in [0, 1] with at most six fractional digits (`0.9`, `0.10`, `1`).
    pub fn parse(text: &str) -> Option<Fraction> {
        let micros = parse_decimal_micros(text)?;
        (0..=MICROS_PER_UNIT).contains(&micros).then_some(Fraction {
            millionths: micros as u32,
        })
    }
}

/// A non-negative amount in micro-units (PatId2's average bound).
#[derive(Clone, Copy, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Amount {
    pub micros: Micros,
}

impl Amount {
    pub const fn from_micros(micros: Micros) -> Amount {
        Amount { micros }
    }
}

/// The threshold options' parsers: clap, the serde form and the variant keys use these, so
/// a value is accepted (or refused, with the same words) wherever it is given.
///
/// A count: `u64`'s own grammar; anything else, a negative number or one past the range
/// included, is refused naming the range.
pub(crate) fn parse_count(text: &str) -> Result<CountThreshold, String> {
    text.parse::<CountThreshold>().map_err(|_| {
        format!(
            "{text:?} is not a whole number from 0 to {}",
            CountThreshold::MAX
        )
    })
}

pub(crate) fn parse_fraction(text: &str) -> Result<Fraction, String> {
    Fraction::parse(text)
        .ok_or_else(|| format!("{text:?} is not a fraction in [0, 1] with at most six decimals"))
}

pub(crate) fn parse_amount(text: &str) -> Result<Amount, String> {
    parse_decimal_micros(text)
        .map(Amount::from_micros)
        .ok_or_else(|| format!("{text:?} is not a non-negative decimal amount"))
}

/// `millionths` as a decimal without trailing zeros: 850000 → `0.85`, 20000000 → `20`.
pub(crate) fn format_millionths(millionths: u64) -> String {
    let (whole, fraction) = (millionths / 1_000_000, millionths % 1_000_000);
    if fraction == 0 {
        return whole.to_string();
    }
    let digits = format!("{fraction:06}");
    format!("{whole}.{}", digits.trim_end_matches('0'))
}

/// Pattern thresholds (SPEC §4); the defaults are the SPEC's. The counts take any whole
/// number from 0 to 18446744073709551615 (2^64−1); one that no count can reach (2^63 or
/// more) switches its condition off, exactly ([`CountThreshold`]).
#[derive(Args, Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
#[command(next_help_heading = "Thresholds")]
pub struct Thresholds {
    /// PatId1: merchants with more than this many transactions qualify (0 to 2^64−1; the
    /// largest, 18446744073709551615, switches PatId1 off).
    #[arg(long, default_value_t = 50_000, value_parser = parse_count,
          allow_negative_numbers = true, env = "TXFLOW_UPGRADE_MIN_MERCHANT_TXNS")]
    #[serde(with = "count")]
    pub upgrade_min_merchant_txns: CountThreshold,
    /// PatId1: count percentile a customer must reach.
    #[arg(long, default_value = "0.90", value_parser = parse_fraction,
          env = "TXFLOW_UPGRADE_COUNT_PERCENTILE")]
    pub upgrade_count_percentile: Fraction,
    /// PatId1: weight percentile a customer must stay at or under.
    #[arg(long, default_value = "0.10", value_parser = parse_fraction,
          env = "TXFLOW_UPGRADE_WEIGHT_PERCENTILE")]
    pub upgrade_weight_percentile: Fraction,
    /// PatId2: minimum transactions of a customer at a merchant (0 to 2^64−1; the largest,
    /// 18446744073709551615, switches PatId2 off).
    #[arg(long, default_value_t = 80, value_parser = parse_count,
          allow_negative_numbers = true, env = "TXFLOW_CHILD_MIN_TXNS")]
    #[serde(with = "count")]
    pub child_min_txns: CountThreshold,
    /// PatId2: the average amount must be strictly below this.
    #[arg(long, default_value = "23", value_parser = parse_amount,
          env = "TXFLOW_CHILD_MAX_AVG_AMOUNT")]
    pub child_max_avg_amount: Amount,
    /// PatId3: distinct female customers must be strictly more than this (0 to 2^64−1; the
    /// largest, 18446744073709551615, switches PatId3 off).
    #[arg(long, default_value_t = 100, value_parser = parse_count,
          allow_negative_numbers = true, env = "TXFLOW_DEI_MIN_FEMALE_CUSTOMERS")]
    #[serde(with = "count")]
    pub dei_min_female_customers: CountThreshold,
}

impl Default for Thresholds {
    fn default() -> Self {
        Thresholds {
            upgrade_min_merchant_txns: 50_000,
            upgrade_count_percentile: Fraction::from_millionths(900_000),
            upgrade_weight_percentile: Fraction::from_millionths(100_000),
            child_min_txns: 80,
            child_max_avg_amount: Amount::from_micros(23 * MICROS_PER_UNIT),
            dei_min_female_customers: 100,
        }
    }
}

impl Thresholds {
    /// The canonical serde JSON (fields in declaration order, no spaces): the run identity's
    /// record of the thresholds, and what the status and report show.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }

    /// The thresholds of a canonical (or any serde) JSON record.
    pub(crate) fn from_json(text: &str) -> Option<Thresholds> {
        serde_json::from_str(text).ok()
    }

    /// Each threshold as its option takes it, `(key, value)` in [`Thresholds::keys`] order:
    /// the serde form's text (a count in decimal, a fraction or an amount without trailing
    /// zeros), which the option's parser reads back to the same value.
    pub fn option_values(&self) -> Vec<(&'static str, String)> {
        let value = serde_json::to_value(self).unwrap_or_default();
        let text = |v: &serde_json::Value| match v {
            serde_json::Value::String(text) => text.clone(),
            other => other.to_string(),
        };
        Thresholds::keys()
            .iter()
            .map(|key| (*key, text(&value[*key])))
            .collect()
    }

    /// The options that give a run these thresholds: `--KEY VALUE` for every threshold.
    pub fn to_options(&self) -> String {
        let options = self.option_values().into_iter();
        let options: Vec<String> = options.map(|(k, v)| format!("--{k} {v}")).collect();
        options.join(" ")
    }

    /// The threshold keys (the option names without `--`), in declaration order.
    pub fn keys() -> &'static [&'static str] {
        let mut fields: &'static [&'static str] = &[];
        // Only the field list is wanted: the deserializer stops right after recording it.
        let _ = Thresholds::deserialize(FieldNames(&mut fields));
        fields
    }
}

/// A backtest variant: a name and a full set of thresholds. A replay computes the
/// run's own thresholds (the baseline) and every variant in one pass.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Variant {
    /// Names its ledger and `<output>/variants/<name>/`: a valid [`VariantName`].
    pub name: String,
    pub thresholds: Thresholds,
}

/// The longest variant name (it names a folder and a ledger).
pub(crate) const MAX_NAME_LEN: usize = 64;
/// The name the run's own thresholds go by in the ledgers and the report.
pub(crate) const RESERVED_NAME: &str = "baseline";

/// A variant name: `[A-Za-z0-9._-]{1,64}`, not starting with `.` (it names the folder
/// `<output>/variants/<name>/`: no hidden folder, no `..`), and not `baseline` in any case
/// (reserved for the run's own thresholds; any case, for case-insensitive file systems).
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub(crate) struct VariantName(String);

impl VariantName {
    pub(crate) fn parse(name: &str) -> Result<VariantName, &'static str> {
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

    pub(crate) fn as_str(&self) -> &str {
        &self.0
    }
}

/// Each threshold, optional: a backtest variant's changes to the baseline.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case", deny_unknown_fields)]
pub(crate) struct ThresholdOverrides {
    #[serde(default, with = "some_count", skip_serializing_if = "Option::is_none")]
    pub upgrade_min_merchant_txns: Option<CountThreshold>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_count_percentile: Option<Fraction>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub upgrade_weight_percentile: Option<Fraction>,
    #[serde(default, with = "some_count", skip_serializing_if = "Option::is_none")]
    pub child_min_txns: Option<CountThreshold>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub child_max_avg_amount: Option<Amount>,
    #[serde(default, with = "some_count", skip_serializing_if = "Option::is_none")]
    pub dei_min_female_customers: Option<CountThreshold>,
}

impl ThresholdOverrides {
    /// `baseline` with the thresholds these set.
    pub(crate) fn apply(&self, baseline: &Thresholds) -> Thresholds {
        let b = baseline;
        Thresholds {
            upgrade_min_merchant_txns: self
                .upgrade_min_merchant_txns
                .unwrap_or(b.upgrade_min_merchant_txns),
            upgrade_count_percentile: self
                .upgrade_count_percentile
                .unwrap_or(b.upgrade_count_percentile),
            upgrade_weight_percentile: self
                .upgrade_weight_percentile
                .unwrap_or(b.upgrade_weight_percentile),
            child_min_txns: self.child_min_txns.unwrap_or(b.child_min_txns),
            child_max_avg_amount: self.child_max_avg_amount.unwrap_or(b.child_max_avg_amount),
            dei_min_female_customers: self
                .dei_min_female_customers
                .unwrap_or(b.dei_min_female_customers),
        }
    }
}

// --- the serde forms ----------------------------------------------------------------------

impl Serialize for Fraction {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&format_millionths(u64::from(self.millionths)))
    }
}

impl Serialize for Amount {
    fn serialize<S: Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        let text = format_millionths(self.micros.unsigned_abs());
        if self.micros < 0 {
            s.serialize_str(&format!("-{text}"))
        } else {
            s.serialize_str(&text)
        }
    }
}

impl<'de> Deserialize<'de> for Fraction {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_fraction(&d.deserialize_any(ValueText)?).map_err(de::Error::custom)
    }
}

impl<'de> Deserialize<'de> for Amount {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        parse_amount(&d.deserialize_any(ValueText)?).map_err(de::Error::custom)
    }
}

/// A count: written as a number, read from a number or a string.
mod count {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &CountThreshold,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        s.serialize_u64(*value)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<CountThreshold, D::Error> {
        parse_count(&d.deserialize_any(ValueText)?).map_err(de::Error::custom)
    }
}

/// An optional count (absent when not set).
mod some_count {
    use super::*;

    pub(crate) fn serialize<S: Serializer>(
        value: &Option<CountThreshold>,
        s: S,
    ) -> Result<S::Ok, S::Error> {
        match value {
            Some(value) => s.serialize_u64(*value),
            None => s.serialize_none(),
        }
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(
        d: D,
    ) -> Result<Option<CountThreshold>, D::Error> {
        super::count::deserialize(d).map(Some)
    }
}

/// A scalar value as the text its option would be given: strings as they are, numbers in
/// decimal (a float in its shortest exact form, `0.85` as `0.85`).
struct ValueText;

impl Visitor<'_> for ValueText {
    type Value = String;

    fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("a number or a string")
    }

    fn visit_str<E: de::Error>(self, v: &str) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_u64<E: de::Error>(self, v: u64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_i64<E: de::Error>(self, v: i64) -> Result<String, E> {
        Ok(v.to_string())
    }

    fn visit_f64<E: de::Error>(self, v: f64) -> Result<String, E> {
        Ok(v.to_string())
    }
}

/// A deserializer that records a struct's field names and reads nothing.
struct FieldNames<'a>(&'a mut &'static [&'static str]);

impl<'de> Deserializer<'de> for FieldNames<'_> {
    type Error = de::value::Error;

    fn deserialize_any<V: Visitor<'de>>(self, _: V) -> Result<V::Value, Self::Error> {
        Err(de::Error::custom("only a struct's field names are read"))
    }

    fn deserialize_struct<V: Visitor<'de>>(
        self,
        _: &'static str,
        fields: &'static [&'static str],
        visitor: V,
    ) -> Result<V::Value, Self::Error> {
        *self.0 = fields;
        self.deserialize_any(visitor)
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map enum identifier
        ignored_any
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use clap::Parser;

    #[derive(Parser)]
    struct Cli {
        #[command(flatten)]
        thresholds: Thresholds,
    }

    fn parse(args: &[&str]) -> Result<Thresholds, String> {
        Cli::try_parse_from([&["x"], args].concat())
            .map(|c| c.thresholds)
            .map_err(|e| e.to_string())
    }

    #[test]
    fn the_options_default_to_the_spec() {
        assert_eq!(parse(&[]).unwrap(), Thresholds::default());
        let t = parse(&["--child-max-avg-amount", "20.5", "--child-min-txns", "7"]).unwrap();
        assert_eq!(t.child_max_avg_amount, Amount::from_micros(20_500_000));
        assert_eq!(t.child_min_txns, 7);
    }

    #[test]
    fn keys_are_the_option_names_in_order() {
        let keys = Thresholds::keys();
        assert_eq!(
            keys,
            [
                "upgrade-min-merchant-txns",
                "upgrade-count-percentile",
                "upgrade-weight-percentile",
                "child-min-txns",
                "child-max-avg-amount",
                "dei-min-female-customers"
            ]
        );
        let command = <Cli as clap::CommandFactory>::command();
        let longs: Vec<&str> = command
            .get_arguments()
            .filter_map(|a| a.get_long())
            .collect();
        assert_eq!(longs, keys);
    }

    #[test]
    fn the_json_is_canonical_and_reads_back() {
        let json = Thresholds::default().to_json();
        assert_eq!(
            json,
            "{\"upgrade-min-merchant-txns\":50000,\"upgrade-count-percentile\":\"0.9\",\
             \"upgrade-weight-percentile\":\"0.1\",\"child-min-txns\":80,\
             \"child-max-avg-amount\":\"23\",\"dei-min-female-customers\":100}"
        );
        assert_eq!(Thresholds::from_json(&json), Some(Thresholds::default()));
        let most = Thresholds {
            child_min_txns: u64::MAX,
            upgrade_weight_percentile: Fraction::from_millionths(1),
            child_max_avg_amount: Amount::from_micros(999_999_999_999_999_999),
            ..Thresholds::default()
        };
        assert_eq!(Thresholds::from_json(&most.to_json()), Some(most));
    }

    #[test]
    fn values_are_read_from_numbers_or_strings_through_the_options_parsers() {
        let read = |json: &str| serde_json::from_str::<ThresholdOverrides>(json);
        let got = read(
            r#"{"child-min-txns":"18446744073709551615","upgrade-count-percentile":0.85,
                "child-max-avg-amount":20,"dei-min-female-customers":3}"#,
        )
        .unwrap();
        assert_eq!(got.child_min_txns, Some(u64::MAX));
        assert_eq!(
            got.upgrade_count_percentile,
            Some(Fraction::from_millionths(850_000))
        );
        assert_eq!(
            got.child_max_avg_amount,
            Some(Amount::from_micros(20_000_000))
        );
        assert_eq!(got.dei_min_female_customers, Some(3));
        assert_eq!(got.upgrade_weight_percentile, None);
        for (json, message) in [
            (r#"{"child-min-txns":-1}"#, "\"-1\" is not a whole number"),
            (r#"{"child-min-txns":1.5}"#, "\"1.5\" is not a whole number"),
            (
                r#"{"upgrade-count-percentile":"1.5"}"#,
                "not a fraction in [0, 1]",
            ),
            (
                r#"{"upgrade-count-percentile":1e-7}"#,
                "\"0.0000001\" is not a fraction",
            ),
            (
                r#"{"child-max-avg-amount":"-1"}"#,
                "not a non-negative decimal amount",
            ),
            (
                r#"{"child-min-txns":true}"#,
                "expected a number or a string",
            ),
            (r#"{"child-min-txn":1}"#, "unknown field `child-min-txn`"),
        ] {
            let error = read(json).unwrap_err().to_string();
            assert!(error.contains(message), "{json}: {error}");
        }
    }

    #[test]
    fn overrides_change_only_what_they_set() {
        let base = Thresholds::default();
        assert_eq!(ThresholdOverrides::default().apply(&base), base);
        let strict = ThresholdOverrides {
            child_min_txns: Some(100),
            upgrade_weight_percentile: Some(Fraction::from_millionths(5)),
            ..ThresholdOverrides::default()
        };
        let got = strict.apply(&base);
        assert_eq!(got.child_min_txns, 100);
        assert_eq!(got.upgrade_weight_percentile.millionths, 5);
        assert_eq!(got.upgrade_count_percentile, base.upgrade_count_percentile);
        assert_eq!(
            serde_json::to_string(&strict).unwrap(),
            r#"{"upgrade-weight-percentile":"0.000005","child-min-txns":100}"#
        );
    }

    /// The text earlier versions recorded as the run identity's thresholds (their decimals
    /// as `f64` prints them).
    fn legacy_text(t: &Thresholds) -> String {
        format!(
            "PatId1 N>{} n>=p{} W<=p{}; PatId2 n>={} avg<{}; PatId3 F>{}",
            t.upgrade_min_merchant_txns,
            t.upgrade_count_percentile.as_f64(),
            t.upgrade_weight_percentile.as_f64(),
            t.child_min_txns,
            t.child_max_avg_amount.micros as f64 / 1e6,
            t.dei_min_female_customers
        )
    }

    /// Stores of earlier versions hold the legacy text; the schema's migration 5 rewrites it
    /// into exactly the canonical JSON, so a resumed run compares equal.
    #[test]
    fn the_migration_turns_the_legacy_text_into_the_canonical_json() {
        // The text of the previous build's defaults, as it recorded them.
        assert_eq!(
            legacy_text(&Thresholds::default()),
            "PatId1 N>50000 n>=p0.9 W<=p0.1; PatId2 n>=80 avg<23; PatId3 F>100"
        );
        let conn = rusqlite::Connection::open_in_memory().unwrap();
        conn.execute_batch(
            "CREATE TABLE run_meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
             CREATE TABLE variants (position BIGINT, name TEXT, thresholds TEXT);",
        )
        .unwrap();
        let sets = [
            Thresholds::default(),
            Thresholds {
                upgrade_min_merchant_txns: u64::MAX,
                upgrade_count_percentile: Fraction::from_millionths(0),
                upgrade_weight_percentile: Fraction::from_millionths(1),
                child_min_txns: 0,
                child_max_avg_amount: Amount::from_micros(20_250_000),
                dei_min_female_customers: 1 << 63,
            },
            Thresholds {
                upgrade_count_percentile: Fraction::from_millionths(1_000_000),
                upgrade_weight_percentile: Fraction::from_millionths(123_456),
                child_max_avg_amount: Amount::from_micros(999_999_999_000_001),
                ..Thresholds::default()
            },
        ];
        for (i, t) in sets.iter().enumerate() {
            conn.execute(
                "INSERT INTO variants VALUES (?1, 'v', ?2)",
                rusqlite::params![i as i64, legacy_text(t)],
            )
            .unwrap();
        }
        conn.execute(
            "INSERT INTO run_meta VALUES ('run.thresholds', ?1), ('run', ?1)",
            [legacy_text(&sets[1])],
        )
        .unwrap();
        conn.execute_batch(include_str!("../sql/005_thresholds_json.sql"))
            .unwrap();
        let meta = |key: &str| -> String {
            conn.query_row("SELECT value FROM run_meta WHERE key = ?1", [key], |r| {
                r.get(0)
            })
            .unwrap()
        };
        assert_eq!(meta("run.thresholds"), sets[1].to_json());
        // Only the thresholds' record is converted.
        assert_eq!(meta("run"), legacy_text(&sets[1]));
        let mut st = conn
            .prepare("SELECT thresholds FROM variants ORDER BY position")
            .unwrap();
        let migrated: Vec<String> = st
            .query_map([], |r| r.get(0))
            .unwrap()
            .collect::<Result<_, _>>()
            .unwrap();
        let expected: Vec<String> = sets.iter().map(Thresholds::to_json).collect();
        assert_eq!(migrated, expected);
        assert!(migrated
            .iter()
            .zip(&sets)
            .all(|(json, t)| Thresholds::from_json(json) == Some(*t)));
    }

    #[test]
    fn options_read_back_to_the_same_thresholds() {
        let t = Thresholds {
            upgrade_min_merchant_txns: u64::MAX,
            upgrade_count_percentile: Fraction::from_millionths(850_000),
            child_max_avg_amount: Amount::from_micros(20_250_000),
            dei_min_female_customers: 0,
            ..Thresholds::default()
        };
        let options = t.to_options();
        assert!(options.starts_with("--upgrade-min-merchant-txns 18446744073709551615 "));
        assert!(options.contains(" --child-max-avg-amount 20.25 "));
        let args = std::iter::once("prog").chain(options.split(' '));
        #[derive(clap::Parser)]
        struct Cli {
            #[command(flatten)]
            thresholds: Thresholds,
        }
        let parsed = <Cli as clap::Parser>::try_parse_from(args).unwrap();
        assert_eq!(parsed.thresholds, t);
        let keys: Vec<&str> = t.option_values().iter().map(|(k, _)| *k).collect();
        assert_eq!(keys, Thresholds::keys());
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
            assert_eq!(parse_decimal_micros(text), Some(units as i64));
        }
    }
}
