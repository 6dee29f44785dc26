//! `.cmc` recordings, corrupted: `record::Recording::open`, iteration of every record,
//! `stats()` and `seek`. The input is one or more segment files laid end to end: it is cut
//! before each later occurrence of the magic `CANMCREC` and written to `rec.cmc`,
//! `rec.cmc.1`, … in a scratch directory. Each input is read twice: as given, and
//! "resealed" — every checksum (header, end offset, table slots, records) recomputed, so
//! that mutations reach the checks behind the CRCs instead of all failing there.
//!
//! Asserts: no panic; every frame record has a payload of the length its flags and `len`
//! imply (at most 64) and converts to a `CanFrame`; `stats()` agrees with a full
//! iteration (counts, first/last time, how it ended); `seek(0)` yields what `iter()`
//! yields; `seek(t)` starts at a record at or after `t` and, when neither read meets
//! corruption, yields a suffix of what `iter()` yields. (Not necessarily the suffix
//! from the first record at or after `t`: block markers copied from elsewhere in the
//! input keep valid checksums but lie about earlier times, and seek trusts them.)
#![no_main]

mod common;

use canmc::record::format::{self, record_check};
use canmc::record::{End, Record, Recording, Records};
use canmc::{CanFrame, SenderAddr};
use libfuzzer_sys::fuzz_target;

/// Segment files of one input (more are ignored).
const MAX_SEGMENTS: usize = 4;

#[derive(Debug, Clone, Copy, PartialEq)]
enum Rec {
    Frame(CanFrame),
    Loss(SenderAddr, u64, u64),
    Drops(u64, u64),
}

fn rec(r: &Record<'_>) -> Rec {
    match *r {
        Record::Frame(v) => {
            assert!(v.len() <= 64, "{v:?}");
            let stored = format::stored_len(v.flags(), v.len());
            assert_eq!(v.payload().len(), stored, "{v:?}");
            let f = v.to_frame();
            assert_eq!(f.payload(), v.payload(), "{v:?}");
            let _ = format!("{f:?} {}", f.channel);
            Rec::Frame(f)
        }
        Record::Loss {
            sender,
            lost,
            timestamp_ns,
        } => Rec::Loss(sender, lost, timestamp_ns),
        Record::KernelDrops {
            count,
            timestamp_ns,
        } => Rec::Drops(count, timestamp_ns),
    }
}

fn ts(r: &Rec) -> u64 {
    match *r {
        Rec::Frame(f) => f.timestamp_ns,
        Rec::Loss(_, _, t) | Rec::Drops(_, t) => t,
    }
}

fn drain(it: &mut Records<'_>) -> (Vec<Rec>, End) {
    let v = it.by_ref().map(|r| rec(&r)).collect();
    let end = it.end().cloned().expect("an exhausted iterator says why");
    (v, end)
}

fn check(recording: &Recording) {
    let (all, end) = drain(&mut recording.iter());

    let st = recording.stats();
    let count = |f: fn(&Rec) -> bool| all.iter().filter(|r| f(r)).count() as u64;
    assert_eq!(st.frames, count(|r| matches!(r, Rec::Frame(_))));
    assert_eq!(st.loss_records, count(|r| matches!(r, Rec::Loss(..))));
    assert_eq!(
        st.kernel_drop_records,
        count(|r| matches!(r, Rec::Drops(..)))
    );
    assert_eq!(st.first_ns, all.iter().map(ts).min());
    assert_eq!(st.last_ns, all.iter().map(ts).max());
    assert_eq!(st.end, end);
    assert_eq!(st.segments, recording.segments());
    let _ = (
        recording.is_finished(),
        recording.start_time_ns(),
        recording.ignored_segment(),
    );

    assert_eq!(
        drain(&mut recording.seek(0)),
        (all.clone(), end.clone()),
        "seek(0)"
    );

    let mut times = vec![u64::MAX, 1];
    times.extend(all.first().map(ts));
    times.extend(all.get(all.len() / 2).map(ts));
    times.extend(all.last().map(|r| ts(r).saturating_add(1)));
    for t in times {
        let mut it = recording.iter();
        it.next();
        it.seek(t);
        let (got, seek_end) = drain(&mut it);
        if let Some(first) = got.first() {
            assert!(ts(first) >= t, "seek({t}) started at {first:?}");
        }
        // Block markers only steer the search: one copied from elsewhere (a valid
        // checksum, a wrong time) may make seek start late, but never anywhere iter()
        // does not pass through.
        let corrupt = |e: &End| matches!(e, End::Corrupt { .. });
        if !corrupt(&end) && !corrupt(&seek_end) {
            assert!(all.ends_with(&got), "seek({t}) is not a suffix: {got:?}");
        }
    }
}

fn u16_at(b: &[u8], at: usize) -> usize {
    u16::from_le_bytes([b[at], b[at + 1]]) as usize
}

fn u32_at(b: &[u8], at: usize) -> u32 {
    u32::from_le_bytes(b[at..at + 4].try_into().unwrap())
}

fn set_u32(b: &mut [u8], at: usize, v: u32) {
    b[at..at + 4].copy_from_slice(&v.to_le_bytes());
}

/// Recomputes every non-zero checksum of a segment image (zero words stay zero: they
/// mean "not committed" and are a case of their own).
fn reseal(seg: &mut [u8]) {
    if seg.len() < format::HEADER_SIZE || seg[..8] != format::MAGIC {
        return;
    }
    if u32_at(seg, format::HEADER_CRC_AT) != 0 {
        let crc = format::commit_word(format::crc32c(&seg[..format::HEADER_CRC_AT]));
        set_u32(seg, format::HEADER_CRC_AT, crc);
    }
    if u32_at(seg, format::END_CRC_AT) != 0 {
        let crc = format::commit_word(format::crc32c(&seg[format::END_AT..format::END_AT + 8]));
        set_u32(seg, format::END_CRC_AT, crc);
    }
    let slots = u16_at(seg, 28) + u16_at(seg, 30);
    let mut off = format::HEADER_SIZE;
    for _ in 0..slots {
        if off + format::SLOT_SIZE > seg.len() {
            return;
        }
        if u32_at(seg, off) != 0 {
            let check = record_check(&seg[off..off + format::SLOT_SIZE]);
            set_u32(seg, off, check);
        }
        off += format::SLOT_SIZE;
    }
    let mut off = u32_at(seg, 40) as usize;
    while off + 8 <= seg.len() {
        let size = u16_at(seg, off + 4);
        if size < 8 || !size.is_multiple_of(format::RECORD_ALIGN) || off + size > seg.len() {
            break;
        }
        if u32_at(seg, off) != 0 {
            let check = record_check(&seg[off..off + size]);
            set_u32(seg, off, check);
        }
        off += size;
    }
}

/// Cuts the input before each later `CANMCREC`.
fn segments(data: &[u8]) -> Vec<&[u8]> {
    let mut cuts = vec![0];
    let mut i = 1;
    while cuts.len() < MAX_SEGMENTS && i + 8 <= data.len() {
        if data[i..i + 8] == format::MAGIC {
            cuts.push(i);
            i += 8;
        } else {
            i += 1;
        }
    }
    cuts.push(data.len());
    cuts.windows(2).map(|w| &data[w[0]..w[1]]).collect()
}

fn open_and_check(segs: &[Vec<u8>]) {
    let base = common::scratch_dir().join("rec.cmc");
    for n in 0..MAX_SEGMENTS {
        let path = canmc::record::segment_path(&base, n as u32);
        match segs.get(n) {
            Some(bytes) => std::fs::write(&path, bytes).expect("write a segment file"),
            None => {
                let _ = std::fs::remove_file(&path);
            }
        }
    }
    if let Ok(recording) = Recording::open(&base) {
        check(&recording);
    }
}

fuzz_target!(|data: &[u8]| {
    let raw: Vec<Vec<u8>> = segments(data).into_iter().map(<[u8]>::to_vec).collect();
    open_and_check(&raw);
    let mut sealed = raw.clone();
    sealed.iter_mut().for_each(|s| reseal(s));
    if sealed != raw {
        open_and_check(&sealed);
    }
});
