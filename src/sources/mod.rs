//! Bringing data in: parsing transaction chunks and the importance file, and finding and
//! fetching landing chunks in order.
//!
//! | file | owns |
//! |---|---|
//! | `parse.rs` | the BankSim transactions CSV: header by name, quoting, amounts, bad rows |
//! | `importance.rs` | `CustomerImportance.csv`: weights, duplicate keys averaged |
//! | `landing.rs` | chunk naming, the `_COMPLETE` marker, and the prefetching chunk feed |

pub mod importance;
pub mod landing;
pub mod parse;
