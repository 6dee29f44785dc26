//! The engine on a real socket (IPv4 on `lo`, TTL 0), on both receive paths: every
//! datagram sent is either delivered or counted as a kernel drop — including drops at
//! the end of a burst, which no queued datagram reports. (With UDP GRO the kernel counts
//! a dropped GSO batch once: then drops are reported, but fewer than were lost.)

use std::time::{Duration, Instant};

use crate::common;

use canmc::engine::{Engine, EngineConfig, Event};
use canmc::recv::{self, IoMode, RecvConfig};
use canmc::send::BatchSender;
use canmc::socket::{McastConfig, RecvSocket, SendSocket};
use canmc::wire::pycan;
use canmc::CanFrame;

fn burst_then_receive(port: u16, io: IoMode, gro: bool) {
    let mut net = McastConfig::loopback_v4(port);
    net.rcvbuf = 64 * 1024;
    let rx = RecvSocket::open(&net).unwrap();
    let rc = RecvConfig {
        gro,
        ..RecvConfig::default()
    };
    let (source, _) = recv::open_source(rx.into_socket(), io, &rc).unwrap();

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
    if gro {
        // The sender packs the burst into GSO batches; a batch the socket has no room
        // for is one drop to the kernel, however many datagrams it held.
        assert!(
            stats.kernel_drops > 0 && delivered + stats.kernel_drops < SENT,
            "{io:?} with GRO: delivered {delivered}, kernel drops {}",
            stats.kernel_drops
        );
        assert!(stats.coalesced > 0, "{io:?}: {stats:?}");
    } else {
        assert_eq!(
            delivered + stats.kernel_drops,
            SENT,
            "{io:?}: delivered {delivered}, kernel drops {}",
            stats.kernel_drops
        );
    }
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
    burst_then_receive(42201, IoMode::Uring, false);
}

#[test]
fn burst_drops_are_all_counted_mmsg() {
    burst_then_receive(42202, IoMode::Mmsg, false);
}

#[test]
fn burst_drops_with_gro_count_dropped_batches_uring() {
    if !common::uring_expected() {
        return;
    }
    burst_then_receive(42203, IoMode::Uring, true);
}

#[test]
fn burst_drops_with_gro_count_dropped_batches_mmsg() {
    burst_then_receive(42204, IoMode::Mmsg, true);
}

// ---- ping: the library's Pinger against the engine's Responder ---------------------

use canmc::ping::{PingIdentity, Pinger};
use canmc::wire::native::Role;

/// An engine on `port` that answers as a recorder named `host` with pid 4242, keyed if
/// `key` is given, after it has received `frames` python-can frames.
fn answering_engine(port: u16, key: Option<canmc::wire::native::AuthKey>, frames: u64) -> Engine {
    let net = McastConfig::loopback_v4(port);
    let rx = RecvSocket::open(&net).unwrap();
    let (source, _) =
        recv::open_source(rx.into_socket(), IoMode::Auto, &RecvConfig::default()).unwrap();
    let (engine, handles) = Engine::start(
        source,
        EngineConfig {
            poll_timeout: Duration::from_millis(20),
            answer_pings: Some(PingIdentity {
                role: Role::Record,
                host: "ping-test-host".into(),
                pid: 4242,
            }),
            auth_key: key,
            ..EngineConfig::default()
        },
    )
    .unwrap();
    drop(handles);
    let tx = SendSocket::open(&net).unwrap();
    let mut buf = [0u8; pycan::MAX_ENCODED];
    for i in 0..frames {
        let n = pycan::encode(&CanFrame::new(0x10, 0, &[i as u8]).unwrap(), &mut buf);
        tx.send(&buf[..n]).unwrap();
    }
    let deadline = Instant::now() + Duration::from_secs(5);
    while engine.stats().frames < frames {
        assert!(Instant::now() < deadline, "engine got {:?}", engine.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    engine
}

#[test]
fn pinger_hears_the_engine_answer_each_round() {
    let port = 42211;
    let engine = answering_engine(port, None, 3);
    let mut pinger = Pinger::open(&McastConfig::loopback_v4(port), None).unwrap();
    let mut streamed = 0;
    let report = pinger
        .run(2, Duration::from_millis(400), &|| false, &mut |_| {
            streamed += 1
        })
        .unwrap();
    assert_eq!(report.rounds, 2);
    assert_eq!(streamed, report.answers.len());
    let rounds: Vec<u32> = report.answers.iter().map(|a| a.round).collect();
    assert_eq!(rounds, [1, 2], "{report:?}");
    for a in &report.answers {
        assert_eq!(
            (a.host.as_str(), a.role, a.pid, a.frames_seen),
            ("ping-test-host", Role::Record, 4242, 3),
            "{a:?}"
        );
        assert!(a.from.ip().is_loopback(), "{a:?}");
        assert!(a.rtt < Duration::from_secs(1), "{a:?}");
        let json = serde_json::to_value(a).unwrap();
        assert_eq!(json["role"], "record", "{json}");
        assert_eq!(json["pid"], 4242, "{json}");
        assert_eq!(json["rtt_us"], a.rtt_us(), "{json}");
    }
    assert_eq!(report.receivers().len(), 1);
    assert_eq!(report.bad_auth, 0);
    assert_eq!(engine.stats().pings_answered, 2);
}

#[test]
fn ping_with_keys_hears_only_the_matching_responder() {
    let key = canmc::wire::native::AuthKey::from_bytes([7u8; 32]);
    let net = McastConfig::loopback_v4(42212);
    let engine = answering_engine(42212, Some(key), 0);
    let wait = Duration::from_millis(300);

    // The right key: answered, and the answer verifies.
    let mut good = Pinger::open(&net, Some(key)).unwrap();
    let r = good.run(1, wait, &|| false, &mut |_| {}).unwrap();
    assert_eq!(r.answers.len(), 1, "{r:?}");
    assert_eq!(r.answers[0].pid, 4242);

    // No key or another key: the keyed engine refuses the probe as bad_auth.
    let before = engine.stats().decode_error(canmc::DecodeError::BadAuth);
    for key in [
        None,
        Some(canmc::wire::native::AuthKey::from_bytes([8u8; 32])),
    ] {
        let mut p = Pinger::open(&net, key).unwrap();
        let r = p.run(1, wait, &|| false, &mut |_| {}).unwrap();
        assert!(r.answers.is_empty(), "{key:?}: {r:?}");
    }
    let deadline = Instant::now() + Duration::from_secs(2);
    while engine.stats().decode_error(canmc::DecodeError::BadAuth) < before + 2 {
        assert!(Instant::now() < deadline, "{:?}", engine.stats());
        std::thread::sleep(Duration::from_millis(5));
    }
    assert_eq!(engine.stats().pings_answered, 1);
    drop(engine);

    // A keyed pinger drops the unsealed answer of an unkeyed engine, and counts it.
    let plain = answering_engine(42213, None, 0);
    let mut p = Pinger::open(&McastConfig::loopback_v4(42213), Some(key)).unwrap();
    let r = p.run(1, wait, &|| false, &mut |_| {}).unwrap();
    assert!(r.answers.is_empty(), "{r:?}");
    assert_eq!((r.bad_auth, p.bad_auth()), (1, 1), "{r:?}");
    assert_eq!(plain.stats().pings_answered, 1);
}

#[test]
fn pinger_stops_when_asked() {
    let _engine = answering_engine(42214, None, 0);
    let mut p = Pinger::open(&McastConfig::loopback_v4(42214), None).unwrap();
    let t = Instant::now();
    let r = p
        .run(5, Duration::from_secs(10), &|| true, &mut |_| {})
        .unwrap();
    assert_eq!((r.rounds, r.answers.len()), (0, 0));
    assert!(t.elapsed() < Duration::from_secs(1));
    // A stop during the wait ends the round within the 100 ms check step.
    let t = Instant::now();
    let r = p
        .run(
            1,
            Duration::from_secs(10),
            &|| t.elapsed() > Duration::from_millis(300),
            &mut |_| {},
        )
        .unwrap();
    assert_eq!((r.rounds, r.answers.len()), (1, 1), "{r:?}");
    assert!(t.elapsed() < Duration::from_secs(2), "{:?}", t.elapsed());
}
