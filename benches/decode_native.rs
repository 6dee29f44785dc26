//! ns per frame to decode native datagrams full of classic 8-byte frames, next to a plain
//! memcpy of the same bytes in the same run (the floor any receive path pays), plus the
//! encoder for reference. `cargo bench --bench decode_native`; runs for a few seconds.

use std::hint::black_box;
use std::time::{Duration, Instant};

use canmc::frame::{CanFrame, Channel};
use canmc::wire::native::{decode, decode_with, Encoder, DEFAULT_MAX_DATAGRAM};

const DATAGRAMS: usize = 1000;
const RUN: Duration = Duration::from_millis(1000);

/// This thread's CPU time in ns. The machine is shared, so wall time also counts time
/// spent descheduled; both are reported.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// Runs `round` (which handles `frames` frames) repeatedly for about `RUN`; best of 5
/// runs, as (wall, CPU) ns per frame.
fn measure(frames: usize, mut round: impl FnMut()) -> (f64, f64) {
    round(); // warm caches
    let (mut wall, mut cpu) = (f64::MAX, f64::MAX);
    for _ in 0..5 {
        let start = Instant::now();
        let cpu0 = thread_cpu_ns();
        let mut rounds = 0u64;
        while start.elapsed() < RUN / 5 {
            round();
            rounds += 1;
        }
        let n = rounds as f64 * frames as f64;
        wall = wall.min(start.elapsed().as_nanos() as f64 / n);
        cpu = cpu.min((thread_cpu_ns() - cpu0) as f64 / n);
    }
    (wall, cpu)
}

fn main() {
    let mut frame: CanFrame = "1A3#0011223344556677".parse().unwrap();
    frame.channel = Channel::int(0);
    let mut enc = Encoder::new(0x1234_5678, DEFAULT_MAX_DATAGRAM);
    let mut datagrams: Vec<Vec<u8>> = Vec::with_capacity(DATAGRAMS);
    let mut buf = vec![0u8; DEFAULT_MAX_DATAGRAM];
    let mut ts = 1_700_000_000_000_000_000u64;
    for seq in 0..DATAGRAMS as u64 {
        enc.begin(&mut buf, seq, frame.channel, ts);
        loop {
            frame.timestamp_ns = ts;
            frame.id = (ts % 0x7FF) as u32;
            if !enc.push(&mut buf, &frame) {
                break;
            }
            ts += 1_000;
        }
        let n = enc.finish(&mut buf);
        datagrams.push(buf[..n].to_vec());
    }
    let per_dgram = decode(&datagrams[0], &mut |_| {}).unwrap().frames as usize;
    let total_frames = per_dgram * DATAGRAMS;
    let bytes: usize = datagrams.iter().map(|d| d.len()).sum();

    let mut sink = 0u64;
    let decode_ns = measure(total_frames, || {
        for d in &datagrams {
            let info = decode(black_box(d), &mut |f| {
                sink = sink.wrapping_add(f.timestamp_ns ^ f.id as u64);
            })
            .unwrap();
            black_box(info);
        }
    });
    black_box(sink);

    let decode_generic_ns = measure(total_frames, || {
        for d in &datagrams {
            let info = decode_with(black_box(d), |f| {
                sink = sink.wrapping_add(f.timestamp_ns ^ f.id as u64);
            })
            .unwrap();
            black_box(info);
        }
    });
    black_box(sink);

    let mut rx = vec![0u8; DEFAULT_MAX_DATAGRAM];
    let memcpy_ns = measure(total_frames, || {
        for d in &datagrams {
            rx[..d.len()].copy_from_slice(black_box(d));
            black_box(&mut rx);
        }
    });

    // What a consumer that keeps every frame pays: decode into a frame array.
    let mut out = vec![CanFrame::EMPTY; per_dgram];
    let decode_store_ns = measure(total_frames, || {
        for d in &datagrams {
            let mut i = 0;
            decode(black_box(d), &mut |f| {
                out[i] = *f;
                i += 1;
            })
            .unwrap();
            black_box(&mut out);
        }
    });

    let src: Vec<CanFrame> = (0..per_dgram)
        .map(|i| {
            let mut f = frame;
            f.timestamp_ns = ts + i as u64 * 1000;
            f
        })
        .collect();
    let encode_ns = measure(total_frames, || {
        for seq in 0..DATAGRAMS as u64 {
            enc.begin(&mut buf, seq, frame.channel, ts);
            for f in &src {
                enc.push(&mut buf, black_box(f));
            }
            black_box(enc.finish(&mut buf));
        }
    });

    println!(
        "native datagrams: {DATAGRAMS} x {} bytes, {per_dgram} classic 8-byte frames each ({:.1} bytes/frame on the wire)",
        datagrams[0].len(),
        bytes as f64 / total_frames as f64
    );
    println!(
        "| what                                    | wall ns/frame | CPU ns/frame | CPU x memcpy |"
    );
    println!(
        "|-----------------------------------------|--------------:|-------------:|-------------:|"
    );
    for (name, (wall, cpu)) in [
        ("memcpy of the datagram bytes (baseline)", memcpy_ns),
        ("native decode (dyn callback)", decode_ns),
        ("native decode_with (inlined callback)", decode_generic_ns),
        ("native decode + store 128-byte CanFrame", decode_store_ns),
        ("native encode (Encoder::push)", encode_ns),
    ] {
        println!(
            "| {name:<39} | {wall:>13.2} | {cpu:>12.2} | {:>12.1} |",
            cpu / memcpy_ns.1
        );
    }
    println!(
        "decode_with: {:.0} M frames/s per core of CPU time (SPEC target: <= 5 ns/frame)",
        1e3 / decode_generic_ns.1
    );
}
