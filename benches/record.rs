//! `.cmc` recorder and reader speed, against a plain memcpy of 32-byte records into a
//! Vec measured in the same run. `cargo bench --bench record` (< 10 s).
//!
//! Files go to /dev/shm when it exists, so this measures the CPU cost of the format,
//! not the disk.
//!
//! Second table: the same native datagrams (69 classic 8-byte frames each, a full
//! 1452-byte datagram) recorded frame by frame (`decode` + `write_frame` per frame, what
//! `canmc record` does through the engine) and as batch records (`FrameBatch::check` +
//! `write_batch`), and read back; best of 3 interleaved rounds, ratios in the same run.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use canmc::record::{segment_path, Record, Recorder, RecorderOptions, Recording};
use canmc::wire::native::{self, Encoder, FrameBatch};
use canmc::{CanFrame, Channel, SenderAddr};

const N: u64 = 1_000_000;

fn frames() -> Vec<CanFrame> {
    let senders: Vec<SenderAddr> = ["127.0.0.1:4000", "127.0.0.2:4000", "[ff15::1]:4000"]
        .iter()
        .map(|s| SenderAddr::from(s.parse::<SocketAddr>().unwrap()))
        .collect();
    (0..4096u64)
        .map(|i| {
            let mut f = CanFrame::new((i % 0x800) as u32, 0, &i.to_le_bytes()).unwrap();
            f.channel = if i % 2 == 0 {
                Channel::int(0)
            } else {
                Channel::str("vcan1").unwrap()
            };
            f.sender = senders[(i % 3) as usize];
            f
        })
        .collect()
}

fn per_frame(start: Instant, n: u64) -> f64 {
    start.elapsed().as_nanos() as f64 / n as f64
}

fn main() {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        std::path::PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    }
    .join(format!("canmc-bench-record-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let path = dir.join("bench.cmc");
    let src = frames();

    // Baseline: the same 32 bytes per frame, memcpy'd into a preallocated Vec.
    let mut v: Vec<[u8; 32]> = Vec::with_capacity(N as usize);
    let t = Instant::now();
    for i in 0..N {
        let f = &src[(i & 4095) as usize];
        let mut r = [0u8; 32];
        r[0..8].copy_from_slice(&i.to_le_bytes());
        r[8..12].copy_from_slice(&f.id.to_le_bytes());
        r[12] = f.flags;
        r[13] = f.len;
        r[24..32].copy_from_slice(&f.data[..8]);
        v.push(r);
    }
    black_box(&v);
    let memcpy_ns = per_frame(t, N);
    drop(v);

    // (create + write + finish ns/frame, write-loop ns/frame, finish ms, stats)
    let run = |prefault: bool| {
        let opts = RecorderOptions {
            prefault,
            ..RecorderOptions::default()
        };
        let t_all = Instant::now();
        let mut rec = Recorder::create(&path, opts).unwrap();
        let t = Instant::now();
        for i in 0..N {
            let mut f = src[(i & 4095) as usize];
            f.timestamp_ns = i;
            rec.write_frame(&f).unwrap();
        }
        let write_ns = per_frame(t, N);
        let t = Instant::now();
        let stats = rec.finish().unwrap();
        let finish_ms = t.elapsed().as_secs_f64() * 1e3;
        (per_frame(t_all, N), write_ns, finish_ms, stats)
    };
    let (pre_all_ns, pre_write_ns, _, _) = run(true);
    let (write_all_ns, write_ns, finish_ms, stats) = run(false);
    let on_disk: u64 = (0..stats.segments)
        .map(|n| std::fs::metadata(segment_path(&path, n)).unwrap().len())
        .sum();

    let t = Instant::now();
    let r = Recording::open(&path).unwrap();
    let open_us = t.elapsed().as_secs_f64() * 1e6;

    let t = Instant::now();
    let mut sum = 0u64;
    for x in r.iter() {
        if let Record::Frame(f) = x {
            sum = sum.wrapping_add(f.id() as u64 ^ f.payload()[0] as u64);
        }
    }
    black_box(sum);
    let read_view_ns = per_frame(t, N);

    let t = Instant::now();
    let mut n = 0u64;
    for x in r.iter() {
        if let Record::Frame(f) = x {
            black_box(f.to_frame());
            n += 1;
        }
    }
    assert_eq!(n, N);
    let read_frame_ns = per_frame(t, N);

    let seeks = 10_000u64;
    let t = Instant::now();
    for k in 0..seeks {
        let target = (k * 7_919_993) % N;
        let got = r.seek(target).next().map(|x| x.timestamp_ns());
        assert_eq!(got, Some(target));
    }
    let seek_ns = per_frame(t, seeks);

    println!(
        "canmc .cmc recorder, {N} classic 8-byte frames, files in {}",
        dir.display()
    );
    println!("| operation | ns/frame | M frames/s | vs memcpy baseline |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, ns: f64| {
        println!(
            "| {name} | {ns:.2} | {:.1} | {:.2}x |",
            1e3 / ns,
            ns / memcpy_ns
        );
    };
    row(
        "baseline: build + memcpy 32-byte record into Vec",
        memcpy_ns,
    );
    row(
        "Recorder::write_frame (default: page faults as it goes)",
        write_ns,
    );
    row(
        "  create + write_frame + finish (msync, truncate)",
        write_all_ns,
    );
    row(
        "Recorder::write_frame, prefault: true (MAP_POPULATE)",
        pre_write_ns,
    );
    row(
        "  create (populate 64 MiB) + write_frame + finish",
        pre_all_ns,
    );
    row("Recording::iter, FrameView (id + payload)", read_view_ns);
    row(
        "Recording::iter + FrameView::to_frame (128 B)",
        read_frame_ns,
    );
    println!();
    println!(
        "bytes per frame on disk: {:.2} ({} bytes, {} segment(s), tables and index included)",
        on_disk as f64 / N as f64,
        on_disk,
        stats.segments
    );
    println!("finish (msync + truncate): {finish_ms:.2} ms; open: {open_us:.1} µs; seek(t) + first record: {seek_ns:.0} ns");
    println!();
    batches(&path);
    let _ = std::fs::remove_dir_all(&dir);
}

/// Datagrams of this many classic 8-byte frames (20-byte wire records: 56 + 69 × 20 =
/// 1436 bytes, the most a 1452-byte datagram holds).
const PER_DATAGRAM: u64 = 69;
const DATAGRAMS: u64 = 14_500;

/// Frame-by-frame vs batch recording of the same datagrams.
fn batches(path: &std::path::Path) {
    let sender = SenderAddr::from("127.0.0.1:4000".parse::<SocketAddr>().unwrap());
    let channel = Channel::str("vcan1").unwrap();
    let datagrams: Vec<Vec<u8>> = (0..DATAGRAMS)
        .map(|d| {
            let mut buf = vec![0u8; native::DEFAULT_MAX_DATAGRAM];
            let mut enc = Encoder::new(1, buf.len());
            let base = 1_000_000 + d * 100_000;
            enc.begin(&mut buf, d, channel, base);
            for k in 0..PER_DATAGRAM {
                let i = d * PER_DATAGRAM + k;
                let mut f = CanFrame::new((i % 0x800) as u32, 0, &i.to_le_bytes()).unwrap();
                f.timestamp_ns = base + k * 1_000;
                f.channel = channel;
                assert!(enc.push(&mut buf, &f));
            }
            let n = enc.finish(&mut buf);
            buf.truncate(n);
            buf
        })
        .collect();
    let n = DATAGRAMS * PER_DATAGRAM;

    // (decode/check + write ns/frame, write-only ns/frame, bytes on disk)
    let by_frame = || {
        let mut rec = Recorder::create(path, RecorderOptions::default()).unwrap();
        let t = Instant::now();
        for d in &datagrams {
            native::decode(d, &mut |f| {
                let mut f = *f;
                f.sender = sender;
                rec.write_frame(&f).unwrap();
            })
            .unwrap();
        }
        let all = per_frame(t, n);
        let stats = rec.finish().unwrap();
        assert_eq!(stats.frames, n);
        // Write only: the frames decoded beforehand.
        let mut decoded = Vec::with_capacity(n as usize);
        for d in &datagrams {
            native::decode(d, &mut |f| {
                let mut f = *f;
                f.sender = sender;
                decoded.push(f);
            })
            .unwrap();
        }
        let mut rec = Recorder::create(path, RecorderOptions::default()).unwrap();
        let t = Instant::now();
        for f in &decoded {
            rec.write_frame(f).unwrap();
        }
        let write = per_frame(t, n);
        let stats = rec.finish().unwrap();
        (all, write, on_disk(path, stats.segments))
    };
    let by_batch = || {
        let mut rec = Recorder::create(path, RecorderOptions::default()).unwrap();
        let t = Instant::now();
        for d in &datagrams {
            let b = FrameBatch::check(d).unwrap().unwrap();
            rec.write_batch(&b, &sender).unwrap();
        }
        let all = per_frame(t, n);
        let stats = rec.finish().unwrap();
        assert_eq!(stats.frames, n);
        let checked: Vec<FrameBatch<'_>> = datagrams
            .iter()
            .map(|d| FrameBatch::check(d).unwrap().unwrap())
            .collect();
        let mut rec = Recorder::create(path, RecorderOptions::default()).unwrap();
        let t = Instant::now();
        for b in &checked {
            rec.write_batch(b, &sender).unwrap();
        }
        let write = per_frame(t, n);
        let stats = rec.finish().unwrap();
        (all, write, on_disk(path, stats.segments))
    };
    // Reading: (FrameView id + payload, to_frame) ns/frame of the file just written.
    let read = || {
        let r = Recording::open(path).unwrap();
        let t = Instant::now();
        let mut sum = 0u64;
        let mut count = 0u64;
        for x in r.iter() {
            if let Record::Frame(f) = x {
                sum = sum.wrapping_add(f.id() as u64 ^ f.payload()[0] as u64);
                count += 1;
            }
        }
        black_box(sum);
        assert_eq!(count, n);
        let view = per_frame(t, n);
        let t = Instant::now();
        for x in r.iter() {
            if let Record::Frame(f) = x {
                black_box(f.to_frame());
            }
        }
        (view, per_frame(t, n))
    };
    let best = |a: (f64, f64), b: (f64, f64)| (a.0.min(b.0), a.1.min(b.1));
    let inf = (f64::INFINITY, f64::INFINITY);
    let (mut f_w, mut b_w, mut f_r, mut b_r) = (inf, inf, inf, inf);
    let (mut f_bytes, mut b_bytes) = (0, 0);
    for _ in 0..3 {
        let (all, write, bytes) = by_frame();
        f_w = best(f_w, (all, write));
        f_bytes = bytes;
        f_r = best(f_r, read());
        let (all, write, bytes) = by_batch();
        b_w = best(b_w, (all, write));
        b_bytes = bytes;
        b_r = best(b_r, read());
    }
    println!(
        "{DATAGRAMS} native datagrams of {PER_DATAGRAM} classic 8-byte frames ({n} frames), best of 3"
    );
    println!("| operation | frame records ns/frame | batch records ns/frame | frame / batch |");
    println!("|---|---:|---:|---:|");
    let row = |name: &str, f: f64, b: f64| {
        println!("| {name} | {f:.2} | {b:.2} | {:.2}x |", f / b);
    };
    row(
        "decode + write_frame per frame / check + write_batch",
        f_w.0,
        b_w.0,
    );
    row(
        "write_frame (decoded before) / write_batch (checked before)",
        f_w.1,
        b_w.1,
    );
    row("Recording::iter, FrameView (id + payload)", f_r.0, b_r.0);
    row("Recording::iter + FrameView::to_frame", f_r.1, b_r.1);
    println!(
        "bytes per frame on disk: frame records {:.2}, batch records {:.2}",
        f_bytes as f64 / n as f64,
        b_bytes as f64 / n as f64
    );
}

fn on_disk(path: &std::path::Path, segments: u32) -> u64 {
    (0..segments)
        .map(|s| std::fs::metadata(segment_path(path, s)).unwrap().len())
        .sum()
}
