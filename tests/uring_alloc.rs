//! Proves the io_uring receive loop allocates nothing in steady state: 100 000 loopback
//! multicast datagrams through `UringSource::poll` under a counting global allocator;
//! and that UDP GRO receives (GSO batches split back into datagrams) allocate nothing
//! on either receive path, io_uring or recvmmsg.

mod common;

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use canmc::recv::mmsg::{MmsgSource, RecvConfig};
use canmc::recv::uring::{UringSource, DEFAULT_BUF_COUNT, DEFAULT_BUF_SIZE};
use canmc::recv::{enable_gro, DatagramSource, RecvMeta};
use common::alloc::{allocations, assert_counter_works};
use common::udp::{gso_sender, sender, GROUP};
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
#[derive(Default, Clone, Copy)]
struct Seen {
    received: u64,
    next_seq: u64,
    out_of_order: u64,
    missing_timestamp: u64,
    bytes: u64,
    coalesced: u64,
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

/// Datagrams per GSO send and their size (the last one of a send is shorter).
const GSO_SEGS: usize = 32;
const GSO_SEG: usize = 200;
const GSO_TAIL: usize = 120;

/// Sends `sends` GSO messages of `GSO_SEGS` sequence-tagged datagrams and polls `src`
/// until each is in, counting coalesced receives.
fn run_gro(
    src: &mut dyn DatagramSource,
    tx: &Socket,
    to: &SockAddr,
    first: u64,
    sends: u64,
    seen: &mut Seen,
) {
    let mut payload = [0u8; GSO_SEGS * GSO_SEG];
    let mut seq = first;
    for _ in 0..sends {
        for j in 0..GSO_SEGS {
            payload[j * GSO_SEG..j * GSO_SEG + 8].copy_from_slice(&seq.to_le_bytes());
            seq += 1;
        }
        let len = (GSO_SEGS - 1) * GSO_SEG + GSO_TAIL;
        tx.send_to(&payload[..len], to).unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while seen.next_seq < seq && Instant::now() < deadline {
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
                if m.starts_coalesced() {
                    seen.coalesced += 1;
                }
                seen.next_seq = got.wrapping_add(1);
                seen.received += 1;
                seen.bytes += p.len() as u64;
            })
            .unwrap();
        }
        assert_eq!(seen.next_seq, seq, "GSO send ending at {seq} incomplete");
    }
}

fn gro_allocates_nothing(src: &mut dyn DatagramSource, port: u16) {
    assert!(src.gro(), "{:?}: GRO not on", src.mode());
    const WARMUP: u64 = 50;
    const SENDS: u64 = 2_000;
    let tx = gso_sender(GSO_SEG as u16);
    let to: SockAddr = SocketAddrV4::new(GROUP, port).into();
    let mut seen = Seen::default();
    run_gro(src, &tx, &to, 0, WARMUP, &mut seen);

    assert_counter_works();
    let before = seen;
    let (allocs, ()) =
        allocations(|| run_gro(src, &tx, &to, WARMUP * GSO_SEGS as u64, SENDS, &mut seen));
    let n = (WARMUP + SENDS) * GSO_SEGS as u64;
    assert_eq!(seen.received, n, "{:?}", src.mode());
    assert_eq!(seen.out_of_order, 0);
    assert_eq!(seen.missing_timestamp, 0);
    assert_eq!(
        seen.bytes,
        (WARMUP + SENDS) * ((GSO_SEGS as u64 - 1) * GSO_SEG as u64 + GSO_TAIL as u64)
    );
    let coalesced = seen.coalesced - before.coalesced;
    assert!(coalesced > 0, "{:?}: no receive was coalesced", src.mode());
    assert_eq!(
        allocs,
        0,
        "{:?}: {allocs} allocations while receiving {} datagrams in {coalesced} GRO receives",
        src.mode(),
        SENDS * GSO_SEGS as u64
    );
    eprintln!(
        "{:?}: {} datagrams in {coalesced} coalesced receives, {allocs} allocations",
        src.mode(),
        SENDS * GSO_SEGS as u64
    );
}

#[test]
fn gro_receives_allocate_nothing_uring() {
    if !common::uring_expected() {
        return;
    }
    const P: u16 = PORT + 1;
    let sock = common::udp::receiver(P);
    sock.set_recv_buffer_size(4 << 20).unwrap();
    enable_gro(&sock).unwrap();
    let mut src = UringSource::new(sock, 64, DEFAULT_BUF_SIZE, DEFAULT_BUF_COUNT).unwrap();
    gro_allocates_nothing(&mut src, P);
}

#[test]
fn gro_receives_allocate_nothing_mmsg() {
    const P: u16 = PORT + 2;
    let sock = common::udp::receiver(P);
    sock.set_recv_buffer_size(4 << 20).unwrap();
    enable_gro(&sock).unwrap();
    let mut src = MmsgSource::new(sock, &RecvConfig::default()).unwrap();
    gro_allocates_nothing(&mut src, P);
}
