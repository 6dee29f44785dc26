//! `canmc._canmc`: the Rust half of the `canmc` Python package.
//!
//! The Python modules (`canmc/bus.py`, `canmc/io.py`, `canmc/__init__.py`) put
//! python-can's shapes on these:
//!
//! - [`NativeBus`]: one multicast group, received by canmc's engine (its receive thread
//!   and SPSC ring), ID filters applied on the ring's consumer side before any Python
//!   object exists, `can.Message`s built here; sending through a [`FrameSender`].
//! - [`read_columns`]: a capture file into numpy arrays (one pass, each column written
//!   once; Python wraps them into a pyarrow Table without copying).
//! - [`FrameReader`] / [`FileWriter`]: frame-at-a-time access to every format canmc reads
//!   and writes, for python-can's `LogReader` / `Logger` plugins.
//! - [`record`], [`replay`], [`info`]: the CLI's commands as functions.
//!
//! Every blocking call releases the GIL (`py.detach`) and waits in steps of at most
//! [`SIGNAL_STEP`], checking for signals in between, so Ctrl-C raises
//! `KeyboardInterrupt` at once. Errors become Python exceptions naming the problem;
//! PyO3 turns a Rust panic into a Python exception at the boundary, and no code here
//! panics on input.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{self, Receiver, RecvTimeoutError, SyncSender};
use std::sync::{Arc, Mutex, MutexGuard};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use canmc::convert::{self, ConvertError, FileFormat, FrameWriter, ReadOptions, WriterOptions};
use canmc::engine::{ConsumerHandle, PingIdentity};
use canmc::engine::{Counters, Dispatch, Engine, EngineConfig, Event, InlineConsumer};
use canmc::frame::flags;
use canmc::record::{End, Record, RecordError, Recording};
use canmc::recv::{self, IoMode, RecvConfig};
use canmc::send::FrameSender;
use canmc::socket::{McastConfig, RecvSocket, SendSocket};
use canmc::summary::Summary;
use canmc::wire::native::{self, Role};
use canmc::{CanFrame, Channel, ChannelRef, DecodeError, Direction, WireFormat};
use numpy::IntoPyArray;
use pyo3::create_exception;
use pyo3::exceptions::{PyException, PyFileNotFoundError, PyOSError, PyValueError};
use pyo3::prelude::*;
use pyo3::types::{PyByteArray, PyBytes, PyDict, PyList};

create_exception!(
    _canmc,
    CanmcError,
    PyException,
    "Base class of canmc's errors."
);
create_exception!(
    _canmc,
    IncompleteError,
    CanmcError,
    "A capture could not be read to its end (a corrupt record, a file that shrank); \
     everything before the damage was read."
);

/// Longest a blocking call waits with the GIL released before it looks for signals.
const SIGNAL_STEP: Duration = Duration::from_millis(20);

// ---------------------------------------------------------------------------------
// Errors

fn io_error(what: &str, e: std::io::Error) -> PyErr {
    let msg = format!("{what}: {e}");
    match e.kind() {
        std::io::ErrorKind::NotFound => PyFileNotFoundError::new_err(msg),
        std::io::ErrorKind::InvalidInput | std::io::ErrorKind::InvalidData => {
            PyValueError::new_err(msg)
        }
        _ => match e.raw_os_error() {
            Some(code) => PyOSError::new_err((code, msg)),
            None => PyOSError::new_err(msg),
        },
    }
}

fn convert_error(e: ConvertError) -> PyErr {
    let msg = e.to_string();
    match e {
        ConvertError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound => {
            PyFileNotFoundError::new_err(msg)
        }
        ConvertError::Io { .. } => PyOSError::new_err(msg),
        ConvertError::Record(RecordError::Io { source, .. })
            if source.kind() == std::io::ErrorKind::NotFound =>
        {
            PyFileNotFoundError::new_err(msg)
        }
        ConvertError::Record(RecordError::Io { .. } | RecordError::Map { .. }) => {
            PyOSError::new_err(msg)
        }
        ConvertError::Incomplete { .. } => IncompleteError::new_err(msg),
        _ => PyValueError::new_err(msg),
    }
}

fn format_of(path: &Path) -> PyResult<FileFormat> {
    FileFormat::from_path(path).map_err(convert_error)
}

fn must_exist(path: &Path) -> PyResult<()> {
    if path.exists() {
        Ok(())
    } else {
        Err(PyFileNotFoundError::new_err(format!(
            "{}: no such file",
            path.display()
        )))
    }
}

fn parse_io(io: &str) -> PyResult<IoMode> {
    match io {
        "auto" => Ok(IoMode::Auto),
        "uring" => Ok(IoMode::Uring),
        "mmsg" => Ok(IoMode::Mmsg),
        _ => Err(PyValueError::new_err(format!(
            "io={io:?}: use \"auto\", \"uring\" or \"mmsg\""
        ))),
    }
}

fn io_name(m: IoMode) -> &'static str {
    match m {
        IoMode::Auto => "auto",
        IoMode::Uring => "uring",
        IoMode::Mmsg => "mmsg",
    }
}

fn parse_wire(wire: &str) -> PyResult<WireFormat> {
    match wire {
        "pycan" => Ok(WireFormat::Pycan),
        "native" => Ok(WireFormat::Native),
        _ => Err(PyValueError::new_err(format!(
            "wire={wire:?}: use \"pycan\" (python-can's udp_multicast format) or \"native\""
        ))),
    }
}

fn read_key(key_file: Option<PathBuf>) -> PyResult<Option<native::AuthKey>> {
    key_file
        .map(|p| {
            native::read_key_file(&p).map_err(|e| match e {
                native::KeyFileError::Read { source, .. } => io_error("key file", source),
                other => PyValueError::new_err(other.to_string()),
            })
        })
        .transpose()
}

/// The group configuration, checked (multicast group, families, TTL).
fn net_config(
    channel: &str,
    port: u16,
    iface: Option<String>,
    hop_limit: u32,
    sources: Vec<String>,
) -> PyResult<McastConfig> {
    let group: IpAddr = channel.trim().parse().map_err(|_| {
        PyValueError::new_err(format!(
            "channel {channel:?} is not an IP address; canmc's channel is a multicast \
             group (IPv4 224.0.0.0/4, e.g. 239.74.163.2, or IPv6 ff00::/8)"
        ))
    })?;
    let mut cfg = McastConfig::new(group, port);
    cfg.iface = iface;
    cfg.ttl = hop_limit;
    for s in sources {
        let ip: IpAddr = s
            .trim()
            .parse()
            .map_err(|_| PyValueError::new_err(format!("source {s:?} is not an IP address")))?;
        cfg.sources.push(ip);
    }
    cfg.validate()
        .map_err(|e| PyValueError::new_err(e.to_string()))?;
    Ok(cfg)
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

// ---------------------------------------------------------------------------------
// Frames <-> can.Message

/// One python-can filter: `(can_id ^ id) & can_mask == 0`, and the IDE bit when given.
#[derive(Debug, Clone, Copy)]
struct IdMask {
    id: u32,
    mask: u32,
    extended: Option<bool>,
}

impl IdMask {
    fn matches(&self, f: &CanFrame) -> bool {
        if self.extended.is_some_and(|e| e != f.is_extended()) {
            return false;
        }
        (self.id ^ f.id) & self.mask == 0
    }
}

fn passes(filters: &[IdMask], f: &CanFrame) -> bool {
    filters.is_empty() || filters.iter().any(|m| m.matches(f))
}

fn channel_object(py: Python<'_>, ch: &Channel) -> PyResult<Py<PyAny>> {
    Ok(match ch.get() {
        ChannelRef::None => py.None(),
        ChannelRef::Int(i) => i.into_pyobject(py)?.into_any().unbind(),
        ChannelRef::Str(s) => s.into_pyobject(py)?.into_any().unbind(),
    })
}

/// python-can's `dlc` is the payload length in bytes (CAN FD included); a classic frame's
/// raw DLC 9–15 is kept.
fn message_dlc(f: &CanFrame) -> u8 {
    if f.is_fd() {
        f.len
    } else {
        f.dlc()
    }
}

/// Builds `can.Message(...)` for a frame, with positional arguments (the fastest call).
fn to_message<'py>(
    py: Python<'py>,
    cls: &Bound<'py, PyAny>,
    f: &CanFrame,
    is_rx: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let data = PyByteArray::new(py, f.payload());
    let args = (
        f.timestamp_ns as f64 / 1e9,
        f.id,
        f.is_extended(),
        f.is_remote(),
        f.is_error(),
        channel_object(py, &f.channel)?,
        message_dlc(f),
        data,
        f.is_fd(),
        is_rx,
        f.brs(),
        f.esi(),
    );
    cls.call1(args)
}

fn attr<'py, T: FromPyObjectOwned<'py>>(msg: &Bound<'py, PyAny>, name: &str) -> PyResult<T> {
    msg.getattr(name)?.extract::<T>().map_err(Into::into)
}

/// A message's `data` (bytearray, bytes, a sequence of ints, or None) as bytes.
fn message_data(d: &Bound<'_, PyAny>) -> PyResult<Vec<u8>> {
    if d.is_none() {
        return Ok(Vec::new());
    }
    if let Ok(b) = d.cast::<PyByteArray>() {
        return Ok(b.to_vec());
    }
    if let Ok(b) = d.cast::<PyBytes>() {
        return Ok(b.as_bytes().to_vec());
    }
    d.extract::<Vec<u8>>().map_err(|_| {
        PyValueError::new_err("message data must be bytes, a bytearray or a list of ints 0-255")
    })
}

/// A `can.Message` (or anything with its attributes) as a validated frame. With
/// `stamp_now`, a message without a timestamp (0, python-can's default) gets the
/// current time (for sending); a file writer keeps it.
fn from_message(
    msg: &Bound<'_, PyAny>,
    default_channel: Option<&Channel>,
    stamp_now: bool,
) -> PyResult<CanFrame> {
    let id: u32 = attr(msg, "arbitration_id")?;
    let mut fl = 0u8;
    for (name, bit) in [
        ("is_extended_id", flags::EXTENDED),
        ("is_remote_frame", flags::RTR),
        ("is_error_frame", flags::ERROR),
        ("is_fd", flags::FD),
        ("bitrate_switch", flags::BRS),
        ("error_state_indicator", flags::ESI),
    ] {
        if attr::<bool>(msg, name)? {
            fl |= bit;
        }
    }
    let dlc: Option<usize> = attr(msg, "dlc")?;
    let mut frame = if fl & flags::RTR != 0 {
        let len = dlc.unwrap_or(0);
        let len = u8::try_from(len)
            .map_err(|_| PyValueError::new_err(format!("remote frame dlc {len} is above 8")))?;
        CanFrame::remote(id, fl & flags::EXTENDED != 0, len)
    } else {
        let data = message_data(&msg.getattr("data")?)?;
        let mut f = CanFrame::new(id, fl, &data);
        if let (Ok(frame), Some(d)) = (&mut f, dlc) {
            // A classic frame may say DLC 9–15 with 8 data bytes.
            if fl & flags::FD == 0 && data.len() == 8 && (9..=15).contains(&d) {
                frame.raw_dlc = d as u8;
            }
        }
        f
    }
    .map_err(|e| PyValueError::new_err(format!("cannot send this message: {e}")))?;
    let ts: f64 = attr(msg, "timestamp").unwrap_or(0.0);
    frame.timestamp_ns = if ts.is_finite() && ts > 0.0 {
        (ts * 1e9).round() as u64
    } else if stamp_now {
        now_ns()
    } else {
        0
    };
    if !attr::<bool>(msg, "is_rx").unwrap_or(true) {
        frame.set_direction(Direction::Tx);
    }
    let ch = msg.getattr("channel")?;
    frame.channel = if ch.is_none() {
        default_channel.copied().unwrap_or(Channel::NONE)
    } else if let Ok(i) = ch.extract::<i64>() {
        Channel::int(i)
    } else if let Ok(s) = ch.extract::<String>() {
        Channel::str(&s)
            .map_err(|e| PyValueError::new_err(format!("channel {s:?} cannot be carried: {e}")))?
    } else {
        return Err(PyValueError::new_err(
            "message channel must be None, an int or a str",
        ));
    };
    Ok(frame)
}

// ---------------------------------------------------------------------------------
// The bus

struct RxSide {
    consumer: ConsumerHandle,
    filters: Vec<IdMask>,
    /// `fd=False`: CAN FD frames are ignored, as python-can's udp_multicast does.
    accept_fd: bool,
    /// Events taken from the ring in one go; `batch[next..filled]` are still unread.
    batch: Box<[Event]>,
    next: usize,
    filled: usize,
}

impl RxSide {
    /// The next frame that passes the filters, waiting at most `step`.
    fn next_frame(&mut self, step: Duration, id_filtered: &AtomicU64) -> Option<CanFrame> {
        let deadline = Instant::now() + step;
        loop {
            while self.next < self.filled {
                let ev = self.batch[self.next];
                self.next += 1;
                if let Event::Frame(f) = ev {
                    if passes(&self.filters, &f) && (self.accept_fd || !f.is_fd()) {
                        return Some(f);
                    }
                    id_filtered.fetch_add(1, Ordering::Relaxed);
                }
            }
            let n = self.consumer.pop_batch(&mut self.batch);
            if n > 0 {
                self.next = 0;
                self.filled = n;
                continue;
            }
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() || !self.consumer.wait(left) {
                return None;
            }
        }
    }
}

struct TxSide {
    sender: FrameSender,
    default_channel: Option<Channel>,
}

/// One multicast group through canmc's engine. Used by `canmc.bus.CanmcBus`.
#[pyclass(module = "canmc._canmc", frozen)]
struct NativeBus {
    rx: Mutex<Option<RxSide>>,
    tx: Mutex<Option<TxSide>>,
    engine: Mutex<Option<Engine>>,
    counters: Arc<Counters>,
    closed: AtomicBool,
    id_filtered: AtomicU64,
    frames_sent: AtomicU64,
    message_cls: Py<PyAny>,
    io_mode: IoMode,
    local_addr: std::net::SocketAddr,
    fd: bool,
    note: Option<String>,
}

const BATCH: usize = 256;

#[pymethods]
impl NativeBus {
    /// Joins `channel` (a multicast group) and starts the engine.
    #[new]
    #[pyo3(signature = (message_cls, channel, port=43113, iface=None, hop_limit=1,
                        fd=true, receive_own_messages=false, wire="pycan", key_file=None,
                        sources=Vec::new(), io="auto", ring_capacity=1<<16, loopback=true))]
    #[allow(clippy::too_many_arguments)]
    fn new(
        py: Python<'_>,
        message_cls: Py<PyAny>,
        channel: &str,
        port: u16,
        iface: Option<String>,
        hop_limit: u32,
        fd: bool,
        receive_own_messages: bool,
        wire: &str,
        key_file: Option<PathBuf>,
        sources: Vec<String>,
        io: &str,
        ring_capacity: usize,
        loopback: bool,
    ) -> PyResult<NativeBus> {
        let mut cfg = net_config(channel, port, iface, hop_limit, sources)?;
        cfg.loopback = loopback;
        let io = parse_io(io)?;
        let format = parse_wire(wire)?;
        let key = read_key(key_file)?;
        if ring_capacity == 0 {
            return Err(PyValueError::new_err("ring_capacity must be at least 1"));
        }
        py.detach(move || -> PyResult<NativeBus> {
            let rx_sock =
                RecvSocket::open(&cfg).map_err(|e| io_error("cannot join the group", e))?;
            let tx_sock =
                SendSocket::open(&cfg).map_err(|e| io_error("cannot open a sender", e))?;
            let local_addr = tx_sock.local_addr();
            let (source, note) =
                recv::open_source(rx_sock.into_socket(), io, &RecvConfig::default())
                    .map_err(|e| io_error("cannot start receiving", e))?;
            let config = EngineConfig {
                consumers: 1,
                ring_capacity,
                dispatch: Dispatch::All,
                drop_from: (!receive_own_messages).then_some(local_addr),
                accept_only: cfg.sources.clone(),
                poll_timeout: Duration::from_millis(50),
                answer_pings: Some(PingIdentity::this_process(Role::App)),
                coalesce: None,
                auth_key: key,
            };
            let (engine, mut consumers) = Engine::start(source, config)
                .map_err(|e| io_error("cannot start the engine", e))?;
            let io_mode = engine.io_mode();
            let counters = engine.counters();
            let consumer = consumers.remove(0);
            let sender =
                FrameSender::new(tx_sock, format, native::DEFAULT_MAX_DATAGRAM, 0).with_key(key);
            let rx = RxSide {
                consumer,
                filters: Vec::new(),
                accept_fd: fd,
                batch: vec![Event::default(); BATCH].into_boxed_slice(),
                next: 0,
                filled: 0,
            };
            Ok(NativeBus {
                rx: Mutex::new(Some(rx)),
                tx: Mutex::new(Some(TxSide {
                    sender,
                    default_channel: None,
                })),
                engine: Mutex::new(Some(engine)),
                counters,
                closed: AtomicBool::new(false),
                id_filtered: AtomicU64::new(0),
                frames_sent: AtomicU64::new(0),
                message_cls: Python::attach(|py| message_cls.clone_ref(py)),
                io_mode,
                local_addr,
                fd,
                note,
            })
        })
    }

    /// The next message passing the filters, or None after `timeout` seconds (None:
    /// wait for ever). Releases the GIL while waiting; Ctrl-C raises KeyboardInterrupt.
    #[pyo3(signature = (timeout=None))]
    fn recv<'py>(
        &self,
        py: Python<'py>,
        timeout: Option<f64>,
    ) -> PyResult<Option<Bound<'py, PyAny>>> {
        let deadline = match timeout {
            Some(t) if t.is_nan() => {
                return Err(PyValueError::new_err("timeout must be a number of seconds"))
            }
            Some(t) => Some(Instant::now() + Duration::from_secs_f64(t.clamp(0.0, 1e9))),
            None => None,
        };
        let cls = self.message_cls.bind(py);
        loop {
            // Fast path: a frame already waiting needs no GIL release.
            let quick = {
                let mut g = lock(&self.rx);
                let Some(rx) = g.as_mut() else {
                    return Err(PyOSError::new_err("the bus has been shut down"));
                };
                rx.next_frame(Duration::ZERO, &self.id_filtered)
            };
            let frame = match quick {
                Some(f) => Some(f),
                None => {
                    let step = match deadline {
                        Some(d) => d.saturating_duration_since(Instant::now()).min(SIGNAL_STEP),
                        None => SIGNAL_STEP,
                    };
                    if step.is_zero() {
                        return Ok(None);
                    }
                    py.detach(|| {
                        let mut g = lock(&self.rx);
                        g.as_mut()
                            .and_then(|rx| rx.next_frame(step, &self.id_filtered))
                    })
                }
            };
            if let Some(f) = frame {
                let is_rx = f.sender.get() != Some(self.local_addr);
                return to_message(py, cls, &f, is_rx).map(Some);
            }
            py.check_signals()?;
            if self.closed.load(Ordering::Relaxed) {
                return Err(PyOSError::new_err("the bus has been shut down"));
            }
            if deadline.is_some_and(|d| Instant::now() >= d) {
                return Ok(None);
            }
        }
    }

    /// Sends one message (a `can.Message`). Raises ValueError for a message that is
    /// not a valid frame, OSError when the socket refuses it.
    fn send(&self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> PyResult<()> {
        let frame = {
            let g = lock(&self.tx);
            let Some(tx) = g.as_ref() else {
                return Err(PyOSError::new_err("the bus has been shut down"));
            };
            from_message(msg, tx.default_channel.as_ref(), true)?
        };
        if frame.is_fd() && !self.fd {
            return Err(PyValueError::new_err(
                "this bus was opened with fd=False and cannot send CAN FD frames",
            ));
        }
        py.detach(|| {
            let mut g = lock(&self.tx);
            let Some(tx) = g.as_mut() else {
                return Err(PyOSError::new_err("the bus has been shut down"));
            };
            let now = now_ns();
            tx.sender
                .send(&frame, now)
                .and_then(|()| tx.sender.flush(now))
                .map_err(|e| io_error("send failed", e))
        })?;
        self.frames_sent.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Replaces the ID filters: a list of `(can_id, can_mask, extended or None)`.
    /// Empty: every frame passes.
    fn set_filters(&self, filters: Vec<(u32, u32, Option<bool>)>) -> PyResult<()> {
        let mut g = lock(&self.rx);
        let Some(rx) = g.as_mut() else {
            return Err(PyOSError::new_err("the bus has been shut down"));
        };
        rx.filters = filters
            .into_iter()
            .map(|(id, mask, extended)| IdMask { id, mask, extended })
            .collect();
        Ok(())
    }

    /// The loss and traffic counters so far, as a dict.
    fn stats<'py>(&self, py: Python<'py>) -> PyResult<Bound<'py, PyDict>> {
        let s = self.counters.snapshot();
        let d = PyDict::new(py);
        // Every engine counter by its key (the list is defined once, in the engine).
        for (k, v) in s.counts() {
            d.set_item(k, v)?;
        }
        d.set_item("decode_errors", s.decode_errors_total())?;
        let kinds = PyDict::new(py);
        for k in DecodeError::ALL {
            kinds.set_item(k.name(), s.decode_error(k))?;
        }
        d.set_item("decode_errors_by_kind", kinds)?;
        d.set_item("id_filtered", self.id_filtered.load(Ordering::Relaxed))?;
        d.set_item("senders", s.senders)?;
        d.set_item("frames_sent", self.frames_sent.load(Ordering::Relaxed))?;
        d.set_item("io", io_name(self.io_mode))?;
        Ok(d)
    }

    /// Why the receive path is not the one asked for (io_uring unavailable), if so.
    #[getter]
    fn note(&self) -> Option<String> {
        self.note.clone()
    }

    /// The address this bus's frames come from, as `(host, port)`.
    #[getter]
    fn local_addr(&self) -> (String, u16) {
        (self.local_addr.ip().to_string(), self.local_addr.port())
    }

    /// Stops the engine and closes the sockets. Idempotent.
    fn shutdown(&self, py: Python<'_>) -> PyResult<()> {
        if self.closed.swap(true, Ordering::SeqCst) {
            return Ok(());
        }
        py.detach(|| {
            let engine = lock(&self.engine).take();
            if let Some(e) = engine {
                e.stop();
                let _ = e.join();
            }
            lock(&self.rx).take();
            lock(&self.tx).take();
        });
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// Files as columns

/// Column buffers for [`read_columns`].
#[derive(Default)]
struct Columns {
    ts: Vec<i64>,
    id: Vec<u32>,
    flags: Vec<u8>,
    dlc: Vec<u8>,
    len: Vec<u8>,
    offsets: Vec<i64>,
    data: Vec<u8>,
    channel: Vec<i32>,
    channels: Vec<Channel>,
    /// The last channel seen and its index (channels rarely change frame to frame).
    last_channel: Option<(Channel, i32)>,
}

impl Columns {
    /// Room for `n` frames and `payload` bytes; a `dlc` column only `with_dlc`.
    fn with_capacity(n: usize, payload: usize, with_dlc: bool) -> Columns {
        let mut c = Columns {
            ts: Vec::with_capacity(n),
            id: Vec::with_capacity(n),
            flags: Vec::with_capacity(n),
            dlc: Vec::with_capacity(if with_dlc { n } else { 0 }),
            len: Vec::with_capacity(n),
            offsets: Vec::with_capacity(n + 1),
            data: Vec::with_capacity(payload),
            channel: Vec::with_capacity(n),
            ..Columns::default()
        };
        c.offsets.push(0);
        c
    }

    #[inline]
    fn channel_index(&mut self, ch: &Channel) -> i32 {
        if let Some((last, i)) = &self.last_channel {
            if last == ch {
                return *i;
            }
        }
        self.new_channel(ch)
    }

    #[cold]
    fn new_channel(&mut self, ch: &Channel) -> i32 {
        let i = match self.channels.iter().position(|c| c == ch) {
            Some(i) => i as i32,
            None => {
                self.channels.push(*ch);
                (self.channels.len() - 1) as i32
            }
        };
        self.last_channel = Some((*ch, i));
        i
    }

    /// One frame; `dlc: None` when it equals `len` for every frame of the file (a
    /// `.cmc`), so the column is not written twice.
    #[inline]
    #[allow(clippy::too_many_arguments)]
    fn push(
        &mut self,
        ts: u64,
        id: u32,
        fl: u8,
        dlc: Option<u8>,
        len: u8,
        payload: &[u8],
        ch: &Channel,
    ) {
        self.ts.push(ts as i64);
        self.id.push(id);
        self.flags.push(fl);
        if let Some(d) = dlc {
            self.dlc.push(d);
        }
        self.len.push(len);
        self.data.extend_from_slice(payload);
        self.offsets.push(self.data.len() as i64);
        let c = self.channel_index(ch);
        self.channel.push(c);
    }
}

/// What selects frames in [`read_columns`].
struct Window {
    start_ns: Option<u64>,
    end_ns: Option<u64>,
    ids: Option<Vec<u32>>,
}

impl Window {
    fn id_ok(&self, id: u32) -> bool {
        self.ids
            .as_ref()
            .is_none_or(|ids| ids.binary_search(&id).is_ok())
    }
}

fn read_cmc(
    path: &Path,
    w: &Window,
    stop: &AtomicBool,
) -> Result<(Columns, Option<String>), ConvertError> {
    let recording = Recording::open(path)?;
    let mut records = match w.start_ns {
        Some(t) => recording.seek(t),
        None => recording.iter(),
    };
    // Room for as many frames as the segments could hold (a frame record takes at least
    // 24 bytes): reserved address space costs nothing until written, and no column is
    // ever copied to grow.
    let bytes: u64 = (0..)
        .map(|n| std::fs::metadata(canmc::record::segment_path(path, n)))
        .take_while(|m| m.is_ok())
        .map(|m| m.map_or(0, |m| m.len()))
        .sum();
    let mut c = Columns::with_capacity((bytes / 24) as usize + 1, bytes as usize, false);
    let mut n = 0u32;
    for r in records.by_ref() {
        let Record::Frame(v) = r else { continue };
        let ts = v.timestamp_ns();
        if w.start_ns.is_some_and(|s| ts < s) {
            continue;
        }
        if w.end_ns.is_some_and(|e| ts > e) {
            break;
        }
        if !w.id_ok(v.id()) {
            continue;
        }
        let fl = v.flags();
        // python-can's dlc is the length in bytes (a .cmc keeps no raw DLC 9-15).
        c.push(ts, v.id(), fl, None, v.len(), v.payload(), v.channel());
        n = n.wrapping_add(1);
        if n % (1 << 20) == 0 && stop.load(Ordering::Relaxed) {
            break;
        }
    }
    let problem = match records.end() {
        Some(End::Truncated { segment }) => Some(format!(
            "{}: the file shrank while it was read (segment {segment}); {} frames before \
             the cut were read",
            path.display(),
            c.id.len()
        )),
        Some(End::Corrupt {
            segment,
            offset,
            reason,
        }) => Some(format!(
            "{}: corrupt record ({}) in segment {segment} at byte {offset}; the {} frames \
             before it were read",
            path.display(),
            reason.describe(),
            c.id.len()
        )),
        _ => None,
    };
    Ok((c, problem))
}

fn read_other(
    path: &Path,
    format: FileFormat,
    w: &Window,
    skip_bad: bool,
) -> Result<(Columns, Option<String>), ConvertError> {
    let mut c = Columns::with_capacity(1024, 8192, true);
    let res = convert::read_events(
        path,
        format,
        ReadOptions {
            skip_bad,
            start_ns: w.start_ns,
        },
        &mut |ev| {
            let Event::Frame(f) = ev else { return true };
            if w.end_ns.is_some_and(|e| f.timestamp_ns > e) {
                return false;
            }
            if w.id_ok(f.id) {
                c.push(
                    f.timestamp_ns,
                    f.id,
                    f.flags,
                    Some(message_dlc(f)),
                    f.len,
                    f.payload(),
                    &f.channel,
                );
            }
            true
        },
    );
    match res {
        Ok(stats) => Ok((c, stats.problem())),
        // A line that does not parse: keep what came before it and say where.
        Err(e @ ConvertError::Parse { .. }) => {
            let msg = format!("{e}; the {} frames before it were read", c.id.len());
            Ok((c, Some(msg)))
        }
        Err(e) => Err(e),
    }
}

/// Reads a capture (any format canmc reads, chosen by extension) into numpy arrays.
///
/// Returns `(columns, channels, problem)`: `columns` a dict of numpy arrays
/// (`timestamp_ns` int64, `id` uint32, `flags` uint8, `dlc` uint8, `len` uint8,
/// `offsets` int64 with n+1 entries into `data` uint8, `channel` int32 indices into
/// `channels`); `problem` says why the file could not be read to its end, if it could
/// not (the columns then hold every frame before the damage).
#[pyfunction]
#[pyo3(signature = (path, start_ns=None, end_ns=None, ids=None, skip_bad=false))]
fn read_columns<'py>(
    py: Python<'py>,
    path: PathBuf,
    start_ns: Option<u64>,
    end_ns: Option<u64>,
    ids: Option<Vec<u32>>,
    skip_bad: bool,
) -> PyResult<(Bound<'py, PyDict>, Bound<'py, PyList>, Option<String>)> {
    let format = format_of(&path)?;
    must_exist(&path)?;
    let window = Window {
        start_ns,
        end_ns,
        ids: ids.map(|mut v| {
            v.sort_unstable();
            v.dedup();
            v
        }),
    };
    let stop = AtomicBool::new(false);
    let (c, problem) = py
        .detach(|| match format {
            FileFormat::Cmc => read_cmc(&path, &window, &stop),
            _ => read_other(&path, format, &window, skip_bad),
        })
        .map_err(convert_error)?;
    let d = PyDict::new(py);
    d.set_item("timestamp_ns", c.ts.into_pyarray(py))?;
    d.set_item("id", c.id.into_pyarray(py))?;
    d.set_item("flags", c.flags.into_pyarray(py))?;
    let len = c.len.into_pyarray(py);
    if c.dlc.is_empty() && len.len()? > 0 {
        // A .cmc: python-can's dlc is the length (the same array, not a copy).
        d.set_item("dlc", &len)?;
    } else {
        d.set_item("dlc", c.dlc.into_pyarray(py))?;
    }
    d.set_item("len", len)?;
    d.set_item("offsets", c.offsets.into_pyarray(py))?;
    d.set_item("data", c.data.into_pyarray(py))?;
    d.set_item("channel", c.channel.into_pyarray(py))?;
    let chans = PyList::empty(py);
    for ch in &c.channels {
        chans.append(channel_object(py, ch)?)?;
    }
    Ok((d, chans, problem))
}

// ---------------------------------------------------------------------------------
// Files frame by frame (python-can LogReader / Logger plugins)

enum Batch {
    Frames(Vec<CanFrame>),
    End(Option<String>),
    Failed(String, bool),
}

/// Iterates the frames of a capture file as `can.Message`s. A thread reads the file
/// (any format canmc reads) and hands over batches; dropping the iterator stops it.
#[pyclass(module = "canmc._canmc")]
struct FrameReader {
    rx: Option<Mutex<Receiver<Batch>>>,
    thread: Option<JoinHandle<()>>,
    stop: Arc<AtomicBool>,
    batch: std::vec::IntoIter<CanFrame>,
    message_cls: Py<PyAny>,
    done: bool,
}

const READ_BATCH: usize = 4096;

fn reader_thread(
    path: PathBuf,
    format: FileFormat,
    skip_bad: bool,
    tx: SyncSender<Batch>,
    stop: Arc<AtomicBool>,
) {
    let mut batch = Vec::with_capacity(READ_BATCH);
    let mut gone = false;
    let res = convert::read_events(
        &path,
        format,
        ReadOptions {
            skip_bad,
            start_ns: None,
        },
        &mut |ev| {
            if let Event::Frame(f) = ev {
                batch.push(*f);
                if batch.len() == READ_BATCH {
                    let full = std::mem::replace(&mut batch, Vec::with_capacity(READ_BATCH));
                    if tx.send(Batch::Frames(full)).is_err() || stop.load(Ordering::Relaxed) {
                        gone = true;
                        return false;
                    }
                }
            }
            true
        },
    );
    if gone {
        return;
    }
    if !batch.is_empty() {
        let _ = tx.send(Batch::Frames(batch));
    }
    let last = match res {
        Ok(stats) => Batch::End(stats.problem().map(|p| format!("{}: {p}", path.display()))),
        Err(e) => {
            let not_found = matches!(&e, ConvertError::Io { source, .. } if source.kind() == std::io::ErrorKind::NotFound);
            Batch::Failed(e.to_string(), not_found)
        }
    };
    let _ = tx.send(last);
}

#[pymethods]
impl FrameReader {
    #[new]
    #[pyo3(signature = (path, message_cls, skip_bad=false))]
    fn new(path: PathBuf, message_cls: Py<PyAny>, skip_bad: bool) -> PyResult<FrameReader> {
        let format = format_of(&path)?;
        must_exist(&path)?;
        if format == FileFormat::Cmc {
            // Fail here, not on the first next(), for a file that is no recording.
            Recording::open(&path).map_err(|e| convert_error(e.into()))?;
        }
        let (tx, rx) = mpsc::sync_channel(4);
        let stop = Arc::new(AtomicBool::new(false));
        let stop2 = Arc::clone(&stop);
        let thread = std::thread::Builder::new()
            .name("canmc-read".into())
            .spawn(move || reader_thread(path, format, skip_bad, tx, stop2))
            .map_err(|e| io_error("cannot start the reader thread", e))?;
        Ok(FrameReader {
            rx: Some(Mutex::new(rx)),
            thread: Some(thread),
            stop,
            batch: Vec::new().into_iter(),
            message_cls,
            done: false,
        })
    }

    fn __iter__(slf: PyRef<'_, Self>) -> PyRef<'_, Self> {
        slf
    }

    fn __next__<'py>(&mut self, py: Python<'py>) -> PyResult<Option<Bound<'py, PyAny>>> {
        loop {
            if let Some(f) = self.batch.next() {
                let is_rx = f.direction() == Direction::Rx;
                return to_message(py, self.message_cls.bind(py), &f, is_rx).map(Some);
            }
            if self.done {
                return Ok(None);
            }
            let Some(rx) = self.rx.as_ref() else {
                return Ok(None);
            };
            let got = py.detach(|| lock(rx).recv_timeout(SIGNAL_STEP));
            match got {
                Ok(Batch::Frames(v)) => self.batch = v.into_iter(),
                Ok(Batch::End(problem)) => {
                    self.finish();
                    if let Some(p) = problem {
                        return Err(IncompleteError::new_err(p));
                    }
                    return Ok(None);
                }
                Ok(Batch::Failed(msg, not_found)) => {
                    self.finish();
                    return Err(if not_found {
                        PyFileNotFoundError::new_err(msg)
                    } else {
                        PyValueError::new_err(msg)
                    });
                }
                Err(RecvTimeoutError::Timeout) => py.check_signals()?,
                Err(RecvTimeoutError::Disconnected) => {
                    self.finish();
                    return Err(CanmcError::new_err(
                        "the reader thread stopped unexpectedly",
                    ));
                }
            }
        }
    }

    /// Stops reading and releases the file.
    fn close(&mut self, py: Python<'_>) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.take();
        if let Some(t) = self.thread.take() {
            py.detach(|| {
                let _ = t.join();
            });
        }
        self.done = true;
    }
}

impl FrameReader {
    fn finish(&mut self) {
        self.done = true;
        self.rx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for FrameReader {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Relaxed);
        self.rx.take();
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// Writes `can.Message`s to a capture file (format by extension: .cmc, .log, .asc,
/// .pcap, .pcapng).
#[pyclass(module = "canmc._canmc", frozen)]
struct FileWriter {
    inner: Mutex<Option<Box<dyn FrameWriter>>>,
    path: PathBuf,
    frames: AtomicU64,
}

#[pymethods]
impl FileWriter {
    #[new]
    fn new(path: PathBuf) -> PyResult<FileWriter> {
        let format = format_of(&path)?;
        let w = convert::create_writer(&path, format, WriterOptions::default())
            .map_err(convert_error)?;
        Ok(FileWriter {
            inner: Mutex::new(Some(w)),
            path,
            frames: AtomicU64::new(0),
        })
    }

    /// Appends one message (the GIL is released while it is written).
    fn write(&self, py: Python<'_>, msg: &Bound<'_, PyAny>) -> PyResult<()> {
        let frame = from_message(msg, None, false)?;
        py.detach(|| {
            let mut g = lock(&self.inner);
            let Some(w) = g.as_mut() else {
                return Err(PyValueError::new_err(format!(
                    "{}: the writer is closed",
                    self.path.display()
                )));
            };
            w.write_frame(&frame).map_err(convert_error)
        })?;
        self.frames.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }

    /// Pushes buffered data to the file.
    fn flush(&self, py: Python<'_>) -> PyResult<()> {
        py.detach(|| match lock(&self.inner).as_mut() {
            Some(w) => w.flush().map_err(convert_error),
            None => Ok(()),
        })
    }

    /// Frames written so far.
    #[getter]
    fn frames(&self) -> u64 {
        self.frames.load(Ordering::Relaxed)
    }

    /// Completes the file. Idempotent.
    fn close(&self, py: Python<'_>) -> PyResult<()> {
        let w = lock(&self.inner).take();
        if let Some(w) = w {
            py.detach(|| w.finish()).map_err(convert_error)?;
        }
        Ok(())
    }
}

// ---------------------------------------------------------------------------------
// record / replay / info

fn summary_dict<'py>(py: Python<'py>, s: &Summary) -> PyResult<Bound<'py, PyAny>> {
    let json = py.import("json")?;
    json.call_method1("loads", (s.to_json(),))
}

struct RecordSink {
    writer: Box<dyn FrameWriter>,
    filters: Vec<IdMask>,
    limit: u64,
    frames: u64,
    filtered: u64,
    error: Option<String>,
    last_flush: Instant,
}

impl InlineConsumer for RecordSink {
    fn on_event(&mut self, event: &Event) -> bool {
        if let Event::Frame(f) = event {
            if !passes(&self.filters, f) {
                self.filtered += 1;
                return true;
            }
        }
        if let Err(e) = self.writer.write_event(event) {
            self.error = Some(e.to_string());
            return false;
        }
        if let Event::Frame(_) = event {
            self.frames += 1;
            return self.frames < self.limit;
        }
        true
    }

    fn on_batch_end(&mut self) {
        if self.last_flush.elapsed() >= Duration::from_secs(1) {
            self.last_flush = Instant::now();
            if let Err(e) = self.writer.flush() {
                self.error.get_or_insert(e.to_string());
            }
        }
    }
}

/// Records the group into `path` until `count` frames, `duration` seconds, or Ctrl-C
/// (the file is completed, then KeyboardInterrupt is raised). Returns the summary.
#[pyfunction]
#[pyo3(signature = (path, channel, port=43113, iface=None, duration=None, count=None,
                    filters=Vec::new(), key_file=None, sources=Vec::new(), io="mmsg"))]
#[allow(clippy::too_many_arguments)]
fn record<'py>(
    py: Python<'py>,
    path: PathBuf,
    channel: &str,
    port: u16,
    iface: Option<String>,
    duration: Option<f64>,
    count: Option<u64>,
    filters: Vec<(u32, u32, Option<bool>)>,
    key_file: Option<PathBuf>,
    sources: Vec<String>,
    io: &str,
) -> PyResult<Bound<'py, PyAny>> {
    let format = format_of(&path)?;
    let cfg = net_config(channel, port, iface, 1, sources)?;
    let io = parse_io(io)?;
    let key = read_key(key_file)?;
    let deadline = match duration {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            return Err(PyValueError::new_err(format!(
                "duration={s}: must be a positive number of seconds"
            )))
        }
        Some(s) => Some(Instant::now() + Duration::from_secs_f64(s)),
        None => None,
    };
    let sock = RecvSocket::open(&cfg).map_err(|e| io_error("cannot join the group", e))?;
    let (source, _note) = recv::open_source(sock.into_socket(), io, &RecvConfig::default())
        .map_err(|e| io_error("cannot start receiving", e))?;
    let writer =
        convert::create_writer(&path, format, WriterOptions::default()).map_err(convert_error)?;
    let sink = RecordSink {
        writer,
        filters: filters
            .into_iter()
            .map(|(id, mask, extended)| IdMask { id, mask, extended })
            .collect(),
        limit: count.unwrap_or(u64::MAX),
        frames: 0,
        filtered: 0,
        error: None,
        last_flush: Instant::now(),
    };
    let config = EngineConfig {
        consumers: 1,
        dispatch: Dispatch::All,
        accept_only: cfg.sources.clone(),
        answer_pings: Some(PingIdentity::this_process(Role::Record)),
        coalesce: Some(Duration::from_millis(2)),
        auth_key: key,
        ..EngineConfig::default()
    };
    let running = Engine::start_inline(source, config, sink)
        .map_err(|e| io_error("cannot start the engine", e))?;
    let counters = running.engine().counters();
    let io_mode = running.engine().io_mode();
    let start = Instant::now();
    let mut interrupted = None;
    while !running.is_finished() && deadline.is_none_or(|d| Instant::now() < d) {
        py.detach(|| std::thread::sleep(SIGNAL_STEP));
        if let Err(e) = py.check_signals() {
            interrupted = Some(e);
            break;
        }
    }
    let elapsed = start.elapsed();
    running.engine().stop_after_draining();
    let (result, sink) = py.detach(|| running.join());
    let Some(sink) = sink else {
        return Err(CanmcError::new_err(
            "the receive thread died; the recording may be incomplete",
        ));
    };
    let finished = py.detach(|| sink.writer.finish());
    if let Some(e) = interrupted {
        finished.map_err(convert_error)?;
        return Err(e);
    }
    if let Some(e) = sink.error {
        return Err(CanmcError::new_err(format!(
            "recording stopped: {e}; {} keeps every frame written before",
            path.display()
        )));
    }
    result.map_err(|e| io_error("receiving failed", e))?;
    finished.map_err(convert_error)?;
    let mut stats = counters.snapshot();
    stats.frames = sink.frames;
    stats.filtered += sink.filtered;
    let sum = Summary {
        command: "record",
        io: Some(io_name(io_mode)),
        stats,
        elapsed,
        ..Summary::default()
    };
    summary_dict(py, &sum)
}

/// Plays a capture onto the group. `speed=None` sends as fast as possible. Ctrl-C
/// stops it (KeyboardInterrupt). Returns the summary.
#[pyfunction]
#[pyo3(signature = (path, channel, port=43113, iface=None, hop_limit=1, speed=Some(1.0),
                    loops=1, start=None, end=None, wire="pycan", key_file=None, skip_bad=false))]
#[allow(clippy::too_many_arguments)]
fn replay<'py>(
    py: Python<'py>,
    path: PathBuf,
    channel: &str,
    port: u16,
    iface: Option<String>,
    hop_limit: u32,
    speed: Option<f64>,
    loops: Option<u64>,
    start: Option<f64>,
    end: Option<f64>,
    wire: &str,
    key_file: Option<PathBuf>,
    skip_bad: bool,
) -> PyResult<Bound<'py, PyAny>> {
    let format = format_of(&path)?;
    must_exist(&path)?;
    let cfg = net_config(channel, port, iface, hop_limit, Vec::new())?;
    let format_wire = parse_wire(wire)?;
    let key = read_key(key_file)?;
    if let Some(s) = speed {
        if !(s.is_finite() && s > 0.0) {
            return Err(PyValueError::new_err(format!(
                "speed={s}: must be a positive factor"
            )));
        }
    }
    let secs = |name: &str, v: Option<f64>| -> PyResult<Option<Duration>> {
        match v {
            None => Ok(None),
            Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
            Some(s) => Err(PyValueError::new_err(format!(
                "{name}={s}: must be seconds >= 0"
            ))),
        }
    };
    let opts = canmc::replay::ReplayOptions {
        speed,
        loops,
        start: secs("start", start)?,
        end: secs("end", end)?,
        skip_bad,
        ..Default::default()
    };
    let sock = SendSocket::open(&cfg).map_err(|e| io_error("cannot open a sender", e))?;
    let mut tx =
        FrameSender::new(sock, format_wire, native::DEFAULT_MAX_DATAGRAM, 1_000_000).with_key(key);
    let interrupted: Mutex<Option<PyErr>> = Mutex::new(None);
    let last_check = Mutex::new(Instant::now());
    let stop = || {
        let mut last = lock(&last_check);
        if last.elapsed() < SIGNAL_STEP {
            return false;
        }
        *last = Instant::now();
        Python::attach(|py| match py.check_signals() {
            Ok(()) => false,
            Err(e) => {
                *lock(&interrupted) = Some(e);
                true
            }
        })
    };
    let res = py.detach(|| canmc::replay::replay(&path, format, &mut tx, &opts, &stop));
    if let Some(e) = lock(&interrupted).take() {
        return Err(e);
    }
    let stats = res.map_err(convert_error)?;
    let sent = canmc::engine::Stats {
        frames: stats.frames,
        datagrams: tx.datagrams_sent(),
        bytes: tx.bytes(),
        ..Default::default()
    };
    let sum = Summary {
        command: "replay",
        stats: sent,
        elapsed: stats.elapsed,
        unsent: tx.health().unsent(),
        outages: tx.health().outages(),
        ..Default::default()
    };
    let d = summary_dict(py, &sum)?;
    d.set_item("loops", stats.loops)?;
    d.set_item("skipped", stats.skipped)?;
    Ok(d)
}

/// What a capture holds, as a dict: the keys of `canmc info --json` (the library's
/// [`CaptureStats`](canmc::stats::CaptureStats)), plus `problem` (why a damaged file
/// could not be read to its end, else None).
#[pyfunction]
#[pyo3(signature = (path, skip_bad=false))]
fn info<'py>(py: Python<'py>, path: PathBuf, skip_bad: bool) -> PyResult<Bound<'py, PyAny>> {
    let format = format_of(&path)?;
    must_exist(&path)?;
    let mut stats = canmc::stats::CaptureStats::new();
    let read = py
        .detach(|| {
            convert::read_events(
                &path,
                format,
                ReadOptions {
                    skip_bad,
                    start_ns: None,
                },
                &mut |ev| {
                    stats.add(ev);
                    true
                },
            )
        })
        .map_err(convert_error)?;
    let json = serde_json::to_string(&stats.summary(10))
        .map_err(|e| CanmcError::new_err(format!("cannot encode the statistics: {e}")))?;
    let d = py.import("json")?.call_method1("loads", (json,))?;
    d.set_item("file", path.display().to_string())?;
    d.set_item("format", format.name())?;
    d.set_item("skipped_lines", read.skipped)?;
    let end = match read.cmc_end {
        None => None,
        Some(End::Finished) => Some("finished"),
        Some(End::Unfinished) => Some("unfinished"),
        Some(End::Truncated { .. }) => Some("truncated"),
        Some(End::Corrupt { .. }) => Some("corrupt"),
    };
    d.set_item("end", end)?;
    d.set_item("problem", read.problem())?;
    Ok(d)
}

#[pymodule]
fn _canmc(m: &Bound<'_, PyModule>) -> PyResult<()> {
    m.add_class::<NativeBus>()?;
    m.add_class::<FrameReader>()?;
    m.add_class::<FileWriter>()?;
    m.add_function(wrap_pyfunction!(read_columns, m)?)?;
    m.add_function(wrap_pyfunction!(record, m)?)?;
    m.add_function(wrap_pyfunction!(replay, m)?)?;
    m.add_function(wrap_pyfunction!(info, m)?)?;
    m.add("CanmcError", m.py().get_type::<CanmcError>())?;
    m.add("IncompleteError", m.py().get_type::<IncompleteError>())?;
    m.add("FLAG_EXTENDED", flags::EXTENDED)?;
    m.add("FLAG_RTR", flags::RTR)?;
    m.add("FLAG_ERROR", flags::ERROR)?;
    m.add("FLAG_FD", flags::FD)?;
    m.add("FLAG_BRS", flags::BRS)?;
    m.add("FLAG_ESI", flags::ESI)?;
    Ok(())
}
