//! The consumer side of the rings: [`ConsumerHandle`] (pop, wait, park) and the
//! `Wake` the receive thread uses to unpark a sleeping consumer; [`consumer_for`],
//! the ID-to-consumer hash of [`Dispatch::ById`](super::Dispatch::ById).

use std::os::fd::{AsRawFd, BorrowedFd, FromRawFd, OwnedFd};
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
///
/// Two ways to sleep. Parked (`thread::park`), the consumer is woken by the receive
/// thread after a batch: two wake-ups in a row, the kernel's and then ours. With a
/// [`SocketWake`] (one consumer, a source with a socket), it sleeps in `poll(2)` on the
/// socket itself and an eventfd: a datagram wakes it at the same time as the receive
/// thread, which then only has to decode while the consumer spins briefly on the ring;
/// the eventfd stands in for `unpark` when the receive thread needs to wake it.
#[derive(Default)]
pub(crate) struct Wake {
    pub(super) sleeping: AtomicBool,
    pub(super) thread: Mutex<Option<Thread>>,
    pub(super) socket: Option<SocketWake>,
}

/// The descriptors a consumer sleeps on to be woken with the receive thread.
pub(crate) struct SocketWake {
    /// A duplicate of the source's socket (readable when datagrams are queued).
    socket: OwnedFd,
    /// Written by the receive thread to wake the sleeper (`EFD_NONBLOCK`).
    event: OwnedFd,
}

impl SocketWake {
    /// Duplicates `socket` and makes the eventfd; `None` if either fails (the consumer
    /// then parks).
    pub(crate) fn new(socket: BorrowedFd<'_>) -> Option<SocketWake> {
        let socket = socket.try_clone_to_owned().ok()?;
        // SAFETY: eventfd has no pointer arguments; a non-negative result is a new
        // descriptor that we own.
        let fd = unsafe { libc::eventfd(0, libc::EFD_NONBLOCK | libc::EFD_CLOEXEC) };
        if fd < 0 {
            return None;
        }
        // SAFETY: `fd` was just returned by eventfd and is owned by nobody else.
        let event = unsafe { OwnedFd::from_raw_fd(fd) };
        Some(SocketWake { socket, event })
    }

    fn signal(&self) {
        let one: u64 = 1;
        // SAFETY: writes 8 bytes from a live u64 to our eventfd. A full counter (EAGAIN)
        // already means "wake up", so the result does not matter.
        let _ = unsafe { libc::write(self.event.as_raw_fd(), (&one as *const u64).cast(), 8) };
    }

    /// Sleeps until the eventfd is signalled, or (with `on_socket`) the socket is
    /// readable, or `timeout` passes. True if the socket woke it.
    fn sleep(&self, timeout: Duration, on_socket: bool) -> bool {
        let mut fds = [
            libc::pollfd {
                fd: self.event.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
            libc::pollfd {
                fd: self.socket.as_raw_fd(),
                events: libc::POLLIN,
                revents: 0,
            },
        ];
        let n = if on_socket { 2 } else { 1 };
        let ms = timeout.as_millis().clamp(1, i32::MAX as u128) as i32;
        // SAFETY: `fds` is a live array of at least `n` pollfd structs.
        let rc = unsafe { libc::poll(fds.as_mut_ptr(), n, ms) };
        if rc <= 0 {
            return false;
        }
        if fds[0].revents != 0 {
            let mut count: u64 = 0;
            // SAFETY: reads 8 bytes into a live u64 from our non-blocking eventfd.
            let _ =
                unsafe { libc::read(self.event.as_raw_fd(), (&mut count as *mut u64).cast(), 8) };
            return false;
        }
        on_socket && fds[1].revents != 0
    }
}

impl Wake {
    /// A wake-up that sleeps on `socket` as well (see the type's documentation).
    pub(crate) fn with_socket(socket: Option<SocketWake>) -> Wake {
        Wake {
            socket,
            ..Wake::default()
        }
    }

    /// Called by the receive thread after it pushed to this consumer's ring.
    pub(crate) fn notify(&self) {
        // Pairs with the fence in `ConsumerHandle::wait`: either the consumer sees our
        // pushes when it re-checks the ring, or we see its `sleeping` flag here.
        fence(Ordering::SeqCst);
        if self.sleeping.load(Ordering::Relaxed) {
            if let Some(s) = &self.socket {
                s.signal();
                return;
            }
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
        if let Some(s) = &self.socket {
            s.signal();
        }
        let t = self.thread.lock().unwrap_or_else(|e| e.into_inner());
        if let Some(t) = t.as_ref() {
            t.unpark();
        }
    }
}

/// How long spinning lasts before a waiting consumer parks (about a microsecond).
const SPINS: u32 = 256;
/// How long a consumer woken by its socket spins on the ring for the receive thread,
/// woken by the same datagram, to deliver it.
const SOCKET_SPIN: Duration = Duration::from_micros(50);
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
        let mut on_socket = true;
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
            if self.wake.socket.is_none() {
                self.register();
            }
            self.wake.sleeping.store(true, Ordering::Relaxed);
            // Pairs with the fence in `Wake::notify` (see there).
            fence(Ordering::SeqCst);
            if !self.ring.is_empty() {
                self.wake.sleeping.store(false, Ordering::Relaxed);
                return true;
            }
            let step = (timeout - waited).min(PARK_STEP);
            let Some(s) = &self.wake.socket else {
                thread::park_timeout(step);
                self.wake.sleeping.store(false, Ordering::Relaxed);
                continue;
            };
            let by_socket = s.sleep(step, on_socket);
            self.wake.sleeping.store(false, Ordering::Relaxed);
            if by_socket {
                // The receive thread was woken by the same datagram: give it time to
                // decode and push. If nothing comes, the datagram is still queued (a slow
                // receive thread) or was not for us: sleep on the eventfd alone next, so
                // a socket that stays readable does not keep us spinning.
                let spin_start = Instant::now();
                while spin_start.elapsed() < SOCKET_SPIN {
                    if !self.ring.is_empty() {
                        return true;
                    }
                    std::hint::spin_loop();
                }
                on_socket = false;
            } else {
                on_socket = true;
            }
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

    /// A consumer handle over a fresh ring, sleeping on `sock` (a bound UDP socket on
    /// 127.0.0.1) and an eventfd.
    fn socket_consumer(
        sock: &std::net::UdpSocket,
    ) -> (crate::ring::Producer<Event>, Arc<Wake>, ConsumerHandle) {
        use std::os::fd::AsFd;
        let (tx, rx) = crate::ring::ring::<Event>(16);
        let wake = Arc::new(Wake::with_socket(SocketWake::new(sock.as_fd())));
        assert!(wake.socket.is_some());
        let handle = ConsumerHandle::new(rx, Arc::clone(&wake), 0);
        (tx, wake, handle)
    }

    fn drops() -> Event {
        Event::KernelDrops {
            count: 1,
            timestamp_ns: 1,
        }
    }

    /// Sleeping on the socket and the eventfd, a consumer is woken by the receive
    /// thread's notify as by an unpark: it sees the event long before its timeout.
    #[test]
    fn notify_wakes_a_consumer_sleeping_on_its_socket() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let (mut tx, wake, mut handle) = socket_consumer(&sock);
        let waiter = thread::spawn(move || {
            let t = Instant::now();
            let got = handle.recv_timeout(Duration::from_secs(30));
            (got.is_some(), t.elapsed())
        });
        while !wake.sleeping.load(Ordering::Relaxed) {
            thread::sleep(Duration::from_millis(1));
        }
        thread::sleep(Duration::from_millis(20));
        assert!(tx.push(drops()).is_ok());
        wake.notify();
        let (got, took) = waiter.join().unwrap();
        assert!(got, "the consumer timed out");
        assert!(took < Duration::from_secs(10), "woke after {took:?}");
    }

    /// A datagram queued on the socket that never becomes an event (the receive thread
    /// is not reading) wakes the consumer once: it spins briefly, then sleeps on the
    /// eventfd alone, so it neither busy-waits nor misses a later notify.
    #[test]
    fn a_readable_socket_does_not_keep_the_consumer_spinning() {
        let sock = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        let to = sock.local_addr().unwrap();
        let (mut tx, wake, mut handle) = socket_consumer(&sock);
        let sender = std::net::UdpSocket::bind("127.0.0.1:0").unwrap();
        sender.send_to(b"queued, never read", to).unwrap();
        let cpu = || {
            // SAFETY: `ts` is a valid out-pointer; the clock always exists.
            let mut ts = libc::timespec {
                tv_sec: 0,
                tv_nsec: 0,
            };
            // SAFETY: as above.
            unsafe { libc::clock_gettime(libc::CLOCK_THREAD_CPUTIME_ID, &mut ts) };
            Duration::new(ts.tv_sec as u64, ts.tv_nsec as u32)
        };
        let waiter = thread::spawn(move || {
            let (t, c) = (Instant::now(), cpu());
            let first = handle.recv_timeout(Duration::from_millis(300)).is_some();
            let (wall, spent) = (t.elapsed(), cpu() - c);
            let second = handle.recv_timeout(Duration::from_secs(30)).is_some();
            (first, wall, spent, second)
        });
        thread::sleep(Duration::from_millis(500));
        assert!(tx.push(drops()).is_ok());
        wake.notify();
        let (first, wall, spent, second) = waiter.join().unwrap();
        assert!(!first, "nothing was pushed in the first 300 ms");
        assert!(
            wall >= Duration::from_millis(290),
            "returned after {wall:?}"
        );
        assert!(
            spent < wall / 2,
            "the consumer burnt {spent:?} of CPU in {wall:?} of waiting"
        );
        assert!(second, "the notify after the quiet spell was missed");
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
