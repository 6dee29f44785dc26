//! CRC-32C, ns per call and GB/s, for the sizes the `.cmc` writer and reader checksum
//! (8 B commit tails, 28 B classic records, 84 B FD records) up to 64 KiB: canmc's
//! hand-written SSE4.2 loop (`record::format::crc32c`: 8 bytes per `crc32` instruction,
//! no interleaving) against the `crc32c` crate, and a table-driven loop, in the same
//! run. Every implementation is checked against the others on the data it is timed on.
//! The result decides which one `record` uses (docs/perf.md, "CRC-32C").
//!
//! `cargo bench --bench crc32c`; runs for about 10 seconds.

use std::hint::black_box;
use std::time::{Duration, Instant};

const SIZES: [usize; 10] = [8, 28, 32, 84, 256, 1024, 4096, 8192, 16384, 65536];
const RUN: Duration = Duration::from_millis(300);

/// This thread's CPU time in ns. The machine is shared, so wall time also counts time
/// spent descheduled; CPU time is what is compared.
fn thread_cpu_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: clock_gettime writes one timespec through a valid pointer.
    unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

/// CPU ns per call of `f` on `data`: best of 5 runs of about `RUN / 5` each.
fn measure(data: &[u8], f: fn(&[u8]) -> u32) -> f64 {
    // Calls per clock read: enough that reading the clock is noise.
    let batch = (1 << 16) / data.len().max(64) + 16;
    let mut best = f64::MAX;
    for _ in 0..5 {
        let start = Instant::now();
        let cpu0 = thread_cpu_ns();
        let mut calls = 0u64;
        while start.elapsed() < RUN / 5 {
            for _ in 0..batch {
                black_box(f(black_box(data)));
            }
            calls += batch as u64;
        }
        best = best.min((thread_cpu_ns() - cpu0) as f64 / calls as f64);
    }
    best
}

fn crate_crc(data: &[u8]) -> u32 {
    crc32c::crc32c(data)
}

fn lib_crc(data: &[u8]) -> u32 {
    canmc::record::format::crc32c(data)
}

static TABLE: [u32; 256] = {
    let mut t = [0u32; 256];
    let mut i = 0;
    while i < 256 {
        let mut c = i as u32;
        let mut k = 0;
        while k < 8 {
            c = if c & 1 != 0 {
                (c >> 1) ^ 0x82F6_3B78
            } else {
                c >> 1
            };
            k += 1;
        }
        t[i] = c;
        i += 1;
    }
    t
};

/// Byte-at-a-time table CRC-32C, the slow reference.
fn table_crc(data: &[u8]) -> u32 {
    let mut c = !0u32;
    for &b in data {
        c = TABLE[((c ^ b as u32) & 0xFF) as usize] ^ (c >> 8);
    }
    !c
}

fn main() {
    let buf: Vec<u8> = (0..65536u32 + 7)
        .map(|i| (i.wrapping_mul(2_654_435_761) >> 13) as u8)
        .collect();
    assert_eq!(crate_crc(b"123456789"), 0xE306_9283);
    assert_eq!(lib_crc(b"123456789"), 0xE306_9283);
    println!(
        "CRC-32C, CPU ns per call (best of 5), same run; ratio = canmc / crate \
         (> 1: the crate is faster)"
    );
    println!(
        "{:>7} {:>10} {:>10} {:>10} {:>7} {:>10} {:>10}",
        "bytes", "canmc", "crate", "table", "ratio", "canmc GB/s", "crate GB/s"
    );
    for n in SIZES {
        // Offset by 3 so that neither implementation gets an aligned start for free.
        let data = &buf[3..3 + n];
        let want = table_crc(data);
        assert_eq!(crate_crc(data), want, "{n} bytes");
        assert_eq!(lib_crc(data), want, "{n} bytes");
        let l = measure(data, lib_crc);
        let c = measure(data, crate_crc);
        let t = if n <= 4096 {
            format!("{:10.1}", measure(data, table_crc))
        } else {
            format!("{:>10}", "-")
        };
        println!(
            "{n:>7} {l:10.1} {c:10.1} {t} {:7.2} {:10.2} {:10.2}",
            l / c,
            n as f64 / l,
            n as f64 / c
        );
    }
}
