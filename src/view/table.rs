//! The per-ID table behind `canmc top`: one [`Row`] per (channel, identifier) with its
//! count, rate, mean period and jitter, last data and which bytes changed when, plus
//! [`Totals`] for the whole stream.
//!
//! A consumer thread feeds every event to [`IdTable::on_event`] and calls
//! [`IdTable::tick`] now and then; the drawing thread takes a copy with
//! [`IdTable::copy_into`] (which reuses the copy's memory). Memory is allocated only when
//! an identifier is seen for the first time: a frame of a known ID costs one hash
//! lookup and a few stores.

use std::collections::HashMap;
use std::hash::{BuildHasherDefault, Hash, Hasher};
use std::str::FromStr;

use zerocopy::IntoBytes;

use crate::event::Event;
use crate::frame::{flags, CanFrame, Channel};

/// Rates are counted over windows of this length (data time).
pub const RATE_WINDOW_NS: u64 = 1_000_000_000;

/// What identifies a row: channel, identifier and the kind of identifier.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RowKey {
    channel: Channel,
    id: u32,
    /// `flags::EXTENDED | flags::ERROR` bits of the frame.
    kind: u8,
}

impl Hash for RowKey {
    fn hash<H: Hasher>(&self, state: &mut H) {
        state.write_u64(u64::from(self.id) | (u64::from(self.kind) << 32));
        state.write(self.channel.as_bytes());
    }
}

/// A small multiplicative hasher (the FxHash mix) for [`RowKey`]: a frame of a known ID
/// pays one lookup, and SipHash's resistance to chosen keys buys nothing for a table
/// keyed by what a bus carries.
#[derive(Debug, Default, Clone, Copy)]
struct KeyHasher(u64);

impl KeyHasher {
    #[inline]
    fn mix(&mut self, word: u64) {
        self.0 = (self.0.rotate_left(5) ^ word).wrapping_mul(0x51_7c_c1_b7_27_22_0a_95);
    }
}

impl Hasher for KeyHasher {
    #[inline]
    fn write(&mut self, bytes: &[u8]) {
        let mut chunks = bytes.chunks_exact(8);
        for c in chunks.by_ref() {
            let mut w = [0u8; 8];
            w.copy_from_slice(c);
            self.mix(u64::from_le_bytes(w));
        }
        let rest = chunks.remainder();
        if !rest.is_empty() {
            let mut w = [0u8; 8];
            w[..rest.len()].copy_from_slice(rest);
            self.mix(u64::from_le_bytes(w));
        }
    }

    #[inline]
    fn write_u64(&mut self, n: u64) {
        self.mix(n);
    }

    #[inline]
    fn finish(&self) -> u64 {
        self.0
    }
}

/// One (channel, identifier) of the table.
#[derive(Debug, Clone, Copy)]
pub struct Row {
    /// The channel the frames came on.
    pub channel: Channel,
    /// The identifier (without flag bits).
    pub id: u32,
    /// [`flags`] of the last frame.
    pub flags: u8,
    /// Frames seen.
    pub count: u64,
    /// Payload bytes seen.
    pub bytes: u64,
    /// Timestamp of the first frame (ns since the epoch).
    pub first_ns: u64,
    /// Timestamp of the last frame.
    pub last_ns: u64,
    /// Payload length of the last frame that carried data.
    pub len: u8,
    /// DLC of the last frame (see [`CanFrame::dlc`]).
    pub dlc: u8,
    /// Payload of the last frame that carried data (remote frames carry none).
    pub data: [u8; 64],
    /// For each payload byte, the timestamp of the frame that last changed it (0: not
    /// changed since the row appeared).
    pub changed_ns: [u64; 64],
    /// Frames per second over the last complete rate window.
    pub rate: f64,
    count_at_window: u64,
    /// Intervals between frames that went into the period statistics.
    intervals: u64,
    /// Welford running mean and sum of squared deviations of the period, in ns.
    mean_ns: f64,
    m2: f64,
    /// Index of this row's channel in [`IdTable::channels`].
    channel_index: u32,
}

impl Row {
    fn new(frame: &CanFrame, channel_index: u32) -> Row {
        Row {
            channel: frame.channel,
            id: frame.id,
            flags: frame.flags,
            count: 0,
            bytes: 0,
            first_ns: frame.timestamp_ns,
            last_ns: frame.timestamp_ns,
            len: 0,
            dlc: 0,
            data: [0; 64],
            changed_ns: [0; 64],
            rate: 0.0,
            count_at_window: 0,
            intervals: 0,
            mean_ns: 0.0,
            m2: 0.0,
            channel_index,
        }
    }

    /// True for a 29-bit identifier.
    pub fn is_extended(&self) -> bool {
        self.flags & flags::EXTENDED != 0
    }

    /// True for error frames (the identifier holds the error class).
    pub fn is_error(&self) -> bool {
        self.flags & flags::ERROR != 0
    }

    /// The last payload.
    pub fn payload(&self) -> &[u8] {
        &self.data[..usize::from(self.len)]
    }

    /// Mean time between two frames, in seconds; `None` before the second frame.
    pub fn mean_period(&self) -> Option<f64> {
        (self.intervals > 0).then(|| self.mean_ns / 1e9)
    }

    /// Standard deviation of the time between two frames, in seconds (the jitter of
    /// the period); `None` before the third frame.
    pub fn jitter(&self) -> Option<f64> {
        (self.intervals > 1).then(|| (self.m2 / (self.intervals - 1) as f64).sqrt() / 1e9)
    }

    /// Bit mask of the payload bytes (bit `i` for byte `i`) changed by a frame at or
    /// after `since_ns`.
    pub fn changed_since(&self, since_ns: u64) -> u64 {
        let mut mask = 0u64;
        for (i, &t) in self.changed_ns[..usize::from(self.len)].iter().enumerate() {
            if t != 0 && t >= since_ns {
                mask |= 1 << i;
            }
        }
        mask
    }

    fn update(&mut self, frame: &CanFrame) {
        if self.count > 0 && frame.timestamp_ns >= self.last_ns {
            // Welford's update: numerically stable running mean and variance.
            let dt = (frame.timestamp_ns - self.last_ns) as f64;
            self.intervals += 1;
            let delta = dt - self.mean_ns;
            self.mean_ns += delta / self.intervals as f64;
            self.m2 += delta * (dt - self.mean_ns);
        }
        self.count += 1;
        self.bytes += u64::from(frame.len);
        self.last_ns = self.last_ns.max(frame.timestamp_ns);
        self.flags = frame.flags;
        self.dlc = frame.dlc();
        if frame.is_remote() {
            return;
        }
        let len = usize::from(frame.len).min(64);
        if self.count > 1 {
            let old = usize::from(self.len);
            for i in 0..len {
                if i >= old || self.data[i] != frame.data[i] {
                    self.changed_ns[i] = frame.timestamp_ns.max(1);
                }
            }
        }
        self.data[..len].copy_from_slice(&frame.data[..len]);
        self.data[len..].fill(0);
        self.len = len as u8;
    }
}

/// Traffic of one channel, for its bus load.
#[derive(Debug, Clone, Copy)]
pub struct ChannelLoad {
    /// The channel.
    pub channel: Channel,
    /// Frames seen on it.
    pub frames: u64,
    /// Bus bits its frames take ([`super::frame_bits`]).
    pub bits: u64,
    /// Bits per second over the last complete rate window.
    pub bits_per_s: f64,
    bits_at_window: u64,
}

impl ChannelLoad {
    /// The share of a bus of `bitrate` bit/s these frames would keep busy (1.0 = full;
    /// more than 1.0 means the traffic would not fit on such a bus).
    pub fn load(&self, bitrate: u64) -> f64 {
        if bitrate == 0 {
            return 0.0;
        }
        self.bits_per_s / bitrate as f64
    }
}

/// Totals over every row.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct Totals {
    /// Frames seen.
    pub frames: u64,
    /// Payload bytes seen.
    pub bytes: u64,
    /// Datagrams lost from native senders, as the stream's loss events said.
    pub seq_gaps: u64,
    /// Datagrams the kernel dropped, as the stream's kernel-drop events said.
    pub kernel_drops: u64,
    /// Frames per second over the last complete rate window.
    pub frames_per_s: f64,
    /// Payload bytes per second over the last complete rate window.
    pub bytes_per_s: f64,
    /// Timestamp of the first frame (0 before it).
    pub first_ns: u64,
    /// Latest frame timestamp.
    pub last_ns: u64,
}

/// How [`IdTable::order`] sorts rows.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum SortKey {
    /// By channel, then identifier (standard before extended).
    #[default]
    Id,
    /// Highest rate first.
    Rate,
    /// Highest count first.
    Count,
}

impl SortKey {
    /// The next key, for a key that cycles through them.
    pub fn next(self) -> SortKey {
        match self {
            SortKey::Id => SortKey::Rate,
            SortKey::Rate => SortKey::Count,
            SortKey::Count => SortKey::Id,
        }
    }

    /// A short name for a status line.
    pub fn name(self) -> &'static str {
        match self {
            SortKey::Id => "id",
            SortKey::Rate => "rate",
            SortKey::Count => "count",
        }
    }
}

impl FromStr for SortKey {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "id" => Ok(SortKey::Id),
            "rate" => Ok(SortKey::Rate),
            "count" => Ok(SortKey::Count),
            _ => Err(format!("{s}: sort by id, rate or count")),
        }
    }
}

/// The per-ID table (see the module doc).
#[derive(Debug, Clone, Default)]
pub struct IdTable {
    rows: Vec<Row>,
    index: HashMap<RowKey, u32, BuildHasherDefault<KeyHasher>>,
    channels: Vec<ChannelLoad>,
    totals: Totals,
    window_start_ns: Option<u64>,
    frames_at_window: u64,
    bytes_at_window: u64,
}

impl IdTable {
    /// An empty table.
    pub fn new() -> IdTable {
        IdTable::default()
    }

    /// An empty table with room for `ids` rows before it allocates.
    pub fn with_capacity(ids: usize) -> IdTable {
        IdTable {
            rows: Vec::with_capacity(ids),
            index: HashMap::with_capacity_and_hasher(ids, Default::default()),
            channels: Vec::with_capacity(4),
            ..IdTable::default()
        }
    }

    /// Counts one event: a frame updates its row, a loss or kernel-drop event the
    /// totals.
    #[inline]
    pub fn on_event(&mut self, event: &Event) {
        match event {
            Event::Frame(f) => self.on_frame(f),
            Event::Loss { lost, .. } => self.totals.seq_gaps += lost,
            Event::KernelDrops { count, .. } => self.totals.kernel_drops += count,
        }
    }

    /// Counts one frame.
    #[inline]
    pub fn on_frame(&mut self, frame: &CanFrame) {
        let key = RowKey {
            channel: frame.channel,
            id: frame.id,
            kind: frame.flags & (flags::EXTENDED | flags::ERROR),
        };
        let i = match self.index.get(&key) {
            Some(&i) => i as usize,
            None => self.new_row(key, frame),
        };
        let row = &mut self.rows[i];
        row.update(frame);
        let ch = &mut self.channels[row.channel_index as usize];
        ch.frames += 1;
        ch.bits += u64::from(super::frame_bits(
            frame.is_extended(),
            frame.is_fd(),
            if frame.is_remote() { 0 } else { frame.len },
        ));
        let t = &mut self.totals;
        if t.frames == 0 {
            t.first_ns = frame.timestamp_ns;
        }
        t.frames += 1;
        t.bytes += u64::from(frame.len);
        t.last_ns = t.last_ns.max(frame.timestamp_ns);
    }

    #[cold]
    fn new_row(&mut self, key: RowKey, frame: &CanFrame) -> usize {
        let ci = match self.channels.iter().position(|c| c.channel == key.channel) {
            Some(i) => i,
            None => {
                self.channels.push(ChannelLoad {
                    channel: key.channel,
                    frames: 0,
                    bits: 0,
                    bits_per_s: 0.0,
                    bits_at_window: 0,
                });
                self.channels.len() - 1
            }
        };
        let i = self.rows.len();
        self.rows.push(Row::new(frame, ci as u32));
        self.index.insert(key, i as u32);
        i
    }

    /// Moves the clock to `now_ns` (data time: the wall clock for a live bus, the
    /// playback position for a file). Once a rate window has passed, rates are
    /// recomputed over it and a new window starts.
    pub fn tick(&mut self, now_ns: u64) {
        let Some(start) = self.window_start_ns else {
            self.window_start_ns = Some(now_ns);
            return;
        };
        let Some(elapsed) = now_ns.checked_sub(start).filter(|&e| e >= RATE_WINDOW_NS) else {
            return;
        };
        let secs = elapsed as f64 / 1e9;
        for r in &mut self.rows {
            r.rate = (r.count - r.count_at_window) as f64 / secs;
            r.count_at_window = r.count;
        }
        for c in &mut self.channels {
            c.bits_per_s = (c.bits - c.bits_at_window) as f64 / secs;
            c.bits_at_window = c.bits;
        }
        let t = &mut self.totals;
        t.frames_per_s = (t.frames - self.frames_at_window) as f64 / secs;
        t.bytes_per_s = (t.bytes - self.bytes_at_window) as f64 / secs;
        self.frames_at_window = t.frames;
        self.bytes_at_window = t.bytes;
        self.window_start_ns = Some(now_ns);
    }

    /// Forgets every row and total (keeps the memory).
    pub fn clear(&mut self) {
        self.rows.clear();
        self.index.clear();
        self.channels.clear();
        self.totals = Totals::default();
        self.window_start_ns = None;
        self.frames_at_window = 0;
        self.bytes_at_window = 0;
    }

    /// The rows, in the order their identifiers first appeared.
    pub fn rows(&self) -> &[Row] {
        &self.rows
    }

    /// The totals.
    pub fn totals(&self) -> &Totals {
        &self.totals
    }

    /// Traffic per channel, in the order channels first appeared.
    pub fn channels(&self) -> &[ChannelLoad] {
        &self.channels
    }

    /// The highest bus load of any channel at `bitrate` bit/s (see
    /// [`ChannelLoad::load`]).
    pub fn max_load(&self, bitrate: u64) -> f64 {
        self.channels
            .iter()
            .map(|c| c.load(bitrate))
            .fold(0.0, f64::max)
    }

    /// Makes `into` a copy of this table, reusing its memory (no allocation once
    /// `into` has held as many rows).
    pub fn copy_into(&self, into: &mut IdTable) {
        into.rows.clone_from(&self.rows);
        into.channels.clone_from(&self.channels);
        into.totals = self.totals;
        into.window_start_ns = self.window_start_ns;
        into.frames_at_window = self.frames_at_window;
        into.bytes_at_window = self.bytes_at_window;
        // The copy is for reading: its index is not kept (lookups go to the original).
        into.index.clear();
    }

    /// Fills `out` with the indices of the rows that `keep` accepts, sorted by `key`.
    pub fn order(&self, key: SortKey, keep: impl Fn(&Row) -> bool, out: &mut Vec<usize>) {
        out.clear();
        out.extend((0..self.rows.len()).filter(|&i| keep(&self.rows[i])));
        let rows = &self.rows;
        let by_id = |a: &Row, b: &Row| {
            let ka = (a.channel_index, a.flags & flags::EXTENDED, a.id);
            let kb = (b.channel_index, b.flags & flags::EXTENDED, b.id);
            ka.cmp(&kb)
        };
        match key {
            SortKey::Id => out.sort_by(|&a, &b| by_id(&rows[a], &rows[b])),
            SortKey::Rate => out.sort_by(|&a, &b| {
                rows[b]
                    .rate
                    .total_cmp(&rows[a].rate)
                    .then_with(|| by_id(&rows[a], &rows[b]))
            }),
            SortKey::Count => out.sort_by(|&a, &b| {
                rows[b]
                    .count
                    .cmp(&rows[a].count)
                    .then_with(|| by_id(&rows[a], &rows[b]))
            }),
        }
    }
}

/// A `top` row filter typed by the user: an identifier (`123`, `1F334455`), an
/// inclusive range (`100-1FF`), or candump's `id:mask` / `id~mask`, all hex. Empty
/// keeps every row.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct RowFilter {
    kind: FilterKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
enum FilterKind {
    #[default]
    All,
    Range(u32, u32),
    Mask {
        id: u32,
        mask: u32,
        invert: bool,
    },
}

impl RowFilter {
    /// True when the row passes.
    pub fn keeps(&self, row: &Row) -> bool {
        match self.kind {
            FilterKind::All => true,
            FilterKind::Range(lo, hi) => (lo..=hi).contains(&row.id),
            FilterKind::Mask { id, mask, invert } => ((row.id & mask) == (id & mask)) != invert,
        }
    }

    /// True when the filter keeps everything.
    pub fn is_all(&self) -> bool {
        self.kind == FilterKind::All
    }
}

impl FromStr for RowFilter {
    type Err = String;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let s = s.trim();
        let hex = |t: &str| {
            u32::from_str_radix(t.trim(), 16).map_err(|_| format!("{t}: not a hex identifier"))
        };
        let kind = if s.is_empty() {
            FilterKind::All
        } else if let Some((a, b)) = s.split_once('-') {
            let (lo, hi) = (hex(a)?, hex(b)?);
            if lo > hi {
                return Err(format!("{s}: range goes down"));
            }
            FilterKind::Range(lo, hi)
        } else if let Some((a, b)) = s.split_once(':') {
            FilterKind::Mask {
                id: hex(a)?,
                mask: hex(b)?,
                invert: false,
            }
        } else if let Some((a, b)) = s.split_once('~') {
            FilterKind::Mask {
                id: hex(a)?,
                mask: hex(b)?,
                invert: true,
            }
        } else {
            let id = hex(s)?;
            FilterKind::Range(id, id)
        };
        Ok(RowFilter { kind })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(ts_ms: u64, id: u32, data: &[u8]) -> CanFrame {
        let mut f = CanFrame::new(id, 0, data).unwrap();
        f.timestamp_ns = 1_000_000_000_000 + ts_ms * 1_000_000;
        f
    }

    #[test]
    fn rows_count_period_jitter_and_changes() {
        let mut t = IdTable::new();
        // 0x100 every 10 ms exactly, byte 1 changes on the 5th frame.
        for i in 0..10u64 {
            let b = if i >= 4 { 9 } else { 1 };
            t.on_frame(&frame(i * 10, 0x100, &[0, b, 2]));
        }
        // 0x200 at 0, 10, 30 ms: periods 10 and 20 → mean 15, sd 7.07 ms.
        for ms in [0, 10, 30] {
            t.on_frame(&frame(ms, 0x200, &[7]));
        }
        assert_eq!(t.rows().len(), 2);
        let r = &t.rows()[0];
        assert_eq!((r.id, r.count, r.len, r.dlc), (0x100, 10, 3, 3));
        assert!((r.mean_period().unwrap() - 0.010).abs() < 1e-9);
        assert!(r.jitter().unwrap() < 1e-9);
        let at_fifth = 1_000_000_000_000 + 40 * 1_000_000;
        assert_eq!(r.changed_ns[1], at_fifth);
        assert_eq!(r.changed_since(at_fifth), 0b010);
        assert_eq!(r.changed_since(at_fifth + 1), 0);
        let r2 = &t.rows()[1];
        assert!((r2.mean_period().unwrap() - 0.015).abs() < 1e-9);
        assert!((r2.jitter().unwrap() - 0.007_071).abs() < 1e-5);
        assert_eq!(t.totals().frames, 13);
        assert_eq!(t.totals().bytes, 33);
    }

    #[test]
    fn channel_and_kind_make_separate_rows() {
        let mut t = IdTable::new();
        let mut a = frame(0, 0x10, &[1]);
        a.channel = Channel::str("can0").unwrap();
        let mut b = a;
        b.channel = Channel::str("can1").unwrap();
        let c = CanFrame::new(0x10, flags::EXTENDED, &[1]).unwrap();
        for f in [a, b, c, a] {
            t.on_frame(&f);
        }
        assert_eq!(t.rows().len(), 3);
        assert_eq!(t.rows()[0].count, 2);
        assert_eq!(t.channels().len(), 3);
    }

    #[test]
    fn rates_and_load_per_window() {
        let mut t = IdTable::new();
        t.tick(frame(0, 0, &[]).timestamp_ns);
        // 100 frames of 8 bytes in one second on one channel.
        for i in 0..100 {
            t.on_frame(&frame(i * 10, 0x123, &[0; 8]));
        }
        t.tick(frame(1000, 0, &[]).timestamp_ns);
        assert!((t.rows()[0].rate - 100.0).abs() < 1e-9);
        assert!((t.totals().frames_per_s - 100.0).abs() < 1e-9);
        // 111 bits each: 11100 bit/s on a 500 kbit/s bus is 2.22 %.
        assert!((t.max_load(500_000) - 0.0222).abs() < 1e-9);
        // A quiet second brings the rate to zero.
        t.tick(frame(2000, 0, &[]).timestamp_ns);
        assert_eq!(t.rows()[0].rate, 0.0);
    }

    #[test]
    fn order_and_filter() {
        let mut t = IdTable::new();
        t.tick(0);
        for (id, n) in [(0x300, 1), (0x100, 3), (0x200, 2)] {
            for i in 0..n {
                t.on_frame(&frame(i, id, &[]));
            }
        }
        t.tick(2_000_000_000_000);
        let mut out = Vec::new();
        let ids = |t: &IdTable, out: &[usize]| -> Vec<u32> {
            out.iter().map(|&i| t.rows()[i].id).collect()
        };
        t.order(SortKey::Id, |_| true, &mut out);
        assert_eq!(ids(&t, &out), [0x100, 0x200, 0x300]);
        t.order(SortKey::Count, |_| true, &mut out);
        assert_eq!(ids(&t, &out), [0x100, 0x200, 0x300]);
        let f: RowFilter = "200-3ff".parse().unwrap();
        t.order(SortKey::Rate, |r| f.keeps(r), &mut out);
        assert_eq!(ids(&t, &out), [0x200, 0x300]);
        let f: RowFilter = "100~700".parse().unwrap();
        t.order(SortKey::Id, |r| f.keeps(r), &mut out);
        assert_eq!(ids(&t, &out), [0x200, 0x300]);
        assert!("xyz".parse::<RowFilter>().is_err());
        assert!("".parse::<RowFilter>().unwrap().is_all());
    }

    #[test]
    fn copy_and_clear() {
        let mut t = IdTable::new();
        t.on_event(&Event::Frame(frame(0, 1, &[1])));
        t.on_event(&Event::KernelDrops {
            count: 3,
            timestamp_ns: 0,
        });
        let mut snap = IdTable::new();
        t.copy_into(&mut snap);
        assert_eq!(snap.rows().len(), 1);
        assert_eq!(snap.totals().kernel_drops, 3);
        t.clear();
        assert!(t.rows().is_empty());
        t.on_frame(&frame(0, 1, &[1]));
        assert_eq!(t.rows()[0].count, 1);
    }
}
