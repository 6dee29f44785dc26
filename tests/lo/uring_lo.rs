//! The io_uring receive loop against real multicast traffic on loopback (239.74.163.2
//! joined on 127.0.0.1, TTL 0): order and payloads, kernel metadata, recovery after the
//! buffer ring runs dry, truncation, clean teardown.

use crate::common;

use std::net::{SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use canmc::recv::uring::{UringSource, DEFAULT_BUF_COUNT, DEFAULT_BUF_SIZE};
use canmc::recv::{DatagramSource, IoMode, RecvMeta};
use common::now_ns;
use common::udp::{receiver, sender, GROUP};
use socket2::{SockAddr, Socket};

/// A receive buffer that holds `bytes` (beyond rmem_max when running as root).
fn set_rcvbuf(s: &Socket, bytes: i32) {
    // SAFETY: pointer to a live i32 and its size.
    let forced = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_RCVBUFFORCE,
            &bytes as *const i32 as *const libc::c_void,
            4,
        )
    };
    if forced != 0 {
        s.set_recv_buffer_size(bytes as usize).unwrap();
    }
}

/// Datagram `seq`: its length varies from 4 to 1403 bytes, the first 4 bytes are `seq`,
/// the rest a pattern derived from it.
fn fill(seq: u32, buf: &mut [u8]) -> usize {
    let len = 4 + (seq as usize * 7919) % 1400;
    buf[..4].copy_from_slice(&seq.to_le_bytes());
    for (i, b) in buf[4..len].iter_mut().enumerate() {
        *b = (seq as usize + i * 31) as u8;
    }
    len
}

#[test]
fn ten_thousand_in_order_with_metadata() {
    if !common::uring_expected() {
        return;
    }
    const N: u32 = 10_000;
    const CHUNK: u32 = 500;
    let port = 41001;
    let rx = receiver(port);
    // A chunk fits in the socket buffer even if the kernel has not run the multishot
    // yet, so nothing is dropped and every datagram can be checked.
    set_rcvbuf(&rx, 8 << 20);
    let mut src = UringSource::new(rx, 64, DEFAULT_BUF_SIZE, DEFAULT_BUF_COUNT).unwrap();
    assert_eq!(src.mode(), IoMode::Uring);
    src.poll(Duration::ZERO, &mut |_, _| {}).unwrap();
    let tx = sender();
    let from: SocketAddr = tx.local_addr().unwrap().as_socket().unwrap();
    let to: SockAddr = SocketAddrV4::new(GROUP, port).into();

    let mut expected = [0u8; 2048];
    let mut next = 0u32;
    let mut bad: Vec<String> = Vec::new();
    let started = Instant::now();
    let mut sent = 0u32;
    while sent < N {
        let end = (sent + CHUNK).min(N);
        let mut buf = [0u8; 2048];
        for seq in sent..end {
            let len = fill(seq, &mut buf);
            tx.send_to(&buf[..len], &to).unwrap();
        }
        sent = end;
        let deadline = Instant::now() + Duration::from_secs(5);
        while next < sent && Instant::now() < deadline {
            src.poll(Duration::from_millis(100), &mut |p: &[u8], m: &RecvMeta| {
                let len = fill(next, &mut expected);
                let now = now_ns();
                if p != &expected[..len] {
                    bad.push(format!(
                        "datagram {next}: wrong payload ({} bytes)",
                        p.len()
                    ));
                } else if m.timestamp_ns.abs_diff(now) > 5_000_000_000 {
                    bad.push(format!(
                        "datagram {next}: timestamp {} vs now {now}",
                        m.timestamp_ns
                    ));
                } else if m.sender.get() != Some(from) {
                    bad.push(format!("datagram {next}: sender {:?}", m.sender));
                } else if m.truncated || m.kernel_drops != 0 {
                    bad.push(format!("datagram {next}: {m:?}"));
                }
                next += 1;
            })
            .unwrap();
        }
        assert_eq!(next, sent, "datagrams missing after chunk ending at {sent}");
    }
    let secs = started.elapsed().as_secs_f64();
    assert!(
        bad.is_empty(),
        "{} bad datagrams, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(5)]
    );
    assert_eq!(src.stats().malformed, 0);
    eprintln!(
        "{N} datagrams sent and received in one thread in {secs:.3} s ({:.0}/s)",
        N as f64 / secs
    );
}

#[test]
fn burst_beyond_buffer_ring_rearms_and_accounts_for_everything() {
    if !common::uring_expected() {
        return;
    }
    const BURST: u32 = 20_000;
    const AFTER: u32 = 100;
    let port = 41002;
    let rx = receiver(port);
    // Room for the whole burst in the socket buffer.
    set_rcvbuf(&rx, 64 << 20);
    // Fewer buffers than one wake-up's worth of receives (the kernel's multishot
    // receives up to 32 per run), so the ring does run dry.
    let count = 16u16;
    let mut src = UringSource::new(rx, 64, 256, count).unwrap();
    // Submits the multishot (with deferred task running, the receiving happens when
    // we poll; on older kernels, while nobody polls).
    assert_eq!(src.poll(Duration::ZERO, &mut |_, _| {}).unwrap(), 0);

    let tx = sender();
    let to: SockAddr = SocketAddrV4::new(GROUP, port).into();
    for seq in 0..BURST {
        tx.send_to(&seq.to_le_bytes(), &to).unwrap();
    }
    let mut tally = Tally::default();
    drain(&mut src, &mut tally);
    let stats = src.stats();
    assert!(
        stats.out_of_buffers >= 1 && stats.rearms >= 1,
        "the burst never ran the ring dry: {stats:?}"
    );
    assert!(
        tally.received > count as u64,
        "only {} received: the multishot was not re-armed after ENOBUFS",
        tally.received
    );
    let after_burst = tally.received;

    for seq in BURST..BURST + AFTER {
        tx.send_to(&seq.to_le_bytes(), &to).unwrap();
    }
    drain(&mut src, &mut tally);
    assert_eq!(
        tally.received - after_burst,
        AFTER as u64,
        "datagrams after the burst"
    );
    assert_eq!(tally.out_of_order, 0);
    assert_eq!(tally.last_seq, Some(BURST + AFTER - 1));
    assert_eq!(
        tally.received + tally.drops as u64,
        (BURST + AFTER) as u64,
        "received {} + kernel drops {} != sent",
        tally.received,
        tally.drops
    );
    eprintln!(
        "burst of {BURST}: {} received, {} dropped by the kernel, {stats:?}",
        after_burst, tally.drops
    );
}

/// With GRO the ring has only `GRO_BUF_COUNT` (64 KiB) buffers, and a sender without GSO
/// (python-can) fills one per datagram: a burst queued before anything polls still
/// arrives whole and in order (whether or not the ring runs dry on the way; the
/// stats printed say).
#[test]
fn gro_ring_with_plain_datagrams_accounts_for_everything() {
    if !common::uring_expected() {
        return;
    }
    const BURST: u32 = 20_000;
    let port = 41003;
    let rx = receiver(port);
    set_rcvbuf(&rx, 64 << 20);
    canmc::recv::enable_gro(&rx).unwrap();
    let mut src = UringSource::new(rx, 64, DEFAULT_BUF_SIZE, DEFAULT_BUF_COUNT).unwrap();
    assert!(src.gro());
    assert_eq!(src.poll(Duration::ZERO, &mut |_, _| {}).unwrap(), 0);
    let tx = sender();
    let to: SockAddr = SocketAddrV4::new(GROUP, port).into();
    let started = Instant::now();
    for seq in 0..BURST {
        tx.send_to(&seq.to_le_bytes(), &to).unwrap();
    }
    let mut tally = Tally::default();
    drain(&mut src, &mut tally);
    let stats = src.stats();
    assert_eq!(tally.out_of_order, 0);
    assert_eq!(tally.last_seq, Some(BURST - 1));
    assert_eq!(
        tally.received + tally.drops as u64,
        BURST as u64,
        "received {} + kernel drops {} != sent ({stats:?})",
        tally.received,
        tally.drops
    );
    eprintln!(
        "GRO ring, burst of {BURST} plain datagrams: {} received, {} dropped, {stats:?}, {:.3} s",
        tally.received,
        tally.drops,
        started.elapsed().as_secs_f64()
    );
}

#[derive(Default)]
struct Tally {
    received: u64,
    last_seq: Option<u32>,
    out_of_order: u64,
    drops: u32,
}

/// Polls until nothing has arrived for 300 ms. (A single poll may return 0 while more
/// is coming: a batch can hold only the ENOBUFS completion.)
fn drain(src: &mut UringSource, t: &mut Tally) {
    let mut idle = Instant::now();
    while idle.elapsed() < Duration::from_millis(300) {
        let n = src
            .poll(Duration::from_millis(50), &mut |p: &[u8], m: &RecvMeta| {
                let seq = u32::from_le_bytes(p[..4].try_into().unwrap());
                if t.last_seq.is_some_and(|l| seq <= l) {
                    t.out_of_order += 1;
                }
                t.last_seq = Some(seq);
                t.received += 1;
                t.drops = t.drops.max(m.kernel_drops);
            })
            .unwrap();
        if n > 0 {
            idle = Instant::now();
        }
    }
}

#[test]
fn oversized_datagram_is_cut_and_flagged() {
    if !common::uring_expected() {
        return;
    }
    let port = 41003;
    let mut src = UringSource::new(receiver(port), 8, DEFAULT_BUF_SIZE, 64).unwrap();
    let tx = sender();
    let to: SockAddr = SocketAddrV4::new(GROUP, port).into();
    let big: Vec<u8> = (0..3000u32).map(|i| (i * 7) as u8).collect();
    tx.send_to(&big, &to).unwrap();
    tx.send_to(b"small", &to).unwrap();
    let mut got: Vec<(Vec<u8>, bool)> = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while got.len() < 2 && Instant::now() < deadline {
        src.poll(Duration::from_millis(100), &mut |p, m| {
            got.push((p.to_vec(), m.truncated))
        })
        .unwrap();
    }
    assert_eq!(got.len(), 2);
    assert!(got[0].1, "3000-byte datagram not flagged truncated");
    assert_eq!(got[0].0.len(), DEFAULT_BUF_SIZE);
    assert_eq!(got[0].0, big[..DEFAULT_BUF_SIZE]);
    assert_eq!(got[1], (b"small".to_vec(), false));
}

fn open_fds() -> usize {
    std::fs::read_dir("/proc/self/fd").unwrap().count()
}

#[test]
fn drop_releases_everything() {
    if !common::uring_expected() {
        return;
    }
    let port = 41004;
    let tx = sender();
    let to: SockAddr = SocketAddrV4::new(GROUP, port).into();
    // One warm-up round so lazily opened descriptors are not counted as leaks.
    let round = || {
        let mut src = UringSource::new(receiver(port), 8, 512, 16).unwrap();
        src.poll(Duration::ZERO, &mut |_, _| {}).unwrap();
        tx.send_to(b"x", &to).unwrap();
        let mut n = 0;
        let deadline = Instant::now() + Duration::from_secs(5);
        while n == 0 && Instant::now() < deadline {
            n += src
                .poll(Duration::from_millis(100), &mut |_, _| {})
                .unwrap();
        }
        assert_eq!(n, 1);
        // Dropped here with the multishot in flight: cancel, unregister, close, unmap.
    };
    round();
    let before = open_fds();
    for _ in 0..50 {
        round();
    }
    // Other tests in this binary open sockets concurrently; allow for them but not for
    // 50 leaked rings + sockets.
    assert!(
        open_fds() < before + 10,
        "descriptors leak: {before} -> {}",
        open_fds()
    );
}

#[test]
fn built_and_armed_on_one_thread_polled_on_another() {
    if !common::uring_expected() {
        return;
    }
    // The ring belongs to the thread that first polled (single issuer), and io_uring
    // cancels a request when the thread that submitted it exits: polled from a second
    // thread, the source must still receive everything (on a rebuilt ring).
    let port = 41005;
    let mut src = std::thread::spawn(move || {
        let mut src = UringSource::new(receiver(port), 8, 512, 16).unwrap();
        src.poll(Duration::ZERO, &mut |_, _| {}).unwrap();
        src
    })
    .join()
    .unwrap();
    let tx = sender();
    let to: SockAddr = SocketAddrV4::new(GROUP, port).into();
    let mut got = Vec::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut sent = 0u8;
    while got.len() < 3 && Instant::now() < deadline {
        if sent < 3 {
            tx.send_to(&[sent], &to).unwrap();
            sent += 1;
        }
        src.poll(Duration::from_millis(100), &mut |p, _| got.push(p.to_vec()))
            .unwrap();
    }
    assert_eq!(got, [[0u8], [1], [2]]);
    let stats = src.stats();
    assert!(
        stats.rebuilds == 1 || stats.rearms >= 1,
        "a new ring (single issuer) or a re-arm (older kernels): {stats:?}"
    );
}
