//! A blocking bus handle for applications: open a group, `send` frames, `recv` frames
//! with a timeout. The simplest way to embed canmc; for many consumers or pinned
//! threads use [`crate::engine`].
//!
//! ```no_run
//! use std::time::Duration;
//! use canmc::bus::{Bus, BusConfig};
//! use canmc::socket::McastConfig;
//! use canmc::CanFrame;
//!
//! # fn main() -> Result<(), Box<dyn std::error::Error>> {
//! // IPv4 multicast that never leaves this host (TTL 0 on lo).
//! let mut bus = Bus::open(&BusConfig::new(McastConfig::loopback_v4(43113)))?;
//! bus.send(&"123#DEADBEEF".parse::<CanFrame>()?)?;
//! if let Some(frame) = bus.recv(Duration::from_millis(100))? {
//!     println!("{frame} from {:?}", frame.sender);
//! }
//! # Ok(())
//! # }
//! ```

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use crate::engine::{Accounting, Deliver, Refused, SenderFilter, Stats};
use crate::event::Event;
use crate::frame::{CanFrame, FrameError};
use crate::recv::{self, DatagramSource, Demux, IoMode, RecvConfig};
use crate::socket::{McastConfig, RecvSocket, SendSocket};
use crate::sys::now_ns;
use crate::wire::{native, pycan};

/// How to open a [`Bus`].
#[derive(Debug, Clone)]
pub struct BusConfig {
    /// Group, port, interface, TTL, loopback, sources.
    pub net: McastConfig,
    /// Receive path.
    pub io: IoMode,
    /// Also receive the frames this bus sends (python-can cannot).
    pub recv_own: bool,
    /// Authenticate with this shared key: receive only native datagrams carrying its
    /// tag (others are counted as `bad_auth`), and send native authenticated datagrams
    /// instead of python-can ones (which cannot carry a tag). `None`: no authentication.
    pub auth_key: Option<native::AuthKey>,
}

impl BusConfig {
    /// Receives from and sends to `net`, on the automatic receive path, without our own
    /// frames and without authentication.
    pub fn new(net: McastConfig) -> Self {
        BusConfig {
            net,
            io: IoMode::Auto,
            recv_own: false,
            auth_key: None,
        }
    }
}

/// Why [`Bus::send`] failed.
#[derive(Debug)]
pub enum SendError {
    /// The frame breaks a rule of SPEC §1; nothing was sent.
    Invalid(FrameError),
    /// The socket refused it.
    Io(io::Error),
}

impl fmt::Display for SendError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            SendError::Invalid(e) => write!(f, "invalid frame: {e}"),
            SendError::Io(e) => write!(f, "send failed: {e}"),
        }
    }
}

impl std::error::Error for SendError {}

impl From<io::Error> for SendError {
    fn from(e: io::Error) -> Self {
        SendError::Io(e)
    }
}

/// What a bus has seen so far.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BusCounters {
    /// Frames sent.
    pub frames_sent: u64,
    /// Datagrams this bus sent and got back, dropped because `recv_own` is off (they
    /// are also in `received.filtered`, with those from senders outside `--source`).
    pub own_dropped: u64,
    /// The receive side, counted as the engine counts ([`Stats`]): `frames` decoded,
    /// `ring_drops` the frames lost because more arrived in one batch than the bus
    /// buffers, `filtered` the datagrams refused for their sender.
    pub received: Stats,
}

/// Frames buffered between `recv` calls; one receive batch is at most this many frames.
const PENDING_CAPACITY: usize = 8192;

/// A blocking send/receive handle on one multicast group.
pub struct Bus {
    tx: SendSocket,
    rx: Box<dyn DatagramSource>,
    acct: Accounting,
    pending: Pending,
    frames_sent: u64,
    own_dropped: u64,
    encode_buf: Box<[u8; pycan::MAX_ENCODED]>,
    keyed: Option<KeyedTx>,
}

/// With a key, frames leave as one-frame authenticated native datagrams.
struct KeyedTx {
    enc: native::Encoder,
    seq: u64,
    buf: Box<[u8]>,
}

impl Bus {
    /// Joins the group and opens a sender. Allocates everything it will need.
    pub fn open(cfg: &BusConfig) -> io::Result<Bus> {
        cfg.net
            .validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let rx_sock = RecvSocket::open(&cfg.net)?;
        let tx = SendSocket::open(&cfg.net)?;
        let (rx, _note) = recv::open_source(rx_sock.into_socket(), cfg.io, &RecvConfig::default())?;
        let own = (!cfg.recv_own).then(|| tx.local_addr());
        Ok(Bus {
            acct: Accounting::new(
                SenderFilter::new(own, &cfg.net.sources),
                Demux::with_key(cfg.auth_key),
                None,
            ),
            tx,
            rx,
            pending: Pending(VecDeque::with_capacity(PENDING_CAPACITY)),
            frames_sent: 0,
            own_dropped: 0,
            encode_buf: Box::new([0u8; pycan::MAX_ENCODED]),
            keyed: cfg.auth_key.map(|key| {
                let enc = native::Encoder::with_key(native::random_sender_id(), 0, Some(key));
                let buf = vec![0u8; enc.max_datagram()].into_boxed_slice();
                KeyedTx { enc, seq: 0, buf }
            }),
        })
    }

    /// Validates and sends one frame in python-can format (or, with a key, as an
    /// authenticated native datagram). A frame that breaks a rule is refused and never
    /// reaches the wire.
    pub fn send(&mut self, frame: &CanFrame) -> Result<(), SendError> {
        frame.validate().map_err(SendError::Invalid)?;
        let mut f = *frame;
        if f.timestamp_ns == 0 {
            f.timestamp_ns = now_ns();
        }
        if let Some(k) = &mut self.keyed {
            k.enc.begin(&mut k.buf, k.seq, f.channel, f.timestamp_ns);
            k.enc.push(&mut k.buf, &f);
            let n = k.enc.finish(&mut k.buf);
            k.seq += 1;
            self.tx.send(&k.buf[..n])?;
        } else {
            let n = pycan::encode(&f, &mut self.encode_buf);
            self.tx.send(&self.encode_buf[..n])?;
        }
        self.frames_sent += 1;
        Ok(())
    }

    /// Waits up to `timeout` for a frame. `Ok(None)` on timeout.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Option<CanFrame>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.pending.0.pop_front() {
                return Ok(Some(f));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let Bus {
                rx,
                acct,
                pending,
                own_dropped,
                ..
            } = self;
            let n = rx.poll(left, &mut |datagram, meta| {
                if acct.on_datagram(datagram, meta, pending) == Err(Refused::Own) {
                    *own_dropped += 1;
                }
            })?;
            if n == 0 {
                // Idle: drops at the end of a burst came with no datagram; ask the socket.
                acct.note_socket_drops(rx.as_ref(), pending);
            }
            if self.pending.0.is_empty() && Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> BusCounters {
        BusCounters {
            frames_sent: self.frames_sent,
            own_dropped: self.own_dropped,
            received: self.acct.stats,
        }
    }

    /// The receive path in use.
    pub fn io_mode(&self) -> IoMode {
        self.rx.mode()
    }

    /// Whether receiving uses UDP GRO.
    pub fn gro(&self) -> bool {
        self.rx.gro()
    }

    /// The address this bus's frames come from.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.tx.local_addr()
    }
}

impl fmt::Debug for Bus {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Bus")
            .field("local_addr", &self.tx.local_addr())
            .field("io", &self.rx.mode())
            .field("counters", &self.counters())
            .finish_non_exhaustive()
    }
}

/// Frames waiting for `recv`; loss and drop events are only counted.
struct Pending(VecDeque<CanFrame>);

impl Deliver for Pending {
    #[inline]
    fn frame(&mut self, frame: CanFrame, stats: &mut Stats) {
        if self.0.len() < PENDING_CAPACITY {
            self.0.push_back(frame);
        } else {
            stats.ring_drops += 1;
        }
    }

    fn control(&mut self, _: Event) {}
}
