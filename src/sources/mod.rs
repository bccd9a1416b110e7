//! Bringing data in: parsing transaction chunks and the importance file, and finding and
//! fetching landing chunks in order.
//!
//! | file | owns |
//! |---|---|
//! | `framing.rs` | the one record framer of SPEC §2.1 (lines, quotes, resynchronisation), shared by X, Y and the importance reader |
//! | `parse.rs` | the BankSim transactions CSV: header by name, quoting, amounts, bad rows |
//! | `importance.rs` | `CustomerImportance.csv`: weights, duplicate keys averaged |
//! | `landing.rs` | chunk naming, the `_COMPLETE` marker, replay ranges, and the prefetching chunk feed |
//! | `append_only.rs` | taken chunks looked at again: one that changed stops the feed |

pub mod append_only;
pub mod framing;
pub mod importance;
pub mod landing;
pub mod parse;
