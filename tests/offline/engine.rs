//! The receive engine end to end, fed by an in-memory datagram source: dispatch, ring
//! overflow, malformed input, sender filters, counters, stopping, pinned workers.

use std::collections::HashMap;
use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use canmc::engine::{consumer_for, ConsumerHandle, Dispatch, Engine, EngineConfig, Event};
use canmc::frame::flags;
use canmc::recv::{DatagramSource, IoMode, RecvMeta};
use canmc::wire::pycan::{self, MAX_ENCODED};
use canmc::wire::{self, DecodeError, WireFormat};
use canmc::{CanFrame, SenderAddr};

/// Hands out prebuilt datagrams, `batch` per poll, but never beyond `allowed` (so a test
/// can release traffic in steps), then idles like a quiet socket.
struct FakeSource {
    items: Vec<(Vec<u8>, RecvMeta)>,
    next: usize,
    batch: usize,
    allowed: Arc<AtomicUsize>,
}

impl FakeSource {
    fn new(items: Vec<(Vec<u8>, RecvMeta)>) -> (Box<FakeSource>, Arc<AtomicUsize>) {
        let allowed = Arc::new(AtomicUsize::new(usize::MAX));
        let src = FakeSource {
            items,
            next: 0,
            batch: 32,
            allowed: Arc::clone(&allowed),
        };
        (Box::new(src), allowed)
    }
}

impl DatagramSource for FakeSource {
    fn poll(
        &mut self,
        timeout: Duration,
        on_datagram: &mut dyn FnMut(&[u8], &RecvMeta),
    ) -> io::Result<usize> {
        let limit = self.items.len().min(self.allowed.load(Ordering::Acquire));
        if self.next >= limit {
            thread::sleep(timeout.min(Duration::from_millis(2)));
            return Ok(0);
        }
        let end = limit.min(self.next + self.batch);
        for (d, m) in &self.items[self.next..end] {
            on_datagram(d, m);
        }
        let n = end - self.next;
        self.next = end;
        Ok(n)
    }

    fn mode(&self) -> IoMode {
        IoMode::Mmsg
    }
}

/// A source whose poll fails after a few empty rounds, like a socket that went away.
struct FailingSource(u32);

impl DatagramSource for FailingSource {
    fn poll(&mut self, _: Duration, _: &mut dyn FnMut(&[u8], &RecvMeta)) -> io::Result<usize> {
        if self.0 == 0 {
            return Err(io::Error::new(io::ErrorKind::BrokenPipe, "socket gone"));
        }
        self.0 -= 1;
        Ok(0)
    }
    fn mode(&self) -> IoMode {
        IoMode::Uring
    }
}

fn addr(s: &str) -> SocketAddr {
    s.parse().unwrap()
}

fn meta(seq: u64, sender: &str) -> RecvMeta {
    RecvMeta {
        timestamp_ns: 1_700_000_000_000_000_000 + seq,
        sender: SenderAddr::from(addr(sender)),
        kernel_drops: 0,
        truncated: false,
        ..RecvMeta::default()
    }
}

/// A frame whose payload is its sequence number, so arrival order can be checked.
fn frame(seq: u32, id: u32, extended: bool) -> CanFrame {
    let fl = if extended { flags::EXTENDED } else { 0 };
    CanFrame::new(id, fl, &seq.to_le_bytes()).unwrap()
}

fn encode(f: &CanFrame) -> Vec<u8> {
    let mut buf = [0u8; MAX_ENCODED];
    let n = pycan::encode(f, &mut buf);
    buf[..n].to_vec()
}

fn seq_of(f: &CanFrame) -> u32 {
    u32::from_le_bytes(f.payload()[..4].try_into().unwrap())
}

fn cfg(consumers: usize, dispatch: Dispatch) -> EngineConfig {
    EngineConfig {
        consumers,
        ring_capacity: 1 << 15,
        dispatch,
        poll_timeout: Duration::from_millis(20),
        ..EngineConfig::default()
    }
}

fn wait_until(what: &str, mut cond: impl FnMut() -> bool) {
    let deadline = Instant::now() + Duration::from_secs(20);
    while !cond() {
        assert!(Instant::now() < deadline, "timed out waiting for {what}");
        thread::sleep(Duration::from_millis(1));
    }
}

/// Reads a consumer until the engine has stopped and its ring is empty.
fn drain(mut h: ConsumerHandle) -> Vec<Event> {
    let mut out = Vec::new();
    let mut buf = [Event::default(); 16];
    while !h.is_closed() {
        let n = h.pop_batch(&mut buf);
        out.extend_from_slice(&buf[..n]);
        if n == 0 {
            if let Some(ev) = h.recv_timeout(Duration::from_millis(50)) {
                out.push(ev);
            }
        }
    }
    out
}

fn frames(events: &[Event]) -> Vec<CanFrame> {
    events
        .iter()
        .filter_map(|e| match e {
            Event::Frame(f) => Some(*f),
            _ => None,
        })
        .collect()
}

/// Collects each consumer on its own thread while the engine runs.
fn collect_all(handles: Vec<ConsumerHandle>) -> Vec<thread::JoinHandle<Vec<Event>>> {
    handles
        .into_iter()
        .map(|h| thread::spawn(move || drain(h)))
        .collect()
}

#[test]
fn by_id_keeps_per_id_order_across_four_consumers_and_delivers_each_frame_once() {
    const N: u32 = 20_000;
    // Standard and extended frames share numeric IDs: (id, IDE) is the key.
    let items: Vec<_> = (0..N)
        .map(|seq| {
            let f = frame(seq, (seq * 7) % 61, seq % 5 == 0);
            (encode(&f), meta(u64::from(seq), "127.0.0.1:5000"))
        })
        .collect();
    let (src, _) = FakeSource::new(items);
    let (engine, handles) = Engine::start(src, cfg(4, Dispatch::ById)).unwrap();
    assert_eq!(engine.io_mode(), IoMode::Mmsg);
    let collectors = collect_all(handles);
    wait_until("all datagrams", || engine.stats().datagrams == u64::from(N));
    engine.stop();
    let results: Vec<_> = collectors.into_iter().map(|c| c.join().unwrap()).collect();
    let stats = engine.stats();
    engine.join().unwrap();

    assert_eq!(stats.frames, u64::from(N));
    assert_eq!(stats.ring_drops, 0);
    assert_eq!(stats.decode_errors_total(), 0);

    let mut seen = vec![0u32; N as usize];
    let mut busy_consumers = 0;
    for (index, events) in results.iter().enumerate() {
        let fs = frames(events);
        assert_eq!(fs.len(), events.len(), "only frames were sent");
        if !fs.is_empty() {
            busy_consumers += 1;
        }
        let mut last: HashMap<(u32, bool), u32> = HashMap::new();
        for f in &fs {
            let key = (f.id, f.is_extended());
            assert_eq!(consumer_for(f.id, f.is_extended(), 4), index);
            let seq = seq_of(f);
            if let Some(prev) = last.insert(key, seq) {
                assert!(seq > prev, "ID {key:?} out of order: {seq} after {prev}");
            }
            seen[seq as usize] += 1;
            // The kernel's timestamp and the datagram's sender replace the wire's.
            assert_eq!(
                f.timestamp_ns,
                meta(u64::from(seq), "127.0.0.1:5000").timestamp_ns
            );
            assert_eq!(f.sender.get(), Some(addr("127.0.0.1:5000")));
            assert_eq!(*f, {
                let mut g = frame(seq, f.id, f.is_extended());
                g.timestamp_ns = f.timestamp_ns;
                g.sender = f.sender;
                g
            });
        }
    }
    assert!(seen.iter().all(|&c| c == 1), "every frame exactly once");
    assert!(busy_consumers >= 3, "hash spreads 122 keys over consumers");
}

#[test]
fn all_delivers_every_frame_to_every_consumer() {
    const N: u32 = 5_000;
    let items: Vec<_> = (0..N)
        .map(|seq| (encode(&frame(seq, seq % 3, false)), meta(0, "127.0.0.1:1")))
        .collect();
    let (src, _) = FakeSource::new(items);
    let (engine, handles) = Engine::start(src, cfg(3, Dispatch::All)).unwrap();
    let collectors = collect_all(handles);
    wait_until("all datagrams", || engine.stats().datagrams == u64::from(N));
    engine.stop();
    for c in collectors {
        let seqs: Vec<u32> = frames(&c.join().unwrap()).iter().map(seq_of).collect();
        assert_eq!(seqs, (0..N).collect::<Vec<_>>());
    }
    assert_eq!(engine.stats().frames, u64::from(N));
    assert_eq!(engine.stats().ring_drops, 0);
}

#[test]
fn full_ring_counts_drops_and_receive_loop_keeps_going() {
    let items: Vec<_> = (0..1050)
        .map(|seq| (encode(&frame(seq, 1, false)), meta(0, "127.0.0.1:1")))
        .collect();
    let (src, allowed) = FakeSource::new(items);
    allowed.store(1000, Ordering::Release);
    let cfg = EngineConfig {
        ring_capacity: 64,
        ..cfg(1, Dispatch::ById)
    };
    let (engine, mut handles) = Engine::start(src, cfg).unwrap();
    let mut h = handles.pop().unwrap();
    assert_eq!(h.capacity(), 64);

    // Nobody reads: the ring fills, the rest is dropped, the loop does not block.
    wait_until("1000 datagrams", || engine.stats().datagrams == 1000);
    let s = engine.stats();
    assert_eq!(s.frames, 1000);
    assert_eq!(s.ring_drops, 1000 - 64);
    let mut got = Vec::new();
    while let Some(Event::Frame(f)) = h.try_pop() {
        got.push(seq_of(&f));
    }
    // The oldest frames are kept, the newest dropped.
    assert_eq!(got, (0..64).collect::<Vec<_>>());

    // Still receiving after the overflow (fewer than a ring's worth, so all fit).
    allowed.store(1050, Ordering::Release);
    let mut later = Vec::new();
    while later.len() < 50 {
        match h.recv_timeout(Duration::from_secs(10)) {
            Some(Event::Frame(f)) => later.push(seq_of(&f)),
            other => panic!("expected a frame, got {other:?}; {:?}", engine.stats()),
        }
    }
    assert_eq!(later, (1000..1050).collect::<Vec<_>>());
    let s = engine.stats();
    assert_eq!(s.ring_drops, 1000 - 64);
    assert_eq!(s.frames, (got.len() + later.len()) as u64 + s.ring_drops);
    engine.stop();
    engine.join().unwrap();
    assert!(h.is_closed());
}

/// Deterministic noise (xorshift) that the decoder does not accept.
fn random_garbage(seed: &mut u64, len: usize) -> Vec<u8> {
    loop {
        let v: Vec<u8> = (0..len)
            .map(|_| {
                *seed ^= *seed << 13;
                *seed ^= *seed >> 7;
                *seed ^= *seed << 17;
                *seed as u8
            })
            .collect();
        let mut f = CanFrame::EMPTY;
        if pycan::decode(&v, &mut f).is_err() {
            return v;
        }
    }
}

#[test]
fn garbage_is_counted_by_kind_and_every_valid_frame_arrives() {
    let valid = encode(&frame(0, 0x123, false));
    let mut garbage: Vec<(Vec<u8>, RecvMeta, Option<DecodeError>)> = vec![
        // Cut in the middle of a value.
        (
            valid[..valid.len() / 2].to_vec(),
            meta(0, "127.0.0.1:1"),
            Some(DecodeError::Truncated),
        ),
        (
            Vec::new(),
            meta(0, "127.0.0.1:1"),
            Some(DecodeError::Truncated),
        ),
        // [1, 2, 3]
        (
            vec![0x93, 1, 2, 3],
            meta(0, "127.0.0.1:1"),
            Some(DecodeError::NotAMap),
        ),
        // {"arbitration_id": 0x800, "is_extended_id": false}: 12 bits on a standard ID.
        (
            b"\x82\xaearbitration_id\xcd\x08\x00\xaeis_extended_id\xc2".to_vec(),
            meta(0, "127.0.0.1:1"),
            Some(DecodeError::InvalidFrame),
        ),
        // Native magic, then a second magic byte of another (future) generation.
        (
            vec![
                wire::NATIVE_MAGIC0,
                1,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
                0,
            ],
            meta(0, "127.0.0.1:1"),
            Some(DecodeError::UnknownVersion),
        ),
        // Native datagram of a kind this build does not know.
        (
            {
                let mut d = vec![wire::NATIVE_MAGIC0, wire::native::NATIVE_MAGIC1, 1, 9];
                d.resize(wire::native::COMMON_HEADER_LEN, 0);
                d
            },
            meta(0, "127.0.0.1:1"),
            Some(DecodeError::UnknownType),
        ),
        // Native header cut short.
        (
            vec![wire::NATIVE_MAGIC0, wire::native::NATIVE_MAGIC1, 1],
            meta(0, "127.0.0.1:1"),
            Some(DecodeError::Truncated),
        ),
        // A complete datagram the kernel cut (MSG_TRUNC).
        (
            valid.clone(),
            RecvMeta {
                truncated: true,
                ..meta(0, "127.0.0.1:1")
            },
            Some(DecodeError::Truncated),
        ),
    ];
    let mut seed = 0x2545_F491_4F6C_DD1D;
    for len in [1, 3, 17, 64, 150, 300] {
        for _ in 0..5 {
            garbage.push((random_garbage(&mut seed, len), meta(0, "127.0.0.1:1"), None));
        }
    }
    // What each kind should count: fixed kinds as stated, noise as the decoder says.
    let mut expected = [0u64; DecodeError::COUNT];
    for (d, m, kind) in &garbage {
        let k = kind.unwrap_or_else(|| {
            assert!(!m.truncated);
            match wire::detect(d) {
                WireFormat::Native => match wire::native::decode(d, &mut |_| {}) {
                    Err(e) => e,
                    Ok(info) => info
                        .error
                        .expect("random bytes make no valid native datagram"),
                },
                WireFormat::Pycan => {
                    let mut f = CanFrame::EMPTY;
                    pycan::decode(d, &mut f).unwrap_err()
                }
            }
        });
        expected[k as usize] += 1;
    }

    let mut items = Vec::new();
    let mut valid_count = 0u32;
    for (i, (d, m, _)) in garbage.iter().enumerate() {
        for _ in 0..3 {
            items.push((
                encode(&frame(valid_count, (i % 40) as u32, false)),
                meta(0, "127.0.0.1:1"),
            ));
            valid_count += 1;
        }
        items.push((d.clone(), *m));
    }
    let total = items.len() as u64;
    let (src, _) = FakeSource::new(items);
    let (engine, handles) = Engine::start(src, cfg(2, Dispatch::ById)).unwrap();
    let collectors = collect_all(handles);
    wait_until("all datagrams", || engine.stats().datagrams == total);
    engine.stop();
    let mut seqs: Vec<u32> = collectors
        .into_iter()
        .flat_map(|c| frames(&c.join().unwrap()))
        .map(|f| seq_of(&f))
        .collect();
    seqs.sort_unstable();
    assert_eq!(seqs, (0..valid_count).collect::<Vec<_>>());

    let s = engine.stats();
    assert_eq!(s.frames, u64::from(valid_count));
    assert_eq!(s.decode_errors, expected);
    assert_eq!(s.decode_errors_total(), garbage.len() as u64);
    for kind in [
        DecodeError::Truncated,
        DecodeError::NotAMap,
        DecodeError::InvalidFrame,
        DecodeError::UnknownType,
    ] {
        assert!(s.decode_error(kind) > 0, "{kind} not counted");
    }
    assert_eq!(s.decode_error(DecodeError::Truncated), expected[0]);
    assert!(expected[DecodeError::Truncated as usize] >= 3);
}

#[test]
fn drop_from_and_accept_only_filter_by_sender() {
    let senders = [
        ("127.0.0.1:5000", false), // our own socket: dropped
        ("127.0.0.1:5001", true),  // same host, another program: kept
        ("127.0.0.2:6000", true),
        ("[::ffff:127.0.0.2]:6001", true), // the same IPv4 host seen on a dual-stack socket
        ("127.0.0.3:7000", false),         // not on the allow-list
        ("[::1]:7000", false),
    ];
    let mut items = Vec::new();
    for round in 0..10u32 {
        for (i, (s, _)) in senders.iter().enumerate() {
            items.push((encode(&frame(round, i as u32, false)), meta(0, s)));
        }
    }
    let total = items.len() as u64;
    let (src, _) = FakeSource::new(items);
    let cfg = EngineConfig {
        drop_from: Some(addr("127.0.0.1:5000")),
        accept_only: vec!["127.0.0.1".parse().unwrap(), "127.0.0.2".parse().unwrap()],
        ..cfg(1, Dispatch::ById)
    };
    let (engine, handles) = Engine::start(src, cfg).unwrap();
    let collectors = collect_all(handles);
    wait_until("all datagrams", || engine.stats().datagrams == total);
    engine.stop();
    let fs = frames(&collectors.into_iter().next().unwrap().join().unwrap());

    let mut per_sender: HashMap<SocketAddr, u32> = HashMap::new();
    for f in &fs {
        let (s, keep) = senders[f.id as usize];
        assert!(keep, "frame from {s} should have been filtered");
        assert_eq!(f.sender.get(), Some(addr(s)));
        *per_sender.entry(addr(s)).or_default() += 1;
    }
    assert_eq!(per_sender.len(), 3);
    assert!(per_sender.values().all(|&n| n == 10));
    let s = engine.stats();
    assert_eq!(s.filtered, 30);
    assert_eq!(s.frames, 30);
    assert_eq!(s.datagrams, 60);
}

#[test]
fn empty_accept_only_keeps_everyone_but_ourselves() {
    let items = vec![
        (encode(&frame(0, 1, false)), meta(0, "10.1.2.3:1")),
        (encode(&frame(1, 1, false)), meta(0, "127.0.0.1:5000")),
        (encode(&frame(2, 1, false)), meta(0, "[::1]:5000")),
    ];
    let (src, _) = FakeSource::new(items);
    let cfg = EngineConfig {
        drop_from: Some(addr("127.0.0.1:5000")),
        ..cfg(1, Dispatch::ById)
    };
    let (engine, handles) = Engine::start(src, cfg).unwrap();
    let collectors = collect_all(handles);
    wait_until("all datagrams", || engine.stats().datagrams == 3);
    engine.stop();
    let seqs: Vec<u32> = frames(&collectors.into_iter().next().unwrap().join().unwrap())
        .iter()
        .map(seq_of)
        .collect();
    assert_eq!(seqs, [0, 2]);
    assert_eq!(engine.stats().filtered, 1);
}

#[test]
fn counters_are_readable_from_another_thread_while_running() {
    let items: Vec<_> = (0..300)
        .map(|seq| (encode(&frame(seq, 5, false)), meta(0, "127.0.0.1:1")))
        .collect();
    let bytes_each = items[0].0.len() as u64;
    let (src, allowed) = FakeSource::new(items);
    allowed.store(100, Ordering::Release);
    let (engine, handles) = Engine::start(src, cfg(1, Dispatch::ById)).unwrap();
    let counters = engine.counters();
    let saw_100 = Arc::new(AtomicBool::new(false));
    let saw = Arc::clone(&saw_100);
    let watcher = thread::spawn(move || {
        let mut seen = Vec::new();
        let deadline = Instant::now() + Duration::from_secs(20);
        while Instant::now() < deadline {
            let s = counters.snapshot();
            if seen.last() != Some(&s.frames) {
                seen.push(s.frames);
            }
            if s.frames == 100 {
                saw.store(true, Ordering::Relaxed);
            }
            if s.frames == 300 {
                break;
            }
            thread::sleep(Duration::from_micros(200));
        }
        seen
    });
    wait_until("first 100", || engine.stats().frames == 100);
    assert!(!engine.is_finished());
    let s = engine.stats();
    assert_eq!((s.datagrams, s.bytes), (100, 100 * bytes_each));
    wait_until("watcher to see 100", || saw_100.load(Ordering::Relaxed));
    allowed.store(300, Ordering::Release);
    let seen = watcher.join().unwrap();
    assert!(seen.contains(&100), "watcher saw {seen:?}");
    assert_eq!(seen.last(), Some(&300));
    assert!(seen.windows(2).all(|w| w[0] < w[1]));
    assert!(!engine.is_finished(), "still running while being read");
    drop(handles);
}

#[test]
fn kernel_drop_counter_growth_becomes_events_and_counts() {
    // SO_RXQ_OVFL: cumulative, absent (0) until the first drop.
    let drops = [0u32, 0, 5, 5, 12, 12, 0];
    let items: Vec<_> = drops
        .iter()
        .enumerate()
        .map(|(i, &k)| {
            let m = RecvMeta {
                kernel_drops: k,
                ..meta(i as u64, "127.0.0.1:1")
            };
            (encode(&frame(i as u32, 9, false)), m)
        })
        .collect();
    let (src, _) = FakeSource::new(items);
    let (engine, handles) = Engine::start(src, cfg(2, Dispatch::ById)).unwrap();
    let collectors = collect_all(handles);
    wait_until("all datagrams", || engine.stats().datagrams == 7);
    engine.stop();
    let base = meta(0, "127.0.0.1:1").timestamp_ns;
    let want = [
        Event::KernelDrops {
            count: 5,
            timestamp_ns: base + 2,
        },
        Event::KernelDrops {
            count: 7,
            timestamp_ns: base + 4,
        },
    ];
    for (i, c) in collectors.into_iter().enumerate() {
        let events = c.join().unwrap();
        let kd: Vec<Event> = events
            .iter()
            .copied()
            .filter(|e| matches!(e, Event::KernelDrops { .. }))
            .collect();
        assert_eq!(kd, want, "consumer {i}");
        if i == consumer_for(9, false, 2) {
            // The drops happened before the datagram that reports them.
            let pos = |ev: &Event| events.iter().position(|e| e == ev).unwrap();
            let frame_pos = |seq: u32| {
                events
                    .iter()
                    .position(|e| matches!(e, Event::Frame(f) if seq_of(f) == seq))
                    .unwrap()
            };
            assert_eq!(pos(&want[0]) + 1, frame_pos(2));
            assert_eq!(pos(&want[1]) + 1, frame_pos(4));
        }
    }
    assert_eq!(engine.stats().kernel_drops, 12);
}

#[test]
fn stop_ends_the_receive_thread_promptly_and_closes_consumers() {
    let (src, _) = FakeSource::new(Vec::new());
    let cfg = EngineConfig {
        poll_timeout: Duration::from_millis(50),
        ..cfg(2, Dispatch::All)
    };
    let (engine, mut handles) = Engine::start(src, cfg).unwrap();
    let waiter = {
        let mut h = handles.pop().unwrap();
        thread::spawn(move || {
            let t = Instant::now();
            // Parked in recv_timeout when the engine stops: must come back early.
            let ev = h.recv_timeout(Duration::from_secs(30));
            (ev, t.elapsed(), h.is_closed())
        })
    };
    thread::sleep(Duration::from_millis(100));
    assert!(!handles[0].is_closed());
    let t = Instant::now();
    engine.stop();
    wait_until("receive thread exit", || engine.is_finished());
    let took = t.elapsed();
    assert!(took < Duration::from_secs(1), "stop took {took:?}");
    engine.join().unwrap();
    let (ev, waited, closed) = waiter.join().unwrap();
    assert_eq!(ev, None);
    assert!(closed);
    assert!(
        waited < Duration::from_secs(5),
        "parked consumer woke after {waited:?}"
    );
    assert!(handles[0].is_closed());
    assert_eq!(handles[0].recv_timeout(Duration::from_secs(30)), None);
}

/// What was queued in the socket when the stop came: `stop_after_draining` takes all of
/// it in, a plain `stop` leaves it (the fake source hands out 32 per poll, so a plain
/// stop sees at most a few polls' worth).
#[test]
fn stop_after_draining_takes_in_what_the_socket_holds() {
    const N: usize = 5_000;
    for drain in [true, false] {
        let items: Vec<_> = (0..N as u32)
            .map(|i| {
                (
                    encode(&frame(i, 0x100, false)),
                    meta(u64::from(i), "127.0.0.1:1"),
                )
            })
            .collect();
        let (src, allowed) = FakeSource::new(items);
        allowed.store(0, Ordering::Release);
        let (engine, mut handles) = Engine::start(src, cfg(1, Dispatch::All)).unwrap();
        let consumer = collect_all(vec![handles.remove(0)]).remove(0);
        thread::sleep(Duration::from_millis(50));
        // The burst arrives, and the stop right behind it.
        allowed.store(usize::MAX, Ordering::Release);
        if drain {
            engine.stop_after_draining();
            engine.stop_after_draining(); // asking twice changes nothing
        } else {
            engine.stop();
        }
        wait_until("receive thread exit", || engine.is_finished());
        let stats = engine.stats();
        engine.join().unwrap();
        let got = frames(&consumer.join().unwrap());
        if drain {
            assert_eq!(got.len(), N, "drained: every queued datagram");
            assert_eq!(stats.datagrams, N as u64);
            assert!(got.iter().enumerate().all(|(i, f)| seq_of(f) == i as u32));
        } else {
            assert!(
                got.len() < N,
                "a plain stop read everything: the test shows nothing"
            );
            assert_eq!(stats.datagrams, got.len() as u64);
        }
    }
}

#[test]
fn source_error_ends_the_engine_and_is_returned_by_join() {
    let (engine, mut handles) =
        Engine::start(Box::new(FailingSource(3)), cfg(1, Dispatch::ById)).unwrap();
    assert_eq!(engine.io_mode(), IoMode::Uring);
    wait_until("receive thread exit", || engine.is_finished());
    assert!(handles[0].is_closed());
    let err = engine.join().unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::BrokenPipe);
    assert_eq!(handles.pop().unwrap().try_pop(), None);
}

#[test]
fn start_rejects_an_empty_configuration() {
    let (src, _) = FakeSource::new(Vec::new());
    let err = Engine::start(src, cfg(0, Dispatch::ById)).unwrap_err();
    assert_eq!(err.kind(), io::ErrorKind::InvalidInput);
    let (src, _) = FakeSource::new(Vec::new());
    let bad = EngineConfig {
        ring_capacity: 0,
        ..cfg(1, Dispatch::ById)
    };
    assert_eq!(
        Engine::start(src, bad).unwrap_err().kind(),
        io::ErrorKind::InvalidInput
    );
}

#[test]
fn workers_run_pinned_and_a_pinning_failure_is_reported_not_fatal() {
    const N: u32 = 2_000;
    let items: Vec<_> = (0..N)
        .map(|seq| (encode(&frame(seq, 0x10, false)), meta(0, "127.0.0.1:1")))
        .collect();
    let (src, allowed) = FakeSource::new(items);
    allowed.store(0, Ordering::Release);
    let (engine, handles) = Engine::start(src, cfg(2, Dispatch::All)).unwrap();
    let mut handles = handles.into_iter();

    let count0 = Arc::new(AtomicU64::new(0));
    let off_cpu0 = Arc::new(AtomicBool::new(false));
    let w0 = {
        let (count, off) = (Arc::clone(&count0), Arc::clone(&off_cpu0));
        Engine::spawn_worker(handles.next().unwrap(), Some(0), move |ev| {
            assert!(matches!(ev, Event::Frame(_)));
            // SAFETY: sched_getcpu has no preconditions.
            if unsafe { libc::sched_getcpu() } != 0 {
                off.store(true, Ordering::Relaxed);
            }
            count.fetch_add(1, Ordering::Relaxed);
        })
    };
    let count1 = Arc::new(AtomicU64::new(0));
    let order_ok = Arc::new(Mutex::new(true));
    let w1 = {
        let (count, ok) = (Arc::clone(&count1), Arc::clone(&order_ok));
        let mut next = 0;
        Engine::spawn_worker(handles.next().unwrap(), Some(999), move |ev| {
            if let Event::Frame(f) = ev {
                if seq_of(f) != next {
                    *ok.lock().unwrap() = false;
                }
                next += 1;
            }
            count.fetch_add(1, Ordering::Relaxed);
        })
    };
    assert_eq!(w0.pin_error(), None);
    assert_eq!(w0.cpu(), Some(0));
    let err = w1.pin_error().expect("CPU 999 does not exist here");
    assert!(err.contains("999"), "{err}");

    allowed.store(usize::MAX, Ordering::Release);
    wait_until("workers done", || {
        count0.load(Ordering::Relaxed) == u64::from(N)
            && count1.load(Ordering::Relaxed) == u64::from(N)
    });
    engine.stop();
    w0.join().unwrap();
    w1.join().unwrap();
    assert!(
        !off_cpu0.load(Ordering::Relaxed),
        "worker pinned to CPU 0 ran elsewhere"
    );
    assert!(*order_ok.lock().unwrap());
}

#[test]
fn pin_current_thread_rejects_out_of_range_cpus() {
    let t = thread::spawn(|| {
        let e = canmc::engine::pin_current_thread(1 << 20).unwrap_err();
        assert_eq!(e.kind(), io::ErrorKind::InvalidInput);
        canmc::engine::pin_current_thread(0).unwrap();
    });
    t.join().unwrap();
}

#[test]
fn accept_only_list_is_ip_only() {
    // A --source address is a host: any port from it is accepted.
    let ip: IpAddr = "127.0.0.9".parse().unwrap();
    let items = vec![
        (encode(&frame(0, 1, false)), meta(0, "127.0.0.9:1")),
        (encode(&frame(1, 1, false)), meta(0, "127.0.0.9:2")),
    ];
    let (src, _) = FakeSource::new(items);
    let cfg = EngineConfig {
        accept_only: vec![ip],
        ..cfg(1, Dispatch::ById)
    };
    let (engine, handles) = Engine::start(src, cfg).unwrap();
    let collectors = collect_all(handles);
    wait_until("all datagrams", || engine.stats().datagrams == 2);
    engine.stop();
    assert_eq!(
        frames(&collectors.into_iter().next().unwrap().join().unwrap()).len(),
        2
    );
}

/// Collects what an inline consumer is given: frames, and how many came as batches.
struct Collect {
    batches: bool,
    frames: Arc<Mutex<Vec<CanFrame>>>,
    batches_seen: Arc<AtomicU64>,
}

impl canmc::engine::InlineConsumer for Collect {
    fn on_event(&mut self, event: &Event) -> bool {
        if let Event::Frame(f) = event {
            self.frames.lock().unwrap().push(*f);
        }
        true
    }

    fn takes_batches(&self) -> bool {
        self.batches
    }

    fn on_frames(&mut self, batch: &wire::native::FrameBatch<'_>, sender: &SenderAddr) -> bool {
        self.batches_seen.fetch_add(1, Ordering::Relaxed);
        let mut out = self.frames.lock().unwrap();
        for mut f in batch.frames() {
            f.sender = *sender;
            out.push(f);
        }
        true
    }
}

/// A native datagram of `frames` from sender `id`, sequence `seq`.
fn native_datagram(id: u32, seq: u64, frames: &[CanFrame]) -> Vec<u8> {
    let mut enc = wire::native::Encoder::new(id, wire::native::DEFAULT_MAX_DATAGRAM);
    let mut buf = vec![0u8; wire::native::DEFAULT_MAX_DATAGRAM];
    enc.begin(
        &mut buf,
        seq,
        canmc::Channel::int(3),
        frames[0].timestamp_ns,
    );
    for f in frames {
        assert!(enc.push(&mut buf, f));
    }
    let n = enc.finish(&mut buf);
    buf.truncate(n);
    buf
}

#[test]
fn an_inline_consumer_taking_batches_gets_exactly_the_frames_it_would_get_one_by_one() {
    let frames: Vec<CanFrame> = (0..40u32)
        .map(|i| {
            let mut f = frame(i, 0x100 + i, i % 3 == 0);
            f.timestamp_ns = 1_700_000_000_000_000_000 + u64::from(i) * 1_000;
            f.channel = canmc::Channel::int(3);
            f
        })
        .collect();
    let good = native_datagram(7, 0, &frames[..20]);
    // The second datagram carries a record decode skips (a standard ID out of range):
    // it cannot be a batch and must come frame by frame, without the bad record.
    let mut bad = native_datagram(7, 1, &frames[20..30]);
    let at = wire::native::FRAMES_HEADER_LEN;
    bad[at..at + 4].copy_from_slice(&0x7FFu32.wrapping_add(1).to_le_bytes());
    let items = vec![
        (good.clone(), meta(0, "127.0.0.1:4000")),
        (bad, meta(1, "127.0.0.1:4000")),
        (good, meta(2, "127.0.0.1:4000")), // a duplicate: delivered by neither
        (encode(&frames[30]), meta(3, "127.0.0.1:4001")),
        (
            native_datagram(7, 2, &frames[31..]),
            meta(4, "127.0.0.1:4000"),
        ),
    ];
    let run = |batches: bool| {
        let (src, _) = FakeSource::new(items.clone());
        let sink = Collect {
            batches,
            frames: Arc::default(),
            batches_seen: Arc::default(),
        };
        let (got, seen) = (Arc::clone(&sink.frames), Arc::clone(&sink.batches_seen));
        let running = Engine::start_inline(src, cfg(1, Dispatch::All), sink).unwrap();
        wait_until("every datagram taken in", || {
            running.engine().stats().datagrams == 5
        });
        let stats = running.engine().stats();
        running.engine().stop();
        let _ = running.join();
        let got = got.lock().unwrap().clone();
        (got, seen.load(Ordering::Relaxed), stats)
    };
    let (one_by_one, no_batches, stats_a) = run(false);
    let (batched, batches, stats_b) = run(true);
    assert_eq!(no_batches, 0);
    assert_eq!(batches, 2, "the two clean native datagrams come whole");
    assert_eq!(batched, one_by_one);
    assert_eq!(batched.len(), 39, "40 frames, one bad record");
    assert!(batched[..20]
        .iter()
        .all(|f| f.sender == SenderAddr::from(addr("127.0.0.1:4000"))));
    for s in [&stats_a, &stats_b] {
        assert_eq!(s.frames, 39);
        assert_eq!(s.duplicates, 1);
        assert_eq!(s.decode_errors[DecodeError::InvalidFrame as usize], 1);
    }
}
