//! UDP GRO on the receive path (IPv4 on `lo`, TTL 0): a GSO sender puts many native
//! datagrams into one `sendmsg`; with GRO on, canmc receives each batch as one
//! super-datagram, splits it at the segment size and decodes and counts every datagram
//! as if it had come alone (`coalesced` counts the batches); with GRO off the same
//! frames arrive one datagram per receive. python-can datagrams (no GSO) are not
//! affected. Both receive paths, the library and the CLI.

use std::net::SocketAddrV4;
use std::time::{Duration, Instant};

use crate::common;

use canmc::engine::{Engine, EngineConfig, Event, Stats};
use canmc::frame::{flags, Channel};
use canmc::recv::{self, IoMode, RecvConfig};
use canmc::socket::{McastConfig, RecvSocket, SendSocket};
use canmc::wire::{native, pycan};
use canmc::CanFrame;
use common::udp::{gso_sender, GROUP};
use common::{json_field, json_u64, serial, settle, spawn};
use socket2::SockAddr;

/// Every full datagram is padded to this size: GSO needs equal segments.
const SEG: usize = 400;
/// Frames in a full datagram.
const FULL: u32 = 10;
/// Frames in the last, shorter datagram of each send.
const TAIL: u32 = 3;
/// Datagrams per GSO send (the kernel takes at most 64 segments).
const PER_SEND: u32 = 40;
const SENDS: u32 = 25;
const DATAGRAMS: u64 = (SENDS * PER_SEND) as u64;
const FRAMES: u64 = (SENDS * ((PER_SEND - 1) * FULL + TAIL)) as u64;

/// Frame `i` of the stream: its index as the identifier and in the payload.
fn frame(i: u32) -> CanFrame {
    CanFrame::new(i, flags::EXTENDED, &u64::from(i).to_le_bytes()).unwrap()
}

/// The whole stream as `SENDS` GSO payloads: `PER_SEND - 1` native datagrams of exactly
/// `SEG` bytes and a shorter one, sequence numbers running on across sends.
fn gso_payloads(sender_id: u32) -> Vec<Vec<u8>> {
    let mut enc = native::Encoder::new(sender_id, SEG);
    let mut next = 0u32;
    let mut seq = 0u64;
    (0..SENDS)
        .map(|_| {
            let mut out = Vec::new();
            for d in 0..PER_SEND {
                let last = d + 1 == PER_SEND;
                let mut buf = [0u8; SEG];
                enc.begin(&mut buf, seq, Channel::NONE, 0);
                for _ in 0..if last { TAIL } else { FULL } {
                    assert!(enc.push(&mut buf, &frame(next)));
                    next += 1;
                }
                let len = if last {
                    enc.finish(&mut buf)
                } else {
                    enc.finish_padded(&mut buf, SEG)
                };
                assert_eq!(len == SEG, !last, "datagram {d}: {len} bytes");
                out.extend_from_slice(&buf[..len]);
                seq += 1;
            }
            out
        })
        .collect()
}

/// Sends the stream to `port` from a GSO socket, one `sendmsg` per payload.
fn send_stream(port: u16) {
    let tx = gso_sender(SEG as u16);
    let to: SockAddr = SocketAddrV4::new(GROUP, port).into();
    for p in gso_payloads(native::random_sender_id()) {
        assert_eq!(tx.send_to(&p, &to).unwrap(), p.len());
        // A short breath between batches keeps lo's backlog far from full.
        std::thread::sleep(Duration::from_millis(2));
    }
}

/// Runs an engine on a fresh socket at `port` while the GSO stream is sent; returns the
/// counters, whether the source used GRO, and the frame identifiers in arrival order.
fn receive(port: u16, io: IoMode, gro: bool) -> (Stats, bool, Vec<u32>) {
    let net = McastConfig::loopback_v4(port);
    let rx = RecvSocket::open(&net).unwrap();
    let rc = RecvConfig {
        gro,
        ..RecvConfig::default()
    };
    let (source, note) = recv::open_source(rx.into_socket(), io, &rc).unwrap();
    assert!(note.is_none(), "{io:?}: {note:?}");
    assert_eq!(source.mode(), io);
    let cfg = EngineConfig {
        poll_timeout: Duration::from_millis(20),
        answer_pings: None,
        ..EngineConfig::default()
    };
    let (engine, mut handles) = Engine::start(source, cfg).unwrap();
    let used_gro = engine.gro();
    send_stream(port);
    let mut ids = Vec::with_capacity(FRAMES as usize);
    let deadline = Instant::now() + Duration::from_secs(10);
    while (ids.len() as u64) < FRAMES && Instant::now() < deadline {
        match handles[0].recv_timeout(Duration::from_millis(50)) {
            Some(Event::Frame(f)) => {
                let i = f.id;
                assert_eq!(f.payload(), &u64::from(i).to_le_bytes(), "frame {i}");
                ids.push(i);
            }
            Some(other) => panic!("{io:?} gro {gro}: unexpected {other:?}"),
            None => {}
        }
    }
    engine.stop();
    let stats = engine.stats();
    engine.join().unwrap();
    (stats, used_gro, ids)
}

fn gso_stream_arrives_whole(port: u16, io: IoMode) {
    let expected: Vec<u32> = (0..FRAMES as u32).collect();
    // GRO on (the default): each GSO send comes in as one or a few receives.
    let (on, gro, ids) = receive(port, io, true);
    assert!(
        gro,
        "{io:?}: GRO should be on with kernel UDP GRO (Linux 5.0+)"
    );
    assert_eq!(
        ids, expected,
        "{io:?} with GRO: frames missing or out of order"
    );
    assert_eq!(on.frames, FRAMES, "{on:?}");
    assert_eq!(on.datagrams, DATAGRAMS, "{on:?}");
    assert_eq!(on.bytes, u64::from(SENDS) * gso_payloads(1)[0].len() as u64);
    assert_eq!(
        (on.kernel_drops, on.seq_gaps, on.duplicates),
        (0, 0, 0),
        "{on:?}"
    );
    assert_eq!(on.decode_errors_total(), 0, "{on:?}");
    assert!(
        on.coalesced > 0 && on.coalesced <= DATAGRAMS / 2,
        "{io:?}: {} coalesced receives for {SENDS} GSO sends",
        on.coalesced
    );
    // GRO off: the kernel splits the same sends, one datagram per receive.
    let (off, gro, ids) = receive(port + 1, io, false);
    assert!(!gro);
    assert_eq!(ids, expected, "{io:?} without GRO");
    assert_eq!((off.frames, off.datagrams), (FRAMES, DATAGRAMS), "{off:?}");
    assert_eq!(off.bytes, on.bytes);
    assert_eq!(off.coalesced, 0, "{off:?}");
    assert_eq!((off.kernel_drops, off.seq_gaps), (0, 0), "{off:?}");
    eprintln!(
        "{io:?}: {DATAGRAMS} datagrams in {SENDS} GSO sends: {} coalesced receives with GRO",
        on.coalesced
    );
}

#[test]
fn gso_stream_with_and_without_gro_mmsg() {
    let _turn = serial();
    gso_stream_arrives_whole(42_611, IoMode::Mmsg);
}

#[test]
fn gso_stream_with_and_without_gro_uring() {
    if !common::uring_expected() {
        return;
    }
    let _turn = serial();
    gso_stream_arrives_whole(42_613, IoMode::Uring);
}

/// python-can senders do not use GSO: with GRO on, each datagram is still one receive.
#[test]
fn pycan_datagrams_are_not_coalesced() {
    let _turn = serial();
    for (port, io) in [(42_615, IoMode::Mmsg), (42_616, IoMode::Uring)] {
        if io == IoMode::Uring && !common::uring_expected() {
            continue;
        }
        let net = McastConfig::loopback_v4(port);
        let rx = RecvSocket::open(&net).unwrap();
        let (source, _) = recv::open_source(rx.into_socket(), io, &RecvConfig::default()).unwrap();
        let cfg = EngineConfig {
            answer_pings: None,
            ..EngineConfig::default()
        };
        let (engine, mut handles) = Engine::start(source, cfg).unwrap();
        assert!(engine.gro());
        let tx = SendSocket::open(&net).unwrap();
        const N: u64 = 300;
        let mut bytes = 0;
        for i in 0..N {
            let mut buf = [0u8; pycan::MAX_ENCODED];
            let n = pycan::encode(
                &CanFrame::new(0x100, 0, &i.to_le_bytes()).unwrap(),
                &mut buf,
            );
            tx.send(&buf[..n]).unwrap();
            bytes += n as u64;
        }
        let mut got = 0u64;
        let deadline = Instant::now() + Duration::from_secs(5);
        while got < N && Instant::now() < deadline {
            if let Some(Event::Frame(f)) = handles[0].recv_timeout(Duration::from_millis(50)) {
                assert_eq!(f.payload(), &got.to_le_bytes());
                got += 1;
            }
        }
        engine.stop();
        let s = engine.stats();
        engine.join().unwrap();
        assert_eq!(
            (got, s.frames, s.datagrams, s.bytes),
            (N, N, N, bytes),
            "{io:?}: {s:?}"
        );
        assert_eq!(s.coalesced, 0, "{io:?}: {s:?}");
    }
}

/// `canmc dump` turns GRO on by default and says so; `--no-gro` turns it off.
#[test]
fn dump_reports_gro_and_no_gro_turns_it_off() {
    let _turn = serial();
    for (port, extra) in [(42_617u16, None), (42_618, Some("--no-gro"))] {
        let p = port.to_string();
        let count = FRAMES.to_string();
        let mut args = vec![
            "dump",
            "--iface",
            "lo",
            "--port",
            &p,
            "-q",
            "-n",
            &count,
            "--duration",
            "15",
            "--no-answer",
            "--json",
        ];
        args.extend(extra);
        let dump = spawn(&args);
        settle();
        send_stream(port);
        let out = dump.wait_with_output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "{stderr}");
        let text = String::from_utf8(out.stdout).unwrap();
        let summary = text.lines().last().unwrap_or_default();
        let want_gro = extra.is_none();
        assert_eq!(
            json_field(summary, "gro"),
            Some(if want_gro { "true" } else { "false" }),
            "{summary}"
        );
        assert_eq!(json_u64(summary, "frames"), FRAMES, "{summary}");
        assert_eq!(json_u64(summary, "datagrams"), DATAGRAMS, "{summary}");
        assert_eq!(json_u64(summary, "decode_errors_total"), 0, "{summary}");
        assert_eq!(json_u64(summary, "coalesced") > 0, want_gro, "{summary}");
    }
}
