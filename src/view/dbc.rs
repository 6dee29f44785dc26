//! DBC signal decoding (`--dbc FILE` on `dump`, `top` and `convert`): the file is parsed
//! with the `can-dbc` crate, then compiled into [`Dbc`], which decodes a frame's signals
//! without allocating.
//!
//! Covered: little endian (Intel, `@1`) and big endian (Motorola, `@0`) bit layouts,
//! signed and unsigned integers, IEEE float and double (`SIG_VALTYPE_`), factor and
//! offset, value tables (`VAL_`), simple multiplexing (`M` / `m<N>`) and extended
//! multiplexing (`SG_MUL_VAL_`, multiplexors that are themselves multiplexed).
//! A signal that does not fit in the frame's payload is not decoded.

use std::collections::HashMap;
use std::fmt;
use std::io;
use std::path::{Path, PathBuf};

use can_dbc::{
    ByteOrder as DbcByteOrder, MessageId, MultiplexIndicator, SignalExtendedValueType,
    ValueDescription, ValueType,
};

use crate::frame::CanFrame;

/// How a signal's bits are laid out.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    /// Intel (`@1`): the start bit is the least significant bit.
    LittleEndian,
    /// Motorola (`@0`): the start bit is the most significant bit, counted in the DBC's
    /// "sawtooth" numbering (bit 7 of byte 0 is bit 7, bit 0 of byte 1 is bit 8).
    BigEndian,
}

/// What a signal's raw bits hold.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ValueKind {
    /// An integer, two's complement when `signed`.
    Integer {
        /// Signed (`-`) or unsigned (`+`).
        signed: bool,
    },
    /// An IEEE 754 single (32 bits).
    Float32,
    /// An IEEE 754 double (64 bits).
    Float64,
}

/// A signal's raw value, before factor and offset.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum RawValue {
    /// A signed integer.
    Signed(i64),
    /// An unsigned integer.
    Unsigned(u64),
    /// A float or double.
    Float(f64),
}

impl RawValue {
    fn as_f64(self) -> f64 {
        match self {
            RawValue::Signed(v) => v as f64,
            RawValue::Unsigned(v) => v as f64,
            RawValue::Float(v) => v,
        }
    }

    /// The value as a value-table key, for integers.
    fn as_i64(self) -> Option<i64> {
        match self {
            RawValue::Signed(v) => Some(v),
            RawValue::Unsigned(v) => i64::try_from(v).ok(),
            RawValue::Float(_) => None,
        }
    }

    /// The value as a multiplexor selector.
    fn as_selector(self) -> Option<u64> {
        match self {
            RawValue::Signed(v) => u64::try_from(v).ok(),
            RawValue::Unsigned(v) => Some(v),
            RawValue::Float(_) => None,
        }
    }
}

/// When a multiplexed signal is present: the multiplexor (an index into the message's
/// signals) holds one of these inclusive ranges.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MuxCondition {
    /// Index of the multiplexor signal in [`MessageDef::signals`].
    pub multiplexor: usize,
    /// Inclusive ranges of multiplexor values.
    pub ranges: Vec<(u64, u64)>,
}

/// One signal of a message.
#[derive(Debug, Clone, PartialEq)]
pub struct SignalDef {
    /// Its name.
    pub name: String,
    /// The DBC start bit.
    pub start_bit: u32,
    /// Width in bits (1–64).
    pub size: u32,
    /// Bit layout.
    pub byte_order: ByteOrder,
    /// What the bits hold.
    pub kind: ValueKind,
    /// Physical value = raw × factor + offset.
    pub factor: f64,
    /// Physical value = raw × factor + offset.
    pub offset: f64,
    /// Unit, possibly empty.
    pub unit: String,
    /// True for a multiplexor switch.
    pub is_multiplexor: bool,
    /// For a multiplexed signal, when it is present.
    pub condition: Option<MuxCondition>,
    /// Value table: raw value → label.
    pub choices: Vec<(i64, String)>,
}

impl SignalDef {
    /// The raw value in `data`, or `None` if the signal does not fit in it.
    pub fn raw(&self, data: &[u8]) -> Option<RawValue> {
        let bits = self.extract(data)?;
        let size = self.size;
        Some(match self.kind {
            ValueKind::Integer { signed: false } => RawValue::Unsigned(bits),
            ValueKind::Integer { signed: true } => {
                let v = if size < 64 && bits & (1 << (size - 1)) != 0 {
                    bits | !((1u64 << size) - 1)
                } else {
                    bits
                };
                RawValue::Signed(v as i64)
            }
            ValueKind::Float32 => RawValue::Float(f64::from(f32::from_bits(bits as u32))),
            ValueKind::Float64 => RawValue::Float(f64::from_bits(bits)),
        })
    }

    /// The signal's bits as an unsigned number.
    fn extract(&self, data: &[u8]) -> Option<u64> {
        if self.size == 0 || self.size > 64 {
            return None;
        }
        let bit_at = |pos: u32| -> Option<u64> {
            let byte = *data.get((pos / 8) as usize)?;
            Some(u64::from((byte >> (pos % 8)) & 1))
        };
        let mut v = 0u64;
        match self.byte_order {
            ByteOrder::LittleEndian => {
                for i in 0..self.size {
                    v |= bit_at(self.start_bit + i)? << i;
                }
            }
            ByteOrder::BigEndian => {
                // From the most significant bit down: within a byte towards bit 0, then
                // on to bit 7 of the next byte.
                let mut pos = self.start_bit;
                for _ in 0..self.size {
                    v = (v << 1) | bit_at(pos)?;
                    pos = if pos % 8 == 0 { pos + 15 } else { pos - 1 };
                }
            }
        }
        Some(v)
    }

    /// The label the value table gives `raw`, if any.
    pub fn label(&self, raw: RawValue) -> Option<&str> {
        let k = raw.as_i64()?;
        self.choices
            .iter()
            .find(|(v, _)| *v == k)
            .map(|(_, s)| s.as_str())
    }
}

/// One message of the DBC.
#[derive(Debug, Clone, PartialEq)]
pub struct MessageDef {
    /// Its name.
    pub name: String,
    /// Identifier (without the extended flag).
    pub id: u32,
    /// 29-bit identifier.
    pub extended: bool,
    /// Length the DBC gives, bytes.
    pub size: u32,
    /// Its signals, in DBC order.
    pub signals: Vec<SignalDef>,
}

impl MessageDef {
    /// True when signal `i` is present in `data` (its multiplexors, if any, select it).
    fn active(&self, i: usize, data: &[u8], depth: u32) -> bool {
        let Some(c) = &self.signals[i].condition else {
            return true;
        };
        // A multiplexor chain longer than the message has signals is a cycle.
        if depth as usize > self.signals.len() || !self.active(c.multiplexor, data, depth + 1) {
            return false;
        }
        match self.signals[c.multiplexor]
            .raw(data)
            .and_then(RawValue::as_selector)
        {
            Some(sel) => c.ranges.iter().any(|&(lo, hi)| (lo..=hi).contains(&sel)),
            None => false,
        }
    }
}

/// One decoded signal.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SignalValue<'a> {
    /// Its definition.
    pub signal: &'a SignalDef,
    /// The raw value.
    pub raw: RawValue,
    /// raw × factor + offset.
    pub value: f64,
    /// The value table's label for the raw value, if any.
    pub label: Option<&'a str>,
}

impl fmt::Display for SignalValue<'_> {
    /// `Name=12.5 km/h` or `Gear=3 (Drive)`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}={}", self.signal.name, self.value)?;
        if !self.signal.unit.is_empty() {
            write!(f, " {}", self.signal.unit)?;
        }
        if let Some(l) = self.label {
            write!(f, " ({l})")?;
        }
        Ok(())
    }
}

/// Why a DBC file could not be used.
#[derive(Debug)]
pub enum DbcError {
    /// Reading the file failed.
    Io {
        /// The file.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// The text is not a DBC the parser accepts.
    Parse {
        /// The file, if read from one.
        path: Option<PathBuf>,
        /// The parser's message.
        message: String,
    },
}

impl fmt::Display for DbcError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            DbcError::Io { path, source } => write!(f, "{}: {source}", path.display()),
            DbcError::Parse {
                path: Some(p),
                message,
            } => write!(f, "{}: not a valid DBC: {message}", p.display()),
            DbcError::Parse {
                path: None,
                message,
            } => write!(f, "not a valid DBC: {message}"),
        }
    }
}

impl std::error::Error for DbcError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            DbcError::Io { source, .. } => Some(source),
            DbcError::Parse { .. } => None,
        }
    }
}

/// A compiled DBC: messages by identifier, ready to decode frames.
#[derive(Debug, Clone, Default)]
pub struct Dbc {
    messages: Vec<MessageDef>,
    by_id: HashMap<(u32, bool), usize>,
}

impl Dbc {
    /// Reads and compiles a DBC file (UTF-8, or Windows-1252 as many tools write).
    pub fn open(path: &Path) -> Result<Dbc, DbcError> {
        let bytes = std::fs::read(path).map_err(|source| DbcError::Io {
            path: path.to_path_buf(),
            source,
        })?;
        let text = match String::from_utf8(bytes) {
            Ok(s) => s,
            // Latin-1 reading of a Windows-1252 file: right for everything but the
            // 0x80–0x9F punctuation, which only appears in comments and names.
            Err(e) => e.into_bytes().iter().map(|&b| char::from(b)).collect(),
        };
        Dbc::parse(&text).map_err(|e| match e {
            DbcError::Parse { message, .. } => DbcError::Parse {
                path: Some(path.to_path_buf()),
                message,
            },
            e => e,
        })
    }

    /// Compiles DBC text.
    pub fn parse(text: &str) -> Result<Dbc, DbcError> {
        let ast = can_dbc::Dbc::try_from(text).map_err(|e| DbcError::Parse {
            path: None,
            message: one_line(&e.to_string()),
        })?;
        let mut dbc = Dbc::default();
        for m in &ast.messages {
            let (id, extended) = match m.id {
                MessageId::Standard(id) => (u32::from(id), false),
                MessageId::Extended(id) => (id, true),
            };
            // VECTOR__INDEPENDENT_SIG_MSG and other pseudo messages.
            if id >= crate::frame::EXT_ID_LIMIT {
                continue;
            }
            let mut signals: Vec<SignalDef> = m
                .signals
                .iter()
                .map(|s| {
                    let signed = s.value_type == ValueType::Signed;
                    let kind = match ast.extended_value_type_for_signal(m.id, &s.name) {
                        Some(SignalExtendedValueType::IEEEfloat32Bit) => ValueKind::Float32,
                        Some(SignalExtendedValueType::IEEEdouble64bit) => ValueKind::Float64,
                        _ => ValueKind::Integer { signed },
                    };
                    let choices = ast
                        .value_descriptions
                        .iter()
                        .find_map(|v| match v {
                            ValueDescription::Signal {
                                message_id,
                                name,
                                value_descriptions,
                            } if *message_id == m.id && *name == s.name => Some(
                                value_descriptions
                                    .iter()
                                    .map(|d| (d.id, d.description.clone()))
                                    .collect(),
                            ),
                            _ => None,
                        })
                        .unwrap_or_default();
                    SignalDef {
                        name: s.name.clone(),
                        start_bit: s.start_bit.min(u64::from(u32::MAX)) as u32,
                        size: s.size.min(u64::from(u32::MAX)) as u32,
                        byte_order: match s.byte_order {
                            DbcByteOrder::LittleEndian => ByteOrder::LittleEndian,
                            DbcByteOrder::BigEndian => ByteOrder::BigEndian,
                        },
                        kind,
                        factor: s.factor,
                        offset: s.offset,
                        unit: s.unit.clone(),
                        is_multiplexor: matches!(
                            s.multiplexer_indicator,
                            MultiplexIndicator::Multiplexor
                                | MultiplexIndicator::MultiplexorAndMultiplexedSignal(_)
                        ),
                        condition: None,
                        choices,
                    }
                })
                .collect();
            // Simple multiplexing: m<N> belongs to the message's (only) M switch.
            let switch = m
                .signals
                .iter()
                .position(|s| s.multiplexer_indicator == MultiplexIndicator::Multiplexor);
            for (i, s) in m.signals.iter().enumerate() {
                let sel = match s.multiplexer_indicator {
                    MultiplexIndicator::MultiplexedSignal(v)
                    | MultiplexIndicator::MultiplexorAndMultiplexedSignal(v) => v,
                    _ => continue,
                };
                if let Some(sw) = switch.filter(|&sw| sw != i) {
                    signals[i].condition = Some(MuxCondition {
                        multiplexor: sw,
                        ranges: vec![(sel, sel)],
                    });
                }
            }
            // Extended multiplexing names the multiplexor and the ranges explicitly.
            for x in ast
                .extended_multiplex
                .iter()
                .filter(|x| x.message_id == m.id)
            {
                let at = |name: &str| signals.iter().position(|s| s.name == name);
                if let (Some(i), Some(mux)) = (at(&x.signal_name), at(&x.multiplexor_signal_name)) {
                    if i != mux {
                        signals[i].condition = Some(MuxCondition {
                            multiplexor: mux,
                            ranges: x
                                .mappings
                                .iter()
                                .map(|r| (r.min_value, r.max_value))
                                .collect(),
                        });
                    }
                }
            }
            dbc.by_id.insert((id, extended), dbc.messages.len());
            dbc.messages.push(MessageDef {
                name: m.name.clone(),
                id,
                extended,
                size: m.size.min(u64::from(u32::MAX)) as u32,
                signals,
            });
        }
        Ok(dbc)
    }

    /// Every message, in DBC order.
    pub fn messages(&self) -> &[MessageDef] {
        &self.messages
    }

    /// The message a frame's identifier names, if the DBC has it.
    pub fn message_for(&self, frame: &CanFrame) -> Option<&MessageDef> {
        if frame.is_error() || frame.is_remote() {
            return None;
        }
        let i = *self.by_id.get(&(frame.id, frame.is_extended()))?;
        Some(&self.messages[i])
    }

    /// Hands each signal present in `frame` to `f`, in DBC order; returns the message,
    /// or `None` (and calls nothing) when the DBC does not know the identifier.
    pub fn decode<'a>(
        &'a self,
        frame: &CanFrame,
        f: &mut dyn FnMut(SignalValue<'a>),
    ) -> Option<&'a MessageDef> {
        let m = self.message_for(frame)?;
        let data = frame.payload();
        for (i, s) in m.signals.iter().enumerate() {
            if !m.active(i, data, 0) {
                continue;
            }
            let Some(raw) = s.raw(data) else {
                continue;
            };
            f(SignalValue {
                signal: s,
                raw,
                value: raw.as_f64() * s.factor + s.offset,
                label: s.label(raw),
            });
        }
        Some(m)
    }
}

impl Dbc {
    /// Appends `  Message: Sig=1.5 unit, Other=3 (Label)` and a newline to `out` when
    /// the DBC knows the frame; returns whether it did. For `dump --dbc`.
    pub fn describe(&self, frame: &CanFrame, out: &mut Vec<u8>) -> bool {
        use std::io::Write as _;
        let start = out.len();
        let mut first = true;
        let m = self.decode(frame, &mut |s| {
            let sep = if first { "" } else { "," };
            first = false;
            let _ = write!(out, "{sep} {s}");
        });
        match m {
            Some(m) => {
                let head = format!("  {}:", m.name);
                out.splice(start..start, head.bytes());
                out.push(b'\n');
                true
            }
            None => false,
        }
    }
}

/// Writes decoded signals as CSV, one row per signal:
/// `timestamp,channel,id,message,signal,value,unit,label` (timestamp in seconds since
/// the epoch with 9 decimals, id in hex as candump writes it). For `convert --dbc`.
#[derive(Debug)]
pub struct SignalCsv<W: io::Write> {
    out: W,
    line: String,
    /// Rows written.
    pub rows: u64,
    /// Frames the DBC had no message for.
    pub unknown_frames: u64,
}

impl<W: io::Write> SignalCsv<W> {
    /// The header row.
    pub const HEADER: &'static str = "timestamp,channel,id,message,signal,value,unit,label\n";

    /// Starts the CSV (writes the header).
    pub fn new(mut out: W) -> io::Result<SignalCsv<W>> {
        out.write_all(Self::HEADER.as_bytes())?;
        Ok(SignalCsv {
            out,
            line: String::with_capacity(256),
            rows: 0,
            unknown_frames: 0,
        })
    }

    /// Writes the signals of one frame.
    pub fn write_frame(&mut self, dbc: &Dbc, frame: &CanFrame) -> io::Result<()> {
        use std::fmt::Write as _;
        let Some(m) = dbc.message_for(frame) else {
            self.unknown_frames += 1;
            return Ok(());
        };
        let ts = frame.timestamp_ns;
        let id = if frame.is_extended() {
            format!("{:08X}", frame.id)
        } else {
            format!("{:03X}", frame.id)
        };
        let channel = frame.channel.to_string();
        let (channel, name) = (csv_field(&channel), csv_field(&m.name));
        let line = &mut self.line;
        let mut rows = 0;
        dbc.decode(frame, &mut |s| {
            let _ = writeln!(
                line,
                "{}.{:09},{channel},{id},{name},{},{},{},{}",
                ts / 1_000_000_000,
                ts % 1_000_000_000,
                csv_field(&s.signal.name),
                s.value,
                csv_field(&s.signal.unit),
                csv_field(s.label.unwrap_or("")),
            );
            rows += 1;
        });
        self.out.write_all(self.line.as_bytes())?;
        self.rows += rows;
        self.line.clear();
        Ok(())
    }

    /// Flushes and hands back the writer.
    pub fn finish(mut self) -> io::Result<W> {
        self.out.flush()?;
        Ok(self.out)
    }
}

/// The parser's message on one line: pest draws the place over several lines
/// (`--> 1:5`, the source line, a caret, `= expected message_id`).
fn one_line(message: &str) -> String {
    let at = message
        .lines()
        .find_map(|l| l.trim().strip_prefix("--> "))
        .map(|p| format!("at line:column {p}: "));
    let what = message
        .lines()
        .find_map(|l| l.trim().strip_prefix("= "))
        .unwrap_or_else(|| message.lines().next().unwrap_or("parse error"));
    format!("{}{what}", at.unwrap_or_default())
}

/// A CSV field, quoted when it holds a comma, quote or line break.
fn csv_field(s: &str) -> std::borrow::Cow<'_, str> {
    if s.contains([',', '"', '\n', '\r']) {
        std::borrow::Cow::Owned(format!("\"{}\"", s.replace('"', "\"\"")))
    } else {
        std::borrow::Cow::Borrowed(s)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const DBC: &str = r#"VERSION ""

NS_ :

BS_:

BU_: ECU

BO_ 256 Engine: 8 ECU
 SG_ Speed : 0|16@1+ (0.01,0) [0|655.35] "km/h" ECU
 SG_ Temp : 16|8@1- (1,-40) [-168|87] "degC" ECU
 SG_ Rpm : 31|16@0+ (0.25,0) [0|16383.75] "rpm" ECU
 SG_ Gear : 48|4@1+ (1,0) [0|15] "" ECU

BO_ 2147484416 Mux: 8 ECU
 SG_ Sel M : 0|8@1+ (1,0) [0|255] "" ECU
 SG_ A m1 : 8|16@1- (1,0) [0|0] "" ECU
 SG_ B m2 : 8|32@1+ (1,0) [0|0] "" ECU

VAL_ 256 Gear 0 "Park" 1 "Drive" 2 "Reverse" ;
"#;

    fn decode(dbc: &Dbc, f: &CanFrame) -> Vec<(String, f64, Option<String>)> {
        let mut v = Vec::new();
        dbc.decode(f, &mut |s| {
            v.push((s.signal.name.clone(), s.value, s.label.map(str::to_string)))
        });
        v
    }

    #[test]
    fn little_big_signed_scaled_and_labels() {
        let dbc = Dbc::parse(DBC).unwrap();
        // Speed 0x1234 LE = 46.60; Temp 0xF6 = -10 → -50; Rpm BE from bit 31: bytes
        // 3,4 = 0x0FA0 = 4000 → 1000 rpm; Gear 1.
        let f = CanFrame::new(0x100, 0, &[0x34, 0x12, 0xF6, 0x0F, 0xA0, 0, 0x01, 0]).unwrap();
        let v = decode(&dbc, &f);
        assert_eq!(v.len(), 4);
        assert!((v[0].1 - 46.60).abs() < 1e-9);
        assert_eq!(v[1].1, -50.0);
        assert_eq!(v[2].1, 1000.0);
        assert_eq!((v[3].1, v[3].2.as_deref()), (1.0, Some("Drive")));
    }

    #[test]
    fn multiplexed_signals_follow_the_switch() {
        let dbc = Dbc::parse(DBC).unwrap();
        let ext = crate::frame::flags::EXTENDED;
        let f = CanFrame::new(0x300, ext, &[1, 0xFF, 0xFF, 0, 0, 0, 0, 0]).unwrap();
        let v = decode(&dbc, &f);
        assert_eq!(
            v.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
            ["Sel", "A"]
        );
        assert_eq!(v[1].1, -1.0);
        let f = CanFrame::new(0x300, ext, &[2, 1, 0, 0, 0, 0, 0, 0]).unwrap();
        let v = decode(&dbc, &f);
        assert_eq!(
            v.iter().map(|s| s.0.as_str()).collect::<Vec<_>>(),
            ["Sel", "B"]
        );
        // A standard frame with the same number is another message.
        assert!(dbc
            .decode(&CanFrame::new(0x300, 0, &[1]).unwrap(), &mut |_| {})
            .is_none());
    }

    #[test]
    fn short_frames_skip_what_does_not_fit() {
        let dbc = Dbc::parse(DBC).unwrap();
        let f = CanFrame::new(0x100, 0, &[1, 0, 3]).unwrap();
        let names: Vec<_> = decode(&dbc, &f).into_iter().map(|s| s.0).collect();
        assert_eq!(names, ["Speed", "Temp"]);
    }

    #[test]
    fn text_and_csv_lines() {
        let dbc = Dbc::parse(DBC).unwrap();
        let mut f = CanFrame::new(0x100, 0, &[0x34, 0x12, 0xF6, 0x0F, 0xA0, 0, 0x01, 0]).unwrap();
        f.timestamp_ns = 1_700_000_000_123_456_789;
        let mut out = Vec::new();
        assert!(dbc.describe(&f, &mut out));
        assert_eq!(
            String::from_utf8(out).unwrap(),
            "  Engine: Speed=46.6 km/h, Temp=-50 degC, Rpm=1000 rpm, Gear=1 (Drive)\n"
        );
        let mut csv = SignalCsv::new(Vec::new()).unwrap();
        csv.write_frame(&dbc, &f).unwrap();
        csv.write_frame(&dbc, &CanFrame::new(0x7FF, 0, &[]).unwrap())
            .unwrap();
        assert_eq!((csv.rows, csv.unknown_frames), (4, 1));
        let text = String::from_utf8(csv.finish().unwrap()).unwrap();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(
            lines[0],
            "timestamp,channel,id,message,signal,value,unit,label"
        );
        assert_eq!(
            lines[1],
            "1700000000.123456789,vcan0,100,Engine,Speed,46.6,km/h,"
        );
        assert_eq!(
            lines[4],
            "1700000000.123456789,vcan0,100,Engine,Gear,1,,Drive"
        );
        assert_eq!(csv_field("a,\"b"), "\"a,\"\"b\"");
    }

    #[test]
    fn bad_text_is_a_parse_error() {
        assert!(matches!(Dbc::parse("BO_ x"), Err(DbcError::Parse { .. })));
    }
}
