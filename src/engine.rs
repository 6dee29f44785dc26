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
use std::sync::atomic::{fence, AtomicBool, AtomicU64, AtomicU8, Ordering};
use std::sync::{mpsc, Arc, Mutex};
use std::thread::{self, JoinHandle, Thread, ThreadId};
use std::time::{Duration, Instant};

use crate::frame::{CanFrame, SenderAddr};
use crate::recv::{DatagramSource, Demux, IoMode, RecvMeta};
use crate::ring::{self, Consumer, Producer};
use crate::seq::SeqEvent;
use crate::wire::native::{self, PingProbe, Role};
use crate::wire::DecodeError;

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
#[derive(Clone, PartialEq, Eq)]
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
    /// Answer `ping` probes as this program (SPEC §8); `None` stays silent
    /// (`--no-answer`).
    pub answer_pings: Option<PingIdentity>,
    /// After a batch of fewer than [`COALESCE_BATCH`] datagrams, wait this long before
    /// polling again, so that at low rates one wake-up handles many datagrams (the
    /// socket buffer holds them meanwhile). Trades that much latency for CPU: right for
    /// a recorder, wrong for a latency-sensitive consumer. `None` by default.
    pub coalesce: Option<Duration>,
    /// Accept only native datagrams authenticated with this key (python-can ones are
    /// refused too) and authenticate `ping` answers with it; refusals are counted as
    /// `bad_auth` decode errors. `None` (the default) accepts everything.
    pub auth_key: Option<native::AuthKey>,
}

/// Batches smaller than this make a coalescing engine wait (see
/// [`EngineConfig::coalesce`]).
pub const COALESCE_BATCH: usize = 32;

/// A consumer that runs on the receive thread itself, instead of behind a ring.
///
/// For a consumer fast enough to keep up with the socket (a recorder writing to a
/// memory map), this saves a 136-byte copy per frame and a thread: on a machine with few
/// cores, the difference between keeping up and losing frames. A slow inline consumer
/// slows the receive loop, and the socket buffer then fills: its drops are counted as
/// `kernel_drops`.
pub trait InlineConsumer: Send + 'static {
    /// Called for each event, in order. Return `false` to stop the engine (a frame
    /// limit reached, a write error).
    fn on_event(&mut self, event: &Event) -> bool;

    /// Called after each batch of datagrams and when the socket is idle (a place to
    /// flush).
    fn on_batch_end(&mut self) {}
}

/// The engine's inline slot when consumers are rings.
struct NoInline;

impl InlineConsumer for NoInline {
    fn on_event(&mut self, _: &Event) -> bool {
        true
    }
}

/// How this program describes itself in `ping` answers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PingIdentity {
    pub role: Role,
    /// Host name (cut to 64 bytes on the wire).
    pub host: String,
    pub pid: u32,
}

impl PingIdentity {
    /// This process, on this host, in `role`.
    pub fn this_process(role: Role) -> PingIdentity {
        PingIdentity {
            role,
            host: host_name(),
            pid: std::process::id(),
        }
    }
}

/// The host name, or `"?"` when the system has none to give.
pub fn host_name() -> String {
    let mut buf = [0u8; 256];
    // SAFETY: `buf` is writable for its length; gethostname NUL-terminates within it
    // on success (we also bound the read by the length).
    let rc = unsafe { libc::gethostname(buf.as_mut_ptr().cast(), buf.len()) };
    if rc != 0 {
        return "?".into();
    }
    let n = buf.iter().position(|&b| b == 0).unwrap_or(buf.len());
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

impl std::fmt::Debug for EngineConfig {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // The key never goes into logs.
        f.debug_struct("EngineConfig")
            .field("consumers", &self.consumers)
            .field("ring_capacity", &self.ring_capacity)
            .field("dispatch", &self.dispatch)
            .field("drop_from", &self.drop_from)
            .field("accept_only", &self.accept_only)
            .field("poll_timeout", &self.poll_timeout)
            .field("answer_pings", &self.answer_pings)
            .field("coalesce", &self.coalesce)
            .field("auth_key", &self.auth_key.map(|_| "<key>"))
            .finish()
    }
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
            answer_pings: Some(PingIdentity::this_process(Role::App)),
            coalesce: None,
            auth_key: None,
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
    duplicates: AtomicU64,
    reordered: AtomicU64,
    filtered: AtomicU64,
    pings_answered: AtomicU64,
    senders: AtomicU64,
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
    /// Datagrams missing from native senders' sequences, net of late arrivals: a gap
    /// is counted when seen, and a datagram that arrives late to fill it takes it back.
    pub seq_gaps: u64,
    /// Native datagrams seen twice; their frames were delivered once.
    pub duplicates: u64,
    /// Native datagrams that arrived after a later one of the same sender.
    pub reordered: u64,
    /// Datagrams dropped because of their sender ([`EngineConfig::drop_from`],
    /// [`EngineConfig::accept_only`]).
    pub filtered: u64,
    /// `ping` probes answered.
    pub pings_answered: u64,
    /// Native senders seen (each new sender id counts once; a restarted sender picks
    /// a new id).
    pub senders: u64,
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
            duplicates: ld(&self.duplicates),
            reordered: ld(&self.reordered),
            filtered: ld(&self.filtered),
            pings_answered: ld(&self.pings_answered),
            senders: ld(&self.senders),
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
        st(&self.duplicates, s.duplicates);
        st(&self.reordered, s.reordered);
        st(&self.filtered, s.filtered);
        st(&self.pings_answered, s.pings_answered);
        st(&self.senders, s.senders);
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
    stop: Arc<AtomicU8>,
    counters: Arc<Counters>,
    mode: IoMode,
    thread: Option<JoinHandle<(io::Result<()>, Option<NoInline>)>>,
}

/// An engine whose consumer runs on its receive thread ([`Engine::start_inline`]).
pub struct InlineEngine<C> {
    engine: Engine,
    thread: Option<JoinHandle<(io::Result<()>, Option<C>)>>,
}

impl<C> InlineEngine<C> {
    /// The engine: counters, stop, receive path.
    pub fn engine(&self) -> &Engine {
        &self.engine
    }

    /// True once the receive thread has ended (stopped, or the consumer asked to).
    pub fn is_finished(&self) -> bool {
        self.thread.as_ref().is_none_or(|t| t.is_finished())
    }

    /// Stops the engine, waits for the receive thread and returns the consumer, with
    /// the source's error if it failed.
    pub fn join(mut self) -> (io::Result<()>, Option<C>) {
        self.engine.request(STOP_NOW);
        match self.thread.take() {
            Some(t) => t
                .join()
                .unwrap_or_else(|_| (Err(io::Error::other("receive thread panicked")), None)),
            None => (Ok(()), None),
        }
    }
}

impl<C> Drop for InlineEngine<C> {
    fn drop(&mut self) {
        self.engine.stop();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
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
        let (engine, thread) = Engine::spawn_rx(source, cfg, producers, wakes, None::<NoInline>)?;
        let mut engine = engine;
        engine.thread = Some(thread);
        Ok((engine, handles))
    }

    /// Starts the receive thread with `consumer` running on it (see
    /// [`InlineConsumer`]); there are no rings and no handles. Stop it with
    /// [`Engine::stop`] (or from the consumer), then [`InlineEngine::join`] to get the
    /// consumer back.
    pub fn start_inline<C: InlineConsumer>(
        source: Box<dyn DatagramSource>,
        cfg: EngineConfig,
        consumer: C,
    ) -> io::Result<InlineEngine<C>> {
        let (engine, thread) =
            Engine::spawn_rx(source, cfg, Vec::new(), Vec::new(), Some(consumer))?;
        Ok(InlineEngine {
            engine,
            thread: Some(thread),
        })
    }

    #[allow(clippy::type_complexity)]
    fn spawn_rx<C: InlineConsumer>(
        source: Box<dyn DatagramSource>,
        cfg: EngineConfig,
        producers: Vec<Producer<Event>>,
        wakes: Vec<Arc<Wake>>,
        inline: Option<C>,
    ) -> io::Result<(Engine, JoinHandle<(io::Result<()>, Option<C>)>)> {
        let counters = Arc::new(Counters::default());
        let stop = Arc::new(AtomicU8::new(RUN));
        let mode = source.mode();
        let sink = Sink {
            pushed: vec![false; producers.len()],
            producers,
            wakes,
            dispatch: cfg.dispatch,
            drop_from: cfg.drop_from,
            accept_only: cfg.accept_only.iter().map(|ip| ip.to_canonical()).collect(),
            stats: Stats::default(),
            last_kernel_drops: 0,
            counters: Arc::clone(&counters),
            responder: cfg.answer_pings.map(|id| Responder::new(id, cfg.auth_key)),
            inline,
            stop: Arc::clone(&stop),
        };
        let rx = Rx {
            source,
            sink,
            demux: Demux::with_key(cfg.auth_key),
            stop: Arc::clone(&stop),
            timeout: cfg.poll_timeout,
            coalesce: cfg.coalesce,
        };
        let thread = thread::Builder::new()
            .name("canmc-rx".into())
            .spawn(move || rx.run())?;
        Ok((
            Engine {
                stop,
                counters,
                mode,
                thread: None,
            },
            thread,
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
    /// Datagrams still waiting in the socket are not read.
    pub fn stop(&self) {
        self.stop.fetch_max(STOP_NOW, Ordering::Relaxed);
    }

    /// Asks the receive thread to stop after it has taken in what the socket holds:
    /// it reads until the socket is empty (or for at most 250 ms) and then exits, so a
    /// capture stopped by Ctrl-C keeps what arrived before it. No effect once a stop
    /// was asked for.
    pub fn stop_after_draining(&self) {
        self.request(STOP_DRAINED);
    }

    /// Moves a running engine to `state`; an engine already stopping keeps its way.
    fn request(&self, state: u8) {
        let _ = self
            .stop
            .compare_exchange(RUN, state, Ordering::Relaxed, Ordering::Relaxed);
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
                .map(|(result, _)| result)
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

/// `Engine::stop` states: running, stop once the socket is empty, stop at once. A plain
/// stop (and a consumer asking to stop) overrides a drain; a drain request or the stop
/// implied by `InlineEngine::join` changes only a running engine.
const RUN: u8 = 0;
const STOP_DRAINED: u8 = 1;
const STOP_NOW: u8 = 2;
/// The most time `stop_after_draining` spends reading what is left.
const DRAIN_LIMIT: Duration = Duration::from_millis(250);

/// Reads what the socket holds until two polls in a row bring nothing (a single io_uring
/// poll can come back empty while more is queued) or `DRAIN_LIMIT` has passed.
fn drain_socket<C: InlineConsumer>(
    source: &mut dyn DatagramSource,
    sink: &mut Sink<C>,
    demux: &mut Demux,
) {
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut empty = 0;
    while empty < 2 && Instant::now() < deadline {
        match source.poll(Duration::ZERO, &mut |d, m| sink.on_datagram(demux, d, m)) {
            Ok(0) => empty += 1,
            Ok(_) => {
                empty = 0;
                sink.end_batch();
            }
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            Err(_) => break,
        }
    }
}

/// The receive thread's state.
struct Rx<C> {
    source: Box<dyn DatagramSource>,
    sink: Sink<C>,
    demux: Demux,
    stop: Arc<AtomicU8>,
    timeout: Duration,
    coalesce: Option<Duration>,
}

impl<C: InlineConsumer> Rx<C> {
    fn run(self) -> (io::Result<()>, Option<C>) {
        let Rx {
            mut source,
            mut sink,
            mut demux,
            stop,
            timeout,
            coalesce,
        } = self;
        let result = loop {
            if stop.load(Ordering::Relaxed) != RUN {
                if stop.load(Ordering::Relaxed) == STOP_DRAINED {
                    drain_socket(source.as_mut(), &mut sink, &mut demux);
                }
                break Ok(());
            }
            match source.poll(timeout, &mut |d, m| sink.on_datagram(&mut demux, d, m)) {
                // Idle: drops at the end of a burst came with no datagram; ask the socket.
                Ok(0) => {
                    sink.note_socket_drops(source.as_ref());
                    if let Some(c) = &mut sink.inline {
                        c.on_batch_end();
                    }
                }
                Ok(n) => {
                    sink.end_batch();
                    if let Some(wait) = coalesce {
                        if n < COALESCE_BATCH {
                            thread::sleep(wait);
                        }
                    }
                }
                Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
                Err(e) => break Err(e),
            }
        };
        // A source may hand over datagrams and then fail in the same poll.
        sink.note_socket_drops(source.as_ref());
        sink.end_batch();
        let wakes = std::mem::take(&mut sink.wakes);
        let inline = sink.inline.take();
        // Dropping the producers closes the rings; then wake every sleeper to see it.
        drop(sink);
        for w in &wakes {
            w.unpark();
        }
        (result, inline)
    }
}

/// Everything the per-datagram path touches, apart from the source.
struct Sink<C> {
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
    responder: Option<Responder>,
    /// Set: events go to this consumer, on this thread, and `producers` is empty.
    inline: Option<C>,
    /// The engine's stop flag, raised when the inline consumer asks to stop.
    stop: Arc<AtomicU8>,
}

impl<C: InlineConsumer> Sink<C> {
    #[inline]
    fn on_datagram(&mut self, demux: &mut Demux, datagram: &[u8], meta: &RecvMeta) {
        self.stats.datagrams += 1;
        self.stats.bytes += datagram.len() as u64;
        self.note_kernel_drops(meta);
        if !self.accepts(&meta.sender) {
            self.stats.filtered += 1;
            return;
        }
        let out = demux.decode(datagram, meta, |frame| self.deliver(frame));
        if let Some(e) = out.error {
            self.stats.decode_errors[e as usize] += out.error_count();
        }
        match out.seq {
            Some(SeqEvent::Gap { lost }) => {
                self.stats.seq_gaps += lost;
                self.broadcast(Event::Loss {
                    sender: meta.sender,
                    lost,
                    timestamp_ns: meta.timestamp_ns,
                });
            }
            Some(SeqEvent::Late) => {
                self.stats.reordered += 1;
                self.stats.seq_gaps = self.stats.seq_gaps.saturating_sub(1);
            }
            Some(SeqEvent::Duplicate) => self.stats.duplicates += 1,
            Some(SeqEvent::First) => self.stats.senders += 1,
            _ => {}
        }
        if let (Some(probe), Some(responder)) = (out.probe, self.responder.as_mut()) {
            if responder.answer(&probe, meta, self.stats.frames) {
                self.stats.pings_answered += 1;
            }
        }
    }

    /// The socket's drop counter is cumulative and only present once non-zero (the
    /// kernel sends no SO_RXQ_OVFL message while it is 0), so 0 means "no news".
    fn note_kernel_drops(&mut self, meta: &RecvMeta) {
        self.note_drop_counter(meta.kernel_drops, meta.timestamp_ns);
    }

    /// Reads the socket's counter directly, and publishes any growth.
    fn note_socket_drops(&mut self, source: &dyn DatagramSource) {
        if let Some(now) = source.socket_drops() {
            let before = self.stats.kernel_drops;
            self.note_drop_counter(now, wall_clock_ns());
            if self.stats.kernel_drops != before {
                self.end_batch();
            }
        }
    }

    fn note_drop_counter(&mut self, now: u32, timestamp_ns: u64) {
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
            timestamp_ns,
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
        if let Some(c) = &mut self.inline {
            if !c.on_event(&Event::Frame(frame)) {
                self.stop.fetch_max(STOP_NOW, Ordering::Relaxed);
            }
            return;
        }
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
        if let Some(c) = &mut self.inline {
            if !c.on_event(&ev) {
                self.stop.fetch_max(STOP_NOW, Ordering::Relaxed);
            }
            return;
        }
        for (i, p) in self.producers.iter_mut().enumerate() {
            if p.push(ev).is_ok() {
                self.pushed[i] = true;
            }
        }
    }

    fn end_batch(&mut self) {
        self.counters.publish(&self.stats);
        if let Some(c) = &mut self.inline {
            c.on_batch_end();
        }
        for (pushed, wake) in self.pushed.iter_mut().zip(&self.wakes) {
            if *pushed {
                *pushed = false;
                wake.notify();
            }
        }
    }
}

/// Answers `ping` probes by unicast to the prober, from a socket of its own.
struct Responder {
    identity: PingIdentity,
    started: Instant,
    sender_id: u32,
    seq: u64,
    v4: Option<std::net::UdpSocket>,
    v6: Option<std::net::UdpSocket>,
    buf: [u8; native::ANSWER_LEN + native::TAG_LEN],
    key: Option<native::AuthKey>,
}

impl Responder {
    fn new(identity: PingIdentity, key: Option<native::AuthKey>) -> Responder {
        Responder {
            identity,
            started: Instant::now(),
            sender_id: native::random_sender_id(),
            seq: 0,
            v4: std::net::UdpSocket::bind(("0.0.0.0", 0)).ok(),
            v6: std::net::UdpSocket::bind(("::", 0)).ok(),
            buf: [0; native::ANSWER_LEN + native::TAG_LEN],
            key,
        }
    }

    /// Sends the answer; false when it could not be sent (no socket of that family,
    /// or the kernel refused). A probe costs one `sendto`, never an allocation.
    fn answer(&mut self, probe: &PingProbe, meta: &RecvMeta, frames_seen: u64) -> bool {
        let Some(to) = meta.sender.get() else {
            return false;
        };
        let sock = if to.is_ipv4() { &self.v4 } else { &self.v6 };
        let Some(sock) = sock else { return false };
        let mut answer = native::PingAnswer::new(
            probe,
            self.identity.role,
            self.identity.pid,
            &self.identity.host,
        );
        answer.uptime_ms = self.started.elapsed().as_millis() as u64;
        answer.frames_seen = frames_seen;
        let mut n = native::encode_answer(&mut self.buf, self.sender_id, self.seq, &answer);
        if let Some(key) = &self.key {
            n = native::seal(&mut self.buf, n, key);
        }
        self.seq += 1;
        sock.send_to(&self.buf[..n], to).is_ok()
    }
}

fn wall_clock_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
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
