//! Drawing the population: the 50 merchants with their categories, and the customers with
//! their gender, age, activity, spending and habits (which merchants they use, how often).

use std::collections::HashSet;
use std::ops::Range;

use crate::catalog::{
    AGES, BIG_SHARES, CATEGORIES, FOOD, SECONDARY_CAT, SMALL_MAIN_CATS, TOP_MERCHANT_IDS,
    TRANSPORTATION,
};
use crate::format::{customer_part, quoted_part};
use crate::options::MERCHANTS;
use crate::planted::pat3;
use crate::rng::{det_exp, Rng};
use crate::world::{Customer, Entry, Kind, Merchant};

/// A merchant in the making of a customer's habits: rank, weight, first step.
type Habit = (u8, f64, u16);

/// The merchants, most popular first.
pub(crate) fn merchants(rng: &mut Rng, used_ids: &mut HashSet<String>) -> Vec<Merchant> {
    let mut merchants = Vec::with_capacity(MERCHANTS);
    for rank in 0..MERCHANTS {
        let id = if rank < TOP_MERCHANT_IDS.len() {
            used_ids.insert(TOP_MERCHANT_IDS[rank].to_string());
            TOP_MERCHANT_IDS[rank].to_string()
        } else {
            fresh_id(rng, 'M', used_ids)
        };
        let (main, secondary) = match rank {
            0..=2 => (TRANSPORTATION, None),
            3 => (FOOD, None),
            _ => {
                let main = SMALL_MAIN_CATS[rank - 4];
                (main, Some(SECONDARY_CAT[main as usize]))
            }
        };
        let part_main = quoted_part(&[&id, "28007", CATEGORIES[main as usize].name]);
        let part_secondary = match secondary {
            Some(s) => quoted_part(&[&id, "28007", CATEGORIES[s as usize].name]),
            None => Vec::new(),
        };
        merchants.push(Merchant {
            id,
            main,
            secondary,
            part_main,
            part_secondary,
        });
    }
    merchants
}

/// `n` customers and their habits (each customer's slice of the returned entries).
pub(crate) fn customers(
    rng: &mut Rng,
    used_ids: &mut HashSet<String>,
    n: usize,
) -> (Vec<Customer>, Vec<Entry>) {
    let mut customers = Vec::with_capacity(n);
    let mut entries: Vec<Entry> = Vec::with_capacity(n * 12);
    let mut habits: Vec<Habit> = Vec::with_capacity(16);
    for _ in 0..n {
        customers.push(customer(rng, used_ids, &mut entries, &mut habits));
    }
    (customers, entries)
}

/// Draws one customer and appends its habits to `entries` (`habits` is scratch space).
fn customer(
    rng: &mut Rng,
    used_ids: &mut HashSet<String>,
    entries: &mut Vec<Entry>,
    habits: &mut Vec<Habit>,
) -> Customer {
    let id = fresh_id(rng, 'C', used_ids);
    let gender = draw_gender(rng);
    let age = draw_age(rng, gender);
    let heavy = rng.chance(0.03);
    let activity = det_exp(0.3 * rng.normal()) * if heavy { 2.5 } else { 1.0 };
    let spend = det_exp(0.08 * rng.normal());
    let p_big = (0.8 + 0.08 * rng.normal()).clamp(0.45, 0.95);

    habits.clear();
    big_merchant_habits(rng, p_big, habits);
    let favourites = favourite_habits(rng, gender, p_big);
    habits.extend(favourites);
    let range = push_entries(entries, habits);

    let prefix = customer_part(&id, age, gender);
    Customer {
        id,
        gender,
        activity,
        spend,
        prefix,
        alt_prefix: Vec::new(),
        entries: range,
        no_importance: false,
        planted: false,
    }
}

/// F 54.6 %, M 44.7 %, E (enterprise) 0.5 %, U (unknown) 0.2 %.
fn draw_gender(rng: &mut Rng) -> u8 {
    let g = rng.f64();
    if g < 0.546 {
        b'F'
    } else if g < 0.993 {
        b'M'
    } else if g < 0.998 {
        b'E'
    } else {
        b'U'
    }
}

/// An age band by the shares of [`AGES`]; enterprises have none (`U`).
fn draw_age(rng: &mut Rng, gender: u8) -> u8 {
    if gender == b'E' {
        return b'U';
    }
    let mut u = rng.f64();
    for &(a, p) in &AGES {
        if u < p {
            return a;
        }
        u -= p;
    }
    b'U'
}

/// The four big merchants, sharing `p_big` of the customer's rows around their popularity.
fn big_merchant_habits(rng: &mut Rng, p_big: f64, habits: &mut Vec<Habit>) {
    let mut big_total = 0.0;
    for (j, share) in BIG_SHARES.iter().enumerate() {
        let w = share * det_exp(0.35 * rng.normal());
        big_total += w;
        habits.push((j as u8, w, 0));
    }
    for h in habits.iter_mut() {
        h.1 *= p_big / big_total;
    }
}

/// 3–8 favourite small merchants, drawn by popularity (and gender affinity, PatId3), sharing
/// the rest of the customer's rows.
fn favourite_habits(rng: &mut Rng, gender: u8, p_big: f64) -> Vec<Habit> {
    let mut pool: Vec<f64> = (4..MERCHANTS)
        .map(|rank| {
            let popularity = 1.0 / (rank - 3) as f64;
            popularity * pat3::gender_affinity(rank, gender)
        })
        .collect();
    let k = 3 + rng.below(6) as usize;
    let mut fav: Vec<Habit> = Vec::with_capacity(k);
    for _ in 0..k {
        let pick = draw_from_pool(rng, &pool);
        pool[pick] = 0.0;
        let rank = pick + 4;
        let start = pat3::first_step(rng, rank, gender);
        fav.push((rank as u8, det_exp(0.5 * rng.normal()), start));
    }
    let fav_total: f64 = fav.iter().map(|f| f.1).sum();
    for f in &mut fav {
        f.1 *= (1.0 - p_big) / fav_total;
    }
    fav
}

/// An index of `pool` with probability proportional to its weight (zero weights never).
fn draw_from_pool(rng: &mut Rng, pool: &[f64]) -> usize {
    let total: f64 = pool.iter().sum();
    let mut u = rng.f64() * total;
    for (i, w) in pool.iter().enumerate() {
        if u < *w && *w > 0.0 {
            return i;
        }
        u -= w;
    }
    pool.len() - 1
}

/// Appends `habits` as entries with cumulative probabilities (the last one exactly 1).
fn push_entries(entries: &mut Vec<Entry>, habits: &[Habit]) -> Range<usize> {
    let start = entries.len();
    let mut cum = 0.0;
    for &(merchant, w, start_step) in habits {
        cum += w;
        entries.push(Entry::new(merchant, cum, start_step, Kind::Normal));
    }
    if let Some(last) = entries.last_mut() {
        last.cum = 1.0;
    }
    start..entries.len()
}

/// A new id `prefix` + 9 or 10 digits, not yet in `used`.
pub(crate) fn fresh_id(rng: &mut Rng, prefix: char, used: &mut HashSet<String>) -> String {
    loop {
        // 9 or 10 digits, like the real ids (C1093826151, M348934600).
        let n = if rng.chance(0.4) {
            100_000_000 + rng.below(900_000_000)
        } else {
            1_000_000_000 + rng.below(1_200_000_000)
        };
        let id = format!("{prefix}{n}");
        if used.insert(id.clone()) {
            return id;
        }
    }
}
