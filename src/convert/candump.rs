//! candump text: log lines (`candump -L`, what python-can's LogReader, canplayer and
//! Wireshark read) both ways, and candump's screen format.
//!
//! Writing appends to a caller's `Vec<u8>` so a dump loop that reuses one buffer
//! allocates nothing per frame.

use std::fmt;
use std::io::Write;

use super::digits::push_decimal;
use crate::frame::{parse_frame, CanFrame, Channel, Direction, FrameError};

/// How candump prints the time in front of a frame (`-t`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum TimeMode {
    /// No time.
    #[default]
    None,
    /// `a`: absolute seconds since the epoch, `(1700000000.123456)`.
    Absolute,
    /// `d`: delta since the previous frame.
    Delta,
    /// `z`: since the first frame.
    Zero,
    /// `A`: local date and time, `(2026-11-21 04:30:00.123456)`.
    Date,
}

impl std::str::FromStr for TimeMode {
    type Err = String;
    fn from_str(s: &str) -> Result<TimeMode, String> {
        match s {
            "a" => Ok(TimeMode::Absolute),
            "d" => Ok(TimeMode::Delta),
            "z" => Ok(TimeMode::Zero),
            "A" => Ok(TimeMode::Date),
            _ => Err(format!("time mode '{s}' is not one of a, d, z, A")),
        }
    }
}

/// Appends `SECONDS.MICROS`, the seconds zero-padded to `sec_width` digits.
fn push_ts(out: &mut Vec<u8>, ns: u64, sec_width: usize) {
    push_decimal(out, ns / 1_000_000_000, sec_width);
    out.push(b'.');
    push_decimal(out, (ns % 1_000_000_000) / 1_000, 6);
}

/// Appends one candump log line (with `\n`): `(1700000000.123456) can0 123#DEADBEEF`.
///
/// The interface name is the frame's channel as [`Channel`]'s `Display` shows it. A
/// transmitted frame ends in ` T` (candump `-x`, python-can); a received one has no
/// suffix, which every reader takes as received. An error frame is written with the
/// class in the ID and exactly the data bytes it has: a kernel error frame has 8, as
/// candump prints; one from python-can has none and is written `20000000#` (padding it
/// would change the frame on a round trip). A raw DLC 9–15 is the `_C` suffix.
pub fn write_log_line(frame: &CanFrame, out: &mut Vec<u8>) {
    out.push(b'(');
    push_ts(out, frame.timestamp_ns, 10);
    out.extend_from_slice(b") ");
    let _ = write!(out, "{} ", frame.channel);
    let mut text = [0u8; CanFrame::TEXT_MAX];
    let n = frame.write_text(&mut text);
    out.extend_from_slice(&text[..n]);
    if frame.direction() == Direction::Tx {
        out.extend_from_slice(b" T");
    }
    out.push(b'\n');
}

/// Keeps what the time prefix of candump's screen lines needs between frames.
#[derive(Debug, Clone, Default)]
pub struct ScreenFormat {
    /// How the time prefix is written (candump `-t`).
    pub time: TimeMode,
    first_ns: Option<u64>,
    last_ns: Option<u64>,
}

impl ScreenFormat {
    /// A formatter writing times as `time` says.
    pub fn new(time: TimeMode) -> Self {
        ScreenFormat {
            time,
            first_ns: None,
            last_ns: None,
        }
    }

    /// Appends a candump screen line: ` (time)  vcan0  123   [4]  DE AD BE EF`.
    pub fn write_line(&mut self, frame: &CanFrame, out: &mut Vec<u8>) {
        let ns = frame.timestamp_ns;
        let first = *self.first_ns.get_or_insert(ns);
        let last = self.last_ns.replace(ns).unwrap_or(ns);
        match self.time {
            TimeMode::None => {}
            TimeMode::Absolute => {
                out.extend_from_slice(b" (");
                push_ts(out, ns, 10);
                out.push(b')');
            }
            TimeMode::Delta | TimeMode::Zero => {
                let base = if self.time == TimeMode::Delta {
                    last
                } else {
                    first
                };
                out.extend_from_slice(b" (");
                push_ts(out, ns.saturating_sub(base), 3);
                out.push(b')');
            }
            TimeMode::Date => {
                out.extend_from_slice(b" (");
                push_local_date(out, ns);
                out.push(b')');
            }
        }
        let _ = write!(out, "  {}  ", frame.channel);
        let id = frame.text_id();
        if frame.is_extended() || frame.is_error() {
            let _ = write!(out, "{id:08X}  ");
        } else {
            let _ = write!(out, "{id:03X}  ");
        }
        if frame.is_fd() {
            let _ = write!(out, "[{:02}]", frame.len);
        } else {
            let _ = write!(out, " [{}]", frame.len);
        }
        if frame.is_remote() {
            out.extend_from_slice(b"  remote request");
        } else {
            out.push(b' ');
            for b in frame.payload() {
                let _ = write!(out, " {b:02X}");
            }
        }
        out.push(b'\n');
    }
}

fn push_local_date(out: &mut Vec<u8>, ns: u64) {
    let secs = (ns / 1_000_000_000) as libc::time_t;
    // SAFETY: tm is plain old data; localtime_r fills it from `secs` and touches nothing else.
    let mut tm: libc::tm = unsafe { std::mem::zeroed() };
    // SAFETY: both pointers are valid for the duration of the call.
    let ok = unsafe { !libc::localtime_r(&secs, &mut tm).is_null() };
    if !ok {
        push_ts(out, ns, 10);
        return;
    }
    let _ = write!(
        out,
        "{:04}-{:02}-{:02} {:02}:{:02}:{:02}.{:06}",
        tm.tm_year + 1900,
        tm.tm_mon + 1,
        tm.tm_mday,
        tm.tm_hour,
        tm.tm_min,
        tm.tm_sec,
        (ns % 1_000_000_000) / 1_000
    );
}

/// A candump log line that does not parse.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum LogLineError {
    /// Not `(time) iface frame`.
    Shape,
    /// The `(seconds.fraction)` part is not a time.
    Timestamp,
    /// The frame part is not valid.
    Frame(FrameError),
}

impl fmt::Display for LogLineError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            LogLineError::Shape => f.write_str("expected '(SECONDS.FRACTION) IFACE ID#DATA'"),
            LogLineError::Timestamp => f.write_str("timestamp is not (SECONDS.FRACTION)"),
            LogLineError::Frame(e) => write!(f, "bad frame: {e}"),
        }
    }
}

impl std::error::Error for LogLineError {}

/// The fields of a line; more than four is not a log line.
fn up_to_four<'a>(fields: impl Iterator<Item = &'a str>) -> Result<[&'a str; 4], LogLineError> {
    let mut out = [""; 4];
    for (i, field) in fields.enumerate() {
        *out.get_mut(i).ok_or(LogLineError::Shape)? = field;
    }
    Ok(out)
}

/// `(SECONDS.FRACTION)` to ns: 1–9 fraction digits (or none), in one pass over the bytes.
fn parse_timestamp(t: &str) -> Option<u64> {
    let t = t.as_bytes().strip_prefix(b"(")?.strip_suffix(b")")?;
    let whole_len = t.iter().take_while(|b| b.is_ascii_digit()).count();
    if whole_len == 0 {
        return None;
    }
    let mut secs: u64 = 0;
    if whole_len <= 19 {
        // 19 digits always fit in a u64: no overflow test per digit.
        for &b in &t[..whole_len] {
            secs = secs * 10 + (b - b'0') as u64;
        }
    } else {
        for &b in &t[..whole_len] {
            secs = secs.checked_mul(10)?.checked_add((b - b'0') as u64)?;
        }
    }
    let frac = match &t[whole_len..] {
        [] => &[][..],
        [b'.', frac @ ..] if frac.len() <= 9 && frac.iter().all(u8::is_ascii_digit) => frac,
        _ => return None,
    };
    let mut nanos: u64 = 0;
    for i in 0..9 {
        nanos = nanos * 10 + frac.get(i).map_or(0, |b| (b - b'0') as u64);
    }
    secs.checked_mul(1_000_000_000)?.checked_add(nanos)
}

/// Parses one candump log line. Blank lines and `#` comments give `Ok(None)`.
///
/// Accepts every variant can-utils and python-can write: a trailing ` R`/` T`
/// direction, 1–9 fraction digits, `##` flags 0–F, `_DLC` suffixes, extra spaces. The
/// interface name becomes the frame's string channel (names over 22 bytes are an
/// error, except `can<N>` for an integer too wide for a string channel: that becomes
/// the integer channel `N`, as it was written).
pub fn parse_log_line(line: &str) -> Result<Option<CanFrame>, LogLineError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    // Up to four fields. Lines split on single spaces take the fast path (memchr for the
    // separators; a byte-by-byte whitespace test was a quarter of parsing a line).
    let b = line.as_bytes();
    let fields = if memchr::memchr3(b'\t', b'\r', b'\x0c', b).is_none()
        && memchr::memchr(b'\n', b).is_none()
    {
        up_to_four(line.split(' ').filter(|f| !f.is_empty()))?
    } else {
        up_to_four(line.split_ascii_whitespace())?
    };
    let [ts, iface, frame_text, direction] = fields;
    if frame_text.is_empty() {
        return Err(LogLineError::Shape);
    }
    let direction = match direction {
        "" | "R" | "r" => Direction::Rx,
        "T" | "t" => Direction::Tx,
        _ => return Err(LogLineError::Shape),
    };
    let timestamp_ns = parse_timestamp(ts).ok_or(LogLineError::Timestamp)?;
    let mut frame = parse_frame(frame_text.as_bytes()).map_err(LogLineError::Frame)?;
    frame.timestamp_ns = timestamp_ns;
    frame.set_direction(direction);
    frame.channel = match Channel::str(iface) {
        Ok(channel) => channel,
        // What an integer channel too wide for a string channel is written as.
        Err(e) => iface
            .strip_prefix("can")
            .and_then(|n| n.parse::<i64>().ok())
            .map(Channel::int)
            .ok_or(LogLineError::Frame(e))?,
    };
    Ok(Some(frame))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn frame(text: &str, ns: u64, ch: Channel) -> CanFrame {
        let mut f: CanFrame = text.parse().unwrap();
        f.timestamp_ns = ns;
        f.channel = ch;
        f
    }

    fn log_line(f: &CanFrame) -> String {
        let mut v = Vec::new();
        write_log_line(f, &mut v);
        String::from_utf8(v).unwrap()
    }

    #[test]
    fn writes_plain_log_lines() {
        let ns = 1_700_000_000_123_456_789;
        assert_eq!(
            log_line(&frame("123#DEADBEEF", ns, Channel::NONE)),
            "(1700000000.123456) vcan0 123#DEADBEEF\n"
        );
        assert_eq!(
            log_line(&frame("123##1AA", 5_000_000, Channel::int(3))),
            "(0000000000.005000) can3 123##5AA\n"
        );
        assert_eq!(
            log_line(&frame("1ABCDEF0#R2", 0, Channel::str("can1").unwrap())),
            "(0000000000.000000) can1 1ABCDEF0#R2\n"
        );
    }

    #[test]
    fn reads_every_variant() {
        let cases = [
            (
                "(1700000000.123456) can0 123#DEADBEEF",
                "123#DEADBEEF",
                1_700_000_000_123_456_000,
            ),
            (
                "(1700000000.123456789) can0 123#DEADBEEF R",
                "123#DEADBEEF",
                1_700_000_000_123_456_789,
            ),
            ("(0.5) vcan0 12345678#R T", "12345678#R", 500_000_000),
            (
                "(1.000001)  can0   123##F0011  ",
                "123##30011",
                1_000_001_000,
            ),
            (
                "(2.0) can0 123#1122334455667788_C",
                "123#1122334455667788_C",
                2_000_000_000,
            ),
            (
                "(3.25) can0 20000080#0000000000000000",
                "20000080#0000000000000000",
                3_250_000_000,
            ),
        ];
        for (line, text, ns) in cases {
            let mut f = parse_log_line(line).unwrap().unwrap();
            let tx = line.ends_with(" T");
            assert_eq!(f.direction() == Direction::Tx, tx, "{line}");
            f.set_direction(Direction::Rx);
            assert_eq!(
                f.content(),
                text.parse::<CanFrame>().unwrap().content(),
                "{line}"
            );
            assert_eq!(f.timestamp_ns, ns, "{line}");
        }
        assert_eq!(parse_log_line("").unwrap(), None);
        assert_eq!(parse_log_line("   # comment").unwrap(), None);
    }

    #[test]
    fn round_trips_through_text() {
        let f = frame(
            "123##3001122",
            1_700_000_000_000_001_000,
            Channel::str("can0").unwrap(),
        );
        let back = parse_log_line(&log_line(&f)).unwrap().unwrap();
        assert_eq!(back, f);
        // Every channel reads back as the name it was written as, even the widest.
        for channel in [
            Channel::int(i64::MIN),
            Channel::int(i64::MAX),
            Channel::int(-1),
            Channel::str(&"7".repeat(20)).unwrap(),
            Channel::str("1").unwrap(),
            Channel::NONE,
        ] {
            let f = frame("123#00", 1_000, channel);
            let line = log_line(&f);
            let back = parse_log_line(&line).unwrap().unwrap();
            assert_eq!(back.channel.to_string(), channel.to_string(), "{line}");
            assert_eq!(log_line(&back), line);
        }
        assert!(parse_log_line("(1.0) can99999999999999999999999 123#00").is_err());
    }

    /// Direction and raw DLC survive; error frames carry their class and their bytes.
    #[test]
    fn direction_raw_dlc_and_error_frames() {
        let mut tx = frame(
            "123#1122334455667788_C",
            1_000,
            Channel::str("can0").unwrap(),
        );
        tx.set_direction(Direction::Tx);
        let line = log_line(&tx);
        assert_eq!(line, "(0000000000.000001) can0 123#1122334455667788_C T\n");
        assert_eq!(parse_log_line(&line).unwrap().unwrap(), tx);
        let rx = parse_log_line("(1.0) can0 123#11 r").unwrap().unwrap();
        assert_eq!(rx.direction(), Direction::Rx);
        let mut err = CanFrame::EMPTY;
        err.flags = crate::frame::flags::ERROR | crate::frame::flags::EXTENDED;
        err.id = 0x80;
        // A frame without a channel is written on `vcan0` and reads back with it.
        err.channel = Channel::str("vcan0").unwrap();
        assert_eq!(log_line(&err), "(0000000000.000000) vcan0 20000080#\n");
        assert_eq!(parse_log_line(&log_line(&err)).unwrap().unwrap(), err);
        err.len = 8;
        err.data[0] = 0x04;
        assert_eq!(
            log_line(&err),
            "(0000000000.000000) vcan0 20000080#0400000000000000\n"
        );
        assert_eq!(parse_log_line(&log_line(&err)).unwrap().unwrap(), err);
    }

    #[test]
    fn timestamps_take_0_to_9_fraction_digits_and_refuse_the_rest() {
        for (text, ns) in [
            ("(5)", Some(5_000_000_000)),
            ("(5.)", Some(5_000_000_000)),
            ("(1.5)", Some(1_500_000_000)),
            ("(0001.000001)", Some(1_000_001_000)),
            ("(1.123456789)", Some(1_123_456_789)),
            ("(18446744073.709551615)", Some(u64::MAX)),
            ("(18446744073.709551616)", None),
            ("(99999999999999999999.0)", None),
            ("(1.1234567891)", None),
            ("()", None),
            ("(.5)", None),
            ("(1.5x)", None),
            ("(1,5)", None),
            ("(-1.5)", None),
            ("1.5", None),
        ] {
            assert_eq!(parse_timestamp(text), ns, "{text}");
        }
    }

    #[test]
    fn bad_lines_name_the_problem() {
        assert_eq!(parse_log_line("123#00"), Err(LogLineError::Shape));
        assert_eq!(
            parse_log_line("(x) can0 123#00"),
            Err(LogLineError::Timestamp)
        );
        assert_eq!(
            parse_log_line("(1.0) can0 123#00 R extra"),
            Err(LogLineError::Shape)
        );
        assert!(matches!(
            parse_log_line("(1.0) can0 800#00"),
            Err(LogLineError::Frame(FrameError::StdIdOutOfRange(0x800)))
        ));
    }

    #[test]
    fn screen_lines_look_like_candump() {
        let mut s = ScreenFormat::new(TimeMode::None);
        let mut out = Vec::new();
        s.write_line(&frame("123#DEADBEEF", 0, Channel::NONE), &mut out);
        s.write_line(&frame("12345678#0011", 0, Channel::NONE), &mut out);
        s.write_line(&frame("123#R4", 0, Channel::NONE), &mut out);
        s.write_line(
            &frame("123##1000102030405060708090A0B0C0D0E0F", 0, Channel::NONE),
            &mut out,
        );
        let text = String::from_utf8(out).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "  vcan0  123   [4]  DE AD BE EF");
        assert_eq!(lines[1], "  vcan0  12345678   [2]  00 11");
        assert_eq!(lines[2], "  vcan0  123   [4]  remote request");
        assert_eq!(
            lines[3],
            "  vcan0  123  [16]  00 01 02 03 04 05 06 07 08 09 0A 0B 0C 0D 0E 0F"
        );

        let mut z = ScreenFormat::new(TimeMode::Zero);
        let mut out = Vec::new();
        z.write_line(&frame("1#", 1_000_000_000, Channel::NONE), &mut out);
        z.write_line(&frame("1#", 1_250_000_000, Channel::NONE), &mut out);
        let text = String::from_utf8(out).unwrap();
        assert!(
            text.lines().nth(1).unwrap().starts_with(" (000.250000)"),
            "{text}"
        );
    }
}
