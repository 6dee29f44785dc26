//! The end-of-run summary every long-running command prints: as text for people, or as
//! one JSON object (`--json`) for scripts.

use std::fmt::Write as _;
use std::time::Duration;

use crate::wire::DecodeError;

/// Totals of one run.
#[derive(Debug, Clone, Default)]
pub struct Summary {
    /// `dump`, `gen`, `record`, …
    pub command: &'static str,
    /// Receive path in use (`uring`, `mmsg`), for receiving commands.
    pub io: Option<&'static str>,
    pub frames: u64,
    pub datagrams: u64,
    pub bytes: u64,
    pub elapsed: Duration,
    pub decode_errors: [u64; DecodeError::COUNT],
    pub kernel_drops: u64,
    pub ring_drops: u64,
    pub seq_gaps: u64,
    /// Native datagrams received twice (their frames were kept once).
    pub duplicates: u64,
    /// Native datagrams that arrived after a later one.
    pub reordered: u64,
    /// Native senders seen.
    pub senders: u64,
    /// Frames dropped by a filter (own frames, `--source`, ID filters).
    pub filtered: u64,
    /// Sending commands: datagrams discarded while the group was unreachable.
    pub unsent: u64,
    /// Sending commands: network outages ridden out.
    pub outages: u64,
}

impl Summary {
    pub fn decode_errors_total(&self) -> u64 {
        self.decode_errors.iter().sum()
    }

    /// Frames per second over the run.
    pub fn rate(&self) -> f64 {
        let secs = self.elapsed.as_secs_f64();
        if secs > 0.0 {
            self.frames as f64 / secs
        } else {
            0.0
        }
    }

    /// One JSON object on one line, no trailing newline.
    pub fn to_json(&self) -> String {
        let mut s = String::with_capacity(512);
        let _ = write!(s, "{{\"command\":\"{}\"", self.command);
        if let Some(io) = self.io {
            let _ = write!(s, ",\"io\":\"{io}\"");
        }
        let _ = write!(
            s,
            ",\"frames\":{},\"datagrams\":{},\"bytes\":{},\"elapsed_s\":{:.6},\"rate_fps\":{:.1}",
            self.frames,
            self.datagrams,
            self.bytes,
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        s.push_str(",\"decode_errors\":{");
        for (i, kind) in DecodeError::ALL.iter().enumerate() {
            if i > 0 {
                s.push(',');
            }
            let _ = write!(s, "\"{}\":{}", kind.name(), self.decode_errors[i]);
        }
        let _ = write!(
            s,
            "}},\"decode_errors_total\":{},\"kernel_drops\":{},\"ring_drops\":{},\"seq_gaps\":{},\"duplicates\":{},\"reordered\":{},\"senders\":{},\"filtered\":{},\"unsent\":{},\"outages\":{}}}",
            self.decode_errors_total(),
            self.kernel_drops,
            self.ring_drops,
            self.seq_gaps,
            self.duplicates,
            self.reordered,
            self.senders,
            self.filtered,
            self.unsent,
            self.outages
        );
        s
    }

    /// A few lines for people; decode errors are listed by kind when there are any.
    pub fn to_text(&self) -> String {
        let mut s = String::new();
        let _ = write!(
            s,
            "canmc {}: {} frames, {} datagrams, {} bytes in {:.3} s ({:.0} frames/s)",
            self.command,
            self.frames,
            self.datagrams,
            self.bytes,
            self.elapsed.as_secs_f64(),
            self.rate()
        );
        if let Some(io) = self.io {
            let _ = write!(s, " via {io}");
        }
        let _ = write!(
            s,
            "\n  decode errors {}, kernel drops {}, ring drops {}, sequence gaps {}, filtered {}",
            self.decode_errors_total(),
            self.kernel_drops,
            self.ring_drops,
            self.seq_gaps,
            self.filtered
        );
        if self.duplicates + self.reordered > 0 {
            let _ = write!(
                s,
                "\n  native datagrams duplicated {}, reordered {}",
                self.duplicates, self.reordered
            );
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
            for (i, kind) in DecodeError::ALL.iter().enumerate() {
                if self.decode_errors[i] > 0 {
                    let _ = write!(s, " {}={}", kind.name(), self.decode_errors[i]);
                }
            }
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn json_has_every_counter() {
        let mut sum = Summary {
            command: "dump",
            io: Some("uring"),
            frames: 10,
            datagrams: 10,
            bytes: 1800,
            elapsed: Duration::from_secs(2),
            kernel_drops: 3,
            ..Default::default()
        };
        sum.decode_errors[DecodeError::NotMsgpack as usize] = 2;
        let j = sum.to_json();
        assert!(
            j.starts_with("{\"command\":\"dump\",\"io\":\"uring\",\"frames\":10,"),
            "{j}"
        );
        assert!(j.contains("\"rate_fps\":5.0"), "{j}");
        assert!(j.contains("\"not_msgpack\":2"), "{j}");
        assert!(
            j.contains("\"decode_errors_total\":2,\"kernel_drops\":3"),
            "{j}"
        );
        assert_eq!(j.matches('{').count(), j.matches('}').count());
        let t = sum.to_text();
        assert!(
            t.contains("not_msgpack=2") && t.contains("kernel drops 3"),
            "{t}"
        );
    }
}
