//! PEAK TRC text traces (PCAN-View, PCAN-Explorer, PCAN-Basic's tracer), written and
//! read from PEAK's "PCAN Trace File Format" description.
//!
//! Read: versions 1.0, 1.1, 1.2, 1.3, 2.0 and 2.1 (`;$FILEVERSION=…`; none means 1.0).
//! Columns per version:
//!
//! | version | columns |
//! |---|---|
//! | 1.0 | `N)` offset-ms ID DLC data… (`RTR` instead of data for a remote frame) |
//! | 1.1 | `N)` offset-ms type ID DLC data… |
//! | 1.2 | `N)` offset-ms bus type ID DLC data… |
//! | 1.3 | `N)` offset-ms bus type ID `-` DLC data… |
//! | 2.0, 2.1 | as `;$COLUMNS=` says: `N` number, `O` offset-ms, `T` type, `B` bus, `I` ID, `d` Rx/Tx, `R` reserved, `l` data length, `L` DLC, `D` data (last) |
//!
//! Types: `Rx`/`Tx` (1.x), `DT` data, `RR` remote, `FD` CAN FD, `FB` FD + BRS, `FE`
//! FD + ESI, `BI` FD + BRS + ESI, `ER` error frame (2.x), `Error` (1.x); status,
//! error-counter and event lines (`ST`, `EC`, `EV`, `Warng`) carry no frame and are
//! skipped. An ID of more than 4 hex digits is extended. Times are the `;$STARTTIME`
//! (days since 1899-12-30, UTC, as python-can reads it) plus each line's offset; without
//! a start time they count from 0. The bus `B` (1-based) becomes `Channel::int(B - 1)`,
//! as in ASC; versions without a bus column give no channel.
//!
//! Written: 2.1 by default (`N,O,T,B,I,d,R,L,D`, every frame kind, direction and raw
//! DLC kept, offsets in µs), 1.1 on request ([`TrcVersion::V1_1`]: classic data and
//! remote frames only, offsets to 0.1 ms as that version has them). Error frames are
//! `ER` lines whose ID column is the SocketCAN error class and whose data are the 8
//! error bytes (canmc's reading of `ER`; an `ER` line that does not have that shape
//! reads as a bus error). Losses are `;canmc: …` comment lines, read back.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::digits::{
    decimal_len, push_decimal, push_decimal_right, push_hex_bytes, push_signed_right, push_spaces,
};
use super::{
    channel_number, parse_loss_note, ConvertError, FileFormat, FrameWriter, ReadOptions, ReadStats,
};
use crate::event::Event;
use crate::frame::{dlc_to_len, flags, CanFrame, Channel, Direction, SenderAddr, CAN_ERR_FLAG};

/// Which TRC version [`TrcWriter`] writes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TrcVersion {
    /// Version 2.1: every frame kind, bus, direction, DLC.
    #[default]
    V2_1,
    /// Version 1.1 (what older PEAK tools read): classic data and remote frames,
    /// direction, no bus, 0.1 ms offsets.
    V1_1,
}

fn io_err(path: &Path) -> impl Fn(io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

/// Days between 1899-12-30 (the OLE date origin) and 1970-01-01.
const OLE_EPOCH_DAYS: u64 = 25_569;
const NS_PER_DAY: u64 = 86_400_000_000_000;
/// Decimals of the `$STARTTIME` fraction canmc writes: enough to give the start back
/// to the nanosecond.
const START_DECIMALS: u32 = 15;

/// `$STARTTIME` for `ns` (days since 1899-12-30 with [`START_DECIMALS`] decimals).
fn start_time_text(ns: u64) -> String {
    let days = ns / NS_PER_DAY + OLE_EPOCH_DAYS;
    let rem = (ns % NS_PER_DAY) as u128;
    let scale = 10u128.pow(START_DECIMALS);
    let frac = (rem * scale + NS_PER_DAY as u128 / 2) / NS_PER_DAY as u128;
    // rem < a day, so frac < scale unless rounding carried.
    let (days, frac) = if frac >= scale {
        (days + 1, frac - scale)
    } else {
        (days, frac)
    };
    format!("{days}.{frac:0w$}", w = START_DECIMALS as usize)
}

/// Parses `$STARTTIME` to ns since the Unix epoch (exactly, from the decimal digits);
/// a start before 1970 gives 0.
fn parse_start_time(text: &str) -> Option<u64> {
    let (days, frac) = text.trim().split_once('.').unwrap_or((text.trim(), ""));
    if days.is_empty() || !days.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    if !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let days: u64 = days.parse().ok()?;
    let frac = &frac[..frac.len().min(24)];
    let digits: u128 = if frac.is_empty() {
        0
    } else {
        frac.parse().ok()?
    };
    let scale = 10u128.pow(frac.len() as u32);
    let day_ns = (digits * NS_PER_DAY as u128 + scale / 2) / scale;
    let Some(days) = days.checked_sub(OLE_EPOCH_DAYS) else {
        return Some(0);
    };
    days.checked_mul(NS_PER_DAY)?.checked_add(day_ns as u64)
}

/// Parses an offset in ms (`1059.9`, `-0.5`, up to 6 decimals kept) to signed ns.
fn parse_offset(t: &str) -> Option<i64> {
    let (neg, t) = match t.strip_prefix('-') {
        Some(r) => (true, r),
        None => (false, t),
    };
    let (ms, frac) = t.split_once('.').unwrap_or((t, ""));
    if ms.is_empty()
        || !ms.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let ms: i64 = ms.parse().ok()?;
    let mut ns = 0i64;
    for i in 0..6 {
        ns = ns * 10 + frac.as_bytes().get(i).map_or(0, |b| (b - b'0') as i64);
    }
    let v = ms.checked_mul(1_000_000)?.checked_add(ns)?;
    Some(if neg { -v } else { v })
}

/// TRC writer (see the module documentation).
#[derive(Debug)]
pub struct TrcWriter {
    out: BufWriter<File>,
    path: PathBuf,
    version: TrcVersion,
    line: Vec<u8>,
    /// Start time (ns, a whole µs), once the header is out.
    start: Option<u64>,
    number: u64,
}

impl TrcWriter {
    /// Creates `path`; the header follows with the first event, whose time it carries.
    pub fn create(path: &Path, version: TrcVersion) -> Result<TrcWriter, ConvertError> {
        let file = File::create(path).map_err(io_err(path))?;
        Ok(TrcWriter {
            out: BufWriter::with_capacity(1 << 16, file),
            path: path.to_path_buf(),
            version,
            line: Vec::with_capacity(512),
            start: None,
            number: 0,
        })
    }

    fn begin(&mut self, ns: u64) {
        self.line.clear();
        if self.start.is_some() {
            return;
        }
        let s = ns - ns % 1000;
        self.start = Some(s);
        let l = &mut self.line;
        let version = match self.version {
            TrcVersion::V2_1 => "2.1",
            TrcVersion::V1_1 => "1.1",
        };
        let _ = write!(
            l,
            ";$FILEVERSION={version}\r\n;$STARTTIME={}\r\n",
            start_time_text(s)
        );
        match self.version {
            TrcVersion::V2_1 => {
                l.extend_from_slice(b";$COLUMNS=N,O,T,B,I,d,R,L,D\r\n");
            }
            TrcVersion::V1_1 => {}
        }
        let _ = write!(
            l,
            ";\r\n;   Generated by canmc {}\r\n;   Start time: {}.{:06} s since 1970-01-01 UTC\r\n;\r\n",
            env!("CARGO_PKG_VERSION"),
            s / 1_000_000_000,
            s % 1_000_000_000 / 1000
        );
        match self.version {
            TrcVersion::V2_1 => l.extend_from_slice(
                b";   Message   Time    Type    ID     Rx/Tx\r\n\
                  ;   Number    Offset  |  Bus  [hex]  |  Reserved\r\n\
                  ;   |         [ms]    |  |    |      |  |  Data Length Code\r\n\
                  ;   |         |       |  |    |      |  |  |    Data [hex] ...\r\n\
                  ;   |         |       |  |    |      |  |  |    |\r\n\
                  ;---+-- ------+------ +- +- --+----- +- +- +--- +- -- -- -- -- -- -- --\r\n",
            ),
            TrcVersion::V1_1 => l.extend_from_slice(
                b";   Message Number\r\n\
                  ;   |         Time Offset (ms)\r\n\
                  ;   |         |        Type\r\n\
                  ;   |         |        |        ID (hex)\r\n\
                  ;   |         |        |        |     Data Length\r\n\
                  ;   |         |        |        |     |   Data Bytes (hex) ...\r\n\
                  ;   |         |        |        |     |   |\r\n\
                  ;---+--   ----+----  --+--  ----+---  +  -+ -- -- -- -- -- -- --\r\n",
            ),
        }
    }

    /// The offset column: ms with 3 decimals (2.1) or 1 (1.1), floored to the unit,
    /// right-aligned in `width` (no allocation).
    fn push_offset(&mut self, ns: u64, width: usize) {
        let rel = ns as i128 - self.start.unwrap_or(0) as i128;
        let (decimals, unit) = match self.version {
            TrcVersion::V2_1 => (3, 1_000i128),
            TrcVersion::V1_1 => (1, 100_000i128),
        };
        let ticks = rel.div_euclid(unit);
        let per_ms = 1_000_000 / unit;
        let (sign, ticks) = if ticks < 0 {
            ("-", -ticks)
        } else {
            ("", ticks)
        };
        let (whole, part) = ((ticks / per_ms) as u64, (ticks % per_ms) as u64);
        let n = sign.len() + decimal_len(whole) + 1 + decimals;
        push_spaces(&mut self.line, width.saturating_sub(n));
        self.line.extend_from_slice(sign.as_bytes());
        push_decimal(&mut self.line, whole, 0);
        self.line.push(b'.');
        push_decimal(&mut self.line, part, decimals);
    }

    fn put(&mut self) -> Result<(), ConvertError> {
        self.out.write_all(&self.line).map_err(io_err(&self.path))
    }
}

impl FrameWriter for TrcWriter {
    fn write_frame(&mut self, frame: &CanFrame) -> Result<(), ConvertError> {
        if self.version == TrcVersion::V1_1 && (frame.is_fd() || frame.is_error()) {
            return Err(ConvertError::Unsupported {
                format: FileFormat::Trc,
                what: "written with CAN FD or error frames in version 1.1 (use 2.1)",
            });
        }
        self.begin(frame.timestamp_ns);
        self.number += 1;
        let dir = match frame.direction() {
            Direction::Rx => "Rx",
            Direction::Tx => "Tx",
        };
        let mut id_buf = [0u8; 8];
        let digits = if frame.is_error() || frame.is_extended() {
            8
        } else {
            4
        };
        for (i, d) in id_buf[..digits].iter_mut().enumerate() {
            *d = b"0123456789ABCDEF"[((frame.id >> (4 * (digits - 1 - i))) & 0xF) as usize];
        }
        // Hex digits only: always UTF-8.
        let id = std::str::from_utf8(&id_buf[..digits]).unwrap_or("0");
        match self.version {
            TrcVersion::V2_1 => {
                let kind = match (frame.is_fd(), frame.brs(), frame.esi()) {
                    _ if frame.is_error() => "ER",
                    _ if frame.is_remote() => "RR",
                    (false, _, _) => "DT",
                    (true, false, false) => "FD",
                    (true, true, false) => "FB",
                    (true, false, true) => "FE",
                    (true, true, true) => "BI",
                };
                // `{number:>7} {offset:>13} {kind} {bus:>2} {id:>8} {dir} -  {dlc:<4} DATA`,
                // by hand: `write!` with widths was most of the writer's time.
                push_decimal_right(&mut self.line, self.number, 7);
                self.line.push(b' ');
                self.push_offset(frame.timestamp_ns, 13);
                let line = &mut self.line;
                line.push(b' ');
                line.extend_from_slice(kind.as_bytes());
                line.push(b' ');
                push_signed_right(line, channel_number(&frame.channel), 2);
                line.push(b' ');
                push_spaces(line, 8 - id.len());
                line.extend_from_slice(id.as_bytes());
                line.push(b' ');
                line.extend_from_slice(dir.as_bytes());
                line.extend_from_slice(b" -  ");
                let dlc = if frame.is_error() { 8 } else { frame.dlc() };
                push_decimal(line, dlc as u64, 0);
                push_spaces(line, 4 - decimal_len(dlc as u64) + 1);
                if frame.is_error() {
                    let mut d = [0u8; 8];
                    d[..frame.len as usize].copy_from_slice(&frame.data[..frame.len as usize]);
                    push_hex_bytes(&mut self.line, &d);
                } else {
                    push_hex_bytes(&mut self.line, frame.payload());
                }
            }
            TrcVersion::V1_1 => {
                let _ = write!(self.line, "{:>6}) ", self.number);
                self.push_offset(frame.timestamp_ns, 11);
                let _ = write!(self.line, "  {dir}  {id:>8}  {}  ", frame.dlc());
                if frame.is_remote() {
                    self.line.extend_from_slice(b"RTR");
                } else {
                    push_hex_bytes(&mut self.line, frame.payload());
                }
            }
        }
        while self.line.last() == Some(&b' ') {
            self.line.pop();
        }
        self.line.extend_from_slice(b"\r\n");
        self.put()
    }

    fn write_loss(&mut self, sender: SenderAddr, lost: u64, ts: u64) -> Result<(), ConvertError> {
        self.begin(ts);
        let _ = write!(
            self.line,
            ";canmc: {lost} datagrams lost from {sender:?} before ({}.{:06})\r\n",
            ts / 1_000_000_000,
            ts % 1_000_000_000 / 1000
        );
        self.put()
    }

    fn write_kernel_drops(&mut self, count: u64, ts: u64) -> Result<(), ConvertError> {
        self.begin(ts);
        let _ = write!(
            self.line,
            ";canmc: kernel dropped {count} datagrams before ({}.{:06})\r\n",
            ts / 1_000_000_000,
            ts % 1_000_000_000 / 1000
        );
        self.put()
    }

    fn flush(&mut self) -> Result<(), ConvertError> {
        self.out.flush().map_err(io_err(&self.path))
    }

    fn finish(mut self: Box<Self>) -> Result<(), ConvertError> {
        if self.start.is_none() {
            let now = std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos() as u64);
            self.begin(now);
            self.put()?;
        }
        self.out.flush().map_err(io_err(&self.path))?;
        self.out.get_ref().sync_all().map_err(io_err(&self.path))
    }
}

/// Reading state: what the header said.
#[derive(Debug)]
struct Header {
    /// Version × 10: 10, 11, 12, 13, 20, 21.
    version: u8,
    start_ns: u64,
    /// `$COLUMNS` letters (2.x).
    columns: Vec<u8>,
}

fn bus_error() -> CanFrame {
    let mut f = CanFrame::EMPTY;
    f.flags = flags::ERROR | flags::EXTENDED;
    f.id = 0x80;
    f.len = 8;
    f
}

fn parse_id(t: &str) -> Result<(u32, bool), String> {
    let id = u32::from_str_radix(t, 16).map_err(|_| format!("bad CAN ID '{t}'"))?;
    Ok((id, t.len() > 4))
}

fn parse_bytes(tokens: &[&str], n: usize, out: &mut [u8; 64]) -> Result<(), String> {
    if tokens.len() < n {
        return Err(format!(
            "{} data bytes where the length says {n}",
            tokens.len()
        ));
    }
    for (d, t) in out.iter_mut().zip(&tokens[..n]) {
        *d = u8::from_str_radix(t, 16).map_err(|_| format!("bad data byte '{t}'"))?;
    }
    Ok(())
}

/// A classic data or remote frame from its ID text, DLC and data tokens.
fn classic(
    id_text: &str,
    dlc: u8,
    remote: bool,
    data: &[&str],
    dir: Direction,
) -> Result<CanFrame, String> {
    if dlc > 15 {
        return Err(format!("DLC {dlc} is over 15"));
    }
    let (id, ext) = parse_id(id_text)?;
    let mut f = CanFrame::EMPTY;
    f.id = id;
    f.flags = if ext { flags::EXTENDED } else { 0 };
    f.len = dlc.min(8);
    if dlc > 8 {
        f.raw_dlc = dlc;
    }
    if remote {
        f.flags |= flags::RTR;
    } else {
        parse_bytes(data, f.len as usize, &mut f.data)?;
    }
    f.set_direction(dir);
    f.validate().map_err(|e| e.to_string())?;
    Ok(f)
}

fn direction(t: &str) -> Direction {
    if t.eq_ignore_ascii_case("Tx") {
        Direction::Tx
    } else {
        Direction::Rx
    }
}

fn num<T: std::str::FromStr>(t: Option<&&str>, what: &str) -> Result<T, String> {
    let t = t.ok_or_else(|| format!("line ends before the {what}"))?;
    t.parse().map_err(|_| format!("bad {what} '{t}'"))
}

/// One frame line of version 1.x; `Ok(None)` for lines without a frame.
fn parse_v1(h: &Header, tok: &[&str]) -> Result<Option<(CanFrame, i64)>, String> {
    let mut i = 0;
    // The message number ends in ')' (it may be missing in hand-made 1.0 files).
    if tok.first().is_some_and(|t| t.ends_with(')')) {
        i = 1;
    }
    let offset = tok
        .get(i)
        .and_then(|t| parse_offset(t))
        .ok_or("bad time offset")?;
    i += 1;
    let mut bus = None;
    if h.version >= 12 {
        bus = Some(num::<i64>(tok.get(i), "bus")?);
        i += 1;
    }
    let mut dir = Direction::Rx;
    if h.version >= 11 {
        let t = *tok.get(i).ok_or("line ends before the type")?;
        i += 1;
        match t {
            "Rx" | "Tx" => dir = direction(t),
            "Error" => {
                let mut f = bus_error();
                f.channel = bus.map_or(Channel::NONE, |b| Channel::int(b - 1));
                return Ok(Some((f, offset)));
            }
            _ => return Ok(None),
        }
    }
    let id_text = *tok.get(i).ok_or("line ends before the ID")?;
    i += 1;
    if h.version == 10 && id_text.eq_ignore_ascii_case("FFFFFFFF") {
        // Bus status information, not a frame.
        return Ok(None);
    }
    if h.version >= 13 {
        i += 1; // reserved '-'
    }
    let dlc = num::<u8>(tok.get(i), "DLC")?;
    i += 1;
    let rest = tok.get(i..).unwrap_or(&[]);
    let remote = rest.first().is_some_and(|t| t.eq_ignore_ascii_case("RTR"));
    let mut f = classic(id_text, dlc, remote, rest, dir)?;
    f.channel = bus.map_or(Channel::NONE, |b| Channel::int(b.saturating_sub(1)));
    Ok(Some((f, offset)))
}

/// One frame line of version 2.x.
fn parse_v2(h: &Header, tok: &[&str]) -> Result<Option<(CanFrame, i64)>, String> {
    let col = |c: u8| h.columns.iter().position(|&x| x == c);
    let get = |c: u8| col(c).and_then(|i| tok.get(i).copied());
    let kind = get(b'T').ok_or("line without a type")?;
    let offset = get(b'O').and_then(parse_offset).ok_or("bad time offset")?;
    let channel = match get(b'B') {
        Some(b) => Channel::int(
            b.parse::<i64>()
                .map_err(|_| format!("bad bus '{b}'"))?
                .saturating_sub(1),
        ),
        None => Channel::NONE,
    };
    let data_at = col(b'D').unwrap_or(h.columns.len());
    let data = tok.get(data_at..).unwrap_or(&[]);
    let dir = get(b'd').map_or(Direction::Rx, direction);
    let dlc: Option<u8> = match get(b'L') {
        Some(t) => Some(t.parse().map_err(|_| format!("bad DLC '{t}'"))?),
        None => None,
    };
    let length: Option<usize> = match get(b'l') {
        Some(t) => Some(t.parse().map_err(|_| format!("bad data length '{t}'"))?),
        None => None,
    };
    let id_text = get(b'I');
    let mut f = match kind {
        "DT" | "RR" => {
            let dlc = match (dlc, length) {
                (Some(d), _) => d,
                (None, Some(l)) if l <= 8 => l as u8,
                (None, Some(l)) => return Err(format!("classic frame of {l} bytes")),
                (None, None) => return Err("line without DLC or length".into()),
            };
            classic(
                id_text.ok_or("line without ID")?,
                dlc,
                kind == "RR",
                data,
                dir,
            )?
        }
        "FD" | "FB" | "FE" | "BI" => {
            let len = match (length, dlc) {
                (Some(l), _) => l,
                (None, Some(d)) if d <= 15 => dlc_to_len(d) as usize,
                (None, Some(d)) => return Err(format!("DLC {d} is over 15")),
                (None, None) => return Err("line without DLC or length".into()),
            };
            if len > 64 {
                return Err(format!("data length {len} is over 64"));
            }
            let (id, ext) = parse_id(id_text.ok_or("line without ID")?)?;
            let mut fl = flags::FD | if ext { flags::EXTENDED } else { 0 };
            if matches!(kind, "FB" | "BI") {
                fl |= flags::BRS;
            }
            if matches!(kind, "FE" | "BI") {
                fl |= flags::ESI;
            }
            let mut bytes = [0u8; 64];
            parse_bytes(data, len, &mut bytes)?;
            let mut f = CanFrame::new(id, fl, &bytes[..len]).map_err(|e| e.to_string())?;
            f.set_direction(dir);
            f
        }
        "ER" => {
            // canmc's shape: the error class as ID, 8 data bytes; otherwise a bus error.
            let mut f = bus_error();
            let mut bytes = [0u8; 64];
            if let Some(class) = id_text
                .and_then(|t| u32::from_str_radix(t, 16).ok())
                .filter(|&c| c & !(CAN_ERR_FLAG - 1) == 0)
            {
                if data.len() == 8 && parse_bytes(data, 8, &mut bytes).is_ok() {
                    f.id = class;
                    f.data[..8].copy_from_slice(&bytes[..8]);
                }
            }
            f.set_direction(dir);
            f
        }
        // Status, error counters, events, and kinds this build does not know.
        _ => return Ok(None),
    };
    f.channel = channel;
    Ok(Some((f, offset)))
}

/// Reads the frames of a TRC file in order (see the module documentation).
pub fn read(
    path: &Path,
    opts: ReadOptions,
    f: &mut dyn FnMut(&Event) -> bool,
) -> Result<ReadStats, ConvertError> {
    let mut stats = ReadStats::default();
    let mut events = 0u64;
    let mut h = Header {
        version: 10,
        start_ns: 0,
        columns: Vec::new(),
    };
    super::read_lines(path, opts.skip_bad, &mut stats, &mut |line| {
        let line = line.trim();
        if let Some(comment) = line.strip_prefix(';') {
            if let Some(v) = comment.strip_prefix("$FILEVERSION=") {
                h.version = match v.trim() {
                    "1.0" => 10,
                    "1.1" => 11,
                    "1.2" => 12,
                    "1.3" => 13,
                    "2.0" => 20,
                    "2.1" => 21,
                    other => return Err(format!("TRC version {other} is not known")),
                };
            } else if let Some(v) = comment.strip_prefix("$STARTTIME=") {
                h.start_ns = parse_start_time(v).ok_or_else(|| format!("bad start time '{v}'"))?;
            } else if let Some(v) = comment.strip_prefix("$COLUMNS=") {
                h.columns = v
                    .split(',')
                    .filter_map(|c| c.trim().bytes().next())
                    .collect();
            } else if let Some((note, ts)) = parse_loss_note(comment) {
                return Ok(opts.offer(ts, &note.event(ts), &mut events, f));
            }
            return Ok(true);
        }
        if line.is_empty() {
            return Ok(true);
        }
        // At most 10 columns and 64 data bytes: tokens past 96 are not frame data.
        let mut arr = [""; 96];
        let mut n = 0;
        for t in line.split_ascii_whitespace().take(arr.len()) {
            arr[n] = t;
            n += 1;
        }
        let tokens = &arr[..n];
        let parsed = if h.version >= 20 {
            if h.columns.is_empty() {
                Err("TRC 2.x file without a $COLUMNS line".to_string())
            } else {
                parse_v2(&h, tokens)
            }
        } else {
            parse_v1(&h, tokens)
        };
        let Some((mut frame, offset)) = parsed? else {
            return Ok(true);
        };
        frame.timestamp_ns =
            (h.start_ns as i128 + offset as i128).clamp(0, u64::MAX as i128) as u64;
        Ok(opts.offer(frame.timestamp_ns, &Event::Frame(frame), &mut events, f))
    })?;
    stats.events = events;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn read_text(text: &str) -> Result<Vec<CanFrame>, ConvertError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "canmc-trc-{}-{}.trc",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, text).unwrap();
        let mut got = Vec::new();
        let r = read(&path, ReadOptions::default(), &mut |ev| {
            if let Event::Frame(f) = ev {
                got.push(*f);
            }
            true
        });
        let _ = std::fs::remove_file(&path);
        r.map(|_| got)
    }

    #[test]
    fn start_time_is_exact() {
        for ns in [
            0,
            1_700_000_000_123_456_000,
            1_700_000_000_999_999_999,
            86_399_999_999_999,
        ] {
            assert_eq!(parse_start_time(&start_time_text(ns)), Some(ns), "{ns}");
        }
        // python-can's epoch: 25569.0 days is 1970-01-01.
        assert_eq!(parse_start_time("25569"), Some(0));
        assert_eq!(parse_start_time("25569.5"), Some(43_200_000_000_000));
        assert_eq!(parse_start_time("x"), None);
    }

    #[test]
    fn every_version_reads() {
        let v10 = "\
;##########\n\
;   Start time: 12.11.2012 12:00:00.000\n\
     1)      1841  0001  8  00 11 22 33 44 55 66 77\n\
     2)      1842  00000008  4  01 02 03 04\n\
     3)      1843  0100  2  RTR\n\
     4)      1844  FFFFFFFF  4  00 00 00 04\n";
        let got = read_text(v10).unwrap();
        let t: Vec<String> = got.iter().map(|f| f.to_string()).collect();
        assert_eq!(t, ["001#0011223344556677", "00000008#01020304", "100#R2"]);
        assert_eq!(got[0].timestamp_ns, 1_841_000_000);
        assert_eq!(got[0].channel, Channel::NONE);

        let v11 = ";$FILEVERSION=1.1\n;$STARTTIME=25569.5\n\
     1)      1059.9  Rx         0300  8  00 00 00 00 04 00 00 00\n\
     2)      1060.1  Tx     1ABCDEF0  2  AA BB\n\
     3)      1061.0  Warng  FFFFFFFF  4  00 00 00 08 BUSHEAVY\n\
     4)      1062.0  Error      0000  0\n";
        let got = read_text(v11).unwrap();
        assert_eq!(got.len(), 3);
        assert_eq!(got[0].timestamp_ns, 43_200_000_000_000 + 1_059_900_000);
        assert_eq!(got[1].to_string(), "1ABCDEF0#AABB");
        assert_eq!(got[1].direction(), Direction::Tx);
        assert!(got[2].is_error());

        let v12 = ";$FILEVERSION=1.2\n;$STARTTIME=25569\n\
     1)      1059.900 2  Rx        0300  8  00 00 00 00 04 00 00 00\n";
        let got = read_text(v12).unwrap();
        assert_eq!(got[0].channel, Channel::int(1));

        let v13 = ";$FILEVERSION=1.3\n;$STARTTIME=25569\n\
     1)      1059.900 1  Rx        0300 -  8  00 00 00 00 04 00 00 00\n\
     2)      1060.900 1  Tx        0301 -  3  RTR\n";
        let got = read_text(v13).unwrap();
        assert_eq!(got[1].to_string(), "301#R3");
        assert_eq!(got[1].channel, Channel::int(0));

        let v20 = ";$FILEVERSION=2.0\n;$STARTTIME=25569\n;$COLUMNS=N,O,T,I,d,l,D\n\
      1      1059.900 DT     0300 Rx 8    00 00 00 00 04 00 00 00\n\
      2      1060.900 FB     0400 Tx 12   00 01 02 03 04 05 06 07 08 09 0A 0B\n\
      3      1061.000 ST          Rx    00 00 00 08\n\
      4      1062.000 RR     0500 Rx 4\n";
        let got = read_text(v20).unwrap();
        let t: Vec<String> = got.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            t,
            [
                "300#0000000004000000",
                "400##5000102030405060708090A0B",
                "500#R4"
            ]
        );

        let v21 = ";$FILEVERSION=2.1\n;$STARTTIME=25569\n;$COLUMNS=N,O,T,B,I,d,R,L,D\n\
      1      1059.900 DT  1     0300 Rx -  8    00 00 00 00 04 00 00 00\n\
      2      1060.900 FE  2 18EFFF00 Tx -  9    00 01 02 03 04 05 06 07 08 09 0A 0B\n\
      3      1061.900 BI  2     0001 Rx -  0\n\
      4      1062.900 DT  1     0002 Rx -  12   01 02 03 04 05 06 07 08\n\
      5      1063.900 ER  1 00000084 Rx -  8    00 04 00 00 00 00 00 00\n\
      6      1064.900 ER  1          Rx -  5    00 01 02 00 00\n\
      7      1065.900 EC  1          Rx -  2    00 00\n";
        let got = read_text(v21).unwrap();
        let t: Vec<String> = got.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            t,
            [
                "300#0000000004000000",
                "18EFFF00##6000102030405060708090A0B",
                "001##7",
                "002#0102030405060708_C",
                "20000084#0004000000000000",
                "20000080#0000000000000000",
            ]
        );
        assert_eq!(got[1].channel, Channel::int(1));
        assert_eq!(got[1].direction(), Direction::Tx);
    }

    #[test]
    fn bad_lines_name_their_line() {
        let text = ";$FILEVERSION=2.1\n;$STARTTIME=25569\n;$COLUMNS=N,O,T,B,I,d,R,L,D\n\
      1      1059.900 DT  1     0300 Rx -  8    00 00 00\n";
        match read_text(text) {
            Err(ConvertError::Parse {
                line: 4, message, ..
            }) => {
                assert!(message.contains("data bytes"), "{message}")
            }
            other => panic!("{other:?}"),
        }
        assert!(read_text(";$FILEVERSION=9.9\n").is_err());
    }

    #[test]
    fn writer_round_trips_both_versions() {
        let t0 = 1_700_000_000_123_456_789;
        let mut frames = Vec::new();
        for (i, text) in [
            "123#DEADBEEF",
            "1ABCDEF0#R8_F",
            "7FF#1122334455667788_C",
            "123##3001122334455667788990011",
            "123##0",
            "20000084#0004000000000000",
            "000#",
        ]
        .iter()
        .enumerate()
        {
            let mut f: CanFrame = text.parse().unwrap();
            f.timestamp_ns = if i == 2 {
                t0 - 500_000_000
            } else {
                t0 + i as u64 * 1_234_567
            };
            f.channel = Channel::int(i as i64 % 3);
            if i % 2 == 1 {
                f.set_direction(Direction::Tx);
            }
            frames.push(f);
        }
        let path = std::env::temp_dir().join(format!("canmc-trc-w-{}.trc", std::process::id()));
        let mut w = Box::new(TrcWriter::create(&path, TrcVersion::V2_1).unwrap());
        for f in &frames {
            w.write_frame(f).unwrap();
        }
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let got = read_text(&text).unwrap();
        let want: Vec<CanFrame> = frames
            .iter()
            .map(|f| {
                let mut f = *f;
                // µs kept: the start is a whole µs, offsets are floored to the µs.
                f.timestamp_ns -= f.timestamp_ns % 1000;
                f
            })
            .collect();
        assert_eq!(got, want, "{text}");

        let mut w = Box::new(TrcWriter::create(&path, TrcVersion::V1_1).unwrap());
        let classic: Vec<CanFrame> = frames
            .iter()
            .filter(|f| !f.is_fd() && !f.is_error())
            .copied()
            .collect();
        for f in &classic {
            w.write_frame(f).unwrap();
        }
        assert!(matches!(
            w.write_frame(&frames[3]),
            Err(ConvertError::Unsupported { .. })
        ));
        w.finish().unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let got = read_text(&text).unwrap();
        assert_eq!(got.len(), classic.len());
        let start = classic[0].timestamp_ns - classic[0].timestamp_ns % 1000;
        for (g, w) in got.iter().zip(&classic) {
            let mut w2 = *w;
            w2.channel = Channel::NONE;
            w2.timestamp_ns = g.timestamp_ns;
            assert_eq!(*g, w2, "{text}");
            // 0.1 ms offsets, floored.
            let rel = w.timestamp_ns as i128 - start as i128;
            assert_eq!(
                g.timestamp_ns as i128 - start as i128,
                rel.div_euclid(100_000) * 100_000,
                "{text}"
            );
        }
    }
}
