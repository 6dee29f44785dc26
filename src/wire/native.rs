//! canmc's native batched wire format: many fixed-layout frame records per datagram,
//! read in place with zerocopy, plus the `ping` control messages and the adaptive
//! batching policy that decides when a datagram leaves.
//!
//! Every byte is documented in `docs/wire-native.md`; the structs below are that
//! document in code. All multi-byte fields are little-endian and every struct has
//! alignment 1, so a header is a reference into the receive buffer, never a copy.
//!
//! ```text
//! datagram = CommonHeader(24) · kind-specific header · records…
//! frames   = CommonHeader · FramesHeader(32) · FrameRecord(12) + data (padded to 4)…
//! probe    = CommonHeader · ProbeBody(16)
//! answer   = CommonHeader · AnswerBody(104)
//! ```

use std::fmt;

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::frame::{CanFrame, Channel, ChannelRef};
use crate::wire::{DecodeError, NATIVE_MAGIC0};

/// Second byte of every native datagram (after [`NATIVE_MAGIC0`]).
pub const NATIVE_MAGIC1: u8 = 0xCA;
/// The wire version this build writes and reads.
pub const VERSION: u8 = 1;
/// Default largest datagram: 1500-byte MTU minus IPv6 (40) and UDP (8) headers, so the
/// same size fits both IPv4 and IPv6 without fragmentation.
pub const DEFAULT_MAX_DATAGRAM: usize = 1452;
/// Largest UDP payload over IPv4.
pub const MAX_DATAGRAM_LIMIT: usize = 65507;
/// Default longest time a frame may wait in a pending datagram (1 ms).
pub const DEFAULT_LINGER_NS: u64 = 1_000_000;

/// Size of [`CommonHeader`].
pub const COMMON_HEADER_LEN: usize = 24;
/// Size of the whole header of a frames datagram (common + [`FramesHeader`]).
pub const FRAMES_HEADER_LEN: usize = COMMON_HEADER_LEN + 32;
/// Size of [`FrameRecord`] (the fixed part of each frame record).
pub const RECORD_HEADER_LEN: usize = 12;
/// Largest frame record v1 writes: header + 64 data bytes.
pub const MAX_RECORD_LEN: usize = RECORD_HEADER_LEN + 64;
/// Smallest `max_datagram` an [`Encoder`] accepts: one header and one 64-byte FD record.
pub const MIN_MAX_DATAGRAM: usize = FRAMES_HEADER_LEN + MAX_RECORD_LEN;
/// Length of a probe datagram.
pub const PROBE_LEN: usize = COMMON_HEADER_LEN + 16;
/// Length of an answer datagram.
pub const ANSWER_LEN: usize = COMMON_HEADER_LEN + 104;
/// Most host-name bytes an answer carries.
pub const HOST_MAX: usize = 64;

/// Record type of a CAN / CAN FD frame record (the only one v1 defines).
pub const RECORD_CAN: u8 = 0;

const KIND_FRAMES: u8 = 1;
const KIND_PROBE: u8 = 2;
const KIND_ANSWER: u8 = 3;

/// What a datagram carries (byte 3 of the common header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// CAN frame records.
    Frames,
    /// A `ping` probe: "who is on this group?".
    PingProbe,
    /// An answer to a probe.
    PingAnswer,
}

impl Kind {
    /// The byte on the wire.
    pub fn to_byte(self) -> u8 {
        match self {
            Kind::Frames => KIND_FRAMES,
            Kind::PingProbe => KIND_PROBE,
            Kind::PingAnswer => KIND_ANSWER,
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            KIND_FRAMES => Some(Kind::Frames),
            KIND_PROBE => Some(Kind::PingProbe),
            KIND_ANSWER => Some(Kind::PingAnswer),
            _ => None,
        }
    }

    fn min_header_len(self) -> usize {
        match self {
            Kind::Frames => FRAMES_HEADER_LEN,
            Kind::PingProbe => PROBE_LEN,
            Kind::PingAnswer => ANSWER_LEN,
        }
    }
}

/// The first 24 bytes of every native datagram.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct CommonHeader {
    /// [`NATIVE_MAGIC0`] (0xC1).
    pub magic0: u8,
    /// [`NATIVE_MAGIC1`] (0xCA).
    pub magic1: u8,
    /// [`VERSION`].
    pub version: u8,
    /// [`Kind`] byte.
    pub kind: u8,
    /// Bytes from the start of the datagram to the first record (frames) or to the end
    /// of the body (control messages). Later versions may grow it; readers skip the rest.
    pub header_len: U16,
    /// Length of the whole datagram as the sender wrote it.
    pub datagram_len: U16,
    /// Number of records that follow the header (0 for control messages).
    pub count: U16,
    /// Reserved; written as 0, ignored on read.
    pub reserved: U16,
    /// Random id the sender chose at start-up.
    pub sender_id: U32,
    /// Per-sender sequence number of frames datagrams (0, 1, 2, …).
    pub seq: U64,
}

/// The part of a frames datagram's header after [`CommonHeader`].
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FramesHeader {
    /// Timestamp every record's delta is added to, ns since the Unix epoch.
    pub base_ts: U64,
    /// python-can channel of every frame in the datagram: [`Channel`]'s 24 bytes.
    pub channel: [u8; 24],
}

/// The fixed part of one frame record; `len` data bytes follow (none for RTR), then
/// zero padding up to `size`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub struct FrameRecord {
    /// CAN identifier without flags (error class bits for error frames).
    pub id: U32,
    /// ns after the datagram's `base_ts`.
    pub delta_ns: U32,
    /// [`crate::frame::flags`] bits.
    pub flags: u8,
    /// Data length (the requested length for RTR).
    pub len: u8,
    /// Record type: [`RECORD_CAN`]. Others are skipped by `size`.
    pub rtype: u8,
    /// Whole record length in 4-byte words, header included.
    pub size_words: u8,
}

/// Body of a probe datagram.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct ProbeBody {
    probe_id: U64,
    sent_ns: U64,
}

/// Body of an answer datagram.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
struct AnswerBody {
    probe_id: U64,
    probe_sent_ns: U64,
    uptime_ms: U64,
    frames_seen: U64,
    pid: U32,
    role: u8,
    host_len: u8,
    reserved: [u8; 2],
    host: [u8; HOST_MAX],
}

const _: () = assert!(std::mem::size_of::<CommonHeader>() == COMMON_HEADER_LEN);
const _: () = assert!(std::mem::size_of::<FramesHeader>() == FRAMES_HEADER_LEN - COMMON_HEADER_LEN);
const _: () = assert!(std::mem::size_of::<FrameRecord>() == RECORD_HEADER_LEN);
const _: () = assert!(std::mem::size_of::<ProbeBody>() == PROBE_LEN - COMMON_HEADER_LEN);
const _: () = assert!(std::mem::size_of::<AnswerBody>() == ANSWER_LEN - COMMON_HEADER_LEN);

/// What [`decode`] learned about a datagram whose header was valid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DatagramInfo {
    /// The sender's random id (feed it, with `seq`, to [`crate::seq::SeqTracker`]).
    pub sender_id: u32,
    /// Per-sender sequence number (a control counter for probes and answers).
    pub seq: u64,
    /// What the datagram carries.
    pub kind: Kind,
    /// Frames handed to the callback.
    pub frames: u16,
    /// Records the header announced.
    pub records: u16,
    /// Records skipped, or not reached because decoding stopped (see `error`).
    pub bad_records: u16,
    /// The first record-level problem, if any: `InvalidFrame` and `UnknownType`
    /// records are skipped and decoding goes on; `BadLength` stops decoding.
    pub error: Option<DecodeError>,
}

/// Bytes of data a record carries on the wire for `flags` and `len`.
#[inline]
fn wire_data_len(flags: u8, len: u8) -> usize {
    if flags & crate::frame::flags::RTR != 0 {
        0
    } else {
        len as usize
    }
}

/// Record size for `data` bytes: header plus data rounded up to 4.
#[inline]
fn record_size(data: usize) -> usize {
    (RECORD_HEADER_LEN + data + 3) & !3
}

/// Reads and checks the common header: magic, version, kind, lengths.
fn common(datagram: &[u8]) -> Result<(&CommonHeader, Kind), DecodeError> {
    let (h, _) = CommonHeader::ref_from_prefix(datagram).map_err(|_| DecodeError::Truncated)?;
    if h.magic0 != NATIVE_MAGIC0 || h.magic1 != NATIVE_MAGIC1 {
        // Another (future, incompatible) generation of the native format.
        return Err(DecodeError::UnknownVersion);
    }
    if h.version != VERSION {
        return Err(DecodeError::UnknownVersion);
    }
    let kind = Kind::from_byte(h.kind).ok_or(DecodeError::UnknownType)?;
    let total = h.datagram_len.get() as usize;
    if datagram.len() < total {
        return Err(DecodeError::Truncated);
    }
    if datagram.len() > total {
        return Err(DecodeError::TrailingBytes);
    }
    let hlen = h.header_len.get() as usize;
    if hlen < kind.min_header_len() || hlen > total {
        return Err(DecodeError::BadLength);
    }
    Ok((h, kind))
}

/// The channel in a frames header, or `BadChannel` when its bytes are not one the
/// constructors of [`Channel`] could have made. Rebuilt canonically so decoded frames
/// compare equal to the sender's.
fn read_channel(bytes: &[u8; 24]) -> Result<Channel, DecodeError> {
    let kind = bytes[0];
    let len = bytes[1] as usize;
    match kind {
        0 => Ok(Channel::NONE),
        1 => {
            let mut le = [0u8; 8];
            le.copy_from_slice(&bytes[2..10]);
            Ok(Channel::int(i64::from_le_bytes(le)))
        }
        2 if len <= crate::frame::CHANNEL_STR_MAX => {
            Channel::from_utf8(&bytes[2..2 + len]).map_err(|_| DecodeError::BadChannel)
        }
        _ => Err(DecodeError::BadChannel),
    }
}

/// Decodes a native datagram in place and calls `on_frame` for each valid frame record
/// (timestamp = base + delta, channel from the header, sender left empty for the caller).
///
/// Header problems return `Err` and no frame is delivered: `Truncated` (shorter than its
/// header or than `datagram_len`), `TrailingBytes` (longer than `datagram_len`),
/// `UnknownVersion` (magic byte 1 or version), `UnknownType` (kind), `BadLength`
/// (`header_len` too small or past the end), `BadChannel`.
///
/// Record problems return `Ok` with [`DatagramInfo::error`] set to the first one: an
/// invalid frame (`InvalidFrame`) or a record of unknown type (`UnknownType`) is skipped
/// and decoding goes on; a record whose size is impossible or runs past the end, or a
/// count larger than the records present (`BadLength`) stops decoding. Never panics,
/// never allocates.
pub fn decode(
    datagram: &[u8],
    on_frame: &mut dyn FnMut(&CanFrame),
) -> Result<DatagramInfo, DecodeError> {
    decode_with(datagram, on_frame)
}

/// [`decode`] with the callback's type known, so the compiler can inline it into the
/// record loop (what a receive loop that decodes millions of frames per second uses).
#[inline]
pub fn decode_with<F: FnMut(&CanFrame)>(
    datagram: &[u8],
    mut on_frame: F,
) -> Result<DatagramInfo, DecodeError> {
    let (h, kind) = common(datagram)?;
    let mut info = DatagramInfo {
        sender_id: h.sender_id.get(),
        seq: h.seq.get(),
        kind,
        frames: 0,
        records: h.count.get(),
        bad_records: 0,
        error: None,
    };
    if kind != Kind::Frames {
        return Ok(info);
    }
    let hlen = h.header_len.get() as usize;
    // `common` checked FRAMES_HEADER_LEN ≤ hlen ≤ datagram_len == datagram.len().
    let (fh, _) = FramesHeader::ref_from_prefix(&datagram[COMMON_HEADER_LEN..])
        .map_err(|_| DecodeError::Truncated)?;
    let channel = read_channel(&fh.channel)?;
    let base = fh.base_ts.get();

    let mut frame = CanFrame::EMPTY;
    frame.channel = channel;
    // Bytes of `frame.data` that may be non-zero: a shorter frame after a longer one
    // must not show the longer one's tail (decoded frames compare equal to sent ones).
    let mut dirty = 0usize;
    let mut rest = &datagram[hlen..];
    let mut left = info.records;
    while left > 0 {
        let Ok((rec, _)) = FrameRecord::ref_from_prefix(rest) else {
            info.error.get_or_insert(DecodeError::BadLength);
            info.bad_records += left;
            break;
        };
        let size = rec.size_words as usize * 4;
        if size < RECORD_HEADER_LEN || size > rest.len() {
            info.error.get_or_insert(DecodeError::BadLength);
            info.bad_records += left;
            break;
        }
        let (this, next) = rest.split_at(size);
        rest = next;
        left -= 1;
        if rec.rtype != RECORD_CAN {
            info.error.get_or_insert(DecodeError::UnknownType);
            info.bad_records += 1;
            continue;
        }
        let n = wire_data_len(rec.flags, rec.len);
        let payload = &this[RECORD_HEADER_LEN..];
        if n > 64 || n > payload.len() {
            info.error.get_or_insert(DecodeError::BadLength);
            info.bad_records += left + 1;
            break;
        }
        frame.timestamp_ns = base.wrapping_add(rec.delta_ns.get() as u64);
        frame.id = rec.id.get();
        frame.flags = rec.flags;
        frame.len = rec.len;
        if n <= 8 {
            // Classic payloads: one fixed-size load of the (padded) record bytes, the
            // bytes past `n` masked off, instead of a variable-length copy.
            let word = match payload.len() {
                8.. => u64::from_le_bytes(payload[..8].try_into().unwrap_or([0; 8])),
                4.. => u32::from_le_bytes(payload[..4].try_into().unwrap_or([0; 4])) as u64,
                _ => 0,
            };
            frame.data[..8].copy_from_slice(&(word & low_bytes_mask(n)).to_le_bytes());
            if dirty > 8 {
                frame.data[8..dirty].fill(0);
            }
            dirty = 8;
        } else {
            frame.data[..n].copy_from_slice(&payload[..n]);
            if n < dirty {
                frame.data[n..dirty].fill(0);
            }
            dirty = n;
        }
        if !quick_valid(&frame) && frame.validate().is_err() {
            info.error.get_or_insert(DecodeError::InvalidFrame);
            info.bad_records += 1;
            continue;
        }
        on_frame(&frame);
        info.frames += 1;
    }
    Ok(info)
}

/// A mask keeping the low `n` bytes (`n` ≤ 8) of a little-endian word.
#[inline(always)]
fn low_bytes_mask(n: usize) -> u64 {
    if n >= 8 {
        u64::MAX
    } else {
        (1u64 << (8 * n)) - 1
    }
}

/// The common frames (classic data, standard or extended) checked in two compares;
/// everything else goes through [`CanFrame::validate`].
#[inline(always)]
fn quick_valid(f: &CanFrame) -> bool {
    use crate::frame::{flags, EXT_ID_LIMIT, STD_ID_LIMIT};
    let limit = match f.flags {
        0 => STD_ID_LIMIT,
        flags::EXTENDED => EXT_ID_LIMIT,
        _ => return false,
    };
    f.id < limit && f.len <= 8
}

/// Writes a common header into `buf` (which the caller checked is long enough).
fn put_common(
    buf: &mut [u8],
    kind: Kind,
    header_len: usize,
    total: usize,
    count: u16,
    sender_id: u32,
    seq: u64,
) {
    let h = CommonHeader {
        magic0: NATIVE_MAGIC0,
        magic1: NATIVE_MAGIC1,
        version: VERSION,
        kind: kind.to_byte(),
        header_len: U16::new(header_len as u16),
        datagram_len: U16::new(total as u16),
        count: U16::new(count),
        reserved: U16::ZERO,
        sender_id: U32::new(sender_id),
        seq: U64::new(seq),
    };
    buf[..COMMON_HEADER_LEN].copy_from_slice(h.as_bytes());
}

/// Builds frames datagrams in a caller-provided buffer, without allocating.
///
/// `begin` → `push`… → `finish`. `buf` must be the same buffer for one datagram and at
/// least `max_datagram` bytes long (a shorter buffer simply holds fewer frames).
#[derive(Debug, Clone)]
pub struct Encoder {
    sender_id: u32,
    max: usize,
    limit: usize,
    len: usize,
    count: u16,
    base_ts: u64,
    channel: Channel,
    seq: u64,
    rejected: u64,
}

impl Encoder {
    /// An encoder for `sender_id`; `max_datagram` is clamped to
    /// [`MIN_MAX_DATAGRAM`]..=[`MAX_DATAGRAM_LIMIT`].
    pub fn new(sender_id: u32, max_datagram: usize) -> Self {
        Encoder {
            sender_id,
            max: max_datagram.clamp(MIN_MAX_DATAGRAM, MAX_DATAGRAM_LIMIT),
            limit: 0,
            len: 0,
            count: 0,
            base_ts: 0,
            channel: Channel::NONE,
            seq: 0,
            rejected: 0,
        }
    }

    /// The largest datagram this encoder writes.
    pub fn max_datagram(&self) -> usize {
        self.max
    }

    /// The sender id written into every datagram.
    pub fn sender_id(&self) -> u32 {
        self.sender_id
    }

    /// Starts a datagram with sequence number `seq`, for frames on `channel` with
    /// timestamps in `base_ts ..= base_ts + u32::MAX` ns.
    pub fn begin(&mut self, buf: &mut [u8], seq: u64, channel: Channel, base_ts: u64) {
        self.limit = self.max.min(buf.len());
        self.len = FRAMES_HEADER_LEN.min(self.limit);
        self.count = 0;
        self.base_ts = base_ts;
        self.channel = channel;
        self.seq = seq;
    }

    /// Frames pushed since `begin`.
    pub fn count(&self) -> u16 {
        self.count
    }

    /// Bytes written so far (the length `finish` would return).
    pub fn len(&self) -> usize {
        self.len
    }

    /// True when no frame was pushed since `begin`.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Invalid frames refused by `push` since the encoder was made.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// True if `frame` could be appended: same channel, timestamp within reach of the
    /// base, and room left.
    pub fn fits(&self, frame: &CanFrame) -> bool {
        let size = record_size(wire_data_len(frame.flags, frame.len).min(64));
        frame.channel == self.channel
            && frame.timestamp_ns >= self.base_ts
            && frame.timestamp_ns - self.base_ts <= u32::MAX as u64
            && self.len + size <= self.limit
            && self.count < u16::MAX
    }

    /// Appends `frame`. Returns false, writing nothing, when it does not fit (see
    /// [`Encoder::fits`]): the caller finishes this datagram and begins another.
    ///
    /// A frame that fails [`CanFrame::validate`] is never written: it is counted in
    /// [`Encoder::rejected`] and `push` returns true, so a caller's retry loop ends.
    pub fn push(&mut self, buf: &mut [u8], frame: &CanFrame) -> bool {
        if !quick_valid(frame) && frame.validate().is_err() {
            self.rejected += 1;
            return true;
        }
        if !self.fits(frame) {
            return false;
        }
        let n = wire_data_len(frame.flags, frame.len);
        let size = record_size(n);
        if self.len + size > buf.len() {
            // Not the buffer given to `begin`: refuse rather than write out of bounds.
            return false;
        }
        let rec = FrameRecord {
            id: U32::new(frame.id),
            delta_ns: U32::new((frame.timestamp_ns - self.base_ts) as u32),
            flags: frame.flags,
            len: frame.len,
            rtype: RECORD_CAN,
            size_words: (size / 4) as u8,
        };
        let out = &mut buf[self.len..self.len + size];
        out[..RECORD_HEADER_LEN].copy_from_slice(rec.as_bytes());
        let payload = &mut out[RECORD_HEADER_LEN..];
        if n <= 8 {
            // Fixed-size stores of data and zero padding together (`payload` is 0, 4
            // or 8 bytes long) instead of a variable copy and a fill.
            let mut word = [0u8; 8];
            word.copy_from_slice(&frame.data[..8]);
            let word = (u64::from_le_bytes(word) & low_bytes_mask(n)).to_le_bytes();
            match payload.len() {
                8 => payload.copy_from_slice(&word),
                4 => payload.copy_from_slice(&word[..4]),
                _ => {}
            }
        } else {
            payload[..n].copy_from_slice(&frame.data[..n]);
            payload[n..].fill(0);
        }
        self.len += size;
        self.count += 1;
        true
    }

    /// Writes the header (with the final count and length) and returns the datagram's
    /// length: `buf[..len]` is ready to send.
    pub fn finish(&mut self, buf: &mut [u8]) -> usize {
        if self.limit < FRAMES_HEADER_LEN || buf.len() < self.len {
            return 0;
        }
        put_common(
            buf,
            Kind::Frames,
            FRAMES_HEADER_LEN,
            self.len,
            self.count,
            self.sender_id,
            self.seq,
        );
        let fh = FramesHeader {
            base_ts: U64::new(self.base_ts),
            channel: channel_bytes(&self.channel),
        };
        buf[COMMON_HEADER_LEN..FRAMES_HEADER_LEN].copy_from_slice(fh.as_bytes());
        self.len
    }

    /// Like [`Encoder::finish`], but zero-pads the datagram to `to` bytes (at most the
    /// limit). Readers ignore bytes after the last record, so padded datagrams decode the
    /// same; equal-sized datagrams can share one UDP GSO send, which needs equal segments.
    pub fn finish_padded(&mut self, buf: &mut [u8], to: usize) -> usize {
        let target = to.min(self.limit).min(buf.len()).max(self.len);
        if self.limit >= FRAMES_HEADER_LEN {
            buf[self.len..target].fill(0);
            self.len = target;
        }
        self.finish(buf)
    }

    /// Whether `frame` is refused for lack of room alone (not channel or time).
    fn is_full_for(&self, frame: &CanFrame) -> bool {
        self.len + record_size(wire_data_len(frame.flags, frame.len).min(64)) > self.limit
    }
}

fn channel_bytes(ch: &Channel) -> [u8; 24] {
    let mut out = [0u8; 24];
    out.copy_from_slice(ch.as_bytes());
    // Canonical form: nothing past the value, whatever the in-memory copy holds.
    match ch.get() {
        ChannelRef::None => out = [0; 24],
        ChannelRef::Int(_) => out[10..].fill(0),
        ChannelRef::Str(s) => out[2 + s.len()..].fill(0),
    }
    out
}

/// A `ping` probe: sent to the group; every canmc receiver answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingProbe {
    /// Chosen by the prober; answers echo it.
    pub probe_id: u64,
    /// When the probe was sent (prober's clock, ns), echoed for round-trip times.
    pub sent_ns: u64,
}

/// What a receiver is doing, as reported in a ping answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// A role this build does not know (or none given).
    Unknown = 0,
    Dump = 1,
    Record = 2,
    /// An application embedding the library.
    App = 3,
    Send = 4,
    Gen = 5,
    Replay = 6,
}

impl Role {
    fn from_byte(b: u8) -> Role {
        match b {
            1 => Role::Dump,
            2 => Role::Record,
            3 => Role::App,
            4 => Role::Send,
            5 => Role::Gen,
            6 => Role::Replay,
            _ => Role::Unknown,
        }
    }

    /// Lower-case name, as `ping` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Unknown => "unknown",
            Role::Dump => "dump",
            Role::Record => "record",
            Role::App => "app",
            Role::Send => "send",
            Role::Gen => "gen",
            Role::Replay => "replay",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A receiver's answer to a [`PingProbe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingAnswer {
    /// The probe's id.
    pub probe_id: u64,
    /// The probe's `sent_ns`, echoed so the prober needs no state for round-trip times.
    pub probe_sent_ns: u64,
    pub role: Role,
    /// Process id of the answering program.
    pub pid: u32,
    /// How long the answering program has been running.
    pub uptime_ms: u64,
    /// Frames it has received so far.
    pub frames_seen: u64,
    /// Host name bytes (`host_len` of them are meaningful).
    pub host: [u8; HOST_MAX],
    pub host_len: u8,
}

impl PingAnswer {
    /// An answer; `host` is cut to [`HOST_MAX`] bytes (at a UTF-8 boundary).
    pub fn new(probe: &PingProbe, role: Role, pid: u32, host: &str) -> PingAnswer {
        let mut cut = host.len().min(HOST_MAX);
        while !host.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut bytes = [0u8; HOST_MAX];
        bytes[..cut].copy_from_slice(&host.as_bytes()[..cut]);
        PingAnswer {
            probe_id: probe.probe_id,
            probe_sent_ns: probe.sent_ns,
            role,
            pid,
            uptime_ms: 0,
            frames_seen: 0,
            host: bytes,
            host_len: cut as u8,
        }
    }

    /// The host name; invalid UTF-8 (from a foreign sender) shows as `"?"`.
    pub fn host(&self) -> &str {
        let n = (self.host_len as usize).min(HOST_MAX);
        std::str::from_utf8(&self.host[..n]).unwrap_or("?")
    }
}

/// Writes a probe datagram into `buf`; returns its length ([`PROBE_LEN`]), or 0 if
/// `buf` is shorter than that. `seq` is the sender's control-message counter.
pub fn encode_probe(buf: &mut [u8], sender_id: u32, seq: u64, probe: &PingProbe) -> usize {
    if buf.len() < PROBE_LEN {
        return 0;
    }
    put_common(
        buf,
        Kind::PingProbe,
        PROBE_LEN,
        PROBE_LEN,
        0,
        sender_id,
        seq,
    );
    let body = ProbeBody {
        probe_id: U64::new(probe.probe_id),
        sent_ns: U64::new(probe.sent_ns),
    };
    buf[COMMON_HEADER_LEN..PROBE_LEN].copy_from_slice(body.as_bytes());
    PROBE_LEN
}

/// Writes an answer datagram into `buf`; returns its length ([`ANSWER_LEN`]), or 0 if
/// `buf` is shorter than that.
pub fn encode_answer(buf: &mut [u8], sender_id: u32, seq: u64, answer: &PingAnswer) -> usize {
    if buf.len() < ANSWER_LEN {
        return 0;
    }
    put_common(
        buf,
        Kind::PingAnswer,
        ANSWER_LEN,
        ANSWER_LEN,
        0,
        sender_id,
        seq,
    );
    let host_len = (answer.host_len as usize).min(HOST_MAX);
    let mut host = [0u8; HOST_MAX];
    host[..host_len].copy_from_slice(&answer.host[..host_len]);
    let body = AnswerBody {
        probe_id: U64::new(answer.probe_id),
        probe_sent_ns: U64::new(answer.probe_sent_ns),
        uptime_ms: U64::new(answer.uptime_ms),
        frames_seen: U64::new(answer.frames_seen),
        pid: U32::new(answer.pid),
        role: answer.role as u8,
        host_len: host_len as u8,
        reserved: [0; 2],
        host,
    };
    buf[COMMON_HEADER_LEN..ANSWER_LEN].copy_from_slice(body.as_bytes());
    ANSWER_LEN
}

/// Reads a probe datagram. A valid native datagram of another kind is `UnknownType`.
pub fn decode_probe(datagram: &[u8]) -> Result<(DatagramInfo, PingProbe), DecodeError> {
    let (h, kind) = common(datagram)?;
    if kind != Kind::PingProbe {
        return Err(DecodeError::UnknownType);
    }
    let (b, _) = ProbeBody::ref_from_prefix(&datagram[COMMON_HEADER_LEN..])
        .map_err(|_| DecodeError::Truncated)?;
    Ok((
        control_info(h, kind),
        PingProbe {
            probe_id: b.probe_id.get(),
            sent_ns: b.sent_ns.get(),
        },
    ))
}

/// Reads an answer datagram. A valid native datagram of another kind is `UnknownType`;
/// a host length over [`HOST_MAX`] is `BadLength`.
pub fn decode_answer(datagram: &[u8]) -> Result<(DatagramInfo, PingAnswer), DecodeError> {
    let (h, kind) = common(datagram)?;
    if kind != Kind::PingAnswer {
        return Err(DecodeError::UnknownType);
    }
    let (b, _) = AnswerBody::ref_from_prefix(&datagram[COMMON_HEADER_LEN..])
        .map_err(|_| DecodeError::Truncated)?;
    if b.host_len as usize > HOST_MAX {
        return Err(DecodeError::BadLength);
    }
    Ok((
        control_info(h, kind),
        PingAnswer {
            probe_id: b.probe_id.get(),
            probe_sent_ns: b.probe_sent_ns.get(),
            role: Role::from_byte(b.role),
            pid: b.pid.get(),
            uptime_ms: b.uptime_ms.get(),
            frames_seen: b.frames_seen.get(),
            host: b.host,
            host_len: b.host_len,
        },
    ))
}

fn control_info(h: &CommonHeader, kind: Kind) -> DatagramInfo {
    DatagramInfo {
        sender_id: h.sender_id.get(),
        seq: h.seq.get(),
        kind,
        frames: 0,
        records: h.count.get(),
        bad_records: 0,
        error: None,
    }
}

/// A random, non-zero sender id (from the OS-seeded keys of std's `RandomState`).
pub fn random_sender_id() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let v = h.finish();
    ((v >> 32) as u32 ^ v as u32).max(1)
}

/// Adaptive batching without I/O: owns the datagram buffers and the [`Encoder`], and
/// decides when a datagram must leave. The caller sends what it returns.
///
/// Rules (times are the caller's `now_ns`, any monotonic clock):
/// 1. **Idle → at once.** A frame pushed when nothing is pending and the previous
///    datagram left at least `linger` ago (or never) leaves at once, alone.
/// 2. **Busy → batched.** Otherwise it joins the pending datagram (one is started if
///    needed). A frame that does not fit (full, other channel, timestamp out of the
///    base's reach) makes the pending datagram leave and starts the next one.
/// 3. **Linger bound.** A pending datagram leaves no later than `linger` after its first
///    frame was pushed: `push` and `poll` return it once `now_ns` reaches
///    [`NativeBatcher::deadline`]. Callers wake up by that deadline.
///
/// Each call returns at most one datagram, borrowed until the next call; sequence numbers
/// are consecutive from 0.
pub struct NativeBatcher {
    enc: Encoder,
    bufs: [Box<[u8]>; 2],
    /// Index of the buffer holding the pending datagram.
    cur: usize,
    pending: bool,
    pending_since: u64,
    last_sent: Option<u64>,
    linger_ns: u64,
    seq: u64,
    sent: u64,
    pad_full: bool,
}

impl NativeBatcher {
    /// A batcher for `sender_id` writing datagrams of at most `max_datagram` bytes
    /// (clamped as in [`Encoder::new`]) and holding frames at most `linger_ns`.
    pub fn new(sender_id: u32, max_datagram: usize, linger_ns: u64) -> Self {
        let enc = Encoder::new(sender_id, max_datagram);
        let max = enc.max_datagram();
        NativeBatcher {
            enc,
            bufs: [vec![0u8; max].into(), vec![0u8; max].into()],
            cur: 0,
            pending: false,
            pending_since: 0,
            last_sent: None,
            linger_ns,
            seq: 0,
            sent: 0,
            pad_full: false,
        }
    }

    /// Pads datagrams that leave because they are full to exactly `max_datagram` bytes
    /// (see [`Encoder::finish_padded`]), so that under load every datagram has the same
    /// size and a sender can pass many in one UDP GSO call. Off by default.
    pub fn set_pad_full(&mut self, on: bool) {
        self.pad_full = on;
    }

    /// The sequence number the next datagram will carry.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Datagrams handed out so far.
    pub fn datagrams(&self) -> u64 {
        self.sent
    }

    /// Invalid frames refused (never sent).
    pub fn rejected(&self) -> u64 {
        self.enc.rejected()
    }

    /// Frames waiting in the pending datagram.
    pub fn pending_frames(&self) -> u16 {
        if self.pending {
            self.enc.count()
        } else {
            0
        }
    }

    /// When the pending datagram must leave, if there is one.
    pub fn deadline(&self) -> Option<u64> {
        self.pending
            .then(|| self.pending_since.saturating_add(self.linger_ns))
    }

    /// Adds `frame` (its timestamp and channel go on the wire); returns a datagram that
    /// must leave now, if any.
    pub fn push(&mut self, frame: &CanFrame, now_ns: u64) -> Option<&[u8]> {
        if !quick_valid(frame) && frame.validate().is_err() {
            // Never sent, never starts a datagram.
            self.enc.rejected += 1;
            return self.poll(now_ns);
        }
        let mut out = None;
        if self.pending && now_ns >= self.pending_since.saturating_add(self.linger_ns) {
            out = Some(self.seal(now_ns, false));
        }
        if self.pending {
            if self.enc.push(&mut self.bufs[self.cur], frame) {
                return None;
            }
            let pad = self.pad_full && self.enc.is_full_for(frame);
            out = Some(self.seal(now_ns, pad));
        }
        let idle = out.is_none()
            && self
                .last_sent
                .map_or(true, |t| now_ns.saturating_sub(t) >= self.linger_ns);
        self.start(frame, now_ns);
        if idle {
            out = Some(self.seal(now_ns, false));
        }
        out.map(|len| &self.bufs[1 - self.cur][..len])
    }

    /// Returns the pending datagram if its linger time is up at `now_ns`.
    pub fn poll(&mut self, now_ns: u64) -> Option<&[u8]> {
        if self.pending && now_ns >= self.pending_since.saturating_add(self.linger_ns) {
            let len = self.seal(now_ns, false);
            return Some(&self.bufs[1 - self.cur][..len]);
        }
        None
    }

    /// Returns the pending datagram now, whatever its age (at shutdown, or when the
    /// caller knows no more frames are coming soon).
    pub fn flush(&mut self, now_ns: u64) -> Option<&[u8]> {
        if self.pending {
            let len = self.seal(now_ns, false);
            return Some(&self.bufs[1 - self.cur][..len]);
        }
        None
    }

    fn start(&mut self, frame: &CanFrame, now_ns: u64) {
        let buf = &mut self.bufs[self.cur];
        self.enc
            .begin(buf, self.seq, frame.channel, frame.timestamp_ns);
        // A valid frame always fits an empty datagram (max ≥ MIN_MAX_DATAGRAM).
        let pushed = self.enc.push(buf, frame);
        debug_assert!(pushed);
        self.pending = true;
        self.pending_since = now_ns;
    }

    /// Finishes the pending datagram and swaps buffers; the sealed datagram is then in
    /// `bufs[1 - cur]`. Returns its length.
    fn seal(&mut self, now_ns: u64, pad: bool) -> usize {
        let buf = &mut self.bufs[self.cur];
        let len = if pad {
            self.enc.finish_padded(buf, usize::MAX)
        } else {
            self.enc.finish(buf)
        };
        self.cur = 1 - self.cur;
        self.pending = false;
        self.last_sent = Some(now_ns);
        self.seq += 1;
        self.sent += 1;
        len
    }
}

impl fmt::Debug for NativeBatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeBatcher")
            .field("sender_id", &self.enc.sender_id())
            .field("max_datagram", &self.enc.max_datagram())
            .field("linger_ns", &self.linger_ns)
            .field("next_seq", &self.seq)
            .field("pending_frames", &self.pending_frames())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::flags;

    fn frame(text: &str, ts: u64, ch: Channel) -> CanFrame {
        let mut f: CanFrame = text.parse().unwrap();
        f.timestamp_ns = ts;
        f.channel = ch;
        f
    }

    /// Encodes `frames` (same channel, first frame's timestamp as base) into one datagram.
    fn encode(frames: &[CanFrame], seq: u64) -> Vec<u8> {
        let mut buf = vec![0u8; DEFAULT_MAX_DATAGRAM];
        let mut enc = Encoder::new(0xA1B2_C3D4, DEFAULT_MAX_DATAGRAM);
        enc.begin(&mut buf, seq, frames[0].channel, frames[0].timestamp_ns);
        for f in frames {
            assert!(enc.push(&mut buf, f));
        }
        let n = enc.finish(&mut buf);
        buf.truncate(n);
        buf
    }

    fn decode_all(d: &[u8]) -> (Result<DatagramInfo, DecodeError>, Vec<CanFrame>) {
        let mut out = Vec::new();
        let r = decode(d, &mut |f| out.push(*f));
        (r, out)
    }

    fn set_u16(d: &mut [u8], at: usize, v: u16) {
        d[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }

    #[test]
    fn every_header_and_record_byte() {
        let f = frame("123#DEADBEEF", 1_000_000_123, Channel::int(5));
        let g = frame("1ABCDEF0#R3", 1_000_000_123 + 77, Channel::int(5));
        let d = encode(&[f, g], 0x0102_0304_0506_0708);
        assert_eq!(d[0], 0xC1, "magic 0");
        assert_eq!(d[1], 0xCA, "magic 1");
        assert_eq!(d[2], 1, "version");
        assert_eq!(d[3], 1, "kind frames");
        assert_eq!(&d[4..6], &56u16.to_le_bytes(), "header_len");
        assert_eq!(&d[6..8], &(d.len() as u16).to_le_bytes(), "datagram_len");
        assert_eq!(&d[8..10], &2u16.to_le_bytes(), "count");
        assert_eq!(&d[10..12], &[0, 0], "reserved");
        assert_eq!(&d[12..16], &0xA1B2_C3D4u32.to_le_bytes(), "sender_id");
        assert_eq!(&d[16..24], &0x0102_0304_0506_0708u64.to_le_bytes(), "seq");
        assert_eq!(&d[24..32], &1_000_000_123u64.to_le_bytes(), "base_ts");
        assert_eq!(&d[32..56], Channel::int(5).as_bytes(), "channel");
        assert_eq!(d[32], 1, "channel kind int");
        // Record 1: 12 + 4 data bytes = 16.
        let r = &d[56..72];
        assert_eq!(&r[0..4], &0x123u32.to_le_bytes(), "id");
        assert_eq!(&r[4..8], &0u32.to_le_bytes(), "delta");
        assert_eq!(r[8], 0, "flags");
        assert_eq!(r[9], 4, "len");
        assert_eq!(r[10], RECORD_CAN, "record type");
        assert_eq!(r[11], 4, "size in words");
        assert_eq!(&r[12..16], &[0xDE, 0xAD, 0xBE, 0xEF]);
        // Record 2: RTR, no data on the wire.
        let r = &d[72..84];
        assert_eq!(&r[0..4], &0x1ABC_DEF0u32.to_le_bytes());
        assert_eq!(&r[4..8], &77u32.to_le_bytes());
        assert_eq!(r[8], flags::EXTENDED | flags::RTR);
        assert_eq!(r[9], 3);
        assert_eq!(r[11], 3);
        assert_eq!(d.len(), 84);

        let (info, frames) = decode_all(&d);
        let info = info.unwrap();
        assert_eq!(info.sender_id, 0xA1B2_C3D4);
        assert_eq!(info.seq, 0x0102_0304_0506_0708);
        assert_eq!(info.kind, Kind::Frames);
        assert_eq!((info.frames, info.records, info.bad_records), (2, 2, 0));
        assert_eq!(info.error, None);
        assert_eq!(frames, vec![f, g]);
    }

    #[test]
    fn reserved_is_ignored_and_detect_says_native() {
        let f = frame("123#01", 1, Channel::NONE);
        let mut d = encode(&[f], 0);
        assert_eq!(crate::wire::detect(&d), crate::wire::WireFormat::Native);
        d[10] = 0xFF;
        d[11] = 0xFF;
        let (r, out) = decode_all(&d);
        assert_eq!(r.unwrap().error, None);
        assert_eq!(out, vec![f]);
    }

    #[test]
    fn classic_record_is_20_bytes_and_odd_lengths_pad() {
        let f = frame("123#0011223344556677", 5, Channel::NONE);
        assert_eq!(encode(&[f], 0).len(), FRAMES_HEADER_LEN + 20);
        let f = frame("123#00", 5, Channel::NONE);
        let d = encode(&[f], 0);
        assert_eq!(d.len(), FRAMES_HEADER_LEN + 16);
        assert_eq!(&d[FRAMES_HEADER_LEN + 13..], &[0, 0, 0], "zero padding");
        let f = CanFrame::new(0x123, flags::FD, &[0xAB; 64]).unwrap();
        assert_eq!(f.len, 64);
        assert_eq!(encode(&[f], 0).len(), FRAMES_HEADER_LEN + MAX_RECORD_LEN);
    }

    #[test]
    fn default_datagram_holds_69_classic_frames() {
        let mut buf = vec![0u8; DEFAULT_MAX_DATAGRAM];
        let mut enc = Encoder::new(1, DEFAULT_MAX_DATAGRAM);
        enc.begin(&mut buf, 0, Channel::NONE, 0);
        let f = frame("7FF#0011223344556677", 0, Channel::NONE);
        while enc.push(&mut buf, &f) {}
        assert_eq!(enc.count(), 69);
        let n = enc.finish(&mut buf);
        assert!(n <= DEFAULT_MAX_DATAGRAM);
        assert_eq!(decode(&buf[..n], &mut |_| {}).unwrap().frames, 69);
    }

    #[test]
    fn channels_none_int_str_round_trip() {
        for ch in [
            Channel::NONE,
            Channel::int(-1),
            Channel::int(i64::MAX),
            Channel::str("").unwrap(),
            Channel::str("vcan0").unwrap(),
            Channel::str("0123456789012345678901").unwrap(),
        ] {
            let f = frame("123#01", 9, ch);
            let (_, out) = decode_all(&encode(&[f], 0));
            assert_eq!(out, vec![f], "{ch:?}");
        }
    }

    #[test]
    fn header_errors() {
        let good = encode(&[frame("123#01", 1, Channel::NONE)], 3);
        let err = |d: &[u8]| decode(d, &mut |_| panic!("frame delivered")).unwrap_err();
        assert_eq!(err(&[]), DecodeError::Truncated);
        assert_eq!(err(&good[..23]), DecodeError::Truncated);
        assert_eq!(err(&good[..good.len() - 1]), DecodeError::Truncated);
        let mut d = good.clone();
        d.push(0);
        assert_eq!(err(&d), DecodeError::TrailingBytes);
        let mut d = good.clone();
        d[1] = 0x00;
        assert_eq!(err(&d), DecodeError::UnknownVersion);
        let mut d = good.clone();
        d[2] = 2;
        assert_eq!(err(&d), DecodeError::UnknownVersion);
        for k in [0u8, 4, 0xFF] {
            let mut d = good.clone();
            d[3] = k;
            assert_eq!(err(&d), DecodeError::UnknownType, "kind {k}");
        }
        let mut d = good.clone();
        set_u16(&mut d, 4, 55);
        assert_eq!(err(&d), DecodeError::BadLength, "header_len too small");
        let mut d = good.clone();
        let l = d.len() as u16;
        set_u16(&mut d, 4, l + 1);
        assert_eq!(err(&d), DecodeError::BadLength, "header_len past the end");
        for (at, v) in [(32usize, 3u8), (33, 23)] {
            let mut d = good.clone();
            d[32] = 2;
            d[at] = v;
            assert_eq!(err(&d), DecodeError::BadChannel);
        }
        let mut d = good.clone();
        d[32..35].copy_from_slice(&[2, 1, 0xFF]);
        assert_eq!(err(&d), DecodeError::BadChannel, "not UTF-8");
    }

    #[test]
    fn record_errors() {
        let a = frame("123#01", 1, Channel::NONE);
        let b = frame("456#0203", 2, Channel::NONE);
        let good = encode(&[a, b], 0);
        let rec2 = FRAMES_HEADER_LEN + 16;

        // Count larger than the records present: both delivered, then BadLength.
        let mut d = good.clone();
        set_u16(&mut d, 8, 3);
        let (r, out) = decode_all(&d);
        let info = r.unwrap();
        assert_eq!(out, vec![a, b]);
        assert_eq!((info.frames, info.bad_records), (2, 1));
        assert_eq!(info.error, Some(DecodeError::BadLength));

        // Record size past the end: stops there.
        let mut d = good.clone();
        d[rec2 + 11] = 5;
        let (r, out) = decode_all(&d);
        assert_eq!(out, vec![a]);
        assert_eq!(r.unwrap().error, Some(DecodeError::BadLength));

        // Record size smaller than its header, or than its data.
        for words in [0u8, 2, 3] {
            let mut d = good.clone();
            d[rec2 + 11] = words;
            let (r, out) = decode_all(&d);
            let info = r.unwrap();
            assert_eq!(out, vec![a], "size {words}");
            assert_eq!(info.error, Some(DecodeError::BadLength));
            assert_eq!(info.bad_records, 1);
        }

        // Invalid frame (standard ID out of range): skipped, the next one decoded.
        let mut d = good.clone();
        d[FRAMES_HEADER_LEN..FRAMES_HEADER_LEN + 4].copy_from_slice(&0x800u32.to_le_bytes());
        let (r, out) = decode_all(&d);
        let info = r.unwrap();
        assert_eq!(out, vec![b]);
        assert_eq!((info.frames, info.bad_records), (1, 1));
        assert_eq!(info.error, Some(DecodeError::InvalidFrame));

        // Unknown flag bits: invalid frame.
        let mut d = good.clone();
        d[FRAMES_HEADER_LEN + 8] = 0x80;
        assert_eq!(
            decode_all(&d).0.unwrap().error,
            Some(DecodeError::InvalidFrame)
        );

        // Unknown record type: skipped by its size.
        let mut d = good.clone();
        d[FRAMES_HEADER_LEN + 10] = 7;
        let (r, out) = decode_all(&d);
        assert_eq!(out, vec![b]);
        assert_eq!(r.unwrap().error, Some(DecodeError::UnknownType));
    }

    #[test]
    fn extension_room_is_skipped() {
        // A longer header (a later minor version) and a longer record are read by v1.
        let a = frame("123#01", 1, Channel::str("x").unwrap());
        let good = encode(&[a], 0);
        let mut d = good[..FRAMES_HEADER_LEN].to_vec();
        d.extend_from_slice(&[0xEE; 8]);
        let mut rec = good[FRAMES_HEADER_LEN..].to_vec();
        rec[11] += 1;
        rec.extend_from_slice(&[0xEE; 4]);
        d.extend_from_slice(&rec);
        d.extend_from_slice(&[0xEE; 3]); // trailer after the last record
        set_u16(&mut d, 4, (FRAMES_HEADER_LEN + 8) as u16);
        let l = d.len() as u16;
        set_u16(&mut d, 6, l);
        let (r, out) = decode_all(&d);
        assert_eq!(r.unwrap().error, None);
        assert_eq!(out, vec![a]);
    }

    #[test]
    fn encoder_refuses_what_does_not_fit() {
        let mut buf = vec![0u8; 2000];
        let mut enc = Encoder::new(1, 10); // clamped up
        assert_eq!(enc.max_datagram(), MIN_MAX_DATAGRAM);
        enc.begin(&mut buf, 0, Channel::int(1), 1000);
        let f = frame("123#01", 1000, Channel::int(1));
        assert!(enc.push(&mut buf, &f));
        let mut other = f;
        other.channel = Channel::int(2);
        assert!(!enc.push(&mut buf, &other), "other channel");
        let mut early = f;
        early.timestamp_ns = 999;
        assert!(!enc.push(&mut buf, &early), "before base");
        let mut late = f;
        late.timestamp_ns = 1000 + u32::MAX as u64 + 1;
        assert!(!enc.push(&mut buf, &late), "delta past u32");
        late.timestamp_ns -= 1;
        assert!(enc.push(&mut buf, &late), "largest delta");
        let mut bad = f;
        bad.id = 0x800;
        assert!(
            enc.push(&mut buf, &bad),
            "invalid frames are dropped, not retried"
        );
        assert_eq!(enc.rejected(), 1);
        assert_eq!(enc.count(), 2);
        let fd = frame("1##0", 1000, Channel::int(1));
        let big: CanFrame = {
            let mut g = fd;
            g.len = 64;
            g
        };
        assert!(!enc.push(&mut buf, &big), "full");
        let n = enc.finish(&mut buf);
        let (_, out) = decode_all(&buf[..n]);
        assert_eq!(out, vec![f, late]);
        assert_eq!(Encoder::new(1, 1 << 20).max_datagram(), MAX_DATAGRAM_LIMIT);
    }

    #[test]
    fn ping_round_trip_and_errors() {
        let probe = PingProbe {
            probe_id: 0xDEAD_BEEF_0000_0001,
            sent_ns: 123_456_789,
        };
        let mut buf = [0u8; 256];
        let n = encode_probe(&mut buf, 42, 7, &probe);
        assert_eq!(n, PROBE_LEN);
        assert_eq!(buf[3], 2);
        assert_eq!(&buf[24..32], &probe.probe_id.to_le_bytes());
        assert_eq!(&buf[32..40], &probe.sent_ns.to_le_bytes());
        let (info, back) = decode_probe(&buf[..n]).unwrap();
        assert_eq!(back, probe);
        assert_eq!(
            (info.sender_id, info.seq, info.kind),
            (42, 7, Kind::PingProbe)
        );
        let i = decode(&buf[..n], &mut |_| panic!()).unwrap();
        assert_eq!((i.kind, i.frames), (Kind::PingProbe, 0));
        assert_eq!(
            decode_answer(&buf[..n]).unwrap_err(),
            DecodeError::UnknownType
        );
        assert_eq!(
            decode_probe(&buf[..n - 1]).unwrap_err(),
            DecodeError::Truncated
        );
        assert_eq!(encode_probe(&mut buf[..PROBE_LEN - 1], 1, 1, &probe), 0);

        let mut ans = PingAnswer::new(&probe, Role::Record, 4321, "host-ä");
        ans.uptime_ms = 99;
        ans.frames_seen = 1 << 40;
        let n = encode_answer(&mut buf, 43, 8, &ans);
        assert_eq!(n, ANSWER_LEN);
        assert_eq!(buf[3], 3);
        assert_eq!(buf[60], Role::Record as u8);
        assert_eq!(buf[61] as usize, "host-ä".len());
        let (info, back) = decode_answer(&buf[..n]).unwrap();
        assert_eq!(back, ans);
        assert_eq!(back.host(), "host-ä");
        assert_eq!(info.kind, Kind::PingAnswer);
        assert_eq!(
            decode_probe(&buf[..n]).unwrap_err(),
            DecodeError::UnknownType
        );
        buf[61] = 65;
        assert_eq!(
            decode_answer(&buf[..n]).unwrap_err(),
            DecodeError::BadLength
        );
        buf[61] = 0;
        buf[60] = 200;
        assert_eq!(decode_answer(&buf[..n]).unwrap().1.role, Role::Unknown);

        let long = "h".repeat(70) + "é";
        let a = PingAnswer::new(&probe, Role::App, 1, &long);
        assert_eq!(a.host_len, 64);
        let a = PingAnswer::new(&probe, Role::App, 1, &("h".repeat(63) + "é"));
        assert_eq!(a.host(), "h".repeat(63), "cut at a char boundary");
    }

    #[test]
    fn batcher_idle_frame_leaves_at_once() {
        let mut b = NativeBatcher::new(5, DEFAULT_MAX_DATAGRAM, 1_000_000);
        let f = frame("123#01", 10, Channel::NONE);
        let d = b.push(&f, 0).expect("idle: sent at once").to_vec();
        let (info, out) = decode_all(&d);
        assert_eq!((info.unwrap().seq, out), (0, vec![f]));
        assert_eq!(b.deadline(), None);
        // 1 ms later the sender is idle again.
        assert!(b.push(&f, 1_000_000).is_some());
        assert_eq!(b.next_seq(), 2);
    }

    #[test]
    fn batcher_batches_under_load_and_honours_linger() {
        let linger = 1_000_000;
        let mut b = NativeBatcher::new(5, DEFAULT_MAX_DATAGRAM, linger);
        let f = frame("123#0011223344556677", 10, Channel::NONE);
        assert!(b.push(&f, 0).is_some());
        // Busy: the next frames wait.
        for i in 1..=10u64 {
            assert!(b.push(&f, i * 1000).is_none());
        }
        assert_eq!(b.pending_frames(), 10);
        assert_eq!(b.deadline(), Some(1000 + linger));
        assert!(b.poll(linger).is_none());
        let d = b.poll(1000 + linger).expect("linger reached").to_vec();
        let (info, out) = decode_all(&d);
        assert_eq!((info.unwrap().seq, out.len()), (1, 10));
        assert_eq!(b.deadline(), None);

        // A steady stream fills datagrams completely.
        let mut sizes = Vec::new();
        let mut now = 2000 + linger;
        for _ in 0..1000 {
            now += 10;
            if let Some(d) = b.push(&f, now) {
                sizes.push(decode(d, &mut |_| {}).unwrap().frames);
            }
        }
        assert!(sizes.len() >= 14, "{sizes:?}");
        assert!(sizes[1..].iter().all(|&n| n == 69), "{sizes:?}");
        let rest = b.flush(now).map(|d| decode(d, &mut |_| {}).unwrap().frames);
        let total: u32 = sizes.iter().map(|&n| n as u32).sum::<u32>() + rest.unwrap_or(0) as u32;
        assert_eq!(total, 1000);
        assert!(b.flush(now).is_none());
    }

    #[test]
    fn batcher_linger_expired_on_push_and_channel_change() {
        let mut b = NativeBatcher::new(5, DEFAULT_MAX_DATAGRAM, 100);
        let f = frame("1#", 0, Channel::NONE);
        b.push(&f, 0).unwrap();
        assert!(b.push(&f, 10).is_none());
        // Past the deadline: the pending datagram leaves, the new frame waits.
        let d = b.push(&f, 500).unwrap();
        assert_eq!(decode(d, &mut |_| {}).unwrap().frames, 1);
        assert_eq!(b.pending_frames(), 1);
        let mut g = f;
        g.channel = Channel::int(3);
        let d = b.push(&g, 501).unwrap();
        assert_eq!(decode(d, &mut |_| {}).unwrap().frames, 1);
        let d = b.flush(502).unwrap().to_vec();
        let (_, out) = decode_all(&d);
        assert_eq!(out, vec![g]);
        let mut bad = f;
        bad.flags = 0x80;
        assert!(b.push(&bad, 100_000).is_none());
        assert_eq!(b.rejected(), 1);
        assert_eq!(b.datagrams(), 4);
    }

    #[test]
    fn padded_datagrams_decode_the_same() {
        let mut b = NativeBatcher::new(5, 1000, 1_000_000);
        b.set_pad_full(true);
        let f = frame("123#0011223344556677", 10, Channel::NONE);
        assert_eq!(
            b.push(&f, 0).unwrap().len(),
            FRAMES_HEADER_LEN + 20,
            "lone: not padded"
        );
        let mut full = Vec::new();
        for i in 0..200 {
            if let Some(d) = b.push(&f, 1 + i) {
                full.push(d.to_vec());
            }
        }
        assert!(full.len() >= 3);
        for d in &full {
            assert_eq!(d.len(), 1000);
            let (r, out) = decode_all(d);
            let info = r.unwrap();
            assert_eq!((info.frames, info.error), (47, None));
            assert!(out.iter().all(|g| *g == f));
        }
        let tail = b.flush(300).unwrap();
        assert!(tail.len() < 1000, "flushed: not padded");

        let mut buf = [0xEEu8; 300];
        let mut enc = Encoder::new(1, 300);
        enc.begin(&mut buf, 0, Channel::NONE, 10);
        assert!(enc.push(&mut buf, &f));
        assert_eq!(enc.finish_padded(&mut buf, 200), 200);
        assert!(buf[FRAMES_HEADER_LEN + 20..200].iter().all(|&b| b == 0));
        assert_eq!(decode_all(&buf[..200]).1, vec![f]);
    }

    #[test]
    fn random_sender_ids_differ() {
        let a = random_sender_id();
        let b = random_sender_id();
        assert!(a != 0 && b != 0);
        assert_ne!(a, b);
    }
}
