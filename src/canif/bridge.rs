//! The bridge between one CAN interface and the multicast group, both ways, without
//! loops: frames this bridge wrote onto the bus come back to it flagged as its own
//! (`MSG_CONFIRM`) and are not sent to the group; its own datagrams come back through
//! multicast loopback from its own address and are not written to the bus.
//!
//! Two threads: `canmc-can-rx` (bus → group: [`CanReceiver`] → [`FrameSender`]) and the
//! engine's receive thread (group → bus: [`Engine`] → inline consumer → [`CanSender`]).
//! Both write to one socket (a duplicated descriptor), which is what makes the kernel
//! flag the bridge's writes as its own on the receiving side.

use std::io;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::Arc;
use std::thread::{self, JoinHandle};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::rx::CanReceiver;
use super::socket::{CanSocket, CanSocketConfig, CAN_ERR_MASK};
use super::tx::CanSender;
use super::CanIfError;
use crate::engine::{Engine, EngineConfig, Event, InlineConsumer, InlineEngine, Stats};
use crate::filter::FilterSet;
use crate::frame::Channel;
use crate::recv::{open_source, IoMode, RecvConfig};
use crate::send::FrameSender;
use crate::socket::{McastConfig, RecvSocket, SendSocket};
use crate::wire::native::AuthKey;
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
}

/// Counters of the group → bus direction (besides the engine's).
#[derive(Debug, Default)]
struct ToCanCounters {
    written: AtomicU64,
    filtered: AtomicU64,
    error_frames: AtomicU64,
    rejected: AtomicU64,
    dropped: AtomicU64,
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
            };
            can_thread = Some(
                thread::Builder::new()
                    .name("canmc-can-rx".into())
                    .spawn(move || job.run())
                    .map_err(group_err)?,
            );
        }

        // Group → bus.
        let mut engine = None;
        let mut engine_counters = None;
        let mut io_note = None;
        if let Some(writer) = writer {
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
            let consumer = ToCan {
                tx: CanSender::new(writer, cfg.batch).map_err(group_err)?,
                filters: cfg.filters.clone(),
                counters: Arc::clone(&to_can),
            };
            let e = Engine::start_inline(source, ecfg, consumer).map_err(group_err)?;
            engine_counters = Some(e.engine().counters());
            engine = Some(e);
        }
        Ok(Bridge {
            stop,
            can_thread,
            engine,
            engine_counters,
            to_group,
            to_can,
            io_note,
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
        }
    }

    /// True when a direction's thread has ended (an error, or after [`stop`]).
    ///
    /// [`stop`]: Bridge::stop
    pub fn is_finished(&self) -> bool {
        self.can_thread.as_ref().is_some_and(|t| t.is_finished())
            || self.engine.as_ref().is_some_and(|e| e.is_finished())
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
                let r = c.tx.flush();
                c.publish();
                if let (Err(e), None) = (r, &first_err) {
                    first_err = Some(e);
                }
            }
            if let (Err(e), None) = (res, &first_err) {
                first_err = Some(e);
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
}

impl ToGroup {
    fn run(mut self) -> io::Result<()> {
        let mut received = 0u64;
        let mut own = 0u64;
        let mut filtered = 0u64;
        let mut drops = 0u32;
        let mut send_err = None;
        while !self.stop.load(Ordering::Relaxed) {
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
            let n = self.rx.recv_batch(&mut |frame, meta| {
                received += 1;
                drops = drops.max(meta.kernel_drops);
                if meta.own {
                    own += 1;
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
    tx: CanSender,
    filters: FilterSet,
    counters: Arc<ToCanCounters>,
}

impl ToCan {
    fn publish(&self) {
        let c = &self.counters;
        c.written.store(self.tx.sent(), Ordering::Relaxed);
        c.rejected.store(self.tx.rejected(), Ordering::Relaxed);
        c.dropped.store(self.tx.dropped(), Ordering::Relaxed);
    }
}

impl InlineConsumer for ToCan {
    fn on_event(&mut self, event: &Event) -> bool {
        let Event::Frame(frame) = event else {
            return true;
        };
        if frame.is_error() {
            self.counters.error_frames.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        if !self.filters.matches(frame) {
            self.counters.filtered.fetch_add(1, Ordering::Relaxed);
            return true;
        }
        // An interface that fails (went down) ends the bridge; the error is kept in the
        // sender's dropped count and reported by `join` through the flush.
        self.tx.push(frame).is_ok()
    }

    fn on_batch_end(&mut self) {
        let _ = self.tx.flush();
        self.publish();
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
        serde_json::json!({
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
                "decode_errors": g.decode_errors_total(),
                "decode_errors_by_kind": decode,
                "kernel_drops": g.kernel_drops,
                "seq_gaps": g.seq_gaps,
                "gro": self.gro,
                "coalesced": g.coalesced,
            },
        })
        .to_string()
    }

    /// A few lines for people.
    pub fn to_text(&self) -> String {
        let s = &self.stats;
        let g = &s.group;
        format!(
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
        )
    }
}
