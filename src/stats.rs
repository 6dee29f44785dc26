//! Capture statistics: what a stream of events holds — frames by kind, time span and
//! rate, frames per ID, senders, and losses (sequence gaps, kernel drops). Fed one
//! event at a time, from a file (`canmc info`) or a live stream; printed as text or,
//! through [`CaptureStats::summary`], as JSON with serde.
//!
//! Feeding is not meant for a zero-allocation hot path: the per-ID table grows with
//! each new ID and the sender set with each new sender.

use std::collections::{BTreeSet, HashMap};
use std::fmt;
use std::net::SocketAddr;
use std::time::Duration;

use serde::Serialize;

use crate::event::Event;
use crate::frame::CanFrame;

/// How many frames of each kind. A frame is standard or extended, and may also be
/// remote, error or FD; the last three are counted apart.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct FrameKinds {
    /// Frames with an 11-bit ID.
    pub standard: u64,
    /// Frames with a 29-bit ID.
    pub extended: u64,
    /// Remote (RTR) frames.
    pub remote: u64,
    /// Error frames.
    pub error: u64,
    /// CAN FD frames.
    pub fd: u64,
}

/// What went missing before the events were written or read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize)]
pub struct Losses {
    /// Sequence gaps reported ([`Event::Loss`] events).
    pub loss_records: u64,
    /// Datagrams lost in those gaps.
    pub lost_datagrams: u64,
    /// Kernel drop reports ([`Event::KernelDrops`] events).
    pub kernel_drop_records: u64,
    /// Datagrams the kernel dropped, in total.
    pub kernel_drops: u64,
}

/// A CAN identifier with its format: 0x123 standard and 0x123 extended are two IDs.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct CanId {
    /// The identifier's value.
    pub id: u32,
    /// True for a 29-bit identifier.
    pub extended: bool,
}

impl CanId {
    /// The ID of this frame.
    pub fn of(frame: &CanFrame) -> CanId {
        CanId {
            id: frame.id,
            extended: frame.is_extended(),
        }
    }
}

impl fmt::Display for CanId {
    /// As candump writes it: three hex digits for standard IDs, eight for extended.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.extended {
            write!(f, "{:08X}", self.id)
        } else {
            write!(f, "{:03X}", self.id)
        }
    }
}

impl Serialize for CanId {
    /// As a string, `"123"` or `"12345678"`.
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

/// One ID and how many frames carried it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize)]
pub struct IdCount {
    /// The identifier.
    pub id: CanId,
    /// Frames with that identifier.
    pub frames: u64,
}

/// Statistics over a stream of events; see the module documentation.
#[derive(Debug, Clone, Default)]
pub struct CaptureStats {
    frames: u64,
    /// Earliest and latest frame timestamps (ns since the epoch); `None` before the first.
    span: Option<(u64, u64)>,
    kinds: FrameKinds,
    ids: HashMap<CanId, u64>,
    senders: BTreeSet<SocketAddr>,
    losses: Losses,
}

impl CaptureStats {
    /// No events yet.
    pub fn new() -> CaptureStats {
        CaptureStats::default()
    }

    /// Counts one event.
    pub fn add(&mut self, event: &Event) {
        match event {
            Event::Frame(f) => self.add_frame(f),
            Event::Loss { lost, .. } => {
                self.losses.loss_records += 1;
                self.losses.lost_datagrams += lost;
            }
            Event::KernelDrops { count, .. } => {
                self.losses.kernel_drop_records += 1;
                self.losses.kernel_drops += count;
            }
        }
    }

    /// Counts one frame.
    pub fn add_frame(&mut self, f: &CanFrame) {
        self.frames += 1;
        let t = f.timestamp_ns;
        self.span = Some(match self.span {
            None => (t, t),
            Some((first, last)) => (first.min(t), last.max(t)),
        });
        let k = &mut self.kinds;
        if f.is_extended() {
            k.extended += 1;
        } else {
            k.standard += 1;
        }
        k.remote += u64::from(f.is_remote());
        k.error += u64::from(f.is_error());
        k.fd += u64::from(f.is_fd());
        *self.ids.entry(CanId::of(f)).or_default() += 1;
        if let Some(s) = f.sender.get() {
            self.senders.insert(s);
        }
    }

    /// Frames counted.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Earliest frame timestamp (ns since the epoch), if any frame was counted.
    pub fn first_ns(&self) -> Option<u64> {
        self.span.map(|(first, _)| first)
    }

    /// Latest frame timestamp (ns since the epoch), if any frame was counted.
    pub fn last_ns(&self) -> Option<u64> {
        self.span.map(|(_, last)| last)
    }

    /// From the earliest to the latest frame (zero with fewer than two timestamps).
    pub fn span(&self) -> Duration {
        self.span.map_or(Duration::ZERO, |(first, last)| {
            Duration::from_nanos(last - first)
        })
    }

    /// Frames per second over [`span`](Self::span); zero when the span is zero.
    pub fn rate_fps(&self) -> f64 {
        let secs = self.span().as_secs_f64();
        if secs > 0.0 {
            self.frames as f64 / secs
        } else {
            0.0
        }
    }

    /// Frames by kind.
    pub fn kinds(&self) -> FrameKinds {
        self.kinds
    }

    /// Losses reported in the stream.
    pub fn losses(&self) -> Losses {
        self.losses
    }

    /// How many distinct IDs the frames carried.
    pub fn distinct_ids(&self) -> usize {
        self.ids.len()
    }

    /// Frames with this ID.
    pub fn frames_with(&self, id: CanId) -> u64 {
        self.ids.get(&id).copied().unwrap_or(0)
    }

    /// The `n` most frequent IDs, most frames first; ties in ID order (standard before
    /// extended for the same value).
    pub fn top_ids(&self, n: usize) -> Vec<IdCount> {
        let mut all: Vec<IdCount> = self
            .ids
            .iter()
            .map(|(&id, &frames)| IdCount { id, frames })
            .collect();
        all.sort_unstable_by(|a, b| {
            b.frames
                .cmp(&a.frames)
                .then(a.id.id.cmp(&b.id.id))
                .then(a.id.extended.cmp(&b.id.extended))
        });
        all.truncate(n);
        all
    }

    /// Distinct senders (for formats that keep the sender's address).
    pub fn senders(&self) -> usize {
        self.senders.len()
    }

    /// A plain snapshot for JSON, with the `top` most frequent IDs.
    pub fn summary(&self, top: usize) -> CaptureSummary {
        CaptureSummary {
            frames: self.frames,
            first_ns: self.first_ns().unwrap_or(0),
            last_ns: self.last_ns().unwrap_or(0),
            // Microseconds and tenths of a frame per second, rounded as the text is.
            span_s: rounded(self.span().as_secs_f64(), 6),
            rate_fps: rounded(self.rate_fps(), 1),
            kinds: self.kinds,
            ids: self.ids.len(),
            top_ids: self.top_ids(top),
            senders: self.senders.len(),
            losses: self.losses,
        }
    }

    /// The statistics as text, one `  name       value` line each (what `canmc info`
    /// prints under the file's name): frames, time and rate (when there are frames),
    /// IDs with the eight most frequent, senders (when known), losses.
    pub fn write_text(&self, out: &mut impl fmt::Write) -> fmt::Result {
        let k = &self.kinds;
        writeln!(
            out,
            "  frames     {} ({} standard, {} extended; {} remote, {} error, {} FD)",
            self.frames, k.standard, k.extended, k.remote, k.error, k.fd
        )?;
        if let Some((first, last)) = self.span {
            writeln!(
                out,
                "  time       {}.{:06} to {}.{:06} ({:.6} s)",
                first / 1_000_000_000,
                first % 1_000_000_000 / 1000,
                last / 1_000_000_000,
                last % 1_000_000_000 / 1000,
                self.span().as_secs_f64()
            )?;
            writeln!(out, "  rate       {:.1} frames/s", self.rate_fps())?;
        }
        let shown: Vec<String> = self
            .top_ids(8)
            .iter()
            .map(|c| format!("{}×{}", c.id, c.frames))
            .collect();
        writeln!(
            out,
            "  IDs        {} distinct; most frequent: {}",
            self.ids.len(),
            shown.join(" ")
        )?;
        if !self.senders.is_empty() {
            writeln!(out, "  senders    {}", self.senders.len())?;
        }
        let l = &self.losses;
        writeln!(
            out,
            "  losses     {} datagrams in {} gaps; kernel drops {} in {} reports",
            l.lost_datagrams, l.loss_records, l.kernel_drops, l.kernel_drop_records
        )
    }
}

impl fmt::Display for CaptureStats {
    /// The text of [`CaptureStats::write_text`].
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.write_text(f)
    }
}

/// `v` to `places` decimals, rounded as `format!("{v:.places$}")` rounds (ties to even),
/// so that JSON and text agree.
fn rounded(v: f64, places: usize) -> f64 {
    format!("{v:.places$}").parse().unwrap_or(v)
}

/// [`CaptureStats`] as plain values, for JSON: the kinds and losses appear as
/// top-level keys (`"standard"`, …, `"kernel_drops"`).
#[derive(Debug, Clone, PartialEq, Serialize)]
pub struct CaptureSummary {
    /// Frames counted.
    pub frames: u64,
    /// Earliest frame timestamp, ns since the epoch (0 without frames).
    pub first_ns: u64,
    /// Latest frame timestamp, ns since the epoch (0 without frames).
    pub last_ns: u64,
    /// From the earliest to the latest frame, in seconds (to the microsecond).
    pub span_s: f64,
    /// Frames per second over the span (to a tenth).
    pub rate_fps: f64,
    /// Frames by kind.
    #[serde(flatten)]
    pub kinds: FrameKinds,
    /// Distinct IDs.
    pub ids: usize,
    /// The most frequent IDs, most frames first.
    pub top_ids: Vec<IdCount>,
    /// Distinct senders.
    pub senders: usize,
    /// Losses reported in the stream.
    #[serde(flatten)]
    pub losses: Losses,
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::SenderAddr;

    fn frame(id: u32, ts: u64) -> CanFrame {
        let mut f: CanFrame = format!("{id:03X}#11").parse().unwrap();
        f.timestamp_ns = ts;
        f
    }

    fn text(s: &CaptureStats) -> String {
        s.to_string()
    }

    #[test]
    fn empty_stream() {
        let s = CaptureStats::new();
        assert_eq!(
            (s.frames(), s.first_ns(), s.span()),
            (0, None, Duration::ZERO)
        );
        assert_eq!(s.rate_fps(), 0.0);
        assert_eq!(
            text(&s),
            "  frames     0 (0 standard, 0 extended; 0 remote, 0 error, 0 FD)\n\
             \x20 IDs        0 distinct; most frequent: \n\
             \x20 losses     0 datagrams in 0 gaps; kernel drops 0 in 0 reports\n"
        );
        let j = serde_json::to_string(&s.summary(10)).unwrap();
        assert_eq!(
            j,
            "{\"frames\":0,\"first_ns\":0,\"last_ns\":0,\"span_s\":0.0,\"rate_fps\":0.0,\
             \"standard\":0,\"extended\":0,\"remote\":0,\"error\":0,\"fd\":0,\"ids\":0,\
             \"top_ids\":[],\"senders\":0,\"loss_records\":0,\"lost_datagrams\":0,\
             \"kernel_drop_records\":0,\"kernel_drops\":0}"
        );
    }

    #[test]
    fn kinds_span_rate_and_ids() {
        let mut s = CaptureStats::new();
        let t0 = 1_700_000_000_000_000_000;
        // Out of order on purpose: the span is earliest to latest, not first to last.
        s.add(&Event::Frame(frame(0x123, t0 + 2_000_000_000)));
        s.add(&Event::Frame(frame(0x123, t0)));
        s.add(&Event::Frame(frame(0x100, t0 + 1_000_000_000)));
        let mut ext: CanFrame = "00000123#R".parse().unwrap();
        ext.timestamp_ns = t0 + 500_000_000;
        s.add(&Event::Frame(ext));
        let mut fd: CanFrame = "7FF##1AABB".parse().unwrap();
        fd.timestamp_ns = t0 + 1_500_000_000;
        s.add(&Event::Frame(fd));
        assert_eq!(s.frames(), 5);
        assert_eq!(
            s.kinds(),
            FrameKinds {
                standard: 4,
                extended: 1,
                remote: 1,
                error: 0,
                fd: 1
            }
        );
        assert_eq!(s.first_ns(), Some(t0));
        assert_eq!(s.span(), Duration::from_secs(2));
        assert_eq!(s.rate_fps(), 2.5);
        assert_eq!(
            s.distinct_ids(),
            4,
            "0x123 standard and extended are two IDs"
        );
        let std123 = CanId {
            id: 0x123,
            extended: false,
        };
        assert_eq!(s.frames_with(std123), 2);
        let top = s.top_ids(3);
        assert_eq!(
            top[0],
            IdCount {
                id: std123,
                frames: 2
            }
        );
        // Ties in ID order: 100, then 123 extended (7FF is cut off).
        assert_eq!(top[1].id.to_string(), "100");
        assert_eq!(top[2].id.to_string(), "00000123");
        assert_eq!(top.len(), 3);
        let t = text(&s);
        assert!(
            t.contains("  frames     5 (4 standard, 1 extended; 1 remote, 0 error, 1 FD)\n"),
            "{t}"
        );
        assert!(
            t.contains("  time       1700000000.000000 to 1700000002.000000 (2.000000 s)\n"),
            "{t}"
        );
        assert!(t.contains("  rate       2.5 frames/s\n"), "{t}");
        assert!(
            t.contains("  IDs        4 distinct; most frequent: 123×2 100×1 00000123×1 7FF×1\n"),
            "{t}"
        );
        assert!(!t.contains("senders"), "no sender known: {t}");
        let j = serde_json::to_string(&s.summary(2)).unwrap();
        assert!(
            j.contains("\"top_ids\":[{\"id\":\"123\",\"frames\":2},{\"id\":\"100\",\"frames\":1}]"),
            "{j}"
        );
        assert!(j.contains("\"span_s\":2.0,\"rate_fps\":2.5,"), "{j}");
    }

    #[test]
    fn losses_and_senders() {
        let mut s = CaptureStats::new();
        let a = SenderAddr::from("127.0.0.1:5000".parse::<SocketAddr>().unwrap());
        let b = SenderAddr::from("127.0.0.2:5000".parse::<SocketAddr>().unwrap());
        for (sender, ts) in [(a, 1), (b, 2), (a, 3)] {
            let mut f = frame(0x10, ts);
            f.sender = sender;
            s.add(&Event::Frame(f));
        }
        s.add(&Event::Loss {
            sender: a,
            lost: 3,
            timestamp_ns: 4,
        });
        s.add(&Event::Loss {
            sender: b,
            lost: 1,
            timestamp_ns: 5,
        });
        s.add(&Event::KernelDrops {
            count: 7,
            timestamp_ns: 6,
        });
        assert_eq!(s.frames(), 3, "loss and drop reports are not frames");
        assert_eq!(s.senders(), 2);
        assert_eq!(
            s.losses(),
            Losses {
                loss_records: 2,
                lost_datagrams: 4,
                kernel_drop_records: 1,
                kernel_drops: 7
            }
        );
        let t = text(&s);
        assert!(t.contains("  senders    2\n"), "{t}");
        assert!(
            t.ends_with("  losses     4 datagrams in 2 gaps; kernel drops 7 in 1 reports\n"),
            "{t}"
        );
        let j = serde_json::to_string(&s.summary(10)).unwrap();
        assert!(
            j.ends_with(
                "\"senders\":2,\"loss_records\":2,\"lost_datagrams\":4,\
                 \"kernel_drop_records\":1,\"kernel_drops\":7}"
            ),
            "{j}"
        );
    }

    #[test]
    fn json_rounds_as_the_text_does() {
        let mut s = CaptureStats::new();
        // 5 frames in 4 s: 1.25 frames/s, which the text shows as 1.2 (ties to even).
        for i in 0..5 {
            s.add_frame(&frame(0x1, i * 1_000_000_000));
        }
        assert!(s.to_string().contains("  rate       1.2 frames/s\n"));
        assert_eq!(s.summary(0).rate_fps, 1.2);
    }

    #[test]
    fn one_frame_has_no_rate() {
        let mut s = CaptureStats::new();
        s.add_frame(&frame(0x1, 5_000_000_123_456));
        assert_eq!(s.span(), Duration::ZERO);
        assert_eq!(s.rate_fps(), 0.0);
        let t = text(&s);
        assert!(
            t.contains("  time       5000.000123 to 5000.000123 (0.000000 s)\n"),
            "{t}"
        );
        assert!(t.contains("  rate       0.0 frames/s\n"), "{t}");
    }
}
