//! Proves the io_uring receive loop allocates nothing in steady state: 100 000 loopback
//! multicast datagrams through `UringSource::poll` under a counting global allocator.

use std::alloc::{GlobalAlloc, Layout, System};
use std::cell::Cell;
use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use canmc::recv::uring::{UringSource, DEFAULT_BUF_COUNT, DEFAULT_BUF_SIZE};
use canmc::recv::{DatagramSource, RecvMeta};
use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// Counts allocations made by threads that switched counting on, so the test harness'
/// own threads cannot disturb the figure.
struct Counting;

thread_local! {
    static COUNTING: Cell<bool> = const { Cell::new(false) };
    static ALLOCS: Cell<u64> = const { Cell::new(0) };
}

fn note_alloc() {
    // try_with: the allocator may run while thread-locals are being torn down.
    let _ = COUNTING.try_with(|on| {
        if on.get() {
            let _ = ALLOCS.try_with(|n| n.set(n.get() + 1));
        }
    });
}

// SAFETY: forwards every call unchanged to the system allocator; the bookkeeping touches
// only const-initialised thread-locals, which never allocate.
unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc(layout) }
    }
    unsafe fn alloc_zeroed(&self, layout: Layout) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as our caller's.
        unsafe { System.alloc_zeroed(layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        note_alloc();
        // SAFETY: same contract as our caller's.
        unsafe { System.realloc(ptr, layout, new_size) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        // SAFETY: same contract as our caller's.
        unsafe { System.dealloc(ptr, layout) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 74, 163, 2);
const PORT: u16 = 41010;

fn setsockopt_int(s: &Socket, name: i32, value: i32) {
    // SAFETY: passing a pointer to a live i32 and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            libc::SOL_SOCKET,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt {name}: {}",
        std::io::Error::last_os_error()
    );
}

fn receiver() -> Socket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&SocketAddrV4::new(GROUP, PORT).into()).unwrap();
    s.join_multicast_v4(&GROUP, &Ipv4Addr::LOCALHOST).unwrap();
    setsockopt_int(&s, libc::SO_TIMESTAMPNS, 1);
    setsockopt_int(&s, libc::SO_RXQ_OVFL, 1);
    s.set_recv_buffer_size(4 << 20).unwrap();
    s
}

fn sender() -> Socket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.bind(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0).into())
        .unwrap();
    s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    s.set_multicast_ttl_v4(0).unwrap();
    s.set_multicast_loop_v4(true).unwrap();
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
    const WARMUP: u64 = 2_000;
    const N: u64 = 100_000;
    let mut src = UringSource::new(receiver(), 64, DEFAULT_BUF_SIZE, DEFAULT_BUF_COUNT).unwrap();
    let tx = sender();
    let to: SockAddr = SocketAddrV4::new(GROUP, PORT).into();
    let mut seen = Seen::default();
    run(&mut src, &tx, &to, 0, WARMUP, &mut seen);

    COUNTING.with(|c| c.set(true));
    let started = Instant::now();
    run(&mut src, &tx, &to, WARMUP, N, &mut seen);
    let secs = started.elapsed().as_secs_f64();
    COUNTING.with(|c| c.set(false));
    let allocs = ALLOCS.with(Cell::get);

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
