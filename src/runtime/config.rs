//! The timely configuration of a run: `-w`, `-n`, `-p`, `-h` and their bounds.

use std::path::PathBuf;
use std::time::Duration;

use timely::CommunicationConfig;

use crate::error::{Error, Result};
use crate::objectstore::file::{read_regular_text, MAX_HOSTFILE_BYTES};

/// `ensure!(condition, "format", args…)`: a configuration error unless `condition` holds.
macro_rules! ensure {
    ($cond:expr, $($fmt:tt)+) => {
        if !$cond {
            return Err(Error::configuration(format!($($fmt)+)));
        }
    };
}

/// Timely execution options (`-w`, `-n`, `-p`, `-h`).
#[derive(Clone, Debug)]
pub struct TimelyOptions {
    pub workers: usize,
    pub processes: usize,
    pub process: usize,
    pub hostfile: Option<PathBuf>,
    /// Cluster mode: give up (a typed error) when not every process has connected within this time.
    pub connect_timeout: Duration,
}

/// Default of [`TimelyOptions::connect_timeout`] (`--connect-timeout`).
pub const DEFAULT_CONNECT_TIMEOUT: Duration = Duration::from_secs(60);

/// The most worker threads per process (`-w`).
///
/// Each worker steps every operator at every epoch, every data exchange has a channel
/// between every pair of workers, and timely's progress protocol is all-to-all, so a
/// process's memory grows with `-w × (-w × -n)` and an epoch's fixed cost with the square of
/// the workers. Measured on the release build (2 cores, a replay of 30 chunks of 100 rows):
/// `-w 1` 0.2 s and 13 MB, `-w 16` 0.7 s, `-w 64` 5 s and 60 MB, `-w 128` 26 s and 130 MB,
/// `-w 256` 114 s and 350 MB; `-w 1000` passed 3.6 GB in 2 minutes without committing an
/// epoch, and under a 4 GB address-space limit aborted ("memory allocation of 80000 bytes
/// failed"). Threads beyond the cores never help; 64 covers the cores of all but the largest
/// machines, and more are run as several processes (`-n`).
pub const MAX_WORKERS: usize = 64;

/// The most processes in a cluster (`-n`): every pair of processes holds a TCP connection,
/// and each process runs a send and a receive thread per peer. (A huge `-n` used to allocate
/// one default address per process before anything else, and ports `2101 + i` run out past
/// 63,434 processes.)
pub const MAX_PROCESSES: usize = 64;

/// The most workers in a cluster (`-w × -n`): the progress messages of an epoch grow with the
/// square of the cluster's workers, and each process's channels with `-w` times this.
pub const MAX_TOTAL_WORKERS: usize = 256;

impl TimelyOptions {
    /// Checks `-w`, `-n` and `-p` against their ranges ([`MAX_WORKERS`], [`MAX_PROCESSES`],
    /// [`MAX_TOTAL_WORKERS`]); the error is one line naming the option.
    pub fn validate(&self) -> Result<()> {
        ensure!(self.workers >= 1, "-w must be at least 1");
        ensure!(
            self.workers <= MAX_WORKERS,
            "-w {} is above the maximum of {MAX_WORKERS} worker threads per process",
            self.workers
        );
        ensure!(self.processes >= 1, "-n must be at least 1");
        ensure!(
            self.processes <= MAX_PROCESSES,
            "-n {} is above the maximum of {MAX_PROCESSES} processes",
            self.processes
        );
        ensure!(
            self.workers * self.processes <= MAX_TOTAL_WORKERS,
            "-w {} with -n {} makes {} workers, above the maximum of {MAX_TOTAL_WORKERS} workers \
             in a cluster",
            self.workers,
            self.processes,
            self.workers * self.processes
        );
        ensure!(
            self.process < self.processes,
            "-p {} is out of range for -n {}",
            self.process,
            self.processes
        );
        Ok(())
    }
}

impl Default for TimelyOptions {
    fn default() -> Self {
        TimelyOptions {
            workers: 1,
            processes: 1,
            process: 0,
            hostfile: None,
            connect_timeout: DEFAULT_CONNECT_TIMEOUT,
        }
    }
}

/// Builds timely's configuration from our own parsed options (timely's `-h` would clash with `--help`).
pub(crate) fn timely_config(t: &TimelyOptions) -> Result<timely::Config> {
    let communication = if t.processes > 1 {
        let addresses = match &t.hostfile {
            Some(path) => {
                let text = read_regular_text(path, MAX_HOSTFILE_BYTES).map_err(|e| {
                    Error::configuration(format!("reading the hostfile {}: {e}", path.display()))
                })?;
                let hosts: Vec<String> = text
                    .lines()
                    .map(str::trim)
                    .filter(|l| !l.is_empty())
                    .map(String::from)
                    .take(t.processes)
                    .collect();
                ensure!(
                    hosts.len() == t.processes,
                    "hostfile {} lists {} addresses but -n is {}",
                    path.display(),
                    hosts.len(),
                    t.processes
                );
                hosts
            }
            None => (0..t.processes)
                .map(|i| format!("localhost:{}", 2101 + i))
                .collect(),
        };
        CommunicationConfig::Cluster {
            threads: t.workers,
            process: t.process,
            addresses,
            report: false,
            zerocopy: false,
        }
    } else if t.workers > 1 {
        CommunicationConfig::Process(t.workers)
    } else {
        CommunicationConfig::Thread
    };
    Ok(timely::Config {
        communication,
        worker: timely::WorkerConfig::default(),
    })
}
