//! Proves the send and recvmmsg paths allocate nothing in steady state: 100 000
//! datagrams through `BatchSender` -> `MmsgSource` under a counting global allocator.
//! Loopback only (`lo`, TTL 0).

mod common;

use std::time::{Duration, Instant};

use canmc::recv::mmsg::{MmsgSource, RecvConfig};
use canmc::recv::DatagramSource;
use canmc::send::BatchSender;
use canmc::socket::{McastConfig, RecvSocket, SendSocket};
use common::alloc::{allocations, assert_counter_works};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

/// Sends `n` datagrams in batches of `per_round`, receiving after each batch; returns
/// (received, kernel drops, bytes checksum of received payload).
fn run(tx: &mut BatchSender, rx: &mut MmsgSource, n: usize, per_round: usize) -> (usize, u32, u64) {
    let mut got = 0usize;
    let mut drops = 0u32;
    let mut sum = 0u64;
    let mut seq = 0u32;
    let mut sent = 0;
    while sent < n {
        let k = per_round.min(n - sent);
        for _ in 0..k {
            // Mixed sizes: mostly equal (GSO runs), every 7th one odd.
            let len = if seq % 7 == 6 { 33 } else { 72 };
            tx.push_with(|slot| {
                slot[..4].copy_from_slice(&seq.to_le_bytes());
                slot[4..len].fill(0xA5);
                len
            })
            .unwrap();
            seq += 1;
        }
        tx.flush().unwrap();
        sent += k;
        let deadline = Instant::now() + Duration::from_secs(2);
        while got + drops as usize != sent && Instant::now() < deadline {
            rx.poll(Duration::from_millis(10), &mut |d, m| {
                got += 1;
                drops = m.kernel_drops;
                sum = sum.wrapping_add(d.iter().map(|&b| b as u64).sum::<u64>());
            })
            .unwrap();
        }
    }
    (got, drops, sum)
}

#[test]
fn send_and_receive_allocate_nothing_per_datagram() {
    let mut cfg = McastConfig::loopback_v4(41_390);
    cfg.rcvbuf = 4 << 20;
    let recv = RecvSocket::open(&cfg).unwrap();
    let mut rx = MmsgSource::new(recv.into_socket(), &RecvConfig::default()).unwrap();
    let mut tx = BatchSender::new(SendSocket::open(&cfg).unwrap(), 128);

    // Warm-up: first-use paths (lazy statics, thread-locals) run before measuring.
    let (warm, warm_drops, _) = run(&mut tx, &mut rx, 2_000, 500);
    assert_eq!(warm + warm_drops as usize, 2_000);

    const N: usize = 100_000;
    assert_counter_works();
    let (allocs, (got, drops, sum)) = allocations(|| run(&mut tx, &mut rx, N, 500));

    let drops = (drops - warm_drops) as usize;
    assert_eq!(
        got + drops,
        N,
        "received {got} + dropped {drops} != sent {N}"
    );
    assert!(got > N / 2, "most datagrams arrive on lo (got {got})");
    assert!(sum > 0);
    assert_eq!(tx.datagrams_sent(), (N + 2_000) as u64);
    assert_eq!(allocs, 0, "{allocs} allocations for {N} datagrams");
}
