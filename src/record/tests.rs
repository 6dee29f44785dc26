//! Unit tests: each record type, rotation, seek, crash prefixes, corruption, errors;
//! frame batch records (version 3) and the reading of a version 2 file.

use super::*;
use crate::frame::{flags, CanFrame, Channel, SenderAddr};
use std::path::{Path, PathBuf};

struct TempDir(PathBuf);

impl TempDir {
    fn new(tag: &str) -> TempDir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "canmc-record-{tag}-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        let _ = std::fs::remove_dir_all(&p);
        std::fs::create_dir_all(&p).unwrap();
        TempDir(p)
    }
    fn file(&self, name: &str) -> PathBuf {
        self.0.join(name)
    }
}

impl Drop for TempDir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

fn small() -> RecorderOptions {
    RecorderOptions {
        segment_size: 256 * 1024,
        max_channels: 4,
        max_senders: 8,
        ..RecorderOptions::default()
    }
}

fn v4(port: u16) -> SenderAddr {
    SenderAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], port)))
}

fn frame(i: u64) -> CanFrame {
    let mut f = CanFrame::new((i % 0x800) as u32, 0, &i.to_le_bytes()).unwrap();
    f.timestamp_ns = 1_000 + i * 10;
    f.channel = Channel::int((i % 3) as i64);
    f.sender = v4(5000 + (i % 5) as u16);
    f
}

fn frames(r: &Recording) -> Vec<CanFrame> {
    r.iter()
        .filter_map(|x| match x {
            Record::Frame(f) => Some(f.to_frame()),
            _ => None,
        })
        .collect()
}

#[test]
fn every_record_type_round_trips() {
    let d = TempDir::new("types");
    let p = d.file("a.cmc");
    let mut fd = CanFrame::new(
        0x1234_5678,
        flags::EXTENDED | flags::FD | flags::BRS,
        &[7; 64],
    )
    .unwrap();
    fd.timestamp_ns = 5;
    fd.channel = Channel::str("vcan0").unwrap();
    fd.sender = SenderAddr::from("[ff15::1]:43113".parse::<std::net::SocketAddr>().unwrap());
    let mut rtr = CanFrame::remote(0x7FF, false, 8).unwrap();
    rtr.timestamp_ns = 6;
    let mut err: CanFrame = "20000080#0000000000000000".parse().unwrap();
    err.timestamp_ns = 7;
    let classic = frame(3);

    let mut w = Recorder::create(&p, small()).unwrap();
    w.write_frame(&fd).unwrap();
    w.write_loss(v4(9), 42, 8).unwrap();
    w.write_frame(&rtr).unwrap();
    w.write_kernel_drops(3, 9).unwrap();
    w.write_frame(&err).unwrap();
    w.write_frame(&classic).unwrap();
    let st = w.finish().unwrap();
    assert_eq!(
        (st.frames, st.loss_records, st.lost, st.kernel_drops),
        (4, 1, 42, 3)
    );

    let r = Recording::open(&p).unwrap();
    assert!(r.is_finished());
    let all: Vec<String> = r.iter().map(|x| format!("{x:?}")).collect();
    let mut it = r.iter();
    match it.next() {
        Some(Record::Frame(f)) => {
            assert_eq!(f.to_frame(), fd);
            assert_eq!(f.payload(), &[7; 64]);
            assert_eq!(f.channel().to_string(), "vcan0");
        }
        other => panic!("{other:?}"),
    }
    match it.next() {
        Some(Record::Loss {
            sender,
            lost,
            timestamp_ns,
        }) => assert_eq!((sender, lost, timestamp_ns), (v4(9), 42, 8)),
        other => panic!("{other:?}"),
    }
    assert!(
        matches!(it.next(), Some(Record::Frame(f)) if f.to_frame() == rtr && f.payload().is_empty())
    );
    assert!(matches!(
        it.next(),
        Some(Record::KernelDrops {
            count: 3,
            timestamp_ns: 9
        })
    ));
    assert!(matches!(it.next(), Some(Record::Frame(f)) if f.to_frame() == err));
    assert!(matches!(it.next(), Some(Record::Frame(f)) if f.to_frame() == classic));
    assert!(it.next().is_none(), "{all:?}");
    assert_eq!(it.end(), Some(&End::Finished));

    let s = r.stats();
    assert_eq!(s.frames, 4);
    assert_eq!(
        (
            s.loss_records,
            s.lost,
            s.kernel_drop_records,
            s.kernel_drops
        ),
        (1, 42, 1, 3)
    );
    assert_eq!((s.first_ns, s.last_ns), (Some(5), Some(1030)));
}

#[test]
fn classic_frame_takes_32_bytes() {
    let d = TempDir::new("size");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, small()).unwrap();
    let before = w.stats().bytes;
    for i in 0..1000 {
        w.write_frame(&frame(i)).unwrap();
    }
    assert_eq!(w.stats().bytes - before, 32 * 1000);
    w.finish().unwrap();
}

/// Version 2 keeps direction and the raw DLC, still in 32 bytes per classic frame; a
/// version 1 file (no such fields) still reads, every frame Rx.
#[test]
fn direction_and_raw_dlc_round_trip_and_version_1_still_reads() {
    use crate::frame::Direction;
    let d = TempDir::new("v2");
    let p = d.file("a.cmc");
    let mut tx: CanFrame = "123#1122334455667788_C".parse().unwrap();
    tx.set_direction(Direction::Tx);
    let mut rtr: CanFrame = "12345678#R8_F".parse().unwrap();
    rtr.set_direction(Direction::Tx);
    let fd: CanFrame = "123##3112233445566778899AABBCC".parse().unwrap();
    let plain: CanFrame = "7FF#0102".parse().unwrap();
    let want = [tx, rtr, fd, plain];
    let mut w = Recorder::create(&p, small()).unwrap();
    let before = w.stats().bytes;
    w.write_frame(&tx).unwrap();
    assert_eq!(
        w.stats().bytes - before,
        32,
        "a raw-DLC frame is still 32 bytes"
    );
    for f in &want[1..] {
        w.write_frame(f).unwrap();
    }
    w.finish().unwrap();
    let r = Recording::open(&p).unwrap();
    let got = frames(&r);
    assert_eq!(got, want);
    assert_eq!(got[0].raw_dlc, 0xC);
    assert_eq!(got[0].direction(), Direction::Tx);
    assert_eq!(got[2].direction(), Direction::Rx);
    drop(r);

    // The same bytes as a version 1 file (plain frames only: v1 had neither field).
    let p1 = d.file("v1.cmc");
    let mut w = Recorder::create(&p1, small()).unwrap();
    w.write_frame(&fd).unwrap();
    w.write_frame(&plain).unwrap();
    w.finish().unwrap();
    let mut bytes = std::fs::read(&p1).unwrap();
    bytes[8..10].copy_from_slice(&1u16.to_le_bytes());
    let crc = format::commit_word(format::crc32c(&bytes[..format::HEADER_CRC_AT]));
    bytes[format::HEADER_CRC_AT..format::HEADER_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&p1, &bytes).unwrap();
    let r = Recording::open(&p1).unwrap();
    assert_eq!(frames(&r), [fd, plain]);
    drop(r);
    bytes[8..10].copy_from_slice(&4u16.to_le_bytes());
    let crc = format::commit_word(format::crc32c(&bytes[..format::HEADER_CRC_AT]));
    bytes[format::HEADER_CRC_AT..format::HEADER_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&p1, &bytes).unwrap();
    let e = Recording::open(&p1).err().unwrap();
    assert!(
        matches!(e, RecordError::UnsupportedVersion { version: 4, .. }),
        "{e}"
    );
}

#[test]
fn rotates_and_reads_across_segments() {
    let d = TempDir::new("rotate");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, small()).unwrap();
    let n = 30_000;
    for i in 0..n {
        w.write_frame(&frame(i)).unwrap();
        if i % 1000 == 999 {
            w.write_loss(v4(1), i, 1_000 + i * 10).unwrap();
        }
    }
    let st = w.finish().unwrap();
    assert!(st.segments >= 4, "{st:?}");
    assert!(segment_path(&p, st.segments - 1).exists());
    assert!(!segment_path(&p, st.segments).exists());
    // Closed segments are truncated to their used length.
    let len = std::fs::metadata(segment_path(&p, 0)).unwrap().len();
    assert!(len <= 256 * 1024 && len > 200 * 1024, "{len}");

    let r = Recording::open(&p).unwrap();
    assert_eq!(r.segments(), st.segments);
    let got = frames(&r);
    assert_eq!(got.len() as u64, n);
    for (i, f) in got.iter().enumerate() {
        assert_eq!(*f, frame(i as u64));
    }
    assert_eq!(r.stats().loss_records, 30);

    // Each segment reads alone: its tables are its own.
    let alone = d.file("alone.cmc");
    std::fs::copy(segment_path(&p, 2), &alone).unwrap();
    let seg2 = frames(&Recording::open(&alone).unwrap());
    assert!(seg2.len() > 5000);
    let first = u64::from_le_bytes(seg2[0].data[..8].try_into().unwrap());
    assert!(first > 5000);
    for (k, f) in seg2.iter().enumerate() {
        assert_eq!(*f, frame(first + k as u64));
    }
    // Opening `a.cmc.2` reads segment 2 and everything after it.
    let from2 = frames(&Recording::open(segment_path(&p, 2)).unwrap());
    assert_eq!(from2.len() as u64, n - first);
}

#[test]
fn seek_is_exact_and_monotone() {
    let d = TempDir::new("seek");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, small()).unwrap();
    let n = 40_000u64;
    for i in 0..n {
        w.write_frame(&frame(i)).unwrap();
    }
    w.finish().unwrap();
    let r = Recording::open(&p).unwrap();
    for t in [
        0,
        999,
        1000,
        1001,
        1005,
        50_000,
        123_456,
        1_000 + (n - 1) * 10,
    ] {
        let first = r.seek(t).next().map(|x| x.timestamp_ns());
        let want = (0..n).map(|i| 1_000 + i * 10).find(|&x| x >= t);
        assert_eq!(first, want, "seek {t}");
    }
    assert!(r.seek(u64::MAX).next().is_none());
    let mut it = r.iter();
    it.seek(200_000);
    assert_eq!(it.count() as u64, n - (200_000 - 1_000) / 10);
}

#[test]
fn seek_handles_unordered_timestamps() {
    let d = TempDir::new("seek-unordered");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, small()).unwrap();
    let ts = |i: u64| (i * 7919) % 100_000;
    for i in 0..20_000 {
        let mut f = frame(i);
        f.timestamp_ns = ts(i);
        w.write_frame(&f).unwrap();
    }
    w.finish().unwrap();
    let r = Recording::open(&p).unwrap();
    for t in [0, 1, 50_000, 99_999, 77_777] {
        let first = r.seek(t).next().map(|x| x.timestamp_ns());
        let want = (0..20_000).map(ts).find(|&x| x >= t);
        assert_eq!(first, want, "seek {t}");
    }
}

#[test]
fn table_overflow_starts_a_new_segment() {
    let d = TempDir::new("tables");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, small()).unwrap();
    let mut sent = Vec::new();
    for i in 0..40u64 {
        let mut f = frame(i);
        f.sender = v4(i as u16); // 40 senders, 8 per segment
        f.channel = Channel::int(i as i64 % 6); // 6 channels, 4 per segment
        w.write_frame(&f).unwrap();
        w.write_loss(v4(i as u16 + 1000), 1, f.timestamp_ns)
            .unwrap();
        sent.push(f);
    }
    let st = w.finish().unwrap();
    assert!(st.segments >= 10, "{st:?}");
    let r = Recording::open(&p).unwrap();
    assert_eq!(frames(&r), sent);
    let losses: Vec<SenderAddr> = r
        .iter()
        .filter_map(|x| match x {
            Record::Loss { sender, .. } => Some(sender),
            _ => None,
        })
        .collect();
    assert_eq!(losses, (0..40).map(|i| v4(i + 1000)).collect::<Vec<_>>());
}

/// A writer that vanishes without closing (as after kill -9): the mapping's stores are
/// in the page cache, the header has no end, the file keeps its preallocated length.
fn crash(w: Recorder) {
    std::mem::forget(w);
}

#[test]
fn unfinished_recording_opens_and_yields_everything_committed() {
    let d = TempDir::new("crash");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, small()).unwrap();
    for i in 0..20_000 {
        w.write_frame(&frame(i)).unwrap();
    }
    let segs = w.stats().segments;
    crash(w);
    let r = Recording::open(&p).unwrap();
    assert!(!r.is_finished());
    assert_eq!(r.segments(), segs);
    let got = frames(&r);
    assert_eq!(got.len(), 20_000);
    assert!(got.iter().enumerate().all(|(i, f)| *f == frame(i as u64)));
    let mut it = r.iter();
    it.by_ref().count();
    assert_eq!(it.end(), Some(&End::Unfinished));
    // Seek works on the unfinished segment too.
    assert_eq!(
        r.seek(1_000 + 19_990 * 10).next().map(|x| x.timestamp_ns()),
        Some(1_000 + 19_990 * 10)
    );
}

#[test]
fn uncommitted_record_is_never_yielded() {
    let d = TempDir::new("torn");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, small()).unwrap();
    for i in 0..10 {
        w.write_frame(&frame(i)).unwrap();
    }
    crash(w);
    // Simulate the kill between body and commit of record 9: clear its commit word.
    let mut bytes = std::fs::read(&p).unwrap();
    let ds = format::data_start(4, 8) + format::BLOCK_REC;
    let at = ds + 9 * 32;
    assert_ne!(&bytes[at..at + 4], &[0; 4]);
    bytes[at..at + 4].fill(0);
    std::fs::write(&p, &bytes).unwrap();
    let r = Recording::open(&p).unwrap();
    assert_eq!(frames(&r), (0..9).map(frame).collect::<Vec<_>>());
    // And a flipped payload byte in record 5 stops before it.
    bytes[ds + 5 * 32 + 26] ^= 1;
    std::fs::write(&p, &bytes).unwrap();
    let r = Recording::open(&p).unwrap();
    assert_eq!(frames(&r), (0..5).map(frame).collect::<Vec<_>>());
    let mut it = r.iter();
    it.by_ref().count();
    assert!(matches!(
        it.end(),
        Some(End::Corrupt {
            reason: Corruption::BadChecksum,
            ..
        })
    ));
}

#[test]
fn empty_and_half_created_files_open_as_empty() {
    let d = TempDir::new("empty");
    let p = d.file("a.cmc");
    std::fs::write(&p, b"").unwrap();
    assert_eq!(Recording::open(&p).unwrap().iter().count(), 0);
    std::fs::write(&p, vec![0u8; 100_000]).unwrap();
    assert_eq!(Recording::open(&p).unwrap().iter().count(), 0);
    // Header written, not committed.
    let w = Recorder::create(&p, small()).unwrap();
    crash(w);
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[format::HEADER_CRC_AT..format::HEADER_CRC_AT + 4].fill(0);
    std::fs::write(&p, &bytes).unwrap();
    let r = Recording::open(&p).unwrap();
    assert_eq!(r.iter().count(), 0);
    assert_eq!(r.segments(), 0);
    // A recording with no frames finishes cleanly.
    Recorder::create(&p, small()).unwrap().finish().unwrap();
    let r = Recording::open(&p).unwrap();
    assert!(r.is_finished());
    assert_eq!(r.stats().frames, 0);
}

#[test]
fn open_errors_name_the_problem_and_file() {
    let d = TempDir::new("errors");
    let p = d.file("a.cmc");
    std::fs::write(&p, b"(1.0) vcan0 123#00\n").unwrap();
    let e = Recording::open(&p).err().unwrap();
    assert!(matches!(e, RecordError::NotARecording { .. }), "{e}");
    assert!(e.to_string().contains("a.cmc"));

    Recorder::create(&p, small()).unwrap().finish().unwrap();
    let mut bytes = std::fs::read(&p).unwrap();
    bytes[20] ^= 0xFF; // recording id, covered by the header checksum
    std::fs::write(&p, &bytes).unwrap();
    let e = Recording::open(&p).err().unwrap();
    assert!(matches!(e, RecordError::CorruptHeader { .. }), "{e}");
    assert!(e.to_string().contains("checksum"), "{e}");

    let e = Recording::open(d.file("missing.cmc")).err().unwrap();
    assert!(e.to_string().contains("missing.cmc"), "{e}");

    std::fs::write(&p, &format::MAGIC[..5]).unwrap();
    assert!(matches!(
        Recording::open(&p),
        Err(RecordError::CorruptHeader { .. })
    ));
}

#[test]
fn writer_rejects_bad_options_and_frames() {
    let d = TempDir::new("opts");
    let p = d.file("a.cmc");
    for o in [
        RecorderOptions {
            segment_size: 1000,
            ..small()
        },
        RecorderOptions {
            segment_size: 256 * 1024 + 4,
            ..small()
        },
        RecorderOptions {
            max_channels: 0,
            ..small()
        },
        RecorderOptions {
            max_senders: 0,
            ..small()
        },
        RecorderOptions {
            max_channels: 257,
            ..small()
        },
    ] {
        let e = Recorder::create(&p, o).err().unwrap();
        assert!(matches!(e, RecordError::InvalidOptions(_)), "{e}");
    }
    let mut w = Recorder::create(&p, small()).unwrap();
    let mut f = frame(1);
    f.len = 65;
    assert!(matches!(
        w.write_frame(&f),
        Err(RecordError::InvalidFrame { len: 65 })
    ));
    w.write_frame(&frame(2)).unwrap();
    w.finish().unwrap();
    assert_eq!(frames(&Recording::open(&p).unwrap()), vec![frame(2)]);

    let e = Recorder::create(d.file("no/such/dir/a.cmc"), small())
        .err()
        .unwrap();
    assert!(e.to_string().contains("no/such/dir/a.cmc"), "{e}");
}

#[test]
fn create_replaces_an_older_recording_and_its_segments() {
    let d = TempDir::new("replace");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, small()).unwrap();
    for i in 0..30_000 {
        w.write_frame(&frame(i)).unwrap();
    }
    assert!(w.finish().unwrap().segments > 2);
    let mut w = Recorder::create(&p, small()).unwrap();
    w.write_frame(&frame(7)).unwrap();
    w.finish().unwrap();
    assert!(!segment_path(&p, 1).exists());
    assert_eq!(frames(&Recording::open(&p).unwrap()), vec![frame(7)]);
}

#[test]
fn stale_segment_of_another_recording_is_not_read() {
    let d = TempDir::new("stale");
    let (a, b) = (d.file("a.cmc"), d.file("b.cmc"));
    let mut w = Recorder::create(&a, small()).unwrap();
    for i in 0..30_000 {
        w.write_frame(&frame(i)).unwrap();
    }
    w.finish().unwrap();
    let mut w = Recorder::create(&b, small()).unwrap();
    w.write_frame(&frame(1)).unwrap();
    w.finish().unwrap();
    std::fs::copy(segment_path(&a, 1), segment_path(&b, 1)).unwrap();
    let r = Recording::open(&b).unwrap();
    assert_eq!(frames(&r), vec![frame(1)]);
    assert!(r.ignored_segment().unwrap().contains("another recording"));
}

#[test]
fn drop_closes_like_finish_and_flush_works() {
    let d = TempDir::new("drop");
    let p = d.file("a.cmc");
    {
        let mut w = Recorder::create(
            &p,
            RecorderOptions {
                sync: SyncPolicy::EveryBytes(4096),
                ..small()
            },
        )
        .unwrap();
        for i in 0..1000 {
            w.write_frame(&frame(i)).unwrap();
        }
        w.flush().unwrap();
        assert_eq!(w.current_path(), Path::new(&p));
    }
    let r = Recording::open(&p).unwrap();
    assert!(r.is_finished());
    assert_eq!(frames(&r).len(), 1000);
}

#[test]
fn truncation_at_every_length_never_panics_and_yields_a_prefix() {
    let d = TempDir::new("trunc");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, small()).unwrap();
    for i in 0..40 {
        w.write_frame(&frame(i)).unwrap();
    }
    w.finish().unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let t = d.file("t.cmc");
    let ds = format::data_start(4, 8);
    for len in (0..ds + 64).chain(ds..bytes.len()) {
        std::fs::write(&t, &bytes[..len]).unwrap();
        if let Ok(r) = Recording::open(&t) {
            let got = frames(&r);
            assert!(got.iter().enumerate().all(|(i, f)| *f == frame(i as u64)));
            if len >= ds + 24 {
                assert_eq!(got.len(), (len - ds - 24) / 32, "len {len}");
            }
        }
    }
}

#[test]
fn repair_makes_the_in_memory_repair_permanent() {
    let d = TempDir::new("repair");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, small()).unwrap();
    for i in 0..20_000 {
        w.write_frame(&frame(i)).unwrap();
    }
    let segs = w.stats().segments;
    crash(w);
    let last = segment_path(&p, segs - 1);
    assert_eq!(std::fs::metadata(&last).unwrap().len(), 256 * 1024);
    // A half-created next segment, as a kill during rotation leaves it.
    std::fs::write(segment_path(&p, segs), vec![0u8; 4096]).unwrap();
    assert!(!Recording::open(&p).unwrap().is_finished());

    assert_eq!(Recording::repair(&p).unwrap(), End::Unfinished);
    assert!(!segment_path(&p, segs).exists());
    assert!(std::fs::metadata(&last).unwrap().len() < 256 * 1024);
    let r = Recording::open(&p).unwrap();
    assert!(r.is_finished());
    assert_eq!(frames(&r), (0..20_000).map(frame).collect::<Vec<_>>());
    // Idempotent.
    assert_eq!(Recording::repair(&p).unwrap(), End::Finished);
    assert_eq!(frames(&Recording::open(&p).unwrap()).len(), 20_000);
}

#[test]
fn every_sync_policy_rotates_and_reads_back() {
    let d = TempDir::new("sync");
    for (k, sync) in [
        SyncPolicy::Never,
        SyncPolicy::OnFinish,
        SyncPolicy::OnClose,
        SyncPolicy::EveryBytes(64 * 1024),
    ]
    .into_iter()
    .enumerate()
    {
        let p = d.file(&format!("s{k}.cmc"));
        let mut w = Recorder::create(&p, RecorderOptions { sync, ..small() }).unwrap();
        for i in 0..20_000 {
            w.write_frame(&frame(i)).unwrap();
        }
        assert!(w.finish().unwrap().segments > 2);
        let r = Recording::open(&p).unwrap();
        assert!(r.is_finished(), "{sync:?}");
        assert_eq!(frames(&r).len(), 20_000, "{sync:?}");
    }
}

/// The records of `testdata/v2.cmc`, written by the version 2 recorder (commit 2c24a35).
fn v2_fixture_records() -> Vec<(u8, CanFrame, u64, u64)> {
    use crate::frame::Direction;
    let mut out = Vec::new();
    for i in 0..40u64 {
        out.push((1, frame(i), 0, 0));
        if i == 10 {
            out.push((2, CanFrame::EMPTY, 7, 1_105));
        }
        if i == 20 {
            out.push((3, CanFrame::EMPTY, 3, 1_205));
        }
    }
    let mut tx: CanFrame = "123#1122334455667788_C".parse().unwrap();
    tx.set_direction(Direction::Tx);
    tx.timestamp_ns = 2_000;
    let mut rtr: CanFrame = "12345678#R8_F".parse().unwrap();
    rtr.timestamp_ns = 2_001;
    let mut fd: CanFrame = "123##3112233445566778899AABBCC".parse().unwrap();
    fd.timestamp_ns = 2_002;
    fd.channel = Channel::str("vcan0").unwrap();
    for f in [tx, rtr, fd] {
        out.push((1, f, 0, 0));
    }
    out
}

#[test]
fn a_version_2_recording_still_reads_identically() {
    let d = TempDir::new("v2fixture");
    let p = d.file("v2.cmc");
    std::fs::write(&p, include_bytes!("testdata/v2.cmc")).unwrap();
    std::fs::write(segment_path(&p, 1), include_bytes!("testdata/v2.cmc.1")).unwrap();
    let r = Recording::open(&p).unwrap();
    assert!(r.is_finished());
    assert_eq!(r.segments(), 2);
    let want: Vec<Rec> = v2_fixture_records()
        .into_iter()
        .map(|(k, f, a, t)| match k {
            1 => Rec::Frame(f),
            2 => Rec::Loss(v4(5001), a, t),
            _ => Rec::Drops(a, t),
        })
        .collect();
    assert_eq!(all(&r), want);
    let st = r.stats();
    assert_eq!(st.frames, 43);
    assert_eq!((st.loss_records, st.lost), (1, 7));
    assert_eq!(st.end, End::Finished);
    assert_eq!(
        r.seek(1_000 + 25 * 10).next().map(|x| x.timestamp_ns()),
        Some(1_250)
    );
}

// ---- frame batch records (version 3) ----

use crate::wire::native::{Encoder, FrameBatch};
use format::kind;

/// Options for the batch tests: room for the 5 channels and 5 senders they use.
fn bopts(segment_size: u64) -> RecorderOptions {
    RecorderOptions {
        segment_size,
        max_channels: 8,
        max_senders: 16,
        ..RecorderOptions::default()
    }
}

/// Where block 0 starts with [`bopts`].
const BDS: usize = format::data_start(8, 16);

/// One record of any kind, owned, for comparisons.
#[derive(Debug, Clone, Copy, PartialEq)]
enum Rec {
    Frame(CanFrame),
    Loss(SenderAddr, u64, u64),
    Drops(u64, u64),
}

fn all(r: &Recording) -> Vec<Rec> {
    let mut it = r.iter();
    collect(&mut it)
}

fn collect(it: &mut Records<'_>) -> Vec<Rec> {
    it.map(|x| match x {
        Record::Frame(f) => Rec::Frame(f.to_frame()),
        Record::Loss {
            sender,
            lost,
            timestamp_ns,
        } => Rec::Loss(sender, lost, timestamp_ns),
        Record::KernelDrops {
            count,
            timestamp_ns,
        } => Rec::Drops(count, timestamp_ns),
    })
    .collect()
}

/// A native frames datagram of `n` frames (classic 8-byte mostly; FD, remote, extended
/// and empty ones mixed in) on `ch`, base time `base`, frame k at `base + delta(k)`.
fn datagram(ch: Channel, base: u64, n: usize, seed: u64, delta: impl Fn(u64) -> u64) -> Vec<u8> {
    let mut buf = vec![0u8; 65507];
    let mut enc = Encoder::new(7, buf.len());
    enc.begin(&mut buf, seed, ch, base);
    for k in 0..n as u64 {
        let i = seed.wrapping_mul(131).wrapping_add(k);
        let mut f = match i % 23 {
            0 => CanFrame::new(
                0x1ABC_DE00 | (i as u32 & 0xFF),
                flags::EXTENDED | flags::FD | flags::BRS,
                &[i as u8; 64],
            )
            .unwrap(),
            1 => CanFrame::remote((i % 0x800) as u32, false, 4).unwrap(),
            2 => CanFrame::new(0x7FF, 0, &[]).unwrap(),
            3 => CanFrame::new(0x100, flags::FD, &[0xA5; 12]).unwrap(),
            _ => CanFrame::new((i % 0x800) as u32, 0, &i.to_le_bytes()).unwrap(),
        };
        f.timestamp_ns = base + delta(k);
        f.channel = ch;
        assert!(enc.push(&mut buf, &f), "frame {k} fits");
    }
    let len = enc.finish(&mut buf);
    buf.truncate(len);
    buf
}

/// The frames a reader must yield for `dgram` recorded from `sender`.
fn batch_frames(dgram: &[u8], sender: SenderAddr) -> Vec<Rec> {
    let b = FrameBatch::check(dgram).unwrap().unwrap();
    b.frames()
        .map(|mut f| {
            f.sender = sender;
            Rec::Frame(f)
        })
        .collect()
}

/// (offset, kind, size) of every record of a segment image, by walking the sizes.
fn raw_records(bytes: &[u8], ds: usize) -> Vec<(usize, u8, usize)> {
    let mut out = Vec::new();
    let mut off = ds;
    while off + 8 <= bytes.len() {
        let size = u16::from_le_bytes([bytes[off + 4], bytes[off + 5]]) as usize;
        if size == 0 || u32::from_le_bytes(bytes[off..off + 4].try_into().unwrap()) == 0 {
            break;
        }
        out.push((off, bytes[off + 6], size));
        off += size;
    }
    out
}

/// Writes a recording of batches (69 classic frames each, as a full 1452-byte datagram
/// holds, with the other kinds of frame mixed in) interleaved with frame, loss and drop
/// records. Returns what a reader must yield.
fn write_mixed(w: &mut Recorder, batches: u64) -> Vec<Rec> {
    let chans = [
        Channel::int(1),
        Channel::str("vcan0").unwrap(),
        Channel::NONE,
    ];
    let mut want = Vec::new();
    let mut t = 1_000_000u64;
    for i in 0..batches {
        let sender = v4(6000 + (i % 3) as u16);
        let d = datagram(chans[(i % 3) as usize], t, 60, i, |k| k * 100);
        let b = FrameBatch::check(&d).unwrap().unwrap();
        w.write_batch(&b, &sender).unwrap();
        want.extend(batch_frames(&d, sender));
        t += 60 * 100;
        match i % 7 {
            0 => {
                let mut f = frame(i);
                f.timestamp_ns = t;
                w.write_frame(&f).unwrap();
                want.push(Rec::Frame(f));
            }
            3 => {
                w.write_loss(sender, i + 1, t).unwrap();
                want.push(Rec::Loss(sender, i + 1, t));
            }
            5 => {
                w.write_kernel_drops(i, t).unwrap();
                want.push(Rec::Drops(i, t));
            }
            _ => {}
        }
        t += 100;
    }
    want
}

fn frame_count(v: &[Rec]) -> u64 {
    v.iter().filter(|r| matches!(r, Rec::Frame(_))).count() as u64
}

#[test]
fn batches_round_trip_mixed_with_other_records() {
    let d = TempDir::new("batch");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, bopts(256 << 10)).unwrap();
    let want = write_mixed(&mut w, 600);
    let ws = w.stats();
    assert_eq!(ws.frames, frame_count(&want));
    let stats = w.finish().unwrap();
    assert!(stats.segments >= 3, "rotation included: {stats:?}");
    let r = Recording::open(&p).unwrap();
    assert!(r.is_finished());
    let got = all(&r);
    assert_eq!(got.len(), want.len());
    assert_eq!(got, want);
    let st = r.stats();
    assert_eq!(st.frames, frame_count(&want));
    assert_eq!(st.end, End::Finished);
    // Every batch frame is received and has its recorded sender.
    assert!(r.iter().all(|x| match x {
        Record::Frame(f) => f.direction() == crate::frame::Direction::Rx,
        _ => true,
    }));
    // The header says version 3.
    let bytes = std::fs::read(&p).unwrap();
    assert_eq!(u16::from_le_bytes([bytes[8], bytes[9]]), 3);
}

#[test]
fn a_batch_that_does_not_fit_a_block_is_split_at_a_record_boundary() {
    let d = TempDir::new("split");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, bopts(4 << 20)).unwrap();
    let want = write_mixed(&mut w, 1200);
    let bytes_used = w.stats().bytes;
    w.finish().unwrap();
    let r = Recording::open(&p).unwrap();
    assert_eq!(all(&r), want);
    let bytes = std::fs::read(&p).unwrap();
    let ds = BDS;
    let recs = raw_records(&bytes, ds);
    let mut splits = 0;
    for b in 1..(bytes.len() - ds) / format::BLOCK_SIZE {
        let boundary = ds + b * format::BLOCK_SIZE;
        let i = recs.iter().position(|r| r.0 == boundary).unwrap();
        assert_eq!(recs[i].1, kind::BLOCK);
        let (before, after) = (recs[i - 1], recs[i + 1]);
        if before.1 == kind::BATCH && after.1 == kind::BATCH {
            // Same datagram: same base time, sender and channel, and the first part
            // ends exactly at the boundary or as close as a record allows.
            let base = |at: usize| &bytes[at + 8..at + 16];
            let slots = |at: usize| &bytes[at + 24..at + 27];
            if base(before.0) == base(after.0) && slots(before.0) == slots(after.0) {
                splits += 1;
                assert!(boundary - (before.0 + before.2) < format::BATCH_HEAD + 76);
            }
        }
    }
    assert!(splits >= 3, "{splits} splits over {} blocks", recs.len());
    // Splitting leaves hardly any pad: under 1% of the file.
    let pad: usize = recs.iter().filter(|r| r.1 == kind::PAD).map(|r| r.2).sum();
    assert!(pad * 100 < bytes_used as usize, "{pad} pad bytes");
    // Seeking to the first frame of a second part lands there.
    let part2 = recs
        .iter()
        .zip(recs.iter().skip(2))
        .find(|(a, b)| {
            a.1 == kind::BATCH
                && b.1 == kind::BATCH
                && a.0 + a.2 + format::BLOCK_REC == b.0
                && bytes[a.0 + 8..a.0 + 16] == bytes[b.0 + 8..b.0 + 16]
        })
        .map(|(_, b)| b.0)
        .unwrap();
    let base = u64::from_le_bytes(bytes[part2 + 8..part2 + 16].try_into().unwrap());
    let delta = u32::from_le_bytes(bytes[part2 + 36..part2 + 40].try_into().unwrap());
    let t = base + delta as u64;
    let mut it = r.seek(t);
    let got = collect(&mut it);
    let from = want
        .iter()
        .position(|x| matches!(x, Rec::Frame(f) if f.timestamp_ns == t))
        .unwrap();
    assert_eq!(got, want[from..]);
}

#[test]
fn seek_lands_inside_a_batch() {
    let d = TempDir::new("bseek");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, bopts(256 << 10)).unwrap();
    let want = write_mixed(&mut w, 200);
    w.finish().unwrap();
    let r = Recording::open(&p).unwrap();
    let ts = |x: &Rec| match *x {
        Rec::Frame(f) => f.timestamp_ns,
        Rec::Loss(_, _, t) | Rec::Drops(_, t) => t,
    };
    // Exact frame times (the middle of batches), times between frames, and the ends.
    let mut times: Vec<u64> = want.iter().step_by(37).map(ts).collect();
    times.extend(want.iter().step_by(41).map(|x| ts(x) + 1));
    times.extend([0, ts(&want[0]), ts(want.last().unwrap()) + 1]);
    for t in times {
        let from = want.iter().position(|x| ts(x) >= t).unwrap_or(want.len());
        let mut it = r.seek(t);
        assert_eq!(collect(&mut it), want[from..], "seek({t})");
    }
    // Unordered deltas inside one batch: seek yields from the first frame at or after t.
    let p2 = d.file("b.cmc");
    let mut w = Recorder::create(&p2, bopts(256 << 10)).unwrap();
    let dg = datagram(Channel::NONE, 5_000, 30, 1, |k| (k * 37) % 30 * 10);
    w.write_batch(&FrameBatch::check(&dg).unwrap().unwrap(), &v4(1))
        .unwrap();
    w.finish().unwrap();
    let want = batch_frames(&dg, v4(1));
    let r = Recording::open(&p2).unwrap();
    for t in [5_000, 5_005, 5_150, 5_290, 5_291] {
        let from = want.iter().position(|x| ts(x) >= t).unwrap_or(want.len());
        let mut it = r.seek(t);
        assert_eq!(collect(&mut it), want[from..], "seek({t})");
    }
}

#[test]
fn a_killed_batch_writer_leaves_whole_batches() {
    let d = TempDir::new("bcrash");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, bopts(256 << 10)).unwrap();
    let want = write_mixed(&mut w, 400);
    let segs = w.stats().segments;
    crash(w);
    let r = Recording::open(&p).unwrap();
    assert!(!r.is_finished());
    assert_eq!(all(&r), want);
    let mut it = r.iter();
    it.by_ref().count();
    assert_eq!(it.end(), Some(&End::Unfinished));
    drop(r);

    // The last batch record's commit word never stored (killed while copying it): the
    // reader stops before that record and yields no frame of it.
    let last = segment_path(&p, segs - 1);
    let mut bytes = std::fs::read(&last).unwrap();
    let ds = BDS;
    let recs = raw_records(&bytes, ds);
    let (at, k, _) = *recs.iter().rev().find(|r| r.1 == kind::BATCH).unwrap();
    assert_eq!(k, kind::BATCH);
    let count = u16::from_le_bytes([bytes[at + 28], bytes[at + 29]]) as usize;
    // Records after it (a frame, a loss) are not yielded either.
    let after: usize = recs
        .iter()
        .filter(|r| r.0 > at && r.1 == kind::FRAME)
        .count();
    let others = recs
        .iter()
        .filter(|r| r.0 > at && (r.1 == kind::LOSS || r.1 == kind::KERNEL_DROPS))
        .count();
    bytes[at..at + 4].fill(0);
    std::fs::write(&last, &bytes).unwrap();
    let r = Recording::open(&p).unwrap();
    let got = all(&r);
    assert_eq!(got[..], want[..want.len() - count - after - others]);
    drop(r);

    // Truncated anywhere (a copy cut short): a prefix made of whole batch records.
    let mut w = Recorder::create(&p, bopts(256 << 10)).unwrap();
    let want = write_mixed(&mut w, 30);
    w.finish().unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let recs = raw_records(&bytes, ds);
    // Frames yielded when the file ends right after record i.
    let mut whole = vec![0usize];
    for r in &recs {
        let n = match r.1 {
            kind::BATCH => u16::from_le_bytes([bytes[r.0 + 28], bytes[r.0 + 29]]) as usize,
            kind::FRAME | kind::LOSS | kind::KERNEL_DROPS => 1,
            _ => 0,
        };
        whole.push(whole.last().unwrap() + n);
    }
    let t = d.file("t.cmc");
    for len in (ds..bytes.len()).step_by(13) {
        std::fs::write(&t, &bytes[..len]).unwrap();
        let r = Recording::open(&t).unwrap();
        let got = all(&r);
        assert!(want.starts_with(&got), "len {len}");
        let complete = recs.iter().take_while(|r| r.0 + r.2 <= len).count();
        assert_eq!(got.len(), whole[complete], "len {len}");
    }
}

#[test]
fn a_damaged_batch_ends_the_readable_part_before_it() {
    let d = TempDir::new("bflip");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, bopts(256 << 10)).unwrap();
    let want = write_mixed(&mut w, 20);
    w.finish().unwrap();
    let clean = std::fs::read(&p).unwrap();
    let ds = BDS;
    let recs = raw_records(&clean, ds);
    let batches: Vec<_> = recs.iter().filter(|r| r.1 == kind::BATCH).collect();
    let (at, _, size) = *batches[5];
    // Records before the damaged one.
    let before = |bytes: &[u8]| -> usize {
        recs.iter()
            .take_while(|r| r.0 < at)
            .map(|r| match r.1 {
                kind::BATCH => u16::from_le_bytes([bytes[r.0 + 28], bytes[r.0 + 29]]) as usize,
                kind::FRAME | kind::LOSS | kind::KERNEL_DROPS => 1,
                _ => 0,
            })
            .sum()
    };
    let n = before(&clean);
    let check = |bytes: &[u8], reason: Corruption| {
        std::fs::write(&p, bytes).unwrap();
        let r = Recording::open(&p).unwrap();
        let mut it = r.iter();
        let got = collect(&mut it);
        assert_eq!(got[..], want[..n]);
        assert_eq!(
            it.end(),
            Some(&End::Corrupt {
                segment: 0,
                offset: at as u64,
                reason
            })
        );
        assert_eq!(r.stats().frames, frame_count(&want[..n]));
    };
    // A flipped byte anywhere in it: head, fixed fields, a record's payload.
    for off in [8, 17, 30, at % 7 + 40, size - 9] {
        let mut bytes = clean.clone();
        bytes[at + off] ^= 0x10;
        check(&bytes, Corruption::BadChecksum);
    }
    // Checksum recomputed but a frame record inside is one decode would skip (unknown
    // flag bit; an identifier past 11 bits), or the counts disagree with the records.
    let reseal = |bytes: &mut Vec<u8>| {
        let c = format::record_check(&bytes[at..at + size]);
        bytes[at..at + 4].copy_from_slice(&c.to_le_bytes());
    };
    let first = at + format::BATCH_HEAD;
    for (off, val) in [
        (first + 8, 0x80u8),
        (first + 1, 0x08),
        (at + 28, 0),
        (at + 28, 200),
        (at + 16, 0),
    ] {
        let mut bytes = clean.clone();
        bytes[off] = val;
        reseal(&mut bytes);
        check(&bytes, Corruption::Malformed);
    }
}

#[test]
fn repair_closes_a_crashed_batch_recording() {
    let d = TempDir::new("brepair");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, bopts(256 << 10)).unwrap();
    let want = write_mixed(&mut w, 300);
    crash(w);
    assert_eq!(Recording::repair(&p).unwrap(), End::Unfinished);
    let r = Recording::open(&p).unwrap();
    assert!(r.is_finished());
    assert_eq!(all(&r), want);
}

#[test]
fn block_markers_count_batch_frames() {
    let d = TempDir::new("bindex");
    let p = d.file("a.cmc");
    let mut w = Recorder::create(&p, bopts(4 << 20)).unwrap();
    let want = write_mixed(&mut w, 1200);
    w.finish().unwrap();
    let bytes = std::fs::read(&p).unwrap();
    let ds = BDS;
    let recs = raw_records(&bytes, ds);
    let mut frames_so_far = 0u64;
    let mut max_ts = 0u64;
    let mut blocks = 0;
    let u64_at = |at: usize| u64::from_le_bytes(bytes[at..at + 8].try_into().unwrap());
    let mut i = 0;
    for r in &recs {
        match r.1 {
            kind::BLOCK => {
                assert_eq!(u64_at(r.0 + 16), frames_so_far, "block at {}", r.0);
                assert_eq!(u64_at(r.0 + 8), max_ts, "block at {}", r.0);
                blocks += 1;
            }
            kind::BATCH => {
                let n = u16::from_le_bytes([bytes[r.0 + 28], bytes[r.0 + 29]]) as u64;
                frames_so_far += n;
                max_ts = max_ts.max(u64_at(r.0 + 16));
                i += n as usize;
            }
            kind::FRAME | kind::LOSS | kind::KERNEL_DROPS => {
                if r.1 == kind::FRAME {
                    frames_so_far += 1;
                }
                max_ts = max_ts.max(u64_at(r.0 + 8));
                i += 1;
            }
            _ => {}
        }
    }
    assert_eq!(i, want.len());
    assert!(blocks > 10);
}

#[test]
fn small_datagrams_never_cost_more_than_32_bytes_per_classic_frame() {
    let d = TempDir::new("bsmall");
    let p = d.file("a.cmc");
    for n in 1..=69usize {
        let mut w = Recorder::create(&p, bopts(256 << 10)).unwrap();
        let before = w.stats().bytes;
        let mut buf = vec![0u8; 1452];
        let mut enc = Encoder::new(1, buf.len());
        enc.begin(&mut buf, 0, Channel::int(2), 10_000);
        for k in 0..n as u64 {
            let mut f = CanFrame::new(0x123, 0, &k.to_le_bytes()).unwrap();
            f.timestamp_ns = 10_000 + k;
            f.channel = Channel::int(2);
            assert!(enc.push(&mut buf, &f));
        }
        let len = enc.finish(&mut buf);
        let b = FrameBatch::check(&buf[..len]).unwrap().unwrap();
        w.write_batch(&b, &v4(9)).unwrap();
        let used = (w.stats().bytes - before) as usize;
        assert!(used <= 32 * n, "{n} frames took {used} bytes");
        w.finish().unwrap();
        let r = Recording::open(&p).unwrap();
        assert_eq!(all(&r), batch_frames(&buf[..len], v4(9)), "{n} frames");
        let bytes = std::fs::read(&p).unwrap();
        let kinds: Vec<u8> = raw_records(&bytes, BDS).iter().map(|r| r.1).collect();
        let want_kind = if n < format::MIN_BATCH {
            kind::FRAME
        } else {
            kind::BATCH
        };
        assert_eq!(kinds[1], want_kind, "{n} frames: {kinds:?}");
    }
}
