//! A frames datagram checked whole and kept as it arrived: [`FrameBatch`] is a view of
//! its records in place, so a recorder can store them with one copy and a reader can
//! expand them into frames later ([`BatchRecords`]).
//!
//! The checks are [`decode`](super::decode())'s, record for record: a batch exists only
//! when every record of the datagram is a valid CAN frame, so the frames a batch yields
//! are exactly the frames `decode` delivers. A datagram with a record `decode` would skip
//! is no batch ([`FrameBatch::check`] says `Ok(None)`) and goes frame by frame.

use zerocopy::FromBytes;

use super::decode::{common, read_channel};
use super::{
    quick_valid, wire_data_len, FrameRecord, FramesHeader, Kind, COMMON_HEADER_LEN, RECORD_CAN,
    RECORD_HEADER_LEN,
};
use crate::frame::{CanFrame, Channel};
use crate::wire::DecodeError;

/// The records of one native frames datagram, every one checked, in place.
#[derive(Debug, Clone, Copy)]
pub struct FrameBatch<'a> {
    base_ts: u64,
    channel: Channel,
    records: &'a [u8],
    count: u16,
    first_ts: u64,
    last_ts: u64,
    max_ts: u64,
}

impl<'a> FrameBatch<'a> {
    /// Checks a frames datagram's header and every record. `Err` for what
    /// [`decode`](super::decode()) refuses whole; `Ok(None)` when the header is good but a
    /// record would be skipped (decode that datagram frame by frame); `Ok(Some)` when
    /// every record is a valid frame. Control datagrams (probes, answers) are
    /// `Err(UnknownType)`. Authentication is the caller's (see [`super::verify`]).
    pub fn check(datagram: &'a [u8]) -> Result<Option<FrameBatch<'a>>, DecodeError> {
        let (h, kind, end) = common(datagram)?;
        if kind != Kind::Frames {
            return Err(DecodeError::UnknownType);
        }
        let hlen = h.header_len.get() as usize;
        let (fh, _) = FramesHeader::ref_from_prefix(&datagram[COMMON_HEADER_LEN..])
            .map_err(|_| DecodeError::Truncated)?;
        let channel = read_channel(&fh.channel)?;
        let base_ts = fh.base_ts.get();
        let count = h.count.get();
        let body = &datagram[hlen..end];
        let mut walk = BatchRecords::new(body, count);
        let mut max_delta = 0u32;
        let (mut first, mut last) = (None, 0u32);
        for r in &mut walk {
            let Ok(r) = r else { return Ok(None) };
            let d = r.delta_ns();
            first.get_or_insert(d);
            last = d;
            max_delta = max_delta.max(d);
        }
        let first = first.unwrap_or(0);
        // The records end where the walk stopped: bytes after the last one (a later
        // version's trailer) are not records and are not kept.
        let used = body.len() - walk.rest.len();
        Ok(Some(FrameBatch {
            base_ts,
            channel,
            records: &body[..used],
            count,
            first_ts: base_ts.wrapping_add(first as u64),
            last_ts: base_ts.wrapping_add(last as u64),
            max_ts: base_ts.wrapping_add(max_delta as u64),
        }))
    }

    /// The datagram's base timestamp (ns since the Unix epoch; each frame adds its delta).
    pub fn base_ts(&self) -> u64 {
        self.base_ts
    }

    /// The channel of every frame in the batch.
    pub fn channel(&self) -> &Channel {
        &self.channel
    }

    /// The records as they were on the wire: `len()` frame records, back to back.
    pub fn records(&self) -> &'a [u8] {
        self.records
    }

    /// Frames in the batch.
    pub fn len(&self) -> usize {
        self.count as usize
    }

    /// True when the datagram carried no frame.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// The first frame's timestamp (the base timestamp if there is none).
    pub fn first_timestamp_ns(&self) -> u64 {
        self.first_ts
    }

    /// The last frame's timestamp (the base timestamp if there is none).
    pub fn last_timestamp_ns(&self) -> u64 {
        self.last_ts
    }

    /// The largest frame timestamp (the base timestamp if there is none).
    pub fn max_timestamp_ns(&self) -> u64 {
        self.max_ts
    }

    /// The frames, decoded one by one (sender left empty, as [`super::decode`] does).
    pub fn frames(&self) -> impl Iterator<Item = CanFrame> + 'a {
        let (base, channel) = (self.base_ts, self.channel);
        // Every record was checked by `check`: the walk yields no error here.
        BatchRecords::new(self.records, self.count)
            .flatten()
            .map(move |r| r.to_frame(base, &channel))
    }
}

/// One frame record, checked, read in place.
#[derive(Debug, Clone, Copy)]
pub struct RecordRef<'a> {
    rec: &'a FrameRecord,
    payload: &'a [u8],
}

impl<'a> RecordRef<'a> {
    /// Identifier without flags (error class bits for an error frame).
    pub fn id(&self) -> u32 {
        self.rec.id.get()
    }
    /// Nanoseconds after the batch's base timestamp.
    pub fn delta_ns(&self) -> u32 {
        self.rec.delta_ns.get()
    }
    /// [`crate::frame::flags`] bits.
    pub fn flags(&self) -> u8 {
        self.rec.flags
    }
    /// Data length (the requested length of a remote frame).
    pub fn len(&self) -> u8 {
        self.rec.len
    }
    /// True for a zero-length frame.
    pub fn is_empty(&self) -> bool {
        self.rec.len == 0
    }
    /// The payload bytes in place (none for a remote frame).
    pub fn payload(&self) -> &'a [u8] {
        self.payload
    }
    /// The frame, with `base` added to its delta and `channel` set (sender empty).
    pub fn to_frame(&self, base: u64, channel: &Channel) -> CanFrame {
        let mut f = CanFrame::EMPTY;
        f.timestamp_ns = base.wrapping_add(self.delta_ns() as u64);
        f.id = self.id();
        f.flags = self.flags();
        f.len = self.len();
        f.channel = *channel;
        f.data[..self.payload.len()].copy_from_slice(self.payload);
        f
    }
}

/// Walks `count` frame records back to back, checking each as
/// [`decode`](super::decode()) does. Yields `Err` for a record `decode` would skip
/// (`InvalidFrame`, `UnknownType`) and goes on; yields `Err(BadLength)` once and stops
/// where `decode` stops. Allocates nothing.
#[derive(Debug, Clone)]
pub struct BatchRecords<'a> {
    rest: &'a [u8],
    left: u16,
}

impl<'a> BatchRecords<'a> {
    /// The records in `bytes`, `count` of them announced.
    pub fn new(bytes: &'a [u8], count: u16) -> BatchRecords<'a> {
        BatchRecords {
            rest: bytes,
            left: count,
        }
    }
}

impl<'a> Iterator for BatchRecords<'a> {
    type Item = Result<RecordRef<'a>, DecodeError>;

    fn next(&mut self) -> Option<Self::Item> {
        if self.left == 0 {
            return None;
        }
        let stop = |s: &mut Self| {
            s.left = 0;
            Some(Err(DecodeError::BadLength))
        };
        let Ok((rec, _)) = FrameRecord::ref_from_prefix(self.rest) else {
            return stop(self);
        };
        let size = rec.size_words as usize * 4;
        if size < RECORD_HEADER_LEN || size > self.rest.len() {
            return stop(self);
        }
        let (this, next) = self.rest.split_at(size);
        let n = wire_data_len(rec.flags, rec.len);
        if rec.rtype == RECORD_CAN && (n > 64 || n > size - RECORD_HEADER_LEN) {
            return stop(self);
        }
        self.rest = next;
        self.left -= 1;
        if rec.rtype != RECORD_CAN {
            return Some(Err(DecodeError::UnknownType));
        }
        if !record_valid(rec) {
            return Some(Err(DecodeError::InvalidFrame));
        }
        Some(Ok(RecordRef {
            rec,
            payload: &this[RECORD_HEADER_LEN..RECORD_HEADER_LEN + n],
        }))
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        (0, Some(self.left as usize))
    }
}

/// Whether the record's fields make a frame [`CanFrame::validate`] accepts (the data
/// bytes do not matter to it).
#[inline]
fn record_valid(rec: &FrameRecord) -> bool {
    let mut f = CanFrame::EMPTY;
    f.id = rec.id.get();
    f.flags = rec.flags;
    f.len = rec.len;
    quick_valid(&f) || f.validate().is_ok()
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;
    use super::*;

    fn decode_all(d: &[u8]) -> Vec<CanFrame> {
        let mut out = Vec::new();
        decode(d, &mut |f| out.push(*f)).unwrap();
        out
    }

    #[test]
    fn a_batch_yields_what_decode_delivers() {
        let ch = Channel::str("can1").unwrap();
        let frames = [
            frame("123#01", 1_000, ch),
            frame("1ABCDEF0#0102030405060708", 1_500, ch),
            frame("7FF#R", 1_200, ch),
            frame("456##1000102030405060708090A0B0C0D0E0F", 2_000, ch),
            frame("000#", 2_000, ch),
        ];
        let d = encode(&frames, 7);
        let b = FrameBatch::check(&d)
            .unwrap()
            .expect("every record is valid");
        assert_eq!(b.len(), frames.len());
        assert_eq!(b.channel(), &ch);
        assert_eq!(b.base_ts(), 1_000);
        assert_eq!(b.first_timestamp_ns(), 1_000);
        assert_eq!(b.last_timestamp_ns(), 2_000);
        assert_eq!(b.max_timestamp_ns(), 2_000);
        assert_eq!(b.frames().collect::<Vec<_>>(), decode_all(&d));
        assert_eq!(b.records().len(), d.len() - FRAMES_HEADER_LEN);
    }

    #[test]
    fn a_record_decode_would_skip_makes_no_batch() {
        let a = frame("123#01", 1, Channel::NONE);
        let b = frame("456#0203", 2, Channel::NONE);
        let good = encode(&[a, b], 0);
        // Standard ID out of range, unknown flag bits, unknown record type, a record
        // size past the end, a count larger than the records present.
        let cases: [(usize, &[u8]); 4] = [
            (FRAMES_HEADER_LEN, &0x800u32.to_le_bytes()),
            (FRAMES_HEADER_LEN + 8, &[0x80]),
            (FRAMES_HEADER_LEN + 10, &[7]),
            (FRAMES_HEADER_LEN + 16 + 11, &[5]),
        ];
        for (at, bytes) in cases {
            let mut d = good.clone();
            d[at..at + bytes.len()].copy_from_slice(bytes);
            assert!(FrameBatch::check(&d).unwrap().is_none(), "patch at {at}");
        }
        let mut d = good.clone();
        set_u16(&mut d, 8, 3);
        assert!(FrameBatch::check(&d).unwrap().is_none(), "count too large");
        // Header problems are errors, as in decode.
        assert_eq!(
            FrameBatch::check(&good[..30]).unwrap_err(),
            DecodeError::Truncated
        );
    }

    #[test]
    fn the_walk_reports_skipped_records_and_goes_on() {
        let a = frame("123#01", 1, Channel::NONE);
        let b = frame("456#0203", 2, Channel::NONE);
        let mut d = encode(&[a, b], 0);
        d[FRAMES_HEADER_LEN + 10] = 7;
        let got: Vec<_> = BatchRecords::new(&d[FRAMES_HEADER_LEN..], 2)
            .map(|r| r.map(|r| r.to_frame(1, &Channel::NONE)))
            .collect();
        assert_eq!(got, vec![Err(DecodeError::UnknownType), Ok(b)]);
    }

    #[test]
    fn a_trailer_after_the_records_is_not_kept() {
        let a = frame("123#01", 1, Channel::NONE);
        let mut d = encode(&[a], 0);
        d.extend_from_slice(&[0xEE; 8]);
        let l = d.len() as u16;
        set_u16(&mut d, 6, l);
        let b = FrameBatch::check(&d).unwrap().unwrap();
        assert_eq!(b.records().len(), 16);
        assert_eq!(b.frames().collect::<Vec<_>>(), vec![a]);
    }
}
