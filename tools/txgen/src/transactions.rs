//! `transactions.csv`: day by day, customers drawn by activity, each row at one of the
//! customer's habits with an amount drawn for its category; every row is counted into the
//! merchant's total and its `(customer, merchant, category)` key.

use std::io::{self, Write};

use crate::catalog::{CATEGORIES, CHILD_FADE_STEP, SECONDARY_P};
use crate::format::push_transaction;
use crate::options::{GenOptions, STEPS, TRANSACTIONS_HEADER};
use crate::rng::{Alias, Rng};
use crate::summary::GenSummary;
use crate::world::{Customer, Entry, Key, Kind, World, NO_KEY};

/// Customers drawn at a time: their data is touched first, so cache misses overlap.
const BATCH: usize = 32;

/// Hot per-customer data in flat arrays (the row loop is bound by cache misses).
struct Hot {
    entries: u32,
    len: u32,
    prefix: u32,
    alt: u32,
    prefix_len: u32,
    spend: f64,
}

/// [`Hot`] for every customer, and all customer parts of the rows in one buffer.
struct HotCustomers {
    hot: Vec<Hot>,
    prefixes: Vec<u8>,
}

impl HotCustomers {
    fn new(customers: &[Customer]) -> Self {
        let mut prefixes: Vec<u8> = Vec::new();
        let hot: Vec<Hot> = customers
            .iter()
            .map(|c| {
                let prefix = prefixes.len() as u32;
                prefixes.extend_from_slice(&c.prefix);
                let alt = if c.alt_prefix.is_empty() {
                    prefix
                } else {
                    let alt = prefixes.len() as u32;
                    prefixes.extend_from_slice(&c.alt_prefix);
                    alt
                };
                Hot {
                    entries: c.entries.start as u32,
                    len: c.entries.len() as u32,
                    prefix,
                    alt,
                    prefix_len: c.prefix.len() as u32,
                    spend: c.spend,
                }
            })
            .collect();
        HotCustomers { hot, prefixes }
    }
}

impl World {
    /// Writes the header and `options.rows` rows, and finds the keys with their counts.
    pub(crate) fn write_transactions(
        &mut self,
        out: &mut impl Write,
        options: &GenOptions,
        summary: &mut GenSummary,
    ) -> io::Result<()> {
        let mut rng = Rng::new(options.seed, 2);
        let activities: Vec<f64> = self.customers.iter().map(|c| c.activity).collect();
        let alias = Alias::new(&activities);
        let hot = HotCustomers::new(&self.customers);

        let mut buf: Vec<u8> = Vec::with_capacity(1 << 17);
        buf.extend_from_slice(TRANSACTIONS_HEADER.as_bytes());
        buf.push(b'\n');

        let mut batch = [0u32; BATCH];
        let mut row = 0u64;
        for step in 0..STEPS {
            let end = step_boundary(options.rows, step + 1);
            if row < end {
                summary.last_step = Some(step);
            }
            while row < end {
                let nb = BATCH.min((end - row) as usize);
                self.draw_batch(&mut rng, &alias, &hot, &mut batch[..nb]);
                row += nb as u64;
                for &c in &batch[..nb] {
                    self.write_row(&mut rng, &hot, c, step, &mut buf);
                }
                if buf.len() >= 1 << 16 {
                    out.write_all(&buf)?;
                    buf.clear();
                }
            }
        }
        self.move_counts_into_keys();
        out.write_all(&buf)?;
        summary.rows = row;
        Ok(())
    }

    /// Draws a batch of customers and touches their data first, so that the cache misses of
    /// the batch overlap instead of queueing one after the other.
    fn draw_batch(&self, rng: &mut Rng, alias: &Alias, hot: &HotCustomers, batch: &mut [u32]) {
        let mut touch = 0u64;
        for slot in batch {
            let c = alias.sample(rng);
            *slot = c as u32;
            let h = &hot.hot[c];
            touch ^= self.entries[h.entries as usize].n as u64;
            touch ^= hot.prefixes[h.prefix as usize] as u64;
        }
        std::hint::black_box(touch);
    }

    /// Draws one row of customer `c` on day `step`, writes it to `buf` and counts it.
    fn write_row(
        &mut self,
        rng: &mut Rng,
        hot: &HotCustomers,
        c: u32,
        step: u32,
        buf: &mut Vec<u8>,
    ) {
        let h = &hot.hot[c as usize];
        let first = h.entries as usize;
        let entries = &self.entries[first..first + h.len as usize];
        let ei = pick_entry(entries, rng.f64(), step as u16);
        let e = &entries[ei];
        let m = &self.merchants[e.merchant as usize];
        let (cat, secondary) = match m.secondary {
            Some(s) if rng.chance(SECONDARY_P) => (s, true),
            _ => (m.main, false),
        };
        let (cents, fraud) = draw_amount(rng, e.kind, cat, step, h.spend);

        let p = if step as u16 >= e.flip_from {
            h.alt
        } else {
            h.prefix
        } as usize;
        let customer = &hot.prefixes[p..p + h.prefix_len as usize];
        let merchant = if secondary {
            &m.part_secondary
        } else {
            &m.part_main
        };
        push_transaction(buf, step, customer, merchant, cents, fraud);
        self.count_row(c, first + ei, cat, secondary, fraud);
    }

    /// Counts a row of customer `c` at entry `gi` into its merchant and key; the first row of
    /// a key creates it.
    fn count_row(&mut self, c: u32, gi: usize, cat: u8, secondary: bool, fraud: bool) {
        let merchant = self.entries[gi].merchant;
        self.merchant_rows[merchant as usize] += 1;
        let e = &mut self.entries[gi];
        let fresh = if secondary {
            e.n2 += 1;
            e.fraud2 |= fraud;
            e.key2 == NO_KEY
        } else {
            e.n += 1;
            e.fraud |= fraud;
            e.key == NO_KEY
        };
        if fresh {
            let k = self.keys.len() as u32;
            if secondary {
                e.key2 = k;
            } else {
                e.key = k;
            }
            self.keys.push(Key {
                cust: c,
                merchant,
                cat,
                fraud: false,
                n: 0,
            });
        }
    }

    /// Moves the counts and fraud flags kept in the entries into their keys.
    fn move_counts_into_keys(&mut self) {
        for e in &self.entries {
            if e.key != NO_KEY {
                let k = &mut self.keys[e.key as usize];
                k.n = e.n;
                k.fraud = e.fraud;
            }
            if e.key2 != NO_KEY {
                let k = &mut self.keys[e.key2 as usize];
                k.n = e.n2;
                k.fraud = e.fraud2;
            }
        }
    }
}

/// The customer's entry that `u` (uniform in `[0, 1)`) falls in; an entry the customer does
/// not use yet on `step` falls back to the first one (a big merchant).
fn pick_entry(entries: &[Entry], u: f64, step: u16) -> usize {
    let mut ei = entries.len() - 1;
    for (i, e) in entries.iter().enumerate() {
        if u < e.cum {
            ei = i;
            break;
        }
    }
    if step < entries[ei].start_step {
        ei = 0;
    }
    ei
}

/// Amount in cents and fraud flag of a purchase of `kind` in category `cat` on day `step`
/// by a customer with spending factor `spend`.
fn draw_amount(rng: &mut Rng, kind: Kind, cat: u8, step: u32, spend: f64) -> (i64, bool) {
    let category = &CATEGORIES[cat as usize];
    let (mean, sigma, fraud) = match kind {
        Kind::Child => (9.0, 0.5, false),
        Kind::FadingChild if step < CHILD_FADE_STEP => (9.0, 0.5, false),
        Kind::FadingChild => (95.0, 0.4, false),
        Kind::Normal => {
            let fraud = category.fraud > 0.0 && rng.chance(category.fraud);
            let mean = category.mean * spend * if fraud { 3.0 } else { 1.0 };
            (mean, category.sigma, fraud)
        }
    };
    let cents = ((rng.lognormal(mean, sigma) * 100.0).round() as i64).max(1);
    (cents, fraud)
}

/// Number of rows before day `step`: daily volume grows linearly by half over the file.
fn step_boundary(rows: u64, step: u32) -> u64 {
    if step >= STEPS {
        return rows;
    }
    let t = step as f64 / STEPS as f64;
    let frac = (t + 0.25 * t * t) / 1.25;
    ((rows as f64 * frac).floor() as u64).min(rows)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn days_cover_all_rows_with_growing_volume() {
        let rows = 594_643;
        assert_eq!(step_boundary(rows, 0), 0);
        assert_eq!(step_boundary(rows, STEPS), rows);
        assert_eq!(step_boundary(rows, STEPS + 5), rows);
        let daily: Vec<u64> = (0..STEPS)
            .map(|s| step_boundary(rows, s + 1) - step_boundary(rows, s))
            .collect();
        assert_eq!(daily.iter().sum::<u64>(), rows);
        // Volume grows by half over the file: (1 + 0.5 t) / 1.25 of the average day.
        let average = rows as f64 / STEPS as f64;
        assert!(
            (daily[0] as f64 / average - 0.8).abs() < 0.01,
            "{}",
            daily[0]
        );
        let last = daily[STEPS as usize - 1] as f64 / average;
        assert!((last - 1.2).abs() < 0.01, "{last}");
        assert!(daily.windows(30).all(|w| w[0] <= w[29]));
    }

    #[test]
    fn tiny_files_have_non_decreasing_boundaries() {
        for rows in [0u64, 1, 7] {
            assert_eq!(step_boundary(rows, STEPS), rows);
            assert!((0..STEPS).all(|s| step_boundary(rows, s) <= step_boundary(rows, s + 1)));
        }
    }

    fn entry(cum: f64, start_step: u16) -> Entry {
        Entry::new(0, cum, start_step, Kind::Normal)
    }

    #[test]
    fn picks_the_entry_the_draw_falls_in() {
        let entries = [entry(0.5, 0), entry(0.8, 0), entry(1.0, 60)];
        assert_eq!(pick_entry(&entries, 0.0, 0), 0);
        assert_eq!(pick_entry(&entries, 0.49, 0), 0);
        assert_eq!(pick_entry(&entries, 0.5, 0), 1);
        assert_eq!(pick_entry(&entries, 0.9, 60), 2);
        // Not started yet: the first entry instead.
        assert_eq!(pick_entry(&entries, 0.9, 59), 0);
    }
}
