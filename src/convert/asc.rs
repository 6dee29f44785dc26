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

use super::{parse_loss_note, ConvertError, FrameWriter, LossNote, ReadOptions, ReadStats};
use crate::event::Event;
use crate::frame::SenderAddr;
use crate::frame::{flags, parse_frame, CanFrame, Channel, ChannelRef, FD_LENGTHS};

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
        "Mar" | "Mär" => 3,
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

/// python-can's `channel2int(channel) + 1`, or 1 without a number.
fn asc_channel(ch: &Channel) -> i64 {
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
    /// sign space, at least 8 characters, a space.
    fn push_time(&mut self, ns: u64) {
        // Frames older than the first one (several senders) are put at the start.
        let rel = ns.saturating_sub(self.start.unwrap_or(0));
        let mut ts = [0u8; 32];
        let mut cur = io::Cursor::new(&mut ts[..]);
        let _ = write!(
            cur,
            "{}.{:06}",
            rel / 1_000_000_000,
            rel % 1_000_000_000 / 1000
        );
        let n = cur.position() as usize;
        let _ = write!(
            self.line,
            " {:>8} ",
            std::str::from_utf8(&ts[..n]).unwrap_or("0.000000")
        );
    }

    /// Appends a `//` comment line saying what was lost before `ns`.
    fn push_comment(&mut self, ns: u64, what: std::fmt::Arguments<'_>) {
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

fn len2dlc(len: u8) -> u8 {
    FD_LENGTHS.iter().position(|&l| l >= len).unwrap_or(15) as u8
}

impl FrameWriter for AscWriter {
    fn write_frame(&mut self, frame: &CanFrame) -> Result<(), ConvertError> {
        let channel = asc_channel(&frame.channel);
        self.begin(frame.timestamp_ns);
        if frame.is_error() {
            self.line.extend_from_slice(ERROR_COMMENT.as_bytes());
            let mut text = [0u8; CanFrame::TEXT_MAX];
            let n = frame.write_text(&mut text);
            self.line.extend_from_slice(&text[..n]);
            self.line.push(b'\n');
            self.push_time(frame.timestamp_ns);
            let _ = writeln!(self.line, "{channel}  ErrorFrame");
            return self.put();
        }
        self.push_time(frame.timestamp_ns);
        let mut id = [0u8; 16];
        let mut cur = io::Cursor::new(&mut id[..]);
        let _ = write!(cur, "{:X}", frame.id);
        if frame.is_extended() {
            let _ = write!(cur, "x");
        }
        let n = cur.position() as usize;
        let id = std::str::from_utf8(&id[..n]).unwrap_or("0");
        let l = &mut self.line;
        if frame.is_fd() {
            let fl = 0x1000
                | if frame.brs() { 0x2000 } else { 0 }
                | if frame.esi() { 0x4000 } else { 0 };
            let _ = write!(
                l,
                "CANFD {channel:>3} Rx   {id:>8}  {:>32} {} {} {:x} {:>2} ",
                "",
                frame.brs() as u8,
                frame.esi() as u8,
                len2dlc(frame.len),
                frame.len
            );
            push_hex(l, frame.payload());
            let _ = writeln!(
                l,
                " {:>8} {:>4} {fl:>8X} {:>8} {:>8} {:>8} {:>8} {:>8}",
                0, 0, 0, 0, 0, 0, 0
            );
        } else {
            let kind = if frame.is_remote() { 'r' } else { 'd' };
            let _ = write!(l, "{channel}  {id:<15} Rx   {kind} {:x} ", frame.len);
            push_hex(l, frame.payload());
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

fn push_hex(out: &mut Vec<u8>, data: &[u8]) {
    const HEX: &[u8; 16] = b"0123456789ABCDEF";
    for (i, b) in data.iter().enumerate() {
        if i > 0 {
            out.push(b' ');
        }
        out.push(HEX[(b >> 4) as usize]);
        out.push(HEX[(b & 0xF) as usize]);
    }
}

/// Parses `12.345678` (seconds, up to 9 decimals) to ns.
fn parse_secs(t: &str) -> Option<u64> {
    let (secs, frac) = t.split_once('.').unwrap_or((t, ""));
    if secs.is_empty()
        || !secs.bytes().all(|b| b.is_ascii_digit())
        || !frac.bytes().all(|b| b.is_ascii_digit())
    {
        return None;
    }
    let secs: u64 = secs.parse().ok()?;
    let mut nanos = 0u64;
    for i in 0..9 {
        nanos = nanos * 10 + frac.as_bytes().get(i).map_or(0, |b| (b - b'0') as u64);
    }
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
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
    /// A frame with its time as the line has it.
    Frame(CanFrame),
}

/// Parses one line. `Err` only for lines that are CAN/CANFD frame lines but wrong.
fn parse_line(line: &str, hex: bool) -> Result<Line, String> {
    let line = line.trim();
    let lower_starts = |p: &str| {
        line.len() >= p.len() && line.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes())
    };
    if let Some(text) = line.strip_prefix(ERROR_COMMENT) {
        return parse_frame(text.trim().as_bytes())
            .map(Line::ErrorComment)
            .map_err(|e| format!("bad canmc error frame comment: {e}"));
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
    let finish = |mut f: CanFrame, ch: &str| -> Result<Line, String> {
        f.validate().map_err(|e| e.to_string())?;
        f.timestamp_ns = ts;
        let n = ch
            .parse::<i64>()
            .ok()
            .and_then(|n| n.checked_sub(1))
            .ok_or_else(|| format!("bad channel '{ch}'"))?;
        f.channel = Channel::int(n);
        Ok(Line::Frame(f))
    };
    let error_frame = || {
        let mut f = CanFrame::EMPTY;
        f.flags = flags::ERROR | flags::EXTENDED;
        f
    };
    if second.eq_ignore_ascii_case("CANFD") {
        let ch = tok.next().ok_or("CANFD line without channel")?;
        let _dir = tok.next().ok_or("CANFD line without direction")?;
        let id_text = tok.next().ok_or("CANFD line without ID")?;
        if id_text.eq_ignore_ascii_case("ErrorFrame") {
            return finish(error_frame(), ch);
        }
        let (id, ext) = parse_id(id_text)?;
        // An optional symbolic name sits between the ID and BRS.
        let mut next = tok.next().ok_or("CANFD line ends after the ID")?;
        if !next.bytes().all(|b| b.is_ascii_digit()) {
            next = tok.next().ok_or("CANFD line ends after the name")?;
        }
        let brs = next == "1";
        let esi = tok.next().ok_or("CANFD line without ESI")? == "1";
        let _dlc = tok.next().ok_or("CANFD line without DLC")?;
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
        let _duration = tok.next();
        let _bits = tok.next();
        let fd_flags = tok.next().and_then(|t| u32::from_str_radix(t, 16).ok());
        let mut fl = if ext { flags::EXTENDED } else { 0 };
        let frame = match fd_flags {
            Some(v) if v & 0x1000 == 0 && v & 0x10 != 0 => {
                fl |= flags::RTR;
                let mut f = CanFrame::EMPTY;
                f.id = id;
                f.flags = fl;
                f.len = len.min(8) as u8;
                f
            }
            Some(v) if v & 0x1000 == 0 => {
                CanFrame::new(id, fl, &data[..len]).map_err(|e| e.to_string())?
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
        return finish(frame, ch);
    }
    if !second.bytes().all(|b| b.is_ascii_digit()) {
        return Ok(Line::Other);
    }
    let ch = second;
    let Some(third) = tok.next() else {
        return Ok(Line::Other);
    };
    if third.eq_ignore_ascii_case("ErrorFrame") {
        return finish(error_frame(), ch);
    }
    // `<id> Rx|Tx …` makes a frame line; `Statistic:`, `ChipStat` and the like do not.
    let dir = tok.next().unwrap_or("");
    if !(dir.starts_with("Rx") || dir.starts_with("Tx")) {
        return Ok(Line::Other);
    }
    let (id, ext) = parse_id(third)?;
    let kind = tok.next().ok_or("frame line without 'd' or 'r'")?;
    let mut f = CanFrame::EMPTY;
    f.id = id;
    f.flags = if ext { flags::EXTENDED } else { 0 };
    match kind {
        "r" | "R" => {
            f.flags |= flags::RTR;
            if let Some(t) = tok.next() {
                let dlc = u8::from_str_radix(t, radix).map_err(|_| format!("bad DLC '{t}'"))?;
                f.len = dlc.min(8);
            }
        }
        "d" | "D" => {
            let t = tok.next().ok_or("frame line without DLC")?;
            let dlc = u8::from_str_radix(t, radix).map_err(|_| format!("bad DLC '{t}'"))?;
            if dlc > 15 {
                return Err(format!("DLC {dlc} is over 15"));
            }
            // A DLC of 9–15 on classic CAN still means 8 bytes.
            let len = dlc.min(8) as usize;
            for i in 0..len {
                f.data[i] = byte(
                    tok.next()
                        .ok_or("frame line has fewer data bytes than its DLC")?,
                )?;
            }
            f.len = len as u8;
        }
        other => return Err(format!("expected 'd' or 'r', found '{other}'")),
    }
    finish(f, ch)
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
    let mut last_rel = 0u64;
    let mut pending_error: Option<CanFrame> = None;
    super::read_lines(path, opts.skip_bad, &mut stats, &mut |line| {
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
            Line::Frame(fr) => fr,
        };
        if frame.is_error() {
            if let Some(full) = pending_error.take() {
                let (ts, ch) = (frame.timestamp_ns, frame.channel);
                frame = full;
                frame.timestamp_ns = ts;
                frame.channel = ch;
            }
        }
        let rel = if relative {
            last_rel.saturating_add(frame.timestamp_ns)
        } else {
            frame.timestamp_ns
        };
        last_rel = rel;
        frame.timestamp_ns = trigger.or(date).unwrap_or(0).saturating_add(rel);
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
        let Line::Frame(f) =
            parse_line(" 1.500000 2  123x            Rx   d 2 11 22", true).unwrap()
        else {
            panic!()
        };
        assert_eq!(f.content(), "00000123#1122".parse::<CanFrame>().unwrap());
        assert_eq!(f.timestamp_ns, 1_500_000_000);
        assert_eq!(f.channel, Channel::int(1));
        let line = " 0.1 CANFD   1 Rx   1234567x                                   1 0 9 12 00 01 02 03 04 05 06 07 08 09 0A 0B        0    0     3000        0        0        0        0        0";
        let Line::Frame(f) = parse_line(line, true).unwrap() else {
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
}
