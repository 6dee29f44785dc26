//! No heap allocation per frame: ≥ 100 000 python-can datagrams through source → decode
//! → ring → consumer, counted by a global allocator in every thread of the process.
//!
//! One test only in this binary: a second test running in parallel would allocate
//! inside the measured window.

mod common;

use std::io;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use canmc::engine::{Dispatch, Engine, EngineConfig, Event};
use canmc::recv::{DatagramSource, IoMode, RecvMeta};
use canmc::wire::pycan::{self, MAX_ENCODED};
use canmc::{CanFrame, SenderAddr};
use common::alloc::{all_allocs, assert_counter_works};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

/// Cycles through a fixed set of encoded datagrams forever, a batch per poll, with
/// metadata built in place (as a real source fills it from control messages).
struct LoopSource {
    datagrams: Vec<Vec<u8>>,
    next: usize,
    sent: Arc<AtomicUsize>,
    limit: usize,
}

impl DatagramSource for LoopSource {
    fn poll(
        &mut self,
        timeout: Duration,
        on_datagram: &mut dyn FnMut(&[u8], &RecvMeta),
    ) -> io::Result<usize> {
        if self.next >= self.limit {
            thread::sleep(timeout.min(Duration::from_millis(1)));
            return Ok(0);
        }
        let end = self.limit.min(self.next + 64);
        for i in self.next..end {
            let meta = RecvMeta {
                timestamp_ns: 1_700_000_000_000_000_000 + i as u64,
                sender: SenderAddr::from(std::net::SocketAddr::from(([127, 0, 0, 1], 4000))),
                kernel_drops: (i / 10_000) as u32, // grows now and then: KernelDrops events
                truncated: false,
                // As from a UDP GRO receive: datagrams in fours, one super-datagram each.
                gro_size: 0,
                segment: (i % 4) as u32,
                segments: 4,
            };
            on_datagram(&self.datagrams[i % self.datagrams.len()], &meta);
        }
        let n = end - self.next;
        self.next = end;
        self.sent.store(end, Ordering::Release);
        Ok(n)
    }

    fn mode(&self) -> IoMode {
        IoMode::Mmsg
    }
}

#[test]
fn steady_state_receive_path_does_not_allocate() {
    const WARMUP: u64 = 10_000;
    const MEASURED: u64 = 110_000;
    // Enough that the window fills however the warm-up lands; the rest may be dropped
    // at a full ring once the test stops reading, which is fine.
    const TOTAL: u64 = 400_000;
    assert_counter_works();

    // A spread of frame kinds: classic, extended, remote, FD 64 bytes, string channel.
    let mut datagrams = Vec::new();
    for i in 0..64u32 {
        let mut f = match i % 4 {
            0 => CanFrame::new(i, 0, &i.to_le_bytes()).unwrap(),
            1 => CanFrame::new(0x1234_5600 | i, canmc::frame::flags::EXTENDED, &[7; 8]).unwrap(),
            2 => CanFrame::remote(i, false, 4).unwrap(),
            _ => CanFrame::new(
                i,
                canmc::frame::flags::FD | canmc::frame::flags::BRS,
                &[i as u8; 64],
            )
            .unwrap(),
        };
        if i % 8 == 7 {
            f.channel = canmc::Channel::str("vcan0").unwrap();
        }
        let mut buf = [0u8; MAX_ENCODED];
        let n = pycan::encode(&f, &mut buf);
        datagrams.push(buf[..n].to_vec());
    }
    // One bad datagram per round of 64 is an error path to keep allocation-free too.
    datagrams[33] = vec![0x93, 1, 2, 3];

    let sent = Arc::new(AtomicUsize::new(0));
    let src = LoopSource {
        datagrams,
        next: 0,
        sent: Arc::clone(&sent),
        limit: TOTAL as usize,
    };
    let cfg = EngineConfig {
        consumers: 2,
        ring_capacity: 1 << 16,
        dispatch: Dispatch::ById,
        poll_timeout: Duration::from_millis(10),
        ..EngineConfig::default()
    };
    let (engine, mut handles) = Engine::start(Box::new(src), cfg).unwrap();

    // Consumer 1 on a pinned worker thread, consumer 0 right here.
    let worker_frames = Arc::new(AtomicU64::new(0));
    let wf = Arc::clone(&worker_frames);
    let worker = Engine::spawn_worker(handles.pop().unwrap(), Some(0), move |ev| {
        if let Event::Frame(f) = ev {
            std::hint::black_box(f);
            wf.fetch_add(1, Ordering::Relaxed);
        }
    });
    let mut h = handles.pop().unwrap();
    let counters = engine.counters();

    let mut here_frames = 0u64;
    let mut buf = [Event::default(); 32];
    let mut window_start = None;
    let deadline = Instant::now() + Duration::from_secs(60);
    loop {
        assert!(
            Instant::now() < deadline,
            "stalled: {:?}",
            counters.snapshot()
        );
        let n = h.pop_batch(&mut buf);
        for ev in &buf[..n] {
            if let Event::Frame(f) = ev {
                here_frames += u64::from(f.timestamp_ns != 0);
            }
        }
        if n == 0 {
            h.wait(Duration::from_millis(5));
        }
        let delivered = here_frames + worker_frames.load(Ordering::Relaxed);
        let s = counters.snapshot();
        if window_start.is_none() && delivered >= WARMUP {
            window_start = Some((all_allocs(), s.frames, delivered));
        }
        if let Some((allocs0, frames0, delivered0)) = window_start {
            if s.frames - frames0 >= MEASURED && delivered - delivered0 >= MEASURED {
                let allocs = all_allocs() - allocs0;
                assert_eq!(
                    allocs,
                    0,
                    "{allocs} allocations while {} frames were received and {} delivered",
                    s.frames - frames0,
                    delivered - delivered0
                );
                break;
            }
        }
    }
    let s = counters.snapshot();
    assert_eq!(
        s.ring_drops, 0,
        "the measured frames all reached a consumer"
    );
    assert!(s.decode_errors_total() > 0, "error path exercised");
    assert!(s.kernel_drops > 0, "kernel-drop path exercised");
    assert_eq!(
        s.coalesced,
        s.datagrams.div_ceil(4),
        "coalesced-receive path exercised"
    );
    assert!(here_frames > 0 && worker_frames.load(Ordering::Relaxed) > 0);
    assert!(sent.load(Ordering::Acquire) as u64 >= WARMUP + MEASURED);
    engine.stop();
    engine.join().unwrap();
    worker.join().unwrap();
}
