//! ns per frame for the python-can codec, next to a generic msgpack decoder (rmpv) on the
//! same datagrams in the same run: `cargo bench --bench decode_pycan`.
//!
//! A plain `Instant` loop (no harness) so the run stays short on a shared machine: each
//! measurement takes the best of 5 rounds of about 0.12 s (about 3 s in all when idle;
//! `cargo bench --bench decode_pycan -- WORD` runs only the rows whose name has WORD).

use std::hint::black_box;
use std::time::{Duration, Instant};

use canmc::frame::{flags, CanFrame, Channel};
use canmc::wire::pycan::{decode, encode, MAX_ENCODED};

/// A realistic mix: mostly classic 8-byte frames, some FD, remote and error frames.
fn frames() -> Vec<CanFrame> {
    let mut v = Vec::new();
    for i in 0..64u32 {
        let mut f = match i % 8 {
            0..=3 => CanFrame::new(0x100 + i, 0, &(i as u64).to_le_bytes()).unwrap(),
            4 => CanFrame::new(0x1800_0000 + i, flags::EXTENDED, &[i as u8; 8]).unwrap(),
            5 => CanFrame::new(0x200 + i, flags::FD | flags::BRS, &[i as u8; 64]).unwrap(),
            6 => CanFrame::remote(0x300 + i, false, 8).unwrap(),
            _ => CanFrame::new(0x4, flags::ERROR | flags::EXTENDED, &[0; 8]).unwrap(),
        };
        f.timestamp_ns = 1_763_700_000_123_456_789 + i as u64 * 1_000;
        if i % 16 == 0 {
            f.channel = Channel::str("vcan0").unwrap();
        }
        v.push(f);
    }
    v
}

/// Best-of-5 ns per call of `op` over `items` items, each round about `round` long.
fn measure(items: usize, round: Duration, mut op: impl FnMut() -> u64) -> f64 {
    let mut best = f64::INFINITY;
    // Calibrate: how many passes fill one round.
    let t = Instant::now();
    black_box(op());
    let one = t.elapsed().max(Duration::from_nanos(1));
    let passes = (round.as_nanos() / one.as_nanos()).max(1) as usize;
    for _ in 0..5 {
        let t = Instant::now();
        let mut sink = 0u64;
        for _ in 0..passes {
            sink = sink.wrapping_add(op());
        }
        black_box(sink);
        let ns = t.elapsed().as_nanos() as f64 / (passes * items) as f64;
        best = best.min(ns);
    }
    best
}

fn main() {
    let frames = frames();
    let datagrams: Vec<Vec<u8>> = frames
        .iter()
        .map(|f| {
            let mut buf = [0u8; MAX_ENCODED];
            let n = encode(f, &mut buf);
            buf[..n].to_vec()
        })
        .collect();
    // The same maps with the timestamp entry moved to the end: off the fast path, through
    // the general any-order decoder. Its entry is 19 bytes after the 1-byte map header.
    let reordered: Vec<Vec<u8>> = datagrams
        .iter()
        .map(|d| [&d[..1], &d[20..], &d[1..20]].concat())
        .collect();
    // Both sets decode, to the same frames: the loops below time successful decodes.
    for ((d, r), f) in datagrams.iter().zip(&reordered).zip(&frames) {
        let (mut a, mut b) = (CanFrame::EMPTY, CanFrame::EMPTY);
        assert_eq!((decode(d, &mut a), decode(r, &mut b)), (Ok(()), Ok(())));
        assert_eq!((a.content(), a.channel), (f.content(), f.channel));
        assert_eq!(a, b);
    }
    // `cargo bench --bench decode_pycan -- WORD` times only the rows whose name has WORD
    // (handy under `perf stat`).
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with("--"))
        .collect();
    let wanted = |name: &str| filter.is_empty() || filter.iter().any(|w| name.contains(w.as_str()));
    let mean_len = datagrams.iter().map(Vec::len).sum::<usize>() / datagrams.len();
    let n = datagrams.len();
    let round = Duration::from_millis(120);

    let mut out = CanFrame::EMPTY;
    let decode_ns = wanted(ROW_DECODE).then(|| {
        measure(n, round, || {
            let mut ok = 0;
            for d in &datagrams {
                ok += decode(black_box(d), &mut out).is_ok() as u64;
                black_box(&out);
            }
            ok
        })
    });

    let general_ns = wanted(ROW_GENERAL).then(|| {
        measure(n, round, || {
            let mut ok = 0;
            for d in &reordered {
                ok += decode(black_box(d), &mut out).is_ok() as u64;
                black_box(&out);
            }
            ok
        })
    });

    let mut buf = [0u8; MAX_ENCODED];
    let encode_ns = wanted(ROW_ENCODE).then(|| {
        measure(n, round, || {
            let mut total = 0;
            for f in &frames {
                total += encode(black_box(f), &mut buf) as u64;
                black_box(&buf);
            }
            total
        })
    });

    let rmpv_ns = wanted(ROW_RMPV).then(|| {
        measure(n, round, || {
            let mut ok = 0;
            for d in &datagrams {
                let mut r: &[u8] = black_box(d);
                ok += rmpv::decode::read_value(&mut r)
                    .map(|v| black_box(v).is_map())
                    .unwrap_or(false) as u64;
            }
            ok
        })
    });

    println!("python-can datagrams: {n} frames of mixed kinds, {mean_len} bytes on average");
    println!(
        "{:<44} {:>10} {:>14}",
        "operation", "ns/frame", "vs rmpv decode"
    );
    for (name, ns) in [
        (ROW_DECODE, decode_ns),
        (ROW_GENERAL, general_ns),
        (ROW_ENCODE, encode_ns),
        (ROW_RMPV, rmpv_ns),
    ] {
        let Some(ns) = ns else { continue };
        match rmpv_ns {
            Some(base) => println!("{name:<44} {ns:>10.1} {:>13.2}x", ns / base),
            None => println!("{name:<44} {ns:>10.1} {:>14}", "-"),
        }
    }
}

const ROW_DECODE: &str = "canmc pycan::decode (to CanFrame)";
const ROW_GENERAL: &str = "canmc pycan::decode, keys reordered";
const ROW_ENCODE: &str = "canmc pycan::encode";
const ROW_RMPV: &str = "rmpv::decode::read_value (generic Value)";
