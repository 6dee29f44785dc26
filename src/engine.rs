//! The receive engine: one thread takes datagrams from a [`DatagramSource`], decodes
//! them, filters them by sender and hands each frame to one or all consumers through a
//! lock-free SPSC [`ring`](crate::ring) per consumer.
//!
//! ```text
//!                         ┌─► ring 0 ─► ConsumerHandle 0 (your thread or a pinned worker)
//! source ─► canmc-rx ─────┼─► ring 1 ─► ConsumerHandle 1
//!           decode/filter └─► …
//! ```
//!
//! The receive thread never waits for a consumer: a frame that finds its ring full is
//! dropped and counted ([`Stats::ring_drops`]). It allocates nothing after
//! [`Engine::start`], keeps its counters in plain integers and publishes them once per
//! batch, and wakes a sleeping consumer at most once per batch, so no syscall is made per
//! frame.
//!
//! ```
//! use std::time::Duration;
//! use canmc::engine::{Dispatch, Engine, EngineConfig, Event};
//! use canmc::recv::{DatagramSource, IoMode, RecvMeta};
//! use canmc::wire::pycan;
//! use canmc::CanFrame;
//!
//! /// Stands in for a socket: one python-can datagram, then silence.
//! struct OneShot(Option<Vec<u8>>);
//! impl DatagramSource for OneShot {
//!     fn poll(&mut self, t: Duration, f: &mut dyn FnMut(&[u8], &RecvMeta)) -> std::io::Result<usize> {
//!         match self.0.take() {
//!             Some(d) => { f(&d, &RecvMeta::default()); Ok(1) }
//!             None => { std::thread::sleep(t); Ok(0) }
//!         }
//!     }
//!     fn mode(&self) -> IoMode { IoMode::Mmsg }
//! }
//!
//! let mut buf = [0; pycan::MAX_ENCODED];
//! let n = pycan::encode(&CanFrame::new(0x123, 0, &[1, 2]).unwrap(), &mut buf);
//! let cfg = EngineConfig { consumers: 2, dispatch: Dispatch::ById, ..Default::default() };
//! let (engine, mut consumers) = Engine::start(Box::new(OneShot(Some(buf[..n].to_vec()))), cfg)?;
//! let mine = canmc::engine::consumer_for(0x123, false, 2);
//! match consumers[mine].recv_timeout(Duration::from_secs(5)) {
//!     Some(Event::Frame(f)) => assert_eq!(f.payload(), &[1, 2]),
//!     other => panic!("{other:?}"),
//! }
//! engine.stop();
//! engine.join()?;
//! assert!(consumers[mine].is_closed());
//! # Ok::<(), std::io::Error>(())
//! ```

use std::io;
use std::net::{IpAddr, SocketAddr};
use std::sync::atomic::{fence, AtomicBool, AtomicU64, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle, Thread, ThreadId};
use std::time::{Duration, Instant};

use crate::frame::{CanFrame, SenderAddr};
use crate::recv::{DatagramSource, IoMode, RecvMeta};
use crate::ring::{self, Consumer, Producer};
use crate::wire::{self, pycan, DecodeError, WireFormat};

/// How frames are shared out among consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// Each frame goes to one consumer, chosen by a hash of its identifier and
    /// IDE bit ([`consumer_for`]), so all frames of one ID arrive in order at one
    /// consumer.
    #[default]
    ById,
    /// Every consumer gets every frame.
    All,
}

/// Settings for [`Engine::start`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Number of consumers (and rings); at least 1.
    pub consumers: usize,
    /// Slots per ring, rounded up to a power of two; at least 1.
    pub ring_capacity: usize,
    /// How frames are shared out.
    pub dispatch: Dispatch,
    /// Datagrams from this address (our own sender, seen through multicast loopback)
    /// are dropped and counted as filtered. `None` keeps them.
    pub drop_from: Option<SocketAddr>,
    /// If not empty, only datagrams from these addresses are accepted (`--source`);
    /// the rest are counted as filtered.
    pub accept_only: Vec<IpAddr>,
    /// Longest the receive thread waits in the source before checking for
    /// [`Engine::stop`]; bounds how long stopping takes.
    pub poll_timeout: Duration,
}

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            consumers: 1,
            ring_capacity: 16 * 1024,
            dispatch: Dispatch::ById,
            drop_from: None,
            accept_only: Vec::new(),
            poll_timeout: Duration::from_millis(100),
        }
    }
}

/// What a consumer receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A decoded frame, with the kernel's receive timestamp and the sender's address.
    Frame(CanFrame),
    /// A sender's datagrams went missing (native format sequence gap).
    Loss {
        sender: SenderAddr,
        lost: u64,
        timestamp_ns: u64,
    },
    /// The kernel dropped `count` datagrams on this socket (its SO_RXQ_OVFL counter grew)
    /// before the datagram received at `timestamp_ns`. Sent to every consumer.
    KernelDrops { count: u64, timestamp_ns: u64 },
}

impl Default for Event {
    /// An empty frame; handy to initialise a [`ConsumerHandle::pop_batch`] buffer.
    fn default() -> Self {
        Event::Frame(CanFrame::EMPTY)
    }
}

/// The engine's counters, shared with any thread through [`Engine::counters`].
///
/// Written by the receive thread only, once per batch, with `Relaxed` stores: reading
/// them never slows the receive path. A [`snapshot`](Counters::snapshot) taken while
/// running may mix two consecutive batches; each value on its own is exact as of its
/// batch.
#[derive(Debug, Default)]
pub struct Counters {
    datagrams: AtomicU64,
    frames: AtomicU64,
    bytes: AtomicU64,
    decode_errors: [AtomicU64; DecodeError::COUNT],
    kernel_drops: AtomicU64,
    ring_drops: AtomicU64,
    seq_gaps: AtomicU64,
    filtered: AtomicU64,
}

/// A copy of the [`Counters`] at one moment.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Stats {
    /// Datagrams received (all of them, including filtered and undecodable ones).
    pub datagrams: u64,
    /// Frames decoded from accepted datagrams (delivered + ring drops in [`Dispatch::ById`]).
    pub frames: u64,
    /// Payload bytes of all received datagrams.
    pub bytes: u64,
    /// Datagrams (or native records) not decoded, by [`DecodeError`] kind, indexed by
    /// `kind as usize`.
    pub decode_errors: [u64; DecodeError::COUNT],
    /// Datagrams the kernel dropped on the socket (SO_RXQ_OVFL).
    pub kernel_drops: u64,
    /// Frame deliveries refused by a full ring. With [`Dispatch::All`] a frame dropped
    /// by two consumers counts twice.
    pub ring_drops: u64,
    /// Datagrams missing from native senders' sequences.
    pub seq_gaps: u64,
    /// Datagrams dropped because of their sender ([`EngineConfig::drop_from`],
    /// [`EngineConfig::accept_only`]).
    pub filtered: u64,
}

impl Stats {
    /// All decode errors together.
    pub fn decode_errors_total(&self) -> u64 {
        self.decode_errors.iter().sum()
    }

    /// Decode errors of one kind.
    pub fn decode_error(&self, kind: DecodeError) -> u64 {
        self.decode_errors[kind as usize]
    }
}

impl Counters {
    /// Reads every counter.
    pub fn snapshot(&self) -> Stats {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        Stats {
            datagrams: ld(&self.datagrams),
            frames: ld(&self.frames),
            bytes: ld(&self.bytes),
            decode_errors: std::array::from_fn(|i| ld(&self.decode_errors[i])),
            kernel_drops: ld(&self.kernel_drops),
            ring_drops: ld(&self.ring_drops),
            seq_gaps: ld(&self.seq_gaps),
            filtered: ld(&self.filtered),
        }
    }

    /// Single writer, so a store of the writer's running total is enough (no RMW).
    fn publish(&self, s: &Stats) {
        let st = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
        st(&self.datagrams, s.datagrams);
        st(&self.frames, s.frames);
        st(&self.bytes, s.bytes);
        for (a, &v) in self.decode_errors.iter().zip(&s.decode_errors) {
            st(a, v);
        }
        st(&self.kernel_drops, s.kernel_drops);
        st(&self.ring_drops, s.ring_drops);
        st(&self.seq_gaps, s.seq_gaps);
        st(&self.filtered, s.filtered);
    }
}

/// The consumer index [`Dispatch::ById`] sends a frame with this identifier to.
///
/// Fixed (no per-process seed), so an application can plan which consumer handles which
/// IDs.
pub fn consumer_for(id: u32, extended: bool, consumers: usize) -> usize {
    if consumers <= 1 {
        return 0;
    }
    let key = u64::from(id) | (u64::from(extended) << 32);
    // Fibonacci hashing: the multiply spreads neighbouring IDs (0x100, 0x101, …) across
    // the high bits, which a plain `id % n` would not do for strided ID plans.
    let h = key.wrapping_mul(0x9E37_79B9_7F4A_7C15) >> 32;
    (h % consumers as u64) as usize
}

/// Where a consumer thread sleeps, so the receive thread can wake it.
#[derive(Default)]
struct Wake {
    sleeping: AtomicBool,
    thread: Mutex<Option<Thread>>,
}

impl Wake {
    /// Called by the receive thread after it pushed to this consumer's ring.
    fn notify(&self) {
        // Pairs with the fence in `ConsumerHandle::wait`: either the consumer sees our
        // pushes when it re-checks the ring, or we see its `sleeping` flag here.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            // try_lock: never block the receive thread. The lock is only held while a
            // consumer registers itself, before it sets `sleeping`, and its re-check of
            // the ring after setting `sleeping` covers a miss here.
            if let Ok(t) = self.thread.try_lock() {
                if let Some(t) = t.as_ref() {
                    t.unpark();
                }
            }
        }
    }
}

impl Wake {
    /// Unconditional wake-up, for the end of the engine (not on the hot path).
    fn unpark(&self) {
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = t.as_ref() {
            t.unpark();
        }
    }
}

/// How long spinning lasts before a waiting consumer parks (about a microsecond).
const SPINS: u32 = 256;
/// A parked consumer re-checks at least this often. Only a safety net: the receive
/// thread unparks it (see `Wake::notify`), so this does not bound latency.
const PARK_STEP: Duration = Duration::from_millis(5);

/// One consumer's end of the engine: a ring of [`Event`]s.
///
/// Can be moved to another thread (or handed to [`Engine::spawn_worker`]); it is used
/// from one thread at a time. Once a handle is dropped, the frames dispatched to it
/// fill its ring and then count as ring drops.
pub struct ConsumerHandle {
    ring: Consumer<Event>,
    wake: Arc<Wake>,
    registered: Option<ThreadId>,
    index: usize,
}

impl ConsumerHandle {
    /// This consumer's index, `0..consumers`, as used by [`consumer_for`].
    pub fn index(&self) -> usize {
        self.index
    }

    /// Takes the next event, if one is waiting. Never blocks.
    #[inline]
    pub fn try_pop(&mut self) -> Option<Event> {
        self.ring.pop()
    }

    /// Takes up to `out.len()` waiting events; returns how many. Never blocks.
    #[inline]
    pub fn pop_batch(&mut self, out: &mut [Event]) -> usize {
        self.ring.pop_batch(out)
    }

    /// Takes the next event, waiting up to `timeout` for one: spins briefly, then parks
    /// in short steps; the receive thread unparks it after a batch. `None` on timeout or
    /// when the engine has stopped and everything was read.
    pub fn recv_timeout(&mut self, timeout: Duration) -> Option<Event> {
        if self.wait(timeout) {
            self.ring.pop()
        } else {
            None
        }
    }

    /// True once the engine has stopped and every event has been read.
    pub fn is_closed(&mut self) -> bool {
        // Abandonment first: after the producer is gone, an empty ring stays empty.
        self.ring.is_abandoned() && self.ring.is_empty()
    }

    /// Events waiting right now.
    pub fn len(&mut self) -> usize {
        self.ring.len()
    }

    /// True if no event is waiting right now.
    pub fn is_empty(&mut self) -> bool {
        self.ring.is_empty()
    }

    /// Slots in this consumer's ring.
    pub fn capacity(&self) -> usize {
        self.ring.capacity()
    }

    /// Waits until an event is ready (true), or the timeout passes or the engine is
    /// closed (false).
    pub fn wait(&mut self, timeout: Duration) -> bool {
        for _ in 0..SPINS {
            if !self.ring.is_empty() {
                return true;
            }
            std::hint::spin_loop();
        }
        let start = Instant::now();
        loop {
            if !self.ring.is_empty() {
                return true;
            }
            if self.ring.is_abandoned() {
                return !self.ring.is_empty();
            }
            let waited = start.elapsed();
            if waited >= timeout {
                return false;
            }
            self.register();
            self.wake.sleeping.store(true, Ordering::Relaxed);
            // Pairs with the fence in `Wake::notify` (see there).
            fence(Ordering::SeqCst);
            if !self.ring.is_empty() {
                self.wake.sleeping.store(false, Ordering::Relaxed);
                return true;
            }
            thread::park_timeout((timeout - waited).min(PARK_STEP));
            self.wake.sleeping.store(false, Ordering::Relaxed);
        }
    }

    /// Tells the receive thread which thread to unpark; only when the handle has moved
    /// to a new thread, so the steady state takes no lock here.
    fn register(&mut self) {
        let me = thread::current();
        if self.registered != Some(me.id()) {
            self.registered = Some(me.id());
            let mut slot = self.wake.thread.lock().unwrap_or_else(|e| e.into_inner());
            *slot = Some(me);
        }
    }
}

impl std::fmt::Debug for ConsumerHandle {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ConsumerHandle")
            .field("index", &self.index)
            .field("capacity", &self.ring.capacity())
            .finish()
    }
}

/// The receive engine. Dropping it stops and joins the receive thread.
pub struct Engine {
    stop: Arc<AtomicBool>,
    counters: Arc<Counters>,
    mode: IoMode,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl Engine {
    /// Starts the receive thread (`canmc-rx`) on `source` and returns the engine and one
    /// handle per consumer. All memory the engine needs is allocated here.
    ///
    /// Errors: `InvalidInput` for zero consumers or a zero ring capacity, or the
    /// thread-spawn error.
    pub fn start(
        source: Box<dyn DatagramSource>,
        cfg: EngineConfig,
    ) -> io::Result<(Engine, Vec<ConsumerHandle>)> {
        if cfg.consumers == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "the engine needs at least one consumer",
            ));
        }
        if cfg.ring_capacity == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "ring capacity must be at least 1 slot",
            ));
        }
        let mut producers = Vec::with_capacity(cfg.consumers);
        let mut wakes = Vec::with_capacity(cfg.consumers);
        let mut handles = Vec::with_capacity(cfg.consumers);
        for index in 0..cfg.consumers {
            let (tx, rx) = ring::ring::<Event>(cfg.ring_capacity);
            let wake = Arc::new(Wake::default());
            producers.push(tx);
            wakes.push(Arc::clone(&wake));
            handles.push(ConsumerHandle {
                ring: rx,
                wake,
                registered: None,
                index,
            });
        }
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicBool::new(false));
        let mode = source.mode();
        let sink = Sink {
            pushed: vec![false; cfg.consumers],
            producers,
            wakes,
            dispatch: cfg.dispatch,
            drop_from: cfg.drop_from,
            accept_only: cfg.accept_only.iter().map(|ip| ip.to_canonical()).collect(),
            stats: Stats::default(),
            last_kernel_drops: 0,
            counters: Arc::clone(&counters),
        };
        let rx = Rx {
            source,
            sink,
            stop: Arc::clone(&stop),
            timeout: cfg.poll_timeout,
        };
        let thread = thread::Builder::new()
            .name("canmc-rx".into())
            .spawn(move || rx.run())?;
        Ok((
            Engine {
                stop,
                counters,
                mode,
                thread: Some(thread),
            },
            handles,
        ))
    }

    /// The live counters; keep the `Arc` and [`snapshot`](Counters::snapshot) it from
    /// any thread, at any time.
    pub fn counters(&self) -> Arc<Counters> {
        Arc::clone(&self.counters)
    }

    /// Shorthand for `counters().snapshot()`.
    pub fn stats(&self) -> Stats {
        self.counters.snapshot()
    }

    /// The receive path the source uses.
    pub fn io_mode(&self) -> IoMode {
        self.mode
    }

    /// Asks the receive thread to stop; it exits within the poll timeout. Consumers
    /// can still read what is in their rings, then see [`ConsumerHandle::is_closed`].
    pub fn stop(&self) {
        self.stop.store(true, Ordering::Relaxed);
    }

    /// True once the receive thread has exited (stopped, or the source failed).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Waits for the receive thread to exit (call [`stop`](Engine::stop) first) and
    /// returns the source's error, if it failed.
    pub fn join(mut self) -> io::Result<()> {
        self.join_inner()
    }

    fn join_inner(&mut self) -> io::Result<()> {
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| Err(io::Error::other("receive thread panicked"))),
            None => Ok(()),
        }
    }

    /// Runs `f` on every event of `handle`, on a new thread (`canmc-worker-N`) pinned
    /// to `cpu` if given. A pinning failure does not stop the worker: it runs unpinned
    /// and [`WorkerHandle::pin_error`] says why. The worker ends when the engine has
    /// stopped and the ring is drained.
    ///
    /// # Panics
    ///
    /// If the OS cannot create a thread.
    pub fn spawn_worker(
        mut handle: ConsumerHandle,
        cpu: Option<usize>,
        mut f: impl FnMut(&Event) + Send + 'static,
    ) -> WorkerHandle {
        let (pin_tx, pin_rx) = mpsc::channel();
        let thread = thread::Builder::new()
            .name(format!("canmc-worker-{}", handle.index))
            .spawn(move || {
                let pinned = match cpu {
                    Some(cpu) => pin_current_thread(cpu).map_err(|e| e.to_string()),
                    None => Ok(()),
                };
                let _ = pin_tx.send(pinned.err());
                let mut buf = [Event::default(); 64];
                loop {
                    let n = handle.pop_batch(&mut buf);
                    if n == 0 {
                        if handle.is_closed() {
                            break;
                        }
                        handle.wait(Duration::from_millis(100));
                        continue;
                    }
                    for ev in &buf[..n] {
                        f(ev);
                    }
                }
            })
            .expect("cannot spawn a worker thread");
        let pin_error = pin_rx.recv().unwrap_or(None);
        WorkerHandle {
            thread,
            pin_error,
            cpu,
        }
    }
}

impl Drop for Engine {
    fn drop(&mut self) {
        self.stop();
        let _ = self.join_inner();
    }
}

impl std::fmt::Debug for Engine {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Engine")
            .field("mode", &self.mode)
            .field("stats", &self.stats())
            .finish()
    }
}

/// A worker thread started by [`Engine::spawn_worker`].
#[derive(Debug)]
pub struct WorkerHandle {
    thread: JoinHandle<()>,
    pin_error: Option<String>,
    cpu: Option<usize>,
}

impl WorkerHandle {
    /// Why pinning to the requested CPU failed, if it did (the worker then runs
    /// unpinned).
    pub fn pin_error(&self) -> Option<String> {
        self.pin_error.clone()
    }

    /// The CPU the worker was asked to run on.
    pub fn cpu(&self) -> Option<usize> {
        self.cpu
    }

    /// True once the worker has returned.
    pub fn is_finished(&self) -> bool {
        self.thread.is_finished()
    }

    /// Waits for the worker to end (after the engine stops and its ring is drained).
    /// `Err` carries the panic of `f`, if it panicked.
    pub fn join(self) -> thread::Result<()> {
        self.thread.join()
    }
}

/// Pins the calling thread to one CPU (sched_setaffinity).
pub fn pin_current_thread(cpu: usize) -> io::Result<()> {
    let setsize = libc::CPU_SETSIZE as usize;
    if cpu >= setsize {
        return Err(io::Error::new(
            io::ErrorKind::InvalidInput,
            format!(
                "cannot pin to CPU {cpu}: sched_setaffinity addresses CPUs 0-{}",
                setsize - 1
            ),
        ));
    }
    // SAFETY: cpu_set_t is a plain bit array; all zeroes is the empty set.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    // SAFETY: `cpu < CPU_SETSIZE`, so the bit lies inside `set`.
    unsafe { libc::CPU_SET(cpu, &mut set) };
    // SAFETY: pid 0 means the calling thread; `set` is a valid cpu_set_t of the size
    // passed, and the kernel only reads it.
    let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of::<libc::cpu_set_t>(), &set) };
    if rc != 0 {
        let e = io::Error::last_os_error();
        return Err(io::Error::new(
            e.kind(),
            format!("cannot pin to CPU {cpu}: {e}"),
        ));
    }
    Ok(())
}

/// The receive thread's state.
struct Rx {
    source: Box<dyn DatagramSource>,
    sink: Sink,
    stop: Arc<AtomicBool>,
    timeout: Duration,
}

impl Rx {
    fn run(self) -> io::Result<()> {
        let Rx {
            mut source,
            mut sink,
            stop,
            timeout,
        } = self;
        let result = loop {
            if stop.load(Ordering::Relaxed) {
                break Ok(());
            }
            match source.poll(timeout, &mut |d, m| sink.on_datagram(d, m)) {
                Ok(0) => {}
                Ok(_) => sink.end_batch(),
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        // A source may hand over datagrams and then fail in the same poll.
        sink.end_batch();
        let wakes = std::mem::take(&mut sink.wakes);
        // Dropping the producers closes the rings; then wake every sleeper to see it.
        drop(sink);
        for w in &wakes {
            w.unpark();
        }
        result
    }
}

/// Everything the per-datagram path touches, apart from the source.
struct Sink {
    producers: Vec<Producer<Event>>,
    wakes: Vec<Arc<Wake>>,
    /// Which rings got something in this batch (sized at start, reused).
    pushed: Vec<bool>,
    dispatch: Dispatch,
    drop_from: Option<SocketAddr>,
    accept_only: Vec<IpAddr>,
    /// Running totals, published to `counters` once per batch.
    stats: Stats,
    last_kernel_drops: u32,
    counters: Arc<Counters>,
}

impl Sink {
    #[inline]
    fn on_datagram(&mut self, datagram: &[u8], meta: &RecvMeta) {
        self.stats.datagrams += 1;
        self.stats.bytes += datagram.len() as u64;
        self.note_kernel_drops(meta);
        if !self.accepts(&meta.sender) {
            self.stats.filtered += 1;
            return;
        }
        if meta.truncated {
            self.stats.decode_errors[DecodeError::Truncated as usize] += 1;
            return;
        }
        match wire::detect(datagram) {
            WireFormat::Pycan => {
                let mut frame = CanFrame::EMPTY;
                match pycan::decode(datagram, &mut frame) {
                    Ok(()) => {
                        // The kernel's clock, not the sender's, unless the source has none.
                        if meta.timestamp_ns != 0 {
                            frame.timestamp_ns = meta.timestamp_ns;
                        }
                        frame.sender = meta.sender;
                        self.deliver(frame);
                    }
                    Err(e) => self.stats.decode_errors[e as usize] += 1,
                }
            }
            // The native format is not decoded by this build yet.
            WireFormat::Native => {
                self.stats.decode_errors[DecodeError::UnknownType as usize] += 1;
            }
        }
    }

    /// The socket's drop counter is cumulative and only present once non-zero (the
    /// kernel sends no SO_RXQ_OVFL message while it is 0), so 0 means "no news".
    fn note_kernel_drops(&mut self, meta: &RecvMeta) {
        let now = meta.kernel_drops;
        if now == 0 || now == self.last_kernel_drops {
            return;
        }
        let delta = now.wrapping_sub(self.last_kernel_drops);
        self.last_kernel_drops = now;
        // A "decrease" would be a reordered datagram, not new drops: the u32 counter
        // wraps only after 2^32 drops, so a huge delta means it went backwards.
        if delta > u32::MAX / 2 {
            return;
        }
        let count = u64::from(delta);
        self.stats.kernel_drops += count;
        self.broadcast(Event::KernelDrops {
            count,
            timestamp_ns: meta.timestamp_ns,
        });
    }

    #[inline]
    fn accepts(&self, sender: &SenderAddr) -> bool {
        if self.drop_from.is_none() && self.accept_only.is_empty() {
            return true;
        }
        let Some(sa) = sender.get() else {
            return self.accept_only.is_empty();
        };
        let ip = sa.ip().to_canonical();
        if let Some(own) = self.drop_from {
            if own.port() == sa.port() && own.ip().to_canonical() == ip {
                return false;
            }
        }
        self.accept_only.is_empty() || self.accept_only.contains(&ip)
    }

    #[inline]
    fn deliver(&mut self, frame: CanFrame) {
        self.stats.frames += 1;
        match self.dispatch {
            Dispatch::ById => {
                let i = consumer_for(frame.id, frame.is_extended(), self.producers.len());
                self.push(i, Event::Frame(frame));
            }
            Dispatch::All => {
                for i in 0..self.producers.len() {
                    self.push(i, Event::Frame(frame));
                }
            }
        }
    }

    #[inline]
    fn push(&mut self, i: usize, ev: Event) {
        if self.producers[i].push(ev).is_ok() {
            self.pushed[i] = true;
        } else {
            self.stats.ring_drops += 1;
        }
    }

    /// Control events go to every consumer. One that finds a ring full is not counted
    /// as a ring drop (those count frames); the counters still hold what it reported.
    fn broadcast(&mut self, ev: Event) {
        for (i, p) in self.producers.iter_mut().enumerate() {
            if p.push(ev).is_ok() {
                self.pushed[i] = true;
            }
        }
    }

    fn end_batch(&mut self) {
        self.counters.publish(&self.stats);
        for (pushed, wake) in self.pushed.iter_mut().zip(&self.wakes) {
            if *pushed {
                *pushed = false;
                wake.notify();
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The receive thread's notify must unpark a sleeping consumer: the park step is
    /// only a safety net, and here the sleeper parks for 30 s.
    #[test]
    fn notify_unparks_a_registered_sleeper() {
        let wake = Arc::new(Wake::default());
        let go = Arc::new(AtomicBool::new(false));
        let (tx, rx) = mpsc::channel();
        let (w, g) = (Arc::clone(&wake), Arc::clone(&go));
        let sleeper = thread::spawn(move || {
            *w.thread.lock().unwrap() = Some(thread::current());
            w.sleeping.store(true, Ordering::Relaxed);
            tx.send(()).unwrap();
            let t = Instant::now();
            // Spurious wake-ups go back to sleep; only an unpark after `go` ends this.
            while !g.load(Ordering::Acquire) {
                thread::park_timeout(Duration::from_secs(30));
                if t.elapsed() > Duration::from_secs(30) {
                    break;
                }
            }
            t.elapsed()
        });
        rx.recv().unwrap();
        thread::sleep(Duration::from_millis(20));
        go.store(true, Ordering::Release);
        wake.notify();
        let took = sleeper.join().unwrap();
        assert!(
            took < Duration::from_secs(10),
            "sleeper woke after {took:?}"
        );
    }

    #[test]
    fn consumer_for_is_stable_and_in_range() {
        for n in 1..9 {
            for id in 0..2048 {
                let c = consumer_for(id, id % 2 == 0, n);
                assert!(c < n);
                assert_eq!(c, consumer_for(id, id % 2 == 0, n));
            }
        }
        // The IDE bit is part of the key.
        let differs = (0..2048).any(|id| consumer_for(id, false, 4) != consumer_for(id, true, 4));
        assert!(differs);
    }
}
