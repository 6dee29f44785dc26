//! Per-sender sequence tracking: turns the (sender id, sequence number) of each native
//! datagram into counts of lost, duplicated and reordered datagrams.
//!
//! The table has a fixed capacity chosen in [`SeqTracker::new`] and allocates nothing
//! afterwards. Each sender keeps a bitmap of the last [`WINDOW`] sequence numbers, so a
//! datagram that arrives late (after a later one) is recognised and the loss count
//! corrected, and a duplicate within the window is recognised as such.
//!
//! Rules, per sender (`highest` = highest sequence number seen):
//! - first datagram of an unknown sender: [`SeqEvent::First`]; nothing before it counts;
//! - `highest + 1`: [`SeqEvent::InOrder`];
//! - `highest + 1 + k`: [`SeqEvent::Gap`] — `k` datagrams are counted lost *now*;
//! - below `highest`, inside the window, not seen: [`SeqEvent::Late`] — counted as
//!   reordered, and one datagram is taken back off `lost` (a Late one below the first
//!   sequence number seen extends the tracked range instead, adding the datagrams
//!   between it and that first one to `lost`). So `lost` is always the number of
//!   sequence numbers missing between the lowest and the highest seen;
//! - already seen (inside the window, or equal to `highest`): [`SeqEvent::Duplicate`];
//! - [`WINDOW`] or more below `highest`, or more than [`MAX_FORWARD_GAP`] above it:
//!   [`SeqEvent::Restart`] — the sender restarted with the same id (or the datagram is
//!   too old to place); tracking starts again from this number and earlier counts stay.
//!   With [`SeqTracker::reject_stale`] (receivers with an authentication key), a number
//!   [`WINDOW`] or more below `highest` is a [`SeqEvent::Duplicate`] instead: an
//!   authentic datagram that old can only be a replayed copy, since canmc's senders take
//!   a new random id when they restart.
//!
//! A sender that restarts normally picks a new random id and is simply a new sender.
//! When the table is full, the least recently seen sender is evicted; its counts are
//! kept in [`SeqTracker::totals`].

/// Senders a [`SeqTracker::default`] table holds.
pub const DEFAULT_CAPACITY: usize = 256;
/// Sequence numbers behind the highest one that are remembered per sender.
pub const WINDOW: u64 = 1024;
/// A forward jump larger than this is taken as a restart, not as loss (a corrupt or
/// foreign sequence number must not add billions of lost datagrams).
pub const MAX_FORWARD_GAP: u64 = 1 << 24;

const WORDS: usize = (WINDOW / 64) as usize;

/// What one observed datagram means for its sender's stream.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SeqEvent {
    /// First datagram of a sender not in the table.
    First,
    /// The next sequence number.
    InOrder,
    /// Sequence numbers were skipped; `lost` of them are counted lost for now.
    Gap {
        /// Sequence numbers skipped.
        lost: u64,
    },
    /// Seen before.
    Duplicate,
    /// Arrived after a later one; filled a gap (already taken back off the loss count).
    Late,
    /// Jumped too far back or forward; tracking restarted from this number.
    Restart,
}

/// Counts for one sender (or, summed, for all).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SeqStats {
    /// Datagrams observed, duplicates included.
    pub received: u64,
    /// Sequence numbers missing between the lowest and the highest seen (per restart
    /// epoch, summed).
    pub lost: u64,
    /// Datagrams seen twice or more (each extra copy counts one).
    pub duplicates: u64,
    /// Datagrams that arrived after a later one.
    pub reordered: u64,
    /// Times tracking restarted (see [`SeqEvent::Restart`]).
    pub restarts: u64,
}

impl SeqStats {
    fn add(&mut self, o: &SeqStats) {
        self.received += o.received;
        self.lost += o.lost;
        self.duplicates += o.duplicates;
        self.reordered += o.reordered;
        self.restarts += o.restarts;
    }
}

#[derive(Clone)]
struct Slot {
    used: bool,
    sender: u32,
    last_use: u64,
    highest: u64,
    /// Lowest sequence number seen in this epoch (clamped to the window's floor).
    low: u64,
    /// Bit `s % WINDOW` is set when `s` in `(highest - WINDOW, highest]` was seen.
    bits: [u64; WORDS],
    stats: SeqStats,
}

impl Slot {
    const EMPTY: Slot = Slot {
        used: false,
        sender: 0,
        last_use: 0,
        highest: 0,
        low: 0,
        bits: [0; WORDS],
        stats: SeqStats {
            received: 0,
            lost: 0,
            duplicates: 0,
            reordered: 0,
            restarts: 0,
        },
    };

    #[inline]
    fn bit(seq: u64) -> (usize, u64) {
        let i = seq % WINDOW;
        ((i / 64) as usize, 1u64 << (i % 64))
    }

    #[inline]
    fn test_and_set(&mut self, seq: u64) -> bool {
        let (w, m) = Slot::bit(seq);
        let was = self.bits[w] & m != 0;
        self.bits[w] |= m;
        was
    }

    fn rebase(&mut self, seq: u64) {
        self.highest = seq;
        self.low = seq;
        self.bits = [0; WORDS];
        self.test_and_set(seq);
    }

    fn observe(&mut self, seq: u64, reject_stale: bool) -> SeqEvent {
        self.stats.received += 1;
        if seq > self.highest {
            let d = seq - self.highest;
            if d > MAX_FORWARD_GAP {
                self.stats.restarts += 1;
                self.rebase(seq);
                return SeqEvent::Restart;
            }
            if d >= WINDOW {
                self.bits = [0; WORDS];
            } else {
                for s in self.highest + 1..seq {
                    let (w, m) = Slot::bit(s);
                    self.bits[w] &= !m;
                }
            }
            self.test_and_set(seq);
            self.highest = seq;
            self.low = self.low.max(seq - (WINDOW - 1).min(seq));
            self.stats.lost += d - 1;
            return if d == 1 {
                SeqEvent::InOrder
            } else {
                SeqEvent::Gap { lost: d - 1 }
            };
        }
        let back = self.highest - seq;
        if back >= WINDOW && reject_stale {
            self.stats.duplicates += 1;
            return SeqEvent::Duplicate;
        }
        if back >= WINDOW {
            self.stats.restarts += 1;
            self.rebase(seq);
            return SeqEvent::Restart;
        }
        if seq < self.low {
            // Older than anything seen in this epoch: extend the tracked range down.
            self.stats.lost += self.low - seq - 1;
            self.low = seq;
            self.test_and_set(seq);
            self.stats.reordered += 1;
            return SeqEvent::Late;
        }
        if self.test_and_set(seq) {
            self.stats.duplicates += 1;
            return SeqEvent::Duplicate;
        }
        self.stats.lost = self.stats.lost.saturating_sub(1);
        self.stats.reordered += 1;
        SeqEvent::Late
    }
}

/// Fixed-capacity table of senders and their sequence state.
pub struct SeqTracker {
    slots: Box<[Slot]>,
    /// Slot of the most recent hit: most traffic comes from one sender at a time.
    last: usize,
    tick: u64,
    evicted: SeqStats,
    evictions: u64,
    reject_stale: bool,
}

impl SeqTracker {
    /// A table for up to `capacity` senders (at least 1). Allocates once, here.
    pub fn new(capacity: usize) -> Self {
        SeqTracker {
            slots: vec![Slot::EMPTY; capacity.max(1)].into_boxed_slice(),
            last: 0,
            tick: 0,
            evicted: SeqStats::default(),
            evictions: 0,
            reject_stale: false,
        }
    }

    /// Treats a datagram [`WINDOW`] or more behind its sender's highest number as a
    /// replayed copy ([`SeqEvent::Duplicate`]) rather than a restart of the sender with
    /// the same id. For authenticated streams, where nobody but a key holder can make a
    /// datagram and canmc's senders restart with a new id.
    pub fn reject_stale(&mut self, on: bool) {
        self.reject_stale = on;
    }

    /// Accounts for one datagram of `sender` with sequence number `seq`.
    pub fn observe(&mut self, sender: u32, seq: u64) -> SeqEvent {
        self.tick += 1;
        let idx = match self.find(sender) {
            Some(i) => i,
            None => {
                let i = self.victim();
                let slot = &mut self.slots[i];
                if slot.used {
                    self.evicted.add(&slot.stats);
                    self.evictions += 1;
                }
                *slot = Slot::EMPTY;
                slot.used = true;
                slot.sender = sender;
                slot.last_use = self.tick;
                slot.rebase(seq);
                slot.stats.received = 1;
                self.last = i;
                return SeqEvent::First;
            }
        };
        self.last = idx;
        let slot = &mut self.slots[idx];
        slot.last_use = self.tick;
        slot.observe(seq, self.reject_stale)
    }

    #[inline]
    fn find(&self, sender: u32) -> Option<usize> {
        let l = &self.slots[self.last];
        if l.used && l.sender == sender {
            return Some(self.last);
        }
        self.slots.iter().position(|s| s.used && s.sender == sender)
    }

    /// An unused slot, else the least recently used one.
    fn victim(&self) -> usize {
        let mut best = 0;
        for (i, s) in self.slots.iter().enumerate() {
            if !s.used {
                return i;
            }
            if s.last_use < self.slots[best].last_use {
                best = i;
            }
        }
        best
    }

    /// Counts for one sender still in the table.
    pub fn stats(&self, sender: u32) -> Option<SeqStats> {
        self.find(sender).map(|i| self.slots[i].stats)
    }

    /// Counts summed over every sender ever seen, evicted ones included.
    pub fn totals(&self) -> SeqStats {
        let mut t = self.evicted;
        for s in self.slots.iter().filter(|s| s.used) {
            t.add(&s.stats);
        }
        t
    }

    /// Senders in the table with their counts, in no particular order.
    pub fn senders(&self) -> impl Iterator<Item = (u32, SeqStats)> + '_ {
        self.slots
            .iter()
            .filter(|s| s.used)
            .map(|s| (s.sender, s.stats))
    }

    /// Senders in the table.
    pub fn len(&self) -> usize {
        self.slots.iter().filter(|s| s.used).count()
    }

    /// True when no sender was seen yet.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Most senders the table holds.
    pub fn capacity(&self) -> usize {
        self.slots.len()
    }

    /// Senders evicted to make room for new ones.
    pub fn evictions(&self) -> u64 {
        self.evictions
    }
}

impl Default for SeqTracker {
    fn default() -> Self {
        SeqTracker::new(DEFAULT_CAPACITY)
    }
}

impl std::fmt::Debug for SeqTracker {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("SeqTracker")
            .field("senders", &self.len())
            .field("capacity", &self.capacity())
            .field("totals", &self.totals())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn in_order_then_gap_then_late_fill() {
        let mut t = SeqTracker::new(4);
        assert_eq!(t.observe(7, 0), SeqEvent::First);
        assert_eq!(t.observe(7, 1), SeqEvent::InOrder);
        assert_eq!(t.observe(7, 5), SeqEvent::Gap { lost: 3 });
        assert_eq!(t.stats(7).unwrap().lost, 3);
        assert_eq!(t.observe(7, 3), SeqEvent::Late);
        assert_eq!(t.observe(7, 3), SeqEvent::Duplicate);
        let s = t.stats(7).unwrap();
        assert_eq!(
            s,
            SeqStats {
                received: 5,
                lost: 2,
                duplicates: 1,
                reordered: 1,
                restarts: 0
            }
        );
    }

    /// With `reject_stale`, a datagram a whole window behind is a replayed copy: dropped
    /// as a duplicate, and tracking goes on from the real sender's position (without it,
    /// the same datagram restarts tracking).
    #[test]
    fn reject_stale_turns_an_old_number_into_a_duplicate() {
        for reject in [false, true] {
            let mut t = SeqTracker::new(2);
            t.reject_stale(reject);
            t.observe(9, 0);
            for seq in 1..=2 * WINDOW {
                assert_eq!(t.observe(9, seq), SeqEvent::InOrder);
            }
            let replayed = t.observe(9, 5);
            let next = t.observe(9, 2 * WINDOW + 1);
            let s = t.stats(9).unwrap();
            if reject {
                assert_eq!(replayed, SeqEvent::Duplicate);
                assert_eq!(next, SeqEvent::InOrder);
                assert_eq!((s.duplicates, s.restarts, s.lost), (1, 0, 0));
            } else {
                assert_eq!(replayed, SeqEvent::Restart);
                assert_eq!(s.restarts, 1);
            }
        }
        // A forward jump beyond MAX_FORWARD_GAP is still a restart either way.
        let mut t = SeqTracker::new(1);
        t.reject_stale(true);
        t.observe(1, 0);
        assert_eq!(t.observe(1, MAX_FORWARD_GAP + 5), SeqEvent::Restart);
    }

    #[test]
    fn duplicate_of_highest_and_of_older() {
        let mut t = SeqTracker::new(1);
        t.observe(1, 10);
        assert_eq!(t.observe(1, 10), SeqEvent::Duplicate);
        assert_eq!(t.observe(1, 11), SeqEvent::InOrder);
        assert_eq!(t.observe(1, 10), SeqEvent::Duplicate);
        assert_eq!(t.stats(1).unwrap().duplicates, 2);
        assert_eq!(t.stats(1).unwrap().lost, 0);
    }

    #[test]
    fn late_below_first_extends_the_range() {
        let mut t = SeqTracker::new(1);
        t.observe(1, 10);
        t.observe(1, 11);
        // 7 arrives late: 8 and 9 are now known missing.
        assert_eq!(t.observe(1, 7), SeqEvent::Late);
        assert_eq!(t.stats(1).unwrap().lost, 2);
        assert_eq!(t.observe(1, 8), SeqEvent::Late);
        assert_eq!(t.observe(1, 9), SeqEvent::Late);
        assert_eq!(t.observe(1, 7), SeqEvent::Duplicate);
        let s = t.stats(1).unwrap();
        assert_eq!((s.lost, s.reordered, s.duplicates), (0, 3, 1));
    }

    #[test]
    fn window_edges() {
        let mut t = SeqTracker::new(1);
        t.observe(1, 0);
        assert_eq!(t.observe(1, WINDOW), SeqEvent::Gap { lost: WINDOW - 1 });
        // WINDOW - 1 behind the highest: still inside the window.
        assert_eq!(t.observe(1, 1), SeqEvent::Late);
        // 0 is WINDOW behind: outside, taken as a restart.
        assert_eq!(t.observe(1, 0), SeqEvent::Restart);
        assert_eq!(t.stats(1).unwrap().restarts, 1);
        assert_eq!(t.observe(1, 1), SeqEvent::InOrder);
    }

    #[test]
    fn gap_of_a_whole_window_clears_old_bits() {
        let mut t = SeqTracker::new(1);
        t.observe(1, 5);
        t.observe(1, 5 + 3 * WINDOW);
        // 5 + 2*WINDOW + 1 shares a bit position with an old seen number but was never seen.
        assert_eq!(t.observe(1, 5 + 2 * WINDOW + 1), SeqEvent::Late);
    }

    #[test]
    fn restart_backwards_and_huge_forward_jump() {
        let mut t = SeqTracker::new(1);
        for s in 0..5000 {
            t.observe(9, s);
        }
        assert_eq!(t.observe(9, 0), SeqEvent::Restart);
        assert_eq!(t.observe(9, 1), SeqEvent::InOrder);
        assert_eq!(t.observe(9, 1 + MAX_FORWARD_GAP + 1), SeqEvent::Restart);
        let s = t.stats(9).unwrap();
        assert_eq!((s.restarts, s.lost, s.received), (2, 0, 5003));
    }

    #[test]
    fn senders_are_independent_and_evicted_lru() {
        let mut t = SeqTracker::new(2);
        t.observe(1, 0);
        t.observe(2, 0);
        t.observe(1, 2); // 1 lost; sender 1 most recent
        assert_eq!(t.observe(3, 0), SeqEvent::First); // evicts sender 2
        assert_eq!(t.evictions(), 1);
        assert!(t.stats(2).is_none());
        assert_eq!(t.stats(1).unwrap().lost, 1);
        let tot = t.totals();
        assert_eq!((tot.received, tot.lost), (4, 1));
        assert_eq!(t.len(), 2);
        // Sender 2 comes back: a new sender as far as the table knows.
        assert_eq!(t.observe(2, 1), SeqEvent::First);
        assert_eq!(t.totals().received, 5);
    }

    #[test]
    fn huge_sequence_numbers_do_not_overflow() {
        let mut t = SeqTracker::new(1);
        t.observe(1, u64::MAX - 1);
        assert_eq!(t.observe(1, u64::MAX), SeqEvent::InOrder);
        assert_eq!(t.observe(1, 0), SeqEvent::Restart);
        t.observe(1, 3);
        assert_eq!(t.observe(1, 1), SeqEvent::Late);
    }
}
