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

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

//!
//! The rooms: [`config`](EngineConfig) (settings), `counters` (the counter list),
//! `consumer` (ring handles and wake-ups), `account` (per-datagram accounting, shared
//! with [`Bus`](crate::bus::Bus)), `rx` (the receive thread), `worker` (pinned workers).

mod account;
mod config;
mod consumer;
mod counters;
mod rx;
mod worker;

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};

pub(crate) use account::{Accounting, Deliver, Refused, SenderFilter};
pub use config::{Dispatch, EngineConfig, COALESCE_BATCH};
pub use consumer::{consumer_for, ConsumerHandle};
pub(crate) use counters::Show;
pub use counters::{Counters, Stats};
pub use worker::{pin_current_thread, WorkerHandle};

pub use crate::event::Event;
pub use crate::ping::PingIdentity;

use crate::frame::SenderAddr;
use crate::ping::Responder;
use crate::recv::Demux;
use crate::recv::{DatagramSource, IoMode};
use crate::ring::{self, Producer};
use crate::wire::native::{Announcement, FrameBatch};
use consumer::Wake;
use rx::{Outlets, Rx, Sink, RUN, STOP_DRAINED, STOP_NOW};

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

    /// A bridge announcement from `sender` (after authentication). The default ignores
    /// it: only a bridge on a named bus elects (`canif::election`).
    fn on_announce(&mut self, _announcement: &Announcement, _sender: &SenderAddr) {}

    /// Whether native datagrams should come whole, through [`InlineConsumer::on_frames`],
    /// when every record in them is a valid frame. Asked once, at start.
    fn takes_batches(&self) -> bool {
        false
    }

    /// A native frames datagram from `sender`, after authentication and sequence
    /// accounting, every record checked: the frames [`on_event`](Self::on_event) would
    /// otherwise have got one by one (their `sender` is empty in the batch; it is
    /// `sender`). Return `false` to stop. The default hands them to `on_event`.
    fn on_frames(&mut self, batch: &FrameBatch<'_>, sender: &SenderAddr) -> bool {
        for mut frame in batch.frames() {
            frame.sender = *sender;
            if !self.on_event(&Event::Frame(frame)) {
                return false;
            }
        }
        true
    }
}

/// The engine's inline slot when consumers are rings.
struct NoInline;

impl InlineConsumer for NoInline {
    fn on_event(&mut self, _: &Event) -> bool {
        true
    }
}

/// The receive engine. Dropping it stops and joins the receive thread.
pub struct Engine {
    stop: Arc<AtomicU8>,
    counters: Arc<Counters>,
    mode: IoMode,
    gro: bool,
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
            handles.push(ConsumerHandle::new(rx, wake, index));
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
        let gro = source.gro();
        let sink = Sink {
            acct: Accounting::new(
                SenderFilter::new(cfg.drop_from, &cfg.accept_only),
                Demux::with_key(cfg.auth_key),
                cfg.answer_pings.map(|id| Responder::new(id, cfg.auth_key)),
            ),
            counters: Arc::clone(&counters),
            out: Outlets {
                pushed: vec![false; producers.len()],
                producers,
                wakes,
                dispatch: cfg.dispatch,
                batches: inline.as_ref().is_some_and(InlineConsumer::takes_batches),
                inline,
                stop: Arc::clone(&stop),
            },
        };
        let rx = Rx {
            source,
            sink,
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
                gro,
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

    /// Whether the source receives with UDP GRO (see [`Stats::coalesced`]).
    pub fn gro(&self) -> bool {
        self.gro
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
            .field("gro", &self.gro)
            .field("stats", &self.stats())
            .finish()
    }
}

impl<C> std::fmt::Debug for InlineEngine<C> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("InlineEngine")
            .field("engine", &self.engine)
            .finish_non_exhaustive()
    }
}
