//! [`Recording`]: opens a `.cmc` recording read-only through mmap and iterates its
//! records in place.
//!
//! Opening repairs in memory: an unclosed segment (writer killed) ends at its first
//! uncommitted record, found by a binary search over block markers plus one block scan.
//! Every record is checked (bounds, size, CRC-32C) before it is yielded, so truncated or
//! corrupted files end iteration early — [`Records::end`] says why — and never panic.
//! A frame batch record (version 3) is checked whole when it is reached, then expanded
//! into one [`Record::Frame`] per frame record it holds, in place.

use std::fs::File;
use std::path::{Path, PathBuf};

use zerocopy::FromBytes;

use super::format::{self, kind, BatchRec, BlockRec, FrameRec, RecordHead, SegmentHeader};
use super::mapped::MappedFile;
use super::writer::segment_path;
use super::RecordError;
use crate::frame::{CanFrame, Channel, Direction, SenderAddr};
use crate::wire::native::BatchRecords;

/// One segment file, mapped.
#[derive(Debug)]
struct Seg {
    map: Option<MappedFile>,
    number: u32,
    start_time_ns: u64,
    data_start: usize,
    /// Records lie in `data_start..end`.
    end: usize,
    /// The writer committed `end` (closed the segment normally).
    closed: bool,
    /// For an unclosed segment: what the end-finding scan stopped at, if it was not
    /// simply an uncommitted record or the end of the file.
    tail: Option<Corruption>,
    channels: Vec<Option<Channel>>,
    senders: Vec<Option<SenderAddr>>,
}

impl Seg {
    fn bytes(&self) -> &[u8] {
        self.map.as_deref().unwrap_or(&[])
    }

    /// The file shrank under the mapping (its tail now reads as zeros).
    fn truncated(&self) -> bool {
        self.map.as_ref().is_some_and(MappedFile::truncated)
    }
}

/// A recording opened for reading. Cheap to iterate many times; nothing is copied.
#[derive(Debug)]
pub struct Recording {
    path: PathBuf,
    segs: Vec<Seg>,
    /// Why no further segment was opened (`None`: the next file did not exist).
    tail_note: Option<String>,
    /// The file after the last segment exists but its header was never committed:
    /// the writer was killed while rotating.
    tail_uncommitted: bool,
    recording_id: u64,
}

/// Why iteration ended.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum End {
    /// The writer finished the recording and every record was read.
    Finished,
    /// The writer did not finish (killed, or still running when opened): iteration
    /// stopped at the first record it had not committed. Normal after a crash.
    Unfinished,
    /// The segment file shrank while it was read (another process truncated it):
    /// everything before the cut was yielded.
    Truncated {
        /// Segment number of the file that shrank.
        segment: u32,
    },
    /// A record failed its checks; everything before it was yielded.
    Corrupt {
        /// Segment number and file offset of the record that failed.
        segment: u32,
        /// File offset of the record.
        offset: u64,
        /// What is wrong with it.
        reason: Corruption,
    },
}

/// What was wrong with a corrupt record.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Corruption {
    /// Commit word 0 before the segment's committed end.
    Hole,
    /// Size not a multiple of 8, too small, or past the end of the segment.
    BadSize,
    /// Commit word does not match the record's CRC-32C.
    BadChecksum,
    /// Checksum fine but fields inconsistent (length vs size, undefined table slot).
    Malformed,
}

impl Corruption {
    /// A few words for messages.
    pub fn describe(self) -> &'static str {
        match self {
            Corruption::Hole => "uncommitted record before the committed end",
            Corruption::BadSize => "impossible record size",
            Corruption::BadChecksum => "checksum mismatch",
            Corruption::Malformed => "inconsistent fields",
        }
    }
}

/// One record, borrowed from the recording's map.
#[derive(Debug, Clone, Copy)]
pub enum Record<'a> {
    /// A CAN or CAN FD frame, viewed in place.
    Frame(FrameView<'a>),
    /// `lost` frames from `sender` never arrived (sequence gap), noticed at `timestamp_ns`.
    Loss {
        /// The sender whose datagrams were lost.
        sender: SenderAddr,
        /// How many.
        lost: u64,
        /// When the gap was noticed.
        timestamp_ns: u64,
    },
    /// The kernel dropped `count` datagrams before `timestamp_ns`.
    KernelDrops {
        /// Datagrams dropped.
        count: u64,
        /// When the drops were noticed.
        timestamp_ns: u64,
    },
}

impl Record<'_> {
    /// The record's timestamp, ns since the Unix epoch.
    pub fn timestamp_ns(&self) -> u64 {
        match self {
            Record::Frame(f) => f.timestamp_ns(),
            Record::Loss { timestamp_ns, .. } | Record::KernelDrops { timestamp_ns, .. } => {
                *timestamp_ns
            }
        }
    }
}

/// A frame read in place (from a frame record, or one frame of a batch record): the
/// few scalars are decoded, the payload is a slice of the map.
/// [`FrameView::to_frame`] builds the full [`CanFrame`].
#[derive(Clone, Copy)]
pub struct FrameView<'a> {
    timestamp_ns: u64,
    id: u32,
    /// Record flags: [`crate::frame::flags`] bits plus [`format::FLAG_TX`].
    rec_flags: u8,
    /// The stored `len` byte (a raw DLC 9–15 for some classic frames).
    len: u8,
    payload: &'a [u8],
    channel: &'a Channel,
    sender: &'a SenderAddr,
}

impl<'a> FrameView<'a> {
    /// Receive time, ns since the Unix epoch.
    pub fn timestamp_ns(&self) -> u64 {
        self.timestamp_ns
    }
    /// Identifier without flags (error class bits for an error frame).
    pub fn id(&self) -> u32 {
        self.id
    }
    /// [`crate::frame::flags`] bits.
    pub fn flags(&self) -> u8 {
        self.rec_flags & crate::frame::flags::ALL
    }
    /// Rx or Tx (version 1 files and batch records: always Rx).
    pub fn direction(&self) -> Direction {
        if self.rec_flags & format::FLAG_TX != 0 {
            Direction::Tx
        } else {
            Direction::Rx
        }
    }
    /// `CanFrame::len` (the requested length for a remote frame).
    pub fn len(&self) -> u8 {
        if self.raw_dlc() != 0 {
            8
        } else {
            self.len
        }
    }
    /// `CanFrame::raw_dlc`: the DLC 9–15 of a classic 8-byte frame, else 0.
    pub fn raw_dlc(&self) -> u8 {
        if self.rec_flags & crate::frame::flags::FD == 0 && (9..=15).contains(&self.len) {
            self.len
        } else {
            0
        }
    }
    /// True for a zero-length frame.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
    /// The payload bytes, in place (empty for a remote frame).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
    /// The python-can channel, from this segment's channel table.
    pub fn channel(&self) -> &'a Channel {
        self.channel
    }
    /// The sender's address, from this segment's sender table.
    pub fn sender(&self) -> &'a SenderAddr {
        self.sender
    }
    /// The frame as the writer was given it (bytes past `len` zero).
    pub fn to_frame(&self) -> CanFrame {
        let mut f = CanFrame::EMPTY;
        f.timestamp_ns = self.timestamp_ns();
        f.id = self.id();
        f.flags = self.flags();
        f.len = self.len();
        f.raw_dlc = self.raw_dlc();
        f.set_direction(self.direction());
        f.channel = *self.channel;
        f.sender = *self.sender;
        f.data[..self.payload.len()].copy_from_slice(self.payload);
        f
    }
}

impl std::fmt::Debug for FrameView<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        self.to_frame().fmt(f)
    }
}

/// Totals over a whole recording, from [`Recording::stats`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stats {
    /// Frames: frame records plus the frames of batch records.
    pub frames: u64,
    /// Loss records.
    pub loss_records: u64,
    /// Sum of `lost` over loss records.
    pub lost: u64,
    /// Kernel-drop records.
    pub kernel_drop_records: u64,
    /// Sum of kernel drop counts.
    pub kernel_drops: u64,
    /// Smallest and largest record timestamp (None if no record).
    pub first_ns: Option<u64>,
    /// Largest record timestamp (None if no record).
    pub last_ns: Option<u64>,
    /// Segment files read.
    pub segments: u32,
    /// Bytes of records (headers and tables included) in the readable part.
    pub bytes: u64,
    /// How the readable part ends.
    pub end: End,
}

impl Recording {
    /// Opens `path` and its following segments `path.1`, `path.2`, … Given a later
    /// segment (`rec.cmc.3`), reads from that segment on: each segment stands alone.
    ///
    /// Succeeds on anything a killed writer can leave, including an empty file or one
    /// whose header was not yet committed (an empty recording). Fails for a file that is
    /// not a recording or whose first header is corrupt.
    pub fn open(path: impl AsRef<Path>) -> Result<Recording, RecordError> {
        let path = path.as_ref().to_path_buf();
        let mut rec = Recording {
            path: path.clone(),
            segs: Vec::new(),
            tail_note: None,
            tail_uncommitted: false,
            recording_id: 0,
        };
        let first = match open_seg(&path, None, None)? {
            Some(s) => s,
            None => return Ok(rec),
        };
        let id = first.1;
        rec.recording_id = id;
        let mut closed = first.0.closed;
        let mut n = first.0.number;
        // Opened a later segment (`rec.cmc.3`): read it alone, then its followers.
        let suffix = format!(".{n}");
        let base = match path.to_str() {
            Some(p) if n > 0 && p.ends_with(&suffix) => PathBuf::from(&p[..p.len() - suffix.len()]),
            _ if n > 0 => {
                closed = false;
                path.clone()
            }
            _ => path.clone(),
        };
        rec.segs.push(first.0);
        // A header may claim the last segment number: then no segment can follow.
        while let (true, Some(next)) = (closed, n.checked_add(1)) {
            n = next;
            let p = segment_path(&base, n);
            if !p.exists() {
                break;
            }
            match open_seg(&p, Some(n), Some(id)) {
                Ok(Some((s, _))) => {
                    closed = s.closed;
                    rec.segs.push(s);
                }
                Ok(None) => {
                    rec.tail_uncommitted = true;
                    break;
                }
                Err(e) => {
                    rec.tail_note = Some(e.to_string());
                    break;
                }
            }
        }
        Ok(rec)
    }

    /// The path given to [`Recording::open`].
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Number of readable segment files.
    pub fn segments(&self) -> u32 {
        self.segs.len() as u32
    }

    /// True if the writer closed the last segment (finished normally).
    pub fn is_finished(&self) -> bool {
        self.segs.last().is_some_and(|s| s.closed) && !self.tail_uncommitted
    }

    /// Wall-clock creation time of the first segment.
    pub fn start_time_ns(&self) -> Option<u64> {
        self.segs.first().map(|s| s.start_time_ns)
    }

    /// If a segment file after the last readable one was rejected, why.
    pub fn ignored_segment(&self) -> Option<&str> {
        self.tail_note.as_deref()
    }

    /// Makes the repair that [`Recording::open`] does in memory permanent: closes the
    /// last segment of a recording whose writer was killed at the end [`Recording::open`]
    /// found (commits `end_offset`, truncates the preallocated zeros, fsyncs) and
    /// removes a following segment file whose header was never committed.
    ///
    /// Returns how iteration ended before the repair (`Finished`: nothing to do).
    /// Must not be called while a writer is still appending to the recording.
    pub fn repair(path: impl AsRef<Path>) -> Result<End, RecordError> {
        use std::os::unix::fs::FileExt;
        let r = Recording::open(path.as_ref())?;
        let before = {
            let mut it = r.iter();
            it.by_ref().count();
            it.end().copied().unwrap_or(End::Finished)
        };
        let Some(last) = r.segs.last() else {
            return Ok(before);
        };
        // The base name `rec.cmc` (None: a lone later segment under another name).
        let first = r.segs[0].number;
        let suffix = format!(".{first}");
        let base = match r.path.to_str() {
            _ if first == 0 => Some(r.path.clone()),
            Some(p) if p.ends_with(&suffix) => Some(PathBuf::from(&p[..p.len() - suffix.len()])),
            _ => None,
        };
        let seg_path = match &base {
            Some(b) => segment_path(b, last.number),
            None => r.path.clone(),
        };
        let io = |op, p: &Path, e| RecordError::Io {
            op,
            path: p.to_path_buf(),
            source: e,
        };
        if !last.closed {
            let end = last.end as u64;
            let mut tail = [0u8; 12];
            tail[..8].copy_from_slice(&end.to_le_bytes());
            let word = format::commit_word(format::crc32c(&tail[..8]));
            tail[8..].copy_from_slice(&word.to_le_bytes());
            let f = std::fs::OpenOptions::new()
                .write(true)
                .open(&seg_path)
                .map_err(|e| io("open", &seg_path, e))?;
            f.write_all_at(&tail, format::END_AT as u64)
                .map_err(|e| io("write", &seg_path, e))?;
            f.set_len(end).map_err(|e| io("truncate", &seg_path, e))?;
            f.sync_all().map_err(|e| io("fsync", &seg_path, e))?;
        }
        if let (Some(b), Some(number)) = (&base, last.number.checked_add(1)) {
            let next = segment_path(b, number);
            let id = r.recording_id;
            if next.exists() && matches!(open_seg(&next, Some(number), Some(id)), Ok(None)) {
                std::fs::remove_file(&next).map_err(|e| io("remove", &next, e))?;
            }
        }
        Ok(before)
    }

    /// Iterates every record from the start.
    pub fn iter(&self) -> Records<'_> {
        Records {
            rec: self,
            seg: 0,
            off: self.segs.first().map_or(0, |s| s.data_start),
            skip_before: 0,
            batch: None,
            end: None,
        }
    }

    /// Iterates from the first record whose timestamp is `>= time_ns` (then every record
    /// after it, whatever its time). O(log n): a binary search over the block markers,
    /// then a scan of at most one block plus records earlier than `time_ns`.
    pub fn seek(&self, time_ns: u64) -> Records<'_> {
        let mut it = self.iter();
        if self.segs.is_empty() {
            return it;
        }
        // Block markers carry the running maximum of earlier timestamps, which never
        // decreases: start at the last block before which nothing reached `time_ns`.
        let before = |s: &Seg, b: usize| match marker(s, b) {
            Some(m) => m.max_ts_before.get() < time_ns,
            None => false,
        };
        let si = partition(1, self.segs.len(), |i| before(&self.segs[i], 0));
        let s = &self.segs[si];
        let bi = partition(1, blocks(s), |b| before(s, b));
        it.seg = si;
        it.off = s.data_start + bi * format::BLOCK_SIZE;
        it.skip_before = time_ns;
        it
    }

    /// Counts everything (one pass over the records).
    pub fn stats(&self) -> Stats {
        let mut st = Stats {
            frames: 0,
            loss_records: 0,
            lost: 0,
            kernel_drop_records: 0,
            kernel_drops: 0,
            first_ns: None,
            last_ns: None,
            segments: self.segments(),
            bytes: 0,
            end: End::Finished,
        };
        let mut it = self.iter();
        for r in &mut it {
            let t = r.timestamp_ns();
            st.first_ns = Some(st.first_ns.map_or(t, |x| x.min(t)));
            st.last_ns = Some(st.last_ns.map_or(t, |x| x.max(t)));
            match r {
                Record::Frame(_) => st.frames += 1,
                Record::Loss { lost, .. } => {
                    st.loss_records += 1;
                    st.lost = st.lost.saturating_add(lost);
                }
                Record::KernelDrops { count, .. } => {
                    st.kernel_drop_records += 1;
                    st.kernel_drops = st.kernel_drops.saturating_add(count);
                }
            }
        }
        st.end = it.end().copied().unwrap_or(End::Finished);
        st.bytes = self.segs.iter().map(|s| s.end as u64).sum();
        st
    }
}

/// Iterator over a [`Recording`]'s records. Allocates nothing.
#[derive(Debug)]
pub struct Records<'a> {
    rec: &'a Recording,
    seg: usize,
    off: usize,
    /// Records with an earlier timestamp are skipped until one is yielded (seek).
    skip_before: u64,
    /// The batch record being expanded (already checked whole).
    batch: Option<Expansion<'a>>,
    end: Option<End>,
}

/// The frames of a checked batch record still to be yielded.
#[derive(Debug, Clone)]
struct Expansion<'a> {
    /// Frame records not yet yielded (docs/wire-native.md §2: id, delta_ns, flags, len,
    /// rtype, size_words, data).
    rest: &'a [u8],
    left: u16,
    base_ts: u64,
    channel: &'a Channel,
    sender: &'a SenderAddr,
}

impl<'a> Expansion<'a> {
    /// The next frame. Every record was checked in `parse` (as decode checks it), so
    /// this only reads fields; the bounds checks are kept so that nothing can panic.
    #[inline]
    fn next_frame(&mut self) -> Option<FrameView<'a>> {
        if self.left == 0 {
            return None;
        }
        let h: &[u8; 12] = self.rest.get(..12)?.try_into().ok()?;
        let (flags, len) = (h[8], h[9]);
        let n = if flags & crate::frame::flags::RTR != 0 {
            0
        } else {
            len as usize
        };
        let payload = self.rest.get(12..12 + n)?;
        self.rest = self.rest.get(h[11] as usize * 4..)?;
        self.left -= 1;
        Some(FrameView {
            timestamp_ns: self
                .base_ts
                .wrapping_add(u32::from_le_bytes([h[4], h[5], h[6], h[7]]) as u64),
            id: u32::from_le_bytes([h[0], h[1], h[2], h[3]]),
            rec_flags: flags,
            len,
            payload,
            channel: self.channel,
            sender: self.sender,
        })
    }
}

impl<'a> Records<'a> {
    /// Why iteration ended; `None` while records remain.
    pub fn end(&self) -> Option<&End> {
        self.end.as_ref()
    }

    /// Repositions this iterator as [`Recording::seek`] does.
    pub fn seek(&mut self, time_ns: u64) {
        *self = self.rec.seek(time_ns);
    }
}

impl std::iter::FusedIterator for Records<'_> {}

impl<'a> Iterator for Records<'a> {
    type Item = Record<'a>;

    fn next(&mut self) -> Option<Record<'a>> {
        while let Some(b) = self.batch.as_mut() {
            match b.next_frame() {
                Some(f) if f.timestamp_ns < self.skip_before => {}
                Some(f) => {
                    self.skip_before = 0;
                    return Some(Record::Frame(f));
                }
                None => self.batch = None,
            }
        }
        while self.end.is_none() {
            let Some(s) = self.rec.segs.get(self.seg) else {
                self.end = Some(End::Finished);
                break;
            };
            if self.off >= s.end {
                if s.truncated() {
                    self.end = Some(End::Truncated { segment: s.number });
                } else if let (false, Some(reason)) = (s.closed, s.tail) {
                    self.end = Some(End::Corrupt {
                        segment: s.number,
                        offset: s.end as u64,
                        reason,
                    });
                } else if !s.closed {
                    self.end = Some(End::Unfinished);
                } else if let Some(next) = self.rec.segs.get(self.seg + 1) {
                    self.seg += 1;
                    self.off = next.data_start;
                    continue;
                } else if self.rec.tail_uncommitted {
                    // Killed while creating the next segment: everything up to here
                    // is the recording. (Checked only after the last segment: checked
                    // earlier, it cut a crashed recording down to its first segment.)
                    self.end = Some(End::Unfinished);
                } else {
                    self.end = Some(End::Finished);
                }
                break;
            }
            match parse(s, self.off) {
                Ok((size, Parsed::Record(r))) => {
                    self.off += size;
                    if r.timestamp_ns() < self.skip_before {
                        continue;
                    }
                    self.skip_before = 0;
                    return Some(r);
                }
                Ok((size, Parsed::Batch(mut b, max_ts))) => {
                    self.off += size;
                    if max_ts < self.skip_before {
                        // Seeking: no frame of this batch is late enough.
                        continue;
                    }
                    while let Some(f) = b.next_frame() {
                        if f.timestamp_ns >= self.skip_before {
                            self.skip_before = 0;
                            self.batch = Some(b);
                            return Some(Record::Frame(f));
                        }
                    }
                }
                Ok((size, Parsed::Nothing)) => self.off += size,
                Err(_) if s.truncated() => {
                    self.end = Some(End::Truncated { segment: s.number });
                }
                Err(reason) => {
                    self.end = Some(End::Corrupt {
                        segment: s.number,
                        offset: self.off as u64,
                        reason,
                    });
                }
            }
        }
        None
    }
}

/// What [`parse`] found.
enum Parsed<'a> {
    /// A record to yield.
    Record(Record<'a>),
    /// A checked batch record to expand, and its largest frame timestamp.
    Batch(Expansion<'a>, u64),
    /// A record that yields nothing (block marker, pad, unknown kind).
    Nothing,
}

/// Reads the record at `off`: its size and what it holds.
fn parse(s: &Seg, off: usize) -> Result<(usize, Parsed<'_>), Corruption> {
    let bytes = s.bytes().get(off..s.end).ok_or(Corruption::BadSize)?;
    let (head, _) = RecordHead::ref_from_prefix(bytes).map_err(|_| Corruption::BadSize)?;
    if head.commit.get() == 0 {
        return Err(Corruption::Hole);
    }
    let size = head.size.get() as usize;
    if size < 8 || size % format::RECORD_ALIGN != 0 || size > bytes.len() {
        return Err(Corruption::BadSize);
    }
    let rec = &bytes[..size];
    if format::record_check(rec) != head.commit.get() {
        return Err(Corruption::BadChecksum);
    }
    let out = match head.kind {
        kind::FRAME => {
            let (f, rest) = FrameRec::ref_from_prefix(rec).map_err(|_| Corruption::Malformed)?;
            let stored = format::stored_len(f.head.flags, f.len);
            if f.len > 64 || format::frame_size(stored) != size {
                return Err(Corruption::Malformed);
            }
            Parsed::Record(Record::Frame(FrameView {
                timestamp_ns: f.timestamp_ns.get(),
                id: f.id.get(),
                rec_flags: f.head.flags,
                len: f.len,
                payload: &rest[..stored],
                channel: slot(&s.channels, f.channel as usize)?,
                sender: slot(&s.senders, f.sender.get() as usize)?,
            }))
        }
        kind::BATCH => {
            let (b, rest) = BatchRec::ref_from_prefix(rec).map_err(|_| Corruption::Malformed)?;
            let (count, len) = (b.count.get() as usize, b.records_len.get() as usize);
            if count == 0 || format::batch_size(len) != size {
                return Err(Corruption::Malformed);
            }
            let records = &rest[..len];
            // The whole batch is checked before any of its frames is yielded, as decode
            // checks each record: a batch reads whole or not at all, like any record.
            // The records must fill `records_len` exactly and their deltas agree with
            // `max_ts` (the index and seek rely on it).
            let part = format::split_records(records, count, len);
            let base_ts = b.base_ts.get();
            let ok = part.count == count
                && part.bytes == len
                && base_ts.wrapping_add(part.max_delta as u64) == b.max_ts.get()
                && BatchRecords::new(records, count as u16).all(|r| r.is_ok());
            if !ok {
                return Err(Corruption::Malformed);
            }
            Parsed::Batch(
                Expansion {
                    rest: records,
                    left: count as u16,
                    base_ts,
                    channel: slot(&s.channels, b.channel as usize)?,
                    sender: slot(&s.senders, b.sender.get() as usize)?,
                },
                b.max_ts.get(),
            )
        }
        kind::LOSS => {
            let l = format::LossRec::ref_from_bytes(rec).map_err(|_| Corruption::Malformed)?;
            Parsed::Record(Record::Loss {
                sender: *slot(&s.senders, l.sender.get() as usize)?,
                lost: l.lost.get(),
                timestamp_ns: l.timestamp_ns.get(),
            })
        }
        kind::KERNEL_DROPS => {
            let d = format::DropsRec::ref_from_bytes(rec).map_err(|_| Corruption::Malformed)?;
            Parsed::Record(Record::KernelDrops {
                count: d.count.get(),
                timestamp_ns: d.timestamp_ns.get(),
            })
        }
        // Block markers and pads carry no data; unknown kinds are skipped so that a
        // later minor version can add record types.
        _ => Parsed::Nothing,
    };
    Ok((size, out))
}

fn slot<T>(table: &[Option<T>], i: usize) -> Result<&T, Corruption> {
    table
        .get(i)
        .and_then(Option::as_ref)
        .ok_or(Corruption::Malformed)
}

/// Blocks that start before the segment's end.
fn blocks(s: &Seg) -> usize {
    s.end
        .saturating_sub(s.data_start)
        .div_ceil(format::BLOCK_SIZE)
}

/// The committed, checksummed marker at the start of block `b`, if any.
fn marker(s: &Seg, b: usize) -> Option<&BlockRec> {
    let off = s.data_start + b * format::BLOCK_SIZE;
    let raw = s.bytes().get(off..off + format::BLOCK_REC)?;
    let m = BlockRec::ref_from_bytes(raw).ok()?;
    let ok = m.head.commit.get() != 0
        && m.head.kind == kind::BLOCK
        && m.head.size.get() as usize == format::BLOCK_REC
        && format::record_check(raw) == m.head.commit.get();
    ok.then_some(m)
}

/// The first index in `lo..hi` where `pred` is false (`pred` true then false), or `hi`;
/// with `lo - 1` as the answer when pred(lo) is false. Returns the count of leading
/// trues plus `lo - 1`, i.e. the last index whose predicate held (or `lo - 1`).
fn partition(lo: usize, hi: usize, pred: impl Fn(usize) -> bool) -> usize {
    let (mut a, mut b) = (lo, hi.max(lo));
    while a < b {
        let m = a + (b - a) / 2;
        if pred(m) {
            a = m + 1;
        } else {
            b = m;
        }
    }
    a - 1
}

/// Maps and validates one segment. `Ok(None)`: an empty segment a killed writer left
/// before committing its header.
fn open_seg(
    path: &Path,
    number: Option<u32>,
    recording_id: Option<u64>,
) -> Result<Option<(Seg, u64)>, RecordError> {
    let io = |op, e| RecordError::Io {
        op,
        path: path.to_path_buf(),
        source: e,
    };
    let file = File::open(path).map_err(|e| io("open", e))?;
    let len = file.metadata().map_err(|e| io("stat", e))?.len();
    if len == 0 {
        return Ok(None);
    }
    let map = MappedFile::map(&file).map_err(|e| RecordError::Map {
        path: path.to_path_buf(),
        source: e,
    })?;
    let corrupt = |what| RecordError::CorruptHeader {
        path: path.to_path_buf(),
        what,
    };
    let Some(raw) = map.get(..format::HEADER_SIZE) else {
        return if map.iter().all(|&b| b == 0) {
            Ok(None)
        } else if map[..map.len().min(8)] == format::MAGIC[..map.len().min(8)] {
            Err(corrupt("file shorter than its header"))
        } else {
            Err(RecordError::NotARecording {
                path: path.to_path_buf(),
            })
        };
    };
    let h = SegmentHeader::read_from_bytes(raw).map_err(|_| corrupt("unreadable header"))?;
    if h.magic != format::MAGIC {
        if raw.iter().all(|&b| b == 0) {
            return Ok(None);
        }
        return Err(RecordError::NotARecording {
            path: path.to_path_buf(),
        });
    }
    if h.header_crc.get() == 0 {
        // The writer was killed between writing the header and committing it.
        return Ok(None);
    }
    if format::commit_word(format::crc32c(&raw[..format::HEADER_CRC_AT])) != h.header_crc.get() {
        return Err(corrupt("header checksum mismatch"));
    }
    if !(format::MIN_VERSION..=format::VERSION).contains(&h.version.get()) {
        return Err(RecordError::UnsupportedVersion {
            path: path.to_path_buf(),
            version: h.version.get(),
        });
    }
    if h.header_size.get() as usize != format::HEADER_SIZE
        || h.block_size.get() as usize != format::BLOCK_SIZE
    {
        return Err(corrupt("unsupported header or block size"));
    }
    if number.is_some_and(|n| n != h.segment_no.get()) {
        return Err(corrupt("segment number does not match the file name"));
    }
    if recording_id.is_some_and(|id| id != h.recording_id.get()) {
        return Err(corrupt("segment belongs to another recording"));
    }
    let (ccap, scap) = (h.channel_cap.get() as usize, h.sender_cap.get() as usize);
    let data_start = h.data_start.get() as usize;
    if ccap > 256 || data_start != format::data_start(ccap, scap) {
        return Err(corrupt("table sizes inconsistent"));
    }
    let slot_at = |i: usize| {
        let off = format::HEADER_SIZE + format::SLOT_SIZE * i;
        let raw = map.get(off..off + format::SLOT_SIZE)?;
        let head = RecordHead::ref_from_prefix(raw).ok()?.0;
        let ok = head.commit.get() != 0
            && head.size.get() as usize == format::SLOT_SIZE
            && format::record_check(raw) == head.commit.get();
        ok.then_some((head.kind, raw))
    };
    let channels = (0..ccap)
        .map(|i| match slot_at(i) {
            Some((kind::CHANNEL, raw)) => Channel::read_from_bytes(&raw[8..32]).ok(),
            _ => None,
        })
        .collect();
    let senders = (0..scap)
        .map(|i| match slot_at(ccap + i) {
            Some((kind::SENDER, raw)) => {
                let d = format::SenderDef::read_from_bytes(raw).ok()?;
                let mut ne = [0u8; 20];
                ne[..16].copy_from_slice(&d.addr);
                ne[16..18].copy_from_slice(&d.port.get().to_ne_bytes());
                ne[18] = d.family;
                SenderAddr::read_from_bytes(&ne).ok()
            }
            _ => None,
        })
        .collect();
    let end_word = h.end_crc.get();
    let end = h.end_offset.get();
    let closed = end_word != 0
        && format::commit_word(format::crc32c(&raw[format::END_AT..format::END_AT + 8]))
            == end_word
        && end >= data_start as u64
        && end <= map.len() as u64;
    let mut seg = Seg {
        number: h.segment_no.get(),
        start_time_ns: h.start_time_ns.get(),
        data_start,
        end: map.len(),
        closed,
        tail: None,
        channels,
        senders,
        map: None,
    };
    seg.map = Some(map);
    if closed {
        seg.end = end as usize;
    } else {
        (seg.end, seg.tail) = find_end(&seg);
    }
    Ok(Some((seg, h.recording_id.get())))
}

/// End of an unclosed segment: the last block with a committed marker (markers are
/// committed before their block's records, so they form a prefix), then the first
/// record in it that does not check.
fn find_end(s: &Seg) -> (usize, Option<Corruption>) {
    let len = s.bytes().len();
    if s.data_start >= len || marker(s, 0).is_none() {
        return (s.data_start.min(len), None);
    }
    let b = partition(1, blocks(s), |b| marker(s, b).is_some());
    let mut off = s.data_start + b * format::BLOCK_SIZE;
    loop {
        match parse(s, off) {
            Ok((size, _)) => off += size,
            Err(Corruption::Hole) => return (off, None),
            // A record cut by the end of the file: a truncated copy.
            Err(Corruption::BadSize) if off + 8 > len || s.bytes()[off..].len() < 88 => {
                return (off, None)
            }
            Err(e) => return (off, Some(e)),
        }
    }
}
