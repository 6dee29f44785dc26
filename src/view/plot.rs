//! What `canmc plot` draws, computed in one pass over a capture with bounded memory:
//! frames and bytes per time bucket, per-ID counts per bucket for the IDs seen first,
//! loss and kernel-drop events per bucket, and log-scale histograms of inter-arrival
//! times (between consecutive frames on the bus, and between frames of one ID).
//!
//! Buckets start 1 ms wide; when the capture outgrows [`MAX_BUCKETS`] buckets,
//! neighbouring pairs are merged and the width doubles, so any length of capture ends
//! with between `MAX_BUCKETS / 2` and `MAX_BUCKETS` buckets. Memory is fixed up front
//! except for the per-ID map, which stops growing at [`MAX_IDS`] identifiers (frames of
//! later ones are counted in [`PlotData::untracked_frames`]); per-ID series are kept for
//! the first [`MAX_SERIES`] identifiers.

use std::collections::hash_map::Entry;
use std::collections::HashMap;

use crate::event::Event;
use crate::frame::{flags, CanFrame};

/// Most time buckets kept (a power of two).
pub const MAX_BUCKETS: usize = 2048;
/// First bucket width.
pub const FIRST_BUCKET_NS: u64 = 1_000_000;
/// Identifiers with a per-bucket series.
pub const MAX_SERIES: usize = 512;
/// Identifiers counted one by one; frames of others go to
/// [`PlotData::untracked_frames`].
pub const MAX_IDS: usize = 1 << 16;

/// Histogram bins per decade.
pub const BINS_PER_DECADE: usize = 10;
/// The lowest bin starts at 10^MIN_DECADE ns (100 ns).
pub const MIN_DECADE: i32 = 2;
/// The highest bin ends at 10^MAX_DECADE ns (1000 s).
pub const MAX_DECADE: i32 = 12;
const BINS: usize = (MAX_DECADE - MIN_DECADE) as usize * BINS_PER_DECADE;

/// A log-scale histogram of durations: [`BINS_PER_DECADE`] bins per decade from
/// 10^[`MIN_DECADE`] to 10^[`MAX_DECADE`] ns, with values below and above counted apart.
#[derive(Debug, Clone)]
pub struct LogHistogram {
    bins: [u64; BINS],
    /// Values below the first bin (including 0: frames in the same instant).
    pub below: u64,
    /// Values above the last bin.
    pub above: u64,
}

impl Default for LogHistogram {
    fn default() -> Self {
        LogHistogram {
            bins: [0; BINS],
            below: 0,
            above: 0,
        }
    }
}

impl LogHistogram {
    /// Counts one duration of `ns` nanoseconds.
    #[inline]
    pub fn add(&mut self, ns: u64) {
        if ns < 10u64.pow(MIN_DECADE as u32) {
            self.below += 1;
            return;
        }
        let pos = ((ns as f64).log10() - f64::from(MIN_DECADE)) * BINS_PER_DECADE as f64;
        let i = pos as usize;
        if i >= BINS {
            self.above += 1;
        } else {
            self.bins[i] += 1;
        }
    }

    /// Each bin as (lower edge ns, upper edge ns, count).
    pub fn bins(&self) -> impl Iterator<Item = (f64, f64, u64)> + '_ {
        self.bins.iter().enumerate().map(|(i, &n)| {
            let lo = 10f64.powf(f64::from(MIN_DECADE) + i as f64 / BINS_PER_DECADE as f64);
            let hi = 10f64.powf(f64::from(MIN_DECADE) + (i + 1) as f64 / BINS_PER_DECADE as f64);
            (lo, hi, n)
        })
    }

    /// Values counted, all bins and both tails.
    pub fn total(&self) -> u64 {
        self.bins.iter().sum::<u64>() + self.below + self.above
    }
}

/// Counts of one time bucket.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Bucket {
    /// Frames.
    pub frames: u64,
    /// Payload bytes.
    pub bytes: u64,
    /// Datagrams lost from native senders (loss events).
    pub lost: u64,
    /// Datagrams the kernel dropped (kernel-drop events).
    pub kernel_drops: u64,
}

/// An identifier as `plot` counts it: the ID with its extended and error bits.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct IdKey {
    /// The identifier.
    pub id: u32,
    /// `flags::EXTENDED | flags::ERROR` bits.
    pub kind: u8,
}

impl IdKey {
    fn of(frame: &CanFrame) -> IdKey {
        IdKey {
            id: frame.id,
            kind: frame.flags & (flags::EXTENDED | flags::ERROR),
        }
    }

    /// Hex as candump writes it: 3 digits standard, 8 extended; `ERR` prefix for error
    /// frames.
    pub fn label(&self) -> String {
        let err = if self.kind & flags::ERROR != 0 {
            "ERR "
        } else {
            ""
        };
        if self.kind & flags::EXTENDED != 0 {
            format!("{err}{:08X}", self.id)
        } else {
            format!("{err}{:03X}", self.id)
        }
    }
}

#[derive(Debug, Clone, Copy)]
struct IdState {
    frames: u64,
    last_ns: u64,
    /// Index into `series`, or `u32::MAX`.
    series: u32,
}

/// Everything `canmc plot` draws (see the module doc).
#[derive(Debug, Clone)]
pub struct PlotData {
    t0: Option<u64>,
    t_end: u64,
    bucket_ns: u64,
    used: usize,
    buckets: Vec<Bucket>,
    ids: HashMap<IdKey, IdState>,
    series: Vec<(IdKey, Vec<u32>)>,
    last_frame_ns: Option<u64>,
    /// Gaps between consecutive frames of the whole stream.
    pub bus_gaps: LogHistogram,
    /// Gaps between consecutive frames of one identifier.
    pub id_periods: LogHistogram,
    /// Frames seen.
    pub frames: u64,
    /// Payload bytes seen.
    pub bytes: u64,
    /// Datagrams lost, summed over loss events.
    pub lost: u64,
    /// Loss events seen.
    pub loss_events: u64,
    /// Datagrams the kernel dropped, summed over kernel-drop events.
    pub kernel_drops: u64,
    /// Kernel-drop events seen.
    pub kernel_drop_events: u64,
    /// Frames whose timestamp was earlier than the first event's (counted in bucket 0).
    pub early_frames: u64,
    /// Frames of identifiers beyond [`MAX_IDS`].
    pub untracked_frames: u64,
}

impl Default for PlotData {
    fn default() -> Self {
        PlotData::new()
    }
}

impl PlotData {
    /// Empty; allocates the buckets and the series slots.
    pub fn new() -> PlotData {
        PlotData {
            t0: None,
            t_end: 0,
            bucket_ns: FIRST_BUCKET_NS,
            used: 0,
            buckets: vec![Bucket::default(); MAX_BUCKETS],
            ids: HashMap::with_capacity(256),
            series: Vec::with_capacity(MAX_SERIES),
            last_frame_ns: None,
            bus_gaps: LogHistogram::default(),
            id_periods: LogHistogram::default(),
            frames: 0,
            bytes: 0,
            lost: 0,
            loss_events: 0,
            kernel_drops: 0,
            kernel_drop_events: 0,
            early_frames: 0,
            untracked_frames: 0,
        }
    }

    /// The bucket index for `ts`, merging buckets until it fits.
    fn bucket_of(&mut self, ts: u64) -> usize {
        let t0 = *self.t0.get_or_insert(ts);
        self.t_end = self.t_end.max(ts);
        let Some(rel) = ts.checked_sub(t0) else {
            return 0;
        };
        let mut i = rel / self.bucket_ns;
        while i >= MAX_BUCKETS as u64 {
            self.merge();
            i = rel / self.bucket_ns;
        }
        let i = i as usize;
        self.used = self.used.max(i + 1);
        i
    }

    /// Halves the resolution: bucket `i` becomes the sum of buckets `2i` and `2i + 1`.
    fn merge(&mut self) {
        let half = MAX_BUCKETS / 2;
        for i in 0..half {
            let (a, b) = (self.buckets[2 * i], self.buckets[2 * i + 1]);
            self.buckets[i] = Bucket {
                frames: a.frames + b.frames,
                bytes: a.bytes + b.bytes,
                lost: a.lost + b.lost,
                kernel_drops: a.kernel_drops + b.kernel_drops,
            };
        }
        self.buckets[half..].fill(Bucket::default());
        for (_, s) in &mut self.series {
            for i in 0..half {
                s[i] = s[2 * i].saturating_add(s[2 * i + 1]);
            }
            s[half..].fill(0);
        }
        self.used = self.used.div_ceil(2);
        self.bucket_ns *= 2;
    }

    /// Counts one event.
    pub fn add(&mut self, event: &Event) {
        match *event {
            Event::Frame(ref f) => self.add_frame(f),
            Event::Loss {
                lost, timestamp_ns, ..
            } => {
                let i = self.bucket_of(timestamp_ns);
                self.buckets[i].lost += lost;
                self.lost += lost;
                self.loss_events += 1;
            }
            Event::KernelDrops {
                count,
                timestamp_ns,
            } => {
                let i = self.bucket_of(timestamp_ns);
                self.buckets[i].kernel_drops += count;
                self.kernel_drops += count;
                self.kernel_drop_events += 1;
            }
        }
    }

    /// Counts one frame.
    #[inline]
    pub fn add_frame(&mut self, f: &CanFrame) {
        let ts = f.timestamp_ns;
        if self.t0.is_some_and(|t0| ts < t0) {
            self.early_frames += 1;
        }
        let i = self.bucket_of(ts);
        let b = &mut self.buckets[i];
        b.frames += 1;
        b.bytes += u64::from(f.len);
        self.frames += 1;
        self.bytes += u64::from(f.len);
        if let Some(prev) = self.last_frame_ns {
            self.bus_gaps.add(ts.saturating_sub(prev));
        }
        self.last_frame_ns = Some(ts);

        let key = IdKey::of(f);
        let full = self.ids.len() >= MAX_IDS;
        let st = match self.ids.entry(key) {
            Entry::Occupied(o) => {
                let st = o.into_mut();
                self.id_periods.add(ts.saturating_sub(st.last_ns));
                st
            }
            Entry::Vacant(_) if full => {
                self.untracked_frames += 1;
                return;
            }
            Entry::Vacant(v) => {
                let series = if self.series.len() < MAX_SERIES {
                    self.series.push((key, vec![0; MAX_BUCKETS]));
                    (self.series.len() - 1) as u32
                } else {
                    u32::MAX
                };
                v.insert(IdState {
                    frames: 0,
                    last_ns: ts,
                    series,
                })
            }
        };
        st.frames += 1;
        st.last_ns = ts;
        if let Some((_, s)) = self.series.get_mut(st.series as usize) {
            s[i] = s[i].saturating_add(1);
        }
    }

    /// Width of a bucket, ns.
    pub fn bucket_ns(&self) -> u64 {
        self.bucket_ns
    }

    /// Timestamp of the first event (ns since the epoch), if any.
    pub fn start_ns(&self) -> Option<u64> {
        self.t0
    }

    /// From the first to the latest event, ns.
    pub fn span_ns(&self) -> u64 {
        self.t0.map_or(0, |t0| self.t_end.saturating_sub(t0))
    }

    /// The buckets from the first event to the last.
    pub fn buckets(&self) -> &[Bucket] {
        &self.buckets[..self.used]
    }

    /// Start of bucket `i`, seconds after the first event.
    pub fn bucket_start_s(&self, i: usize) -> f64 {
        (i as u64 * self.bucket_ns) as f64 / 1e9
    }

    /// How many buckets to add up per point so that a line has at most `points`
    /// points (a power of two, at least 1).
    pub fn group_for(&self, points: usize) -> usize {
        self.used.div_ceil(points.max(1)).next_power_of_two()
    }

    /// A rate line: one (seconds from the start, per second) point per `group`
    /// buckets, `count(i)` being bucket `i`'s count. A last group that the capture
    /// covers for less than half its width is left out (its rate would be noise).
    pub fn rate_line(&self, group: usize, count: impl Fn(usize) -> u64) -> Vec<(f64, f64)> {
        let group = group.max(1);
        let width = self.bucket_ns * group as u64;
        let span = self.span_ns();
        let mut out = Vec::with_capacity(self.used.div_ceil(group));
        for g in 0..self.used.div_ceil(group) {
            let start = g as u64 * width;
            let covered = if start + width > span {
                span.saturating_sub(start)
            } else {
                width
            };
            if covered * 2 < width && g > 0 {
                break;
            }
            let n: u64 = (g * group..((g + 1) * group).min(self.used))
                .map(&count)
                .sum();
            out.push((start as f64 / 1e9, n as f64 * 1e9 / covered.max(1) as f64));
        }
        out
    }

    /// Distinct identifiers counted.
    pub fn id_count(&self) -> usize {
        self.ids.len()
    }

    /// The `n` identifiers with the most frames among those with a series, busiest
    /// first, with their frames per bucket.
    pub fn busiest(&self, n: usize) -> Vec<(IdKey, u64, &[u32])> {
        let mut v: Vec<(IdKey, u64, &[u32])> = self
            .series
            .iter()
            .map(|(k, s)| (*k, self.ids[k].frames, &s[..self.used]))
            .collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v.truncate(n);
        v
    }

    /// Every identifier with its frame count, busiest first.
    pub fn id_totals(&self) -> Vec<(IdKey, u64)> {
        let mut v: Vec<(IdKey, u64)> = self.ids.iter().map(|(k, s)| (*k, s.frames)).collect();
        v.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(&b.0)));
        v
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ts_ns: u64, id: u32) -> Event {
        let mut f = CanFrame::new(id, 0, &[0; 8]).unwrap();
        f.timestamp_ns = ts_ns;
        Event::Frame(f)
    }

    #[test]
    fn buckets_merge_and_keep_totals() {
        let mut p = PlotData::new();
        let t0 = 1_700_000_000_000_000_000u64;
        // 100 frames/s of 0x100 and 10/s of 0x200 for 60 s: 60 s / 1 ms is far more
        // than MAX_BUCKETS, so buckets merge.
        for i in 0..6000u64 {
            p.add(&frame(t0 + i * 10_000_000, 0x100));
            if i % 10 == 0 {
                p.add(&frame(t0 + i * 10_000_000 + 1, 0x200));
            }
        }
        p.add(&Event::Loss {
            sender: Default::default(),
            lost: 5,
            timestamp_ns: t0 + 30_000_000_000,
        });
        assert_eq!(p.frames, 6600);
        assert!(p.buckets().len() <= MAX_BUCKETS && p.buckets().len() > MAX_BUCKETS / 2);
        assert_eq!(p.buckets().iter().map(|b| b.frames).sum::<u64>(), 6600);
        assert_eq!(p.bytes, 6600 * 8);
        // Bucket width is a power-of-two multiple of 1 ms: 32 ms for 60 s.
        assert_eq!(p.bucket_ns(), 32_000_000);
        let li = p.buckets().iter().position(|b| b.lost > 0).unwrap();
        assert!((p.bucket_start_s(li) - 30.0).abs() < 0.05);
        // Rates are frames/s: the middle buckets average 110/s.
        let line = p.rate_line(1, |i| p.buckets()[i].frames);
        let mid: f64 = line[100..1000].iter().map(|pt| pt.1).sum::<f64>() / 900.0;
        assert_eq!(
            p.rate_line(4, |i| p.buckets()[i].frames).len(),
            line.len().div_ceil(4)
        );
        assert!((mid - 110.0).abs() < 1.0, "{mid}");
        let top = p.busiest(5);
        assert_eq!(top.len(), 2);
        assert_eq!((top[0].0.id, top[0].1), (0x100, 6000));
        assert_eq!(top[0].2.iter().map(|&c| u64::from(c)).sum::<u64>(), 6000);
        // 0x100's period is 10 ms: in the bin starting at 10^7 ns.
        let (lo, _, n) = p
            .id_periods
            .bins()
            .find(|&(lo, hi, _)| lo <= 1e7 && 1e7 < hi)
            .unwrap();
        assert!((lo - 1e7).abs() < 1.0);
        assert_eq!(n, 5999);
        // 0x200's 100 ms period in the bin starting at 10^8 ns.
        let n = p
            .id_periods
            .bins()
            .find(|&(lo, _, _)| (lo - 1e8).abs() < 1.0)
            .unwrap()
            .2;
        assert_eq!(n, 599);
        assert_eq!(p.id_periods.total(), 5999 + 599);
        assert_eq!(p.bus_gaps.total(), 6599);
    }

    #[test]
    fn ids_beyond_the_cap_are_counted_apart() {
        let mut p = PlotData::new();
        for id in 0..(MAX_IDS as u32 + 10) {
            let mut f = CanFrame::new(id, flags::EXTENDED, &[]).unwrap();
            f.timestamp_ns = 1;
            p.add_frame(&f);
        }
        assert_eq!(p.id_count(), MAX_IDS);
        assert_eq!(p.untracked_frames, 10);
        assert_eq!(p.busiest(usize::MAX).len(), MAX_SERIES);
    }

    #[test]
    fn histogram_edges() {
        let mut h = LogHistogram::default();
        h.add(0);
        h.add(99);
        h.add(100);
        h.add(10u64.pow(12));
        assert_eq!((h.below, h.above), (2, 1));
        assert_eq!(h.bins().next().unwrap().2, 1);
    }
}
