//! Threshold sets in one dataflow: the run's own thresholds (the baseline, set 0)
//! and each backtest variant (sets 1..). The aggregates do not depend on thresholds and are
//! built once; a pattern instantiates its threshold-dependent operators once per *distinct*
//! value of the parameters it reads, and tags their detections with every set having that
//! value — a variant that changes only PatId2's thresholds costs PatId1 and PatId3 nothing.

use std::rc::Rc;

use differential_dataflow::VecCollection;

use crate::model::{Epoch, Thresholds};

/// Index of a threshold set: 0 = the baseline, `i` = the `i`-th variant.
pub(crate) type SetId = u16;

/// The threshold sets grouped by the parameters one pattern reads: each distinct value once
/// (in order of first appearance), with the sets that have it.
pub(crate) fn by_parameters<P: PartialEq + Copy>(
    sets: &[Thresholds],
    parameters: impl Fn(&Thresholds) -> P,
) -> Vec<(P, Rc<[SetId]>)> {
    let mut groups: Vec<(P, Vec<SetId>)> = Vec::new();
    for (id, thresholds) in sets.iter().enumerate() {
        let value = parameters(thresholds);
        match groups.iter_mut().find(|(p, _)| *p == value) {
            Some((_, ids)) => ids.push(id as SetId),
            None => groups.push((value, vec![id as SetId])),
        }
    }
    groups
        .into_iter()
        .map(|(p, ids)| (p, Rc::from(ids)))
        .collect()
}

/// Every record of `collection` once for each set of `sets`.
pub(crate) fn fan_out<'s, D, O>(
    collection: VecCollection<'s, Epoch, D>,
    sets: Rc<[SetId]>,
    tag: impl Fn(SetId, &D) -> O + 'static,
) -> VecCollection<'s, Epoch, O>
where
    D: differential_dataflow::Data,
    O: differential_dataflow::Data,
{
    match sets.len() {
        1 => {
            let set = sets[0];
            collection.map(move |d| tag(set, &d))
        }
        _ => collection.flat_map(move |d| sets.iter().map(|&set| tag(set, &d)).collect::<Vec<_>>()),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn groups_sets_by_the_parameters_a_pattern_reads() {
        let base = Thresholds::default();
        let child = Thresholds {
            child_min_txns: 10,
            ..base
        };
        let dei = Thresholds {
            dei_min_female_customers: 5,
            ..base
        };
        let sets = [base, child, dei, child];
        let groups = by_parameters(&sets, |t| t.child_min_txns);
        let ids: Vec<(u64, Vec<SetId>)> = groups.iter().map(|(p, s)| (*p, s.to_vec())).collect();
        assert_eq!(ids, vec![(80, vec![0, 2]), (10, vec![1, 3])]);
        let groups = by_parameters(&sets, |t| t.upgrade_min_merchant_txns);
        assert_eq!(groups.len(), 1);
        assert_eq!(groups[0].1.to_vec(), vec![0, 1, 2, 3]);
    }
}
