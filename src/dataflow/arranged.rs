//! The plumbing shared by the operators that read arranged batches directly
//! (`aggregates::pair_changes`, PatId1's weight percentile): receiving each activation's
//! batches with capabilities for their times, and releasing the trace behind them.

use differential_dataflow::trace::{Span, TraceReader};
use timely::communication::Pull;
use timely::dataflow::channels::Message;
use timely::dataflow::operators::generic::InputHandleCore;
use timely::dataflow::operators::CapabilitySet;
use timely::progress::Antichain;

use crate::model::Epoch;

/// Drains `input`: the batches received (in time order), and capabilities for their times.
/// `upper` advances to the upper bound of the last batch.
pub(super) fn receive<B, P>(
    input: &mut InputHandleCore<Epoch, Vec<Span<Epoch, B>>, P>,
    upper: &mut Antichain<Epoch>,
) -> (CapabilitySet<Epoch>, Vec<B>)
where
    P: Pull<Message<Epoch, Vec<Span<Epoch, B>>>>,
{
    let mut batches = Vec::new();
    let mut caps = CapabilitySet::new();
    input.for_each(|capability, received| {
        for capability in capability.retain_stamp(0).iter() {
            caps.insert(capability.clone());
        }
        for span in received.drain(..) {
            // Batches arrive in time order.
            upper.clone_from(span.upper());
            batches.extend(span.inner);
        }
    });
    (caps, batches)
}

/// Tells the trace that this reader is done with every time before `upper`, so it may
/// advance those updates' times and merge its batches.
pub(super) fn release<Tr: TraceReader<Time = Epoch>>(trace: &mut Tr, upper: &mut Antichain<Epoch>) {
    trace.advance_upper(upper);
    trace.set_logical_compaction(upper.borrow());
    trace.set_physical_compaction(upper.borrow());
}
