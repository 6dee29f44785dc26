//! Proves the io_uring receive loop allocates nothing in steady state: 100 000 loopback
//! multicast datagrams through `UringSource::poll` under a counting global allocator.

mod common;

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use canmc::recv::uring::{UringSource, DEFAULT_BUF_COUNT, DEFAULT_BUF_SIZE};
use canmc::recv::{DatagramSource, RecvMeta};
use common::alloc::{allocations, assert_counter_works};
use common::udp::{sender, GROUP};
use socket2::{SockAddr, Socket};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

const PORT: u16 = 41010;

fn receiver() -> Socket {
    let s = common::udp::receiver(PORT);
    s.set_recv_buffer_size(4 << 20).unwrap();
    s
}

/// What the callback checked, kept in plain fields so updating it cannot allocate.
#[derive(Default)]
struct Seen {
    received: u64,
    next_seq: u64,
    out_of_order: u64,
    missing_timestamp: u64,
    bytes: u64,
}

/// Sends `count` datagrams in batches and polls until each batch is in, all in this
/// thread so nothing is lost.
fn run(src: &mut UringSource, tx: &Socket, to: &SockAddr, first: u64, count: u64, seen: &mut Seen) {
    const BATCH: u64 = 64;
    let mut payload = [0u8; 72];
    let mut seq = first;
    while seq < first + count {
        let end = (seq + BATCH).min(first + count);
        while seq < end {
            payload[..8].copy_from_slice(&seq.to_le_bytes());
            tx.send_to(&payload[..8 + (seq % 64) as usize], to).unwrap();
            seq += 1;
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.next_seq < end && Instant::now() < deadline {
            src.poll(Duration::from_millis(100), &mut |p: &[u8], m: &RecvMeta| {
                let got = p.get(..8).map_or(u64::MAX, |b| {
                    u64::from_le_bytes(b.try_into().unwrap_or([0xFF; 8]))
                });
                if got != seen.next_seq {
                    seen.out_of_order += 1;
                }
                if m.timestamp_ns == 0 {
                    seen.missing_timestamp += 1;
                }
                seen.next_seq = got.wrapping_add(1);
                seen.received += 1;
                seen.bytes += p.len() as u64;
            })
            .unwrap();
        }
        assert_eq!(seen.next_seq, end, "batch ending at {end} incomplete");
    }
}

#[test]
fn hundred_thousand_datagrams_allocate_nothing() {
    if !common::uring_expected() {
        return;
    }
    const WARMUP: u64 = 2_000;
    const N: u64 = 100_000;
    let mut src = UringSource::new(receiver(), 64, DEFAULT_BUF_SIZE, DEFAULT_BUF_COUNT).unwrap();
    let tx = sender();
    let to: SockAddr = SocketAddrV4::new(GROUP, PORT).into();
    let mut seen = Seen::default();
    run(&mut src, &tx, &to, 0, WARMUP, &mut seen);

    assert_counter_works();
    let (allocs, secs) = allocations(|| {
        let started = Instant::now();
        run(&mut src, &tx, &to, WARMUP, N, &mut seen);
        started.elapsed().as_secs_f64()
    });

    assert_eq!(seen.received, WARMUP + N);
    assert_eq!(seen.out_of_order, 0);
    assert_eq!(seen.missing_timestamp, 0);
    assert_eq!(
        allocs, 0,
        "{allocs} allocations while receiving {N} datagrams"
    );
    eprintln!(
        "{N} datagrams ({} bytes) sent+received in {secs:.3} s, {allocs} allocations",
        seen.bytes
    );
}
