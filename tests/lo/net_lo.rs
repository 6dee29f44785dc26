//! The network layer end to end on loopback: sockets, the recvmmsg path and the batching
//! sender. Every packet stays on `lo` (group joined on 127.0.0.1, TTL 0). Each test has
//! its own port so tests running in parallel do not see each other's datagrams.

use crate::common;

use std::io;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use canmc::recv::mmsg::{MmsgSource, RecvConfig};
use canmc::recv::{DatagramSource, IoMode, RecvMeta};
use canmc::send::BatchSender;
use canmc::socket::{McastConfig, RecvSocket, SendSocket};
use common::now_ns;

const PORT_BASE: u16 = 41_300;

fn cfg(offset: u16) -> McastConfig {
    McastConfig::loopback_v4(PORT_BASE + offset)
}

fn source(cfg: &McastConfig, rc: &RecvConfig) -> MmsgSource {
    let sock = RecvSocket::open(cfg).expect("open receive socket on lo");
    MmsgSource::new(sock.into_socket(), rc).unwrap()
}

/// Receives until `want` datagrams arrived or nothing came for a second.
fn recv_n(src: &mut MmsgSource, want: usize) -> Vec<(Vec<u8>, RecvMeta)> {
    let mut got = Vec::new();
    let mut idle = Instant::now();
    while got.len() < want && idle.elapsed() < Duration::from_secs(1) {
        let n = src
            .poll(Duration::from_millis(50), &mut |d, m| {
                got.push((d.to_vec(), *m))
            })
            .unwrap();
        if n > 0 {
            idle = Instant::now();
        }
    }
    got
}

/// Everything that arrives within `quiet` of nothing arriving.
fn drain(src: &mut MmsgSource, quiet: Duration) -> Vec<(Vec<u8>, RecvMeta)> {
    let mut got = Vec::new();
    while src
        .poll(quiet, &mut |d, m| got.push((d.to_vec(), *m)))
        .unwrap()
        > 0
    {}
    got
}

/// Datagram `i` of a test stream: runs of equal sizes (longer than one GSO message),
/// odd sizes between, an empty one; tagged with `i` so order and content are checked.
fn payload(tag: u8, i: usize) -> Vec<u8> {
    const SIZES: [(usize, usize); 8] = [
        (16, 10),
        (72, 150),
        (33, 1),
        (72, 5),
        (5, 1),
        (1200, 3),
        (0, 1),
        (80, 30),
    ];
    let period: usize = SIZES.iter().map(|s| s.1).sum();
    let mut k = i % period;
    let mut len = 0;
    for (size, count) in SIZES {
        if k < count {
            len = size;
            break;
        }
        k -= count;
    }
    let mut d: Vec<u8> = (0..len).map(|b| (b as u8) ^ tag).collect();
    let id = (i as u32).to_le_bytes();
    let n = len.min(4);
    d[..n].copy_from_slice(&id[..n]);
    d
}

fn assert_stream(got: &[(Vec<u8>, RecvMeta)], tag: u8, n: usize, from: SocketAddr) {
    assert_eq!(got.len(), n, "datagrams received");
    let now = now_ns();
    for (i, (data, meta)) in got.iter().enumerate() {
        assert_eq!(data, &payload(tag, i), "datagram {i} content / order");
        assert_eq!(meta.sender.get(), Some(from), "datagram {i} sender");
        assert!(!meta.truncated, "datagram {i} truncated");
        assert_eq!(meta.kernel_drops, 0, "datagram {i} drops");
        let age = now.abs_diff(meta.timestamp_ns);
        assert!(
            age < 5_000_000_000,
            "datagram {i} kernel timestamp {age} ns off"
        );
    }
}

#[test]
fn send_socket_datagrams_arrive_in_order_with_metadata() {
    let c = cfg(0);
    let mut src = source(&c, &RecvConfig::default());
    assert_eq!(src.mode(), IoMode::Mmsg);
    let tx = SendSocket::open(&c).unwrap();
    assert_eq!(tx.local_addr().ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    assert_ne!(tx.local_addr().port(), 0);
    let n = 500;
    for i in 0..n {
        tx.send(&payload(1, i)).unwrap();
    }
    let got = recv_n(&mut src, n);
    assert_stream(&got, 1, n, tx.local_addr());
}

#[test]
fn batch_sender_datagrams_arrive_in_order_with_gso() {
    let c = cfg(1);
    let mut src = source(&c, &RecvConfig::default());
    let mut tx = BatchSender::new(SendSocket::open(&c).unwrap(), 1500);
    assert!(tx.gso_enabled(), "UDP GSO is available on this kernel");
    let from = tx.local_addr();
    let n = 1000;
    for i in 0..n {
        let d = payload(2, i);
        tx.push_with(|slot| {
            slot[..d.len()].copy_from_slice(&d);
            d.len()
        })
        .unwrap();
    }
    tx.flush().unwrap();
    assert_eq!(tx.pending(), 0);
    assert_eq!(tx.datagrams_sent(), n as u64);
    assert!(tx.gso_enabled(), "GSO was not refused on lo");
    // Runs of equal sizes were packed: far fewer messages than datagrams.
    assert!(
        tx.messages_sent() * 4 < n as u64,
        "{} messages for {n} datagrams",
        tx.messages_sent()
    );
    // 256 datagrams per flush: 4 sendmmsg calls, not one per datagram.
    assert!(tx.syscalls() <= 8, "{} syscalls for {n}", tx.syscalls());
    let got = recv_n(&mut src, n);
    assert_stream(&got, 2, n, from);
    assert!(drain(&mut src, Duration::from_millis(100)).is_empty());
}

/// GSO messages are as full as the kernel allows: as many segments as it takes (128 on
/// Linux 6.9+, else 64) for small datagrams, 64 KiB for MTU-sized ones; every datagram
/// still arrives, in order.
#[test]
fn gso_messages_fill_to_the_kernel_limits() {
    for (offset, size, n) in [(16u16, 64usize, 1024usize), (17, 1452, 450)] {
        let c = cfg(offset);
        let mut src = source(&c, &RecvConfig::default());
        let mut tx = BatchSender::new(SendSocket::open(&c).unwrap(), size);
        let segs = tx.max_segments();
        assert!(segs == 64 || segs == 128, "{segs} segments per message");
        // One flush for the whole run, so message boundaries come only from the limits.
        assert!(tx.batch_len() >= n, "batch of {} for {n}", tx.batch_len());
        let per_msg = segs.min(65_507 / size);
        let dgram = |i: usize| {
            let mut d = vec![(i % 251) as u8; size];
            d[..4].copy_from_slice(&(i as u32).to_le_bytes());
            d
        };
        for i in 0..n {
            tx.push(&dgram(i)).unwrap();
        }
        tx.flush().unwrap();
        assert_eq!(tx.datagrams_sent(), n as u64);
        assert_eq!(tx.syscalls(), 1, "{size}-byte datagrams: one sendmmsg");
        assert_eq!(
            tx.messages_sent(),
            n.div_ceil(per_msg) as u64,
            "{size}-byte datagrams, {per_msg} per message"
        );
        let got = recv_n(&mut src, n);
        assert_eq!(got.len(), n, "{size}-byte datagrams received");
        for (i, (d, _)) in got.iter().enumerate() {
            assert_eq!(d, &dgram(i), "{size}-byte datagram {i}");
        }
    }
}

/// UDP without checksums (`SO_NO_CHECK`) cannot be segmented, so the kernel refuses GSO
/// with EINVAL: the sender must fall back to plain sendmmsg and lose nothing.
#[test]
fn refused_gso_falls_back_without_losing_a_datagram() {
    use std::os::fd::AsRawFd;
    let c = cfg(14);
    let mut src = source(&c, &RecvConfig::default());
    let sock = SendSocket::open(&c).unwrap();
    let one: libc::c_int = 1;
    // SAFETY: a live c_int of the length passed; the kernel only reads it.
    let rc = unsafe {
        libc::setsockopt(
            sock.socket().as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_NO_CHECK,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    assert_eq!(rc, 0);
    let mut tx = BatchSender::new(sock, 1500);
    assert!(tx.gso_enabled());
    let from = tx.local_addr();
    let n = 600;
    for i in 0..n {
        tx.push(&payload(4, i)).unwrap();
    }
    tx.flush().unwrap();
    assert!(!tx.gso_enabled(), "kernel refused GSO, sender noticed");
    assert_eq!(tx.datagrams_sent(), n as u64);
    assert_eq!(tx.messages_sent(), n as u64);
    let got = recv_n(&mut src, n);
    assert_stream(&got, 4, n, from);
    assert!(drain(&mut src, Duration::from_millis(100)).is_empty());
}

#[test]
fn oversized_datagram_is_rejected_and_nothing_queued() {
    let c = cfg(2);
    let mut tx = BatchSender::new(SendSocket::open(&c).unwrap(), 100);
    let e = tx.push_with(|_| 101).unwrap_err();
    assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
    assert!(e.to_string().contains("101 bytes"), "{e}");
    assert_eq!(tx.pending(), 0);
    tx.push(b"a").unwrap();
    tx.push(b"bc").unwrap();
    assert_eq!(tx.pending(), 2);
    assert_eq!(tx.discard(), 2);
    tx.flush().unwrap();
    assert_eq!((tx.datagrams_sent(), tx.syscalls()), (0, 0));
}

#[test]
fn long_datagram_is_cut_and_flagged() {
    let c = cfg(3);
    let rc = RecvConfig {
        batch: 4,
        buf_size: 64,
        gro: false,
    };
    let mut src = source(&c, &rc);
    let tx = SendSocket::open(&c).unwrap();
    tx.send(&[7u8; 100]).unwrap();
    tx.send(&[8u8; 64]).unwrap();
    let got = recv_n(&mut src, 2);
    assert_eq!(got.len(), 2);
    assert_eq!(got[0].0, vec![7u8; 64]);
    assert!(got[0].1.truncated);
    assert_eq!(got[1].0, vec![8u8; 64]);
    assert!(!got[1].1.truncated);
}

#[test]
fn flood_into_small_buffer_counts_every_kernel_drop() {
    let mut c = cfg(4);
    c.rcvbuf = 16 << 10;
    let mut src = source(&c, &RecvConfig::default());
    let tx = SendSocket::open(&c).unwrap();
    let n = 3000;
    for i in 0..n {
        tx.send(&payload(3, i)).unwrap();
    }
    let mut got = drain(&mut src, Duration::from_millis(200));
    // The drop counter travels with datagrams: one more, sent into the now empty
    // queue, carries the final count.
    tx.send(b"last").unwrap();
    got.extend(recv_n(&mut src, 1));
    let (last, meta) = got.last().unwrap();
    assert_eq!(last, b"last");
    let drops = meta.kernel_drops as usize;
    assert!(drops > 0, "a 16 KiB buffer overflowed");
    assert_eq!(got.len() + drops, n + 1, "received + dropped == sent");
    // What did arrive is in order and intact.
    let mut next = 0;
    for (d, _) in &got[..got.len() - 1] {
        match (next..n).find(|&i| *d == payload(3, i)) {
            Some(i) => next = i + 1,
            None => panic!("datagram {d:?} out of order or corrupt"),
        }
    }
}

#[test]
fn receiver_sees_only_its_own_group() {
    let a = cfg(5);
    let mut b = cfg(5);
    b.group = IpAddr::V4(Ipv4Addr::new(239, 74, 163, 3));
    let mut ra = source(&a, &RecvConfig::default());
    let mut rb = source(&b, &RecvConfig::default());
    let ta = SendSocket::open(&a).unwrap();
    let tb = SendSocket::open(&b).unwrap();
    for i in 0..20u8 {
        tb.send(&[b'B', i]).unwrap();
        ta.send(&[b'A', i]).unwrap();
    }
    let got_a = drain(&mut ra, Duration::from_millis(200));
    let got_b = drain(&mut rb, Duration::from_millis(200));
    let want = |g: u8| (0..20u8).map(|i| vec![g, i]).collect::<Vec<_>>();
    assert_eq!(
        got_a.into_iter().map(|d| d.0).collect::<Vec<_>>(),
        want(b'A')
    );
    assert_eq!(
        got_b.into_iter().map(|d| d.0).collect::<Vec<_>>(),
        want(b'B')
    );
}

#[test]
fn two_receivers_on_one_port_both_get_everything() {
    let c = cfg(6);
    let mut r1 = source(&c, &RecvConfig::default());
    let mut r2 = source(&c, &RecvConfig::default());
    let tx = SendSocket::open(&c).unwrap();
    for i in 0..100u32 {
        tx.send(&i.to_le_bytes()).unwrap();
    }
    let want: Vec<Vec<u8>> = (0..100u32).map(|i| i.to_le_bytes().to_vec()).collect();
    for r in [&mut r1, &mut r2] {
        let got: Vec<Vec<u8>> = recv_n(r, 100).into_iter().map(|d| d.0).collect();
        assert_eq!(got, want);
    }
}

#[test]
fn source_filter_accepts_only_listed_senders() {
    let mut c = cfg(7);
    c.sources = vec![IpAddr::V4(Ipv4Addr::LOCALHOST)];
    let mut only_lo = source(&c, &RecvConfig::default());
    c.sources = vec![IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2))];
    let mut only_other = source(&c, &RecvConfig::default());
    let tx = SendSocket::open(&cfg(7)).unwrap();
    assert_eq!(tx.local_addr().ip(), IpAddr::V4(Ipv4Addr::LOCALHOST));
    for i in 0..10u8 {
        tx.send(&[i]).unwrap();
    }
    assert_eq!(recv_n(&mut only_lo, 10).len(), 10);
    assert!(drain(&mut only_other, Duration::from_millis(200)).is_empty());
}

#[test]
fn bad_group_or_interface_gives_a_clear_error() {
    let mut c = cfg(8);
    c.group = "10.1.2.3".parse().unwrap();
    for e in [
        RecvSocket::open(&c).err().unwrap(),
        SendSocket::open(&c).err().unwrap(),
    ] {
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        assert!(
            e.to_string().contains("10.1.2.3 is not a multicast group"),
            "{e}"
        );
    }
    let mut c = cfg(8);
    c.iface = Some("nosuchif0".into());
    for e in [
        RecvSocket::open(&c).err().unwrap(),
        SendSocket::open(&c).err().unwrap(),
    ] {
        assert_eq!(e.kind(), io::ErrorKind::NotFound);
        assert_eq!(e.to_string(), "interface 'nosuchif0' not found");
    }
    c.iface = Some("192.0.2.99".into());
    let e = RecvSocket::open(&c).err().unwrap();
    assert!(
        e.to_string()
            .contains("no interface has address 192.0.2.99"),
        "{e}"
    );
}

#[test]
fn iface_given_as_address_works_like_the_name() {
    let mut c = cfg(9);
    c.iface = Some("127.0.0.1".into());
    let mut src = source(&c, &RecvConfig::default());
    let tx = SendSocket::open(&c).unwrap();
    tx.send(b"by address").unwrap();
    let got = recv_n(&mut src, 1);
    assert_eq!(got.len(), 1);
    assert_eq!(got[0].0, b"by address");
}

fn sh(cmd: &str) {
    let st = std::process::Command::new("sh")
        .args(["-c", cmd])
        .status()
        .unwrap();
    assert!(st.success(), "`{cmd}` failed");
}

/// IPv6 multicast does not run on `lo`, so this test re-runs itself in a network
/// namespace of its own (`unshare -n`) with a veth pair v0 <-> v1: sender on v0,
/// receivers on v1, nothing reaches a real interface.
#[test]
fn ipv6_group_across_a_veth_pair_in_a_private_namespace() {
    let name = crate::common::test_name(
        module_path!(),
        "ipv6_group_across_a_veth_pair_in_a_private_namespace",
    );
    if std::env::var_os("CANMC_NET_IN_NETNS").is_none() {
        let out = std::process::Command::new("unshare")
            .arg("-n")
            .arg(std::env::current_exe().unwrap())
            .args(["--exact", &name, "--nocapture", "--test-threads=1"])
            .env("CANMC_NET_IN_NETNS", "1")
            .output()
            .expect("unshare (util-linux) is needed to make a network namespace");
        let text = String::from_utf8_lossy(&out.stdout).to_string()
            + &String::from_utf8_lossy(&out.stderr);
        assert!(out.status.success(), "namespaced run failed:\n{text}");
        assert!(
            text.contains("ipv6 checked"),
            "namespaced run did not check:\n{text}"
        );
        return;
    }
    // Inside the namespace: link-local addresses at once (no DAD wait), then the pair.
    sh(
        "ip link set lo up && sysctl -qw net.ipv6.conf.default.accept_dad=0 \
        && sysctl -qw net.ipv6.conf.all.accept_dad=0 \
        && ip link add v0 type veth peer name v1 && ip link set v0 up && ip link set v1 up",
    );
    let deadline = Instant::now() + Duration::from_secs(5);
    let mut tx_cfg = McastConfig::new(IpAddr::V6(canmc::socket::DEFAULT_GROUP_V6), PORT_BASE + 20);
    tx_cfg.iface = Some("v0".into());
    let tx = loop {
        // The source address appears once the link is up and has its link-local address.
        match SendSocket::open(&tx_cfg) {
            Ok(t) if t.local_addr().ip() != IpAddr::V6(std::net::Ipv6Addr::UNSPECIFIED) => break t,
            r if Instant::now() > deadline => panic!("v0 never became usable: {:?}", r.err()),
            _ => std::thread::sleep(Duration::from_millis(50)),
        }
    };
    let from = tx.local_addr();
    assert!(
        matches!(from.ip(), IpAddr::V6(a) if a.segments()[0] == 0xfe80),
        "{from}"
    );

    let mut rx_cfg = tx_cfg.clone();
    rx_cfg.iface = Some("v1".into());
    let mut any = source(&rx_cfg, &RecvConfig::default());
    rx_cfg.sources = vec![from.ip()];
    let mut from_v0 = source(&rx_cfg, &RecvConfig::default());
    rx_cfg.sources = vec!["fe80::dead".parse().unwrap()];
    let mut from_other = source(&rx_cfg, &RecvConfig::default());
    let mut other_group = rx_cfg.clone();
    other_group.sources.clear();
    other_group.group = "ff15::1234".parse().unwrap();
    let mut other = source(&other_group, &RecvConfig::default());

    let mut batch = BatchSender::new(tx, 1500);
    let n = 300;
    for i in 0..n {
        batch.push(&payload(6, i)).unwrap();
    }
    batch.flush().unwrap();
    for (name, r) in [("any source", &mut any), ("source-specific", &mut from_v0)] {
        let got = recv_n(r, n);
        assert_eq!(got.len(), n, "{name}");
        for (i, (d, m)) in got.iter().enumerate() {
            assert_eq!(d, &payload(6, i), "{name} datagram {i}");
            let s = m.sender.get().unwrap();
            assert_eq!((s.ip(), s.port()), (from.ip(), from.port()), "{name}");
        }
    }
    assert!(drain(&mut from_other, Duration::from_millis(200)).is_empty());
    assert!(drain(&mut other, Duration::from_millis(100)).is_empty());
    println!("ipv6 checked: {n} datagrams, GSO {}", batch.gso_enabled());
}

/// What `SO_RCVBUF` reads back after asking for `want` bytes without CAP_NET_ADMIN.
fn capped(want: usize) -> usize {
    let max: usize = std::fs::read_to_string("/proc/sys/net/core/rmem_max")
        .unwrap()
        .trim()
        .parse()
        .unwrap();
    2 * want.min(max)
}

#[test]
fn privileged_rcvbuf_is_granted_in_full() {
    let c = cfg(10);
    let s = RecvSocket::open(&c).unwrap();
    let got = s.socket().recv_buffer_size().unwrap();
    if has_net_admin() {
        assert!(got >= c.rcvbuf, "forced buffer {got} < {}", c.rcvbuf);
        assert!(s.warnings().is_empty(), "{:?}", s.warnings());
    } else {
        assert_eq!(got, capped(c.rcvbuf));
        assert_eq!(s.warnings().is_empty(), got >= c.rcvbuf);
    }
}

/// Capabilities are per thread in the kernel: drop CAP_NET_ADMIN in one thread and
/// open the socket there to take the unprivileged path even when running as root.
#[test]
fn unprivileged_rcvbuf_cap_is_reported() {
    let c = cfg(11);
    let (got, warnings) = std::thread::spawn(move || {
        drop_net_admin();
        assert!(!has_net_admin());
        let s = RecvSocket::open(&c).unwrap();
        (
            s.socket().recv_buffer_size().unwrap(),
            s.warnings().to_vec(),
        )
    })
    .join()
    .unwrap();
    let want = cfg(11).rcvbuf;
    assert_eq!(got, capped(want));
    if got < want {
        assert_eq!(warnings.len(), 1, "{warnings:?}");
        let w = &warnings[0];
        assert!(
            w.contains("capped at") && w.contains("(asked 32 MiB)"),
            "{w}"
        );
        assert!(w.contains("net.core.rmem_max"), "{w}");
    } else {
        assert!(warnings.is_empty(), "{warnings:?}");
    }
}

const CAP_NET_ADMIN: u32 = 12;

#[repr(C)]
struct CapHeader {
    version: u32,
    pid: i32,
}

#[repr(C)]
#[derive(Default, Clone, Copy)]
struct CapData {
    effective: u32,
    permitted: u32,
    inheritable: u32,
}

fn capget() -> [CapData; 2] {
    let mut hdr = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    let mut data = [CapData::default(); 2];
    // SAFETY: capget writes two CapData for version 3 headers; both are live locals.
    let rc = unsafe { libc::syscall(libc::SYS_capget, &mut hdr, data.as_mut_ptr()) };
    assert_eq!(rc, 0, "capget: {}", io::Error::last_os_error());
    data
}

fn has_net_admin() -> bool {
    capget()[0].effective & (1 << CAP_NET_ADMIN) != 0
}

fn drop_net_admin() {
    let mut data = capget();
    data[0].effective &= !(1 << CAP_NET_ADMIN);
    let mut hdr = CapHeader {
        version: 0x2008_0522,
        pid: 0,
    };
    // SAFETY: capset reads the header and two CapData; it changes only this thread.
    let rc = unsafe { libc::syscall(libc::SYS_capset, &mut hdr, data.as_ptr()) };
    assert_eq!(rc, 0, "capset: {}", io::Error::last_os_error());
}

/// Dropped by the network stack's per-CPU backlog (`netdev_max_backlog`), before any
/// socket: the second column of /proc/net/softnet_stat, summed over CPUs.
fn backlog_drops() -> u64 {
    std::fs::read_to_string("/proc/net/softnet_stat")
        .unwrap()
        .lines()
        .filter_map(|l| l.split_whitespace().nth(1))
        .map(|h| u64::from_str_radix(h, 16).unwrap())
        .sum()
}

/// Send rates on lo: one `send` per datagram vs `BatchSender` (sendmmsg + GSO), with an
/// mmsg receiver draining in another thread.
/// `cargo test --release --test net_lo measure -- --ignored --nocapture`
#[test]
#[ignore]
fn measure_send_rates() {
    const N: usize = 300_000;
    const LEN: usize = 72;
    for (k, batched) in [(12u16, false), (13, true)] {
        let c = cfg(k);
        let mut src = source(&c, &RecvConfig::default());
        // The receiver counts until the end marker, whose drop counter is final.
        let rx = std::thread::spawn(move || {
            let (mut n, mut drops, mut done) = (0usize, 0u32, false);
            while !done {
                src.poll(Duration::from_millis(20), &mut |d, m| {
                    if d == b"end" {
                        done = true;
                        drops = m.kernel_drops;
                    } else if !done {
                        n += 1;
                    }
                })
                .unwrap();
            }
            (n, drops)
        });
        let tx = SendSocket::open(&c).unwrap();
        let backlog_before = backlog_drops();
        let d = [0x5au8; LEN];
        let t = Instant::now();
        let (syscalls, tx) = if batched {
            let mut b = BatchSender::new(tx, LEN);
            for _ in 0..N {
                b.push(&d).unwrap();
            }
            b.flush().unwrap();
            println!("  GSO {}, {} messages", b.gso_enabled(), b.messages_sent());
            let s = b.syscalls();
            (s, SendSocket::open(&c).unwrap())
        } else {
            for _ in 0..N {
                tx.send(&d).unwrap();
            }
            (N as u64, tx)
        };
        let secs = t.elapsed().as_secs_f64();
        while !rx.is_finished() {
            tx.send(b"end").unwrap();
            std::thread::sleep(Duration::from_millis(50));
        }
        let (got, drops) = rx.join().unwrap();
        println!(
            "{:>12}: {N} x {LEN} B in {secs:.3} s = {:.0} datagrams/s, {syscalls} syscalls; \
             received {got}, socket drops {drops}, backlog drops {}",
            if batched { "BatchSender" } else { "send" },
            N as f64 / secs,
            backlog_drops() - backlog_before
        );
    }
}
