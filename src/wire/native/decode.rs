//! Reading native datagrams in place: the common header's checks (shared with the ping
//! decoders), [`peek`] for the sequence tracker, and the frame-record loop.

use zerocopy::FromBytes;

use super::{
    low_bytes_mask, quick_valid, wire_data_len, CommonHeader, DatagramInfo, FrameRecord,
    FramesHeader, Kind, COMMON_HEADER_LEN, FLAG_AUTH, NATIVE_MAGIC1, RECORD_CAN, RECORD_HEADER_LEN,
    TAG_LEN, VERSION,
};
use crate::frame::{CanFrame, Channel};
use crate::wire::{DecodeError, NATIVE_MAGIC0};

/// Reads and checks the common header: magic, version, kind, lengths. Also returns
/// where the body ends: before the tag of an authenticated datagram, else at its end.
pub(super) fn common(datagram: &[u8]) -> Result<(&CommonHeader, Kind, usize), DecodeError> {
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
    let end = if h.flags.get() & FLAG_AUTH != 0 {
        // The tag is not records: a reader without the key must not decode it as one.
        total.checked_sub(TAG_LEN).ok_or(DecodeError::BadLength)?
    } else {
        total
    };
    let hlen = h.header_len.get() as usize;
    if hlen < kind.min_header_len() || hlen > end {
        return Err(DecodeError::BadLength);
    }
    Ok((h, kind, end))
}

/// The header of a native datagram, checked (magic, version, kind, lengths), without
/// reading its records: lets a receiver consult its sequence tracker before decoding.
pub fn peek(datagram: &[u8]) -> Result<(Kind, u32, u64), DecodeError> {
    let (h, kind, _) = common(datagram)?;
    Ok((kind, h.sender_id.get(), h.seq.get()))
}

/// The channel in a frames header, or `BadChannel` when its bytes are not one the
/// constructors of [`Channel`] could have made. Rebuilt canonically so decoded frames
/// compare equal to the sender's.
pub(super) fn read_channel(bytes: &[u8; 24]) -> Result<Channel, DecodeError> {
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
    let (h, kind, end) = common(datagram)?;
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
    // `common` checked FRAMES_HEADER_LEN ≤ hlen ≤ end ≤ datagram_len == datagram.len().
    let (fh, _) = FramesHeader::ref_from_prefix(&datagram[COMMON_HEADER_LEN..])
        .map_err(|_| DecodeError::Truncated)?;
    let channel = read_channel(&fh.channel)?;
    let base = fh.base_ts.get();

    let mut frame = CanFrame::EMPTY;
    frame.channel = channel;
    // Bytes of `frame.data` that may be non-zero: a shorter frame after a longer one
    // must not show the longer one's tail (decoded frames compare equal to sent ones).
    let mut dirty = 0usize;
    let mut rest = &datagram[hlen..end];
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

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;
    use crate::frame::Channel;

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
        for k in [0u8, 5, 0xFF] {
            let mut d = good.clone();
            d[3] = k;
            assert_eq!(err(&d), DecodeError::UnknownType, "kind {k}");
        }
        // Kind 4 (bridge announcement) is known: a frames header is too short for it.
        let mut d = good.clone();
        d[3] = 4;
        assert_eq!(
            err(&d),
            DecodeError::BadLength,
            "kind 4 with a 56-byte header"
        );
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
}
