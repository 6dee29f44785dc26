//! The engine on a real socket (IPv4 on `lo`, TTL 0), on both receive paths: every
//! datagram sent is either delivered or counted as a kernel drop — including drops at
//! the end of a burst, which no queued datagram reports.

use std::time::{Duration, Instant};

use crate::common;

use canmc::engine::{Engine, EngineConfig, Event};
use canmc::recv::{self, IoMode, RecvConfig};
use canmc::send::BatchSender;
use canmc::socket::{McastConfig, RecvSocket, SendSocket};
use canmc::wire::pycan;
use canmc::CanFrame;

fn burst_then_receive(port: u16, io: IoMode) {
    let mut net = McastConfig::loopback_v4(port);
    net.rcvbuf = 64 * 1024;
    let rx = RecvSocket::open(&net).unwrap();
    let (source, _) = recv::open_source(rx.into_socket(), io, &RecvConfig::default()).unwrap();

    // The whole burst goes out before anything reads: the buffer fills, the rest drops.
    const SENT: u64 = 5_000;
    let mut tx = BatchSender::new(SendSocket::open(&net).unwrap(), pycan::MAX_ENCODED);
    for i in 0..SENT {
        let frame = CanFrame::new(0x100, 0, &i.to_le_bytes()).unwrap();
        tx.push_with(|buf| {
            let slot =
                <&mut [u8; pycan::MAX_ENCODED]>::try_from(&mut buf[..pycan::MAX_ENCODED]).unwrap();
            pycan::encode(&frame, slot)
        })
        .unwrap();
    }
    tx.flush().unwrap();

    let (engine, mut handles) = Engine::start(
        source,
        EngineConfig {
            poll_timeout: Duration::from_millis(20),
            ..EngineConfig::default()
        },
    )
    .unwrap();
    let consumer = &mut handles[0];
    let mut delivered = 0u64;
    let mut last_seq = None;
    let mut drop_events = 0u64;
    let deadline = Instant::now() + Duration::from_secs(5);
    while Instant::now() < deadline {
        match consumer.recv_timeout(Duration::from_millis(50)) {
            Some(Event::Frame(f)) => {
                let seq = u64::from_le_bytes(f.payload().try_into().unwrap());
                assert!(last_seq.is_none_or(|l| seq > l), "{io:?}: out of order");
                last_seq = Some(seq);
                delivered += 1;
            }
            Some(Event::KernelDrops { count, .. }) => drop_events += count,
            Some(Event::Loss { .. }) => panic!("no sequence gaps in python-can format"),
            None => {
                if delivered + engine.stats().kernel_drops >= SENT {
                    break;
                }
            }
        }
    }
    engine.stop();
    let stats = engine.stats();
    engine.join().unwrap();
    assert!(
        delivered > 0 && delivered < SENT,
        "{io:?}: the burst should overflow 64 KiB, delivered {delivered}"
    );
    assert_eq!(
        delivered + stats.kernel_drops,
        SENT,
        "{io:?}: delivered {delivered}, kernel drops {}",
        stats.kernel_drops
    );
    assert_eq!(
        drop_events, stats.kernel_drops,
        "{io:?}: consumers told of every drop"
    );
    assert_eq!(stats.frames, delivered);
}

#[test]
fn burst_drops_are_all_counted_uring() {
    if !common::uring_expected() {
        return;
    }
    burst_then_receive(42201, IoMode::Uring);
}

#[test]
fn burst_drops_are_all_counted_mmsg() {
    burst_then_receive(42202, IoMode::Mmsg);
}
