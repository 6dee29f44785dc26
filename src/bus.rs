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

use std::collections::VecDeque;
use std::fmt;
use std::io;
use std::time::{Duration, Instant};

use crate::frame::{CanFrame, FrameError, SenderAddr};
use crate::recv::{self, DatagramSource, Demux, IoMode, RecvConfig};
use crate::seq::SeqEvent;
use crate::socket::{McastConfig, RecvSocket, SendSocket};
use crate::wire::{native, pycan, DecodeError};

/// How to open a [`Bus`].
#[derive(Clone)]
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

impl fmt::Debug for BusConfig {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // The key never goes into logs.
        f.debug_struct("BusConfig")
            .field("net", &self.net)
            .field("io", &self.io)
            .field("recv_own", &self.recv_own)
            .field("auth_key", &self.auth_key.map(|_| "<key>"))
            .finish()
    }
}

impl BusConfig {
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
    pub frames_sent: u64,
    pub frames_received: u64,
    pub datagrams_received: u64,
    /// Datagrams this bus sent and got back, dropped because `recv_own` is off.
    pub own_dropped: u64,
    /// Datagrams from senders outside `--source`.
    pub foreign_dropped: u64,
    /// Frames lost because more arrived in one batch than the bus buffers.
    pub overflow_dropped: u64,
    pub decode_errors: [u64; DecodeError::COUNT],
    /// The kernel's drop counter for the receive socket.
    pub kernel_drops: u64,
    /// Native datagrams missing from their senders' sequences (net of late arrivals).
    pub seq_gaps: u64,
    /// Native datagrams received twice (their frames were delivered once).
    pub duplicates: u64,
}

/// Frames buffered between `recv` calls; one receive batch is at most this many frames.
const PENDING_CAPACITY: usize = 8192;

/// A blocking send/receive handle on one multicast group.
pub struct Bus {
    tx: SendSocket,
    rx: Box<dyn DatagramSource>,
    own: SenderAddr,
    recv_own: bool,
    sources: Vec<std::net::IpAddr>,
    pending: VecDeque<CanFrame>,
    demux: Demux,
    counters: BusCounters,
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
        Ok(Bus {
            own: SenderAddr::from(tx.local_addr()),
            tx,
            rx,
            recv_own: cfg.recv_own,
            sources: cfg.net.sources.clone(),
            pending: VecDeque::with_capacity(PENDING_CAPACITY),
            demux: Demux::with_key(cfg.auth_key),
            counters: BusCounters::default(),
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
        self.counters.frames_sent += 1;
        Ok(())
    }

    /// Waits up to `timeout` for a frame. `Ok(None)` on timeout.
    pub fn recv(&mut self, timeout: Duration) -> io::Result<Option<CanFrame>> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(f) = self.pending.pop_front() {
                return Ok(Some(f));
            }
            let left = deadline.saturating_duration_since(Instant::now());
            let Bus {
                rx,
                pending,
                demux,
                counters,
                own,
                recv_own,
                sources,
                ..
            } = self;
            rx.poll(left, &mut |datagram, meta| {
                counters.datagrams_received += 1;
                counters.kernel_drops = meta.kernel_drops as u64;
                if !*recv_own && meta.sender == *own {
                    counters.own_dropped += 1;
                    return;
                }
                if !sources.is_empty()
                    && !meta
                        .sender
                        .get()
                        .is_some_and(|sa| sources.contains(&sa.ip()))
                {
                    counters.foreign_dropped += 1;
                    return;
                }
                let out = demux.decode(datagram, meta, |frame| {
                    if pending.len() < PENDING_CAPACITY {
                        pending.push_back(frame);
                        counters.frames_received += 1;
                    } else {
                        counters.overflow_dropped += 1;
                    }
                });
                if let Some(kind) = out.error {
                    counters.decode_errors[kind as usize] += out.error_count();
                }
                match out.seq {
                    Some(SeqEvent::Gap { lost }) => counters.seq_gaps += lost,
                    Some(SeqEvent::Late) => counters.seq_gaps = counters.seq_gaps.saturating_sub(1),
                    Some(SeqEvent::Duplicate) => counters.duplicates += 1,
                    _ => {}
                }
            })?;
            if self.pending.is_empty() && Instant::now() >= deadline {
                return Ok(None);
            }
        }
    }

    /// Counters so far.
    pub fn counters(&self) -> BusCounters {
        self.counters
    }

    /// The receive path in use.
    pub fn io_mode(&self) -> IoMode {
        self.rx.mode()
    }

    /// The address this bus's frames come from.
    pub fn local_addr(&self) -> std::net::SocketAddr {
        self.tx.local_addr()
    }
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}
