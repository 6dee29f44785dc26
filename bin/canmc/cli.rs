//! The command line's flags: clap definitions, and value parsers that refuse a bad
//! value while parsing, before any socket or file is opened.

use std::net::IpAddr;
use std::path::PathBuf;
use std::time::Duration;

use canmc::convert::candump::TimeMode;
use canmc::filter::IdFilter;
use canmc::gen;
use canmc::recv::IoMode;
use canmc::wire::native;
use clap::{Args, Parser, Subcommand, ValueEnum};

pub(crate) use output::OutputOpts;

mod can;
mod output;
#[cfg(test)]
mod tests;
mod values;

pub(crate) use can::{BridgeArgs, DirectionArg};

pub(crate) use values::LoopCount;

/// CAN and CAN FD over UDP multicast, wire-compatible with python-can's udp_multicast.
#[derive(Parser)]
#[command(name = "canmc", version, about, max_term_width = 100)]
pub(crate) struct Cli {
    #[command(subcommand)]
    pub(crate) command: Command,
}

#[derive(Subcommand)]
pub(crate) enum Command {
    /// Send frames given in cansend syntax (123#DEADBEEF, 12345678#R, 123##1AABB).
    Send(SendArgs),
    /// Print frames from the group as candump does.
    Dump(DumpArgs),
    /// Generate traffic as cangen does.
    Gen(GenArgs),
    /// Find who is on the group: every canmc receiver answers a probe.
    Ping(PingArgs),
    /// Capture the group to a file: .cmc, .log, .pcapng, .pcap, .asc, .trc or .blf by extension.
    Record(RecordArgs),
    /// Play a capture file (.cmc, .log, .pcapng, .pcap, .asc, .trc or .blf) onto the group.
    Replay(ReplayArgs),
    /// Convert between .cmc, .log, .pcapng, .pcap, .asc, .trc and .blf (by extension).
    Convert(ConvertArgs),
    /// Frames, time span, rate, IDs and losses of a capture file.
    Info(InfoArgs),
    /// Bridge a CAN interface (can0, vcan0) and the group, both ways, without loops.
    Bridge(BridgeArgs),
    /// A live table of the group (or a file), one row per ID: count, rate, period,
    /// jitter, changing bytes, bus load and every loss counter.
    Top(crate::cmd::top::TopArgs),
    /// Draw a capture's rates, busiest IDs, inter-arrival times and losses
    /// (.html, .svg or .png).
    Plot(crate::cmd::plot::PlotArgs),
}

#[derive(Args, Clone)]
pub(crate) struct NetArgs {
    /// Multicast group [default: ff15:7079:7468:6f6e:6465:6d6f:6d63:6173, or 239.74.163.2 with --iface lo]
    #[arg(long, value_name = "ADDR", value_parser = values::group)]
    pub(crate) group: Option<IpAddr>,
    /// UDP port.
    #[arg(long, default_value_t = canmc::socket::DEFAULT_PORT)]
    pub(crate) port: u16,
    /// Interface (name or address) for joining and sending; `lo` keeps IPv4 traffic on this host.
    #[arg(long, value_name = "NAME|ADDR")]
    pub(crate) iface: Option<String>,
    /// IPv4 TTL / IPv6 hop limit [default: 1, 0 with --iface lo]
    #[arg(long, value_parser = clap::value_parser!(u32).range(0..=255))]
    pub(crate) ttl: Option<u32>,
    /// Do not loop sent frames back to receivers on this host.
    #[arg(long)]
    pub(crate) no_loopback: bool,
    /// Accept frames only from this sender (repeatable).
    #[arg(long, value_name = "ADDR", value_parser = values::source)]
    pub(crate) source: Vec<IpAddr>,
    /// Authenticate native datagrams with the shared key in this file (32 raw bytes or
    /// 64 hex digits): senders add a tag, receivers drop anything else (as bad_auth).
    #[arg(long, value_name = "PATH")]
    pub(crate) key_file: Option<PathBuf>,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum WireArg {
    Pycan,
    Native,
}

#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum IoArg {
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
pub(crate) struct SendOpts {
    /// Wire format.
    #[arg(long, value_enum, default_value = "pycan")]
    pub(crate) wire: WireArg,
    /// python-can channel to put in each frame: an integer if it parses as one, else a string.
    #[arg(long, value_name = "CH")]
    pub(crate) channel: Option<String>,
    /// Largest native datagram in bytes (default fits a 1500-byte MTU, IPv4 or IPv6).
    #[arg(long, value_name = "BYTES", default_value_t = native::DEFAULT_MAX_DATAGRAM as u16,
          value_parser = clap::value_parser!(u16).range(native::MIN_MAX_DATAGRAM as i64..=native::MAX_DATAGRAM_LIMIT as i64))]
    pub(crate) max_datagram: u16,
    /// Longest a native frame may wait for others to share its datagram, in ms.
    #[arg(long, value_name = "MS", default_value = "1", allow_negative_numbers = true,
          value_parser = values::linger_ms)]
    pub(crate) linger: Duration,
}

#[derive(Args, Clone)]
pub(crate) struct RecvOpts {
    /// Receive path: io_uring, recvmmsg, or the best available.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) io: IoArg,
    /// Receive one datagram per receive: do not turn on UDP GRO (which lets the kernel
    /// hand over many datagrams of one GSO sender at once, split again by canmc).
    #[arg(long)]
    pub(crate) no_gro: bool,
    /// Do not answer `canmc ping` probes.
    #[arg(long)]
    pub(crate) no_answer: bool,
    /// Stop after this many frames.
    #[arg(
        short = 'n',
        long = "count",
        value_name = "N",
        allow_negative_numbers = true
    )]
    pub(crate) count: Option<u64>,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true,
          value_parser = values::positive_secs)]
    pub(crate) duration: Option<Duration>,
    /// After a small batch, wait this many milliseconds for more before handing frames
    /// on: far fewer wake-ups at moderate rates, at up to that much added latency
    /// (default: 0 for dump, 2 for record).
    #[arg(long, value_name = "MS", allow_negative_numbers = true,
          value_parser = values::coalesce_ms)]
    pub(crate) coalesce: Option<Duration>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct SendArgs {
    #[command(flatten)]
    pub(crate) net: NetArgs,
    #[command(flatten)]
    pub(crate) opts: SendOpts,
    /// Frames in cansend syntax.
    #[arg(required = true, value_name = "FRAME")]
    pub(crate) frames: Vec<String>,
}

#[derive(Args)]
pub(crate) struct DumpArgs {
    #[command(flatten)]
    pub(crate) net: NetArgs,
    #[command(flatten)]
    pub(crate) recv: RecvOpts,
    /// Print candump log lines: (seconds.micros) iface ID#DATA.
    #[arg(short = 'L', long = "log")]
    pub(crate) log: bool,
    /// Print no frames, only the summary (for monitoring and benchmarks).
    #[arg(short = 'q', long, conflicts_with = "log")]
    pub(crate) quiet: bool,
    /// Timestamps: a absolute, d delta, z from zero, A date.
    #[arg(short = 't', value_name = "a|d|z|A")]
    pub(crate) time: Option<TimeMode>,
    /// Read from this CAN interface (can0, vcan0) instead of the group.
    #[arg(long, value_name = "IFACE")]
    pub(crate) can: Option<String>,
    /// Decode signals with this DBC file: after each frame the DBC knows, a line
    /// `  Message: Signal=value unit (label), …`.
    #[arg(long, value_name = "FILE")]
    pub(crate) dbc: Option<PathBuf>,
    /// candump filters: <id>:<mask> (match) or <id>~<mask> (inverse), hex.
    #[arg(value_name = "FILTER", value_parser = values::filter)]
    pub(crate) filters: Vec<IdFilter>,
}

#[derive(Args)]
pub(crate) struct GenArgs {
    #[command(flatten)]
    pub(crate) net: NetArgs,
    #[command(flatten)]
    pub(crate) opts: SendOpts,
    /// Frames per second.
    #[arg(long = "rate", value_name = "FPS", conflicts_with = "gap",
          allow_negative_numbers = true, value_parser = values::rate)]
    pub(crate) rate: Option<f64>,
    /// Gap between frames in milliseconds (cangen -g).
    #[arg(short = 'g', value_name = "MS", allow_negative_numbers = true,
          value_parser = values::gap_ms)]
    pub(crate) gap: Option<Duration>,
    /// Number of frames (default: until Ctrl-C).
    #[arg(short = 'n', value_name = "N", allow_negative_numbers = true)]
    pub(crate) count: Option<u64>,
    /// ID mode: r random, i increment, or a hex ID.
    #[arg(short = 'I', default_value = "r", value_parser = gen::parse_id_mode)]
    pub(crate) id: gen::Mode<u32>,
    /// Length mode: r random, i increment, or a length.
    #[arg(short = 'L', default_value = "r", value_parser = gen::parse_len_mode)]
    pub(crate) len: gen::Mode<u8>,
    /// Data mode: r random, i increment, or hex bytes.
    #[arg(short = 'D', default_value = "r", value_parser = gen::parse_data_mode)]
    pub(crate) data: gen::Mode<gen::Payload>,
    /// Extended (29-bit) IDs.
    #[arg(short = 'e')]
    pub(crate) extended: bool,
    /// CAN FD frames.
    #[arg(short = 'f')]
    pub(crate) fd: bool,
    /// CAN FD frames with bit rate switch.
    #[arg(short = 'b')]
    pub(crate) brs: bool,
    /// CAN FD frames with error state indicator.
    #[arg(short = 'E')]
    pub(crate) esi: bool,
    /// Remote frames.
    #[arg(short = 'R')]
    pub(crate) remote: bool,
    /// Exit when the group is unreachable (link down, no route) instead of counting
    /// the frames that could not be sent and going on when the network is back.
    #[arg(long)]
    pub(crate) stop_on_error: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct PingArgs {
    #[command(flatten)]
    pub(crate) net: NetArgs,
    /// Rounds of probes.
    #[arg(short = 'c', value_name = "N", default_value_t = 1, allow_negative_numbers = true,
          value_parser = clap::value_parser!(u32).range(1..))]
    pub(crate) count: u32,
    /// Seconds to wait for answers in each round.
    #[arg(short = 'W', value_name = "SECS", default_value = "1", allow_negative_numbers = true,
          value_parser = values::wait_secs)]
    pub(crate) wait: Duration,
    /// One JSON object per answer.
    #[arg(long)]
    pub(crate) json: bool,
}

#[derive(Args)]
pub(crate) struct RecordArgs {
    #[command(flatten)]
    pub(crate) net: NetArgs,
    #[command(flatten)]
    pub(crate) recv: RecvOpts,
    /// Output file; its extension picks the format (.cmc, .log, .pcapng, .pcap, .asc, .trc,
    /// .blf, .mf4, .parquet); with --partition, a folder of Parquet files.
    #[arg(short = 'o', long = "output", value_name = "FILE")]
    pub(crate) output: PathBuf,
    #[command(flatten)]
    pub(crate) out: OutputOpts,
    /// .cmc segment size in MiB: a new segment file (FILE.1, FILE.2, …) starts when one is full.
    #[arg(long, value_name = "MIB", default_value_t = 64,
          value_parser = clap::value_parser!(u64).range(1..=65536))]
    pub(crate) segment_size: u64,
    /// Read from this CAN interface (can0, vcan0) instead of the group.
    #[arg(long, value_name = "IFACE")]
    pub(crate) can: Option<String>,
    /// candump filters: <id>:<mask> (match) or <id>~<mask> (inverse), hex.
    #[arg(value_name = "FILTER", value_parser = values::filter)]
    pub(crate) filters: Vec<IdFilter>,
}

#[derive(Args)]
pub(crate) struct ReplayArgs {
    #[command(flatten)]
    pub(crate) net: NetArgs,
    #[command(flatten)]
    pub(crate) opts: SendOpts,
    /// A capture file: .cmc, .log, .pcapng, .pcap, .asc, .trc or .blf (by extension).
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// Play onto this CAN interface (can0, vcan0) instead of the group, as canplayer does.
    #[arg(long, value_name = "IFACE")]
    pub(crate) can: Option<String>,
    /// Play faster (2) or slower (0.5) than recorded.
    #[arg(
        long,
        value_name = "FACTOR",
        default_value = "1",
        conflicts_with = "fast",
        allow_negative_numbers = true,
        value_parser = values::speed
    )]
    pub(crate) speed: f64,
    /// As fast as possible (sendmmsg + UDP GSO), ignoring timestamps.
    #[arg(long)]
    pub(crate) fast: bool,
    /// Play the file N times, or `i` for ever.
    #[arg(
        long = "loop",
        value_name = "N|i",
        default_value = "1",
        allow_negative_numbers = true
    )]
    pub(crate) repeat: LoopCount,
    /// Shorten any gap between frames longer than this many seconds to this length.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = values::secs)]
    pub(crate) skip_gaps: Option<Duration>,
    /// Start this many seconds after the file's first frame.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = values::secs)]
    pub(crate) start: Option<Duration>,
    /// Stop this many seconds after the file's first frame.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true, value_parser = values::secs)]
    pub(crate) end: Option<Duration>,
    /// Skip lines of a .log that do not parse instead of stopping at the first.
    #[arg(long)]
    pub(crate) skip_bad: bool,
    /// Run at real-time priority (SCHED_FIFO 10) so a busy machine does not preempt
    /// the timing; needs CAP_SYS_NICE (a failure is reported, and replay goes on).
    #[arg(long)]
    pub(crate) realtime: bool,
    /// Exit when the group is unreachable (link down, no route) instead of counting
    /// the frames that could not be sent and going on when the network is back.
    #[arg(long)]
    pub(crate) stop_on_error: bool,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// candump filters: <id>:<mask> (match) or <id>~<mask> (inverse), hex.
    #[arg(short = 'f', long = "filter", value_name = "FILTER", value_parser = values::filter)]
    pub(crate) filters: Vec<IdFilter>,
}

#[derive(Args)]
pub(crate) struct ConvertArgs {
    /// Input: .cmc, .log, .pcapng, .pcap, .asc, .trc, .blf, .mf4 or .parquet (by extension).
    #[arg(value_name = "IN")]
    pub(crate) input: PathBuf,
    /// Output: .cmc, .log, .pcapng, .pcap, .asc, .trc, .blf, .mf4 or .parquet (by
    /// extension); with --partition, a folder of Parquet files.
    #[arg(value_name = "OUT")]
    pub(crate) output: PathBuf,
    #[command(flatten)]
    pub(crate) out: OutputOpts,
    /// Skip lines, packets or objects of the input that do not parse (counted) instead
    /// of stopping at the first.
    #[arg(long)]
    pub(crate) skip_bad: bool,
    /// Decode signals with this DBC file into OUT, which must be a .csv: one row per
    /// signal (timestamp,channel,id,message,signal,value,unit,label).
    #[arg(long, value_name = "FILE")]
    pub(crate) dbc: Option<PathBuf>,
    /// TRC version of a .trc output: 2.1 (every frame kind) or 1.1 (classic frames only).
    #[arg(long, value_name = "VERSION", default_value = "2.1",
          value_parser = ["2.1", "1.1"])]
    pub(crate) trc_version: String,
    /// Write a .blf output with stored (not zlib-compressed) containers.
    #[arg(long)]
    pub(crate) blf_uncompressed: bool,
}

#[derive(Args)]
pub(crate) struct InfoArgs {
    /// A capture file: .cmc, .log, .pcapng, .pcap, .asc, .trc, .blf, .mf4 or .parquet (by
    /// extension).
    #[arg(value_name = "FILE")]
    pub(crate) file: PathBuf,
    /// Print one JSON object.
    #[arg(long)]
    pub(crate) json: bool,
    /// Skip lines of a text file that do not parse.
    #[arg(long)]
    pub(crate) skip_bad: bool,
}
