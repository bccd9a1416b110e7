//! The world the rows are drawn from — merchants, customers, each customer's habits (which
//! merchants, how often, from when) and the `(customer, merchant, category)` keys met so far —
//! and its assembly: population first, then the planted behaviours that reshape habits.

use std::collections::HashSet;
use std::ops::Range;

use crate::catalog::{BASE_CUSTOMERS, PAT1_MIN_TRANSACTIONS};
use crate::options::{GenOptions, DEFAULT_ROWS, MERCHANTS};
use crate::population;
use crate::rng::Rng;

pub(crate) struct Merchant {
    pub(crate) id: String,
    pub(crate) main: u8,
    pub(crate) secondary: Option<u8>,
    /// `'Mxxx','28007','es_cat',` for the main and the secondary category.
    pub(crate) part_main: Vec<u8>,
    pub(crate) part_secondary: Vec<u8>,
}

/// What a customer's purchases at one merchant look like.
#[derive(Clone, Copy, PartialEq, Eq)]
pub(crate) enum Kind {
    Normal,
    /// Small amounts all along (PatId2).
    Child,
    /// Small amounts until [`crate::catalog::CHILD_FADE_STEP`], large ones afterwards
    /// (PatId2, fading).
    FadingChild,
}

/// One merchant in a customer's habits.
#[derive(Clone)]
pub(crate) struct Entry {
    pub(crate) merchant: u8,
    /// Cumulative probability (the last entry of a customer is 1).
    pub(crate) cum: f64,
    /// The customer does not use this merchant before this step.
    pub(crate) start_step: u16,
    /// From this step on, rows at this merchant carry the customer's alternative gender.
    pub(crate) flip_from: u16,
    pub(crate) kind: Kind,
    /// Whether a row of the main / secondary key was fraudulent.
    pub(crate) fraud: bool,
    pub(crate) fraud2: bool,
    /// Index into `World::keys` of the key with the main / secondary category.
    pub(crate) key: u32,
    pub(crate) key2: u32,
    /// Rows of the main / secondary key (kept here, not in `keys`, for cache locality).
    pub(crate) n: u32,
    pub(crate) n2: u32,
}

impl Entry {
    /// A habit with no rows yet.
    pub(crate) fn new(merchant: u8, cum: f64, start_step: u16, kind: Kind) -> Self {
        Entry {
            merchant,
            cum,
            start_step,
            flip_from: NEVER,
            kind,
            fraud: false,
            fraud2: false,
            key: NO_KEY,
            key2: NO_KEY,
            n: 0,
            n2: 0,
        }
    }
}

/// Each entry's own probability (the differences of the cumulative ones).
pub(crate) fn entry_probabilities(entries: &[Entry]) -> Vec<f64> {
    let mut prev = 0.0;
    entries
        .iter()
        .map(|e| {
            let p = e.cum - prev;
            prev = e.cum;
            p
        })
        .collect()
}

pub(crate) struct Customer {
    pub(crate) id: String,
    pub(crate) gender: u8,
    pub(crate) activity: f64,
    /// Personal spending factor on normal purchases.
    pub(crate) spend: f64,
    /// `'Cxxx','a','g','28007',` and the same with the alternative gender.
    pub(crate) prefix: Vec<u8>,
    pub(crate) alt_prefix: Vec<u8>,
    /// The customer's habits in `World::entries`.
    pub(crate) entries: Range<usize>,
    pub(crate) no_importance: bool,
    pub(crate) planted: bool,
}

/// One `(customer, merchant, category)` key of the transactions.
pub(crate) struct Key {
    pub(crate) cust: u32,
    pub(crate) merchant: u8,
    pub(crate) cat: u8,
    pub(crate) fraud: bool,
    pub(crate) n: u32,
}

pub(crate) const NO_KEY: u32 = u32::MAX;
pub(crate) const NEVER: u16 = u16::MAX;

pub(crate) struct World {
    pub(crate) scale: f64,
    pub(crate) pat1_min_transactions: u64,
    pub(crate) merchants: Vec<Merchant>,
    pub(crate) customers: Vec<Customer>,
    pub(crate) entries: Vec<Entry>,
    pub(crate) keys: Vec<Key>,
    pub(crate) merchant_rows: [u64; MERCHANTS],
    pub(crate) used_ids: HashSet<String>,
    /// PatId2 plants: customer, merchant rank, kind.
    pub(crate) children: Vec<(u32, u8, Kind)>,
    /// Dual-gender plants: customer, merchant rank.
    pub(crate) duals: Vec<(u32, u8)>,
    /// PatId1 plants: customer, merchant rank, on the percentile boundaries.
    pub(crate) pat1: Vec<(u32, u8, bool)>,
}

impl World {
    /// The merchants and customers of `options`, with PatId2, PatId3 and the dual-gender
    /// customers planted in their habits (PatId1 is planted in the weights, later).
    pub(crate) fn build(options: &GenOptions) -> World {
        let scale = options.rows as f64 / DEFAULT_ROWS as f64;
        let mut rng = Rng::new(options.seed, 1);
        let mut used_ids = HashSet::new();
        let merchants = population::merchants(&mut rng, &mut used_ids);
        let n_customers = ((BASE_CUSTOMERS * scale).round() as usize).max(8);
        let (customers, entries) = population::customers(&mut rng, &mut used_ids, n_customers);

        let mut world = World {
            scale,
            pat1_min_transactions: (PAT1_MIN_TRANSACTIONS * scale.min(1.0)).round() as u64,
            merchants,
            customers,
            entries,
            keys: Vec::new(),
            merchant_rows: [0; MERCHANTS],
            used_ids,
            children: Vec::new(),
            duals: Vec::new(),
            pat1: Vec::new(),
        };
        world.plant_children(&mut rng);
        world.plant_dual_gender(&mut rng);
        for c in &mut world.customers {
            c.no_importance = !c.planted && rng.chance(0.015);
        }
        world
    }

    /// Customers not yet used by a plant, F or M (or only `gender`), in random order.
    pub(crate) fn candidates(&self, rng: &mut Rng, gender: Option<u8>) -> Vec<usize> {
        let mut c: Vec<usize> = (0..self.customers.len())
            .filter(|&i| {
                let cu = &self.customers[i];
                !cu.planted
                    && matches!(cu.gender, b'F' | b'M')
                    && gender.is_none_or(|g| cu.gender == g)
            })
            .collect();
        rng.shuffle(&mut c);
        c
    }
}
