//! The console page and the run report: one self-contained HTML page that renders
//! a run's status JSON — progress and lag, throughput and epoch latency, detections per
//! pattern per epoch, the latest detections, rejected rows by reason.
//!
//! The page runs in two modes: served at `/` of the console it fetches `/api/status` every
//! second; a report embeds the status (built from a state store by [`status_from_store`])
//! and renders it once, with no request at all.
//!
//! | file | what it holds |
//! | --- | --- |
//! | `mod.rs` | this table, the re-exports |
//! | `console.html` | the page: inline CSS, JS and SVG charts; names are inserted as text only |
//! | `page.rs` | [`console_page`], [`render_report`] (the status embedded, escaped for a `<script>`) |
//! | `charts.js` | the SVG chart code both pages use, spliced in by `page.rs` |
//! | `backtest.html` | the backtest report's page: renders its embedded JSON |
//! | `backtest.rs` | the backtest comparison report of a replay with variants (HTML, JSON, CSV) |
//! | `status.rs` | [`status_from_store`]: the status JSON from the `epochs`, `detections` and `run_meta` tables and the rejects objects |

pub mod backtest;
mod page;
mod status;

pub use page::{console_page, render_report, script_safe_json};
pub use status::{parse_rfc3339_ms, status_from_store};
