//! The receive thread (`canmc-rx`), the engine's hot path: poll the source, run each
//! datagram through the shared [`Accounting`], hand frames to the rings (or the inline
//! consumer), publish the counters and wake sleeping consumers once per batch.

use std::io;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::Arc;
use std::thread;
use std::time::{Duration, Instant};

use super::account::{Accounting, Deliver};
use super::consumer::{consumer_for, Wake};
use super::{Counters, Dispatch, InlineConsumer, Stats, COALESCE_BATCH};
use crate::event::Event;
use crate::frame::{CanFrame, SenderAddr};
use crate::recv::DatagramSource;
use crate::ring::Producer;
use crate::wire::native::{Announcement, FrameBatch};

/// `Engine::stop` states: running, stop once the socket is empty, stop at once. A plain
/// stop (and a consumer asking to stop) overrides a drain; a drain request or the stop
/// implied by `InlineEngine::join` changes only a running engine.
pub(super) const RUN: u8 = 0;
pub(super) const STOP_DRAINED: u8 = 1;
pub(super) const STOP_NOW: u8 = 2;
/// The most time `stop_after_draining` spends reading what is left.
const DRAIN_LIMIT: Duration = Duration::from_millis(250);

/// Reads what the socket holds until two polls in a row bring nothing (a single io_uring
/// poll can come back empty while more is queued) or `DRAIN_LIMIT` has passed.
fn drain_socket<C: InlineConsumer>(source: &mut dyn DatagramSource, sink: &mut Sink<C>) {
    let deadline = Instant::now() + DRAIN_LIMIT;
    let mut empty = 0;
    while empty < 2 && Instant::now() < deadline {
        match source.poll(Duration::ZERO, &mut |d, m| sink.on_datagram(d, m)) {
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
pub(super) struct Rx<C> {
    pub(super) source: Box<dyn DatagramSource>,
    pub(super) sink: Sink<C>,
    pub(super) stop: Arc<AtomicU8>,
    pub(super) timeout: Duration,
    pub(super) coalesce: Option<Duration>,
}

impl<C: InlineConsumer> Rx<C> {
    pub(super) fn run(self) -> (io::Result<()>, Option<C>) {
        let Rx {
            mut source,
            mut sink,
            stop,
            timeout,
            coalesce,
        } = self;
        let result = loop {
            if stop.load(Ordering::Relaxed) != RUN {
                if stop.load(Ordering::Relaxed) == STOP_DRAINED {
                    drain_socket(source.as_mut(), &mut sink);
                }
                break Ok(());
            }
            match source.poll(timeout, &mut |d, m| sink.on_datagram(d, m)) {
                // Idle: drops at the end of a burst came with no datagram; ask the socket.
                Ok(0) => {
                    sink.note_socket_drops(source.as_ref());
                    if let Some(c) = &mut sink.out.inline {
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
        let wakes = std::mem::take(&mut sink.out.wakes);
        let inline = sink.out.inline.take();
        // Dropping the producers closes the rings; then wake every sleeper to see it.
        drop(sink);
        for w in &wakes {
            w.unpark();
        }
        (result, inline)
    }
}

/// Everything the per-datagram path touches, apart from the source.
pub(super) struct Sink<C> {
    /// Running totals, published to `counters` once per batch.
    pub(super) acct: Accounting,
    pub(super) counters: Arc<Counters>,
    pub(super) out: Outlets<C>,
}

/// Where the engine's frames and events go.
pub(super) struct Outlets<C> {
    pub(super) producers: Vec<Producer<Event>>,
    pub(super) wakes: Vec<Arc<Wake>>,
    /// Which rings got something in this batch (sized at start, reused).
    pub(super) pushed: Vec<bool>,
    pub(super) dispatch: Dispatch,
    /// Set: events go to this consumer, on this thread, and `producers` is empty.
    pub(super) inline: Option<C>,
    /// The inline consumer takes native datagrams whole (asked once, at start).
    pub(super) batches: bool,
    /// The engine's stop flag, raised when the inline consumer asks to stop.
    pub(super) stop: Arc<AtomicU8>,
}

impl<C: InlineConsumer> Sink<C> {
    #[inline]
    fn on_datagram(&mut self, datagram: &[u8], meta: &crate::recv::RecvMeta) {
        let _ = self.acct.on_datagram(datagram, meta, &mut self.out);
    }

    /// Reads the socket's counter directly, and publishes any growth.
    fn note_socket_drops(&mut self, source: &dyn DatagramSource) {
        if self.acct.note_socket_drops(source, &mut self.out) {
            self.end_batch();
        }
    }

    fn end_batch(&mut self) {
        self.counters.publish(&self.acct.stats);
        let out = &mut self.out;
        if let Some(c) = &mut out.inline {
            c.on_batch_end();
        }
        for (pushed, wake) in out.pushed.iter_mut().zip(&out.wakes) {
            if *pushed {
                *pushed = false;
                wake.notify();
            }
        }
    }
}

impl<C: InlineConsumer> Outlets<C> {
    #[inline]
    fn push(&mut self, i: usize, ev: Event, stats: &mut Stats) {
        if self.producers[i].push(ev).is_ok() {
            self.pushed[i] = true;
        } else {
            stats.ring_drops += 1;
        }
    }
}

impl<C: InlineConsumer> Deliver for Outlets<C> {
    #[inline]
    fn frame(&mut self, frame: CanFrame, stats: &mut Stats) {
        if let Some(c) = &mut self.inline {
            if !c.on_event(&Event::Frame(frame)) {
                self.stop.fetch_max(STOP_NOW, Ordering::Relaxed);
            }
            return;
        }
        match self.dispatch {
            Dispatch::ById => {
                let i = consumer_for(frame.id, frame.is_extended(), self.producers.len());
                self.push(i, Event::Frame(frame), stats);
            }
            Dispatch::All => {
                for i in 0..self.producers.len() {
                    self.push(i, Event::Frame(frame), stats);
                }
            }
        }
    }

    fn takes_batches(&self) -> bool {
        self.batches
    }

    fn batch(&mut self, batch: &FrameBatch<'_>, sender: &SenderAddr, _: &mut Stats) {
        if let Some(c) = &mut self.inline {
            if !c.on_frames(batch, sender) {
                self.stop.fetch_max(STOP_NOW, Ordering::Relaxed);
            }
        }
    }

    fn announce(&mut self, a: &Announcement, sender: &SenderAddr) {
        if let Some(c) = &mut self.inline {
            c.on_announce(a, sender);
        }
    }

    /// Control events go to every consumer. One that finds a ring full is not counted
    /// as a ring drop (those count frames); the counters still hold what it reported.
    fn control(&mut self, ev: Event) {
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
}
