//! The console page and the run report: one self-contained HTML page that renders
//! a run's status JSON — its state and what to do, recent events, progress and lag, input and
//! processed rates, commit latency, detections per pattern per epoch, the latest detections,
//! rejected rows by reason.
//!
//! The page runs in two modes: served at `/` of the console it fetches `/api/status` every
//! second; a report embeds the status (built from a state store by [`status_from_store`])
//! and renders it once, with no request at all.
//!
//! | file | what it holds |
//! | --- | --- |
//! | `mod.rs` | this table, the re-exports |
//! | `console.html` | the page: inline CSS and JS; the run state, panels, events, uPlot charts over IST time; names are inserted as text only |
//! | `page.rs` | [`console_page`], [`render_report`] (the status embedded, escaped for a `<script>`); inlines `vendor/` and `charts.js` |
//! | `charts.js` | helpers both pages use and the backtest report's SVG charts, spliced in by `page.rs` |
//! | `vendor/` | uPlot (MIT, its licence beside it), as published: the console's charts |
//! | `backtest.html` | the backtest report's page: renders its embedded JSON |
//! | `backtest.rs` | the backtest comparison report of a replay with variants (HTML, JSON, CSV) |
//! | `promote.rs` | [`Promotion`]: a recorded variant as the next run's baseline options, the current baseline as a `--variants` file |
//! | `status.rs` | [`status_from_store`]: the status JSON from the `epochs`, `detections` and `run_meta` tables and the rejects objects |

pub mod backtest;
mod page;
mod promote;
mod status;

pub use page::{console_page, render_report, script_safe_json};
pub use promote::{Promotion, PREVIOUS_BASELINE};
pub use status::{parse_rfc3339_ms, status_from_store};
