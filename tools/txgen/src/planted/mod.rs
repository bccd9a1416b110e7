//! The planted behaviours (SPEC §4 at the default thresholds), each in its own file:
//!
//! | file | plants |
//! |---|---|
//! | `pat1.rs` | PatId1: low weights for high-count customers, ties on both percentile boundaries |
//! | `pat2.rs` | PatId2: "child" customers, every third fading later |
//! | `pat3.rs` | PatId3: merchants favoured by men, and one where women overtake men |
//! | `dual_gender.rs` | customers seen with two genders at one merchant |
//!
//! PatId2, PatId3 and the dual-gender customers shape the habits before any row is drawn;
//! PatId1 sets importance weights once the final counts are known.

mod dual_gender;
mod pat1;
mod pat2;
pub(crate) mod pat3;
