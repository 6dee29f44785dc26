//! What the command line draws on the terminal besides its results: the live status
//! line, the conversion progress bar, outage lines of a sender, and the summary.

use std::cell::Cell;
use std::io::{self, IsTerminal};
use std::sync::Arc;
use std::time::{Duration, Instant};

use canmc::convert::FileFormat;
use canmc::send::SendHealth;
use canmc::summary::Summary;

/// Prints a live status line on stderr while a command runs, when stderr is a terminal.
pub(crate) struct StatusLine {
    enabled: bool,
    last: Instant,
}

impl StatusLine {
    pub(crate) fn new(enabled: bool) -> Self {
        StatusLine {
            enabled: enabled && io::stderr().is_terminal(),
            last: Instant::now(),
        }
    }

    pub(crate) fn update(&mut self, start: Instant, frames: u64, extra: &str) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r\x1b[K{frames} frames  {:.0} frames/s  {extra}",
            frames as f64 / secs
        );
    }

    pub(crate) fn clear(&self) {
        if self.enabled {
            eprint!("\r\x1b[K");
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

/// A progress bar on stderr for long conversions, when stderr is a terminal. The total
/// is estimated from the input's size and its format's typical bytes per event.
pub(crate) struct Progress {
    enabled: bool,
    estimate: u64,
    done: u64,
    last: Instant,
}

impl Progress {
    pub(crate) fn new(total_bytes: u64, format: FileFormat) -> Progress {
        let per_event = match format {
            FileFormat::Cmc => 32,
            FileFormat::Log => 40,
            FileFormat::Asc => 60,
            FileFormat::Pcap | FileFormat::Pcapng => 48,
            // Uncompressed records are 84 bytes, deflated ones a few.
            FileFormat::Mf4 => 40,
            FileFormat::Parquet => 8,
        };
        Progress {
            enabled: io::stderr().is_terminal() && total_bytes > 8 << 20,
            estimate: (total_bytes / per_event).max(1),
            done: 0,
            last: Instant::now(),
        }
    }

    pub(crate) fn tick(&mut self) {
        self.done += 1;
        if !self.enabled
            || self.done % 4096 != 0
            || self.last.elapsed() < Duration::from_millis(200)
        {
            return;
        }
        self.last = Instant::now();
        let pct = (self.done * 100 / self.estimate).min(99);
        let filled = (pct / 4) as usize;
        eprint!(
            "\r\x1b[K[{}{}] ~{pct:>2}%  {} events",
            "#".repeat(filled),
            " ".repeat(25 - filled),
            self.done
        );
    }

    pub(crate) fn clear(&self) {
        if self.enabled {
            eprint!("\r\x1b[K");
        }
    }
}
