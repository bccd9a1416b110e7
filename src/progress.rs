//! Progress of a run on stderr: an observer of the run's events ([`ProgressObserver`]), told
//! of every committed or recovered epoch.
//!
//! On a terminal: a bar for a backtest (`--replay`) and for the recovery replay that starts a
//! resumed live run (epoch k of K, rows/s, ETA), and a one-line status in live mode (the last
//! committed epoch, its lag, rows/s, detections). Otherwise (stderr a file or a pipe, or
//! `--log-format json`): an `info` line `progress` at most every `--progress-interval-ms`
//! ([`DEFAULT_INTERVAL`]). `--quiet` shows none, and neither does a run given no
//! [`Console`] (a library caller). Log lines written while a bar is shown go through
//! [`Stderr`], which hides the bar while the line is written: the two never interleave.
//! Nothing here is process-wide: the binary makes one [`Console`] with its logging and hands
//! it to its runs.

use std::collections::{BTreeSet, VecDeque};
use std::io::{self, Write};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

use crate::runtime::events::{Event, RunObserver};
use crate::sources::landing::FeedPlan;
use crate::time::now_ms;

/// Default of `--progress-interval-ms`: the least time between two progress log lines.
pub(crate) const DEFAULT_INTERVAL: Duration = Duration::from_secs(5);

/// Epochs over which rows/s and the ETA are measured.
const RATE_WINDOW: usize = 20;

/// How progress is shown; chosen by the binary with its logging ([`Console`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Display {
    /// Not at all (`--quiet`; a library caller).
    Off,
    /// A bar or a status line on stderr, a terminal.
    Terminal,
    /// An `info` log line at most every `interval`.
    Log { interval: Duration },
}

/// The bar on the screen, if any: log lines hide it while they are written.
type Shown = Arc<Mutex<Option<ProgressBar>>>;

fn lock(shown: &Shown) -> MutexGuard<'_, Option<ProgressBar>> {
    shown.lock().unwrap_or_else(PoisonError::into_inner)
}

/// Where progress goes: how it is shown and the bar on the screen, shared with the log
/// lines' writer ([`Console::stderr`]).
#[derive(Clone, Debug)]
pub struct Console {
    display: Display,
    shown: Shown,
}

impl Console {
    pub fn new(display: Display) -> Console {
        Console {
            display,
            shown: Shown::default(),
        }
    }

    /// No progress (a library caller's runs).
    pub fn off() -> Console {
        Console::new(Display::Off)
    }

    pub fn display(&self) -> Display {
        self.display
    }

    /// The writer of the log lines: stderr, with this console's bar hidden meanwhile.
    pub fn stderr(&self) -> Stderr {
        Stderr {
            shown: self.shown.clone(),
        }
    }
}

/// Where log lines go: stderr, with the bar (when one is shown) hidden while a line is
/// written. The log formatter writes each line with one `write_all`.
pub struct Stderr {
    shown: Shown,
}

impl Write for Stderr {
    fn write(&mut self, buf: &[u8]) -> io::Result<usize> {
        let bar = lock(&self.shown).clone();
        match bar {
            Some(bar) => bar.suspend(|| io::stderr().write_all(buf))?,
            None => io::stderr().write_all(buf)?,
        }
        Ok(buf.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        io::stderr().flush()
    }
}

/// What a run is about to do.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct Plan {
    /// Backtest: the chunks of the range; live mode: `None`.
    pub total: Option<u64>,
    /// Epochs an earlier run committed (of the range, in a backtest): replayed to recover.
    pub recovering: u64,
}

impl Plan {
    /// The plan of a run that feeds `feed` after an earlier run committed `committed`.
    pub fn of(feed: &FeedPlan, committed: &BTreeSet<u64>) -> Plan {
        match feed {
            FeedPlan::Fixed(chunks) => Plan {
                total: Some(chunks.len() as u64),
                recovering: chunks.iter().filter(|k| committed.contains(k)).count() as u64,
            },
            FeedPlan::Live { .. } => Plan {
                total: None,
                recovering: committed.len() as u64,
            },
        }
    }
}

/// One epoch as the committer takes it up, before its commit.
#[derive(Clone, Copy, Debug)]
pub struct EpochSeen {
    epoch: u64,
    rows: u64,
    visible_ms: i64,
}

/// The run's [`Progress`] as an observer of its epochs. Only the committing thread reports
/// epochs, so its lock is never contended.
pub(crate) struct ProgressObserver(Mutex<Progress>);

impl ProgressObserver {
    pub(crate) fn new(progress: Progress) -> ProgressObserver {
        ProgressObserver(Mutex::new(progress))
    }
}

impl RunObserver for ProgressObserver {
    fn observe(&self, event: &Event<'_>) {
        let (seen, replayed, detections) = match event {
            Event::EpochCommitted(e) => {
                let seen = EpochSeen {
                    epoch: e.epoch,
                    rows: e.rows + e.rejected,
                    visible_ms: e.visible_ms,
                };
                (seen, false, e.detections_total)
            }
            Event::EpochReplayed(e) => {
                let seen = EpochSeen {
                    epoch: e.epoch,
                    rows: e.rows,
                    visible_ms: e.visible_ms,
                };
                (seen, true, e.detections_total)
            }
            _ => return,
        };
        let mut progress = self.0.lock().unwrap_or_else(PoisonError::into_inner);
        progress.epoch(seen, replayed, detections);
    }
}

/// Which bar is on the screen.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Phase {
    /// A backtest: epoch k of the range's K.
    Replay,
    /// A live run recovering the epochs an earlier run committed.
    Recovery,
    /// A live run: the status line.
    Live,
}

impl Phase {
    fn name(self) -> &'static str {
        match self {
            Phase::Replay => "replay",
            Phase::Recovery => "recovery",
            Phase::Live => "live",
        }
    }
}

/// The run's progress; the committer owns it and feeds it every epoch.
pub struct Progress {
    plan: Plan,
    display: Display,
    shown: Shown,
    phase: Phase,
    bar: Option<ProgressBar>,
    /// Epochs committed or recovered so far, and of them recovered and committed; rows of
    /// both.
    done: u64,
    recovered: u64,
    committed: u64,
    rows: u64,
    /// (when, epochs done, rows) of the last [`RATE_WINDOW`] epochs.
    window: VecDeque<(Instant, u64, u64)>,
    last_log: Instant,
}

impl Progress {
    /// Progress shown on `console`.
    pub fn start(plan: Plan, console: &Console) -> Progress {
        Progress::shown(plan, console.display, console.shown.clone())
    }

    /// Progress shown as `display` says (the tests' way to pick a display).
    #[cfg(test)]
    fn with_display(plan: Plan, display: Display) -> Progress {
        Progress::shown(plan, display, Shown::default())
    }

    fn shown(plan: Plan, display: Display, shown: Shown) -> Progress {
        let now = Instant::now();
        let phase = match plan.total {
            Some(_) => Phase::Replay,
            None if plan.recovering > 0 => Phase::Recovery,
            None => Phase::Live,
        };
        let mut progress = Progress {
            plan,
            display,
            shown,
            phase,
            bar: None,
            done: 0,
            recovered: 0,
            committed: 0,
            rows: 0,
            window: VecDeque::from([(now, 0, 0)]),
            last_log: now,
        };
        progress.show_bar();
        progress
    }

    /// An epoch was committed (or recovered, when `replayed`) without failure; the ledger
    /// then holds `detections`.
    pub fn epoch(&mut self, seen: EpochSeen, replayed: bool, detections: u64) {
        if self.display == Display::Off {
            return;
        }
        let now = Instant::now();
        self.done += 1;
        match replayed {
            true => self.recovered += 1,
            false => self.committed += 1,
        }
        self.rows += seen.rows;
        self.window.push_back((now, self.done, self.rows));
        if self.window.len() > RATE_WINDOW + 1 {
            self.window.pop_front();
        }
        if self.phase == Phase::Recovery && self.recovered_all() {
            self.phase = Phase::Live;
            self.show_bar();
        }
        let status = self.status(seen, detections);
        match self.display {
            Display::Terminal => self.draw(&status),
            Display::Log { interval } if now.duration_since(self.last_log) >= interval => {
                self.last_log = now;
                status.log();
            }
            _ => {}
        }
    }

    /// Recovery is over once every recovered epoch came by, or a new one was committed.
    fn recovered_all(&self) -> bool {
        self.recovered >= self.plan.recovering || self.committed > 0
    }

    /// The figures of the progress so far.
    fn status(&self, seen: EpochSeen, detections: u64) -> Status {
        let (since, done_then, rows_then) =
            (self.window.front().copied()).unwrap_or((Instant::now(), self.done, self.rows));
        let seconds = since.elapsed().as_secs_f64().max(1e-3);
        let epochs_per_second = (self.done - done_then) as f64 / seconds;
        let total = match self.phase {
            Phase::Replay => self.plan.total,
            Phase::Recovery => Some(self.plan.recovering),
            Phase::Live => None,
        };
        let eta = total.filter(|_| epochs_per_second > 0.0).map(|k| {
            Duration::from_secs_f64(k.saturating_sub(self.done) as f64 / epochs_per_second)
        });
        Status {
            phase: self.phase,
            epoch: seen.epoch,
            done: self.done,
            total,
            rows: self.rows,
            rows_per_second: (self.rows - rows_then) as f64 / seconds,
            eta,
            lag: Duration::from_millis(now_ms().saturating_sub(seen.visible_ms).max(0) as u64),
            detections,
        }
    }

    /// Puts the bar of the current phase on the screen (a terminal only).
    fn show_bar(&mut self) {
        if self.display != Display::Terminal {
            return;
        }
        self.clear();
        let bar = match self.phase {
            Phase::Replay | Phase::Recovery => {
                let total = match self.phase {
                    Phase::Replay => self.plan.total.unwrap_or(0),
                    _ => self.plan.recovering,
                };
                let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
                bar.set_style(bar_style("{prefix} [{bar:30}] {pos}/{len} epochs · {msg}"));
                bar.set_prefix(self.phase.name());
                bar.set_message("starting");
                bar.set_position(self.done);
                bar
            }
            Phase::Live => {
                let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
                bar.set_style(bar_style("{msg}"));
                bar.set_message("live: waiting for the next chunk");
                bar
            }
        };
        *lock(&self.shown) = Some(bar.clone());
        self.bar = Some(bar);
    }

    fn draw(&self, status: &Status) {
        if let Some(bar) = &self.bar {
            if self.phase != Phase::Live {
                bar.set_position(status.done);
            }
            bar.set_message(status.terminal_message());
        }
    }

    /// Takes the bar off the screen.
    fn clear(&mut self) {
        if let Some(bar) = self.bar.take() {
            *lock(&self.shown) = None;
            bar.finish_and_clear();
        }
    }
}

impl Drop for Progress {
    fn drop(&mut self) {
        self.clear();
    }
}

fn bar_style(template: &str) -> ProgressStyle {
    ProgressStyle::with_template(template)
        .unwrap_or_else(|_| ProgressStyle::default_bar())
        .progress_chars("=> ")
}

/// What one progress report says.
#[derive(Clone, Debug, PartialEq)]
struct Status {
    phase: Phase,
    /// The epoch just committed or recovered.
    epoch: u64,
    /// Epochs committed or recovered so far, of `total` when known.
    done: u64,
    total: Option<u64>,
    rows: u64,
    rows_per_second: f64,
    eta: Option<Duration>,
    /// Live: from the chunk's last-modified time to its epoch's commit.
    lag: Duration,
    detections: u64,
}

impl Status {
    /// After the bar (replay, recovery), or the live status line.
    fn terminal_message(&self) -> String {
        let rate = format!("{} rows/s", human(self.rows_per_second));
        match self.phase {
            Phase::Live => format!(
                "live: epoch {} committed · lag {:.1} s · {rate} · {} detections",
                self.epoch,
                self.lag.as_secs_f64(),
                self.detections
            ),
            _ => format!("{rate} · ETA {}", eta_text(self.eta)),
        }
    }

    /// The progress log line.
    fn log(&self) {
        let rows_per_second = self.rows_per_second.round() as u64;
        match (self.phase, self.total) {
            (Phase::Live, _) | (_, None) => tracing::info!(
                phase = %Phase::Live.name(),
                epoch = self.epoch,
                lag_seconds = (self.lag.as_secs_f64() * 10.0).round() / 10.0,
                rows = self.rows,
                rows_per_second,
                detections = self.detections,
                "progress"
            ),
            (phase, Some(total)) => tracing::info!(
                phase = %phase.name(),
                epochs = self.done,
                epochs_total = total,
                rows = self.rows,
                rows_per_second,
                eta_seconds = self.eta.map(|d| d.as_secs()),
                detections = self.detections,
                "progress"
            ),
        }
    }
}

/// `950`, `51k`, `1.2M`.
fn human(value: f64) -> String {
    if value >= 999_500.0 {
        format!("{:.1}M", value / 1e6)
    } else if value >= 9_999.5 {
        format!("{:.0}k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// `7 s`, `2 min 5 s`, `1 h 3 min`; `?` before a rate is known.
fn eta_text(eta: Option<Duration>) -> String {
    let Some(eta) = eta else {
        return "?".into();
    };
    let s = eta.as_secs();
    match s {
        0..60 => format!("{s} s"),
        60..3600 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn seen(epoch: u64, rows: u64) -> EpochSeen {
        EpochSeen {
            epoch,
            rows,
            visible_ms: now_ms() - 400,
        }
    }

    #[test]
    fn numbers_read_as_people_write_them() {
        assert_eq!(human(950.4), "950");
        assert_eq!(human(51_234.5), "51k");
        assert_eq!(human(1_234_567.0), "1.2M");
        assert_eq!(eta_text(None), "?");
        assert_eq!(eta_text(Some(Duration::from_secs(7))), "7 s");
        assert_eq!(eta_text(Some(Duration::from_secs(125))), "2 min 5 s");
        assert_eq!(eta_text(Some(Duration::from_secs(3780))), "1 h 3 min");
    }

    #[test]
    fn a_replay_counts_epoch_k_of_k_with_rate_and_eta() {
        let plan = Plan {
            total: Some(10),
            recovering: 0,
        };
        let mut p = Progress::with_display(
            plan,
            Display::Log {
                interval: Duration::MAX,
            },
        );
        std::thread::sleep(Duration::from_millis(20));
        for k in 0..4 {
            p.epoch(seen(k, 1000), false, 5);
        }
        let s = p.status(seen(3, 1000), 5);
        assert_eq!(
            (s.phase, s.done, s.total, s.rows),
            (Phase::Replay, 4, Some(10), 4000)
        );
        assert!(s.rows_per_second > 0.0 && s.rows_per_second < 4000.0 / 0.02);
        let eta = s.eta.expect("a rate is known");
        assert!(
            eta > Duration::ZERO && eta < Duration::from_secs(1),
            "{eta:?}"
        );
        assert!(s.terminal_message().contains(" rows/s · ETA "), "{s:?}");
    }

    #[test]
    fn a_live_run_recovers_then_shows_its_status() {
        let plan = Plan {
            total: None,
            recovering: 2,
        };
        let mut p = Progress::with_display(
            plan,
            Display::Log {
                interval: Duration::MAX,
            },
        );
        assert_eq!(p.phase, Phase::Recovery);
        p.epoch(seen(0, 10), true, 0);
        assert_eq!(p.status(seen(0, 10), 0).total, Some(2));
        p.epoch(seen(1, 10), true, 0);
        assert_eq!(p.phase, Phase::Live);
        p.epoch(seen(2, 10), false, 7);
        let s = p.status(seen(2, 10), 7);
        assert_eq!((s.total, s.epoch, s.detections), (None, 2, 7));
        assert!(s.lag >= Duration::from_millis(400), "{s:?}");
        let line = s.terminal_message();
        assert!(
            line.starts_with("live: epoch 2 committed · lag 0."),
            "{line}"
        );
        assert!(line.ends_with(" rows/s · 7 detections"), "{line}");
    }

    #[test]
    fn the_observer_takes_epochs_from_the_run_events_and_nothing_else() {
        use crate::runtime::events::{EpochCommitted, EpochReplayed};
        let plan = Plan {
            total: None,
            recovering: 1,
        };
        let interval = Duration::MAX;
        let observer =
            ProgressObserver::new(Progress::with_display(plan, Display::Log { interval }));
        observer.observe(&Event::QueueDepth { waiting: 3 });
        observer.observe(&Event::EpochReplayed(&EpochReplayed {
            epoch: 0,
            rows: 10,
            ..EpochReplayed::default()
        }));
        observer.observe(&Event::EpochCommitted(&EpochCommitted {
            epoch: 1,
            rows: 4,
            rejected: 1,
            detections_total: 9,
            ..EpochCommitted::default()
        }));
        let p = observer.0.lock().unwrap();
        assert_eq!((p.done, p.recovered, p.committed, p.rows), (2, 1, 1, 15));
        assert_eq!(p.phase, Phase::Live);
    }

    #[test]
    fn off_counts_nothing() {
        let mut p = Progress::with_display(Plan::default(), Display::Off);
        p.epoch(seen(0, 10), false, 0);
        assert_eq!(p.done, 0);
        assert!(p.bar.is_none());
    }
}
