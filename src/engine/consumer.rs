//! The consumer side of the rings: [`ConsumerHandle`] (pop, wait, park) and the
//! `Wake` the receive thread uses to unpark a sleeping consumer; [`consumer_for`],
//! the ID-to-consumer hash of [`Dispatch::ById`](super::Dispatch::ById).

use std::sync::atomic::{fence, AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, Thread, ThreadId};
use std::time::{Duration, Instant};

use crate::event::Event;
use crate::ring::Consumer;

/// The consumer index [`Dispatch::ById`](super::Dispatch::ById) sends a frame with this identifier to.
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
pub(crate) struct Wake {
    pub(super) sleeping: AtomicBool,
    pub(super) thread: Mutex<Option<Thread>>,
}

impl Wake {
    /// Called by the receive thread after it pushed to this consumer's ring.
    pub(crate) fn notify(&self) {
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
    pub(crate) fn unpark(&self) {
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
/// Can be moved to another thread (or handed to [`Engine::spawn_worker`](super::Engine::spawn_worker)); it is used
/// from one thread at a time. Once a handle is dropped, the frames dispatched to it
/// fill its ring and then count as ring drops.
pub struct ConsumerHandle {
    ring: Consumer<Event>,
    wake: Arc<Wake>,
    registered: Option<ThreadId>,
    index: usize,
}

impl ConsumerHandle {
    /// The handle on `ring`, woken through `wake`.
    pub(super) fn new(ring: Consumer<Event>, wake: Arc<Wake>, index: usize) -> ConsumerHandle {
        ConsumerHandle {
            ring,
            wake,
            registered: None,
            index,
        }
    }

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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::mpsc;

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
