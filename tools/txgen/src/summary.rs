//! The public report of a run: what was written (paths, row and key counts) and what was
//! planted where, so tests and tools can check the planted behaviour in the output.

use std::path::PathBuf;

use crate::catalog::{CROSSING_RANK, MALE_SKEWED_RANKS};
use crate::world::{Kind, World};

/// A planted `(customer, merchant)` pair, ids without quotes.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct Planted {
    pub customer: String,
    pub merchant: String,
}

/// What [`generate_with_summary`](crate::generate_with_summary) wrote and planted.
#[derive(Clone, Debug, Default)]
pub struct GenSummary {
    pub transactions_path: PathBuf,
    pub importance_path: PathBuf,
    /// Transaction rows written.
    pub rows: u64,
    /// Importance rows written (duplicates and orphans included).
    pub importance_rows: u64,
    /// Customers that can appear in the transactions.
    pub customers: usize,
    /// Distinct customers that do appear.
    pub active_customers: usize,
    pub merchants: usize,
    /// Distinct `(customer, merchant, category)` keys in the transactions.
    pub keys: u64,
    /// Keys without an importance row.
    pub missing_keys: u64,
    /// Keys written on 2–3 rows.
    pub duplicated_keys: u64,
    /// Importance rows of customers that never transact.
    pub orphan_rows: u64,
    /// Customers with no importance row at all.
    pub customers_without_importance: usize,
    /// Last step written (`None` when no rows).
    pub last_step: Option<u32>,
    /// `rows / 594,643`.
    pub scale: f64,
    /// `N(m)` above which PatId1 was planted: `50,000 × min(scale, 1)`.
    pub pat1_min_transactions: u64,
    /// `100 × min(scale, 1)`: the female-customer count PatId3 was shaped for.
    pub pat3_min_female: u64,
    /// Transactions per merchant, by merchant id, most popular first.
    pub merchant_transactions: Vec<(String, u64)>,
    /// PatId1 plants (low weight, high count), final state.
    pub pat1_planted: Vec<Planted>,
    /// The PatId1 plants whose count and weight sit exactly on the percentile boundaries.
    pub pat1_boundary: Vec<Planted>,
    /// PatId2 plants that hold in the final state.
    pub pat2_planted: Vec<Planted>,
    /// PatId2 plants that hold mid-file and stop holding later.
    pub pat2_fading: Vec<Planted>,
    /// Merchants shaped for `F(m) < M(m)`.
    pub pat3_merchants: Vec<String>,
    /// Merchants where `F(m) < M(m)` early and F overtakes M late.
    pub pat3_crossing: Vec<String>,
    /// Customers seen with two genders at one merchant.
    pub dual_gender: Vec<Planted>,
}

impl World {
    /// Fills in the customer counts, the merchant totals and the plants.
    pub(crate) fn fill_summary(&self, s: &mut GenSummary) {
        let pair = |c: u32, m: u8| Planted {
            customer: self.customers[c as usize].id.clone(),
            merchant: self.merchants[m as usize].id.clone(),
        };
        let appears = self.customers_that_appear();
        s.active_customers = appears.iter().filter(|&&b| b).count();
        s.customers_without_importance = self.customers_without_importance(&appears);
        s.merchant_transactions = self
            .merchants
            .iter()
            .zip(self.merchant_rows)
            .map(|(m, n)| (m.id.clone(), n))
            .collect();
        s.pat1_planted = self.pat1.iter().map(|&(c, m, _)| pair(c, m)).collect();
        s.pat1_boundary = self
            .pat1
            .iter()
            .filter(|p| p.2)
            .map(|&(c, m, _)| pair(c, m))
            .collect();
        let children = |kind: Kind| {
            self.children
                .iter()
                .filter(|c| c.2 == kind)
                .map(|&(c, m, _)| pair(c, m))
                .collect()
        };
        s.pat2_planted = children(Kind::Child);
        s.pat2_fading = children(Kind::FadingChild);
        s.pat3_merchants = MALE_SKEWED_RANKS
            .iter()
            .map(|&r| self.merchants[r].id.clone())
            .collect();
        s.pat3_crossing = vec![self.merchants[CROSSING_RANK].id.clone()];
        s.dual_gender = self.duals.iter().map(|&(c, m)| pair(c, m)).collect();
    }

    /// Whether each customer has at least one key (one row) in the transactions.
    fn customers_that_appear(&self) -> Vec<bool> {
        let mut appears = vec![false; self.customers.len()];
        for k in &self.keys {
            appears[k.cust as usize] = true;
        }
        appears
    }

    /// Customers who appear in the transactions but have no importance row at all.
    fn customers_without_importance(&self, appears: &[bool]) -> usize {
        let mut has: Vec<bool> = self.customers.iter().map(|cu| !cu.no_importance).collect();
        // A planted PatId1 customer always has rows.
        for &(c, _, _) in &self.pat1 {
            has[c as usize] = true;
        }
        (0..self.customers.len())
            .filter(|&c| appears[c] && !has[c])
            .count()
    }
}
