//! canmc's native batched wire format: many fixed-layout frame records per datagram,
//! read in place with zerocopy, plus the `ping` control messages and the adaptive
//! batching policy that decides when a datagram leaves.
//!
//! Every byte is documented in `docs/wire-native.md`; the structs in this file are that
//! document in code. All multi-byte fields are little-endian and every struct has
//! alignment 1, so a header is a reference into the receive buffer, never a copy.
//!
//! ```text
//! datagram = CommonHeader(24) · kind-specific header · records…
//! frames   = CommonHeader · FramesHeader(32) · FrameRecord(12) + data (padded to 4)…
//! probe    = CommonHeader · ProbeBody(16)
//! answer   = CommonHeader · AnswerBody(104)
//! announce = CommonHeader · AnnounceBody(48)
//! ```
//!
//! One job per file:
//!
//! | file | job |
//! |---|---|
//! | `mod.rs` | constants and the byte layout (headers, records, control bodies) |
//! | [`decode`](decode()) (`decode.rs`) | header checks, [`peek`], frame records → [`CanFrame`]s in place |
//! | `encode.rs` | [`Encoder`]: frames → one datagram in a caller's buffer; sender ids |
//! | `auth.rs` | [`AuthKey`], [`seal`] / [`verify`] (BLAKE3 keyed tag), key files |
//! | `ping.rs` | the probe and answer messages ([`PingProbe`], [`PingAnswer`]) |
//! | `announce.rs` | the bridge announcement ([`BridgeAnnounce`]) bridges on one bus elect by |
//! | `batcher.rs` | [`NativeBatcher`]: when a datagram leaves (idle, full, linger) |
//! | `batch.rs` | [`FrameBatch`]: a frames datagram checked whole, its records in place |

mod announce;
mod auth;
mod batch;
mod batcher;
mod decode;
mod encode;
mod ping;

pub use announce::{
    decode_announce, encode_announce, AnnounceState, Announcement, BridgeAnnounce, BusName,
    BUS_NAME_MAX,
};
pub use auth::{parse_key, read_key_file, seal, verify, AuthKey, KeyError, KeyFileError};
pub use batch::{BatchRecords, FrameBatch, RecordRef};
pub use batcher::NativeBatcher;
pub use decode::{decode, decode_with, peek};
pub use encode::{random_sender_id, Encoder};
pub use ping::{
    decode_answer, decode_probe, encode_answer, encode_probe, PingAnswer, PingProbe, Role,
};

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use crate::frame::CanFrame;
#[cfg(doc)]
use crate::frame::Channel;
use crate::wire::DecodeError;
#[cfg(doc)]
use crate::wire::NATIVE_MAGIC0;

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

/// Size of the common header that starts every native datagram (magic, version, kind,
/// lengths, flags, sender id, sequence number).
pub const COMMON_HEADER_LEN: usize = 24;
/// Size of the whole header of a frames datagram (common header, base timestamp, channel).
pub const FRAMES_HEADER_LEN: usize = COMMON_HEADER_LEN + 32;
/// Size of [`FrameRecord`] (the fixed part of each frame record).
pub(crate) const RECORD_HEADER_LEN: usize = 12;
/// Largest frame record v1 writes: header + 64 data bytes.
pub(crate) const MAX_RECORD_LEN: usize = RECORD_HEADER_LEN + 64;
/// Smallest `max_datagram` an [`Encoder`] accepts: one header and one 64-byte FD record.
pub const MIN_MAX_DATAGRAM: usize = FRAMES_HEADER_LEN + MAX_RECORD_LEN;
/// Length of a probe datagram.
pub const PROBE_LEN: usize = COMMON_HEADER_LEN + 16;
/// Length of an answer datagram.
pub const ANSWER_LEN: usize = COMMON_HEADER_LEN + 104;
/// Length of a bridge announcement datagram.
pub const ANNOUNCE_LEN: usize = COMMON_HEADER_LEN + 48;
/// Most host-name bytes an answer carries.
pub const HOST_MAX: usize = 64;

/// Bytes of the authentication tag that ends an authenticated datagram.
pub const TAG_LEN: usize = 16;
/// Bytes of an authentication key.
pub const KEY_LEN: usize = 32;
/// Bit of the common header's `flags` field: the datagram ends with a [`TAG_LEN`]-byte
/// tag.
pub const FLAG_AUTH: u16 = 0x0001;

/// Record type of a CAN / CAN FD frame record (the only one v1 defines).
pub(crate) const RECORD_CAN: u8 = 0;

const KIND_FRAMES: u8 = 1;
const KIND_PROBE: u8 = 2;
const KIND_ANSWER: u8 = 3;
const KIND_ANNOUNCE: u8 = 4;

/// What a datagram carries (byte 3 of the common header).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    /// CAN frame records.
    Frames,
    /// A `ping` probe: "who is on this group?".
    PingProbe,
    /// An answer to a probe.
    PingAnswer,
    /// A bridge saying which bus it serves and whether it forwards (`canmc bridge --bus`).
    BridgeAnnounce,
}

impl Kind {
    /// The byte on the wire.
    pub(crate) fn to_byte(self) -> u8 {
        match self {
            Kind::Frames => KIND_FRAMES,
            Kind::PingProbe => KIND_PROBE,
            Kind::PingAnswer => KIND_ANSWER,
            Kind::BridgeAnnounce => KIND_ANNOUNCE,
        }
    }

    fn from_byte(b: u8) -> Option<Kind> {
        match b {
            KIND_FRAMES => Some(Kind::Frames),
            KIND_PROBE => Some(Kind::PingProbe),
            KIND_ANSWER => Some(Kind::PingAnswer),
            KIND_ANNOUNCE => Some(Kind::BridgeAnnounce),
            _ => None,
        }
    }

    fn min_header_len(self) -> usize {
        match self {
            Kind::Frames => FRAMES_HEADER_LEN,
            Kind::PingProbe => PROBE_LEN,
            Kind::PingAnswer => ANSWER_LEN,
            Kind::BridgeAnnounce => ANNOUNCE_LEN,
        }
    }
}

/// The first 24 bytes of every native datagram.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct CommonHeader {
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
    /// Bit 0 ([`FLAG_AUTH`]): the last [`TAG_LEN`] bytes are an authentication tag.
    /// Other bits are written 0 and ignored on read.
    pub flags: U16,
    /// Random id the sender chose at start-up.
    pub sender_id: U32,
    /// Per-sender sequence number of frames datagrams (0, 1, 2, …).
    pub seq: U64,
}

/// The part of a frames datagram's header after [`CommonHeader`].
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct FramesHeader {
    /// Timestamp every record's delta is added to, ns since the Unix epoch.
    pub base_ts: U64,
    /// python-can channel of every frame in the datagram: [`Channel`]'s 24 bytes.
    pub channel: [u8; 24],
}

/// The fixed part of one frame record; `len` data bytes follow (none for RTR), then
/// zero padding up to `size`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct FrameRecord {
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
const _: () =
    assert!(std::mem::size_of::<announce::AnnounceBody>() == ANNOUNCE_LEN - COMMON_HEADER_LEN);

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

/// Helpers shared by the unit tests of this folder.
#[cfg(test)]
mod test_util {
    use super::*;
    use crate::frame::Channel;

    pub(super) fn frame(text: &str, ts: u64, ch: Channel) -> CanFrame {
        let mut f: CanFrame = text.parse().unwrap();
        f.timestamp_ns = ts;
        f.channel = ch;
        f
    }

    /// Encodes `frames` (same channel, first frame's timestamp as base) into one datagram.
    pub(super) fn encode(frames: &[CanFrame], seq: u64) -> Vec<u8> {
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

    pub(super) fn decode_all(d: &[u8]) -> (Result<DatagramInfo, DecodeError>, Vec<CanFrame>) {
        let mut out = Vec::new();
        let r = decode(d, &mut |f| out.push(*f));
        (r, out)
    }

    pub(super) fn set_u16(d: &mut [u8], at: usize, v: u16) {
        d[at..at + 2].copy_from_slice(&v.to_le_bytes());
    }
}

#[cfg(test)]
mod tests {
    use super::test_util::*;
    use super::*;
    use crate::frame::{flags, Channel};

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
        assert_eq!(&d[10..12], &[0, 0], "flags");
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
        d[10] = 0xFE; // every flag but FLAG_AUTH
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
}
