//! `CustomerImportance.csv`: a weight for each key of the transactions, correlated with the
//! customer's activity (a few negative ones), some keys missing, some written on 2–3 rows
//! whose mean is the weight, and now and then a row for a customer who never transacts.

use std::collections::HashSet;
use std::io::{self, Write};

use crate::catalog::CATEGORIES;
use crate::format::push_importance;
use crate::options::{GenOptions, IMPORTANCE_HEADER, MERCHANTS};
use crate::population::fresh_id;
use crate::rng::{det_exp, Rng};
use crate::summary::GenSummary;
use crate::world::{Key, Merchant, World};

/// Per key decisions for the importance file.
#[derive(Clone, Copy)]
pub(crate) struct KeyImportance {
    /// Weight in millionths.
    pub(crate) weight: i64,
    pub(crate) missing: bool,
    /// 0, or the number of rows (2 or 3) the key is written on.
    pub(crate) rows: u8,
    /// Write the extra rows at the end of the file instead of next to the first.
    pub(crate) defer: bool,
}

/// The file being written: rows in key order, the deferred rows of duplicated keys, and the
/// customers who never transact.
struct Rows {
    buf: Vec<u8>,
    tail: Vec<u8>,
    rows: u64,
    ghosts: Vec<String>,
}

impl World {
    /// Decides every key's weight, plants PatId1 and writes the file. Call after
    /// [`World::write_transactions`], which finds the keys.
    pub(crate) fn write_importance(
        &mut self,
        out: &mut impl Write,
        options: &GenOptions,
        summary: &mut GenSummary,
    ) -> io::Result<()> {
        let mut rng = Rng::new(options.seed, 3);
        let rank = self.activity_ranks();
        let mut imp: Vec<KeyImportance> = Vec::with_capacity(self.keys.len());
        for key in &self.keys {
            let no_importance = self.customers[key.cust as usize].no_importance;
            imp.push(draw_key_importance(
                &mut rng,
                no_importance,
                rank[key.cust as usize],
            ));
        }

        self.plant_pat1(&mut imp, &mut rng);

        self.write_importance_rows(out, &imp, &mut rng, summary)?;
        summary.keys = self.keys.len() as u64;
        Ok(())
    }

    /// Each customer's activity rank in `[0, 1]`: active customers matter more.
    fn activity_ranks(&self) -> Vec<f64> {
        let mut order: Vec<usize> = (0..self.customers.len()).collect();
        order.sort_by(|&a, &b| {
            self.customers[a]
                .activity
                .total_cmp(&self.customers[b].activity)
                .then(a.cmp(&b))
        });
        let mut rank = vec![0.0f64; self.customers.len()];
        let denom = (self.customers.len().max(2) - 1) as f64;
        for (r, &c) in order.iter().enumerate() {
            rank[c] = r as f64 / denom;
        }
        rank
    }

    /// Writes keys in first-seen order; extra rows of duplicated keys next to the first or at
    /// the end; now and then a row for a customer who never transacts.
    fn write_importance_rows(
        &mut self,
        out: &mut impl Write,
        imp: &[KeyImportance],
        rng: &mut Rng,
        summary: &mut GenSummary,
    ) -> io::Result<()> {
        let mut rows = Rows {
            buf: Vec::with_capacity(1 << 17),
            tail: Vec::new(),
            rows: 0,
            ghosts: Vec::new(),
        };
        rows.buf.extend_from_slice(IMPORTANCE_HEADER.as_bytes());
        rows.buf.push(b'\n');
        for (key, ki) in self.keys.iter().zip(imp) {
            self.push_key_rows(&mut rows, key, ki, rng, summary);
            if rng.chance(0.003) {
                rows.push_ghost(rng, &self.merchants, &mut self.used_ids);
                summary.orphan_rows += 1;
            }
            if rows.buf.len() >= 1 << 16 {
                out.write_all(&rows.buf)?;
                rows.buf.clear();
            }
        }
        out.write_all(&rows.buf)?;
        out.write_all(&rows.tail)?;
        summary.importance_rows = rows.rows;
        Ok(())
    }

    /// The rows of one key: none (missing), one, or 2–3 around its weight.
    fn push_key_rows(
        &self,
        rows: &mut Rows,
        key: &Key,
        ki: &KeyImportance,
        rng: &mut Rng,
        summary: &mut GenSummary,
    ) {
        let cu = &self.customers[key.cust as usize];
        let m = &self.merchants[key.merchant as usize];
        let cat = CATEGORIES[key.cat as usize].name;
        if ki.missing {
            summary.missing_keys += 1;
        } else if ki.rows == 0 {
            push_importance(&mut rows.buf, &cu.id, &m.id, ki.weight, cat, key.fraud);
            rows.rows += 1;
        } else {
            summary.duplicated_keys += 1;
            let d = (1 + rng.below(150) as i64) * 10_000;
            let ws: &[i64] = if ki.rows == 2 {
                &[ki.weight - d, ki.weight + d]
            } else {
                &[ki.weight - d, ki.weight, ki.weight + d]
            };
            for (i, w) in ws.iter().enumerate() {
                let target = if i > 0 && ki.defer {
                    &mut rows.tail
                } else {
                    &mut rows.buf
                };
                push_importance(target, &cu.id, &m.id, *w, cat, key.fraud);
                rows.rows += 1;
            }
        }
    }
}

impl Rows {
    /// A row for a customer who never transacts (a new one, or one of the earlier ones).
    fn push_ghost(
        &mut self,
        rng: &mut Rng,
        merchants: &[Merchant],
        used_ids: &mut HashSet<String>,
    ) {
        if self.ghosts.is_empty() || rng.chance(0.5) {
            self.ghosts.push(fresh_id(rng, 'C', used_ids));
        }
        let ghost = &self.ghosts[rng.below(self.ghosts.len() as u64) as usize];
        let gm = &merchants[rng.below(MERCHANTS as u64) as usize];
        let level = det_exp(0.405 + 2.2 * rng.f64());
        let w = ((level * 100.0).round() as i64).max(1) * 10_000;
        let cat = CATEGORIES[gm.main as usize].name;
        push_importance(&mut self.buf, ghost, &gm.id, w, cat, false);
        self.rows += 1;
    }
}

/// One key's weight (millionths), whether it is missing, on how many rows it is written.
fn draw_key_importance(rng: &mut Rng, no_importance: bool, rank: f64) -> KeyImportance {
    let missing = no_importance || rng.chance(0.10);
    let level = det_exp(0.405 + 2.2 * rank + 0.15 * rng.normal());
    let weight = if rng.chance(0.0015) {
        -(1 + rng.below(200) as i64) * 10_000
    } else if rng.chance(0.05) {
        ((level * 1e6).round() as i64).max(1)
    } else {
        ((level * 100.0).round() as i64).max(1) * 10_000
    };
    let rows = if !missing && rng.chance(0.03) {
        if rng.chance(0.7) {
            2
        } else {
            3
        }
    } else {
        0
    };
    KeyImportance {
        weight,
        missing,
        rows,
        defer: rng.chance(0.5),
    }
}
