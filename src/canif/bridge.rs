//! The bridge between one CAN interface and the multicast group, both ways, without
//! loops: frames this bridge wrote onto the bus come back to it flagged as its own
//! (`MSG_CONFIRM`) and are not sent to the group; its own datagrams come back through
//! multicast loopback from its own address and are not written to the bus.
//!
//! Two threads: `canmc-can-rx` (bus → group: [`CanReceiver`] → [`FrameSender`]) and the
//! engine's receive thread (group → bus: [`Engine`] → inline consumer → [`CanSender`]).
//! Both write to one socket (a duplicated descriptor), which is what makes the kernel
//! flag the bridge's writes as its own on the receiving side.
//!
//! With a bus name ([`BridgeConfig::bus`]) a third thread, `canmc-bridge-ha`, announces
//! the bridge on the group every [`BridgeConfig::announce_period`] and runs the
//! [`Election`] with what the engine hands it ([`InlineConsumer::on_announce`]): bridges
//! on the same bus forward only while elected active, so two of them on one bus neither
//! loop nor double frames (docs/socketcan.md).

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::election::{Election, Rank};
use super::rx::CanReceiver;
use super::socket::{CanSocket, CanSocketConfig, CAN_ERR_MASK};
use super::tx::CanSender;
use super::CanIfError;
use crate::engine::{Engine, EngineConfig, Event, InlineConsumer, InlineEngine, Stats};
use crate::filter::FilterSet;
use crate::frame::{Channel, SenderAddr};
use crate::recv::{open_source, IoMode, RecvConfig};
use crate::send::FrameSender;
use crate::socket::{McastConfig, RecvSocket, SendSocket};
use crate::wire::native::{self, AnnounceState, Announcement, AuthKey, BusName};
use crate::wire::WireFormat;

/// Which ways a bridge carries frames.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BridgeDirection {
    /// Bus → group and group → bus.
    #[default]
    Both,
    /// Bus → group only.
    ToGroup,
    /// Group → bus only.
    ToCan,
}

/// Settings of a [`Bridge`].
#[derive(Debug, Clone)]
pub struct BridgeConfig {
    /// The CAN interface (`can0`, `vcan0`).
    pub iface: String,
    /// The multicast group, port and network interface.
    pub group: McastConfig,
    /// Wire format of the datagrams the bridge sends (it receives both).
    pub wire: WireFormat,
    /// Which ways frames go.
    pub direction: BridgeDirection,
    /// Only frames these candump filters pass are forwarded (both ways).
    pub filters: FilterSet,
    /// Forward the bus's error frames to the group (`CAN_RAW_ERR_FILTER` all classes).
    /// Error frames from the group are never written to a bus.
    pub error_frames: bool,
    /// Frames per `recvmmsg` / `sendmmsg` on the CAN socket.
    pub batch: usize,
    /// Native format: longest a frame waits for others to share its datagram.
    pub linger_ns: u64,
    /// Native format: largest datagram.
    pub max_datagram: usize,
    /// Native format: authenticate sent datagrams and accept only authenticated ones.
    pub auth_key: Option<AuthKey>,
    /// Receive path for the group side.
    pub io: IoMode,
    /// Turn UDP GRO on for the group side (the default; see [`RecvConfig::gro`]).
    pub gro: bool,
    /// Receive buffer of the CAN socket.
    pub can_rcvbuf: usize,
    /// The physical bus this bridge is on (`--bus`): bridges with the same name share a
    /// bus and elect one active forwarder. `None`: this bridge is the bus's only one and
    /// always forwards.
    pub bus: Option<BusName>,
    /// Election priority on the bus, lower preferred (`--priority`).
    pub priority: u8,
    /// How often the bridge announces itself when it has a bus name (peers declare it
    /// gone after [`election::MISSES`](super::election::MISSES) periods of silence).
    pub announce_period: Duration,
}

impl BridgeConfig {
    /// Defaults for `iface` and `group`: both ways, python-can format, no filters, error
    /// frames forwarded.
    pub fn new(iface: &str, group: McastConfig) -> BridgeConfig {
        BridgeConfig {
            iface: iface.into(),
            group,
            wire: WireFormat::Pycan,
            direction: BridgeDirection::Both,
            filters: FilterSet::default(),
            error_frames: true,
            batch: 64,
            linger_ns: 1_000_000,
            max_datagram: 1400,
            auth_key: None,
            io: IoMode::Auto,
            gro: true,
            can_rcvbuf: 8 << 20,
            bus: None,
            priority: 100,
            announce_period: Duration::from_millis(100),
        }
    }
}

/// Counters of the bus → group direction.
#[derive(Debug, Default)]
struct ToGroupCounters {
    received: AtomicU64,
    forwarded: AtomicU64,
    own: AtomicU64,
    filtered: AtomicU64,
    kernel_drops: AtomicU64,
    datagrams: AtomicU64,
    rejected: AtomicU64,
    standby: AtomicU64,
}

/// Counters of the group → bus direction (besides the engine's).
#[derive(Debug, Default)]
struct ToCanCounters {
    written: AtomicU64,
    filtered: AtomicU64,
    error_frames: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
    standby: AtomicU64,
}

/// What the bridge did, per direction.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BridgeStats {
    /// Bus → group: frames read from the interface (own confirmations included).
    pub can_received: u64,
    /// Bus → group: frames sent to the group.
    pub to_group: u64,
    /// Bus → group: the bridge's own writes seen back (`MSG_CONFIRM`), not forwarded.
    pub own_echoes: u64,
    /// Bus → group: frames the filters (or a disabled error-frame option) left out.
    pub to_group_filtered: u64,
    /// Bus → group: frames the kernel dropped on the CAN socket (`SO_RXQ_OVFL`).
    pub can_kernel_drops: u64,
    /// Bus → group: datagrams sent.
    pub datagrams_sent: u64,
    /// Bus → group: frames refused by the wire encoder.
    pub to_group_rejected: u64,
    /// Bus → group: frames not forwarded because another bridge on the bus is active
    /// (or this one is still listening): `--bus` only.
    pub to_group_standby: u64,
    /// Group → bus: the engine's counters (datagrams, frames, decode errors, the
    /// bridge's own datagrams in `filtered`, kernel drops on the UDP socket).
    pub group: Stats,
    /// Group → bus: frames written to the interface.
    pub to_can: u64,
    /// Group → bus: frames the filters left out.
    pub to_can_filtered: u64,
    /// Group → bus: error frames from the group, never written to a bus.
    pub to_can_error_frames: u64,
    /// Group → bus: frames refused (CAN FD on a classic interface, invalid, refused by
    /// the kernel).
    pub to_can_rejected: u64,
    /// Group → bus: frames given up on (transmit queue full too long, interface failed).
    pub to_can_dropped: u64,
    /// Group → bus: frames not written because another bridge on the bus is active (or
    /// this one is still listening): `--bus` only.
    pub to_can_standby: u64,
}

/// Where a bridge with a bus name stands in its bus's election.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct HaStatus {
    /// The bus name.
    pub bus: BusName,
    /// Listening, standby or active, now.
    pub state: AnnounceState,
    /// This bridge's id in its announcements.
    pub id: u32,
    /// Other bridges on the bus heard within the last 3 periods.
    pub peers: usize,
    /// Times this bridge became active.
    pub takeovers: u64,
    /// Times it stepped down for a better-ranked peer.
    pub stepdowns: u64,
    /// For the last takeover after an active peer fell silent or stepped down: ms from
    /// that peer's last announcement to the takeover.
    pub last_takeover_gap_ms: Option<f64>,
    /// Announcements sent.
    pub announcements: u64,
    /// Announcements from bridges on other buses of the group.
    pub other_buses: u64,
}

/// The election of a bridge with a bus name, shared by its threads. The data paths only
/// read `active`; the lock is taken by the announcer's ticks and by announcements
/// arriving (a few per period), never per frame.
struct Ha {
    active: AtomicBool,
    election: Mutex<Election>,
    /// A state change in `on_announce`: the announcer tells the others at once.
    changed: AtomicBool,
    clock: Instant,
    id: u32,
    announcements: AtomicU64,
}

impl Ha {
    fn now(&self) -> u64 {
        self.clock.elapsed().as_nanos() as u64
    }

    /// Publishes a state change to the data paths.
    fn apply(&self, e: &Election) {
        self.active.store(e.is_active(), Ordering::SeqCst);
    }

    fn status(&self) -> HaStatus {
        let e = self.election.lock().unwrap_or_else(|p| p.into_inner());
        HaStatus {
            bus: e.bus(),
            state: e.state(),
            id: self.id,
            peers: e.live_peers(self.now()),
            takeovers: e.takeovers(),
            stepdowns: e.stepdowns(),
            last_takeover_gap_ms: e.last_takeover_gap_ns().map(|n| n as f64 / 1e6),
            announcements: self.announcements.load(Ordering::Relaxed),
            other_buses: e.other_buses(),
        }
    }
}

/// A running bridge. [`stop`](Bridge::stop) it, then [`join`](Bridge::join) for the
/// totals.
pub struct Bridge {
    stop: Arc<AtomicBool>,
    can_thread: Option<JoinHandle<io::Result<()>>>,
    engine: Option<InlineEngine<ToCan>>,
    engine_counters: Option<Arc<crate::engine::Counters>>,
    to_group: Arc<ToGroupCounters>,
    to_can: Arc<ToCanCounters>,
    io_note: Option<String>,
    ha: Option<Arc<Ha>>,
    ha_thread: Option<JoinHandle<io::Result<()>>>,
}

impl std::fmt::Debug for Bridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Bridge")
            .field("stats", &self.stats())
            .finish()
    }
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Why a bridge did not start.
#[derive(Debug)]
pub enum BridgeError {
    /// The CAN interface could not be opened.
    Can(CanIfError),
    /// The group side (sockets, engine) could not be set up.
    Group(io::Error),
}

impl std::fmt::Display for BridgeError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            BridgeError::Can(e) => e.fmt(f),
            BridgeError::Group(e) => write!(f, "multicast group: {e}"),
        }
    }
}

impl std::error::Error for BridgeError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            BridgeError::Can(e) => Some(e),
            BridgeError::Group(e) => Some(e),
        }
    }
}

impl Bridge {
    /// Opens the CAN socket and the group sockets and starts forwarding. All buffers are
    /// allocated here.
    pub fn start(cfg: &BridgeConfig) -> Result<Bridge, BridgeError> {
        let to_group_on = cfg.direction != BridgeDirection::ToCan;
        let to_can_on = cfg.direction != BridgeDirection::ToGroup;
        let sock_cfg = CanSocketConfig {
            fd: true,
            error_mask: if cfg.error_frames { CAN_ERR_MASK } else { 0 },
            recv_own: true,
            write_only: !to_group_on,
            timestamps: true,
            rcvbuf: cfg.can_rcvbuf,
        };
        let can = CanSocket::open(&cfg.iface, &sock_cfg).map_err(BridgeError::Can)?;
        let stop = Arc::new(AtomicBool::new(false));
        let to_group = Arc::new(ToGroupCounters::default());
        let to_can = Arc::new(ToCanCounters::default());
        let group_err = BridgeError::Group;

        // Bus → group. The send socket's address is also what the engine drops as ours.
        let send_sock = SendSocket::open(&cfg.group).map_err(group_err)?;
        let own_addr = send_sock.local_addr();
        // The election, announced from the same address (so the engine drops our own
        // announcements with our own datagrams).
        let mut ha = None;
        let mut ha_job = None;
        if let Some(bus) = cfg.bus {
            let id = native::random_sender_id();
            let clock = Instant::now();
            let me = Rank {
                priority: cfg.priority,
                start_ns: now_ns(),
                id,
            };
            let period = cfg.announce_period.max(Duration::from_millis(1));
            let h = Arc::new(Ha {
                active: AtomicBool::new(false),
                election: Mutex::new(Election::new(bus, me, period.as_nanos() as u64, 0)),
                changed: AtomicBool::new(true),
                clock,
                id,
                announcements: AtomicU64::new(0),
            });
            ha_job = Some(Announcer {
                ha: Arc::clone(&h),
                sock: send_sock.try_clone_udp().map_err(group_err)?,
                key: cfg.auth_key,
                period,
                stop: Arc::clone(&stop),
            });
            ha = Some(h);
        }
        let mut can_thread = None;
        let writer = if to_can_on {
            Some(can.try_clone().map_err(BridgeError::Can)?)
        } else {
            None
        };
        if to_group_on {
            let rx = CanReceiver::new(can, cfg.batch).map_err(group_err)?;
            let tx = FrameSender::new(send_sock, cfg.wire, cfg.max_datagram, cfg.linger_ns)
                .with_key(cfg.auth_key)
                .keep_going(true);
            let channel = Channel::str(&cfg.iface).unwrap_or(Channel::NONE);
            let job = ToGroup {
                rx,
                tx,
                filters: cfg.filters.clone(),
                error_frames: cfg.error_frames,
                channel,
                counters: Arc::clone(&to_group),
                stop: Arc::clone(&stop),
                ha: ha.clone(),
            };
            can_thread = Some(
                thread::Builder::new()
                    .name("canmc-can-rx".into())
                    .spawn(move || job.run())
                    .map_err(group_err)?,
            );
        }

        // Group → bus (and, with a bus name, the announcements of the other bridges,
        // which come the same way, whatever the direction).
        let mut engine = None;
        let mut engine_counters = None;
        let mut io_note = None;
        if writer.is_some() || ha.is_some() {
            let rsock = RecvSocket::open(&cfg.group).map_err(group_err)?;
            let rcfg = RecvConfig {
                gro: cfg.gro,
                ..RecvConfig::default()
            };
            let (source, note) =
                open_source(rsock.into_socket(), cfg.io, &rcfg).map_err(group_err)?;
            io_note = note;
            let ecfg = EngineConfig {
                drop_from: Some(own_addr),
                auth_key: cfg.auth_key,
                ..EngineConfig::default()
            };
            let tx = match writer {
                Some(w) => Some(CanSender::new(w, cfg.batch).map_err(group_err)?),
                None => None,
            };
            let consumer = ToCan {
                tx,
                filters: cfg.filters.clone(),
                counters: Arc::clone(&to_can),
                ha: ha.clone(),
            };
            let e = Engine::start_inline(source, ecfg, consumer).map_err(group_err)?;
            engine_counters = Some(e.engine().counters());
            engine = Some(e);
        }
        let mut ha_thread = None;
        if let Some(job) = ha_job {
            ha_thread = Some(
                thread::Builder::new()
                    .name("canmc-bridge-ha".into())
                    .spawn(move || job.run())
                    .map_err(group_err)?,
            );
        }
        Ok(Bridge {
            stop,
            can_thread,
            engine,
            engine_counters,
            to_group,
            to_can,
            io_note,
            ha,
            ha_thread,
        })
    }

    /// Whether the group side receives with UDP GRO.
    pub fn gro(&self) -> bool {
        self.engine.as_ref().is_some_and(|e| e.engine().gro())
    }

    /// Why the group side uses recvmmsg instead of io_uring (or runs without UDP GRO),
    /// if it does.
    pub fn io_note(&self) -> Option<&str> {
        self.io_note.as_deref()
    }

    /// The counters now (both directions), readable while running.
    pub fn stats(&self) -> BridgeStats {
        let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
        let g = &self.to_group;
        let c = &self.to_can;
        BridgeStats {
            can_received: ld(&g.received),
            to_group: ld(&g.forwarded),
            own_echoes: ld(&g.own),
            to_group_filtered: ld(&g.filtered),
            can_kernel_drops: ld(&g.kernel_drops),
            datagrams_sent: ld(&g.datagrams),
            to_group_rejected: ld(&g.rejected),
            to_group_standby: ld(&g.standby),
            group: self
                .engine_counters
                .as_ref()
                .map(|c| c.snapshot())
                .unwrap_or_default(),
            to_can: ld(&c.written),
            to_can_filtered: ld(&c.filtered),
            to_can_error_frames: ld(&c.error_frames),
            to_can_rejected: ld(&c.rejected),
            to_can_dropped: ld(&c.dropped),
            to_can_standby: ld(&c.standby),
        }
    }

    /// Where the bridge stands in its bus's election (`None` without a bus name).
    pub fn ha(&self) -> Option<HaStatus> {
        self.ha.as_ref().map(|h| h.status())
    }

    /// True when a direction's thread has ended (an error, or after [`stop`]).
    ///
    /// [`stop`]: Bridge::stop
    pub fn is_finished(&self) -> bool {
        self.can_thread.as_ref().is_some_and(|t| t.is_finished())
            || self.engine.as_ref().is_some_and(|e| e.is_finished())
            || self.ha_thread.as_ref().is_some_and(|t| t.is_finished())
    }

    /// Asks both directions to stop (within ~100 ms).
    pub fn stop(&self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(e) = &self.engine {
            e.engine().stop();
        }
    }

    /// Stops, waits for both threads and returns the totals, or the first error a
    /// direction ended with (the interface went down, the group became unusable).
    pub fn join(mut self) -> io::Result<BridgeStats> {
        self.stop();
        let mut first_err = None;
        if let Some(t) = self.can_thread.take() {
            match t.join() {
                Ok(Err(e)) => first_err = Some(e),
                Err(_) => first_err = Some(io::Error::other("the CAN receive thread panicked")),
                Ok(Ok(())) => {}
            }
        }
        if let Some(e) = self.engine.take() {
            let (res, consumer) = e.join();
            if let Some(mut c) = consumer {
                let r = c.tx.as_mut().map_or(Ok(()), |tx| tx.flush());
                c.publish();
                if let (Err(e), None) = (r, &first_err) {
                    first_err = Some(e);
                }
            }
            if let (Err(e), None) = (res, &first_err) {
                first_err = Some(e);
            }
        }
        if let Some(t) = self.ha_thread.take() {
            match t.join() {
                Ok(Err(e)) if first_err.is_none() => first_err = Some(e),
                Err(_) if first_err.is_none() => {
                    first_err = Some(io::Error::other("the announcement thread panicked"))
                }
                _ => {}
            }
        }
        match first_err {
            Some(e) => Err(e),
            None => Ok(self.stats()),
        }
    }
}

/// Bus → group.
struct ToGroup {
    rx: CanReceiver,
    tx: FrameSender,
    filters: FilterSet,
    error_frames: bool,
    channel: Channel,
    counters: Arc<ToGroupCounters>,
    stop: Arc<AtomicBool>,
    ha: Option<Arc<Ha>>,
}

/// Whether a bridge forwards now: always without a bus name, else while elected.
#[inline]
fn forwarding(ha: &Option<Arc<Ha>>) -> bool {
    ha.as_ref().is_none_or(|h| h.active.load(Ordering::Relaxed))
}

impl ToGroup {
    fn run(mut self) -> io::Result<()> {
        let mut received = 0u64;
        let mut own = 0u64;
        let mut filtered = 0u64;
        let mut standby = 0u64;
        let mut drops = 0u32;
        let mut send_err = None;
        while !self.stop.load(Ordering::Relaxed) {
            let ha = &self.ha;
            let tx = &mut self.tx;
            let filters = &self.filters;
            let channel = self.channel;
            let error_frames = self.error_frames;
            let wait = match tx.deadline() {
                Some(d) => {
                    Duration::from_nanos(d.saturating_sub(now_ns())).min(Duration::from_millis(100))
                }
                None => Duration::from_millis(100),
            };
            self.rx.poll(wait, &mut |frame, meta| {
                received += 1;
                drops = drops.max(meta.kernel_drops);
                if meta.own {
                    own += 1;
                    return;
                }
                if !forwarding(ha) {
                    standby += 1;
                    return;
                }
                if (frame.is_error() && !error_frames) || !filters.matches(frame) {
                    filtered += 1;
                    return;
                }
                let mut f = *frame;
                f.channel = channel;
                if f.timestamp_ns == 0 {
                    f.timestamp_ns = now_ns();
                }
                if let Err(e) = tx.send(&f, f.timestamp_ns) {
                    send_err.get_or_insert(e);
                }
            })?;
            tx.send_queued()?;
            tx.poll(now_ns())?;
            if let Some(e) = send_err.take() {
                return Err(e);
            }
            let c = &self.counters;
            c.received.store(received, Ordering::Relaxed);
            c.own.store(own, Ordering::Relaxed);
            c.filtered.store(filtered, Ordering::Relaxed);
            c.standby.store(standby, Ordering::Relaxed);
            c.kernel_drops.store(drops as u64, Ordering::Relaxed);
            c.forwarded.store(tx.frames(), Ordering::Relaxed);
            c.datagrams.store(tx.datagrams_sent(), Ordering::Relaxed);
            c.rejected.store(tx.rejected(), Ordering::Relaxed);
        }
        // Frames still queued in the socket when asked to stop are forwarded too (what
        // reached the bus before the stop is not lost in the socket buffer).
        loop {
            let tx = &mut self.tx;
            let channel = self.channel;
            let filters = &self.filters;
            let error_frames = self.error_frames;
            let ha = &self.ha;
            let n = self.rx.recv_batch(&mut |frame, meta| {
                received += 1;
                drops = drops.max(meta.kernel_drops);
                if meta.own {
                    own += 1;
                } else if !forwarding(ha) {
                    standby += 1;
                } else if (frame.is_error() && !error_frames) || !filters.matches(frame) {
                    filtered += 1;
                } else {
                    let mut f = *frame;
                    f.channel = channel;
                    if let Err(e) = tx.send(&f, f.timestamp_ns.max(1)) {
                        send_err.get_or_insert(e);
                    }
                }
            })?;
            if n == 0 {
                break;
            }
        }
        self.tx.flush(now_ns())?;
        if let Some(e) = send_err.take() {
            return Err(e);
        }
        let c = &self.counters;
        c.own.store(own, Ordering::Relaxed);
        c.filtered.store(filtered, Ordering::Relaxed);
        c.standby.store(standby, Ordering::Relaxed);
        c.rejected.store(self.tx.rejected(), Ordering::Relaxed);
        if let Ok(d) = self.rx.socket().drops() {
            drops = drops.max(d);
        }
        let c = &self.counters;
        c.received.store(received, Ordering::Relaxed);
        c.kernel_drops.store(drops as u64, Ordering::Relaxed);
        c.forwarded.store(self.tx.frames(), Ordering::Relaxed);
        c.datagrams
            .store(self.tx.datagrams_sent(), Ordering::Relaxed);
        Ok(())
    }
}

/// Group → bus, on the engine's receive thread.
struct ToCan {
    /// `None` for a bridge that runs the engine only for announcements (`--direction
    /// to-group` with a bus name).
    tx: Option<CanSender>,
    filters: FilterSet,
    counters: Arc<ToCanCounters>,
    ha: Option<Arc<Ha>>,
}

impl ToCan {
    fn publish(&self) {
        let Some(tx) = &self.tx else {
            return;
        };
        let c = &self.counters;
        c.written.store(tx.sent(), Ordering::Relaxed);
        c.rejected.store(tx.rejected(), Ordering::Relaxed);
        c.dropped.store(tx.dropped(), Ordering::Relaxed);
    }
}

impl InlineConsumer for ToCan {
    fn on_event(&mut self, event: &Event) -> bool {
        let Event::Frame(frame) = event else {
            return true;
        };
        let Some(tx) = &mut self.tx else {
            return true;
        };
        if frame.is_error() {
            self.counters.error_frames.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if !forwarding(&self.ha) {
            self.counters.standby.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if !self.filters.matches(frame) {
            self.counters.filtered.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        // An interface that fails (went down) ends the bridge; the error is kept in the
        // sender's dropped count and reported by `join` through the flush.
        tx.push(frame).is_ok()
    }

    fn on_batch_end(&mut self) {
        if let Some(tx) = &mut self.tx {
            let _ = tx.flush();
        }
        self.publish();
    }

    fn on_announce(&mut self, a: &Announcement, _sender: &SenderAddr) {
        let Some(ha) = &self.ha else {
            return;
        };
        let now = ha.now();
        let mut e = ha.election.lock().unwrap_or_else(|p| p.into_inner());
        if e.observe(a, now).is_some() {
            ha.apply(&e);
            ha.changed.store(true, Ordering::SeqCst);
        }
    }
}

/// The `canmc-bridge-ha` thread: ticks the election every few ms and announces the
/// bridge every period, and at once when its state changed.
struct Announcer {
    ha: Arc<Ha>,
    sock: std::net::UdpSocket,
    key: Option<AuthKey>,
    period: Duration,
    stop: Arc<AtomicBool>,
}

impl Announcer {
    fn run(self) -> io::Result<()> {
        let mut buf = [0u8; native::ANNOUNCE_LEN + native::TAG_LEN];
        let mut seq = 0u64;
        let mut next = Instant::now();
        let tick = (self.period / 10).clamp(Duration::from_millis(1), Duration::from_millis(10));
        while !self.stop.load(Ordering::Relaxed) {
            let body = {
                let mut e = self.ha.election.lock().unwrap_or_else(|p| p.into_inner());
                if e.tick(self.ha.now()).is_some() {
                    self.ha.apply(&e);
                    self.ha.changed.store(true, Ordering::SeqCst);
                }
                e.announcement()
            };
            let now = Instant::now();
            if self.ha.changed.swap(false, Ordering::SeqCst) || now >= next {
                let mut n = native::encode_announce(&mut buf, self.ha.id, seq, &body);
                if let Some(key) = &self.key {
                    n = native::seal(&mut buf, n, key);
                }
                seq += 1;
                // A lost announcement is what the 3-period timeout is for; a group that
                // stays unusable shows in the other directions' errors.
                if self.sock.send(&buf[..n]).is_ok() {
                    self.ha.announcements.fetch_add(1, Ordering::Relaxed);
                }
                next = now + self.period;
            }
            thread::sleep(tick);
        }
        Ok(())
    }
}

/// The end-of-run report of `canmc bridge`: per-direction counters, as text or JSON.
#[derive(Debug, Clone)]
pub struct BridgeSummary {
    /// The CAN interface.
    pub iface: String,
    /// Wire format sent.
    pub wire: WireFormat,
    /// How long the bridge ran.
    pub elapsed: Duration,
    /// The totals.
    pub stats: BridgeStats,
    /// The group side received with UDP GRO.
    pub gro: bool,
    /// The bus election at the end (`--bus` only).
    pub ha: Option<HaStatus>,
}

impl BridgeSummary {
    /// One JSON object: `to_group` and `to_can` sections with their counters.
    pub fn to_json(&self) -> String {
        let s = &self.stats;
        let g = &s.group;
        let decode: serde_json::Map<String, serde_json::Value> = crate::wire::DecodeError::ALL
            .iter()
            .map(|k| (k.name().to_string(), g.decode_error(*k).into()))
            .filter(|(_, v)| v != &serde_json::Value::from(0u64))
            .collect();
        let mut v = serde_json::json!({
            "command": "bridge",
            "iface": self.iface,
            "wire": match self.wire { WireFormat::Pycan => "pycan", WireFormat::Native => "native" },
            "elapsed_s": self.elapsed.as_secs_f64(),
            "to_group": {
                "can_received": s.can_received,
                "frames": s.to_group,
                "datagrams": s.datagrams_sent,
                "own_echoes": s.own_echoes,
                "filtered": s.to_group_filtered,
                "rejected": s.to_group_rejected,
                "kernel_drops": s.can_kernel_drops,
                "standby": s.to_group_standby,
            },
            "to_can": {
                "datagrams": g.datagrams,
                "frames_received": g.frames,
                "frames": s.to_can,
                "own_datagrams": g.filtered,
                "filtered": s.to_can_filtered,
                "error_frames": s.to_can_error_frames,
                "rejected": s.to_can_rejected,
                "dropped": s.to_can_dropped,
                "standby": s.to_can_standby,
                "decode_errors": g.decode_errors_total(),
                "decode_errors_by_kind": decode,
                "kernel_drops": g.kernel_drops,
                "seq_gaps": g.seq_gaps,
                "gro": self.gro,
                "coalesced": g.coalesced,
            },
        });
        if let (Some(h), Some(o)) = (&self.ha, v.as_object_mut()) {
            o.insert(
                "bus".into(),
                serde_json::json!({
                    "name": h.bus.as_str(),
                    "state": h.state.name(),
                    "id": format!("{:08x}", h.id),
                    "peers": h.peers,
                    "takeovers": h.takeovers,
                    "stepdowns": h.stepdowns,
                    "last_takeover_gap_ms": h.last_takeover_gap_ms,
                    "announcements": h.announcements,
                    "other_buses": h.other_buses,
                }),
            );
        }
        v.to_string()
    }

    /// A few lines for people.
    pub fn to_text(&self) -> String {
        let s = &self.stats;
        let g = &s.group;
        let mut text = format!(
            "canmc bridge {iface}: {secs:.3} s\n  \
             {iface} -> group: {tg} frames in {dg} datagrams ({rx} read, {own} own echoes, \
             {tf} filtered, {tr} rejected, {kd} kernel drops)\n  \
             group -> {iface}: {tc} frames written ({gf} decoded from {gd} datagrams, \
             {od} own datagrams, {cf} filtered, {ef} error frames kept off the bus, \
             {cr} rejected, {cd} dropped, {de} decode errors, {gk} kernel drops{gro})",
            iface = self.iface,
            gro = if self.gro {
                format!(", GRO on: {} coalesced receives", g.coalesced)
            } else {
                String::new()
            },
            secs = self.elapsed.as_secs_f64(),
            tg = s.to_group,
            dg = s.datagrams_sent,
            rx = s.can_received,
            own = s.own_echoes,
            tf = s.to_group_filtered,
            tr = s.to_group_rejected,
            kd = s.can_kernel_drops,
            tc = s.to_can,
            gf = g.frames,
            gd = g.datagrams,
            od = g.filtered,
            cf = s.to_can_filtered,
            ef = s.to_can_error_frames,
            cr = s.to_can_rejected,
            cd = s.to_can_dropped,
            de = g.decode_errors_total(),
            gk = g.kernel_drops,
        );
        if let Some(h) = &self.ha {
            text.push_str(&format!(
                "\n  bus {bus}: {state} at the end ({peers} other bridges heard, {to} takeovers, \
                 {sd} step-downs{gap}); standby: {sg} frames not sent to the group, {sc} not \
                 written to {iface}",
                bus = h.bus,
                state = h.state.name(),
                peers = h.peers,
                to = h.takeovers,
                sd = h.stepdowns,
                gap = h
                    .last_takeover_gap_ms
                    .map(|g| format!(", last takeover {g:.0} ms after the active one's last word"))
                    .unwrap_or_default(),
                sg = s.to_group_standby,
                sc = s.to_can_standby,
                iface = self.iface,
            ));
        }
        text
    }
}
