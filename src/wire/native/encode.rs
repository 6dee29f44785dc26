//! Writing frames datagrams: [`Encoder`] fills a caller's buffer without allocating
//! (the common header writer is shared with the ping messages), and a sender's random id.

use zerocopy::byteorder::little_endian::{U16, U32, U64};
use zerocopy::IntoBytes;

use super::{
    low_bytes_mask, quick_valid, record_size, seal, wire_data_len, AuthKey, CommonHeader,
    FrameRecord, FramesHeader, Kind, COMMON_HEADER_LEN, FRAMES_HEADER_LEN, MAX_DATAGRAM_LIMIT,
    MIN_MAX_DATAGRAM, NATIVE_MAGIC1, RECORD_CAN, RECORD_HEADER_LEN, TAG_LEN, VERSION,
};
use crate::frame::{CanFrame, Channel, ChannelRef};
use crate::wire::NATIVE_MAGIC0;

/// Writes a common header into `buf` (which the caller checked is long enough).
pub(super) fn put_common(
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
        flags: U16::ZERO,
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
    pub(super) rejected: u64,
    key: Option<AuthKey>,
}

impl Encoder {
    /// An encoder for `sender_id`; `max_datagram` is clamped to
    /// [`MIN_MAX_DATAGRAM`]..=[`MAX_DATAGRAM_LIMIT`].
    pub fn new(sender_id: u32, max_datagram: usize) -> Self {
        Encoder::with_key(sender_id, max_datagram, None)
    }

    /// Like [`Encoder::new`]; with a key every datagram is authenticated ([`seal`]ed)
    /// by [`Encoder::finish`]. `max_datagram` includes the [`TAG_LEN`]-byte tag, so
    /// its lower bound is then [`MIN_MAX_DATAGRAM`] + [`TAG_LEN`].
    pub fn with_key(sender_id: u32, max_datagram: usize, key: Option<AuthKey>) -> Self {
        let min = MIN_MAX_DATAGRAM + if key.is_some() { TAG_LEN } else { 0 };
        Encoder {
            sender_id,
            max: max_datagram.clamp(min, MAX_DATAGRAM_LIMIT),
            key,
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
        // Records stop short of the tag's room.
        self.limit = self.max.min(buf.len()).saturating_sub(self.tag_len());
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

    /// Bytes written so far (the length `finish` would return, less the tag of an
    /// authenticated datagram).
    pub fn len(&self) -> usize {
        self.len
    }

    /// Whether datagrams are authenticated.
    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    fn tag_len(&self) -> usize {
        if self.key.is_some() {
            TAG_LEN
        } else {
            0
        }
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

    /// Writes the header (with the final count and length), and the tag if keyed, and
    /// returns the datagram's length: `buf[..len]` is ready to send.
    pub fn finish(&mut self, buf: &mut [u8]) -> usize {
        if self.limit < FRAMES_HEADER_LEN || buf.len() < self.len + self.tag_len() {
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
        match &self.key {
            Some(key) => seal(buf, self.len, key),
            None => self.len,
        }
    }

    /// Like [`Encoder::finish`], but zero-pads the datagram to `to` bytes (at most the
    /// limit; the padding goes before the tag of an authenticated datagram). Readers ignore bytes after the last record, so padded datagrams decode the
    /// same; equal-sized datagrams can share one UDP GSO send, which needs equal segments.
    pub fn finish_padded(&mut self, buf: &mut [u8], to: usize) -> usize {
        let target = to
            .saturating_sub(self.tag_len())
            .min(self.limit)
            .min(buf.len())
            .max(self.len);
        if self.limit >= FRAMES_HEADER_LEN {
            buf[self.len..target].fill(0);
            self.len = target;
        }
        self.finish(buf)
    }

    /// Whether `frame` is refused for lack of room alone (not channel or time).
    pub(super) fn is_full_for(&self, frame: &CanFrame) -> bool {
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

/// A random, non-zero sender id (from the OS-seeded keys of std's `RandomState`).
pub fn random_sender_id() -> u32 {
    use std::hash::{BuildHasher, Hasher};
    let mut h = std::collections::hash_map::RandomState::new().build_hasher();
    h.write_u32(std::process::id());
    let v = h.finish();
    ((v >> 32) as u32 ^ v as u32).max(1)
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;
    use crate::frame::Channel;

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
    fn random_sender_ids_differ() {
        let a = random_sender_id();
        let b = random_sender_id();
        assert!(a != 0 && b != 0);
        assert_ne!(a, b);
    }
}
