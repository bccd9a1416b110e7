//! Promoting a backtest variant: from a state store, the threshold options that make a
//! recorded variant the baseline of the next run, and a `--variants` file that keeps the
//! current baseline beside it as the shadow variant [`PREVIOUS_BASELINE`].

use crate::error::{Context, Error, Result};
use crate::sinks::state::StateReader;
use crate::thresholds::Thresholds;

/// The name the current baseline goes by in the `--variants` file of a promotion.
pub const PREVIOUS_BASELINE: &str = "previous-baseline";

/// A variant promoted to the baseline.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Promotion {
    pub variant: String,
    /// The variant's thresholds: the next run's baseline.
    pub thresholds: Thresholds,
    /// The current baseline's thresholds: the next run's `previous-baseline` variant.
    pub previous: Thresholds,
}

impl Promotion {
    /// The promotion of the variant `name` recorded in `store`. A name the store does not
    /// record is a configuration error naming the ones it does.
    pub fn from_store(store: &mut dyn StateReader, name: &str) -> Result<Promotion> {
        let variants = store.variants().context("reading the variants")?;
        let Some(variant) = variants.iter().find(|v| v.name == name) else {
            let known: Vec<&str> = variants.iter().map(|v| v.name.as_str()).collect();
            let known = match known.is_empty() {
                true => "it has none".to_string(),
                false => format!("its variants: {}", known.join(", ")),
            };
            return Err(Error::configuration(format!(
                "--promote {name}: the store records no such variant ({known})"
            )));
        };
        let unreadable = |whose: &str| {
            Error::configuration(format!(
                "--promote {name}: the store's record of {whose} thresholds is not one this \
                 version reads"
            ))
        };
        let thresholds = Thresholds::from_json(&variant.thresholds)
            .ok_or_else(|| unreadable("the variant's"))?;
        let meta = store.run_meta().context("reading the run identity")?;
        let previous = meta
            .get("run.thresholds")
            .and_then(|t| Thresholds::from_json(t))
            .ok_or_else(|| unreadable("the baseline's"))?;
        Ok(Promotion {
            variant: name.to_string(),
            thresholds,
            previous,
        })
    }

    /// What `txflow-report --promote` prints: the options on the first line, then the
    /// `--variants` file (a valid TOML document, comments included).
    pub fn render(&self) -> String {
        format!(
            "{}\n\n# --variants file: the current baseline as a shadow variant, with the \
             options above making {:?} the baseline\n{}",
            self.thresholds.to_options(),
            self.variant,
            variants_toml(PREVIOUS_BASELINE, &self.previous)
        )
    }
}

/// One `--variants` table: `[name]` and every threshold, counts as TOML integers (those past
/// TOML's 64-bit signed range as strings), decimals as strings (exact, never a binary float).
fn variants_toml(name: &str, thresholds: &Thresholds) -> String {
    // A bare key with a dot would be a dotted key: such a name is quoted.
    let header = match name.contains('.') {
        true => format!("[\"{name}\"]"),
        false => format!("[{name}]"),
    };
    let mut text = header + "\n";
    let numbers = serde_json::to_value(thresholds).unwrap_or_default();
    for (key, value) in thresholds.option_values() {
        let integer = numbers[key].as_u64().filter(|n| i64::try_from(*n).is_ok());
        match integer {
            Some(_) => text.push_str(&format!("{key} = {value}\n")),
            None => text.push_str(&format!("{key} = \"{value}\"\n")),
        }
    }
    text
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::thresholds::variants;
    use crate::thresholds::{Amount, Fraction};

    #[test]
    fn the_variants_table_reads_back_to_the_thresholds() {
        let baseline = Thresholds::default();
        for previous in [
            Thresholds {
                upgrade_min_merchant_txns: u64::MAX,
                upgrade_count_percentile: Fraction::from_millionths(850_000),
                child_max_avg_amount: Amount::from_micros(20_250_000),
                child_min_txns: 0,
                ..baseline
            },
            baseline,
        ] {
            for name in [PREVIOUS_BASELINE, "child-max-avg-amount-0.1"] {
                let text = variants_toml(name, &previous);
                let read = variants::resolve(&baseline, Some(("f", &text)), &[], &[]).unwrap();
                assert_eq!(read.variants.len(), 1, "{text}");
                assert_eq!(read.variants[0].name, name, "{text}");
                assert_eq!(read.variants[0].thresholds, previous, "{text}");
            }
        }
        let t = Thresholds {
            child_min_txns: 7,
            ..baseline
        };
        assert!(variants_toml("p", &t).contains("\nchild-min-txns = 7\n"));
        assert!(variants_toml("p", &t).contains("\nchild-max-avg-amount = \"23\"\n"));
    }
}
