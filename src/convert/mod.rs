//! Conversions between captures on disk: `.cmc` recordings, candump logs ([`candump`]),
//! pcap / pcapng, Vector ASC. One writer trait and one reading function, so `record`,
//! `convert` and `replay` treat every format alike; the format is chosen by extension.

pub mod asc;
pub mod blf;
pub mod candump;
mod digits;
pub mod mf4;
#[cfg(feature = "parquet")]
pub mod parquet;
pub mod pcap;
pub mod pipeline;
pub mod trc;

use std::fmt;
use std::fs::File;
use std::io::{self, BufRead, BufReader, BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::event::Event;
use crate::frame::{CanFrame, Channel, ChannelRef, SenderAddr};
use crate::record::{End, Record, RecordError, Recorder, RecorderOptions, Recording};
use crate::wire::native::FrameBatch;

/// A capture file format.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum FileFormat {
    /// canmc's own recording (`.cmc`): every field, losses in line, crash-safe.
    Cmc,
    /// candump log (`.log`).
    Log,
    /// pcapng with LINKTYPE_CAN_SOCKETCAN, ns timestamps (`.pcapng`).
    Pcapng,
    /// pcap with LINKTYPE_CAN_SOCKETCAN, ns timestamps (`.pcap`).
    Pcap,
    /// Vector ASC (`.asc`).
    Asc,
    /// PEAK TRC (`.trc`).
    Trc,
    /// Vector BLF (`.blf`).
    Blf,
    /// ASAM MDF 4.1 bus logging (`.mf4`).
    Mf4,
    /// Apache Parquet, one row per event (`.parquet`; needs the `parquet` feature).
    Parquet,
}

impl FileFormat {
    /// The format a path's extension names.
    pub fn from_path(path: &Path) -> Result<FileFormat, ConvertError> {
        let ext = path
            .extension()
            .and_then(|e| e.to_str())
            .map(|e| e.to_ascii_lowercase());
        match ext.as_deref() {
            Some("cmc") => Ok(FileFormat::Cmc),
            Some("log") => Ok(FileFormat::Log),
            Some("pcapng") => Ok(FileFormat::Pcapng),
            Some("pcap") => Ok(FileFormat::Pcap),
            Some("asc") => Ok(FileFormat::Asc),
            Some("trc") => Ok(FileFormat::Trc),
            Some("blf") => Ok(FileFormat::Blf),
            Some("mf4") => Ok(FileFormat::Mf4),
            Some("parquet") => Ok(FileFormat::Parquet),
            _ => Err(ConvertError::UnknownExtension(path.to_path_buf())),
        }
    }

    /// The name used in messages (`candump log`, `ASC`, …).
    pub fn name(self) -> &'static str {
        match self {
            FileFormat::Cmc => "cmc",
            FileFormat::Log => "candump log",
            FileFormat::Pcapng => "pcapng",
            FileFormat::Pcap => "pcap",
            FileFormat::Asc => "ASC",
            FileFormat::Trc => "TRC",
            FileFormat::Blf => "BLF",
            FileFormat::Mf4 => "MF4",
            FileFormat::Parquet => "Parquet",
        }
    }
}

/// Why a conversion failed. Every variant names the file.
#[derive(Debug)]
pub enum ConvertError {
    /// The extension names no format canmc knows.
    UnknownExtension(PathBuf),
    /// Reading or writing the file failed.
    Io {
        /// The file concerned.
        path: PathBuf,
        /// What the OS said.
        source: io::Error,
    },
    /// A line of a text capture does not parse.
    Parse {
        /// The file concerned.
        path: PathBuf,
        /// 1-based line number.
        line: u64,
        /// What is wrong.
        message: String,
    },
    /// The `.cmc` layer failed.
    Record(RecordError),
    /// The input could not be read to its end ([`ReadStats::problem`] says why); every
    /// event before the problem was delivered.
    Incomplete {
        /// The file concerned.
        path: PathBuf,
        /// Why it could not be read further.
        message: String,
    },
    /// This format cannot be read (or written) by this build.
    Unsupported {
        /// The format.
        format: FileFormat,
        /// What it cannot be (`read`, `written`).
        what: &'static str,
    },
}

impl fmt::Display for ConvertError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            ConvertError::UnknownExtension(p) => write!(
                f,
                "{}: unknown extension (use .cmc, .log, .pcapng, .pcap, .asc, .trc, .blf, .mf4 \
                 or .parquet)",
                p.display()
            ),
            ConvertError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            ConvertError::Parse {
                path,
                line,
                message,
            } => write!(f, "{}:{line}: {message}", path.display()),
            ConvertError::Record(e) => write!(f, "{e}"),
            ConvertError::Incomplete { path, message } => {
                write!(f, "{}: {message}", path.display())
            }
            ConvertError::Unsupported { format, what } => {
                write!(f, "{} files cannot be {what}", format.name())
            }
        }
    }
}

impl std::error::Error for ConvertError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            ConvertError::Io { source, .. } => Some(source),
            ConvertError::Record(e) => Some(e),
            _ => None,
        }
    }
}

#[cfg(test)]
mod error_source_tests {
    use super::*;
    use std::error::Error;

    #[test]
    fn wrapped_errors_are_the_source() {
        let io = ConvertError::Io {
            path: "x.log".into(),
            source: io::Error::new(io::ErrorKind::NotFound, "gone"),
        };
        assert_eq!(io.source().unwrap().to_string(), "gone");
        let rec = ConvertError::Record(RecordError::TableFull);
        assert_eq!(
            rec.source().unwrap().to_string(),
            RecordError::TableFull.to_string()
        );
        assert!(ConvertError::UnknownExtension("x.y".into())
            .source()
            .is_none());
    }
}

impl From<RecordError> for ConvertError {
    fn from(e: RecordError) -> Self {
        ConvertError::Record(e)
    }
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Where captured events go. Formats that cannot say "frames were lost here" write
/// what they can (a comment) or nothing; `.cmc` keeps everything.
pub trait FrameWriter: Send {
    /// Writes one frame.
    fn write_frame(&mut self, frame: &CanFrame) -> Result<(), ConvertError>;

    /// `lost` datagrams of a native sender never arrived.
    fn write_loss(
        &mut self,
        _sender: SenderAddr,
        _lost: u64,
        _timestamp_ns: u64,
    ) -> Result<(), ConvertError> {
        Ok(())
    }

    /// The kernel dropped `count` datagrams.
    fn write_kernel_drops(&mut self, _count: u64, _timestamp_ns: u64) -> Result<(), ConvertError> {
        Ok(())
    }

    /// Writes a native datagram's frames, checked whole ([`FrameBatch`]), that came
    /// from `sender`. The default writes them one by one; `.cmc` stores the batch as it
    /// arrived.
    fn write_batch(
        &mut self,
        batch: &FrameBatch<'_>,
        sender: &SenderAddr,
    ) -> Result<(), ConvertError> {
        for mut frame in batch.frames() {
            frame.sender = *sender;
            self.write_frame(&frame)?;
        }
        Ok(())
    }

    /// Writes any event.
    fn write_event(&mut self, event: &Event) -> Result<(), ConvertError> {
        match *event {
            Event::Frame(ref f) => self.write_frame(f),
            Event::Loss {
                sender,
                lost,
                timestamp_ns,
            } => self.write_loss(sender, lost, timestamp_ns),
            Event::KernelDrops {
                count,
                timestamp_ns,
            } => self.write_kernel_drops(count, timestamp_ns),
        }
    }

    /// Flushes to the kernel what is buffered (the file stays open and valid).
    fn flush(&mut self) -> Result<(), ConvertError>;

    /// Completes the file.
    fn finish(self: Box<Self>) -> Result<(), ConvertError>;
}

/// Options for [`create_writer`].
#[derive(Debug, Clone, Copy, Default)]
pub struct WriterOptions {
    /// `.cmc` segment size and sync policy.
    pub recorder: RecorderOptions,
    /// Which TRC version a `.trc` is written in (2.1 unless asked for 1.1).
    pub trc_version: trc::TrcVersion,
    /// Write `.blf` containers without zlib (stored), instead of compressed.
    pub blf_uncompressed: bool,
    /// `.mf4`: compressed data blocks.
    pub mf4: mf4::Mf4Options,
    /// `.parquet`: compression, row-group size, partitions.
    #[cfg(feature = "parquet")]
    pub parquet: parquet::ParquetOptions,
}

/// Opens a writer for `path` in `format` (see [`FileFormat::from_path`]).
pub fn create_writer(
    path: &Path,
    format: FileFormat,
    opts: WriterOptions,
) -> Result<Box<dyn FrameWriter>, ConvertError> {
    match format {
        FileFormat::Cmc => Ok(Box::new(CmcWriter(Recorder::create(path, opts.recorder)?))),
        FileFormat::Log => {
            let file = File::create(path).map_err(io_err(path))?;
            Ok(Box::new(LogWriter {
                out: BufWriter::with_capacity(1 << 16, file),
                line: Vec::with_capacity(256),
                path: path.to_path_buf(),
            }))
        }
        FileFormat::Pcapng => Ok(Box::new(pcap::PcapngWriter::create(path)?)),
        FileFormat::Pcap => Ok(Box::new(pcap::PcapWriter::create(path)?)),
        FileFormat::Asc => Ok(Box::new(asc::AscWriter::create(path)?)),
        FileFormat::Trc => Ok(Box::new(trc::TrcWriter::create(path, opts.trc_version)?)),
        FileFormat::Blf => Ok(Box::new(blf::BlfWriter::create(
            path,
            !opts.blf_uncompressed,
        )?)),
        FileFormat::Mf4 => Ok(Box::new(mf4::Mf4Writer::create(path, opts.mf4)?)),
        #[cfg(feature = "parquet")]
        FileFormat::Parquet => Ok(Box::new(parquet::ParquetWriter::create(
            path,
            opts.parquet,
        )?)),
        #[cfg(not(feature = "parquet"))]
        FileFormat::Parquet => Err(ConvertError::Unsupported {
            format,
            what: "written by a build without the `parquet` feature",
        }),
    }
}

struct CmcWriter(Recorder);

impl FrameWriter for CmcWriter {
    fn write_frame(&mut self, frame: &CanFrame) -> Result<(), ConvertError> {
        Ok(self.0.write_frame(frame)?)
    }
    fn write_loss(&mut self, sender: SenderAddr, lost: u64, ts: u64) -> Result<(), ConvertError> {
        Ok(self.0.write_loss(sender, lost, ts)?)
    }
    fn write_kernel_drops(&mut self, count: u64, ts: u64) -> Result<(), ConvertError> {
        Ok(self.0.write_kernel_drops(count, ts)?)
    }
    /// One frame batch record: the datagram's records as they arrived (cmc-format.md).
    fn write_batch(
        &mut self,
        batch: &FrameBatch<'_>,
        sender: &SenderAddr,
    ) -> Result<(), ConvertError> {
        Ok(self.0.write_batch(batch, sender)?)
    }
    fn flush(&mut self) -> Result<(), ConvertError> {
        Ok(self.0.flush()?)
    }
    fn finish(self: Box<Self>) -> Result<(), ConvertError> {
        self.0.finish()?;
        Ok(())
    }
}

/// candump log: frames as `(sec.usec) iface ID#DATA`; losses as `#` comments, which
/// every candump log reader skips.
struct LogWriter {
    out: BufWriter<File>,
    line: Vec<u8>,
    /// The file concerned.
    path: PathBuf,
}

impl FrameWriter for LogWriter {
    fn write_frame(&mut self, frame: &CanFrame) -> Result<(), ConvertError> {
        self.line.clear();
        candump::write_log_line(frame, &mut self.line);
        self.out.write_all(&self.line).map_err(io_err(&self.path))
    }
    fn write_loss(&mut self, sender: SenderAddr, lost: u64, ts: u64) -> Result<(), ConvertError> {
        writeln!(
            self.out,
            "# canmc: {lost} datagrams lost from {sender:?} before ({}.{:06})",
            ts / 1_000_000_000,
            ts % 1_000_000_000 / 1000
        )
        .map_err(io_err(&self.path))
    }
    fn write_kernel_drops(&mut self, count: u64, ts: u64) -> Result<(), ConvertError> {
        writeln!(
            self.out,
            "# canmc: kernel dropped {count} datagrams before ({}.{:06})",
            ts / 1_000_000_000,
            ts % 1_000_000_000 / 1000
        )
        .map_err(io_err(&self.path))
    }
    fn flush(&mut self) -> Result<(), ConvertError> {
        self.out.flush().map_err(io_err(&self.path))
    }
    fn finish(mut self: Box<Self>) -> Result<(), ConvertError> {
        self.out.flush().map_err(io_err(&self.path))?;
        self.out.get_ref().sync_all().map_err(io_err(&self.path))
    }
}

/// A loss that canmc wrote into a text capture as a comment (`# canmc: …` in a `.log`,
/// `// canmc: …` in a `.asc`), read back so that conversions keep it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum LossNote {
    Loss { sender: SenderAddr, lost: u64 },
    KernelDrops { count: u64 },
}

impl LossNote {
    /// The event this note stands for, at `timestamp_ns`.
    pub(crate) fn event(self, timestamp_ns: u64) -> Event {
        match self {
            LossNote::Loss { sender, lost } => Event::Loss {
                sender,
                lost,
                timestamp_ns,
            },
            LossNote::KernelDrops { count } => Event::KernelDrops {
                count,
                timestamp_ns,
            },
        }
    }
}

/// Parses the text of a comment after its marker: `canmc: N datagrams lost from ADDR
/// before T` or `canmc: kernel dropped N datagrams before T`, where T is `S.UUUUUU`,
/// optionally in parentheses. Returns the note and T in ns; `None` for any other text.
pub(crate) fn parse_loss_note(text: &str) -> Option<(LossNote, u64)> {
    let rest = text.trim().strip_prefix("canmc: ")?;
    let (what, time) = rest.rsplit_once(" before ")?;
    let time = time.trim();
    let time = time
        .strip_prefix('(')
        .and_then(|t| t.strip_suffix(')'))
        .unwrap_or(time);
    let (secs, micros) = time.split_once('.')?;
    if micros.len() != 6 {
        return None;
    }
    let ns = secs
        .parse::<u64>()
        .ok()?
        .checked_mul(1_000_000_000)?
        .checked_add(micros.parse::<u64>().ok()? * 1000)?;
    Some((parse_loss_what(what)?, ns))
}

/// The part of a loss note before ` before …`: `N datagrams lost from ADDR` or
/// `kernel dropped N datagrams`.
pub(crate) fn parse_loss_what(what: &str) -> Option<LossNote> {
    if let Some(count) = what
        .strip_prefix("kernel dropped ")
        .and_then(|w| w.strip_suffix(" datagrams"))
    {
        return Some(LossNote::KernelDrops {
            count: count.parse().ok()?,
        });
    }
    let (lost, sender) = what.split_once(" datagrams lost from ")?;
    let sender = match sender {
        "-" => SenderAddr::NONE,
        addr => SenderAddr::from(addr.parse::<std::net::SocketAddr>().ok()?),
    };
    Some(LossNote::Loss {
        sender,
        lost: lost.parse().ok()?,
    })
}

/// The 1-based channel column of ASC and TRC: python-can's `channel2int(channel) + 1`,
/// or 1 without a number.
pub(crate) fn channel_number(ch: &Channel) -> i64 {
    match ch.get() {
        ChannelRef::Int(n) => n.saturating_add(1),
        ChannelRef::Str(s) => {
            let digits = s.len() - s.bytes().rev().take_while(u8::is_ascii_digit).count();
            s[digits..]
                .parse::<i64>()
                .map_or(1, |n| n.saturating_add(1))
        }
        ChannelRef::None => 1,
    }
}

/// Reads a text capture line by line, for the line-based formats. `parse` gets each
/// line (with its end) and returns `Ok(true)` to go on, `Ok(false)` to stop, or
/// `Err(message)` for a line that does not parse: that stops reading with an error
/// naming the file and line, or, with `skip_bad`, is counted in `stats.skipped`.
///
/// Bytes that are not UTF-8 (a Latin-1 month name, a stray 0xFF) do not stop the read:
/// they become U+FFFD, so a line is refused only if the frame in it does not parse.
pub(crate) fn read_lines(
    path: &Path,
    skip_bad: bool,
    stats: &mut ReadStats,
    parse: &mut dyn FnMut(&str) -> Result<bool, String>,
) -> Result<(), ConvertError> {
    let file = File::open(path).map_err(io_err(path))?;
    let mut reader = BufReader::with_capacity(1 << 16, file);
    let mut lines = LineParser {
        path,
        skip_bad,
        stats,
        parse,
        number: 0,
    };
    // Lines are parsed where they lie in the read buffer; only a line that spans two
    // reads is copied (into `carry`). Measured: the copy and the lossy UTF-8 pass of
    // `read_until` + `from_utf8_lossy` were 16 % of `.log` → `.log` (docs/perf.md).
    let mut carry: Vec<u8> = Vec::with_capacity(512);
    loop {
        let buf = reader.fill_buf().map_err(io_err(path))?;
        if buf.is_empty() {
            if !carry.is_empty() {
                lines.line(&carry)?;
            }
            return Ok(());
        }
        let mut done = 0;
        for end in memchr::memchr_iter(b'\n', buf) {
            let go_on = if carry.is_empty() {
                lines.line(&buf[done..=end])?
            } else {
                carry.extend_from_slice(&buf[done..=end]);
                let go_on = lines.line(&carry)?;
                carry.clear();
                go_on
            };
            done = end + 1;
            if !go_on {
                return Ok(());
            }
        }
        carry.extend_from_slice(&buf[done..]);
        let n = buf.len();
        reader.consume(n);
    }
}

/// One line at a time for [`read_lines`]: numbering, UTF-8, and what a bad line does.
struct LineParser<'a> {
    path: &'a Path,
    skip_bad: bool,
    stats: &'a mut ReadStats,
    parse: &'a mut dyn FnMut(&str) -> Result<bool, String>,
    number: u64,
}

impl LineParser<'_> {
    /// Parses one line (with its end); `Ok(false)` when the caller asked to stop.
    fn line(&mut self, raw: &[u8]) -> Result<bool, ConvertError> {
        self.number += 1;
        let line = match std::str::from_utf8(raw) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(raw),
        };
        match (self.parse)(&line) {
            Ok(true) => Ok(true),
            Ok(false) => {
                self.stats.stopped = true;
                Ok(false)
            }
            Err(_) if self.skip_bad => {
                self.stats.skipped += 1;
                Ok(true)
            }
            Err(message) => Err(ConvertError::Parse {
                path: self.path.to_path_buf(),
                line: self.number,
                message: format!("{message} (use --skip-bad to skip such lines)"),
            }),
        }
    }
}

/// Options for [`read_events`].
#[derive(Debug, Clone, Copy, Default)]
pub struct ReadOptions {
    /// Skip lines that do not parse (counted in [`ReadStats::skipped`]) instead of
    /// stopping at the first with an error naming file and line.
    pub skip_bad: bool,
    /// Start at the first event at or after this time (a `.cmc` seeks by its index).
    pub start_ns: Option<u64>,
}

impl ReadOptions {
    /// Hands `event` (at `timestamp_ns`) to `f` unless it is before `start_ns`, counting
    /// it in `events`; the result is whether to go on.
    pub(crate) fn offer(
        &self,
        timestamp_ns: u64,
        event: &Event,
        events: &mut u64,
        f: &mut dyn FnMut(&Event) -> bool,
    ) -> bool {
        if self.start_ns.is_some_and(|t| timestamp_ns < t) {
            return true;
        }
        *events += 1;
        f(event)
    }
}

/// What [`read_events`] went through.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ReadStats {
    /// Events delivered (frames, losses, kernel drops).
    pub events: u64,
    /// Bad lines skipped (with `skip_bad`).
    pub skipped: u64,
    /// Objects of kinds that carry no frame for canmc, skipped (BLF objects other than
    /// CAN frames, errors and canmc's notes).
    pub other_objects: u64,
    /// The callback asked to stop.
    pub stopped: bool,
    /// For a `.cmc`: how its records ended (`None` for other formats, or when the
    /// callback stopped first). Anything but `Finished` and `Unfinished` means records
    /// after the last event could not be read; [`ReadStats::problem`] words it.
    pub cmc_end: Option<End>,
}

impl ReadStats {
    /// A one-line description of why reading stopped before the end of the data, if
    /// it did: a `.cmc` whose file shrank while it was read, or with a corrupt record.
    pub fn problem(&self) -> Option<String> {
        match self.cmc_end? {
            End::Finished | End::Unfinished => None,
            End::Truncated { segment } => Some(format!(
                "the file shrank while it was read (segment {segment}); stopped at the cut \
                 after {} events",
                self.events
            )),
            End::Corrupt {
                segment,
                offset,
                reason,
            } => Some(format!(
                "corrupt record ({}) in segment {segment} at byte {offset}; stopped there \
                 after {} events",
                reason.describe(),
                self.events
            )),
        }
    }

    /// [`ReadStats::problem`] as an error naming `path`.
    pub fn check(&self, path: &Path) -> Result<(), ConvertError> {
        match self.problem() {
            Some(message) => Err(ConvertError::Incomplete {
                path: path.to_path_buf(),
                message,
            }),
            None => Ok(()),
        }
    }
}

/// Reads the events of a capture in order and hands each to `f`, which returns `false`
/// to stop early.
pub fn read_events(
    path: &Path,
    format: FileFormat,
    opts: ReadOptions,
    f: &mut dyn FnMut(&Event) -> bool,
) -> Result<ReadStats, ConvertError> {
    let mut stats = ReadStats::default();
    match format {
        FileFormat::Cmc => {
            let recording = Recording::open(path)?;
            let mut records = match opts.start_ns {
                Some(t) => recording.seek(t),
                None => recording.iter(),
            };
            for r in records.by_ref() {
                let ev = match r {
                    Record::Frame(v) => Event::Frame(v.to_frame()),
                    Record::Loss {
                        sender,
                        lost,
                        timestamp_ns,
                    } => Event::Loss {
                        sender,
                        lost,
                        timestamp_ns,
                    },
                    Record::KernelDrops {
                        count,
                        timestamp_ns,
                    } => Event::KernelDrops {
                        count,
                        timestamp_ns,
                    },
                };
                stats.events += 1;
                if !f(&ev) {
                    stats.stopped = true;
                    break;
                }
            }
            stats.cmc_end = records.end().copied();
        }
        FileFormat::Log => {
            let mut events = 0u64;
            read_lines(path, opts.skip_bad, &mut stats, &mut |line| {
                if let Some((note, ts)) = line
                    .trim_start()
                    .strip_prefix('#')
                    .and_then(parse_loss_note)
                {
                    return Ok(opts.offer(ts, &note.event(ts), &mut events, f));
                }
                let frame = match candump::parse_log_line(line) {
                    Ok(Some(frame)) => frame,
                    Ok(None) => return Ok(true),
                    Err(e) => return Err(e.to_string()),
                };
                Ok(opts.offer(frame.timestamp_ns, &Event::Frame(frame), &mut events, f))
            })?;
            stats.events = events;
        }
        FileFormat::Asc => return asc::read(path, opts, f),
        FileFormat::Trc => return trc::read(path, opts, f),
        FileFormat::Blf => return blf::read(path, opts, f),
        FileFormat::Mf4 => return mf4::read(path, opts, f),
        #[cfg(feature = "parquet")]
        FileFormat::Parquet => return parquet::read(path, opts, f),
        #[cfg(not(feature = "parquet"))]
        FileFormat::Parquet => {
            return Err(ConvertError::Unsupported {
                format,
                what: "read by a build without the `parquet` feature",
            })
        }
        FileFormat::Pcapng | FileFormat::Pcap => {
            let mut failed = None;
            pcap::read_packets(path, format == FileFormat::Pcapng, &mut |p| {
                let frame = match p.frame {
                    Ok(frame) => frame,
                    Err(_) if opts.skip_bad => {
                        stats.skipped += 1;
                        return true;
                    }
                    Err(message) => {
                        failed = Some(ConvertError::Parse {
                            path: path.to_path_buf(),
                            line: p.number,
                            message: format!(
                                "packet {}: {message} (use --skip-bad to skip such packets)",
                                p.number
                            ),
                        });
                        return false;
                    }
                };
                if opts.start_ns.is_some_and(|t| frame.timestamp_ns < t) {
                    return true;
                }
                // Losses canmc noted on this packet happened before it: at its time.
                let notes = p.comment.into_iter().flat_map(str::lines).filter_map(|l| {
                    parse_loss_what(
                        l.strip_prefix("canmc: ")?
                            .strip_suffix(" before this packet")?,
                    )
                });
                for note in notes {
                    stats.events += 1;
                    if !f(&note.event(frame.timestamp_ns)) {
                        stats.stopped = true;
                        return false;
                    }
                }
                stats.events += 1;
                if !f(&Event::Frame(frame)) {
                    stats.stopped = true;
                    return false;
                }
                true
            })?;
            if let Some(e) = failed {
                return Err(e);
            }
        }
    }
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn events() -> Vec<Event> {
        let mut frame: CanFrame = "123#DEADBEEF".parse().unwrap();
        frame.timestamp_ns = 1_700_000_000_100_000_000;
        let mut later = frame;
        later.timestamp_ns += 2_000_000;
        let v4: std::net::SocketAddr = "127.0.0.1:43113".parse().unwrap();
        let v6: std::net::SocketAddr = "[fd00::2]:5000".parse().unwrap();
        vec![
            Event::Frame(frame),
            Event::Loss {
                sender: SenderAddr::from(v4),
                lost: 17,
                timestamp_ns: 1_700_000_000_101_000_000,
            },
            Event::KernelDrops {
                count: 3,
                timestamp_ns: 1_700_000_000_101_500_000,
            },
            Event::Loss {
                sender: SenderAddr::from(v6),
                lost: 1,
                timestamp_ns: 1_700_000_000_101_700_000,
            },
            Event::Frame(later),
        ]
    }

    /// Losses written as comments into a `.log` or `.asc` come back as the same events,
    /// in place, so `.cmc` → text → `.cmc` keeps them.
    #[test]
    fn loss_comments_read_back_from_log_and_asc() {
        let dir = std::env::temp_dir().join(format!("canmc-notes-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        for (name, format) in [("n.log", FileFormat::Log), ("n.asc", FileFormat::Asc)] {
            let path = dir.join(name);
            let mut w = create_writer(&path, format, WriterOptions::default()).unwrap();
            for e in events() {
                w.write_event(&e).unwrap();
            }
            w.finish().unwrap();
            let mut got = Vec::new();
            let stats = read_events(&path, format, ReadOptions::default(), &mut |e| {
                got.push(*e);
                true
            })
            .unwrap();
            assert_eq!(stats.events, 5, "{name}");
            let text = std::fs::read_to_string(&path).unwrap();
            assert_eq!(got.len(), 5, "{name}:\n{text}");
            for (g, want) in got.iter().zip(events()) {
                match (g, want) {
                    (Event::Frame(a), Event::Frame(b)) => {
                        assert_eq!((a.id, a.payload()), (b.id, b.payload()), "{name}");
                        assert_eq!(a.timestamp_ns, b.timestamp_ns, "{name}");
                    }
                    (a, b) => assert_eq!(*a, b, "{name}:\n{text}"),
                }
            }
        }
        let _ = std::fs::remove_dir_all(&dir);
    }

    /// pcapng keeps losses as comments on the next packet: they come back, in order,
    /// stamped with that packet's time.
    #[test]
    fn loss_comments_read_back_from_pcapng() {
        let dir = std::env::temp_dir().join(format!("canmc-notes-ng-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("n.pcapng");
        let mut w = create_writer(&path, FileFormat::Pcapng, WriterOptions::default()).unwrap();
        for e in events() {
            w.write_event(&e).unwrap();
        }
        w.finish().unwrap();
        let mut got = Vec::new();
        read_events(
            &path,
            FileFormat::Pcapng,
            ReadOptions::default(),
            &mut |e| {
                got.push(*e);
                true
            },
        )
        .unwrap();
        let want = events();
        let Event::Frame(last) = want[4] else {
            unreachable!()
        };
        assert_eq!(got.len(), 5, "{got:?}");
        assert!(matches!(got[0], Event::Frame(f) if f.id == 0x123));
        for (g, w) in got[1..4].iter().zip(&want[1..4]) {
            match (*g, *w) {
                (
                    Event::Loss {
                        sender,
                        lost,
                        timestamp_ns,
                    },
                    Event::Loss {
                        sender: s2,
                        lost: l2,
                        ..
                    },
                ) => assert_eq!((sender, lost, timestamp_ns), (s2, l2, last.timestamp_ns)),
                (
                    Event::KernelDrops {
                        count,
                        timestamp_ns,
                    },
                    Event::KernelDrops { count: c2, .. },
                ) => assert_eq!((count, timestamp_ns), (c2, last.timestamp_ns)),
                other => panic!("{other:?}"),
            }
        }
        assert!(matches!(got[4], Event::Frame(f) if f.timestamp_ns == last.timestamp_ns));
        let _ = std::fs::remove_dir_all(&dir);
    }

    #[test]
    fn loss_notes_parse_only_what_canmc_writes() {
        let ok = parse_loss_note("canmc: 5 datagrams lost from 10.0.0.1:7 before (12.000034)");
        assert_eq!(
            ok,
            Some((
                LossNote::Loss {
                    sender: SenderAddr::from("10.0.0.1:7".parse::<std::net::SocketAddr>().unwrap()),
                    lost: 5
                },
                12_000_034_000
            ))
        );
        assert_eq!(
            parse_loss_note(" canmc: kernel dropped 9 datagrams before 0.500000"),
            Some((LossNote::KernelDrops { count: 9 }, 500_000_000))
        );
        assert_eq!(
            parse_loss_note("canmc: 2 datagrams lost from - before (1.000000)"),
            Some((
                LossNote::Loss {
                    sender: SenderAddr::NONE,
                    lost: 2
                },
                1_000_000_000
            ))
        );
        for bad in [
            "a comment",
            "canmc: 5 datagrams lost from nowhere before (1.000000)",
            "canmc: x datagrams lost from - before (1.000000)",
            "canmc: kernel dropped 9 datagrams before 1.5",
            "canmc: kernel dropped 9 datagrams",
            "canmc: 99999999999999999999 datagrams lost from - before (1.000000)",
            "canmc: kernel dropped 1 datagrams before (99999999999999999999.000000)",
        ] {
            assert_eq!(parse_loss_note(bad), None, "{bad}");
        }
    }
}
