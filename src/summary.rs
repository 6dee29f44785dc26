//! The end-of-run summary every long-running command prints: as text for people, or as
//! one JSON object (`--json`) for scripts. Both come from the engine's one counter list
//! ([`Stats`]), so a counter added there shows up here.

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::fmt::Write as _;
use std::time::Duration;

use serde::Serialize;

use crate::engine::{Show, Stats};
use crate::wire::DecodeError;

/// Totals of one run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// `dump`, `gen`, `record`, …
    pub command: &'static str,
    /// Receive path in use (`uring`, `mmsg`), for receiving commands.
    pub io: Option<&'static str>,
    /// Receiving commands: whether UDP GRO was on (see [`Stats::coalesced`]).
    pub gro: Option<bool>,
    /// The counters. Receiving commands: the engine's, with `frames` the frames the
    /// command kept and `filtered` including its ID filters. Sending commands: frames,
    /// datagrams and bytes sent.
    pub stats: Stats,
    /// How long the run took.
    pub elapsed: Duration,
    /// Sending commands: datagrams discarded while the group was unreachable.
    pub unsent: u64,
    /// Sending commands: network outages ridden out.
    pub outages: u64,
}

/// The JSON form: the command, the counters of [`Stats`] by their keys, then timing
/// and the sending side.
#[derive(Serialize)]
struct Json<'a> {
    command: &'a str,
    #[serde(skip_serializing_if = "Option::is_none")]
    io: Option<&'a str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    gro: Option<bool>,
    #[serde(flatten)]
    stats: &'a Stats,
    elapsed_s: f64,
    rate_fps: f64,
    unsent: u64,
    outages: u64,
}

impl Summary {
    /// All decode errors together.
    pub fn decode_errors_total(&self) -> u64 {
        self.stats.decode_errors_total()
    }

    /// Frames per second over the run.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.stats.frames as f64 / secs
        } else {
            0.0
        }
    }

    /// One JSON object on one line, no trailing newline. Elapsed seconds are rounded to
    /// microseconds, the rate to a tenth of a frame per second.
    pub fn to_json(&self) -> String {
        let round = |x: f64, scale: f64| (x * scale).round() / scale;
        let json = Json {
            command: self.command,
            io: self.io,
            gro: self.gro,
            stats: &self.stats,
            elapsed_s: round(self.elapsed.as_secs_f64(), 1e6),
            rate_fps: round(self.rate(), 10.0),
            unsent: self.unsent,
            outages: self.outages,
        };
        // Serializing numbers and strings into a String cannot fail.
        serde_json::to_string(&json).unwrap_or_default()
    }

    /// A few lines for people; decode errors are listed by kind when there are any.
    pub fn to_text(&self) -> String {
        let counts = || Stats::TEXT.iter().zip(self.stats.values());
        let joined = |show: Show, value_first: bool| {
            counts()
                .filter(|((_, s), _)| *s == show)
                .map(|((label, _), v)| {
                    if value_first {
                        format!("{v} {label}")
                    } else {
                        format!("{label} {v}")
                    }
                })
                .collect::<Vec<_>>()
                .join(", ")
        };
        let mut s = format!(
            "canmc {}: {} in {:.3} s ({:.0} frames/s)",
            self.command,
            joined(Show::Headline, true),
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        if let Some(io) = self.io {
            let _ = write!(s, " via {io}");
        }
        match self.gro {
            Some(true) => {
                let _ = write!(s, ", GRO on ({} coalesced receives)", self.stats.coalesced);
            }
            Some(false) => s.push_str(", GRO off"),
            None => {}
        }
        let _ = write!(
            s,
            "\n  decode errors {}, {}",
            self.decode_errors_total(),
            joined(Show::Always, false)
        );
        if counts().any(|((_, show), v)| *show == Show::Native && v > 0) {
            let _ = write!(s, "\n  native datagrams {}", joined(Show::Native, false));
        }
        if self.outages > 0 {
            let _ = write!(
                s,
                "\n  group unreachable {} time(s): {} datagrams not sent",
                self.outages, self.unsent
            );
        }
        if self.decode_errors_total() > 0 {
            s.push_str("\n  decode errors by kind:");
            for kind in DecodeError::ALL {
                let n = self.stats.decode_error(kind);
                if n > 0 {
                    let _ = write!(s, " {}={n}", kind.name());
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Summary {
        let mut sum = Summary {
            command: "dump",
            io: Some("uring"),
            stats: Stats {
                frames: 10,
                datagrams: 10,
                bytes: 1800,
                kernel_drops: 3,
                ..Default::default()
            },
            elapsed: Duration::from_secs(2),
            ..Default::default()
        };
        sum.stats.decode_errors[DecodeError::NotMsgpack as usize] = 2;
        sum
    }

    #[test]
    fn json_has_every_counter() {
        let sum = sample();
        let j = sum.to_json();
        assert!(
            j.starts_with("{\"command\":\"dump\",\"io\":\"uring\",\"frames\":10,"),
            "{j}"
        );
        let v: serde_json::Value = serde_json::from_str(&j).unwrap();
        assert_eq!(v["rate_fps"], 5.0, "{j}");
        assert_eq!(v["elapsed_s"], 2.0, "{j}");
        assert_eq!(v["decode_errors"]["not_msgpack"], 2, "{j}");
        assert_eq!(v["decode_errors_total"], 2, "{j}");
        assert_eq!(v["kernel_drops"], 3, "{j}");
        for key in Stats::KEYS.iter().chain(&["unsent", "outages"]) {
            assert!(v[key].is_u64(), "{key} missing: {j}");
        }
        for kind in DecodeError::ALL {
            assert!(v["decode_errors"][kind.name()].is_u64(), "{j}");
        }
        assert_eq!(v["coalesced"], 0, "{j}");
        // A send-only summary has no `io` or `gro`.
        let send = Summary {
            command: "gen",
            ..Default::default()
        };
        let v: serde_json::Value = serde_json::from_str(&send.to_json()).unwrap();
        assert!(v.get("io").is_none());
        assert!(v.get("gro").is_none());
        let gro = Summary {
            gro: Some(true),
            ..sample()
        };
        let j = gro.to_json();
        assert!(j.contains("\"io\":\"uring\",\"gro\":true,"), "{j}");
    }

    #[test]
    fn text_reads_as_before() {
        let t = sample().to_text();
        assert_eq!(
            t,
            "canmc dump: 10 frames, 10 datagrams, 1800 bytes in 2.000 s (5 frames/s) via uring\n  \
             decode errors 2, kernel drops 3, ring drops 0, sequence gaps 0, filtered 0\n  \
             decode errors by kind: not_msgpack=2"
        );
        let mut g = sample();
        g.gro = Some(true);
        g.stats.coalesced = 3;
        assert!(
            g.to_text()
                .contains("(5 frames/s) via uring, GRO on (3 coalesced receives)\n"),
            "{}",
            g.to_text()
        );
        g.gro = Some(false);
        assert!(g.to_text().contains("via uring, GRO off\n"));
        let mut s = sample();
        s.stats.duplicates = 4;
        s.outages = 1;
        s.unsent = 7;
        let t = s.to_text();
        assert!(
            t.contains("\n  native datagrams duplicated 4, reordered 0\n"),
            "{t}"
        );
        assert!(
            t.contains("group unreachable 1 time(s): 7 datagrams not sent"),
            "{t}"
        );
    }
}
