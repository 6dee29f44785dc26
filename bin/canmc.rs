//! `canmc`: the command line. It parses arguments, builds library objects and reports;
//! everything that touches frames or sockets lives in the library.

use std::cell::Cell;
use std::io::{self, IsTerminal, Write};
use std::net::IpAddr;
use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use canmc::convert::candump::{write_log_line, ScreenFormat, TimeMode};
use canmc::convert::{self as conv, FileFormat, ReadOptions, WriterOptions};
use canmc::engine::{Dispatch, Engine, EngineConfig, Event, PingIdentity};
use canmc::filter::FilterSet;
use canmc::frame::{CanFrame, Channel};
use canmc::gen::{self, GenConfig, Generator};
use canmc::record::RecorderOptions;
use canmc::recv::{self, IoMode, RecvConfig};
use canmc::send::{FrameSender, SendHealth};
use canmc::socket::{McastConfig, RecvSocket, SendSocket, DEFAULT_GROUP_V4, DEFAULT_GROUP_V6};
use canmc::summary::Summary;
use canmc::wire::native::{self, Role};
use canmc::wire::WireFormat;
use clap::{Args, Parser, Subcommand, ValueEnum};

// The standard print macros panic when the stream is gone (a closed pipe, a full disk
// under a redirect). A command line never panics on its output: these shadow them
// and drop what cannot be written.
macro_rules! println {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stdout(), $($t)*);
    }};
}
macro_rules! eprintln {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($t)*);
    }};
}
macro_rules! eprint {
    ($($t:tt)*) => {{
        use std::io::Write as _;
        let _ = write!(std::io::stderr(), $($t)*);
    }};
}

/// CAN and CAN FD over UDP multicast, wire-compatible with python-can's udp_multicast.
#[derive(Parser)]
#[command(name = "canmc", version, about, max_term_width = 100)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Send frames given in cansend syntax (123#DEADBEEF, 12345678#R, 123##1AABB).
    Send(SendArgs),
    /// Print frames from the group as candump does.
    Dump(DumpArgs),
    /// Generate traffic as cangen does.
    Gen(GenArgs),
    /// Find who is on the group: every canmc receiver answers a probe.
    Ping(PingArgs),
    /// Capture the group to a file: .cmc, .log, .pcapng, .pcap or .asc by extension.
    Record(RecordArgs),
    /// Play a recording or candump log onto the group.
    Replay(ReplayArgs),
    /// Convert between .cmc, .log, .pcapng, .pcap and .asc (by extension).
    Convert(ConvertArgs),
    /// Frames, time span, rate, IDs and losses of a capture file.
    Info(InfoArgs),
}

#[derive(Args, Clone)]
struct NetArgs {
    /// Multicast group [default: ff15:7079:7468:6f6e:6465:6d6f:6d63:6173, or 239.74.163.2 with --iface lo]
    #[arg(long, value_name = "ADDR")]
    group: Option<IpAddr>,
    /// UDP port.
    #[arg(long, default_value_t = canmc::socket::DEFAULT_PORT)]
    port: u16,
    /// Interface (name or address) for joining and sending; `lo` keeps IPv4 traffic on this host.
    #[arg(long, value_name = "NAME|ADDR")]
    iface: Option<String>,
    /// IPv4 TTL / IPv6 hop limit [default: 1, 0 with --iface lo]
    #[arg(long)]
    ttl: Option<u32>,
    /// Do not loop sent frames back to receivers on this host.
    #[arg(long)]
    no_loopback: bool,
    /// Accept frames only from this sender (repeatable).
    #[arg(long, value_name = "ADDR")]
    source: Vec<IpAddr>,
    /// Authenticate native datagrams with the shared key in this file (32 raw bytes or
    /// 64 hex digits): senders add a tag, receivers drop anything else (as bad_auth).
    #[arg(long, value_name = "PATH")]
    key_file: Option<PathBuf>,
}

impl NetArgs {
    fn config(&self) -> Result<McastConfig, String> {
        let on_lo = self.iface.as_deref() == Some("lo");
        let group = self.group.unwrap_or(if on_lo {
            IpAddr::V4(DEFAULT_GROUP_V4)
        } else {
            IpAddr::V6(DEFAULT_GROUP_V6)
        });
        let mut cfg = McastConfig::new(group, self.port);
        cfg.iface = self.iface.clone();
        cfg.ttl = self.ttl.unwrap_or(if on_lo { 0 } else { 1 });
        cfg.loopback = !self.no_loopback;
        cfg.sources = self.source.clone();
        cfg.validate()?;
        Ok(cfg)
    }

    /// The key from `--key-file`, if given; a missing or malformed file is a usage error.
    fn key(&self) -> Result<Option<native::AuthKey>, Failure> {
        self.key_file
            .as_deref()
            .map(|p| {
                native::read_key_file(p).map_err(|e| Failure::usage(format!("--key-file {e}")))
            })
            .transpose()
    }
}

#[derive(Clone, Copy, ValueEnum)]
enum WireArg {
    Pycan,
    Native,
}

#[derive(Clone, Copy, ValueEnum)]
enum IoArg {
    Auto,
    Uring,
    Mmsg,
}

impl From<IoArg> for IoMode {
    fn from(a: IoArg) -> IoMode {
        match a {
            IoArg::Auto => IoMode::Auto,
            IoArg::Uring => IoMode::Uring,
            IoArg::Mmsg => IoMode::Mmsg,
        }
    }
}

#[derive(Args)]
struct SendOpts {
    /// Wire format.
    #[arg(long, value_enum, default_value = "pycan")]
    wire: WireArg,
    /// python-can channel to put in each frame: an integer if it parses as one, else a string.
    #[arg(long, value_name = "CH")]
    channel: Option<String>,
    /// Largest native datagram in bytes (default fits a 1500-byte MTU, IPv4 or IPv6).
    #[arg(long, value_name = "BYTES", default_value_t = native::DEFAULT_MAX_DATAGRAM as u16,
          value_parser = clap::value_parser!(u16).range(native::MIN_MAX_DATAGRAM as i64..=native::MAX_DATAGRAM_LIMIT as i64))]
    max_datagram: u16,
    /// Longest a native frame may wait for others to share its datagram, in ms.
    #[arg(long, value_name = "MS", default_value_t = 1.0)]
    linger: f64,
}

impl SendOpts {
    fn channel(&self) -> Result<Channel, String> {
        match &self.channel {
            None => Ok(Channel::NONE),
            Some(s) => match s.parse::<i64>() {
                Ok(n) => Ok(Channel::int(n)),
                Err(_) => Channel::str(s).map_err(|e| format!("--channel '{s}': {e}")),
            },
        }
    }

    fn wire(&self) -> WireFormat {
        match self.wire {
            WireArg::Pycan => WireFormat::Pycan,
            WireArg::Native => WireFormat::Native,
        }
    }

    fn sender(
        &self,
        sock: SendSocket,
        key: Option<native::AuthKey>,
    ) -> Result<FrameSender, Failure> {
        if key.is_some() && matches!(self.wire, WireArg::Pycan) {
            return Err(Failure::usage(
                "--key-file needs --wire native: python-can datagrams cannot carry a tag",
            ));
        }
        if !(self.linger.is_finite() && self.linger >= 0.0 && self.linger <= 60_000.0) {
            return Err(Failure::usage(format!(
                "--linger {}: must be a number of milliseconds from 0 to 60000",
                self.linger
            )));
        }
        let linger_ns = (self.linger * 1e6) as u64;
        Ok(
            FrameSender::new(sock, self.wire(), self.max_datagram as usize, linger_ns)
                .with_key(key),
        )
    }
}

#[derive(Args, Clone)]
struct RecvOpts {
    /// Receive path: io_uring, recvmmsg, or the best available.
    #[arg(long, value_enum, default_value = "auto")]
    io: IoArg,
    /// Do not answer `canmc ping` probes.
    #[arg(long)]
    no_answer: bool,
    /// Stop after this many frames.
    #[arg(short = 'n', long = "count", value_name = "N")]
    count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS")]
    duration: Option<f64>,
    /// After a small batch, wait this many milliseconds for more before handing frames
    /// on: far fewer wake-ups at moderate rates, at up to that much added latency
    /// (default: 0 for dump, 2 for record).
    #[arg(long, value_name = "MS")]
    coalesce: Option<f64>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct SendArgs {
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    opts: SendOpts,
    /// Frames in cansend syntax.
    #[arg(required = true, value_name = "FRAME")]
    frames: Vec<String>,
}

#[derive(Args)]
struct DumpArgs {
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    recv: RecvOpts,
    /// Print candump log lines: (seconds.micros) iface ID#DATA.
    #[arg(short = 'L', long = "log")]
    log: bool,
    /// Print no frames, only the summary (for monitoring and benchmarks).
    #[arg(short = 'q', long, conflicts_with = "log")]
    quiet: bool,
    /// Timestamps: a absolute, d delta, z from zero, A date.
    #[arg(short = 't', value_name = "a|d|z|A")]
    time: Option<TimeMode>,
    /// candump filters: <id>:<mask> (match) or <id>~<mask> (inverse), hex.
    #[arg(value_name = "FILTER")]
    filters: Vec<String>,
}

#[derive(Args)]
struct GenArgs {
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    opts: SendOpts,
    /// Frames per second.
    #[arg(long, value_name = "FPS", conflicts_with = "gap")]
    rate: Option<f64>,
    /// Gap between frames in milliseconds (cangen -g).
    #[arg(short = 'g', value_name = "MS")]
    gap: Option<f64>,
    /// Number of frames (default: until Ctrl-C).
    #[arg(short = 'n', value_name = "N")]
    count: Option<u64>,
    /// ID mode: r random, i increment, or a hex ID.
    #[arg(short = 'I', default_value = "r", value_parser = gen::parse_id_mode)]
    id: gen::Mode<u32>,
    /// Length mode: r random, i increment, or a length.
    #[arg(short = 'L', default_value = "r", value_parser = gen::parse_len_mode)]
    len: gen::Mode<u8>,
    /// Data mode: r random, i increment, or hex bytes.
    #[arg(short = 'D', default_value = "r", value_parser = gen::parse_data_mode)]
    data: gen::Mode<gen::Payload>,
    /// Extended (29-bit) IDs.
    #[arg(short = 'e')]
    extended: bool,
    /// CAN FD frames.
    #[arg(short = 'f')]
    fd: bool,
    /// CAN FD frames with bit rate switch.
    #[arg(short = 'b')]
    brs: bool,
    /// CAN FD frames with error state indicator.
    #[arg(short = 'E')]
    esi: bool,
    /// Remote frames.
    #[arg(short = 'R')]
    remote: bool,
    /// Exit when the group is unreachable (link down, no route) instead of counting
    /// the frames that could not be sent and going on when the network is back.
    #[arg(long)]
    stop_on_error: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct PingArgs {
    #[command(flatten)]
    net: NetArgs,
    /// Rounds of probes.
    #[arg(short = 'c', value_name = "N", default_value_t = 1,
          value_parser = clap::value_parser!(u32).range(1..))]
    count: u32,
    /// Seconds to wait for answers in each round.
    #[arg(short = 'W', value_name = "SECS", default_value_t = 1.0)]
    wait: f64,
    /// One JSON object per answer.
    #[arg(long)]
    json: bool,
}

#[derive(Args)]
struct RecordArgs {
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    recv: RecvOpts,
    /// Output file; its extension picks the format (.cmc, .log, .pcapng, .pcap, .asc).
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    output: PathBuf,
    /// .cmc segment size in MiB: a new segment file (FILE.1, FILE.2, …) starts when one is full.
    #[arg(long, value_name = "MIB", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    segment_size: u64,
    /// candump filters: <id>:<mask> (match) or <id>~<mask> (inverse), hex.
    #[arg(value_name = "FILTER")]
    filters: Vec<String>,
}

#[derive(Args)]
struct ReplayArgs {
    #[command(flatten)]
    net: NetArgs,
    #[command(flatten)]
    opts: SendOpts,
    /// A .cmc recording or a candump .log (or .asc).
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Play faster (2) or slower (0.5) than recorded.
    #[arg(
        long,
        value_name = "FACTOR",
        default_value_t = 1.0,
        conflicts_with = "fast"
    )]
    speed: f64,
    /// As fast as possible (sendmmsg + UDP GSO), ignoring timestamps.
    #[arg(long)]
    fast: bool,
    /// Play the file N times, or `i` for ever.
    #[arg(long = "loop", value_name = "N|i", default_value = "1")]
    repeat: LoopCount,
    /// Shorten any gap between frames longer than this many seconds to this length.
    #[arg(long, value_name = "SECS")]
    skip_gaps: Option<f64>,
    /// Start this many seconds after the file's first frame.
    #[arg(long, value_name = "SECS")]
    start: Option<f64>,
    /// Stop this many seconds after the file's first frame.
    #[arg(long, value_name = "SECS")]
    end: Option<f64>,
    /// Skip lines of a .log that do not parse instead of stopping at the first.
    #[arg(long)]
    skip_bad: bool,
    /// Run at real-time priority (SCHED_FIFO 10) so a busy machine does not preempt
    /// the timing; needs CAP_SYS_NICE (a failure is reported, and replay goes on).
    #[arg(long)]
    realtime: bool,
    /// Exit when the group is unreachable (link down, no route) instead of counting
    /// the frames that could not be sent and going on when the network is back.
    #[arg(long)]
    stop_on_error: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    json: bool,
    /// candump filters: <id>:<mask> (match) or <id>~<mask> (inverse), hex.
    #[arg(short = 'f', long = "filter", value_name = "FILTER")]
    filters: Vec<String>,
}

/// `--loop`: a count or `i` (infinite).
#[derive(Clone, Copy, Debug)]
struct LoopCount(Option<u64>);

impl std::str::FromStr for LoopCount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "i" | "inf" => Ok(LoopCount(None)),
            _ => match s.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(LoopCount(Some(n))),
                _ => Err(format!("'{s}' is not a count ≥ 1 or 'i'")),
            },
        }
    }
}

#[derive(Args)]
struct ConvertArgs {
    /// Input: .cmc, .log or .asc.
    #[arg(value_name = "IN")]
    input: PathBuf,
    /// Output: .cmc, .log, .pcapng, .pcap or .asc.
    #[arg(value_name = "OUT")]
    output: PathBuf,
    /// Skip lines of a text input that do not parse instead of stopping at the first.
    #[arg(long)]
    skip_bad: bool,
}

#[derive(Args)]
struct InfoArgs {
    /// A .cmc, .log or .asc file.
    #[arg(value_name = "FILE")]
    file: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    json: bool,
    /// Skip lines of a text file that do not parse.
    #[arg(long)]
    skip_bad: bool,
}

/// A failure worth one line on stderr, and the exit code that goes with it.
struct Failure {
    message: String,
    code: u8,
}

impl Failure {
    fn usage(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 2,
        }
    }
    fn runtime(message: impl Into<String>) -> Failure {
        Failure {
            message: message.into(),
            code: 1,
        }
    }
}

static STOP: AtomicBool = AtomicBool::new(false);

extern "C" fn on_signal(_: libc::c_int) {
    STOP.store(true, Ordering::Relaxed);
}

fn install_signal_handlers() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: the handler only stores to an atomic, which is async-signal-safe; the
        // sigaction struct is fully initialised before the call.
        unsafe {
            let mut sa: libc::sigaction = std::mem::zeroed();
            sa.sa_sigaction = on_signal as extern "C" fn(libc::c_int) as usize;
            libc::sigemptyset(&mut sa.sa_mask);
            libc::sigaction(sig, &sa, std::ptr::null_mut());
        }
    }
}

fn stopped() -> bool {
    STOP.load(Ordering::Relaxed)
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map(|d| d.as_nanos() as u64)
        .unwrap_or(0)
}

fn main() -> ExitCode {
    let cli = match Cli::try_parse() {
        Ok(cli) => cli,
        Err(e) => {
            use clap::error::ErrorKind;
            if matches!(e.kind(), ErrorKind::DisplayHelp | ErrorKind::DisplayVersion)
                || e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand
            {
                let _ = e.print();
                return if e.kind() == ErrorKind::DisplayHelpOnMissingArgumentOrSubcommand {
                    ExitCode::from(2)
                } else {
                    ExitCode::SUCCESS
                };
            }
            // clap's message spans several lines; the first says what is wrong.
            let text = e.to_string();
            let first = text.lines().next().unwrap_or("bad arguments");
            let first = first.strip_prefix("error: ").unwrap_or(first);
            eprintln!("canmc: {first} (see 'canmc --help')");
            return ExitCode::from(2);
        }
    };
    install_signal_handlers();
    let result = match cli.command {
        Command::Send(a) => cmd_send(a),
        Command::Dump(a) => cmd_dump(a),
        Command::Gen(a) => cmd_gen(a),
        Command::Ping(a) => cmd_ping(a),
        Command::Record(a) => cmd_record(a),
        Command::Replay(a) => cmd_replay(a),
        Command::Convert(a) => cmd_convert(a),
        Command::Info(a) => cmd_info(a),
    };
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(f) => {
            eprintln!("canmc: {}", f.message);
            ExitCode::from(f.code)
        }
    }
}

fn io_failure(what: &str, e: io::Error) -> Failure {
    Failure::runtime(format!("{what}: {e}"))
}

fn cmd_send(a: SendArgs) -> Result<(), Failure> {
    let cfg = a.net.config().map_err(Failure::usage)?;
    let channel = a.opts.channel().map_err(Failure::usage)?;
    // Parse everything first: one bad frame means nothing is sent.
    let mut frames = Vec::with_capacity(a.frames.len());
    for text in &a.frames {
        let mut f: CanFrame = text
            .parse()
            .map_err(|e| Failure::usage(format!("frame '{text}': {e}")))?;
        f.channel = channel;
        frames.push(f);
    }
    let sock = SendSocket::open(&cfg).map_err(|e| io_failure("cannot open sender", e))?;
    let mut tx = a.opts.sender(sock, a.net.key()?)?;
    for f in &mut frames {
        f.timestamp_ns = now_ns();
        tx.send(f, f.timestamp_ns)
            .map_err(|e| io_failure("send failed", e))?;
    }
    tx.flush(now_ns())
        .map_err(|e| io_failure("send failed", e))?;
    Ok(())
}

/// Prints a live status line on stderr while a command runs, when stderr is a terminal.
struct StatusLine {
    enabled: bool,
    last: Instant,
}

impl StatusLine {
    fn new(enabled: bool) -> Self {
        StatusLine {
            enabled: enabled && io::stderr().is_terminal(),
            last: Instant::now(),
        }
    }

    fn update(&mut self, start: Instant, frames: u64, extra: &str) {
        if !self.enabled || self.last.elapsed() < Duration::from_millis(500) {
            return;
        }
        self.last = Instant::now();
        let secs = start.elapsed().as_secs_f64().max(1e-9);
        eprint!(
            "\r\x1b[K{frames} frames  {:.0} frames/s  {extra}",
            frames as f64 / secs
        );
    }

    fn clear(&self) {
        if self.enabled {
            eprint!("\r\x1b[K");
        }
    }
}

fn print_summary(sum: &Summary, json: bool) {
    if json {
        println!("{}", sum.to_json());
    } else {
        eprintln!("{}", sum.to_text());
    }
}

/// Joins the group and opens the receive path; also checks `--duration`.
#[allow(clippy::type_complexity)]
fn open_receiver(
    net: &NetArgs,
    recv: &RecvOpts,
) -> Result<(Box<dyn recv::DatagramSource>, McastConfig, Option<Instant>), Failure> {
    let cfg = net.config().map_err(Failure::usage)?;
    let deadline = match recv.duration {
        Some(s) if !(s.is_finite() && s > 0.0) => {
            return Err(Failure::usage(format!(
                "--duration {s}: must be a positive number of seconds"
            )))
        }
        Some(s) => Some(Instant::now() + Duration::from_secs_f64(s)),
        None => None,
    };
    if let Some(ms) = recv.coalesce {
        if !(ms.is_finite() && (0.0..=1000.0).contains(&ms)) {
            return Err(Failure::usage(format!(
                "--coalesce {ms}: must be a number of milliseconds from 0 to 1000"
            )));
        }
    }
    let sock = RecvSocket::open(&cfg).map_err(|e| io_failure("cannot join the group", e))?;
    for w in sock.warnings() {
        eprintln!("canmc: warning: {w}");
    }
    let (source, note) =
        recv::open_source(sock.into_socket(), recv.io.into(), &RecvConfig::default())
            .map_err(|e| io_failure("cannot start receiving", e))?;
    if let Some(note) = note {
        eprintln!("canmc: note: {note}");
    }
    Ok((source, cfg, deadline))
}

fn engine_config(
    cfg: &McastConfig,
    recv: &RecvOpts,
    role: Role,
    key: Option<native::AuthKey>,
) -> EngineConfig {
    EngineConfig {
        auth_key: key,
        consumers: 1,
        dispatch: Dispatch::All,
        // 256 Ki slots (34 MiB) absorb the consumer being descheduled for a few ms at
        // native rates of ten million frames per second.
        ring_capacity: 1 << 18,
        accept_only: cfg.sources.clone(),
        answer_pings: (!recv.no_answer).then(|| PingIdentity::this_process(role)),
        coalesce: recv
            .coalesce
            .filter(|&ms| ms > 0.0)
            .map(|ms| Duration::from_secs_f64(ms / 1000.0)),
        ..EngineConfig::default()
    }
}

fn summary_from(
    command: &'static str,
    io: IoMode,
    stats: &canmc::engine::Stats,
    frames: u64,
    filtered: u64,
    elapsed: Duration,
) -> Summary {
    Summary {
        command,
        io: Some(io_mode_name(io)),
        stats: canmc::engine::Stats {
            frames,
            filtered: filtered + stats.filtered,
            ..*stats
        },
        elapsed,
        ..Summary::default()
    }
}

/// What a receiving command does with each event; `Ok(false)` stops it.
type OnEvent<'a> = dyn FnMut(&Event) -> Result<bool, Failure> + 'a;

/// Joins the group, runs the engine with one consumer, and hands every event that
/// passes the filters to `on_event` until `-n`, `--duration`, a signal, or `on_event`
/// says stop. `-n` counts frames. Returns the summary (not yet printed).
fn run_receiver(
    command: &'static str,
    net: &NetArgs,
    recv: &RecvOpts,
    role: Role,
    filters: &FilterSet,
    on_event: &mut OnEvent<'_>,
    on_idle: &mut dyn FnMut(),
) -> Result<Summary, Failure> {
    let key = net.key()?;
    let (source, cfg, deadline) = open_receiver(net, recv)?;
    let (engine, mut handles) = Engine::start(source, engine_config(&cfg, recv, role, key))
        .map_err(|e| io_failure("cannot start the engine", e))?;
    let mut consumer = handles.remove(0);
    let counters = engine.counters();

    let start = Instant::now();
    let mut status = StatusLine::new(command != "dump" || !io::stdout().is_terminal());
    let frames = Cell::new(0u64);
    let filtered = Cell::new(0u64);
    let limit = recv.count.unwrap_or(u64::MAX);
    let mut failure = None;
    let mut events = vec![Event::default(); 512];
    // Hands a batch to `on_event`; false once `-n` is reached, `on_event` says stop, or
    // it failed (then no further event is handed over).
    let mut consume = |batch: &[Event]| -> bool {
        for event in batch {
            if let Event::Frame(frame) = event {
                if !filters.matches(frame) {
                    filtered.set(filtered.get() + 1);
                    continue;
                }
                frames.set(frames.get() + 1);
            }
            match on_event(event) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(f) => {
                    failure = Some(f);
                    return false;
                }
            }
            if frames.get() == limit {
                return false;
            }
        }
        true
    };
    let mut more = limit > 0;
    while more && !stopped() && deadline.is_none_or(|d| Instant::now() < d) {
        let n = consumer.pop_batch(&mut events);
        if n == 0 {
            on_idle();
            let s = counters.snapshot();
            status.update(
                start,
                frames.get(),
                &format!(
                    "drops {} gaps {}",
                    s.kernel_drops + s.ring_drops,
                    s.seq_gaps
                ),
            );
            consumer.wait(Duration::from_millis(50));
            continue;
        }
        more = consume(&events[..n]);
    }
    status.clear();
    if more {
        // Ctrl-C, SIGTERM or --duration: what reached the socket before still counts.
        engine.stop_after_draining();
    } else {
        engine.stop();
    }
    let io_mode = engine.io_mode();
    if let Err(e) = engine.join() {
        eprintln!("canmc: warning: receive thread: {e}");
    }
    // Stopped by a signal or --duration: what was received before is still handed over,
    // so the summary's frames are the frames the receive thread took in.
    while more {
        let n = consumer.pop_batch(&mut events);
        if n == 0 {
            break;
        }
        more = consume(&events[..n]);
    }
    if let Some(f) = failure {
        return Err(f);
    }
    let stats = counters.snapshot();
    Ok(summary_from(
        command,
        io_mode,
        &stats,
        frames.get(),
        filtered.get(),
        start.elapsed(),
    ))
}

fn cmd_dump(a: DumpArgs) -> Result<(), Failure> {
    let filters = FilterSet::parse(&a.filters).map_err(|e| Failure::usage(e.to_string()))?;
    let stdout = io::stdout();
    let mut out = io::BufWriter::with_capacity(1 << 16, stdout.lock());
    let mut line = Vec::with_capacity(512);
    let mut screen = ScreenFormat::new(a.time.unwrap_or_default());
    let mut broken_pipe = false;
    let out_cell = std::cell::RefCell::new(&mut out);
    let result = run_receiver(
        "dump",
        &a.net,
        &a.recv,
        Role::Dump,
        &filters,
        &mut |event| {
            let Event::Frame(frame) = event else {
                return Ok(true);
            };
            if a.quiet {
                return Ok(true);
            }
            line.clear();
            if a.log {
                write_log_line(frame, &mut line);
            } else {
                screen.write_line(frame, &mut line);
            }
            match out_cell.borrow_mut().write_all(&line) {
                Ok(()) => Ok(true),
                Err(e) if e.kind() == io::ErrorKind::BrokenPipe => {
                    broken_pipe = true;
                    Ok(false)
                }
                Err(e) => Err(io_failure("cannot write output", e)),
            }
        },
        &mut || {
            let _ = out_cell.borrow_mut().flush();
        },
    );
    let _ = out.flush();
    drop(out);
    let sum = result?;
    if !broken_pipe {
        print_summary(&sum, a.recv.json);
    }
    Ok(())
}

fn io_mode_name(m: IoMode) -> &'static str {
    match m {
        IoMode::Uring => "uring",
        IoMode::Mmsg => "mmsg",
        IoMode::Auto => "auto",
    }
}

fn cmd_gen(a: GenArgs) -> Result<(), Failure> {
    let cfg = a.net.config().map_err(Failure::usage)?;
    let channel = a.opts.channel().map_err(Failure::usage)?;
    let gap = match (a.rate, a.gap) {
        (Some(r), _) if !(r.is_finite() && r > 0.0) => {
            return Err(Failure::usage(format!(
                "--rate {r}: must be a positive number of frames/s"
            )))
        }
        (Some(r), _) => Some(Duration::from_secs_f64(1.0 / r)),
        (None, Some(g)) if !(g.is_finite() && g >= 0.0) => {
            return Err(Failure::usage(format!(
                "-g {g}: must be a number of milliseconds ≥ 0"
            )))
        }
        (None, Some(g)) => Some(Duration::from_secs_f64(g / 1000.0)),
        (None, None) => None,
    };
    let mut generator = Generator::new(GenConfig {
        id: a.id,
        len: a.len,
        data: a.data,
        extended: a.extended,
        fd: a.fd,
        brs: a.brs,
        esi: a.esi,
        remote: a.remote,
        ..GenConfig::default()
    })
    .map_err(|e| Failure::usage(format!("cannot generate these frames: {e}")))?;
    let sock = SendSocket::open(&cfg).map_err(|e| io_failure("cannot open sender", e))?;
    let mut tx = a
        .opts
        .sender(sock, a.net.key()?)?
        .keep_going(!a.stop_on_error);
    let outages = OutageReport::new("gen", tx.health());
    let send_err = |e| io_failure("send failed", e);
    let limit = a.count.unwrap_or(u64::MAX);
    let start = Instant::now();
    let mut status = StatusLine::new(true);
    let mut sent: u64 = 0;
    // Paced sending: frames due by now go out together, so high rates still batch.
    let mut next_due = Instant::now();
    while sent < limit && !stopped() {
        let ts = now_ns();
        tx.poll(ts).map_err(send_err)?;
        let batch_end = match gap {
            None => sent.saturating_add(256).min(limit),
            Some(gap) => {
                let now = Instant::now();
                if now < next_due {
                    // Idle until the next frame is due: what is queued leaves now, and
                    // a pending native datagram is polled again by its deadline.
                    tx.send_queued().map_err(send_err)?;
                    let mut wait = (next_due - now).min(Duration::from_millis(100));
                    if let Some(deadline) = tx.deadline() {
                        wait = wait.min(Duration::from_nanos(deadline.saturating_sub(ts)));
                    }
                    std::thread::sleep(wait);
                    continue;
                }
                let behind = (now - next_due).as_nanos() / gap.as_nanos().max(1);
                let due = (behind as u64 + 1).min(1024);
                next_due += gap * due as u32;
                sent.saturating_add(due).min(limit)
            }
        };
        while sent < batch_end {
            let mut f = generator.next_frame();
            f.timestamp_ns = ts;
            f.channel = channel;
            tx.send(&f, ts).map_err(send_err)?;
            sent += 1;
        }
        outages.check();
        status.update(start, sent, "");
    }
    tx.flush(now_ns()).map_err(send_err)?;
    status.clear();
    outages.finish();
    let sum = Summary {
        command: "gen",
        stats: canmc::engine::Stats {
            frames: tx.frames(),
            datagrams: tx.datagrams_sent(),
            bytes: tx.bytes(),
            ..Default::default()
        },
        elapsed: start.elapsed(),
        unsent: tx.health().unsent(),
        outages: tx.health().outages(),
        ..Default::default()
    };
    print_summary(&sum, a.json);
    Ok(())
}

/// Tells the user on stderr when a sender's group becomes unreachable and when it is
/// back (`gen` and `replay` ride outages out unless `--stop-on-error`).
struct OutageReport {
    command: &'static str,
    health: Arc<SendHealth>,
    /// When the outage being reported was noticed.
    began: Cell<Option<Instant>>,
}

impl OutageReport {
    fn new(command: &'static str, health: Arc<SendHealth>) -> OutageReport {
        OutageReport {
            command,
            health,
            began: Cell::new(None),
        }
    }

    fn check(&self) {
        match (self.health.failing(), self.began.get()) {
            (Some(e), None) => {
                eprintln!(
                    "canmc {}: cannot reach the group: {e}; frames are counted as unsent \
                     until it is back (--stop-on-error to exit instead)",
                    self.command
                );
                self.began.set(Some(Instant::now()));
            }
            (None, Some(t)) => {
                eprintln!(
                    "canmc {}: sending again after {:.1} s; {} datagrams were not sent",
                    self.command,
                    t.elapsed().as_secs_f64(),
                    self.health.unsent_in_outage()
                );
                self.began.set(None);
            }
            _ => {}
        }
    }

    /// The last word on an outage still going on when the command ends.
    fn finish(&self) {
        self.check();
        if let Some(t) = self.began.get() {
            eprintln!(
                "canmc {}: the group was still unreachable at the end ({:.1} s); {} datagrams \
                 were not sent",
                self.command,
                t.elapsed().as_secs_f64(),
                self.health.unsent_in_outage()
            );
        }
    }
}

fn cmd_ping(a: PingArgs) -> Result<(), Failure> {
    let cfg = a.net.config().map_err(Failure::usage)?;
    let key = a.net.key()?;
    if !(a.wait.is_finite() && a.wait > 0.0 && a.wait <= 3600.0) {
        return Err(Failure::usage(format!(
            "-W {}: must be a number of seconds from 0 to 3600",
            a.wait
        )));
    }
    let sock =
        SendSocket::open_for_replies(&cfg).map_err(|e| io_failure("cannot open sender", e))?;
    let replies = sock
        .try_clone_udp()
        .map_err(|e| io_failure("cannot open sender", e))?;
    let sender_id = native::random_sender_id();
    let mut probe_buf = [0u8; native::PROBE_LEN + native::TAG_LEN];
    let mut bad_auth = 0u64;
    let mut buf = [0u8; 2048];
    let mut receivers = std::collections::BTreeSet::new();
    let mut answers = 0u64;
    for round in 1..=a.count {
        if stopped() {
            break;
        }
        let probe = native::PingProbe {
            probe_id: u64::from(native::random_sender_id()) << 32 | u64::from(round),
            sent_ns: now_ns(),
        };
        let mut n = native::encode_probe(&mut probe_buf, sender_id, u64::from(round), &probe);
        if let Some(key) = &key {
            n = native::seal(&mut probe_buf, n, key);
        }
        sock.send(&probe_buf[..n])
            .map_err(|e| io_failure("cannot send the probe", e))?;
        let deadline = Instant::now() + Duration::from_secs_f64(a.wait);
        while !stopped() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = replies.set_read_timeout(Some(left.min(Duration::from_millis(100))));
            let (len, from) = match replies.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(io_failure("cannot receive answers", e)),
            };
            if let Some(key) = &key {
                if native::verify(&buf[..len], key).is_err() {
                    bad_auth += 1;
                    continue;
                }
            }
            let Ok((_, answer)) = native::decode_answer(&buf[..len]) else {
                continue;
            };
            if answer.probe_id != probe.probe_id {
                continue;
            }
            let rtt_us = now_ns().saturating_sub(answer.probe_sent_ns) / 1000;
            answers += 1;
            receivers.insert(from);
            if a.json {
                println!(
                    "{{\"round\":{round},\"from\":\"{from}\",\"host\":{},\"role\":\"{}\",\"pid\":{},\"uptime_ms\":{},\"frames_seen\":{},\"rtt_us\":{rtt_us}}}",
                    json_string(answer.host()),
                    answer.role,
                    answer.pid,
                    answer.uptime_ms,
                    answer.frames_seen
                );
            } else {
                println!(
                    "{from}  host={} role={} pid={} uptime={:.1}s frames={} rtt={:.3} ms",
                    answer.host(),
                    answer.role,
                    answer.pid,
                    answer.uptime_ms as f64 / 1000.0,
                    answer.frames_seen,
                    rtt_us as f64 / 1000.0
                );
            }
        }
    }
    if !a.json {
        eprintln!("{answers} answers from {} receivers", receivers.len());
        if bad_auth > 0 {
            eprintln!("{bad_auth} unauthenticated answers dropped (bad_auth)");
        }
    }
    if receivers.is_empty() {
        return Err(Failure {
            message: format!("no receiver answered on {}", cfg.group),
            code: 1,
        });
    }
    Ok(())
}

/// A JSON string literal (quotes and escapes) for text from the network.
fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}

fn convert_failure(e: conv::ConvertError) -> Failure {
    Failure::runtime(e.to_string())
}

/// `record`'s consumer: runs on the engine's receive thread, so a frame goes from the
/// socket buffer to the file with no ring in between.
struct RecordSink {
    writer: Box<dyn conv::FrameWriter>,
    filters: FilterSet,
    limit: u64,
    frames: u64,
    filtered: u64,
    error: Option<String>,
    last_flush: Instant,
}

impl canmc::engine::InlineConsumer for RecordSink {
    fn on_event(&mut self, event: &Event) -> bool {
        if let Event::Frame(f) = event {
            if !self.filters.matches(f) {
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
        // Text formats reach the file within a second (for `tail -f`); .cmc records are
        // in the page cache already and survive a crash of this process anyway.
        if self.last_flush.elapsed() >= Duration::from_secs(1) {
            self.last_flush = Instant::now();
            if let Err(e) = self.writer.flush() {
                self.error.get_or_insert(e.to_string());
            }
        }
    }
}

fn cmd_record(a: RecordArgs) -> Result<(), Failure> {
    let filters = FilterSet::parse(&a.filters).map_err(|e| Failure::usage(e.to_string()))?;
    let format = FileFormat::from_path(&a.output).map_err(|e| Failure::usage(e.to_string()))?;
    let opts = WriterOptions {
        recorder: RecorderOptions {
            segment_size: a.segment_size << 20,
            ..RecorderOptions::default()
        },
    };
    // With `--io auto`, record takes recvmmsg: with the 2 ms coalescing below it cost
    // 0.75 µs of CPU per frame at 20 000 frames/s against 4.2 µs for io_uring, and
    // 0.63 against 0.76 µs at 450 000/s (docs/perf.md). `--io uring` still chooses it.
    let mut recv_opts = a.recv.clone();
    if matches!(recv_opts.io, IoArg::Auto) {
        recv_opts.io = IoArg::Mmsg;
    }
    // Join first: a bad address must not leave an empty file behind.
    let key = a.net.key()?;
    let (source, cfg, deadline) = open_receiver(&a.net, &recv_opts)?;
    let writer = conv::create_writer(&a.output, format, opts).map_err(convert_failure)?;
    let sink = RecordSink {
        writer,
        filters,
        limit: a.recv.count.unwrap_or(u64::MAX),
        frames: 0,
        filtered: 0,
        error: None,
        last_flush: Instant::now(),
    };
    let mut config = engine_config(&cfg, &a.recv, Role::Record, key);
    if a.recv.coalesce.is_none() {
        // A recorder needs no sub-millisecond latency: 2 ms of coalescing lets one
        // wake-up write many datagrams at low rates (at high rates batches are full and
        // nothing waits).
        config.coalesce = Some(Duration::from_millis(2));
    }
    let running = Engine::start_inline(source, config, sink)
        .map_err(|e| io_failure("cannot start the engine", e))?;
    let counters = running.engine().counters();
    let io_mode = running.engine().io_mode();
    let start = Instant::now();
    let mut status = StatusLine::new(true);
    while !stopped() && !running.is_finished() && deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(20));
        let s = counters.snapshot();
        status.update(
            start,
            s.frames,
            &format!("drops {} gaps {}", s.kernel_drops, s.seq_gaps),
        );
    }
    status.clear();
    let elapsed = start.elapsed();
    // Ctrl-C, SIGTERM or --duration: what reached the socket before is still recorded.
    running.engine().stop_after_draining();
    let (result, sink) = running.join();
    let Some(sink) = sink else {
        return Err(Failure::runtime(
            "the receive thread died; the recording may be incomplete",
        ));
    };
    // Whatever happened, close the file so that it opens with everything written.
    let finished = sink.writer.finish();
    if let Some(e) = sink.error {
        return Err(Failure::runtime(format!(
            "recording stopped: {e}; {} keeps every frame written before",
            a.output.display()
        )));
    }
    if let Err(e) = result {
        return Err(io_failure("receiving failed", e));
    }
    finished.map_err(convert_failure)?;
    let sum = summary_from(
        "record",
        io_mode,
        &counters.snapshot(),
        sink.frames,
        sink.filtered,
        elapsed,
    );
    print_summary(&sum, a.recv.json);
    if !a.recv.json {
        eprintln!("  written to {} ({})", a.output.display(), format.name());
    }
    Ok(())
}

fn cmd_convert(a: ConvertArgs) -> Result<(), Failure> {
    let in_format = FileFormat::from_path(&a.input).map_err(|e| Failure::usage(e.to_string()))?;
    let out_format = FileFormat::from_path(&a.output).map_err(|e| Failure::usage(e.to_string()))?;
    if !a.input.exists() {
        return Err(Failure::runtime(format!(
            "{}: no such file",
            a.input.display()
        )));
    }
    let total_bytes = std::fs::metadata(&a.input).map(|m| m.len()).unwrap_or(0);
    let mut writer = conv::create_writer(&a.output, out_format, WriterOptions::default())
        .map_err(convert_failure)?;
    let mut progress = Progress::new(total_bytes, in_format);
    let mut write_error = None;
    let read = conv::read_events(
        &a.input,
        in_format,
        ReadOptions {
            skip_bad: a.skip_bad,
            start_ns: None,
        },
        &mut |event| {
            if let Err(e) = writer.write_event(event) {
                write_error = Some(e);
                return false;
            }
            progress.tick();
            !stopped()
        },
    );
    progress.clear();
    let finished = writer.finish();
    if let Some(e) = write_error {
        return Err(convert_failure(e));
    }
    let stats = read.map_err(convert_failure)?;
    finished.map_err(convert_failure)?;
    stats.check(&a.input).map_err(|e| {
        Failure::runtime(format!(
            "{e}; the events before it are in {}",
            a.output.display()
        ))
    })?;
    eprintln!(
        "canmc convert: {} events from {} ({}) to {} ({}){}",
        stats.events,
        a.input.display(),
        in_format.name(),
        a.output.display(),
        out_format.name(),
        if stats.skipped > 0 {
            format!(", {} bad lines skipped", stats.skipped)
        } else {
            String::new()
        }
    );
    Ok(())
}

/// A progress bar on stderr for long conversions, when stderr is a terminal. The total
/// is estimated from the input's size and its format's typical bytes per event.
struct Progress {
    enabled: bool,
    estimate: u64,
    done: u64,
    last: Instant,
}

impl Progress {
    fn new(total_bytes: u64, format: FileFormat) -> Progress {
        let per_event = match format {
            FileFormat::Cmc => 32,
            FileFormat::Log => 40,
            FileFormat::Asc => 60,
            FileFormat::Pcap | FileFormat::Pcapng => 48,
        };
        Progress {
            enabled: io::stderr().is_terminal() && total_bytes > 8 << 20,
            estimate: (total_bytes / per_event).max(1),
            done: 0,
            last: Instant::now(),
        }
    }

    fn tick(&mut self) {
        self.done += 1;
        if !self.enabled
            || self.done % 4096 != 0
            || self.last.elapsed() < Duration::from_millis(200)
        {
            return;
        }
        self.last = Instant::now();
        let pct = (self.done * 100 / self.estimate).min(99);
        let filled = (pct / 4) as usize;
        eprint!(
            "\r\x1b[K[{}{}] ~{pct:>2}%  {} events",
            "#".repeat(filled),
            " ".repeat(25 - filled),
            self.done
        );
    }

    fn clear(&self) {
        if self.enabled {
            eprint!("\r\x1b[K");
        }
    }
}

fn cmd_info(a: InfoArgs) -> Result<(), Failure> {
    let format = FileFormat::from_path(&a.file).map_err(|e| Failure::usage(e.to_string()))?;
    if !a.file.exists() {
        return Err(Failure::runtime(format!(
            "{}: no such file",
            a.file.display()
        )));
    }
    let mut frames = 0u64;
    let (mut first, mut last) = (u64::MAX, 0u64);
    let mut kinds = [0u64; 5]; // standard, extended, remote, error, fd
    let mut ids: std::collections::HashMap<(u32, bool), u64> = std::collections::HashMap::new();
    let (mut loss_events, mut lost, mut drop_events, mut drops) = (0u64, 0u64, 0u64, 0u64);
    let mut senders = std::collections::BTreeSet::new();
    let stats = conv::read_events(
        &a.file,
        format,
        ReadOptions {
            skip_bad: a.skip_bad,
            start_ns: None,
        },
        &mut |event| {
            match event {
                Event::Frame(f) => {
                    frames += 1;
                    first = first.min(f.timestamp_ns);
                    last = last.max(f.timestamp_ns);
                    kinds[usize::from(f.is_extended())] += 1;
                    if f.is_remote() {
                        kinds[2] += 1;
                    }
                    if f.is_error() {
                        kinds[3] += 1;
                    }
                    if f.is_fd() {
                        kinds[4] += 1;
                    }
                    *ids.entry((f.id, f.is_extended())).or_default() += 1;
                    if let Some(s) = f.sender.get() {
                        senders.insert(s);
                    }
                }
                Event::Loss { lost: n, .. } => {
                    loss_events += 1;
                    lost += n;
                }
                Event::KernelDrops { count, .. } => {
                    drop_events += 1;
                    drops += count;
                }
            }
            true
        },
    )
    .map_err(convert_failure)?;
    let span_ns = last.saturating_sub(first);
    let span = if frames > 0 {
        span_ns as f64 / 1e9
    } else {
        0.0
    };
    let rate = if span > 0.0 {
        frames as f64 / span
    } else {
        0.0
    };
    let mut top: Vec<_> = ids.iter().map(|(&(id, ext), &n)| (n, id, ext)).collect();
    top.sort_unstable_by(|a, b| b.0.cmp(&a.0).then(a.1.cmp(&b.1)));
    let id_text = |id: u32, ext: bool| {
        if ext {
            format!("{id:08X}")
        } else {
            format!("{id:03X}")
        }
    };
    if a.json {
        let top_json: Vec<String> = top
            .iter()
            .take(10)
            .map(|&(n, id, ext)| format!("{{\"id\":\"{}\",\"frames\":{n}}}", id_text(id, ext)))
            .collect();
        println!(
            "{{\"file\":{},\"format\":\"{}\",\"frames\":{frames},\"first_ns\":{},\"last_ns\":{},\"span_s\":{span:.6},\"rate_fps\":{rate:.1},\"standard\":{},\"extended\":{},\"remote\":{},\"error\":{},\"fd\":{},\"ids\":{},\"top_ids\":[{}],\"senders\":{},\"loss_records\":{loss_events},\"lost_datagrams\":{lost},\"kernel_drop_records\":{drop_events},\"kernel_drops\":{drops},\"skipped_lines\":{},\"end\":\"{}\"}}",
            json_string(&a.file.display().to_string()),
            format.name(),
            if frames > 0 { first } else { 0 },
            last,
            kinds[0],
            kinds[1],
            kinds[2],
            kinds[3],
            kinds[4],
            ids.len(),
            top_json.join(","),
            senders.len(),
            stats.skipped,
            end_word(stats.cmc_end)
        );
        return stats.check(&a.file).map_err(convert_failure);
    }
    println!("{} ({})", a.file.display(), format.name());
    println!(
        "  frames     {frames} ({} standard, {} extended; {} remote, {} error, {} FD)",
        kinds[0], kinds[1], kinds[2], kinds[3], kinds[4]
    );
    if frames > 0 {
        println!(
            "  time       {}.{:06} to {}.{:06} ({span:.6} s)",
            first / 1_000_000_000,
            first % 1_000_000_000 / 1000,
            last / 1_000_000_000,
            last % 1_000_000_000 / 1000
        );
        println!("  rate       {rate:.1} frames/s");
    }
    let shown: Vec<String> = top
        .iter()
        .take(8)
        .map(|&(n, id, ext)| format!("{}×{n}", id_text(id, ext)))
        .collect();
    println!(
        "  IDs        {} distinct; most frequent: {}",
        ids.len(),
        shown.join(" ")
    );
    if !senders.is_empty() {
        println!("  senders    {}", senders.len());
    }
    println!("  losses     {lost} datagrams in {loss_events} gaps; kernel drops {drops} in {drop_events} reports");
    if stats.skipped > 0 {
        println!("  skipped    {} lines that do not parse", stats.skipped);
    }
    if stats.cmc_end.is_some() {
        let why = match stats.cmc_end {
            Some(canmc::record::End::Unfinished) => {
                " (the writer did not finish: killed, or still running)"
            }
            _ => "",
        };
        println!("  end        {}{why}", end_word(stats.cmc_end));
    }
    stats.check(&a.file).map_err(convert_failure)
}

/// How a `.cmc` ended, in one word for `info` (`-` for other formats).
fn end_word(end: Option<canmc::record::End>) -> &'static str {
    use canmc::record::End;
    match end {
        None => "-",
        Some(End::Finished) => "finished",
        Some(End::Unfinished) => "unfinished",
        Some(End::Truncated { .. }) => "truncated",
        Some(End::Corrupt { .. }) => "corrupt",
    }
}

fn cmd_replay(a: ReplayArgs) -> Result<(), Failure> {
    let cfg = a.net.config().map_err(Failure::usage)?;
    let filters = FilterSet::parse(&a.filters).map_err(|e| Failure::usage(e.to_string()))?;
    let format = FileFormat::from_path(&a.file).map_err(|e| Failure::usage(e.to_string()))?;
    if !a.file.exists() {
        return Err(Failure::runtime(format!(
            "{}: no such file",
            a.file.display()
        )));
    }
    if !(a.speed.is_finite() && a.speed > 0.0) {
        return Err(Failure::usage(format!(
            "--speed {}: must be a positive factor",
            a.speed
        )));
    }
    let secs = |name: &str, v: Option<f64>| -> Result<Option<Duration>, Failure> {
        match v {
            None => Ok(None),
            Some(s) if s.is_finite() && s >= 0.0 => Ok(Some(Duration::from_secs_f64(s))),
            Some(s) => Err(Failure::usage(format!("--{name} {s}: must be seconds ≥ 0"))),
        }
    };
    let opts = canmc::replay::ReplayOptions {
        speed: (!a.fast).then_some(a.speed),
        loops: a.repeat.0,
        max_gap: secs("skip-gaps", a.skip_gaps)?,
        start: secs("start", a.start)?,
        end: secs("end", a.end)?,
        filters,
        skip_bad: a.skip_bad,
    };
    let sock = SendSocket::open(&cfg).map_err(|e| io_failure("cannot open sender", e))?;
    let mut tx = a
        .opts
        .sender(sock, a.net.key()?)?
        .keep_going(!a.stop_on_error);
    let outages = OutageReport::new("replay", tx.health());
    if a.realtime {
        if let Err(e) = canmc::replay::set_realtime_priority(10) {
            eprintln!("canmc: warning: --realtime: {e}; replaying at normal priority");
        }
    }
    // The replay loop asks `stop` every 256 frames and while it waits: the place to
    // report an outage as it begins and ends.
    let stop = || {
        outages.check();
        stopped()
    };
    let stats =
        canmc::replay::replay(&a.file, format, &mut tx, &opts, &stop).map_err(convert_failure)?;
    outages.finish();
    let sum = Summary {
        command: "replay",
        stats: canmc::engine::Stats {
            frames: stats.frames,
            datagrams: tx.datagrams_sent(),
            bytes: tx.bytes(),
            ..Default::default()
        },
        elapsed: stats.elapsed,
        unsent: tx.health().unsent(),
        outages: tx.health().outages(),
        ..Default::default()
    };
    print_summary(&sum, a.json);
    if !a.json {
        let l = &stats.lateness;
        if let (Some(p50), Some(p99)) = (l.quantile_us(0.5), l.quantile_us(0.99)) {
            eprintln!(
                "  {} plays; send time behind schedule: p50 < {p50} µs, p99 < {p99} µs, max {:.1} µs",
                stats.loops,
                l.max().as_secs_f64() * 1e6
            );
        }
        if stats.bad_lines > 0 {
            eprintln!("  {} bad lines skipped", stats.bad_lines);
        }
    }
    Ok(())
}
