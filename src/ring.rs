//! A lock-free single-producer/single-consumer ring of fixed-size slots: the hand-off
//! between the receive thread and each consumer.
//!
//! The design follows rtrb: two monotonically increasing positions (`head`, read by the
//! consumer; `tail`, written by the producer), each on its own cache line, and each side
//! keeps a private copy of the other side's position so that it touches the shared line
//! only when its copy says the ring is full (producer) or empty (consumer). In steady
//! state a push is one slot write and one `Release` store; a pop one slot read and one
//! `Release` store.
//!
//! Slots hold `T: Copy`, so nothing ever needs dropping and a slot is reused by simply
//! overwriting it.
//!
//! ```
//! let (mut tx, mut rx) = canmc::ring::ring::<u64>(4);
//! tx.push(7).unwrap();
//! assert_eq!(rx.pop(), Some(7));
//! assert_eq!(rx.pop(), None);
//! ```

use std::cell::UnsafeCell;
use std::fmt;
use std::mem::MaybeUninit;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::Arc;

/// Keeps a value on a cache line of its own. 128 bytes because x86's adjacent-line
/// prefetcher pulls lines in pairs (the same choice as crossbeam's `CachePadded`).
#[repr(align(128))]
struct CachePadded<T>(T);

struct Shared<T> {
    /// Position of the next slot the consumer reads. Written only by the consumer.
    head: CachePadded<AtomicUsize>,
    /// Position of the next slot the producer writes. Written only by the producer.
    tail: CachePadded<AtomicUsize>,
    producer_gone: AtomicBool,
    consumer_gone: AtomicBool,
    /// `capacity - 1`; capacity is a power of two so a position maps to a slot by masking.
    mask: usize,
    slots: Box<[UnsafeCell<MaybeUninit<T>>]>,
}

// SAFETY: the slots are shared between exactly one producer and one consumer, and the
// head/tail protocol gives each slot to one side at a time (see push/pop). `T: Send` is
// what moving values across the threads requires.
unsafe impl<T: Send> Sync for Shared<T> {}

impl<T> Shared<T> {
    #[inline]
    fn capacity(&self) -> usize {
        self.mask + 1
    }

    #[inline]
    fn slot(&self, pos: usize) -> *mut MaybeUninit<T> {
        self.slots[pos & self.mask].get()
    }
}

/// Creates a ring of at least `capacity` slots (rounded up to a power of two, minimum 1)
/// and returns its two ends.
///
/// All memory is allocated here; pushing and popping never allocate.
///
/// # Panics
///
/// If `capacity` rounded up to a power of two overflows `usize`.
pub fn ring<T: Copy>(capacity: usize) -> (Producer<T>, Consumer<T>) {
    let capacity = capacity
        .max(1)
        .checked_next_power_of_two()
        .expect("ring capacity overflows usize");
    let slots = (0..capacity)
        .map(|_| UnsafeCell::new(MaybeUninit::uninit()))
        .collect();
    let shared = Arc::new(Shared {
        head: CachePadded(AtomicUsize::new(0)),
        tail: CachePadded(AtomicUsize::new(0)),
        producer_gone: AtomicBool::new(false),
        consumer_gone: AtomicBool::new(false),
        mask: capacity - 1,
        slots,
    });
    (
        Producer {
            shared: Arc::clone(&shared),
            tail: 0,
            head_cache: 0,
        },
        Consumer {
            shared,
            head: 0,
            tail_cache: 0,
        },
    )
}

/// The writing end of a [`ring`]. Not `Clone`: there is exactly one producer.
pub struct Producer<T> {
    shared: Arc<Shared<T>>,
    /// Our own position (the shared `tail` mirrors it).
    tail: usize,
    /// Last `head` we read; the true head is never behind it.
    head_cache: usize,
}

/// The reading end of a [`ring`]. Not `Clone`: there is exactly one consumer.
pub struct Consumer<T> {
    shared: Arc<Shared<T>>,
    /// Our own position (the shared `head` mirrors it).
    head: usize,
    /// Last `tail` we read; the true tail is never behind it.
    tail_cache: usize,
}

// SAFETY: each end is used from one thread at a time (`&mut self` on every operation
// that touches slots), and the values it moves are `Send`.
unsafe impl<T: Send> Send for Producer<T> {}
// SAFETY: as for `Producer`.
unsafe impl<T: Send> Send for Consumer<T> {}

impl<T: Copy> Producer<T> {
    /// Appends `v`, or hands it back if the ring is full. Never blocks, never allocates.
    #[inline]
    pub fn push(&mut self, v: T) -> Result<(), T> {
        let cap = self.shared.capacity();
        if self.tail.wrapping_sub(self.head_cache) == cap {
            // Acquire pairs with the consumer's Release store of `head`: the consumer has
            // finished reading every slot before that position, so we may overwrite them.
            self.head_cache = self.shared.head.0.load(Ordering::Acquire);
            if self.tail.wrapping_sub(self.head_cache) == cap {
                return Err(v);
            }
        }
        // SAFETY: `tail - head < capacity`, so slot `tail` is not readable by the consumer
        // (it reads only positions in `head..tail`) and no one else writes it.
        unsafe { self.shared.slot(self.tail).write(MaybeUninit::new(v)) };
        self.tail = self.tail.wrapping_add(1);
        // Release publishes the slot write above to the consumer's Acquire load of `tail`.
        self.shared.tail.0.store(self.tail, Ordering::Release);
        Ok(())
    }

    /// Slots that can be pushed right now without failing (a lower bound: the consumer
    /// may free more at any moment).
    pub fn free_slots(&mut self) -> usize {
        self.head_cache = self.shared.head.0.load(Ordering::Acquire);
        self.shared.capacity() - self.tail.wrapping_sub(self.head_cache)
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// True once the [`Consumer`] has been dropped: nothing pushed will ever be read.
    pub fn is_abandoned(&self) -> bool {
        self.shared.consumer_gone.load(Ordering::Acquire)
    }
}

impl<T: Copy> Consumer<T> {
    /// Refreshes `tail_cache` if it shows fewer than `want` items; returns how many are
    /// readable.
    #[inline]
    fn available(&mut self, want: usize) -> usize {
        let mut avail = self.tail_cache.wrapping_sub(self.head);
        if avail < want {
            // Acquire pairs with the producer's Release store of `tail`: every slot before
            // that position is fully written and visible to us.
            self.tail_cache = self.shared.tail.0.load(Ordering::Acquire);
            avail = self.tail_cache.wrapping_sub(self.head);
        }
        avail
    }

    /// Takes the oldest item, if any. Never blocks, never allocates.
    #[inline]
    pub fn pop(&mut self) -> Option<T> {
        if self.available(1) == 0 {
            return None;
        }
        // SAFETY: `head < tail`, so the producer has written slot `head` (published by
        // its Release store, seen through our Acquire load) and will not touch it again
        // until we advance `head` past it.
        let v = unsafe { (*self.shared.slot(self.head)).assume_init() };
        self.head = self.head.wrapping_add(1);
        // Release: our read of the slot happens before the producer may reuse it.
        self.shared.head.0.store(self.head, Ordering::Release);
        Some(v)
    }

    /// Moves up to `out.len()` of the oldest items into `out` and returns how many. One
    /// shared-index update for the whole batch.
    #[inline]
    pub fn pop_batch(&mut self, out: &mut [T]) -> usize {
        let n = self.available(out.len()).min(out.len());
        if n == 0 {
            return 0;
        }
        for (i, o) in out[..n].iter_mut().enumerate() {
            // SAFETY: positions `head..head + n` are below `tail`, so written and
            // published as in `pop`; the producer won't reuse them until `head` moves.
            *o = unsafe { (*self.shared.slot(self.head.wrapping_add(i))).assume_init() };
        }
        self.head = self.head.wrapping_add(n);
        // Release: our reads of the slots happen before the producer may reuse them.
        self.shared.head.0.store(self.head, Ordering::Release);
        n
    }

    /// Items waiting right now (a lower bound: the producer may add more at any moment).
    pub fn len(&mut self) -> usize {
        self.available(usize::MAX)
    }

    /// True if no item is waiting right now.
    pub fn is_empty(&mut self) -> bool {
        self.available(1) == 0
    }

    /// Number of slots.
    pub fn capacity(&self) -> usize {
        self.shared.capacity()
    }

    /// True once the [`Producer`] has been dropped: what is in the ring is all there
    /// will ever be. Items pushed before the drop are still readable.
    pub fn is_abandoned(&self) -> bool {
        // Acquire pairs with the Release store in `Producer::drop`, which comes after the
        // producer's last `tail` store, so a later `pop` sees every item.
        self.shared.producer_gone.load(Ordering::Acquire)
    }
}

impl<T> Drop for Producer<T> {
    fn drop(&mut self) {
        self.shared.producer_gone.store(true, Ordering::Release);
    }
}

impl<T> Drop for Consumer<T> {
    fn drop(&mut self) {
        self.shared.consumer_gone.store(true, Ordering::Release);
    }
}

impl<T> fmt::Debug for Producer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Producer")
            .field("capacity", &self.shared.capacity())
            .field("tail", &self.tail)
            .finish()
    }
}

impl<T> fmt::Debug for Consumer<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Consumer")
            .field("capacity", &self.shared.capacity())
            .field("head", &self.head)
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::thread;

    /// Waiting side of the stress tests: spin briefly, then yield, so that the test
    /// also finishes quickly when there are more runnable threads than CPUs.
    fn snooze(misses: &mut u32) {
        *misses += 1;
        if *misses % 64 == 0 {
            thread::yield_now();
        } else {
            std::hint::spin_loop();
        }
    }

    #[test]
    fn capacity_rounds_up_to_power_of_two() {
        assert_eq!(ring::<u8>(0).0.capacity(), 1);
        assert_eq!(ring::<u8>(1).0.capacity(), 1);
        assert_eq!(ring::<u8>(5).0.capacity(), 8);
        assert_eq!(ring::<u8>(1024).1.capacity(), 1024);
    }

    #[test]
    fn full_ring_refuses_and_returns_value() {
        let (mut tx, mut rx) = ring::<u32>(4);
        for i in 0..4 {
            tx.push(i).unwrap();
        }
        assert_eq!(tx.free_slots(), 0);
        assert_eq!(tx.push(99), Err(99));
        assert_eq!(rx.len(), 4);
        assert_eq!(rx.pop(), Some(0));
        assert_eq!(tx.free_slots(), 1);
        tx.push(4).unwrap();
        assert_eq!(tx.push(5), Err(5));
        let mut out = [0u32; 8];
        assert_eq!(rx.pop_batch(&mut out), 4);
        assert_eq!(&out[..4], &[1, 2, 3, 4]);
        assert!(rx.is_empty());
        assert_eq!(rx.pop(), None);
        assert_eq!(rx.pop_batch(&mut out), 0);
    }

    /// Positions start near `usize::MAX` so that they wrap during the test: the
    /// `wrapping_sub` arithmetic must keep full/empty correct across the overflow.
    #[test]
    fn positions_wrap_around_usize() {
        let (mut tx, mut rx) = ring::<u64>(8);
        let start = usize::MAX - 20;
        tx.tail = start;
        tx.head_cache = start;
        rx.head = start;
        rx.tail_cache = start;
        tx.shared.head.0.store(start, Ordering::Relaxed);
        tx.shared.tail.0.store(start, Ordering::Relaxed);

        let mut next_in = 0u64;
        let mut next_out = 0u64;
        let mut out = [0u64; 3];
        for round in 0..50 {
            // Fill to the brim each round so "full" is checked at every wrap offset.
            while tx.push(next_in).is_ok() {
                next_in += 1;
            }
            assert_eq!(rx.len(), 8, "round {round}");
            let n = rx.pop_batch(&mut out);
            for &v in &out[..n] {
                assert_eq!(v, next_out);
                next_out += 1;
            }
            while let Some(v) = rx.pop() {
                assert_eq!(v, next_out);
                next_out += 1;
            }
        }
        assert_eq!(next_in, next_out);
        assert!(tx.tail < start, "positions did not wrap");
    }

    #[test]
    fn small_capacity_wraps_slots_many_times() {
        let (mut tx, mut rx) = ring::<u16>(2);
        for i in 0..1000u16 {
            tx.push(i).unwrap();
            if i % 2 == 1 {
                assert_eq!(rx.pop(), Some(i - 1));
                assert_eq!(rx.pop(), Some(i));
            }
        }
        assert_eq!(rx.pop(), None);
    }

    #[test]
    fn abandonment_is_seen_by_both_sides_and_items_survive() {
        let (tx, rx) = ring::<u8>(4);
        assert!(!tx.is_abandoned());
        drop(rx);
        assert!(tx.is_abandoned());

        let (mut tx, mut rx) = ring::<u8>(4);
        tx.push(1).unwrap();
        tx.push(2).unwrap();
        assert!(!rx.is_abandoned());
        drop(tx);
        assert!(rx.is_abandoned());
        assert_eq!(rx.pop(), Some(1));
        assert_eq!(rx.pop(), Some(2));
        assert_eq!(rx.pop(), None);
    }

    /// Two threads, 10 M items through a small ring: every item arrives, in order, once.
    #[test]
    fn two_thread_stress_keeps_order_and_loses_nothing() {
        const N: u64 = 10_000_000;
        let (mut tx, mut rx) = ring::<u64>(256);
        let producer = thread::spawn(move || {
            let (mut i, mut misses) = (0, 0);
            while i < N {
                match tx.push(i) {
                    Ok(()) => i += 1,
                    Err(_) => snooze(&mut misses),
                }
            }
        });
        let mut expected = 0u64;
        let mut misses = 0;
        let mut buf = [0u64; 32];
        while expected < N {
            // Alternate single and batch pops so both paths race the producer.
            if expected % 3 == 0 {
                if let Some(v) = rx.pop() {
                    assert_eq!(v, expected);
                    expected += 1;
                    continue;
                }
            } else {
                let n = rx.pop_batch(&mut buf);
                for &v in &buf[..n] {
                    assert_eq!(v, expected);
                    expected += 1;
                }
                if n > 0 {
                    continue;
                }
            }
            if rx.is_abandoned() && rx.is_empty() {
                break;
            }
            snooze(&mut misses);
        }
        producer.join().unwrap();
        assert_eq!(expected, N);
        assert_eq!(rx.pop(), None);
    }

    /// Large items are copied whole: a torn read would show mismatched words.
    #[test]
    fn two_thread_stress_large_items_are_not_torn() {
        const N: u64 = 200_000;
        let (mut tx, mut rx) = ring::<[u64; 16]>(64);
        let producer = thread::spawn(move || {
            let (mut i, mut misses) = (0, 0);
            while i < N {
                if tx.push([i; 16]).is_ok() {
                    i += 1;
                } else {
                    snooze(&mut misses);
                }
            }
        });
        let (mut expected, mut misses) = (0, 0);
        while expected < N {
            match rx.pop() {
                Some(v) => {
                    assert_eq!(v, [expected; 16]);
                    expected += 1;
                }
                None => snooze(&mut misses),
            }
        }
        producer.join().unwrap();
    }
}
