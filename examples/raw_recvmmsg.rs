//! The kernel's limit, as a baseline for `tools/bench_recv.py`: a minimal multicast
//! receiver that only counts datagrams and bytes (no decode, no timestamps, no ring).
//!
//! It joins a group on 127.0.0.1 with the same 32 MiB receive buffer canmc asks for,
//! drains the socket with `recvmmsg` into 256 fixed buffers, and reads the kernel's drop
//! counter (`SO_RXQ_OVFL`) from the control messages. It stops on SIGINT/SIGTERM, after
//! `--duration`, or after `-n` datagrams, and prints one JSON line on stdout:
//!
//! ```text
//! {"receiver":"raw_recvmmsg","datagrams":N,"bytes":N,"elapsed_s":F,"active_s":F,
//!  "kernel_drops":N,"rcvbuf":N}
//! ```
//!
//! `elapsed_s` runs from start to stop; `active_s` from the first to the last datagram.
//!
//! With `--gro` it turns on UDP GRO as canmc does, receives into 64 KiB buffers and counts
//! the datagrams of each coalesced receive from its `UDP_GRO` segment size; the line then
//! also has `"receives":N` (recvmmsg entries filled). `--iface-addr` must be a loopback
//! address, unless the process runs in a namespace `tools/netlab.sh` made (it marks them
//! with `NETLAB_OUTER_NS`; `10.77.0.i` exists only inside that lab).
//!
//! ```text
//! cargo run --release --example raw_recvmmsg -- [--group 239.74.163.2] [--port 43113]
//!     [--iface-addr 127.0.0.1] [--duration SECS] [-n COUNT] [--gro]
//! ```

use std::io;
use std::mem;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use socket2::{Domain, Protocol, Socket, Type};

/// Datagrams per `recvmmsg` call.
const BATCH: usize = 256;
/// Largest datagram kept whole; python-can frames are far smaller.
const BUF: usize = 2048;
/// With GRO: a coalesced receive is at most one 64 KiB UDP payload.
const GRO_BUF: usize = 65_536;
/// Room for one `SO_RXQ_OVFL` control message (and a spare).
const CMSG: usize = 64;
/// Same receive buffer as canmc's default, so the baseline has no unfair advantage.
const RCVBUF: usize = 32 << 20;

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

struct Args {
    group: Ipv4Addr,
    port: u16,
    iface: Ipv4Addr,
    duration: Option<Duration>,
    count: Option<u64>,
    gro: bool,
}

fn parse_args() -> Result<Args, String> {
    let mut a = Args {
        group: Ipv4Addr::new(239, 74, 163, 2),
        port: 43113,
        iface: Ipv4Addr::LOCALHOST,
        duration: None,
        count: None,
        gro: false,
    };
    let mut it = std::env::args().skip(1);
    while let Some(flag) = it.next() {
        let mut val = || it.next().ok_or(format!("{flag} needs a value"));
        match flag.as_str() {
            "--group" => a.group = val()?.parse().map_err(|e| format!("--group: {e}"))?,
            "--port" => a.port = val()?.parse().map_err(|e| format!("--port: {e}"))?,
            "--iface-addr" => a.iface = val()?.parse().map_err(|e| format!("--iface-addr: {e}"))?,
            "--duration" => {
                let s: f64 = val()?.parse().map_err(|e| format!("--duration: {e}"))?;
                a.duration = Some(Duration::from_secs_f64(s));
            }
            "-n" => a.count = Some(val()?.parse().map_err(|e| format!("-n: {e}"))?),
            "--gro" => a.gro = true,
            other => return Err(format!("unknown argument {other}")),
        }
    }
    if !a.iface.is_loopback() && !in_private_netns() {
        // Rule of this project: benchmarks stay on loopback or inside a lab namespace.
        return Err(format!(
            "--iface-addr {} is not a loopback address",
            a.iface
        ));
    }
    Ok(a)
}

fn setsockopt_int(sock: &Socket, level: i32, name: i32, v: i32) -> io::Result<()> {
    // SAFETY: `v` outlives the call and the length passed is its size.
    let r = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            (&v as *const i32).cast(),
            mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    if r == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

fn open(a: &Args) -> io::Result<Socket> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    sock.set_reuse_port(true)?;
    // As root SO_RCVBUFFORCE passes the rmem_max cap; otherwise take what the kernel gives.
    if setsockopt_int(&sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, RCVBUF as i32).is_err() {
        sock.set_recv_buffer_size(RCVBUF)?;
    }
    setsockopt_int(&sock, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1)?;
    if a.gro {
        setsockopt_int(&sock, libc::SOL_UDP, libc::UDP_GRO, 1)?;
    }
    sock.set_multicast_all_v4(false)?;
    sock.bind(&SocketAddr::V4(SocketAddrV4::new(a.group, a.port)).into())?;
    sock.join_multicast_v4(&a.group, &a.iface)?;
    // Wake up now and then to look at the stop flag.
    sock.set_read_timeout(Some(Duration::from_millis(50)))?;
    Ok(sock)
}

fn main() {
    let args = match parse_args() {
        Ok(a) => a,
        Err(e) => {
            eprintln!("raw_recvmmsg: {e}");
            std::process::exit(2);
        }
    };
    let sock = match open(&args) {
        Ok(s) => s,
        Err(e) => {
            eprintln!(
                "raw_recvmmsg: cannot open {}:{}: {e}",
                args.group, args.port
            );
            std::process::exit(1);
        }
    };
    let handler = on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t;
    // SAFETY: the handler only stores to an atomic, which is async-signal-safe.
    unsafe {
        libc::signal(libc::SIGINT, handler);
        libc::signal(libc::SIGTERM, handler);
    }
    let rcvbuf = sock.recv_buffer_size().unwrap_or(0);

    let buf_len = if args.gro { GRO_BUF } else { BUF };
    let mut bufs = vec![0u8; buf_len * BATCH];
    let mut cmsgs = vec![[0u64; CMSG / 8]; BATCH];
    // SAFETY: iovec and mmsghdr are plain C structs for which all-zero is valid.
    let mut iovs: Vec<libc::iovec> = vec![unsafe { mem::zeroed() }; BATCH];
    let mut hdrs: Vec<libc::mmsghdr> = vec![unsafe { mem::zeroed() }; BATCH];
    for i in 0..BATCH {
        iovs[i].iov_base = bufs[i * buf_len..].as_mut_ptr().cast();
        iovs[i].iov_len = buf_len;
    }

    let start = Instant::now();
    let mut first: Option<Instant> = None;
    let mut last = start;
    let (mut datagrams, mut bytes, mut drops, mut receives) = (0u64, 0u64, 0u64, 0u64);
    let fd = sock.as_raw_fd();
    while !STOP.load(Ordering::Relaxed) {
        if args.duration.is_some_and(|d| start.elapsed() >= d)
            || args.count.is_some_and(|n| datagrams >= n)
        {
            break;
        }
        for i in 0..BATCH {
            let h = &mut hdrs[i].msg_hdr;
            h.msg_iov = &mut iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = cmsgs[i].as_mut_ptr().cast();
            h.msg_controllen = CMSG as _;
            h.msg_name = std::ptr::null_mut();
            h.msg_namelen = 0;
            h.msg_flags = 0;
        }
        // SAFETY: every header points at live buffers of the lengths given, and `hdrs`
        // holds BATCH entries.
        let n = unsafe {
            libc::recvmmsg(
                fd,
                hdrs.as_mut_ptr(),
                BATCH as u32,
                libc::MSG_WAITFORONE,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::EAGAIN) | Some(libc::EINTR) => continue,
                _ => {
                    eprintln!("raw_recvmmsg: recvmmsg: {e}");
                    std::process::exit(1);
                }
            }
        }
        let now = Instant::now();
        first.get_or_insert(now);
        last = now;
        for h in &hdrs[..n as usize] {
            receives += 1;
            bytes += u64::from(h.msg_len);
            let (ovfl, seg) = control(&h.msg_hdr);
            if let Some(d) = ovfl {
                drops = d;
            }
            // A coalesced receive holds len / seg datagrams, the last one maybe shorter.
            datagrams += match seg {
                Some(seg) if seg > 0 => u64::from(h.msg_len).div_ceil(u64::from(seg)).max(1),
                _ => 1,
            };
        }
    }
    let elapsed = start.elapsed().as_secs_f64();
    let active = first.map_or(0.0, |f| last.duration_since(f).as_secs_f64());
    println!(
        "{{\"receiver\":\"raw_recvmmsg\",\"datagrams\":{datagrams},\"bytes\":{bytes},\
         \"elapsed_s\":{elapsed:.6},\"active_s\":{active:.6},\"kernel_drops\":{drops},\
         \"rcvbuf\":{rcvbuf},\"receives\":{receives},\"gro\":{}}}",
        args.gro
    );
}

/// Whether this process runs in a network namespace made for it: one other than the
/// namespace `tools/netlab.sh` (or a bench script) recorded before unsharing
/// (`NETLAB_OUTER_NS`, `CANMC_BENCH_OUTER_NS`), and other than pid 1's where that is
/// readable. Without such a mark the answer is no, and only loopback is allowed.
fn in_private_netns() -> bool {
    let Ok(mine) = std::fs::read_link("/proc/self/ns/net") else {
        return false;
    };
    let mine = mine.to_string_lossy().into_owned();
    let outer: Vec<String> = ["NETLAB_OUTER_NS", "CANMC_BENCH_OUTER_NS"]
        .iter()
        .filter_map(|k| std::env::var(k).ok())
        .filter(|v| !v.is_empty())
        .collect();
    if outer.is_empty() || outer.contains(&mine) {
        return false;
    }
    match std::fs::read_link("/proc/1/ns/net") {
        Ok(init) => init.to_string_lossy() != mine,
        Err(_) => true,
    }
}

/// The socket's cumulative drop count and the GRO segment size, where the kernel
/// attached them to this receive.
fn control(h: &libc::msghdr) -> (Option<u64>, Option<u32>) {
    let (mut ovfl, mut seg) = (None, None);
    // SAFETY: `h` was filled by recvmmsg; the CMSG macros stay within msg_controllen.
    unsafe {
        let mut c = libc::CMSG_FIRSTHDR(h);
        while !c.is_null() {
            if (*c).cmsg_level == libc::SOL_SOCKET && (*c).cmsg_type == libc::SO_RXQ_OVFL {
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<u32>());
                ovfl = Some(u64::from(v));
            } else if (*c).cmsg_level == libc::SOL_UDP && (*c).cmsg_type == libc::UDP_GRO {
                // The kernel writes the segment size as an int.
                let v = std::ptr::read_unaligned(libc::CMSG_DATA(c).cast::<libc::c_int>());
                seg = u32::try_from(v).ok();
            }
            c = libc::CMSG_NXTHDR(h, c);
        }
    }
    (ovfl, seg)
}
