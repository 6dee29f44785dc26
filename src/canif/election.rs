//! Which of the bridges on one physical bus forwards: the election state machine of
//! `canmc bridge --bus NAME` (docs/socketcan.md, *Several bridges on one bus*). Pure
//! logic over announcements and a clock the caller passes in, so it is tested without
//! sockets; no allocation after [`Election::new`].
//!
//! Rules, for the bridges announcing the same bus name:
//!
//! - A bridge starts **listening** for [`MISSES`] announcement periods (plus a margin),
//!   forwarding nothing, so that it learns who is there before it may act.
//! - Bridges rank by `(priority, start_ns, id)`, lower first: the preferred priority,
//!   then the oldest, then the id as a tie-break every bridge computes the same way.
//! - A peer is **live** while its last announcement is younger than [`MISSES`] of its
//!   own announcement periods.
//! - An **active** bridge steps down to standby as soon as it hears a live, better-ranked
//!   peer that has finished listening.
//! - A **standby** bridge becomes active when no live peer ranks better (one still
//!   listening included: it will be the one) and no live peer claims to be active.
//!
//! So there is one active bridge whenever the announcements get through: a new bridge
//! with a later start never preempts, a better one takes over only after the active one
//! said it stepped down, and when the active one falls silent the best remaining one
//! takes over after [`MISSES`] periods.

use crate::wire::native::{AnnounceState, Announcement, BridgeAnnounce, BusName};

/// Announcement periods of silence after which a peer is taken for gone (and periods a
/// new bridge listens before it may forward).
pub const MISSES: u64 = 3;

/// Most peers on one bus the election tracks; announcements from more are counted
/// ([`Election::peers_ignored`]) and otherwise ignored.
pub const MAX_PEERS: usize = 16;

/// How one bridge ranks: lower is preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Rank {
    /// `--priority`, lower preferred.
    pub priority: u8,
    /// Start time, ns since the Unix epoch: the older one is preferred.
    pub start_ns: u64,
    /// The bridge's random id: the tie-break.
    pub id: u32,
}

#[derive(Debug, Clone, Copy)]
struct Peer {
    rank: Rank,
    state: AnnounceState,
    seq: u64,
    period_ns: u64,
    last_seen_ns: u64,
}

impl Peer {
    fn live(&self, now_ns: u64) -> bool {
        now_ns.saturating_sub(self.last_seen_ns) < MISSES * self.period_ns
    }
}

/// One bridge's view of its bus: its own rank and state, and the peers it heard.
#[derive(Debug, Clone)]
pub struct Election {
    bus: BusName,
    me: Rank,
    period_ns: u64,
    started_ns: u64,
    state: AnnounceState,
    peers: [Option<Peer>; MAX_PEERS],
    /// When the last live peer claiming to be active was last heard, while we were not
    /// active: the start of a takeover's gap.
    last_active_peer_ns: Option<u64>,
    takeovers: u64,
    stepdowns: u64,
    last_takeover_gap_ns: Option<u64>,
    peers_ignored: u64,
    other_buses: u64,
    stale: u64,
}

impl Election {
    /// A bridge on `bus` ranked `me`, announcing every `period_ns`, started at `now_ns`
    /// (the caller's monotonic clock, the same one every later call uses).
    pub fn new(bus: BusName, me: Rank, period_ns: u64, now_ns: u64) -> Election {
        Election {
            bus,
            me,
            period_ns: period_ns.max(1),
            started_ns: now_ns,
            state: AnnounceState::Listening,
            peers: [None; MAX_PEERS],
            last_active_peer_ns: None,
            takeovers: 0,
            stepdowns: 0,
            last_takeover_gap_ns: None,
            peers_ignored: 0,
            other_buses: 0,
            stale: 0,
        }
    }

    /// What this bridge is doing now.
    pub fn state(&self) -> AnnounceState {
        self.state
    }

    /// Whether it forwards.
    pub fn is_active(&self) -> bool {
        self.state == AnnounceState::Active
    }

    /// This bridge's rank.
    pub fn rank(&self) -> Rank {
        self.me
    }

    /// The bus name.
    pub fn bus(&self) -> BusName {
        self.bus
    }

    /// What this bridge announces now.
    pub fn announcement(&self) -> BridgeAnnounce {
        BridgeAnnounce {
            bus: self.bus,
            start_ns: self.me.start_ns,
            period_ms: (self.period_ns / 1_000_000).clamp(1, u16::MAX as u64) as u16,
            priority: self.me.priority,
            state: self.state,
        }
    }

    /// Times this bridge became active.
    pub fn takeovers(&self) -> u64 {
        self.takeovers
    }

    /// Times it stepped down for a better peer.
    pub fn stepdowns(&self) -> u64 {
        self.stepdowns
    }

    /// For the last takeover that followed an active peer: ns from that peer's last
    /// announcement to the takeover (what a failover left unforwarded).
    pub fn last_takeover_gap_ns(&self) -> Option<u64> {
        self.last_takeover_gap_ns
    }

    /// Announcements from peers beyond [`MAX_PEERS`].
    pub fn peers_ignored(&self) -> u64 {
        self.peers_ignored
    }

    /// Announcements for other buses (bridges on other buses of the group).
    pub fn other_buses(&self) -> u64 {
        self.other_buses
    }

    /// Announcements older than one already taken from the same peer (reordered).
    pub fn stale(&self) -> u64 {
        self.stale
    }

    /// Live peers on this bus at `now_ns`.
    pub fn live_peers(&self, now_ns: u64) -> usize {
        self.peers
            .iter()
            .flatten()
            .filter(|p| p.live(now_ns))
            .count()
    }

    /// Takes in an announcement received at `now_ns`, then re-decides. Returns the new
    /// state if it changed (the caller announces it at once).
    pub fn observe(&mut self, a: &Announcement, now_ns: u64) -> Option<AnnounceState> {
        if a.body.bus != self.bus {
            self.other_buses += 1;
            return None;
        }
        if a.sender_id == self.me.id {
            // Our own (multicast loopback from another socket of ours, or an id clash
            // with a peer, which the rank tie-break cannot settle): never a peer.
            return None;
        }
        let rank = Rank {
            priority: a.body.priority,
            start_ns: a.body.start_ns,
            id: a.sender_id,
        };
        let peer = Peer {
            rank,
            state: a.body.state,
            seq: a.seq,
            period_ns: u64::from(a.body.period_ms.max(1)) * 1_000_000,
            last_seen_ns: now_ns,
        };
        let slot = self
            .peers
            .iter()
            .position(|p| p.is_some_and(|p| p.rank.id == a.sender_id))
            .or_else(|| {
                self.peers
                    .iter()
                    .position(|p| p.is_none_or(|p| !p.live(now_ns)))
            });
        match slot {
            Some(i) => {
                if let Some(old) = self.peers[i] {
                    if old.rank.id == a.sender_id && old.rank == rank && a.seq < old.seq {
                        self.stale += 1;
                        return None;
                    }
                }
                self.peers[i] = Some(peer);
            }
            None => {
                self.peers_ignored += 1;
                return None;
            }
        }
        if peer.state == AnnounceState::Active && self.state != AnnounceState::Active {
            self.last_active_peer_ns = Some(now_ns);
        }
        self.tick(now_ns)
    }

    /// Re-decides at `now_ns` (call it every few ms: peers fall silent without telling).
    /// Returns the new state if it changed.
    pub fn tick(&mut self, now_ns: u64) -> Option<AnnounceState> {
        for p in self.peers.iter_mut() {
            if p.is_some_and(|q| !q.live(now_ns)) {
                *p = None;
            }
        }
        let listen_until = self.started_ns + MISSES * self.period_ns + self.period_ns / 2;
        if self.state == AnnounceState::Listening && now_ns < listen_until {
            return None;
        }
        let candidates = || {
            self.peers
                .iter()
                .flatten()
                .filter(|p| p.state != AnnounceState::Listening)
        };
        let better = candidates().any(|p| p.rank < self.me);
        let other_active = candidates().any(|p| p.state == AnnounceState::Active);
        // A better peer still listening will be the one: waiting for it (at most one
        // listening time) avoids a takeover that it would undo at once.
        let better_listening = self
            .peers
            .iter()
            .flatten()
            .any(|p| p.state == AnnounceState::Listening && p.rank < self.me);
        let next = match self.state {
            AnnounceState::Active if better => AnnounceState::Standby,
            AnnounceState::Active => AnnounceState::Active,
            _ if better || other_active || better_listening => AnnounceState::Standby,
            _ => AnnounceState::Active,
        };
        if next == self.state {
            return None;
        }
        match next {
            AnnounceState::Active => {
                self.takeovers += 1;
                if let Some(t) = self.last_active_peer_ns.take() {
                    self.last_takeover_gap_ns = Some(now_ns.saturating_sub(t));
                }
            }
            _ if self.state == AnnounceState::Active => self.stepdowns += 1,
            _ => {}
        }
        self.state = next;
        Some(next)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const MS: u64 = 1_000_000;
    const PERIOD: u64 = 100 * MS;

    fn bus(name: &str) -> BusName {
        BusName::new(name).unwrap()
    }

    fn rank(priority: u8, start_ns: u64, id: u32) -> Rank {
        Rank {
            priority,
            start_ns,
            id,
        }
    }

    /// A little simulated group: every bridge announces every period (and at once on a
    /// change), each announcement reaches every other bridge unless it is cut off.
    struct Sim {
        bridges: Vec<Election>,
        seqs: Vec<u64>,
        down: Vec<bool>,
        now: u64,
    }

    impl Sim {
        fn new() -> Sim {
            Sim {
                bridges: Vec::new(),
                seqs: Vec::new(),
                down: Vec::new(),
                now: 0,
            }
        }

        fn add(&mut self, r: Rank) -> usize {
            self.bridges
                .push(Election::new(bus("body"), r, PERIOD, self.now));
            self.seqs.push(0);
            self.down.push(false);
            self.bridges.len() - 1
        }

        fn announce(&mut self, from: usize) {
            if self.down[from] {
                return;
            }
            self.seqs[from] += 1;
            let a = Announcement {
                sender_id: self.bridges[from].rank().id,
                seq: self.seqs[from],
                body: self.bridges[from].announcement(),
            };
            let mut changed = Vec::new();
            for (i, b) in self.bridges.iter_mut().enumerate() {
                if i != from && !self.down[i] && b.observe(&a, self.now).is_some() {
                    changed.push(i);
                }
            }
            for i in changed {
                self.announce(i);
            }
        }

        /// Runs for `ms` in 10 ms ticks; returns how many were active at each tick.
        fn run(&mut self, ms: u64) -> Vec<usize> {
            let mut actives = Vec::new();
            for _ in 0..ms / 10 {
                self.now += 10 * MS;
                for i in 0..self.bridges.len() {
                    if self.down[i] {
                        continue;
                    }
                    let changed = self.bridges[i].tick(self.now).is_some();
                    let periodic = (self.now / (10 * MS)) % 10 == (i as u64 % 10);
                    if changed || periodic {
                        self.announce(i);
                    }
                }
                actives.push(self.active().len());
            }
            actives
        }

        fn active(&self) -> Vec<usize> {
            (0..self.bridges.len())
                .filter(|&i| !self.down[i] && self.bridges[i].is_active())
                .collect()
        }
    }

    #[test]
    fn a_lone_bridge_listens_then_forwards() {
        let mut e = Election::new(bus("b"), rank(0, 1, 1), PERIOD, 0);
        assert_eq!(e.state(), AnnounceState::Listening);
        assert_eq!(e.tick(300 * MS), None, "still listening after 3 periods");
        assert_eq!(e.tick(351 * MS), Some(AnnounceState::Active));
        assert_eq!(e.takeovers(), 1);
        assert_eq!(e.last_takeover_gap_ns(), None);
    }

    #[test]
    fn two_bridges_started_together_elect_exactly_one_the_older() {
        let mut s = Sim::new();
        let young = s.add(rank(100, 2_000, 0x10));
        let old = s.add(rank(100, 1_000, 0x20));
        let actives = s.run(2_000);
        assert_eq!(s.active(), vec![old]);
        assert!(
            actives.iter().all(|&n| n <= 1),
            "never two active: {actives:?}"
        );
        assert_eq!(s.bridges[young].state(), AnnounceState::Standby);
        assert_eq!(s.bridges[young].takeovers(), 0);
    }

    #[test]
    fn a_later_bridge_never_preempts_and_takes_over_when_the_active_one_goes_silent() {
        let mut s = Sim::new();
        let a = s.add(rank(100, 1_000, 0xFFFF));
        s.run(1_000);
        assert_eq!(s.active(), vec![a]);
        let b = s.add(rank(100, 5_000, 0x1));
        let actives = s.run(2_000);
        assert!(actives.iter().all(|&n| n == 1), "{actives:?}");
        assert_eq!(s.active(), vec![a], "the newcomer waits");
        // A dies: its announcements stop.
        s.down[a] = true;
        let actives = s.run(1_000);
        assert_eq!(s.active(), vec![b]);
        let gap = s.bridges[b].last_takeover_gap_ns().unwrap();
        assert!(
            (MISSES * PERIOD..MISSES * PERIOD + 30 * MS).contains(&gap),
            "took over {} ms after the last announcement",
            gap / MS
        );
        // Nobody forwarded for about 3 periods: what a failover loses.
        let idle = actives.iter().filter(|&&n| n == 0).count();
        assert!(
            (20..=40).contains(&idle),
            "{idle} ticks of 10 ms without an active bridge"
        );
        // A comes back (a restart: a new start time, a new id): it stays standby.
        s.down[a] = false;
        s.bridges[a] = Election::new(bus("body"), rank(100, 9_000, 0xFFFE), PERIOD, s.now);
        let actives = s.run(2_000);
        assert!(actives.iter().all(|&n| n == 1), "{actives:?}");
        assert_eq!(s.active(), vec![b]);
    }

    #[test]
    fn a_preferred_bridge_takes_over_only_after_the_active_one_stepped_down() {
        let mut s = Sim::new();
        let a = s.add(rank(100, 1_000, 1));
        s.run(1_000);
        let b = s.add(rank(10, 5_000, 2));
        let actives = s.run(2_000);
        assert!(
            actives.iter().all(|&n| n <= 1),
            "never two active: {actives:?}"
        );
        assert_eq!(s.active(), vec![b]);
        assert_eq!(s.bridges[a].stepdowns(), 1);
        // The handover is immediate in the simulation (announcements on change): at
        // most one tick without a forwarder.
        assert!(
            actives.iter().filter(|&&n| n == 0).count() <= 1,
            "{actives:?}"
        );
    }

    #[test]
    fn a_split_brain_ends_with_the_better_one() {
        let mut s = Sim::new();
        let a = s.add(rank(100, 1_000, 1));
        let b = s.add(rank(100, 2_000, 2));
        s.run(1_000);
        assert_eq!(s.active(), vec![a]);
        // Each stops hearing the other (a partition): b takes over, both are active.
        let (ea, eb) = (s.bridges[a].clone(), s.bridges[b].clone());
        let mut lone_a = ea;
        let mut lone_b = eb;
        let t = s.now + 1_000 * MS;
        lone_a.tick(t);
        lone_b.tick(t);
        assert!(lone_a.is_active() && lone_b.is_active());
        // Healed: the first announcement b hears from a makes it step down.
        s.bridges[a] = lone_a;
        s.bridges[b] = lone_b;
        s.now = t;
        s.announce(a);
        assert_eq!(s.active(), vec![a]);
        assert_eq!(s.bridges[b].stepdowns(), 1);
    }

    #[test]
    fn other_buses_own_echoes_stale_and_overflow_do_not_count() {
        let mut e = Election::new(bus("x"), rank(0, 10, 7), PERIOD, 0);
        let mut body = e.announcement();
        body.state = AnnounceState::Active;
        body.start_ns = 1;
        let other = BridgeAnnounce {
            bus: bus("y"),
            ..body
        };
        e.observe(
            &Announcement {
                sender_id: 1,
                seq: 1,
                body: other,
            },
            1,
        );
        assert_eq!((e.other_buses(), e.live_peers(1)), (1, 0));
        e.observe(
            &Announcement {
                sender_id: 7,
                seq: 1,
                body,
            },
            1,
        );
        assert_eq!(e.live_peers(1), 0, "our own id is never a peer");
        e.observe(
            &Announcement {
                sender_id: 2,
                seq: 5,
                body,
            },
            1,
        );
        let mut older = body;
        older.state = AnnounceState::Standby;
        e.observe(
            &Announcement {
                sender_id: 2,
                seq: 4,
                body: older,
            },
            2,
        );
        assert_eq!(e.stale(), 1);
        // The better, active peer keeps us standby once we have listened.
        let t = 390 * MS;
        e.observe(
            &Announcement {
                sender_id: 2,
                seq: 6,
                body,
            },
            t,
        );
        assert_eq!(e.state(), AnnounceState::Standby);
        for id in 100..100 + MAX_PEERS as u32 {
            e.observe(
                &Announcement {
                    sender_id: id,
                    seq: 1,
                    body,
                },
                t,
            );
        }
        assert_eq!(e.live_peers(t), MAX_PEERS);
        assert_eq!(e.peers_ignored(), 1);
        assert_eq!(e.tick(t + MISSES * PERIOD - 1), None);
        // All fall silent: after 3 periods they are gone and we forward.
        assert_eq!(e.tick(t + MISSES * PERIOD), Some(AnnounceState::Active));
        assert_eq!(e.live_peers(t + MISSES * PERIOD), 0);
    }
}
