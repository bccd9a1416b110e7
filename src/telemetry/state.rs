//! The run's state: one function ([`assess`]) of the facts the telemetry gathered, read by
//! `/api/status` (`state`, `ready`, `state_detail`), `/readyz` and the `txflow_ready` /
//! `txflow_state` metrics, so that they never disagree. The first condition that holds
//! decides (docs/operations.md, "Run states"): failed, stalled, starting, recovering,
//! ended or stopped, committing slowly, behind, then (live, nothing to commit) waiting for
//! input, else up to date.

use std::time::Duration;

use serde::Serialize;

use crate::runtime::events::Stage;
use crate::runtime::options::{YOptions, DEFAULT_READY_MAX_LAG, DEFAULT_STALL_TIMEOUT};

/// Where the run is in its life; its [`RunState`] is judged from this and the other facts.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[repr(u8)]
pub enum Phase {
    Starting = 0,
    Recovering = 1,
    Running = 2,
    Ended = 3,
    Stopped = 4,
    Failed = 5,
}

impl Phase {
    pub(crate) fn from_u8(v: u8) -> Phase {
        [
            Phase::Starting,
            Phase::Recovering,
            Phase::Running,
            Phase::Ended,
            Phase::Stopped,
        ]
        .get(v as usize)
        .copied()
        .unwrap_or(Phase::Failed)
    }
}

/// What the state is judged against: the run's options.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Limits {
    /// `--ready-max-lag`: more chunks than this uncommitted is `behind`.
    pub ready_max_lag: u64,
    /// `--ready-max-idle`: live, no new chunk for longer is not ready.
    pub ready_max_idle: Option<Duration>,
    /// `--stall-timeout` (zero = never): a quarter of it, at least [`MIN_COMMIT_SLOW`], is
    /// how long one commit may take before the state is `committing_slowly`.
    pub stall_timeout: Duration,
}

/// How long a live landing may be silent, after a chunk, before the run is `waiting for
/// input` rather than `up to date` (or `--ready-max-idle`, when shorter): chunks a few
/// seconds apart are a healthy stream, not one waiting.
pub(crate) const QUIET_AFTER: Duration = Duration::from_secs(10);

/// The shortest commit that counts as slow.
pub(crate) const MIN_COMMIT_SLOW: Duration = Duration::from_secs(5);

impl Limits {
    pub fn of(options: &YOptions) -> Limits {
        Limits {
            ready_max_lag: options.ready_max_lag,
            ready_max_idle: options.ready_max_idle,
            stall_timeout: options.stall_timeout,
        }
    }

    /// How long one epoch may be committing before it is slow: max(5 s, stall timeout / 4).
    pub fn commit_slow(&self) -> Duration {
        (self.stall_timeout / 4).max(MIN_COMMIT_SLOW)
    }

    /// How long after its last chunk a live run with nothing to commit is still `up to
    /// date`: [`QUIET_AFTER`], or `--ready-max-idle` when shorter.
    pub(crate) fn quiet_after(&self) -> Duration {
        self.ready_max_idle
            .map_or(QUIET_AFTER, |max| max.min(QUIET_AFTER))
    }
}

impl Default for Limits {
    fn default() -> Limits {
        Limits {
            ready_max_lag: DEFAULT_READY_MAX_LAG,
            ready_max_idle: None,
            stall_timeout: DEFAULT_STALL_TIMEOUT,
        }
    }
}

/// The run's state (`state` of `/api/status`), in the order its conditions are checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RunState {
    Failed,
    Stalled,
    Starting,
    Recovering,
    Ended,
    Stopped,
    CommittingSlowly,
    Behind,
    WaitingForInput,
    UpToDate,
}

impl RunState {
    /// Every state (each has a `txflow_state` series).
    pub const ALL: [RunState; 10] = [
        RunState::Failed,
        RunState::Stalled,
        RunState::Starting,
        RunState::Recovering,
        RunState::Ended,
        RunState::Stopped,
        RunState::CommittingSlowly,
        RunState::Behind,
        RunState::WaitingForInput,
        RunState::UpToDate,
    ];

    /// As JSON and the metrics name it (snake_case).
    pub fn as_str(self) -> &'static str {
        match self {
            RunState::Failed => "failed",
            RunState::Stalled => "stalled",
            RunState::Starting => "starting",
            RunState::Recovering => "recovering",
            RunState::Ended => "ended",
            RunState::Stopped => "stopped",
            RunState::CommittingSlowly => "committing_slowly",
            RunState::Behind => "behind",
            RunState::WaitingForInput => "waiting_for_input",
            RunState::UpToDate => "up_to_date",
        }
    }

    /// As words (the badge, the start of the summary).
    pub fn words(self) -> String {
        self.as_str().replace('_', " ")
    }
}

/// The oldest epoch seen and not committed, while any is.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Behind {
    /// Chunks seen and not committed.
    pub chunks: u64,
    pub oldest_waiting_epoch: u64,
    /// Since its chunk became visible.
    pub oldest_waiting_seconds: f64,
    pub stage: &'static str,
    /// Since it entered that stage.
    pub stage_seconds: f64,
}

/// A recovery's progress.
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct Recovering {
    /// `checkpoint` or `full replay`.
    pub source: &'static str,
    pub replayed: u64,
    pub to_replay: u64,
}

/// Why the run is in its state (`state_detail` of `/api/status`).
#[derive(Clone, Debug, PartialEq, Serialize)]
pub struct StateDetail {
    /// One line; the body of `/readyz`.
    pub summary: String,
    pub what_to_do: Option<&'static str>,
    /// Last-modified time of the newest chunk seen.
    pub last_chunk_ms: Option<i64>,
    pub since_last_chunk_seconds: Option<f64>,
    /// When the landing was last listed successfully.
    pub landing_listed_ms: Option<i64>,
    /// The last listing found no landing, or failed.
    pub landing_missing: bool,
    pub behind: Option<Behind>,
    pub recovering: Option<Recovering>,
}

/// The epoch the run waits on: the oldest seen and not committed.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(crate) struct Oldest {
    pub epoch: u64,
    pub waiting_seconds: f64,
    pub stage: Stage,
    pub stage_seconds: f64,
}

/// What the state is judged from, gathered at one moment.
#[derive(Clone, Debug)]
pub(crate) struct Facts {
    pub phase: Phase,
    /// The failure's message, once the run failed.
    pub failure: Option<String>,
    /// The stall watchdog's reason, once it fired.
    pub stall: Option<String>,
    pub live: bool,
    pub now_ms: i64,
    /// When this process started (the idle time before any chunk was seen).
    pub started_ms: i64,
    pub lag_chunks: u64,
    pub oldest: Option<Oldest>,
    pub last_chunk_ms: Option<i64>,
    pub landing_listed_ms: Option<i64>,
    /// Why the landing is missing or unlistable, per its last listing.
    pub landing_missing: Option<String>,
    pub recovering: Option<Recovering>,
    pub last_committed: Option<u64>,
    pub limits: Limits,
}

/// The state, whether it is ready, and why.
#[derive(Clone, Debug, PartialEq)]
pub struct Assessment {
    pub state: RunState,
    pub ready: bool,
    pub detail: StateDetail,
}

const TO_DO_FAILED: &str =
    "Read the error, fix its cause and restart: the run resumes after its last committed epoch.";
/// What to do about a stall: the state's, and the error's once the run failed on it.
pub(crate) const TO_DO_STALLED: &str = "Nothing was committed for --stall-timeout while chunks \
     waited: look at the log for the stage that hung (a frozen cluster peer, a hung store); a \
     restart resumes the run from the last committed epoch.";
const TO_DO_STARTING: &str =
    "Wait: the run is opening its stores and the landing; if this lasts, read the log.";
const TO_DO_RECOVERING: &str = "Wait: committed epochs are replayed to rebuild the state; \
     checkpoints (--checkpoint-interval) shorten this.";
const TO_DO_ENDED: &str = "Nothing: the stream ended and every chunk was committed.";
const TO_DO_STOPPED: &str =
    "The run was stopped: start it again to resume after its last committed epoch.";
const TO_DO_SLOW: &str = "One commit is taking long: check the state store and the output \
     store (retries are listed in the recent events).";
const TO_DO_BEHIND: &str = "Chunks arrive faster than they are committed: see the oldest \
     epoch's stage; add workers or processes, or check the stores.";
const TO_DO_MISSING: &str = "Check --landing: the landing is missing or cannot be listed.";
const TO_DO_IDLE: &str = "Check the producer: no new chunk arrived within --ready-max-idle.";
const TO_DO_WAITING: &str = "Nothing: the run is waiting for the next chunk.";
const TO_DO_UP_TO_DATE: &str = "Nothing: every chunk seen is committed or in flight.";

/// The state of the run: see the module documentation.
pub(crate) fn assess(f: &Facts) -> Assessment {
    let behind = match (f.oldest, f.lag_chunks) {
        (Some(o), chunks) if chunks > 0 => Some(Behind {
            chunks,
            oldest_waiting_epoch: o.epoch,
            oldest_waiting_seconds: o.waiting_seconds,
            stage: o.stage.as_str(),
            stage_seconds: o.stage_seconds,
        }),
        _ => None,
    };
    let (state, ready, summary, to_do) = judge(f, behind.as_ref());
    let since_last_chunk_seconds = f.last_chunk_ms.map(|ms| seconds_between(ms, f.now_ms));
    Assessment {
        state,
        ready,
        detail: StateDetail {
            summary,
            what_to_do: Some(to_do),
            last_chunk_ms: f.last_chunk_ms,
            since_last_chunk_seconds,
            landing_listed_ms: f.landing_listed_ms,
            landing_missing: f.landing_missing.is_some(),
            behind,
            recovering: f
                .recovering
                .clone()
                .filter(|_| f.phase == Phase::Recovering),
        },
    }
}

type Judged = (RunState, bool, String, &'static str);

fn judge(f: &Facts, behind: Option<&Behind>) -> Judged {
    // A stall stays the state once the watchdog fired, also when the run then fails on it:
    // it says more than "failed" (the error is beside it).
    if let Some(stall) = &f.stall {
        return (RunState::Stalled, false, stall.clone(), TO_DO_STALLED);
    }
    if f.phase == Phase::Failed {
        let why = f.failure.as_deref().unwrap_or("the run failed");
        return (
            RunState::Failed,
            false,
            format!("failed: {why}"),
            TO_DO_FAILED,
        );
    }
    match f.phase {
        Phase::Starting => (
            RunState::Starting,
            false,
            "starting: opening the stores and the landing".into(),
            TO_DO_STARTING,
        ),
        Phase::Recovering => (
            RunState::Recovering,
            false,
            recovering_summary(f.recovering.as_ref()),
            TO_DO_RECOVERING,
        ),
        Phase::Ended => (
            RunState::Ended,
            true,
            format!("ended: the stream ended{}", committed_through(f)),
            TO_DO_ENDED,
        ),
        Phase::Stopped => (
            RunState::Stopped,
            false,
            format!("stopped{}", committed_through(f)),
            TO_DO_STOPPED,
        ),
        Phase::Running | Phase::Failed => running(f, behind),
    }
}

/// Running: committing slowly, behind, in flight, waiting for input or up to date.
fn running(f: &Facts, behind: Option<&Behind>) -> Judged {
    let slow = f.limits.commit_slow().as_secs_f64();
    if let Some(b) = behind.filter(|b| b.stage == "committing" && b.stage_seconds > slow) {
        let summary = format!(
            "committing slowly: epoch {} has been committing for {} (slow past {})",
            b.oldest_waiting_epoch,
            span(b.stage_seconds),
            span(slow)
        );
        return (RunState::CommittingSlowly, false, summary, TO_DO_SLOW);
    }
    if let Some(b) = behind {
        let summary = format!(
            "{} not committed (at most {} is ready); {}",
            chunks(b.chunks),
            f.limits.ready_max_lag,
            oldest_line(b)
        );
        return match b.chunks > f.limits.ready_max_lag {
            true => (
                RunState::Behind,
                false,
                format!("behind: {summary}"),
                TO_DO_BEHIND,
            ),
            false => (
                RunState::UpToDate,
                true,
                format!(
                    "up to date: {} in flight; {}",
                    chunks(b.chunks),
                    oldest_line(b)
                ),
                TO_DO_UP_TO_DATE,
            ),
        };
    }
    if f.live {
        return waiting(f);
    }
    let summary = format!("up to date{}", committed_through(f));
    (RunState::UpToDate, true, summary, TO_DO_UP_TO_DATE)
}

/// Live, nothing to commit: ready unless the landing is missing or idle too long.
fn waiting(f: &Facts) -> Judged {
    let listed = match f.landing_listed_ms {
        Some(ms) => format!("landing listed {} ago", span(seconds_between(ms, f.now_ms))),
        None => "landing not listed yet".into(),
    };
    if let Some(why) = &f.landing_missing {
        let summary = format!("waiting for input: {why}; {listed}");
        return (RunState::WaitingForInput, false, summary, TO_DO_MISSING);
    }
    let idle = seconds_between(f.last_chunk_ms.unwrap_or(f.started_ms), f.now_ms);
    let last = match f.last_chunk_ms {
        Some(_) => format!("last chunk {} ago", span(idle)),
        None => format!("no chunk since the start {} ago", span(idle)),
    };
    if f.last_chunk_ms.is_some() && idle <= f.limits.quiet_after().as_secs_f64() {
        let summary = format!("up to date: {last}, {listed}");
        return (RunState::UpToDate, true, summary, TO_DO_UP_TO_DATE);
    }
    match f.ready_max_idle_passed(idle) {
        Some(max) => {
            let summary = format!(
                "waiting for input: {last}, more than --ready-max-idle {}; {listed}",
                span(max)
            );
            (RunState::WaitingForInput, false, summary, TO_DO_IDLE)
        }
        None => (
            RunState::WaitingForInput,
            true,
            format!("waiting for input: {last}, {listed}"),
            TO_DO_WAITING,
        ),
    }
}

impl Facts {
    /// `--ready-max-idle` in seconds, when `idle` seconds exceed it.
    fn ready_max_idle_passed(&self, idle: f64) -> Option<f64> {
        let max = self.limits.ready_max_idle?.as_secs_f64();
        (idle > max).then_some(max)
    }
}

fn recovering_summary(recovering: Option<&Recovering>) -> String {
    match recovering {
        Some(r) => format!(
            "recovering: replayed {} of {} committed epochs (from {})",
            r.replayed, r.to_replay, r.source
        ),
        None => "recovering: replaying committed epochs".into(),
    }
}

fn committed_through(f: &Facts) -> String {
    match f.last_committed {
        Some(epoch) => format!(", committed through epoch {epoch}"),
        None => String::new(),
    }
}

fn oldest_line(b: &Behind) -> String {
    format!(
        "oldest, epoch {}, waiting {} ({} for {})",
        b.oldest_waiting_epoch,
        span(b.oldest_waiting_seconds),
        b.stage,
        span(b.stage_seconds)
    )
}

fn chunks(n: u64) -> String {
    match n {
        1 => "1 chunk".into(),
        n => format!("{n} chunks"),
    }
}

fn seconds_between(from_ms: i64, to_ms: i64) -> f64 {
    (to_ms - from_ms).max(0) as f64 / 1000.0
}

/// A length of time for a person: `24 s`, `3 min 5 s`, `2 h 4 min`.
pub(crate) fn span(seconds: f64) -> String {
    let s = seconds.max(0.0).round() as u64;
    match s {
        0..120 => format!("{s} s"),
        120..7200 => format!("{} min {} s", s / 60, s % 60),
        _ => format!("{} h {} min", s / 3600, s % 3600 / 60),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn running() -> Facts {
        Facts {
            phase: Phase::Running,
            failure: None,
            stall: None,
            live: true,
            now_ms: 100_000,
            started_ms: 10_000,
            lag_chunks: 0,
            oldest: None,
            last_chunk_ms: Some(76_000),
            landing_listed_ms: Some(99_000),
            landing_missing: None,
            recovering: None,
            last_committed: Some(7),
            limits: Limits {
                ready_max_lag: 2,
                ready_max_idle: None,
                stall_timeout: Duration::from_secs(300),
            },
        }
    }

    fn in_flight(f: &mut Facts, chunks: u64, stage: Stage, stage_seconds: f64) {
        f.lag_chunks = chunks;
        f.oldest = Some(Oldest {
            epoch: 8,
            waiting_seconds: 12.0,
            stage,
            stage_seconds,
        });
    }

    fn state_of(f: &Facts) -> (RunState, bool) {
        let a = assess(f);
        (a.state, a.ready)
    }

    #[test]
    fn the_first_condition_that_holds_decides() {
        let mut f = running();
        in_flight(&mut f, 9, Stage::Committing, 500.0);
        f.stall = Some("stalled: no epoch committed for 300 s".into());
        f.phase = Phase::Failed;
        f.failure = Some("the state store is gone".into());
        let a = assess(&f);
        assert_eq!((a.state, a.ready), (RunState::Stalled, false));
        assert_eq!(a.detail.summary, "stalled: no epoch committed for 300 s");
        f.stall = None;
        let a = assess(&f);
        assert_eq!((a.state, a.ready), (RunState::Failed, false));
        assert_eq!(a.detail.summary, "failed: the state store is gone");
        for (phase, state, ready) in [
            (Phase::Starting, RunState::Starting, false),
            (Phase::Recovering, RunState::Recovering, false),
            (Phase::Ended, RunState::Ended, true),
            (Phase::Stopped, RunState::Stopped, false),
            (Phase::Running, RunState::CommittingSlowly, false),
        ] {
            f.phase = phase;
            assert_eq!(state_of(&f), (state, ready), "{phase:?}");
        }
    }

    #[test]
    fn a_commit_is_slow_past_a_quarter_of_the_stall_timeout_and_at_least_5_s() {
        let mut f = running();
        in_flight(&mut f, 1, Stage::Committing, 74.0);
        assert_eq!(state_of(&f), (RunState::UpToDate, true));
        in_flight(&mut f, 1, Stage::Committing, 76.0);
        let a = assess(&f);
        assert_eq!((a.state, a.ready), (RunState::CommittingSlowly, false));
        assert_eq!(
            a.detail.summary,
            "committing slowly: epoch 8 has been committing for 76 s (slow past 75 s)"
        );
        f.limits.stall_timeout = Duration::ZERO;
        in_flight(&mut f, 1, Stage::Committing, 4.0);
        assert_eq!(state_of(&f), (RunState::UpToDate, true));
        in_flight(&mut f, 1, Stage::Committing, 6.0);
        assert_eq!(state_of(&f).0, RunState::CommittingSlowly);
        // A long compute is not a slow commit.
        in_flight(&mut f, 1, Stage::Computing, 600.0);
        assert_eq!(state_of(&f), (RunState::UpToDate, true));
    }

    #[test]
    fn more_chunks_than_the_lag_allows_are_behind_fewer_are_in_flight() {
        let mut f = running();
        in_flight(&mut f, 3, Stage::Computing, 2.0);
        let a = assess(&f);
        assert_eq!((a.state, a.ready), (RunState::Behind, false));
        assert_eq!(
            a.detail.summary,
            "behind: 3 chunks not committed (at most 2 is ready); oldest, epoch 8, waiting \
             12 s (computing for 2 s)"
        );
        let behind = a.detail.behind.unwrap();
        assert_eq!((behind.chunks, behind.stage), (3, "computing"));
        in_flight(&mut f, 2, Stage::Fetching, 1.0);
        let a = assess(&f);
        assert_eq!((a.state, a.ready), (RunState::UpToDate, true));
        assert_eq!(
            a.detail.summary,
            "up to date: 2 chunks in flight; oldest, epoch 8, waiting 12 s (fetching for 1 s)"
        );
        assert_eq!(a.detail.behind.unwrap().oldest_waiting_epoch, 8);
    }

    #[test]
    fn a_live_run_with_nothing_to_commit_waits_for_input() {
        let f = running();
        let a = assess(&f);
        assert_eq!((a.state, a.ready), (RunState::WaitingForInput, true));
        assert_eq!(
            a.detail.summary,
            "waiting for input: last chunk 24 s ago, landing listed 1 s ago"
        );
        assert_eq!(a.detail.since_last_chunk_seconds, Some(24.0));
        assert_eq!(a.detail.what_to_do, Some(TO_DO_WAITING));
        assert!(!a.detail.landing_missing && a.detail.behind.is_none());
        // A replay with nothing to commit is up to date.
        let replay = Facts {
            live: false,
            ..running()
        };
        let a = assess(&replay);
        assert_eq!((a.state, a.ready), (RunState::UpToDate, true));
        assert_eq!(a.detail.summary, "up to date, committed through epoch 7");
    }

    #[test]
    fn a_live_run_is_up_to_date_until_its_landing_is_quiet() {
        let mut f = running();
        f.last_chunk_ms = Some(f.now_ms - 3_000);
        let a = assess(&f);
        assert_eq!((a.state, a.ready), (RunState::UpToDate, true));
        assert_eq!(
            a.detail.summary,
            "up to date: last chunk 3 s ago, landing listed 1 s ago"
        );
        f.last_chunk_ms = Some(f.now_ms - 11_000);
        assert_eq!(state_of(&f), (RunState::WaitingForInput, true));
        // A shorter --ready-max-idle: quiet (and not ready) past it.
        f.last_chunk_ms = Some(f.now_ms - 3_000);
        f.limits.ready_max_idle = Some(Duration::from_secs(2));
        assert_eq!(state_of(&f), (RunState::WaitingForInput, false));
    }

    #[test]
    fn a_missing_landing_is_not_ready() {
        let mut f = running();
        f.landing_missing = Some("the landing directory /x does not exist".into());
        f.landing_listed_ms = None;
        let a = assess(&f);
        assert_eq!((a.state, a.ready), (RunState::WaitingForInput, false));
        assert!(a.detail.landing_missing);
        assert_eq!(
            a.detail.summary,
            "waiting for input: the landing directory /x does not exist; landing not listed yet"
        );
        assert_eq!(a.detail.what_to_do, Some(TO_DO_MISSING));
    }

    #[test]
    fn an_idle_landing_is_not_ready_past_ready_max_idle() {
        let mut f = running();
        f.limits.ready_max_idle = Some(Duration::from_secs(30));
        assert_eq!(state_of(&f), (RunState::WaitingForInput, true));
        f.limits.ready_max_idle = Some(Duration::from_secs(20));
        let a = assess(&f);
        assert_eq!((a.state, a.ready), (RunState::WaitingForInput, false));
        assert_eq!(
            a.detail.summary,
            "waiting for input: last chunk 24 s ago, more than --ready-max-idle 20 s; landing \
             listed 1 s ago"
        );
        // No chunk yet: idle since the start.
        f.last_chunk_ms = None;
        let a = assess(&f);
        assert!(!a.ready);
        assert!(a
            .detail
            .summary
            .contains("no chunk since the start 90 s ago"));
    }

    #[test]
    fn recovery_shows_its_progress_and_every_state_says_what_to_do() {
        let mut f = running();
        f.phase = Phase::Recovering;
        f.recovering = Some(Recovering {
            source: "checkpoint",
            replayed: 3,
            to_replay: 10,
        });
        let a = assess(&f);
        assert_eq!(
            a.detail.summary,
            "recovering: replayed 3 of 10 committed epochs (from checkpoint)"
        );
        assert_eq!(a.detail.recovering.unwrap().replayed, 3);
        f.phase = Phase::Running;
        assert_eq!(assess(&f).detail.recovering, None);
        for phase in [Phase::Starting, Phase::Ended, Phase::Stopped, Phase::Failed] {
            f.phase = phase;
            assert!(assess(&f).detail.what_to_do.is_some_and(|l| !l.is_empty()));
        }
    }

    #[test]
    fn spans_read_as_seconds_minutes_or_hours() {
        assert_eq!(span(24.4), "24 s");
        assert_eq!(span(185.0), "3 min 5 s");
        assert_eq!(span(7440.0), "2 h 4 min");
        assert_eq!(RunState::WaitingForInput.words(), "waiting for input");
    }
}
