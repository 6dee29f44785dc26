//! One-way latency, send → consumer, on loopback multicast (SPEC §10): the same paced
//! python-can-format datagrams, from one plain socket, received in turn by
//!
//! - `raw blocking recv`: a socket2 socket and a blocking `recv` in its own thread, no
//!   decode (the baseline);
//! - `engine uring, recv_timeout` / `engine uring, spin try_pop` / `engine mmsg,
//!   recv_timeout`: [`canmc::engine::Engine`] with one consumer handle;
//! - `engine uring, worker on CPU 1`: the consumer run by [`Engine::spawn_worker`], pinned;
//! - `Bus::recv`: [`canmc::bus::Bus`], the blocking embedding API;
//! - `engine uring, inline handler` / `engine mmsg, inline handler`: run to completion, a
//!   handler called on the receive thread for each frame ([`Engine::start_inline`]), no
//!   ring and no second thread to wake.
//!
//! For each receiver the process's CPU time over its rounds (sender included, which is the
//! same for all) is divided by the frames sent: the CPU a mode burns for its latency.
//!
//! The sender writes CLOCK_MONOTONIC nanoseconds into the frame's 8 data bytes just before
//! `send`; the consumer subtracts it from its own clock reading when the frame reaches
//! it. Everything stays on this host: group 239.74.163.2 joined on 127.0.0.1, sent with
//! IP_MULTICAST_IF 127.0.0.1 and TTL 0, ports 45000 and up.
//!
//! ```text
//! cargo bench --bench latency [-- --rate 10000 --seconds 2.4 --rounds 3
//!     --json docs/perf/latency.json --only NAME-PART]
//! ```

use std::io;
use std::net::{Ipv4Addr, SocketAddr, SocketAddrV4};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use canmc::bus::{Bus, BusConfig};
use canmc::engine::{Dispatch, Engine, EngineConfig, Event, InlineConsumer, InlineEngine};
use canmc::recv::{self, IoMode, RecvConfig};
use canmc::socket::{McastConfig, RecvSocket};
use canmc::wire::pycan;
use canmc::CanFrame;
use socket2::{Domain, Protocol, Socket, Type};

const GROUP: Ipv4Addr = Ipv4Addr::new(239, 74, 163, 2);
const BASE_PORT: u16 = 45000;
/// Samples thrown away at the start of each scenario (caches, page faults, first wake-ups).
const WARMUP: usize = 200;
/// Marks the data bytes in the encoded datagram, so the sender can patch the timestamp
/// in place and the raw receiver can read it without decoding.
const MARKER: [u8; 8] = [0xA5, 0x5A, 0xC3, 0x3C, 0x96, 0x69, 0x0F, 0xF0];

fn now_ns() -> u64 {
    let mut ts = libc::timespec {
        tv_sec: 0,
        tv_nsec: 0,
    };
    // SAFETY: `ts` is a valid out-pointer; CLOCK_MONOTONIC always exists on Linux.
    unsafe { libc::clock_gettime(libc::CLOCK_MONOTONIC, &mut ts) };
    ts.tv_sec as u64 * 1_000_000_000 + ts.tv_nsec as u64
}

struct Opts {
    rate: f64,
    seconds: f64,
    rounds: usize,
    json: Option<String>,
    only: Option<String>,
}

fn opts() -> Opts {
    let mut o = Opts {
        rate: 10_000.0,
        seconds: 2.4,
        rounds: 3,
        json: None,
        only: None,
    };
    let mut it = std::env::args().skip(1);
    while let Some(a) = it.next() {
        match a.as_str() {
            "--rate" => o.rate = it.next().and_then(|v| v.parse().ok()).expect("--rate N"),
            "--seconds" => o.seconds = it.next().and_then(|v| v.parse().ok()).expect("--seconds S"),
            "--rounds" => o.rounds = it.next().and_then(|v| v.parse().ok()).expect("--rounds N"),
            "--json" => o.json = it.next(),
            "--only" => o.only = it.next(),
            // cargo bench passes --bench; filters are not used here.
            _ => {}
        }
    }
    o
}

/// The paced sender shared by every scenario: one encoded python-can datagram whose data
/// bytes are overwritten with the send time.
struct Sender {
    sock: Socket,
    buf: [u8; pycan::MAX_ENCODED],
    len: usize,
    at: usize,
}

impl Sender {
    fn new() -> io::Result<Sender> {
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
        sock.set_multicast_if_v4(&Ipv4Addr::LOCALHOST)?;
        sock.set_multicast_ttl_v4(0)?;
        sock.set_multicast_loop_v4(true)?;
        sock.bind(&SocketAddr::V4(SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0)).into())?;
        let mut f = CanFrame::new(0x123, 0, &MARKER).expect("valid frame");
        f.timestamp_ns = 1;
        let mut buf = [0u8; pycan::MAX_ENCODED];
        let len = pycan::encode(&f, &mut buf);
        let at = marker_offset(&buf[..len]).expect("data bytes appear verbatim in the datagram");
        Ok(Sender { sock, buf, len, at })
    }

    /// Sends `n` datagrams at `rate` per second to `port`.
    fn run(&mut self, port: u16, rate: f64, n: usize) -> io::Result<()> {
        let to: socket2::SockAddr = SocketAddr::V4(SocketAddrV4::new(GROUP, port)).into();
        let period = Duration::from_secs_f64(1.0 / rate);
        let start = Instant::now();
        for i in 0..n {
            let due = start + period * i as u32;
            let now = Instant::now();
            if due > now {
                thread::sleep(due - now);
            }
            let t = now_ns();
            self.buf[self.at..self.at + 8].copy_from_slice(&t.to_le_bytes());
            self.sock.send_to(&self.buf[..self.len], &to)?;
        }
        Ok(())
    }
}

fn marker_offset(d: &[u8]) -> Option<usize> {
    d.windows(8).position(|w| w == MARKER)
}

/// Collected latencies of one receiver, in ns.
struct Samples {
    lat: Vec<u64>,
    note: String,
}

fn ts_from(data: &[u8]) -> u64 {
    let mut b = [0u8; 8];
    b.copy_from_slice(&data[..8]);
    u64::from_le_bytes(b)
}

fn raw_receiver(port: u16, cap: usize, stop: Arc<AtomicBool>, at: usize) -> io::Result<Samples> {
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))?;
    sock.set_reuse_address(true)?;
    sock.set_multicast_all_v4(false)?;
    sock.set_recv_buffer_size(4 << 20)?;
    sock.bind(&SocketAddr::V4(SocketAddrV4::new(GROUP, port)).into())?;
    sock.join_multicast_v4(&GROUP, &Ipv4Addr::LOCALHOST)?;
    sock.set_read_timeout(Some(Duration::from_millis(20)))?;
    let mut lat = Vec::with_capacity(cap);
    let mut buf = [0u8; 2048];
    while !stop.load(Ordering::Relaxed) {
        // SAFETY: `buf` is a valid writable buffer of the given length.
        let n = unsafe {
            libc::recv(
                std::os::fd::AsRawFd::as_raw_fd(&sock),
                buf.as_mut_ptr().cast(),
                buf.len(),
                0,
            )
        };
        let t = now_ns();
        if n >= (at + 8) as isize && lat.len() < lat.capacity() {
            lat.push(t.saturating_sub(ts_from(&buf[at..])));
        }
    }
    Ok(Samples {
        lat,
        note: String::new(),
    })
}

fn lo_config(port: u16) -> McastConfig {
    McastConfig {
        group: GROUP.into(),
        ..McastConfig::loopback_v4(port)
    }
}

/// Starts an engine on `port`; `spin` polls `try_pop` instead of `recv_timeout`.
fn engine_receiver(
    port: u16,
    io_mode: IoMode,
    spin: bool,
    cap: usize,
    stop: Arc<AtomicBool>,
) -> io::Result<(thread::JoinHandle<Samples>, Engine)> {
    let sock = RecvSocket::open(&lo_config(port))?;
    let (source, _) = recv::open_source(sock.into_socket(), io_mode, &RecvConfig::default())?;
    let (engine, mut handles) = Engine::start(
        source,
        EngineConfig {
            consumers: 1,
            dispatch: Dispatch::All,
            ..EngineConfig::default()
        },
    )?;
    let mut c = handles.remove(0);
    let note = format!("io {:?}", engine.io_mode());
    let h = thread::spawn(move || {
        let mut lat = Vec::with_capacity(cap);
        while !stop.load(Ordering::Relaxed) {
            let ev = if spin {
                match c.try_pop() {
                    Some(e) => e,
                    None => {
                        std::hint::spin_loop();
                        continue;
                    }
                }
            } else {
                match c.recv_timeout(Duration::from_millis(20)) {
                    Some(e) => e,
                    None => continue,
                }
            };
            let t = now_ns();
            if let Event::Frame(f) = ev {
                if lat.len() < lat.capacity() {
                    lat.push(t.saturating_sub(ts_from(&f.data)));
                }
            }
        }
        Samples { lat, note }
    });
    Ok((h, engine))
}

/// Latencies written by a worker thread and read after it ends.
type SharedSamples = Arc<std::sync::Mutex<Vec<u64>>>;

/// An engine whose consumer is [`Engine::spawn_worker`] pinned to CPU 1 (the receive
/// thread is left to the scheduler). The worker hands samples back through a mutex taken
/// once per frame, uncontended: tens of ns against µs latencies.
fn worker_receiver(
    port: u16,
    cap: usize,
) -> io::Result<(Engine, canmc::engine::WorkerHandle, SharedSamples)> {
    let sock = RecvSocket::open(&lo_config(port))?;
    let (source, _) = recv::open_source(sock.into_socket(), IoMode::Uring, &RecvConfig::default())?;
    let (engine, mut handles) = Engine::start(
        source,
        EngineConfig {
            consumers: 1,
            dispatch: Dispatch::All,
            ..EngineConfig::default()
        },
    )?;
    let lat = Arc::new(std::sync::Mutex::new(Vec::with_capacity(cap)));
    let l2 = Arc::clone(&lat);
    let w = Engine::spawn_worker(handles.remove(0), Some(1), move |ev| {
        let t = now_ns();
        if let Event::Frame(f) = ev {
            let mut v = l2.lock().unwrap_or_else(|e| e.into_inner());
            if v.len() < v.capacity() {
                v.push(t.saturating_sub(ts_from(&f.data)));
            }
        }
    });
    Ok((engine, w, lat))
}

/// The run-to-completion handler: takes the latency of each frame on the receive thread.
struct LatencyHandler {
    lat: Vec<u64>,
}

impl InlineConsumer for LatencyHandler {
    fn on_event(&mut self, ev: &Event) -> bool {
        let t = now_ns();
        if let Event::Frame(f) = ev {
            if self.lat.len() < self.lat.capacity() {
                self.lat.push(t.saturating_sub(ts_from(&f.data)));
            }
        }
        true
    }
}

fn inline_receiver(
    port: u16,
    io_mode: IoMode,
    cap: usize,
) -> io::Result<InlineEngine<LatencyHandler>> {
    let sock = RecvSocket::open(&lo_config(port))?;
    let (source, _) = recv::open_source(sock.into_socket(), io_mode, &RecvConfig::default())?;
    let handler = LatencyHandler {
        lat: Vec::with_capacity(cap),
    };
    Engine::start_inline(source, EngineConfig::default(), handler)
}

/// CPU time (user + system) of this process so far, in ns.
fn process_cpu_ns() -> u64 {
    // SAFETY: `ru` is a valid out-pointer for getrusage.
    let mut ru: libc::rusage = unsafe { std::mem::zeroed() };
    // SAFETY: as above; RUSAGE_SELF always exists.
    unsafe { libc::getrusage(libc::RUSAGE_SELF, &mut ru) };
    let tv = |t: libc::timeval| t.tv_sec as u64 * 1_000_000_000 + t.tv_usec as u64 * 1_000;
    tv(ru.ru_utime) + tv(ru.ru_stime)
}

fn bus_receiver(
    port: u16,
    cap: usize,
    stop: Arc<AtomicBool>,
) -> io::Result<thread::JoinHandle<Samples>> {
    let mut bus = Bus::open(&BusConfig::new(lo_config(port)))?;
    let note = format!("io {:?}", bus.io_mode());
    Ok(thread::spawn(move || {
        let mut lat = Vec::with_capacity(cap);
        while !stop.load(Ordering::Relaxed) {
            match bus.recv(Duration::from_millis(20)) {
                Ok(Some(f)) => {
                    let t = now_ns();
                    if lat.len() < lat.capacity() {
                        lat.push(t.saturating_sub(ts_from(&f.data)));
                    }
                }
                Ok(None) => {}
                Err(e) => panic!("Bus::recv failed: {e}"),
            }
        }
        Samples { lat, note }
    }))
}

struct Result_ {
    name: &'static str,
    note: String,
    sent: usize,
    received: usize,
    p50: f64,
    p99: f64,
    p999: f64,
    max: f64,
    mean: f64,
    /// Process CPU per frame sent, sender included (µs).
    cpu_us: f64,
}

fn pct(sorted: &[u64], p: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() - 1) as f64 * p).round() as usize;
    sorted[i] as f64 / 1000.0
}

/// `s.lat` holds the samples of all rounds, warm-up already removed; `received` counts
/// every frame that arrived.
fn summarize(name: &'static str, s: Samples, sent: usize, received: usize, cpu_ns: u64) -> Result_ {
    let mut v = s.lat;
    v.sort_unstable();
    let mean = v.iter().sum::<u64>() as f64 / v.len().max(1) as f64 / 1000.0;
    Result_ {
        name,
        note: s.note,
        sent,
        received,
        p50: pct(&v, 0.50),
        p99: pct(&v, 0.99),
        p999: pct(&v, 0.999),
        max: v.last().map_or(f64::NAN, |&m| m as f64 / 1000.0),
        mean,
        cpu_us: cpu_ns as f64 / sent.max(1) as f64 / 1000.0,
    }
}

fn main() -> io::Result<()> {
    let o = opts();
    // Rounds interleave the receivers, so a burst of load from elsewhere on the machine
    // hits them all alike rather than one of them.
    let per_round = (o.rate * o.seconds / o.rounds as f64) as usize + WARMUP;
    let cap = per_round + 1024;
    let mut sender = Sender::new()?;
    let at = sender.at;
    let scenarios: [&'static str; 8] = [
        "raw blocking recv",
        "engine uring, recv_timeout",
        "engine uring, spin try_pop",
        "engine mmsg, recv_timeout",
        "engine uring, worker on CPU 1",
        "Bus::recv",
        "engine uring, inline handler",
        "engine mmsg, inline handler",
    ];
    // Process CPU time spent in each scenario's rounds.
    let mut cpu = vec![0u64; scenarios.len()];
    let mut acc: Vec<(Samples, usize, usize)> = scenarios
        .iter()
        .map(|_| {
            let lat = Vec::with_capacity(cap * o.rounds);
            (
                Samples {
                    lat,
                    note: String::new(),
                },
                0,
                0,
            )
        })
        .collect();
    let t0 = Instant::now();
    for round in 0..o.rounds {
        for (i, &name) in scenarios.iter().enumerate() {
            if o.only.as_deref().is_some_and(|f| !name.contains(f)) {
                continue;
            }
            let port = BASE_PORT + i as u16;
            let stop = Arc::new(AtomicBool::new(false));
            let s2 = Arc::clone(&stop);
            let cpu_before = process_cpu_ns();
            if i >= 6 {
                let io_mode = if i == 7 { IoMode::Mmsg } else { IoMode::Uring };
                let running = inline_receiver(port, io_mode, cap)?;
                let note = format!("io {:?}", running.engine().io_mode());
                thread::sleep(Duration::from_millis(100));
                sender.run(port, o.rate, per_round)?;
                thread::sleep(Duration::from_millis(100));
                running.engine().stop();
                let (result, handler) = running.join();
                result?;
                let v = handler.map(|h| h.lat).unwrap_or_default();
                cpu[i] += process_cpu_ns() - cpu_before;
                let a = &mut acc[i];
                a.1 += per_round;
                a.2 += v.len();
                a.0.note = note;
                a.0.lat.extend(v.iter().skip(WARMUP));
                eprintln!("round {round} {name:<31} received {}/{per_round}", v.len());
                continue;
            }
            if i == 4 {
                let (engine, worker, lat) = worker_receiver(port, cap)?;
                let note = match worker.pin_error() {
                    Some(e) => format!("io {:?}, pinning failed: {e}", engine.io_mode()),
                    None => format!("io {:?}, worker pinned to CPU 1", engine.io_mode()),
                };
                thread::sleep(Duration::from_millis(100));
                sender.run(port, o.rate, per_round)?;
                thread::sleep(Duration::from_millis(100));
                engine.stop();
                engine.join()?;
                worker.join().expect("worker thread");
                cpu[i] += process_cpu_ns() - cpu_before;
                let v = std::mem::take(&mut *lat.lock().unwrap_or_else(|e| e.into_inner()));
                let a = &mut acc[i];
                a.1 += per_round;
                a.2 += v.len();
                a.0.note = note;
                a.0.lat.extend(v.iter().skip(WARMUP));
                eprintln!("round {round} {name:<31} received {}/{per_round}", v.len());
                continue;
            }
            // Each receiver joins before the first datagram goes out.
            let (handle, engine): (thread::JoinHandle<Samples>, Option<Engine>) = match i {
                0 => {
                    let h = thread::spawn(move || {
                        raw_receiver(port, cap, s2, at).expect("raw receiver")
                    });
                    (h, None)
                }
                1..=3 => {
                    let io_mode = if i == 3 { IoMode::Mmsg } else { IoMode::Uring };
                    let (h, e) = engine_receiver(port, io_mode, i == 2, cap, s2)?;
                    (h, Some(e))
                }
                _ => (bus_receiver(port, cap, s2)?, None),
            };
            thread::sleep(Duration::from_millis(100));
            sender.run(port, o.rate, per_round)?;
            thread::sleep(Duration::from_millis(100));
            stop.store(true, Ordering::Relaxed);
            let samples = handle.join().expect("receiver thread");
            if let Some(e) = engine {
                e.stop();
                e.join()?;
            }
            cpu[i] += process_cpu_ns() - cpu_before;
            let a = &mut acc[i];
            a.1 += per_round;
            a.2 += samples.lat.len();
            a.0.note = samples.note;
            a.0.lat.extend(samples.lat.iter().skip(WARMUP));
            eprintln!(
                "round {round} {name:<31} received {}/{per_round}",
                samples.lat.len()
            );
        }
    }
    let results: Vec<Result_> = scenarios
        .iter()
        .zip(acc)
        .zip(cpu)
        .filter(|((_, a), _)| a.1 > 0)
        .map(|((&name, (s, sent, received)), cpu_ns)| summarize(name, s, sent, received, cpu_ns))
        .collect();
    let wall = t0.elapsed().as_secs_f64();
    let base = results
        .iter()
        .find(|r| r.name == "raw blocking recv")
        .map(|r| (r.p50, r.p99, r.p999));
    println!(
        "\none-way latency, {} msgs/s for {} s each in {} rounds, first {WARMUP} of each \
         round dropped (µs)",
        o.rate, o.seconds, o.rounds
    );
    println!(
        "{:<31} {:>9} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>8} {:>9}",
        "receiver",
        "received",
        "p50",
        "p99",
        "p99.9",
        "max",
        "p50/raw",
        "p99/raw",
        "p999/raw",
        "CPU µs/fr"
    );
    for r in &results {
        let (b50, b99, b999) = base.unwrap_or((f64::NAN, f64::NAN, f64::NAN));
        println!(
            "{:<31} {:>9} {:>8.1} {:>8.1} {:>8.1} {:>8.0} {:>8.2} {:>8.2} {:>8.2} {:>9.1}",
            r.name,
            r.received,
            r.p50,
            r.p99,
            r.p999,
            r.max,
            r.p50 / b50,
            r.p99 / b99,
            r.p999 / b999,
            r.cpu_us
        );
    }
    println!("wall {wall:.1} s");
    if let Some(path) = &o.json {
        std::fs::write(path, to_json(&o, &results, base, wall))?;
        println!("wrote {path}");
    }
    Ok(())
}

fn load() -> String {
    std::fs::read_to_string("/proc/loadavg")
        .unwrap_or_default()
        .split_whitespace()
        .take(3)
        .collect::<Vec<_>>()
        .join(", ")
}

fn to_json(o: &Opts, rs: &[Result_], base: Option<(f64, f64, f64)>, wall: f64) -> String {
    let num = |x: f64| {
        if x.is_finite() {
            format!("{x:.3}")
        } else {
            "null".into()
        }
    };
    let (b50, b99, b999) = base.unwrap_or((f64::NAN, f64::NAN, f64::NAN));
    let rows: Vec<String> = rs
        .iter()
        .map(|r| {
            format!(
                "  {{\"name\":\"{}\",\"note\":\"{}\",\"sent\":{},\"received\":{},\
                 \"p50_us\":{},\"p99_us\":{},\"p999_us\":{},\"max_us\":{},\"mean_us\":{},\
                 \"p50_vs_raw\":{},\"p99_vs_raw\":{},\"p999_vs_raw\":{},\"cpu_us_per_frame\":{}}}",
                r.name,
                r.note,
                r.sent,
                r.received,
                num(r.p50),
                num(r.p99),
                num(r.p999),
                num(r.max),
                num(r.mean),
                num(r.p50 / b50),
                num(r.p99 / b99),
                num(r.p999 / b999),
                num(r.cpu_us)
            )
        })
        .collect();
    format!(
        "{{\"command\":\"cargo bench --bench latency -- --rate {} --seconds {} --rounds {} \
         --json ...\",\"rate\":{},\"seconds\":{},\"rounds\":{},\"warmup_dropped\":{WARMUP},\"loadavg\":[{}],\"wall_s\":{:.1},\
         \n\"results\":[\n{}\n]}}\n",
        o.rate,
        o.seconds,
        o.rounds,
        o.rate,
        o.seconds,
        o.rounds,
        load(),
        wall,
        rows.join(",\n")
    )
}
