//! What the command line draws on the terminal besides its results: the live status
//! line, the conversion progress bar, outage lines of a sender, and the summary.

use std::cell::Cell;
use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::time::{Duration, Instant};

use canmc::convert::FileFormat;
use canmc::send::SendHealth;
use canmc::summary::Summary;
use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// A live status line on stderr while a command runs ("N frames  R frames/s  drops D
/// gaps G"), drawn by indicatif when stderr is a terminal and hidden otherwise. It is
/// redrawn at most twice a second, never from the per-frame path.
pub(crate) struct StatusLine {
    bar: Option<ProgressBar>,
    last: Instant,
}

impl StatusLine {
    /// A status line, drawn only if `enabled` and stderr is a terminal.
    pub(crate) fn new(enabled: bool) -> Self {
        let bar = (enabled && io::stderr().is_terminal()).then(|| {
            let bar = ProgressBar::with_draw_target(None, ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("{msg}")
                    .unwrap_or_else(|_| ProgressStyle::default_spinner()),
            );
            bar
        });
        StatusLine {
            bar,
            last: Instant::now(),
        }
    }

    /// Shows `frames` and their rate since `start`, and `(drops, gaps)` if given; does
    /// nothing when called again within half a second.
    pub(crate) fn update(&mut self, start: Instant, frames: u64, losses: Option<(u64, u64)>) {
        let Some(bar) = &self.bar else { return };
        if self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        let rate = frames as f64 / start.elapsed().as_secs_f64().max(1e-9);
        bar.set_message(match losses {
            Some((drops, gaps)) => {
                format!("{frames} frames  {rate:.0} frames/s  drops {drops} gaps {gaps}")
            }
            None => format!("{frames} frames  {rate:.0} frames/s"),
        });
    }

    /// Removes the line (before the summary is printed).
    pub(crate) fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}

pub(crate) fn print_summary(sum: &Summary, json: bool) {
    if json {
        println!("{}", sum.to_json());
    } else {
        eprintln!("{}", sum.to_text());
    }
}

/// Tells the user on stderr when a sender's group becomes unreachable and when it is
/// back (`gen` and `replay` ride outages out unless `--stop-on-error`).
pub(crate) struct OutageReport {
    command: &'static str,
    health: Arc<SendHealth>,
    /// When the outage being reported was noticed.
    began: Cell<Option<Instant>>,
}

impl OutageReport {
    pub(crate) fn new(command: &'static str, health: Arc<SendHealth>) -> OutageReport {
        OutageReport {
            command,
            health,
            began: Cell::new(None),
        }
    }

    pub(crate) fn check(&self) {
        match (self.health.failing(), self.began.get()) {
            (Some(e), None) => {
                eprintln!(
                    "canmc {}: cannot reach the group: {e}; frames are counted as unsent \
                     until it is back (--stop-on-error to exit instead)",
                    self.command
                );
                self.began.set(Some(Instant::now()));
            }
            (None, Some(t)) => {
                eprintln!(
                    "canmc {}: sending again after {:.1} s; {} datagrams were not sent",
                    self.command,
                    t.elapsed().as_secs_f64(),
                    self.health.unsent_in_outage()
                );
                self.began.set(None);
            }
            _ => {}
        }
    }

    /// The last word on an outage still going on when the command ends.
    pub(crate) fn finish(&self) {
        self.check();
        if let Some(t) = self.began.get() {
            eprintln!(
                "canmc {}: the group was still unreachable at the end ({:.1} s); {} datagrams \
                 were not sent",
                self.command,
                t.elapsed().as_secs_f64(),
                self.health.unsent_in_outage()
            );
        }
    }
}

/// A progress bar on stderr for long conversions (inputs over 8 MiB), drawn by
/// indicatif when stderr is a terminal. The total is estimated from the input's size and
/// its format's typical bytes per event, so the bar stops at 99 % until the end.
pub(crate) struct Progress {
    bar: Option<ProgressBar>,
    estimate: u64,
    done: u64,
}

impl Progress {
    /// A bar for converting `total_bytes` of `format`.
    pub(crate) fn new(total_bytes: u64, format: FileFormat) -> Progress {
        let per_event = match format {
            FileFormat::Cmc => 32,
            FileFormat::Log => 40,
            FileFormat::Asc | FileFormat::Trc => 60,
            FileFormat::Pcap | FileFormat::Pcapng => 48,
            // Compressed containers: about 8 bytes per classic frame.
            FileFormat::Blf => 8,
            // Uncompressed records are 84 bytes, deflated ones a few.
            FileFormat::Mf4 => 40,
            FileFormat::Parquet => 8,
        };
        let estimate = (total_bytes / per_event).max(1);
        let bar = (io::stderr().is_terminal() && total_bytes > 8 << 20).then(|| {
            let bar = ProgressBar::with_draw_target(Some(estimate), ProgressDrawTarget::stderr());
            bar.set_style(
                ProgressStyle::with_template("[{bar:25}] ~{percent:>2}%  {msg} events")
                    .unwrap_or_else(|_| ProgressStyle::default_bar())
                    .progress_chars("## "),
            );
            bar
        });
        Progress {
            bar,
            estimate,
            done: 0,
        }
    }

    /// One more event converted; the bar moves every 4096 events (indicatif limits the
    /// redraws to its own rate).
    pub(crate) fn tick(&mut self) {
        self.done += 1;
        let Some(bar) = &self.bar else { return };
        if self.done % 4096 != 0 {
            return;
        }
        bar.set_message(self.done.to_string());
        bar.set_position(self.done.min(self.estimate * 99 / 100));
    }

    /// Removes the bar.
    pub(crate) fn clear(&self) {
        if let Some(bar) = &self.bar {
            bar.finish_and_clear();
        }
    }
}
