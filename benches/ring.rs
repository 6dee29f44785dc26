//! SPSC hand-off cost: canmc's ring against crossbeam's `ArrayQueue` (the SPEC's chosen
//! queue), one producer thread and one consumer thread, for `u64` and 128-byte
//! `CanFrame` items. Prints ns per item (push + pop, wall time / items) and ratios.
//!
//! `cargo bench --bench ring` (about 5 s after the build). Each figure is the best of up to 5 runs (fewer when a
//! configuration passes its time budget): on a
//! shared machine the minimum is the least disturbed measurement.

use std::hint::black_box;
use std::thread;
use std::time::{Duration, Instant};

use canmc::ring;
use canmc::CanFrame;
use crossbeam_queue::ArrayQueue;

const CAPACITY: usize = 4096;
const RUNS: usize = 5;
/// Runs stop early once a configuration has used this much time.
const BUDGET: Duration = Duration::from_millis(1200);

/// Spin a little, then yield: with more runnable threads than CPUs a pure spin can
/// burn a whole time slice while the other side waits to be scheduled. Both queues get
/// the same treatment.
#[derive(Default)]
struct Backoff(u32);

impl Backoff {
    #[inline]
    fn snooze(&mut self) {
        if self.0 < 64 {
            std::hint::spin_loop();
            self.0 += 1;
        } else {
            thread::yield_now();
        }
    }
    #[inline]
    fn reset(&mut self) {
        self.0 = 0;
    }
}

trait Item: Copy + Send + 'static {
    const NAME: &'static str;
    const COUNT: u64;
    fn make(seq: u64) -> Self;
    fn seq(&self) -> u64;
}

impl Item for u64 {
    const NAME: &'static str = "u64";
    const COUNT: u64 = 2_000_000;
    fn make(seq: u64) -> Self {
        seq
    }
    fn seq(&self) -> u64 {
        *self
    }
}

impl Item for CanFrame {
    const NAME: &'static str = "CanFrame (128 B)";
    const COUNT: u64 = 1_000_000;
    fn make(seq: u64) -> Self {
        let mut f = CanFrame::EMPTY;
        f.timestamp_ns = seq;
        f.len = 8;
        f.data[..8].copy_from_slice(&seq.to_le_bytes());
        f
    }
    fn seq(&self) -> u64 {
        self.timestamp_ns
    }
}

/// Consumer side check: items arrive in order (so the benchmark cannot cheat by
/// dropping work) and are "used".
#[inline]
fn check<T: Item>(v: &T, expected: &mut u64) {
    assert_eq!(v.seq(), *expected, "out of order");
    black_box(v);
    *expected += 1;
}

fn canmc_ring<T: Item>(batch: bool) -> Duration {
    let (mut tx, mut rx) = ring::ring::<T>(CAPACITY);
    let start = Instant::now();
    let producer = thread::spawn(move || {
        let mut backoff = Backoff::default();
        for i in 0..T::COUNT {
            let mut v = T::make(i);
            while let Err(back) = tx.push(v) {
                v = back;
                backoff.snooze();
            }
            backoff.reset();
        }
    });
    let mut expected = 0;
    let mut backoff = Backoff::default();
    if batch {
        let mut buf = [T::make(0); 32];
        while expected < T::COUNT {
            let n = rx.pop_batch(&mut buf);
            if n == 0 {
                backoff.snooze();
            } else {
                backoff.reset();
            }
            for v in &buf[..n] {
                check(v, &mut expected);
            }
        }
    } else {
        while expected < T::COUNT {
            match rx.pop() {
                Some(v) => {
                    check(&v, &mut expected);
                    backoff.reset();
                }
                None => backoff.snooze(),
            }
        }
    }
    let took = start.elapsed();
    producer.join().unwrap();
    took
}

fn array_queue<T: Item>() -> Duration {
    let q = std::sync::Arc::new(ArrayQueue::<T>::new(CAPACITY));
    let tx = std::sync::Arc::clone(&q);
    let start = Instant::now();
    let producer = thread::spawn(move || {
        let mut backoff = Backoff::default();
        for i in 0..T::COUNT {
            let mut v = T::make(i);
            while let Err(back) = tx.push(v) {
                v = back;
                backoff.snooze();
            }
            backoff.reset();
        }
    });
    let mut expected = 0;
    let mut backoff = Backoff::default();
    while expected < T::COUNT {
        match q.pop() {
            Some(v) => {
                check(&v, &mut expected);
                backoff.reset();
            }
            None => backoff.snooze(),
        }
    }
    let took = start.elapsed();
    producer.join().unwrap();
    took
}

fn best_ns_per_item<T: Item>(f: impl Fn() -> Duration) -> f64 {
    let started = Instant::now();
    let mut best = f();
    for _ in 1..RUNS {
        if started.elapsed() > BUDGET {
            break;
        }
        best = best.min(f());
    }
    best.as_nanos() as f64 / T::COUNT as f64
}

fn rows<T: Item>() {
    let aq = best_ns_per_item::<T>(array_queue::<T>);
    let single = best_ns_per_item::<T>(|| canmc_ring::<T>(false));
    let batch = best_ns_per_item::<T>(|| canmc_ring::<T>(true));
    for (name, ns) in [
        ("canmc::ring, pop", single),
        ("canmc::ring, pop_batch(32)", batch),
        ("crossbeam ArrayQueue", aq),
    ] {
        println!(
            "| {:<16} | {:<26} | {:>7.2} | {:>12.2}x |",
            T::NAME,
            name,
            ns,
            aq / ns
        );
    }
}

fn main() {
    println!(
        "SPSC push+pop, 2 threads, capacity {CAPACITY}, best of up to {RUNS} runs, {} CPUs",
        thread::available_parallelism().map_or(0, |n| n.get())
    );
    println!("| item             | queue                      | ns/item | vs ArrayQueue |");
    println!("|------------------|----------------------------|---------|---------------|");
    rows::<u64>();
    rows::<CanFrame>();
}
