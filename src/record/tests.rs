//! Unit tests: each record type, rotation, seek, crash prefixes, corruption, errors.

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
    bytes[8..10].copy_from_slice(&3u16.to_le_bytes());
    let crc = format::commit_word(format::crc32c(&bytes[..format::HEADER_CRC_AT]));
    bytes[format::HEADER_CRC_AT..format::HEADER_CRC_AT + 4].copy_from_slice(&crc.to_le_bytes());
    std::fs::write(&p1, &bytes).unwrap();
    let e = Recording::open(&p1).err().unwrap();
    assert!(
        matches!(e, RecordError::UnsupportedVersion { version: 3, .. }),
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
