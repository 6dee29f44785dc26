//! The blocking Bus on loopback (IPv4 on `lo`, TTL 0): two buses talk, own frames are
//! dropped unless asked for, invalid frames never reach the wire.

use crate::common;

use std::time::{Duration, Instant};

use canmc::bus::{Bus, BusConfig, SendError};
use canmc::recv::IoMode;
use canmc::socket::McastConfig;
use canmc::{CanFrame, Channel, FrameError};
use common::now_ns;

fn bus(port: u16, io: IoMode, recv_own: bool) -> Bus {
    let mut cfg = BusConfig::new(McastConfig::loopback_v4(port));
    cfg.io = io;
    cfg.recv_own = recv_own;
    Bus::open(&cfg).expect("open bus on lo")
}

#[test]
fn two_buses_exchange_every_kind_on_both_io_paths() {
    for (port, io) in [(42101, IoMode::Uring), (42102, IoMode::Mmsg)] {
        if io == IoMode::Uring && !common::uring_expected() {
            continue;
        }
        let mut a = bus(port, io, false);
        let mut b = bus(port, io, false);
        assert_eq!(b.io_mode(), io);
        let texts = [
            "123#DEADBEEF",
            "1FFFFFFF#0011223344556677",
            "7FF#R",
            "123#R8",
            "20000004#0000000000000000",
            "123##0",
            "123##1000102030405060708090A0B0C0D0E0F",
            "12345678##3AA",
        ];
        let mut sent = Vec::new();
        for (i, t) in texts.iter().enumerate() {
            let mut f: CanFrame = t.parse().unwrap();
            f.channel = match i % 3 {
                0 => Channel::NONE,
                1 => Channel::int(i as i64),
                _ => Channel::str("can1").unwrap(),
            };
            a.send(&f).unwrap();
            sent.push(f);
        }
        for want in &sent {
            let got = b
                .recv(Duration::from_secs(2))
                .unwrap()
                .unwrap_or_else(|| panic!("{io:?}: {want} did not arrive"));
            assert_eq!(got.content(), want.content(), "{io:?}");
            assert_eq!(got.channel, want.channel, "{io:?}");
            assert_eq!(got.sender.get(), Some(a.local_addr()));
            assert!(
                now_ns().abs_diff(got.timestamp_ns) < 5_000_000_000,
                "kernel timestamp"
            );
        }
        // The sender does not hear itself by default.
        assert_eq!(a.recv(Duration::from_millis(200)).unwrap(), None);
        assert_eq!(a.counters().own_dropped, texts.len() as u64);
        assert_eq!(b.counters().received.frames, texts.len() as u64);
    }
}

#[test]
fn own_frames_on_request() {
    let mut a = bus(42103, IoMode::Auto, true);
    let f: CanFrame = "321#0102".parse().unwrap();
    a.send(&f).unwrap();
    let got = a.recv(Duration::from_secs(2)).unwrap().expect("own frame");
    assert_eq!(got.content(), f.content());
}

#[test]
fn invalid_frames_are_refused_and_not_sent() {
    let mut a = bus(42104, IoMode::Auto, false);
    let mut b = bus(42104, IoMode::Auto, false);
    let mut bad: CanFrame = "123#00".parse().unwrap();
    bad.len = 9;
    match a.send(&bad) {
        Err(SendError::Invalid(FrameError::ClassicTooLong(9))) => {}
        other => panic!("expected ClassicTooLong, got {other:?}"),
    }
    let mut brs: CanFrame = "123#00".parse().unwrap();
    brs.flags |= canmc::frame::flags::BRS;
    assert!(matches!(
        a.send(&brs),
        Err(SendError::Invalid(FrameError::BrsWithoutFd))
    ));
    assert_eq!(a.counters().frames_sent, 0);
    assert_eq!(b.recv(Duration::from_millis(300)).unwrap(), None);
    assert_eq!(b.counters().received.datagrams, 0);
}

#[test]
fn recv_times_out() {
    let mut a = bus(42105, IoMode::Auto, false);
    let start = Instant::now();
    assert_eq!(a.recv(Duration::from_millis(150)).unwrap(), None);
    let waited = start.elapsed();
    assert!(
        waited >= Duration::from_millis(140),
        "returned early: {waited:?}"
    );
    assert!(waited < Duration::from_secs(2), "returned late: {waited:?}");
}

#[test]
fn ttl_is_one_by_default_and_zero_on_request() {
    use std::os::fd::AsRawFd;
    let ttl_of = |cfg: &McastConfig| {
        let sock = canmc::socket::SendSocket::open(cfg).unwrap();
        let mut ttl: libc::c_int = -1;
        let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
        // SAFETY: getsockopt writes at most `len` bytes into `ttl`, which outlives the call.
        let rc = unsafe {
            libc::getsockopt(
                sock.socket().as_raw_fd(),
                libc::IPPROTO_IP,
                libc::IP_MULTICAST_TTL,
                (&mut ttl as *mut libc::c_int).cast(),
                &mut len,
            )
        };
        assert_eq!(rc, 0);
        ttl
    };
    // python-can's hop limit: frames never cross a router unless asked.
    let mut cfg = McastConfig::new("239.74.163.2".parse().unwrap(), 42106);
    cfg.iface = Some("lo".into());
    assert_eq!(cfg.ttl, 1);
    assert_eq!(ttl_of(&cfg), 1);
    assert_eq!(ttl_of(&McastConfig::loopback_v4(42106)), 0);
}
