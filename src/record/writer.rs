//! [`Recorder`]: appends records to preallocated, memory-mapped `.cmc` segments.
//!
//! Each record is copied into the map with its commit word still 0, then the commit word
//! (a CRC-32C of the record) is stored with `Release` ordering. A reader — or a reader
//! after the writer was killed — therefore sees either the whole record or a 0 word and
//! stops there. Nothing on the per-frame path allocates: the tables are fixed-capacity
//! vectors sized at [`Recorder::create`], and rotation reuses a preallocated path buffer.

use std::ffi::OsStr;
use std::fs::{File, OpenOptions};
use std::io::Write as _;
use std::os::unix::ffi::OsStrExt;
use std::os::unix::io::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU32, Ordering};

use memmap2::{MmapMut, MmapOptions};
use zerocopy::IntoBytes;

use super::format::{self, kind, BatchRec, BlockRec, FrameRec, RecordHead, SegmentHeader};
use super::RecordError;
use crate::frame::{CanFrame, Channel, SenderAddr};
use crate::sys::now_ns;
use crate::wire::native::{BatchRecords, FrameBatch};

/// When the recorder asks the kernel to write mapped pages to disk.
///
/// Records survive a killed process under every policy (the page cache holds them);
/// syncing only matters for a machine that loses power.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SyncPolicy {
    /// Never; the kernel writes back when it likes.
    Never,
    /// `msync(MS_SYNC)` + `fsync` of the last segment at [`Recorder::finish`] (or drop).
    /// Rotation does not wait for the disk, so the writer never stalls mid-capture.
    OnFinish,
    /// `msync(MS_SYNC)` + `fsync` whenever a segment is closed (rotation and finish):
    /// each closed segment is durable, at the price of a stall per rotation while the
    /// segment (64 MiB by default) goes to disk.
    OnClose,
    /// As `OnClose`, plus `msync(MS_ASYNC)` each time this many bytes were written.
    EveryBytes(u64),
}

/// How a [`Recorder`] lays out its segments.
#[derive(Debug, Clone, Copy)]
pub struct RecorderOptions {
    /// Bytes preallocated per segment file; a multiple of 8, at least the tables plus
    /// one 64 KiB block. Default 64 MiB.
    pub segment_size: u64,
    /// Default [`SyncPolicy::OnFinish`].
    pub sync: SyncPolicy,
    /// Distinct channels per segment (1–256); default 64. A frame with a new channel
    /// when the table is full starts a new segment.
    pub max_channels: u16,
    /// Distinct senders per segment (1–65535); default 1024. Same overflow rule.
    pub max_senders: u16,
    /// Fault the whole segment in when it is created (`MAP_POPULATE`): fewer page
    /// faults per frame, but each rotation stalls the writer while 64 MiB is mapped in
    /// (~30 ms on tmpfs). Default false: the cost is spread over the writes.
    pub prefault: bool,
}

impl Default for RecorderOptions {
    fn default() -> Self {
        RecorderOptions {
            segment_size: 64 << 20,
            sync: SyncPolicy::OnFinish,
            max_channels: 64,
            max_senders: 1024,
            prefault: false,
        }
    }
}

/// What a recorder has written so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecorderStats {
    /// Frames: frame records plus the frames of batch records.
    pub frames: u64,
    /// Loss records, and the frames they say were lost.
    pub loss_records: u64,
    /// Frames the loss records say were lost.
    pub lost: u64,
    /// Kernel-drop records, and the datagrams they say were dropped.
    pub kernel_drop_records: u64,
    /// Datagrams the kernel-drop records say were dropped.
    pub kernel_drops: u64,
    /// Segment files created.
    pub segments: u32,
    /// Bytes used in all segments (headers and tables included).
    pub bytes: u64,
}

/// The path of segment `n` of a recording: `base` for 0, then `base.1`, `base.2`, …
pub fn segment_path(base: &Path, n: u32) -> PathBuf {
    if n == 0 {
        return base.to_path_buf();
    }
    let mut s = base.as_os_str().to_owned();
    s.push(format!(".{n}"));
    PathBuf::from(s)
}

#[derive(Debug)]
struct Segment {
    file: File,
    map: MmapMut,
    /// Next record goes here.
    off: usize,
    /// End of the current block (or of the segment).
    limit: usize,
    /// Start of what the last `msync(MS_ASYNC)` did not cover.
    synced_from: usize,
}

/// Writes a `.cmc` recording. See the [module docs](super) for the format.
#[derive(Debug)]
pub struct Recorder {
    /// Segment path being written; `base_len` bytes of it are the base path.
    path: Vec<u8>,
    base_len: usize,
    opts: RecorderOptions,
    channel_cap: usize,
    sender_cap: usize,
    data_start: usize,
    recording_id: u64,
    segment_no: u32,
    seg: Option<Segment>,
    /// Set when a write error ended the recording: its message, for later calls.
    stopped: Option<String>,
    channels: Vec<Channel>,
    senders: Vec<SenderAddr>,
    /// Open addressing: 0 empty, else sender slot + 1.
    sender_hash: Vec<u16>,
    last_channel: Option<(Channel, u8)>,
    last_sender: Option<(SenderAddr, u16)>,
    max_ts: u64,
    stats: RecorderStats,
}

impl Recorder {
    /// Creates (or replaces) the recording at `path`: preallocates and maps segment 0.
    /// Leftover `path.1`, `path.2`, … from an older recording are removed.
    pub fn create(path: impl AsRef<Path>, opts: RecorderOptions) -> Result<Self, RecordError> {
        let base = path.as_ref();
        if !(1..=256).contains(&opts.max_channels) || opts.max_senders == 0 {
            return Err(RecordError::InvalidOptions(
                "max_channels must be 1-256 and max_senders at least 1",
            ));
        }
        let channel_cap = opts.max_channels as usize;
        let sender_cap = opts.max_senders as usize;
        let data_start = format::data_start(channel_cap, sender_cap);
        let min = (data_start + format::BLOCK_SIZE) as u64;
        if opts.segment_size % 8 != 0
            || opts.segment_size < min
            || opts.segment_size > u32::MAX as u64
        {
            return Err(RecordError::InvalidOptions(
                "segment_size must be a multiple of 8, at least the tables plus 64 KiB, and below 4 GiB",
            ));
        }
        remove_stale_segments(base);
        let now = now_ns();
        let mut path = Vec::with_capacity(base.as_os_str().len() + 16);
        path.extend_from_slice(base.as_os_str().as_bytes());
        let hash_len = (2 * sender_cap).next_power_of_two();
        let mut rec = Recorder {
            base_len: path.len(),
            path,
            opts,
            channel_cap,
            sender_cap,
            data_start,
            recording_id: now
                ^ ((std::process::id() as u64) << 32).rotate_left(17)
                ^ 0x9E37_79B9_7F4A_7C15,
            segment_no: 0,
            seg: None,
            stopped: None,
            channels: Vec::with_capacity(channel_cap),
            senders: Vec::with_capacity(sender_cap),
            sender_hash: vec![0; hash_len],
            last_channel: None,
            last_sender: None,
            max_ts: 0,
            stats: RecorderStats::default(),
        };
        rec.open_segment()?;
        Ok(rec)
    }

    /// Appends one frame. Fails only when the recording has stopped (a write error,
    /// reported once with its cause, then [`RecordError::Stopped`]) or for a frame whose
    /// `len` exceeds 64.
    #[inline]
    pub fn write_frame(&mut self, frame: &CanFrame) -> Result<(), RecordError> {
        if frame.len > 64 {
            return Err(RecordError::InvalidFrame { len: frame.len });
        }
        let len = format::stored_len_byte(frame);
        let stored = format::stored_len(frame.flags, len);
        let size = format::frame_size(stored);
        let (ch, snd) = self.prepare(size, Some(&frame.channel), &frame.sender)?;
        let mut buf = [0u8; format::frame_size(64)];
        let head = FrameRec {
            head: RecordHead {
                commit: 0.into(),
                size: (size as u16).into(),
                kind: kind::FRAME,
                flags: frame.flags
                    | if frame.direction() == crate::frame::Direction::Tx {
                        format::FLAG_TX
                    } else {
                        0
                    },
            },
            timestamp_ns: frame.timestamp_ns.into(),
            id: frame.id.into(),
            sender: snd.into(),
            channel: ch,
            len,
        };
        buf[..format::FRAME_HEAD].copy_from_slice(head.as_bytes());
        buf[format::FRAME_HEAD..format::FRAME_HEAD + stored].copy_from_slice(&frame.data[..stored]);
        self.append(&buf[..size]);
        self.stats.frames += 1;
        self.note_time(frame.timestamp_ns);
        Ok(())
    }

    /// Appends the frames of one native datagram as it arrived: one batch record (one
    /// copy of the wire records, one checksum) instead of a frame record per frame.
    /// Every frame reads back as [`FrameBatch::frames`] yields it, with `sender` set and
    /// direction Rx. An empty batch writes nothing.
    ///
    /// A batch that does not fit the rest of the current block is split at a frame
    /// record boundary: the frames that fit go there, the rest in the next block (each
    /// part a batch record with the same base time, sender and channel). Each part is
    /// committed on its own, so a writer killed between parts leaves the first part;
    /// an error (the recording stopped) after the first part leaves it recorded.
    ///
    /// Fewer than [`format::MIN_BATCH`] frames (a small datagram, or what is left of a
    /// split) go as frame records: a batch record's 32-byte head would make them cost
    /// more than the 32 bytes per classic frame SPEC §5 allows.
    #[inline]
    pub fn write_batch(
        &mut self,
        batch: &FrameBatch<'_>,
        sender: &SenderAddr,
    ) -> Result<(), RecordError> {
        let mut rest = batch.records();
        let mut left = batch.len();
        if left < format::MIN_BATCH {
            return self.write_as_frames(batch, rest, left, sender);
        }
        let size = format::batch_size(rest.len());
        if size <= self.room() {
            // The common case: the whole datagram goes here, no walk over its records.
            // (A full table rotates: a fresh block has more room than this one.)
            let (ch, snd) = self.prepare(size, Some(batch.channel()), sender)?;
            self.put_batch(batch, ch, snd, rest, left, batch.max_timestamp_ns());
            return Ok(());
        }
        while left > 0 {
            if left < format::MIN_BATCH {
                return self.write_as_frames(batch, rest, left, sender);
            }
            let room = self.room().saturating_sub(format::BATCH_HEAD);
            let mut part = format::split_records(rest, left, room.min(format::MAX_BATCH_RECORDS));
            if part.count < format::MIN_BATCH {
                // Too few frames fit the rest of this block to be worth a batch record:
                // pad it; the part starts the next block.
                part = format::split_records(rest, left, format::MAX_BATCH_RECORDS);
                if part.count == 0 {
                    // Cannot happen for a checked batch (a record is at most 76 bytes).
                    return Err(RecordError::InvalidFrame { len: 0 });
                }
            }
            let size = format::batch_size(part.bytes);
            let (ch, snd) = self.prepare(size, Some(batch.channel()), sender)?;
            let max_ts = batch.base_ts().wrapping_add(part.max_delta as u64);
            let (these, later) = rest.split_at(part.bytes);
            self.put_batch(batch, ch, snd, these, part.count, max_ts);
            rest = later;
            left -= part.count;
        }
        Ok(())
    }

    /// Writes `count` records of `batch` (`records`) as frame records.
    #[cold]
    fn write_as_frames(
        &mut self,
        batch: &FrameBatch<'_>,
        records: &[u8],
        count: usize,
        sender: &SenderAddr,
    ) -> Result<(), RecordError> {
        // `records` are records of a checked batch: the walk yields no error.
        for r in BatchRecords::new(records, count as u16).flatten() {
            let mut f = r.to_frame(batch.base_ts(), batch.channel());
            f.sender = *sender;
            self.write_frame(&f)?;
        }
        Ok(())
    }

    /// Bytes left in the current block (0 when stopped).
    #[inline]
    fn room(&self) -> usize {
        self.seg.as_ref().map_or(0, |s| s.limit - s.off)
    }

    /// Appends one batch record (room and slots already prepared).
    #[inline]
    fn put_batch(
        &mut self,
        batch: &FrameBatch<'_>,
        ch: u8,
        snd: u16,
        records: &[u8],
        count: usize,
        max_ts: u64,
    ) {
        let size = format::batch_size(records.len());
        let head = BatchRec {
            head: RecordHead {
                commit: 0.into(),
                size: (size as u16).into(),
                kind: kind::BATCH,
                flags: 0,
            },
            base_ts: batch.base_ts().into(),
            max_ts: max_ts.into(),
            sender: snd.into(),
            channel: ch,
            reserved: 0,
            count: (count as u16).into(),
            records_len: (records.len() as u16).into(),
        };
        if let Some(seg) = self.seg.as_mut() {
            let at = seg.off;
            seg.off += size;
            publish_batch(&mut seg.map, at, head.as_bytes(), records, size);
        }
        self.stats.frames += count as u64;
        self.note_time(max_ts);
    }

    /// Records that `lost` frames from `sender` never arrived (a sequence gap).
    pub fn write_loss(
        &mut self,
        sender: SenderAddr,
        lost: u64,
        timestamp_ns: u64,
    ) -> Result<(), RecordError> {
        let (_, snd) = self.prepare(32, None, &sender)?;
        let rec = format::LossRec {
            head: RecordHead {
                commit: 0.into(),
                size: 32.into(),
                kind: kind::LOSS,
                flags: 0,
            },
            timestamp_ns: timestamp_ns.into(),
            lost: lost.into(),
            sender: snd.into(),
            reserved: [0; 6],
        };
        self.append(rec.as_bytes());
        self.stats.loss_records += 1;
        self.stats.lost = self.stats.lost.saturating_add(lost);
        self.note_time(timestamp_ns);
        Ok(())
    }

    /// Records that the kernel dropped `count` datagrams (receive-queue overflow).
    pub fn write_kernel_drops(&mut self, count: u64, timestamp_ns: u64) -> Result<(), RecordError> {
        self.ensure_room(24)?;
        let rec = format::DropsRec {
            head: RecordHead {
                commit: 0.into(),
                size: 24.into(),
                kind: kind::KERNEL_DROPS,
                flags: 0,
            },
            timestamp_ns: timestamp_ns.into(),
            count: count.into(),
        };
        self.append(rec.as_bytes());
        self.stats.kernel_drop_records += 1;
        self.stats.kernel_drops = self.stats.kernel_drops.saturating_add(count);
        self.note_time(timestamp_ns);
        Ok(())
    }

    /// Asks the kernel to start writing what was recorded since the last flush
    /// (`msync(MS_ASYNC)`); returns without waiting.
    pub fn flush(&mut self) -> Result<(), RecordError> {
        let Some(seg) = self.seg.as_mut() else {
            return Ok(());
        };
        let (from, to) = (seg.synced_from, seg.off);
        if to > from {
            seg.map
                .flush_async_range(from, to - from)
                .map_err(|e| RecordError::Io {
                    op: "msync",
                    path: PathBuf::from(OsStr::from_bytes(&self.path)),
                    source: e,
                })?;
            seg.synced_from = to;
        }
        Ok(())
    }

    /// Closes the recording: marks the last segment's end and truncates it to its used
    /// length. Dropping a recorder does the same but cannot report errors.
    pub fn finish(mut self) -> Result<RecorderStats, RecordError> {
        self.close_segment(true)?;
        Ok(self.stats)
    }

    /// What has been written so far.
    pub fn stats(&self) -> RecorderStats {
        let mut s = self.stats;
        if let Some(seg) = &self.seg {
            s.bytes += seg.off as u64;
        }
        s
    }

    /// The path of the segment being written.
    pub fn current_path(&self) -> &Path {
        Path::new(OsStr::from_bytes(&self.path))
    }

    #[inline]
    fn note_time(&mut self, ts: u64) {
        self.max_ts = self.max_ts.max(ts);
        if let (SyncPolicy::EveryBytes(n), Some(seg)) = (self.opts.sync, self.seg.as_ref()) {
            if seg.off - seg.synced_from >= n as usize {
                // An msync failure here is not fatal: the data is in the page cache and
                // the close-time sync reports errors.
                let _ = self.flush();
            }
        }
    }

    /// Makes room for a `size`-byte record and finds (or defines) the table slots it
    /// refers to, rotating if a table is full.
    #[inline]
    fn prepare(
        &mut self,
        size: usize,
        channel: Option<&Channel>,
        sender: &SenderAddr,
    ) -> Result<(u8, u16), RecordError> {
        self.ensure_room(size)?;
        if let Some(found) = self.lookup(channel, sender) {
            return Ok(found);
        }
        // A table is full: a new segment starts with empty tables, and one record needs
        // at most one slot in each.
        self.rotate()?;
        self.ensure_room(size)?;
        self.lookup(channel, sender).ok_or(RecordError::TableFull)
    }

    #[inline]
    fn lookup(&mut self, channel: Option<&Channel>, sender: &SenderAddr) -> Option<(u8, u16)> {
        let ch = match channel {
            Some(c) => self.channel_slot(c)?,
            None => 0,
        };
        Some((ch, self.sender_slot(sender)?))
    }

    #[inline]
    fn channel_slot(&mut self, c: &Channel) -> Option<u8> {
        if let Some((last, i)) = &self.last_channel {
            if last == c {
                return Some(*i);
            }
        }
        let i = match self.channels.iter().position(|x| x == c) {
            Some(i) => i,
            None => {
                if self.channels.len() >= self.channel_cap {
                    return None;
                }
                let i = self.channels.len();
                self.channels.push(*c);
                let def = format::ChannelDef {
                    head: RecordHead {
                        commit: 0.into(),
                        size: (format::SLOT_SIZE as u16).into(),
                        kind: kind::CHANNEL,
                        flags: 0,
                    },
                    channel: c.as_bytes().try_into().unwrap_or([0; 24]),
                };
                self.put(format::HEADER_SIZE + format::SLOT_SIZE * i, def.as_bytes());
                i
            }
        };
        self.last_channel = Some((*c, i as u8));
        Some(i as u8)
    }

    #[inline]
    fn sender_slot(&mut self, s: &SenderAddr) -> Option<u16> {
        if let Some((last, i)) = &self.last_sender {
            if last == s {
                return Some(*i);
            }
        }
        let mask = self.sender_hash.len() - 1;
        let mut h = hash_sender(s) & mask;
        let i = loop {
            match self.sender_hash[h] {
                0 => {
                    if self.senders.len() >= self.sender_cap {
                        return None;
                    }
                    let i = self.senders.len();
                    self.senders.push(*s);
                    self.sender_hash[h] = i as u16 + 1;
                    self.define_sender(i, s);
                    break i;
                }
                e if self.senders[e as usize - 1] == *s => break e as usize - 1,
                _ => h = (h + 1) & mask,
            }
        };
        self.last_sender = Some((*s, i as u16));
        Some(i as u16)
    }

    fn define_sender(&mut self, i: usize, s: &SenderAddr) {
        // SenderAddr is addr[16], port (native endian), family, reserved.
        let raw = s.as_bytes();
        let mut addr = [0u8; 16];
        addr.copy_from_slice(&raw[..16]);
        let port = u16::from_ne_bytes([raw[16], raw[17]]);
        let def = format::SenderDef {
            head: RecordHead {
                commit: 0.into(),
                size: (format::SLOT_SIZE as u16).into(),
                kind: kind::SENDER,
                flags: 0,
            },
            addr,
            port: port.into(),
            family: raw[18],
            reserved: [0; 5],
        };
        let at = format::HEADER_SIZE + format::SLOT_SIZE * (self.channel_cap + i);
        self.put(at, def.as_bytes());
    }

    /// Ensures `off + size <= limit`, padding out blocks and rotating segments as needed.
    #[inline]
    fn ensure_room(&mut self, size: usize) -> Result<(), RecordError> {
        match &self.seg {
            Some(seg) if seg.off + size <= seg.limit => Ok(()),
            _ => self.next_block(size),
        }
    }

    #[cold]
    fn next_block(&mut self, size: usize) -> Result<(), RecordError> {
        loop {
            let Some(seg) = self.seg.as_mut() else {
                return Err(RecordError::Stopped {
                    cause: self
                        .stopped
                        .clone()
                        .unwrap_or_else(|| "recorder finished".into()),
                });
            };
            if seg.off + size <= seg.limit {
                return Ok(());
            }
            let len = seg.map.len();
            let (off, limit) = (seg.off, seg.limit);
            if off < limit {
                self.pad(off, limit - off);
            }
            if limit + format::BLOCK_REC + size > len {
                if limit < len {
                    self.pad(limit, len - limit);
                }
                if let Some(seg) = self.seg.as_mut() {
                    seg.off = len;
                }
                self.rotate()?;
                continue;
            }
            self.block_marker(limit);
            if let Some(seg) = self.seg.as_mut() {
                seg.off = limit + format::BLOCK_REC;
                seg.limit = (limit + format::BLOCK_SIZE).min(len);
            }
        }
    }

    fn pad(&mut self, at: usize, size: usize) {
        let head = RecordHead {
            commit: 0.into(),
            size: (size as u16).into(),
            kind: kind::PAD,
            flags: 0,
        };
        self.put(at, head.as_bytes());
    }

    fn block_marker(&mut self, at: usize) {
        let rec = BlockRec {
            head: RecordHead {
                commit: 0.into(),
                size: (format::BLOCK_REC as u16).into(),
                kind: kind::BLOCK,
                flags: 0,
            },
            max_ts_before: self.max_ts.into(),
            frames_before: self.stats.frames.into(),
        };
        self.put(at, rec.as_bytes());
    }

    /// Appends a record at the current offset (room already ensured).
    #[inline]
    fn append(&mut self, rec: &[u8]) {
        if let Some(seg) = self.seg.as_mut() {
            let at = seg.off;
            seg.off += rec.len();
            publish(&mut seg.map, at, rec);
        }
    }

    /// Writes a record at `at` and commits it.
    #[inline]
    fn put(&mut self, at: usize, rec: &[u8]) {
        if let Some(seg) = self.seg.as_mut() {
            publish(&mut seg.map, at, rec);
        }
    }

    #[cold]
    fn rotate(&mut self) -> Result<(), RecordError> {
        if let Err(e) = self.close_segment(false) {
            self.stopped = Some(e.to_string());
            return Err(e);
        }
        self.segment_no += 1;
        self.open_segment()
    }

    /// Creates, preallocates and maps segment `segment_no`; writes its header and the
    /// marker of block 0. On failure the recorder stops and the file is removed.
    #[cold]
    fn open_segment(&mut self) -> Result<(), RecordError> {
        self.path.truncate(self.base_len);
        if self.segment_no > 0 {
            // Cannot fail: Vec's io::Write only grows it, and the capacity was reserved.
            let _ = write!(self.path, ".{}", self.segment_no);
        }
        let result = self.try_open_segment();
        if let Err(e) = &result {
            self.stopped = Some(e.to_string());
        }
        result
    }

    fn try_open_segment(&mut self) -> Result<(), RecordError> {
        let path = Path::new(OsStr::from_bytes(&self.path));
        let size = self.opts.segment_size;
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(true)
            .open(path)
            .map_err(|e| RecordError::Io {
                op: "create",
                path: path.to_path_buf(),
                source: e,
            })?;
        // Reserve the blocks now: a store into a mapped hole the file system cannot fill
        // would be SIGBUS, not an error.
        // SAFETY: plain syscall on a file descriptor we own.
        let rc = unsafe { libc::posix_fallocate(file.as_raw_fd(), 0, size as libc::off_t) };
        if rc != 0 {
            let _ = std::fs::remove_file(path);
            return Err(RecordError::Preallocate {
                path: path.to_path_buf(),
                bytes: size,
                source: std::io::Error::from_raw_os_error(rc),
            });
        }
        let mut mo = MmapOptions::new();
        if self.opts.prefault {
            mo.populate();
        }
        // SAFETY: the file is ours, opened read-write and sized above; the recording
        // format tolerates other processes reading it concurrently, and nothing
        // truncates it while mapped (we unmap before truncating).
        let map = match unsafe { mo.map_mut(&file) } {
            Ok(m) => m,
            Err(e) => {
                let _ = std::fs::remove_file(path);
                return Err(RecordError::Map {
                    path: path.to_path_buf(),
                    source: e,
                });
            }
        };
        self.seg = Some(Segment {
            file,
            map,
            off: 0,
            limit: 0,
            synced_from: 0,
        });
        self.channels.clear();
        self.senders.clear();
        self.sender_hash.fill(0);
        self.last_channel = None;
        self.last_sender = None;
        self.stats.segments += 1;

        let header = SegmentHeader {
            magic: format::MAGIC,
            version: format::VERSION.into(),
            header_size: (format::HEADER_SIZE as u16).into(),
            block_size: (format::BLOCK_SIZE as u32).into(),
            recording_id: self.recording_id.into(),
            segment_no: self.segment_no.into(),
            channel_cap: (self.channel_cap as u16).into(),
            sender_cap: (self.sender_cap as u16).into(),
            start_time_ns: now_ns().into(),
            data_start: (self.data_start as u32).into(),
            header_crc: 0.into(),
            end_offset: 0.into(),
            end_crc: 0.into(),
            reserved: 0.into(),
        };
        let ds = self.data_start;
        if let Some(seg) = self.seg.as_mut() {
            let bytes = header.as_bytes();
            seg.map[..format::HEADER_CRC_AT].copy_from_slice(&bytes[..format::HEADER_CRC_AT]);
            let crc = format::commit_word(format::crc32c(&bytes[..format::HEADER_CRC_AT]));
            store_release(&mut seg.map, format::HEADER_CRC_AT, crc);
        }
        self.block_marker(ds);
        if let Some(seg) = self.seg.as_mut() {
            seg.off = ds + format::BLOCK_REC;
            seg.limit = (ds + format::BLOCK_SIZE).min(seg.map.len());
        }
        Ok(())
    }

    /// Commits the end offset in the header, syncs per policy, unmaps and truncates.
    #[cold]
    fn close_segment(&mut self, last: bool) -> Result<(), RecordError> {
        let Some(mut seg) = self.seg.take() else {
            return Ok(());
        };
        let end = seg.off as u64;
        seg.map[format::END_AT..format::END_AT + 8].copy_from_slice(&end.to_le_bytes());
        let crc = format::commit_word(format::crc32c(&end.to_le_bytes()));
        store_release(&mut seg.map, format::END_CRC_AT, crc);
        self.stats.bytes += end;
        let path = || PathBuf::from(OsStr::from_bytes(&self.path));
        let io = |op, e| RecordError::Io {
            op,
            path: path(),
            source: e,
        };
        let sync = match self.opts.sync {
            SyncPolicy::Never => false,
            SyncPolicy::OnFinish => last,
            SyncPolicy::OnClose | SyncPolicy::EveryBytes(_) => true,
        };
        if sync {
            seg.map.flush().map_err(|e| io("msync", e))?;
        }
        drop(seg.map);
        seg.file.set_len(end).map_err(|e| io("truncate", e))?;
        if sync {
            seg.file.sync_all().map_err(|e| io("fsync", e))?;
        }
        Ok(())
    }
}

impl Drop for Recorder {
    fn drop(&mut self) {
        let _ = self.close_segment(true);
    }
}

/// Copies `rec` (commit word 0) to `map[at..]`, then Release-stores its commit word.
#[inline]
fn publish(map: &mut [u8], at: usize, rec: &[u8]) {
    let check = format::record_check(rec);
    let copied = match rec.get(6) {
        Some(&kind::PAD) => 8,
        _ => rec.len(),
    };
    map[at + 4..at + copied].copy_from_slice(&rec[4..copied]);
    store_release(map, at, check);
}

/// Copies a batch record (head with commit word 0, frame records, zero padding up to
/// `size`) to `map[at..]`, then Release-stores the commit word over what is in the map:
/// the records are copied once and checksummed where they landed (still in cache).
#[inline]
fn publish_batch(map: &mut [u8], at: usize, head: &[u8], records: &[u8], size: usize) {
    let h = format::BATCH_HEAD;
    let rec = &mut map[at..at + size];
    rec[4..h].copy_from_slice(&head[4..h]);
    rec[h..h + records.len()].copy_from_slice(records);
    // The map is fresh zeros, but a pad is cheap and keeps the record defined by what
    // this function wrote.
    rec[h + records.len()..].fill(0);
    let check = format::commit_word(format::crc32c(&rec[4..]));
    store_release(map, at, check);
}

/// The commit: every byte written before this store is visible to whoever sees the word.
#[inline]
fn store_release(map: &mut [u8], at: usize, word: u32) {
    let slot = &mut map[at..at + 4];
    assert!(slot.as_ptr() as usize % 4 == 0);
    // SAFETY: `slot` is 4 in-bounds bytes, 4-aligned (checked above; records are 8-aligned
    // in a page-aligned map), borrowed mutably so no other access exists in this process;
    // other processes only read it, and an atomic store is what they need to see.
    unsafe { AtomicU32::from_ptr(slot.as_mut_ptr().cast::<u32>()) }
        .store(word.to_le(), Ordering::Release);
}

#[inline]
fn hash_sender(s: &SenderAddr) -> usize {
    let b = s.as_bytes();
    let mut w = [0u8; 8];
    w.copy_from_slice(&b[0..8]);
    let a = u64::from_ne_bytes(w);
    w.copy_from_slice(&b[8..16]);
    let c = u64::from_ne_bytes(w);
    let mut t = [0u8; 4];
    t.copy_from_slice(&b[16..20]);
    let d = u32::from_ne_bytes(t) as u64;
    let h = (a ^ c.rotate_left(23) ^ d.rotate_left(47)).wrapping_mul(0x9E37_79B9_7F4A_7C15);
    (h >> 32) as usize
}

/// Removes `base.1`, `base.2`, … left by an older recording, so they are never read as
/// part of the new one. Only files that start with the `.cmc` magic are touched.
fn remove_stale_segments(base: &Path) {
    for n in 1.. {
        let p = segment_path(base, n);
        let mut magic = [0u8; 8];
        let ours = File::open(&p)
            .and_then(|mut f| std::io::Read::read_exact(&mut f, &mut magic))
            .is_ok()
            && magic == format::MAGIC;
        if !ours || std::fs::remove_file(&p).is_err() {
            break;
        }
    }
}
