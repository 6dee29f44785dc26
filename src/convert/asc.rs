//! Vector ASC text logs: written line for line as python-can's `ASCWriter` writes them
//! (so its `ASCReader`, CANoe and CANalyzer read them), and read back (CAN and CANFD
//! lines; every other event kind is skipped).
//!
//! Time: an ASC file holds times relative to the `Begin Triggerblock` date, a local
//! date with millisecond precision. The writer takes the first event's time truncated
//! to the millisecond as that date, so every frame's absolute time survives to the
//! microsecond (lines have 6 decimals). The reader adds each line's time to the
//! `Begin Triggerblock` date, else the `date` header, else 0; a date it cannot read
//! leaves times relative to 0. Dates are local time, as Vector's tools and python-can
//! write and read them.
//!
//! Channels follow python-can, which numbers ASC channels from 1: the writer puts an
//! integer channel `n` (or a string ending in `n`, like `can0`) as ASC channel `n + 1`
//! and a frame without a channel as 1; the reader turns ASC channel `N` into
//! `Channel::int(N - 1)`.
//!
//! ASC error frames carry neither class nor data, so the writer puts the whole frame in
//! a `// canmc error frame: 20000080#…` comment just before the `ErrorFrame` line, and
//! the reader takes it from there (other readers see an error frame without data).
//! Losses are `//` comments, which readers skip. Direction is always written `Rx`.

use std::fs::File;
use std::io::{self, BufWriter, Write};
use std::path::{Path, PathBuf};

use super::digits::{
    decimal_len, push_decimal, push_decimal_right, push_hex_bytes, push_signed_right, push_spaces,
};
use super::{
    channel_number, parse_loss_note, ConvertError, FrameWriter, LossNote, ReadOptions, ReadStats,
};
use crate::event::Event;
use crate::frame::SenderAddr;
use crate::frame::{flags, parse_frame, CanFrame, Channel, Direction};

const ERROR_COMMENT: &str = "// canmc error frame: ";

fn io_err(path: &Path) -> impl Fn(io::Error) -> ConvertError + '_ {
    move |source| ConvertError::Io {
        path: path.to_path_buf(),
        source,
    }
}

const WEEKDAYS: [&str; 7] = ["Sun", "Mon", "Tue", "Wed", "Thu", "Fri", "Sat"];
const MONTHS: [&str; 12] = [
    "Jan", "Feb", "Mar", "Apr", "May", "Jun", "Jul", "Aug", "Sep", "Oct", "Nov", "Dec",
];

/// Appends `Tue Nov 14 22:13:20.123 2023` (local time, as ASC files carry it).
fn push_date(out: &mut Vec<u8>, ns: u64) {
    let secs = (ns / 1_000_000_000) as libc::time_t;
    // SAFETY: tm is plain old data; localtime_r fills it from `secs` and touches nothing else.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        tm.tm_year = 70;
        tm.tm_mday = 1;
    }
    let _ = write!(
        out,
        "{} {} {:02} {:02}:{:02}:{:02}.{:03} {}",
        WEEKDAYS[tm.tm_wday.clamp(0, 6) as usize],
        MONTHS[tm.tm_mon.clamp(0, 11) as usize],
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        ns % 1_000_000_000 / 1_000_000,
        tm.tm_year + 1900
    );
}

/// Reads the date of a `date` or `Begin Triggerblock` line (after the keyword):
/// `Tue Nov 14 22:13:20.123 2023`, optionally with `am`/`pm` before the year, English
/// or German month names (python-can's set). Returns ns since the epoch.
fn parse_date(text: &str) -> Option<u64> {
    let mut t: Vec<&str> = text.split_ascii_whitespace().collect();
    if t.len() < 5 {
        return None;
    }
    // Skip the weekday.
    t.remove(0);
    let month = match t[0] {
        "Jan" => 1,
        "Feb" => 2,
        // "Mär" in Latin-1 reads as "M\u{FFFD}r" (see read_lines).
        "Mar" | "Mär" | "M\u{FFFD}r" => 3,
        "Apr" => 4,
        "May" | "Mai" => 5,
        "Jun" => 6,
        "Jul" => 7,
        "Aug" => 8,
        "Sep" => 9,
        "Oct" | "Okt" => 10,
        "Nov" => 11,
        "Dec" | "Dez" => 12,
        _ => return None,
    };
    let day: i32 = t[1].parse().ok()?;
    let (hms, frac) = t[2].split_once('.').unwrap_or((t[2], ""));
    let mut hms = hms.split(':').map(|p| p.parse::<i32>().ok());
    let (Some(Some(mut hour)), Some(Some(min)), Some(Some(sec)), None) =
        (hms.next(), hms.next(), hms.next(), hms.next())
    else {
        return None;
    };
    let year_text = match (t.len(), t[3].to_ascii_lowercase().as_str()) {
        (5, "am") => {
            if hour == 12 {
                hour = 0;
            }
            t[4]
        }
        (5, "pm") => {
            if hour < 12 {
                hour += 12;
            }
            t[4]
        }
        (4, _) => t[3],
        _ => return None,
    };
    let year: i32 = year_text.parse().ok()?;
    if frac.len() > 9 || !frac.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let mut frac_ns = 0u64;
    for i in 0..9 {
        frac_ns = frac_ns * 10 + frac.as_bytes().get(i).map_or(0, |b| (b - b'0') as u64);
    }
    // SAFETY: tm is plain old data; zero is a valid value for every field.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    tm.tm_year = year.checked_sub(1900)?;
    tm.tm_mon = month - 1;
    tm.tm_mday = day;
    tm.tm_hour = hour;
    tm.tm_min = min;
    tm.tm_sec = sec;
    tm.tm_isdst = -1;
    // SAFETY: tm is a valid, initialised struct; mktime only reads and normalises it.
    let secs = unsafe { libc::mktime(&mut tm) };
    if secs < 0 {
        return None;
    }
    (secs as u64)
        .checked_mul(1_000_000_000)?
        .checked_add(frac_ns)
}

/// Vector ASC writer (see the module documentation for what it writes).
#[derive(Debug)]
pub struct AscWriter {
    out: BufWriter<File>,
    path: PathBuf,
    line: Vec<u8>,
    /// Time of the trigger block (ns, a whole millisecond), once the header is out.
    start: Option<u64>,
}

impl AscWriter {
    /// Creates `path`; the header follows with the first event, whose time it carries.
    pub fn create(path: &Path) -> Result<AscWriter, ConvertError> {
        let file = File::create(path).map_err(io_err(path))?;
        Ok(AscWriter {
            out: BufWriter::with_capacity(1 << 16, file),
            path: path.to_path_buf(),
            line: Vec::with_capacity(512),
            start: None,
        })
    }

    /// Clears `self.line` and puts the header in it if this is the first event.
    fn begin(&mut self, ns: u64) {
        self.line.clear();
        if self.start.is_none() {
            let s = ns - ns % 1_000_000;
            self.line.extend_from_slice(b"date ");
            push_date(&mut self.line, s);
            self.line
                .extend_from_slice(b"\nbase hex  timestamps absolute\ninternal events logged\n");
            self.line.extend_from_slice(b"Begin Triggerblock ");
            push_date(&mut self.line, s);
            self.line
                .extend_from_slice(b"\n 0.000000 Start of measurement\n");
            self.start = Some(s);
        }
    }

    /// Appends the time column of an event at `ns` with python-can's `{: 9.6f} `: a
    /// sign (space or `-`), at least 8 characters, a space.
    fn push_time(&mut self, ns: u64) {
        // A frame older than the first one (several senders, a clock step) keeps its
        // time: a negative offset from the trigger block.
        let rel = ns as i128 - self.start.unwrap_or(0) as i128;
        let (negative, rel) = (rel < 0, rel.unsigned_abs());
        let secs = (rel / 1_000_000_000) as u64;
        let width = negative as usize + decimal_len(secs) + 7;
        self.line.push(b' ');
        push_spaces(&mut self.line, 8usize.saturating_sub(width));
        if negative {
            self.line.push(b'-');
        }
        push_decimal(&mut self.line, secs, 0);
        self.line.push(b'.');
        push_decimal(&mut self.line, (rel % 1_000_000_000 / 1000) as u64, 6);
        self.line.push(b' ');
    }

    /// Appends a `//` comment line saying what was lost before `ns`.
    fn push_comment(&mut self, ns: u64, what: std::fmt::Arguments<'_>) {
        // Loss notes before the start are put at the start (their parser is unsigned).
        let rel = ns.saturating_sub(self.start.unwrap_or(0));
        let _ = writeln!(
            self.line,
            "// canmc: {what} before {}.{:06}",
            rel / 1_000_000_000,
            rel % 1_000_000_000 / 1000
        );
    }

    fn put(&mut self) -> Result<(), ConvertError> {
        self.out.write_all(&self.line).map_err(io_err(&self.path))
    }
}

impl FrameWriter for AscWriter {
    fn write_frame(&mut self, frame: &CanFrame) -> Result<(), ConvertError> {
        let channel = channel_number(&frame.channel);
        self.begin(frame.timestamp_ns);
        if frame.is_error() {
            self.line.extend_from_slice(ERROR_COMMENT.as_bytes());
            let mut text = [0u8; CanFrame::TEXT_MAX];
            let n = frame.write_text(&mut text);
            self.line.extend_from_slice(&text[..n]);
            if frame.direction() == Direction::Tx {
                // The ErrorFrame line has no direction column.
                self.line.extend_from_slice(b" T");
            }
            self.line.push(b'\n');
            self.push_time(frame.timestamp_ns);
            let _ = writeln!(self.line, "{channel}  ErrorFrame");
            return self.put();
        }
        self.push_time(frame.timestamp_ns);
        let mut id_text = [0u8; 9];
        let id = asc_id(frame, &mut id_text);
        let l = &mut self.line;
        let dir = match frame.direction() {
            Direction::Rx => "Rx",
            Direction::Tx => "Tx",
        };
        if frame.is_fd() {
            // python-can's `CANFD {channel:>3} {dir}   {id:>8}  {symbolic:>32} {brs} {esi}
            // {dlc:x} {len:>2} DATA {length:>8} {bitcount:>4} {flags:>8X} {crc:>8}
            // {bit timings:>8} ×4`, the unknown columns 0; by hand as the line below.
            // The flags column: 0x1000 (EDL) | 0x2000 (BRS) | 0x4000 (ESI).
            let flags_digit = b'1' + 2 * frame.brs() as u8 + 4 * frame.esi() as u8;
            l.extend_from_slice(b"CANFD ");
            push_signed_right(l, channel, 3);
            l.push(b' ');
            l.extend_from_slice(dir.as_bytes());
            l.extend_from_slice(b"   ");
            push_spaces(l, 8usize.saturating_sub(id.len()));
            l.extend_from_slice(id.as_bytes());
            push_spaces(l, 2 + 32 + 1);
            l.extend_from_slice(if frame.brs() { b"1 " } else { b"0 " });
            l.extend_from_slice(if frame.esi() { b"1 " } else { b"0 " });
            l.push(b"0123456789abcdef"[(frame.dlc() & 0xF) as usize]);
            l.push(b' ');
            push_decimal_right(l, frame.len as u64, 2);
            l.push(b' ');
            push_hex_bytes(l, frame.payload());
            l.extend_from_slice(b"        0    0     ");
            l.push(flags_digit);
            l.extend_from_slice(b"000        0        0        0        0        0\n");
        } else {
            // `{channel}  {id:<15} {dir}   {kind} {dlc:x} DATA`, by hand: the most
            // common line of every ASC file (docs/perf.md).
            push_signed_right(l, channel, 0);
            l.extend_from_slice(b"  ");
            l.extend_from_slice(id.as_bytes());
            push_spaces(l, 15usize.saturating_sub(id.len()));
            l.push(b' ');
            l.extend_from_slice(dir.as_bytes());
            l.extend_from_slice(if frame.is_remote() {
                b"   r "
            } else {
                b"   d "
            });
            l.push(b"0123456789abcdef"[(frame.dlc() & 0xF) as usize]);
            l.push(b' ');
            push_hex_bytes(l, frame.payload());
            l.push(b'\n');
        }
        self.put()
    }

    fn write_loss(&mut self, sender: SenderAddr, lost: u64, ts: u64) -> Result<(), ConvertError> {
        self.begin(ts);
        self.push_comment(ts, format_args!("{lost} datagrams lost from {sender:?}"));
        self.put()
    }

    fn write_kernel_drops(&mut self, count: u64, ts: u64) -> Result<(), ConvertError> {
        self.begin(ts);
        self.push_comment(ts, format_args!("kernel dropped {count} datagrams"));
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
        self.out
            .write_all(b"End TriggerBlock\n")
            .map_err(io_err(&self.path))?;
        self.out.flush().map_err(io_err(&self.path))?;
        self.out.get_ref().sync_all().map_err(io_err(&self.path))
    }
}

/// The ID column: hex without leading zeros, `x` after an extended one.
fn asc_id<'a>(frame: &CanFrame, text: &'a mut [u8; 9]) -> &'a str {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    let digits = ((32 - frame.id.leading_zeros() as usize).div_ceil(4)).max(1);
    for (i, d) in text[..digits].iter_mut().rev().enumerate() {
        *d = HEX[((frame.id >> (i * 4)) & 0xF) as usize];
    }
    let mut n = digits;
    if frame.is_extended() {
        text[n] = b'x';
        n += 1;
    }
    std::str::from_utf8(&text[..n]).unwrap_or("0")
}

/// Parses `12.345678` or `-0.5` (seconds, up to 9 decimals) to signed ns.
fn parse_secs(t: &str) -> Option<i64> {
    let (neg, t) = match t.strip_prefix('-') {
        Some(rest) => (true, rest),
        None => (false, t),
    };
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: i64 = secs.parse().ok()?;
    let mut nanos = 0i64;
    for i in 0..9 {
        nanos = nanos * 10 + frac.as_bytes().get(i).map_or(0, |b| (b - b'0') as i64);
    }
    let ns = secs.checked_mul(1_000_000_000)?.checked_add(nanos)?;
    Some(if neg { -ns } else { ns })
}

/// The error frame an `ErrorFrame` line stands for when canmc's comment does not say
/// more: a bus error (class `CAN_ERR_BUSERROR` 0x80) with 8 zero bytes, what candump
/// and python-can write for an error frame without detail.
fn bus_error_frame() -> CanFrame {
    let mut f = CanFrame::EMPTY;
    f.flags = flags::ERROR | flags::EXTENDED;
    f.id = 0x80;
    f.len = 8;
    f
}

/// What one ASC line is.
#[derive(Debug)]
enum Line {
    /// Not a CAN or CAN FD frame (header, comment, statistics, other events).
    Other,
    /// A loss canmc wrote as a `// canmc:` comment, at a time since the file's start.
    Note(LossNote, u64),
    /// `date …`.
    Date(Option<u64>),
    /// `Begin Triggerblock …`.
    Trigger(Option<u64>),
    /// `base hex|dec [timestamps absolute|relative]`.
    Base { hex: bool, relative: bool },
    /// `// canmc error frame: …`
    ErrorComment(CanFrame),
    /// A frame with its time as the line has it (ns, may be negative).
    Frame(CanFrame, i64),
}

/// Parses one line. `Err` only for lines that are CAN/CANFD frame lines but wrong.
fn parse_line(line: &str, hex: bool) -> Result<Line, String> {
    let line = line.trim();
    let lower_starts = |p: &str| {
        line.len() >= p.len() && line.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
    };
    if let Some(text) = line.strip_prefix(ERROR_COMMENT) {
        let (text, dir) = match text.trim().strip_suffix(" T") {
            Some(t) => (t, Direction::Tx),
            None => (text.trim(), Direction::Rx),
        };
        let mut frame = parse_frame(text.as_bytes())
            .map_err(|e| format!("bad canmc error frame comment: {e}"))?;
        frame.set_direction(dir);
        return Ok(Line::ErrorComment(frame));
    }
    if let Some((note, rel)) = line.strip_prefix("//").and_then(parse_loss_note) {
        return Ok(Line::Note(note, rel));
    }
    if line.is_empty() || line.starts_with("//") {
        return Ok(Line::Other);
    }
    if lower_starts("date ") {
        return Ok(Line::Date(parse_date(&line[5..])));
    }
    if lower_starts("begin triggerblock") {
        return Ok(Line::Trigger(parse_date(&line[18..])));
    }
    if lower_starts("base ") {
        let t: Vec<String> = line
            .split_ascii_whitespace()
            .map(str::to_ascii_lowercase)
            .collect();
        let hex = t.get(1).map(String::as_str) != Some("dec");
        let relative = t.get(3).map(String::as_str) == Some("relative");
        return Ok(Line::Base { hex, relative });
    }
    let mut tok = line.split_ascii_whitespace();
    let (Some(ts), Some(second)) = (tok.next(), tok.next()) else {
        return Ok(Line::Other);
    };
    let Some(ts) = parse_secs(ts) else {
        return Ok(Line::Other);
    };
    let radix = if hex { 16 } else { 10 };
    let byte = |t: &str| u8::from_str_radix(t, radix).map_err(|_| format!("bad data byte '{t}'"));
    let parse_id = |t: &str| -> Result<(u32, bool), String> {
        let (digits, ext) = match t.strip_suffix(['x', 'X']) {
            Some(d) => (d, true),
            None => (t, false),
        };
        u32::from_str_radix(digits, radix)
            .map(|id| (id, ext))
            .map_err(|_| format!("bad CAN ID '{t}'"))
    };
    let direction = |t: &str| {
        if t.starts_with("Tx") {
            Direction::Tx
        } else {
            Direction::Rx
        }
    };
    let finish = |mut f: CanFrame, ch: &str, dir: Direction| -> Result<Line, String> {
        f.validate().map_err(|e| e.to_string())?;
        f.set_direction(dir);
        let n = ch
            .parse::<i64>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .ok_or_else(|| format!("bad channel '{ch}'"))?;
        f.channel = Channel::int(n);
        Ok(Line::Frame(f, ts))
    };
    if second.eq_ignore_ascii_case("CANFD") {
        // <ch> <dir> <id> [name] <brs> <esi> <dlc> <len> <data…> <duration> <bits>
        // <flags> <crc> <timing…>, or <ch> <dir> ErrorFrame …
        let ch = tok.next().ok_or("CANFD line without channel")?;
        let dir = direction(tok.next().ok_or("CANFD line without direction")?);
        let id_text = tok.next().ok_or("CANFD line without ID")?;
        if id_text.eq_ignore_ascii_case("ErrorFrame") {
            return finish(bus_error_frame(), ch, dir);
        }
        let (id, ext) = parse_id(id_text)?;
        // An optional symbolic name sits between the ID and BRS.
        let mut next = tok.next().ok_or("CANFD line ends after the ID")?;
        if !(next == "0" || next == "1") {
            next = tok.next().ok_or("CANFD line ends after the name")?;
        }
        let brs = next == "1";
        let esi = tok.next().ok_or("CANFD line without ESI")? == "1";
        let dlc_text = tok.next().ok_or("CANFD line without DLC")?;
        let dlc = u8::from_str_radix(dlc_text, radix)
            .ok()
            .filter(|&d| d <= 15)
            .ok_or_else(|| format!("bad DLC '{dlc_text}'"))?;
        let len_text = tok.next().ok_or("CANFD line without data length")?;
        let len: usize = len_text
            .parse()
            .map_err(|_| format!("bad data length '{len_text}'"))?;
        if len > 64 {
            return Err(format!("data length {len} is over 64"));
        }
        let mut data = [0u8; 64];
        for d in data.iter_mut().take(len) {
            *d = byte(
                tok.next()
                    .ok_or("CANFD line has fewer data bytes than its length")?,
            )?;
        }
        // Fields after the data: duration, bit count, flags (EDL 0x1000 says FD; a
        // CANFD line without it is a classic frame on an FD channel, 0x10 a remote one).
        // Some tools leave EDL out of FD frames: more than 8 bytes is FD whatever the
        // flags say.
        let _duration = tok.next();
        let _bits = tok.next();
        let fd_flags = tok.next().and_then(|t| u32::from_str_radix(t, 16).ok());
        let mut fl = if ext { flags::EXTENDED } else { 0 };
        let classic = matches!(fd_flags, Some(v) if v & 0x1000 == 0) && len <= 8;
        let frame = match fd_flags {
            Some(v) if classic && v & 0x10 != 0 => {
                // A remote frame requests the DLC's length; the data length is 0.
                let mut f = CanFrame::EMPTY;
                f.id = id;
                f.flags = fl | flags::RTR;
                f.len = dlc.min(8);
                if dlc > 8 {
                    f.raw_dlc = dlc;
                }
                f
            }
            _ if classic => {
                let mut f = CanFrame::new(id, fl, &data[..len]).map_err(|e| e.to_string())?;
                if dlc > 8 && len == 8 {
                    f.raw_dlc = dlc;
                }
                f
            }
            _ => {
                fl |= flags::FD;
                if brs {
                    fl |= flags::BRS;
                }
                if esi {
                    fl |= flags::ESI;
                }
                CanFrame::new(id, fl, &data[..len]).map_err(|e| e.to_string())?
            }
        };
        return finish(frame, ch, dir);
    }
    if !second.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Line::Other);
    }
    let ch = second;
    let Some(third) = tok.next() else {
        return Ok(Line::Other);
    };
    if third.eq_ignore_ascii_case("ErrorFrame") {
        return finish(bus_error_frame(), ch, Direction::Rx);
    }
    // `<id> Rx|Tx …` makes a frame line; `Statistic:`, `ChipStat` and the like do not.
    let dir = tok.next().unwrap_or("");
    if !(dir.starts_with("Rx") || dir.starts_with("Tx")) {
        return Ok(Line::Other);
    }
    let dir = direction(dir);
    let (id, ext) = parse_id(third)?;
    let kind = tok.next().ok_or("frame line without 'd' or 'r'")?;
    let mut f = CanFrame::EMPTY;
    f.id = id;
    f.flags = if ext { flags::EXTENDED } else { 0 };
    let parse_dlc = |t: &str| {
        u8::from_str_radix(t, radix)
            .ok()
            .filter(|&d| d <= 15)
            .ok_or_else(|| format!("bad DLC '{t}'"))
    };
    match kind {
        "r" | "R" => {
            f.flags |= flags::RTR;
            // The DLC is optional: `r Length = … BitCount = … ID = …` requests 0 bytes.
            if let Some(t) = tok.next().filter(|t| !t.eq_ignore_ascii_case("Length")) {
                let dlc = parse_dlc(t)?;
                f.len = dlc.min(8);
                if dlc > 8 {
                    f.raw_dlc = dlc;
                }
            }
        }
        "d" | "D" => {
            let dlc = parse_dlc(tok.next().ok_or("frame line without DLC")?)?;
            // A DLC of 9–15 on classic CAN means 8 bytes; the DLC is kept as raw DLC.
            let len = dlc.min(8) as usize;
            for i in 0..len {
                f.data[i] = byte(
                    tok.next()
                        .ok_or("frame line has fewer data bytes than its DLC")?,
                )?;
            }
            f.len = len as u8;
            if dlc > 8 {
                f.raw_dlc = dlc;
            }
        }
        other => return Err(format!("expected 'd' or 'r', found '{other}'")),
    }
    finish(f, ch, dir)
}

/// Reads the frames of an ASC file in order (see the module documentation).
pub fn read(
    path: &Path,
    opts: ReadOptions,
    f: &mut dyn FnMut(&Event) -> bool,
) -> Result<ReadStats, ConvertError> {
    let mut stats = ReadStats::default();
    let mut events = 0u64;
    let mut hex = true;
    let mut relative = false;
    let mut date: Option<u64> = None;
    let mut trigger: Option<u64> = None;
    let mut last_rel = 0i64;
    let mut pending_error: Option<CanFrame> = None;
    super::read_lines(path, opts.skip_bad, &mut stats, &mut |line| {
        let line_ts;
        let mut frame = match parse_line(line, hex)? {
            Line::Other => return Ok(true),
            Line::Note(note, rel) => {
                let ts = trigger.or(date).unwrap_or(0).saturating_add(rel);
                return Ok(opts.offer(ts, &note.event(ts), &mut events, f));
            }
            Line::Date(d) => {
                date = d;
                return Ok(true);
            }
            Line::Trigger(d) => {
                trigger = d;
                last_rel = 0;
                return Ok(true);
            }
            Line::Base {
                hex: h,
                relative: r,
            } => {
                hex = h;
                relative = r;
                return Ok(true);
            }
            Line::ErrorComment(fr) => {
                pending_error = Some(fr);
                return Ok(true);
            }
            Line::Frame(fr, t) => {
                line_ts = t;
                fr
            }
        };
        if frame.is_error() {
            if let Some(full) = pending_error.take() {
                let ch = frame.channel;
                frame = full;
                frame.channel = ch;
            }
        }
        let rel = if relative {
            last_rel.saturating_add(line_ts)
        } else {
            line_ts
        };
        last_rel = rel;
        let base = trigger.or(date).unwrap_or(0) as i128;
        frame.timestamp_ns = (base + rel as i128).clamp(0, u64::MAX as i128) as u64;
        Ok(opts.offer(frame.timestamp_ns, &Event::Frame(frame), &mut events, f))
    })?;
    stats.events = events;
    Ok(stats)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn dates_both_ways() {
        let ns = 1_700_000_000_123_000_000;
        let mut out = Vec::new();
        push_date(&mut out, ns);
        let text = String::from_utf8(out).unwrap();
        assert_eq!(parse_date(&text), Some(ns), "{text}");
        assert_eq!(parse_date("garbage"), None);
    }

    #[test]
    fn classic_and_fd_lines() {
        let Line::Frame(f, t) =
            parse_line(" 1.500000 2  123x            Rx   d 2 11 22", true).unwrap()
        else {
            panic!()
        };
        assert_eq!(f.content(), "00000123#1122".parse::<CanFrame>().unwrap());
        assert_eq!(t, 1_500_000_000);
        assert_eq!(f.channel, Channel::int(1));
        let line = " 0.1 CANFD   1 Rx   1234567x                                   1 0 9 12 00 01 02 03 04 05 06 07 08 09 0A 0B        0    0     3000        0        0        0        0        0";
        let Line::Frame(f, _) = parse_line(line, true).unwrap() else {
            panic!()
        };
        assert_eq!(
            f.content(),
            "01234567##1000102030405060708090A0B"
                .parse::<CanFrame>()
                .unwrap()
        );
        assert!(matches!(
            parse_line(" 1.0 1 Statistic: D 0 R 0 XD 0 XR 0 E 0 O 0 B 0.00%", true),
            Ok(Line::Other)
        ));
        assert!(parse_line(" 1.0 1 123 Rx d 2 11", true).is_err());
        assert!(parse_line(" 1.0 1 800 Rx d 0", true).is_err());
    }

    #[test]
    fn relative_times_and_decimal_base() {
        let path = std::env::temp_dir().join(format!("canmc-asc-{}.asc", std::process::id()));
        std::fs::write(
            &path,
            "base dec  timestamps relative\n\
             0.5 1  291 Rx d 2 17 255\n\
             0.25 2  4660x Tx d 1 1\n",
        )
        .unwrap();
        let mut got = Vec::new();
        read(&path, ReadOptions::default(), &mut |ev| {
            if let Event::Frame(f) = ev {
                got.push(*f);
            }
            true
        })
        .unwrap();
        let _ = std::fs::remove_file(&path);
        assert_eq!(got.len(), 2);
        assert_eq!(got[0].to_string(), "123#11FF");
        assert_eq!(got[0].timestamp_ns, 500_000_000);
        assert_eq!(got[1].to_string(), "00001234#01");
        assert_eq!(got[1].timestamp_ns, 750_000_000);
        assert_eq!(got[1].channel, Channel::int(1));
    }

    fn read_all(bytes: &[u8], skip_bad: bool) -> Result<(Vec<CanFrame>, ReadStats), ConvertError> {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let path = std::env::temp_dir().join(format!(
            "canmc-asc-shapes-{}-{}.asc",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::write(&path, bytes).unwrap();
        let mut got = Vec::new();
        let opts = ReadOptions {
            skip_bad,
            ..ReadOptions::default()
        };
        let r = read(&path, opts, &mut |ev| {
            if let Event::Frame(f) = ev {
                got.push(*f);
            }
            true
        });
        let _ = std::fs::remove_file(&path);
        r.map(|s| (got, s))
    }

    /// Every line shape of issue 10's real files, in one file with a Latin-1 German
    /// date and CRLF line ends.
    #[test]
    fn line_shapes_vector_tools_write() {
        let mut file = b"date Mo M\xe4r 4 10:00:00.000 2024\r\n".to_vec();
        file.extend_from_slice(
            b"base hex  timestamps absolute\r\n\
              no internal events logged\r\n\
              // version 13.0.0\r\n\
              Begin Triggerblock Mo M\xe4r 4 10:00:00.000 2024\r\n\
              \x20  0.000000 Start of measurement\r\n\
              \x20  2.520002 3  200             Tx   r Length = 1704000 BitCount = 145 ID = 512\r\n\
              \x20  2.600000 1  123             Rx   r 5 Length = 0 BitCount = 0 ID = 291\r\n\
              \x20  2.700000 2  1ABx            TxRq d C 01 02 03 04 05 06 07 08 Length = 0 BitCount = 0 ID = 427x\r\n\
              \x20  2.800000 CANFD   1 Rx   100  Msg1 1 0 a 16 00 01 02 03 04 05 06 07 08 09 0a 0b 0c 0d 0e 0f   123000  300  00002000 0 0 0 0 0\r\n\
              \x20  2.900000 CANFD   2 Tx   101  0 0 5 0    0  0  00000010 0 0 0 0 0\r\n\
              \x20  3.000000 CANFD   2 Rx   102  0 0 3 3 AA BB CC   0  0  00000000 0 0 0 0 0\r\n\
              \x20  3.100000 1  ErrorFrame\r\n\
              \x20  3.200000 CANFD   1 Rx   ErrorFrame    Form Error 0 0 0 Data 0 123 0 0 0 0  0 0 0 0 0 0 0\r\n\
              \x20  3.300000 1  Statistic: D 0 R 0 XD 0 XR 0 E 0 O 0 B 0.00%\r\n\
              \x20  3.400000 1  RX_ERR   0 \r\n\
              End TriggerBlock\r\n",
        );
        let (got, stats) = read_all(&file, false).unwrap();
        assert_eq!(stats.skipped, 0);
        let texts: Vec<String> = got.iter().map(|f| f.to_string()).collect();
        assert_eq!(
            texts,
            [
                "200#R",
                "123#R5",
                "000001AB#0102030405060708_C",
                "100##5000102030405060708090A0B0C0D0E0F",
                "101#R5",
                "102#AABBCC",
                "20000080#0000000000000000",
                "20000080#0000000000000000",
            ]
        );
        let dirs: Vec<Direction> = got.iter().map(|f| f.direction()).collect();
        use Direction::{Rx, Tx};
        assert_eq!(dirs, [Tx, Rx, Tx, Rx, Tx, Rx, Rx, Rx]);
        // The Latin-1 date was read: times are 2024-03-04 10:00 local plus the offsets.
        let start = parse_date("Mo Mar 4 10:00:00.000 2024").unwrap();
        assert_eq!(got[0].timestamp_ns, start + 2_520_002_000);
        assert_eq!(got[0].channel, Channel::int(2));
    }

    #[test]
    fn no_header_decimal_base_and_bad_lines() {
        let (got, _) = read_all(
            b"base dec\n 1.0 1  291 Rx d 9 1 2 3 4 5 6 7 8\n 2.0 1 ErrorFrame\n",
            false,
        )
        .unwrap();
        assert_eq!(got[0].to_string(), "123#0102030405060708_9");
        assert_eq!(got[0].timestamp_ns, 1_000_000_000);
        assert!(got[1].is_error());
        // A bad line: an error naming it, or skipped and counted.
        let bad = b" 1.0 1  123 Rx d 2 11\n 2.0 1  124 Rx d 1 \xff\n 3.0 1  125 Rx d 0\n";
        match read_all(bad, false) {
            Err(ConvertError::Parse { line: 1, .. }) => {}
            other => panic!("{other:?}"),
        }
        let (got, stats) = read_all(bad, true).unwrap();
        assert_eq!(stats.skipped, 2);
        assert_eq!(got.len(), 1);
    }

    /// The writer keeps direction, raw DLC and times that go backwards; the reader
    /// gets every field back.
    #[test]
    fn writer_round_trip_keeps_every_field() {
        let path = std::env::temp_dir().join(format!("canmc-asc-rt-{}.asc", std::process::id()));
        let t0 = 1_700_000_000_123_456_000;
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
            // The third frame is 0.5 s before the first.
            f.timestamp_ns = if i == 2 {
                t0 - 500_000_000
            } else {
                t0 + i as u64 * 1000
            };
            f.channel = Channel::int(i as i64 % 3);
            if i % 2 == 1 {
                f.set_direction(Direction::Tx);
            }
            frames.push(f);
        }
        let mut w = Box::new(AscWriter::create(&path).unwrap());
        for f in &frames {
            w.write_frame(f).unwrap();
        }
        w.finish().unwrap();
        let text = std::fs::read(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let (got, _) = read_all(&text, false).unwrap();
        assert_eq!(got, frames, "{}", String::from_utf8_lossy(&text));
    }
}
