//! `.cmc` recorder and reader speed, against a plain memcpy of 32-byte records into a
//! Vec measured in the same run. `cargo bench --bench record` (< 10 s).
//!
//! Files go to /dev/shm when it exists, so this measures the CPU cost of the format,
//! not the disk.

use std::hint::black_box;
use std::net::SocketAddr;
use std::time::Instant;

use canmc::record::{segment_path, Record, Recorder, RecorderOptions, Recording};
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
    let _ = std::fs::remove_dir_all(&dir);
}
