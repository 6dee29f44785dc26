//! The bytes of a `.cmc` segment: header, record layouts, and the checksum that commits
//! a record. docs/cmc-format.md is the prose version of this file; keep them in step.
//!
//! Every multi-byte integer is little-endian and every struct here is `Unaligned`, so a
//! reader can view any record in place in a memory map without copying.

use zerocopy::little_endian::{U16, U32, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

/// First eight bytes of every segment.
pub const MAGIC: [u8; 8] = *b"CANMCREC";
/// Format version this code writes. Version 2 added the direction bit
/// ([`FLAG_TX`]) and the raw DLC in the `len` byte of classic frames; version 3 the
/// frame batch record ([`kind::BATCH`]), which a version 2 reader would skip silently
/// (it skips unknown kinds), losing its frames: hence a version bump, not a new kind.
pub const VERSION: u16 = 3;
/// Oldest format version this code reads (version 1 files have neither direction nor
/// raw DLC: every frame reads as Rx with its plain length).
pub const MIN_VERSION: u16 = 1;
/// Bit of [`RecordHead::flags`] in a frame record (version 2): the frame was
/// transmitted ([`crate::frame::Direction::Tx`]). Not a [`crate::frame::flags`] bit.
pub const FLAG_TX: u8 = 0x40;
/// Size of [`SegmentHeader`].
pub const HEADER_SIZE: usize = 64;
/// Records never straddle a block boundary; each block starts with a [`BlockRec`].
pub const BLOCK_SIZE: usize = 64 * 1024;
/// Size of one channel or sender table slot.
pub const SLOT_SIZE: usize = 32;
/// Records start at multiples of this, counted from the start of the file.
pub const RECORD_ALIGN: usize = 8;

/// Record types (byte 6 of every record).
pub mod kind {
    /// A CAN or CAN FD frame: [`super::FrameRec`] + payload.
    pub const FRAME: u8 = 1;
    /// A sequence gap: [`super::LossRec`].
    pub const LOSS: u8 = 2;
    /// Datagrams the kernel dropped: [`super::DropsRec`].
    pub const KERNEL_DROPS: u8 = 3;
    /// Block start / index entry: [`super::BlockRec`].
    pub const BLOCK: u8 = 4;
    /// Filler up to the end of a block; only its 8-byte head is checksummed.
    pub const PAD: u8 = 5;
    /// Channel table slot: [`super::ChannelDef`].
    pub const CHANNEL: u8 = 6;
    /// Sender table slot: [`super::SenderDef`].
    pub const SENDER: u8 = 7;
    /// Frame records of one native datagram as they were on the wire (version 3):
    /// [`super::BatchRec`] + the records, zero-padded to a multiple of 8.
    pub const BATCH: u8 = 8;
}

/// The 64 bytes at offset 0 of every segment.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct SegmentHeader {
    pub magic: [u8; 8],
    pub version: U16,
    pub header_size: U16,
    pub block_size: U32,
    /// Same in every segment of one recording; tells a stale `rec.cmc.N` apart.
    pub recording_id: U64,
    pub segment_no: U32,
    pub channel_cap: U16,
    pub sender_cap: U16,
    /// Wall clock (ns since the Unix epoch) when the segment was created.
    pub start_time_ns: U64,
    /// Offset of block 0 (the end of the tables, rounded up to 64).
    pub data_start: U32,
    /// Commit word of bytes 0..44; written last when the segment is created.
    pub header_crc: U32,
    /// Used length of the segment; valid only when `end_crc` checks.
    pub end_offset: U64,
    /// Commit word of bytes 48..56; written last when the segment is closed.
    pub end_crc: U32,
    pub reserved: U32,
}

/// Offset of [`SegmentHeader::header_crc`].
pub const HEADER_CRC_AT: usize = 44;
/// Offset of [`SegmentHeader::end_offset`].
pub const END_AT: usize = 48;
/// Offset of [`SegmentHeader::end_crc`].
pub const END_CRC_AT: usize = 56;

/// The first 8 bytes of every record.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct RecordHead {
    /// Commit word: [`commit_word`] of the record's checksummed bytes; 0 = not written.
    pub commit: U32,
    /// Whole record size in bytes, a multiple of 8.
    pub size: U16,
    pub kind: u8,
    /// Frame flags for frame records ([`crate::frame::flags`] bits, plus [`FLAG_TX`]),
    /// else 0.
    pub flags: u8,
}

/// Head of a frame record; the payload follows, zero-padded to a multiple of 8.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct FrameRec {
    pub head: RecordHead,
    pub timestamp_ns: U64,
    pub id: U32,
    /// Slot in this segment's sender table.
    pub sender: U16,
    /// Slot in this segment's channel table.
    pub channel: u8,
    /// `CanFrame::len`; for a remote frame the requested length (no payload stored).
    /// For a classic frame with a raw DLC (version 2), the DLC 9–15: 8 bytes stored.
    pub len: u8,
}

/// Size of [`FrameRec`].
pub const FRAME_HEAD: usize = 24;

/// Head of a frame batch record (version 3): frame records of one native frames
/// datagram (docs/wire-native.md §2: 12-byte head, data padded to 4), copied as they
/// arrived, follow; then zeros up to a multiple of 8. Every frame is received (Rx), on
/// `channel`, from `sender`, at `base_ts + delta_ns`.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct BatchRec {
    pub head: RecordHead,
    /// The datagram's base timestamp.
    pub base_ts: U64,
    /// Largest frame timestamp in this record: the block index and `seek` use it
    /// without expanding the records.
    pub max_ts: U64,
    /// Slot in this segment's sender table.
    pub sender: U16,
    /// Slot in this segment's channel table.
    pub channel: u8,
    pub reserved: u8,
    /// Frame records that follow (≥ 1).
    pub count: U16,
    /// Bytes of frame records that follow (before the padding to 8).
    pub records_len: U16,
}

/// Size of [`BatchRec`].
pub const BATCH_HEAD: usize = 32;

/// Size of a batch record holding `records_len` bytes of frame records.
#[inline]
pub const fn batch_size(records_len: usize) -> usize {
    BATCH_HEAD + align8(records_len)
}

/// Fewest frames a batch record holds. With fewer, the 32-byte batch head makes a
/// classic 8-byte frame cost more than the 32 bytes a frame record takes (one: 56
/// bytes, two: 36 each; three: 32), so the writer uses frame records for them. From
/// three frames on, a batch record is never larger than the frame records would be.
pub const MIN_BATCH: usize = 3;

/// Most bytes of frame records one batch record can hold: a whole block less its block
/// record and the batch head. Longer batches are split at a record boundary.
pub const MAX_BATCH_RECORDS: usize = BLOCK_SIZE - BLOCK_REC - BATCH_HEAD;

/// A sequence gap reported by the engine.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct LossRec {
    pub head: RecordHead,
    pub timestamp_ns: U64,
    pub lost: U64,
    pub sender: U16,
    pub reserved: [u8; 6],
}

/// Datagrams the kernel dropped (SO_RXQ_OVFL deltas).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct DropsRec {
    pub head: RecordHead,
    pub timestamp_ns: U64,
    pub count: U64,
}

/// First record of every block: the sparse time index.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct BlockRec {
    pub head: RecordHead,
    /// Largest timestamp of any record written before this one in the whole recording
    /// (0 if none). Non-decreasing, so readers can binary-search it.
    pub max_ts_before: U64,
    /// Frames written before this one in the whole recording.
    pub frames_before: U64,
}

/// Size of [`BlockRec`].
pub const BLOCK_REC: usize = 24;

/// Channel table slot: the 24 bytes of a `Channel` (kind, len, 22 name bytes).
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct ChannelDef {
    pub head: RecordHead,
    pub channel: [u8; 24],
}

/// Sender table slot.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(crate) struct SenderDef {
    pub head: RecordHead,
    /// IPv6 address, or IPv4 in the first 4 bytes.
    pub addr: [u8; 16],
    pub port: U16,
    /// 0 none, 4 IPv4, 6 IPv6.
    pub family: u8,
    pub reserved: [u8; 5],
}

const _: () = {
    assert!(std::mem::size_of::<SegmentHeader>() == HEADER_SIZE);
    assert!(std::mem::size_of::<RecordHead>() == 8);
    assert!(std::mem::size_of::<FrameRec>() == FRAME_HEAD);
    assert!(std::mem::size_of::<LossRec>() == 32);
    assert!(std::mem::size_of::<DropsRec>() == 24);
    assert!(std::mem::size_of::<BlockRec>() == BLOCK_REC);
    assert!(std::mem::size_of::<BatchRec>() == BATCH_HEAD);
    assert!(std::mem::size_of::<ChannelDef>() == SLOT_SIZE);
    assert!(std::mem::size_of::<SenderDef>() == SLOT_SIZE);
};

/// Rounds up to the record alignment.
#[inline]
pub const fn align8(n: usize) -> usize {
    (n + 7) & !7
}

/// Payload bytes a frame record stores: none for a remote frame, 8 for a classic frame
/// whose `len` byte is a raw DLC (9–15), else `len`.
#[inline]
pub const fn stored_len(flags: u8, len: u8) -> usize {
    if flags & crate::frame::flags::RTR != 0 {
        0
    } else if flags & crate::frame::flags::FD == 0 && len > 8 && len <= 15 {
        8
    } else {
        len as usize
    }
}

/// The `len` byte a frame record stores for `frame`: its raw DLC if it has one, else
/// its length.
#[inline]
pub const fn stored_len_byte(frame: &crate::frame::CanFrame) -> u8 {
    if frame.raw_dlc != 0 {
        frame.raw_dlc
    } else {
        frame.len
    }
}

/// Size of a frame record with this payload length.
#[inline]
pub const fn frame_size(stored: usize) -> usize {
    FRAME_HEAD + align8(stored)
}

/// The first frames of `records` (`left` announced) whose records fit in `cap` bytes.
#[derive(Debug, Clone, Copy)]
pub(crate) struct Part {
    /// Frames that fit.
    pub count: usize,
    /// Their bytes.
    pub bytes: usize,
    /// Their largest `delta_ns`.
    pub max_delta: u32,
}

/// Walks frame records (12-byte head: `delta_ns` at 4, `size_words` at 11) while they
/// fit in `cap` bytes. The batch was checked, so sizes are sane; bounds are still
/// checked so that nothing here can panic.
pub(crate) fn split_records(records: &[u8], left: usize, cap: usize) -> Part {
    let mut p = Part {
        count: 0,
        bytes: 0,
        max_delta: 0,
    };
    while p.count < left {
        let Some(head) = records.get(p.bytes..p.bytes + 12) else {
            break;
        };
        let size = head[11] as usize * 4;
        if size < 12 || p.bytes + size > cap || p.bytes + size > records.len() {
            break;
        }
        let delta = u32::from_le_bytes([head[4], head[5], head[6], head[7]]);
        p.max_delta = p.max_delta.max(delta);
        p.bytes += size;
        p.count += 1;
    }
    p
}

/// Offset where block 0 starts for these table capacities.
pub const fn data_start(channel_cap: usize, sender_cap: usize) -> usize {
    (HEADER_SIZE + SLOT_SIZE * (channel_cap + sender_cap) + 63) & !63
}

/// A checksum as stored in a commit word: never 0, because 0 means "not committed".
#[inline]
pub fn commit_word(crc: u32) -> u32 {
    crc.max(1)
}

/// The commit word a record must carry: CRC-32C of bytes 4..size, or of bytes 4..8
/// for a pad (its body is never read, so it is not worth checksumming 64 KiB of zeros).
#[inline]
pub fn record_check(rec: &[u8]) -> u32 {
    let end = if rec.get(6) == Some(&kind::PAD) {
        8
    } else {
        rec.len()
    };
    commit_word(crc32c(rec.get(4..end).unwrap_or(&[])))
}

/// Bytes from which the `crc32c` crate's three interleaved streams beat one (docs/perf.md,
/// "CRC-32C": 1.35x faster at 1 KiB, 2.4x at 64 KiB; 3x slower at 28 bytes).
const LARGE: usize = 1024;

/// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78, init and final xor !0), the
/// checksum of iSCSI, ext4 and LevelDB. `crc32c(b"123456789") == 0xE306_9283`.
#[inline]
pub fn crc32c(data: &[u8]) -> u32 {
    if data.len() >= LARGE {
        // Frame batch records (a 69-frame datagram is a 1.4 KiB record).
        return ::crc32c::crc32c(data);
    }
    #[cfg(target_arch = "x86_64")]
    {
        if std::is_x86_feature_detected!("sse4.2") {
            // SAFETY: the CPU supports SSE4.2, the only requirement of crc32c_sse42.
            return unsafe { crc32c_sse42(data) };
        }
    }
    crc32c_soft(data)
}

const POLY: u32 = 0x82F6_3B78;

static TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 { (c >> 1) ^ POLY } else { c >> 1 };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Table-driven CRC-32C for CPUs without the instruction.
fn crc32c_soft(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

/// CRC-32C with the SSE4.2 `crc32` instruction: the writer checksums every record, so
/// this is on the hot path (≈ 4 instructions for a classic frame).
#[cfg(target_arch = "x86_64")]
#[target_feature(enable = "sse4.2")]
unsafe fn crc32c_sse42(data: &[u8]) -> u32 {
    use std::arch::x86_64::{_mm_crc32_u32, _mm_crc32_u64, _mm_crc32_u8};
    let mut c = !0u32 as u64;
    let mut words = data.chunks_exact(8);
    for w in &mut words {
        let mut le = [0u8; 8];
        le.copy_from_slice(w);
        c = _mm_crc32_u64(c, u64::from_le_bytes(le));
    }
    let mut c = c as u32;
    let mut rest = words.remainder();
    if rest.len() >= 4 {
        let mut le = [0u8; 4];
        le.copy_from_slice(&rest[..4]);
        c = _mm_crc32_u32(c, u32::from_le_bytes(le));
        rest = &rest[4..];
    }
    for &b in rest {
        c = _mm_crc32_u8(c, b);
    }
    !c
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn crc32c_known_answers_and_both_paths_agree() {
        assert_eq!(crc32c(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c_soft(b"123456789"), 0xE306_9283);
        assert_eq!(crc32c(b""), 0);
        // 32 zero bytes: RFC 3720 B.4 test vector.
        assert_eq!(crc32c(&[0u8; 32]), 0x8A91_36AA);
        let data: Vec<u8> = (0..200u32).map(|i| (i * 7 + 3) as u8).collect();
        for start in 0..9 {
            for end in start..data.len() {
                assert_eq!(crc32c(&data[start..end]), crc32c_soft(&data[start..end]));
            }
        }
        // Around the switch to the crate, and a whole datagram's worth.
        let big: Vec<u8> = (0..70_000u32).map(|i| (i * 13 + 5) as u8).collect();
        for len in [LARGE - 1, LARGE, LARGE + 1, 1416, 65_536, 70_000] {
            assert_eq!(crc32c(&big[..len]), crc32c_soft(&big[..len]), "{len} bytes");
        }
    }

    #[test]
    fn layout_helpers() {
        assert_eq!(frame_size(8), 32);
        assert_eq!(frame_size(0), 24);
        assert_eq!(frame_size(3), 32);
        assert_eq!(frame_size(64), 88);
        assert_eq!(stored_len(crate::frame::flags::RTR, 8), 0);
        assert_eq!(stored_len(crate::frame::flags::RTR, 12), 0);
        assert_eq!(stored_len(0, 12), 8);
        assert_eq!(stored_len(crate::frame::flags::FD, 12), 12);
        assert_eq!(data_start(64, 1024), 64 + 32 * 1088);
        assert_eq!(data_start(1, 1) % 64, 0);
        assert_eq!(commit_word(0), 1);
    }
}
