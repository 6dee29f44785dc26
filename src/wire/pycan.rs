//! python-can's `udp_multicast` wire format (SPEC §2.1): one msgpack map per datagram,
//! encoded byte for byte as python-can's `pack_message` does, decoded without allocating.
//!
//! `pack_message` is `msgpack.packb(dict, use_bin_type=True)` of an 11-key dict in a fixed
//! order, so [`encode`] writes a fixed template of keys with the values in between. The
//! decoder is a small hand-written msgpack reader that knows only the eleven keys; it
//! accepts whatever python-can's receiver (`unpack_message`, then `Message(check=True)`)
//! would accept and maps it onto [`CanFrame`]. Where the two differ, canmc is more lenient
//! in one way and stricter in others:
//!
//! - unknown and non-string keys are skipped (python-can raises `TypeError` on them);
//! - CAN FD lengths must be one of [`FD_LENGTHS`](crate::frame::FD_LENGTHS) (python-can
//!   allows any length up to 64);
//! - values python accepts only by accident of duck typing are refused as
//!   [`DecodeError::BadFieldType`]: a float `arbitration_id` or `dlc`, an int `data`
//!   (`bytearray(n)`), nil or a float for a bool field;
//! - timestamps past what a u64 of ns holds (the year 2554) are refused.
//!
//! Values of unknown keys are skipped with a pending-item counter rather than recursion,
//! so a datagram of nested arrays cannot exhaust the stack.

use crate::frame::{flags, CanFrame, Channel};
use crate::wire::DecodeError;

/// Largest datagram [`encode`] writes.
///
/// The template of keys is 132 bytes; the largest values add 9 (timestamp), 5
/// (arbitration_id), 6 (bools), 23 (channel string of 22 bytes), 2 (dlc) and 66 (data),
/// 243 in all.
pub const MAX_ENCODED: usize = 256;

const NS_PER_SEC: u64 = 1_000_000_000;

/// Encodes `frame` exactly as python-can's `pack_message` would for the same message.
///
/// The timestamp is `frame.timestamp_ns as f64 / 1e9`, which is what python computes for
/// `float(ns) / 1e9`. The frame is not validated here: callers send only frames that
/// passed [`CanFrame::validate`]. Returns the length written.
pub fn encode(frame: &CanFrame, out: &mut [u8; MAX_ENCODED]) -> usize {
    let mut w = Writer { buf: out, n: 0 };
    let f = frame.flags;
    let bit = |b: u8| if f & b != 0 { 0xc3 } else { 0xc2 };

    w.put(b"\x8b\xa9timestamp\xcb");
    w.put(&(frame.timestamp_ns as f64 / 1e9).to_bits().to_be_bytes());
    w.put(b"\xaearbitration_id");
    w.uint(frame.id as u64);
    w.put(b"\xaeis_extended_id");
    w.byte(bit(flags::EXTENDED));
    w.put(b"\xafis_remote_frame");
    w.byte(bit(flags::RTR));
    w.put(b"\xaeis_error_frame");
    w.byte(bit(flags::ERROR));
    w.put(b"\xa7channel");
    match frame.channel.get() {
        crate::frame::ChannelRef::None => w.byte(0xc0),
        crate::frame::ChannelRef::Int(v) => w.int(v),
        crate::frame::ChannelRef::Str(s) => w.str(s.as_bytes()),
    }
    w.put(b"\xa3dlc");
    // python-can's dlc is the byte length; for a remote frame the requested one.
    w.uint(frame.len as u64);
    w.put(b"\xa4data\xc4");
    let payload = frame.payload();
    w.byte(payload.len() as u8);
    w.put(payload);
    w.put(b"\xa5is_fd");
    w.byte(bit(flags::FD));
    w.put(b"\xaebitrate_switch");
    w.byte(bit(flags::BRS));
    w.put(b"\xb5error_state_indicator");
    w.byte(bit(flags::ESI));
    w.n
}

/// Appends to the output buffer. [`MAX_ENCODED`] bounds what `encode` can write, so the
/// checked writes never fail; they exist so that a wrong bound truncates instead of
/// panicking in release builds.
struct Writer<'a> {
    buf: &'a mut [u8; MAX_ENCODED],
    n: usize,
}

impl Writer<'_> {
    #[inline(always)]
    fn put(&mut self, bytes: &[u8]) {
        let end = self.n + bytes.len();
        if let Some(dst) = self.buf.get_mut(self.n..end) {
            dst.copy_from_slice(bytes);
            self.n = end;
        } else {
            debug_assert!(false, "pycan::encode overflowed MAX_ENCODED");
        }
    }

    #[inline(always)]
    fn byte(&mut self, b: u8) {
        self.put(&[b]);
    }

    /// msgpack-python's choice for a non-negative int: the smallest that holds it.
    fn uint(&mut self, v: u64) {
        if v < 0x80 {
            self.byte(v as u8);
        } else if v <= 0xff {
            self.put(&[0xcc, v as u8]);
        } else if v <= 0xffff {
            self.byte(0xcd);
            self.put(&(v as u16).to_be_bytes());
        } else if v <= 0xffff_ffff {
            self.byte(0xce);
            self.put(&(v as u32).to_be_bytes());
        } else {
            self.byte(0xcf);
            self.put(&v.to_be_bytes());
        }
    }

    /// msgpack-python's choice for any int: unsigned forms for v >= 0, else the
    /// smallest signed form.
    fn int(&mut self, v: i64) {
        if v >= 0 {
            self.uint(v as u64);
        } else if v >= -32 {
            self.byte(v as u8);
        } else if v >= i8::MIN as i64 {
            self.put(&[0xd0, v as u8]);
        } else if v >= i16::MIN as i64 {
            self.byte(0xd1);
            self.put(&(v as i16).to_be_bytes());
        } else if v >= i32::MIN as i64 {
            self.byte(0xd2);
            self.put(&(v as i32).to_be_bytes());
        } else {
            self.byte(0xd3);
            self.put(&v.to_be_bytes());
        }
    }

    fn str(&mut self, s: &[u8]) {
        if s.len() < 32 {
            self.byte(0xa0 | s.len() as u8);
        } else {
            // Channel strings are at most 22 bytes; kept for completeness.
            self.put(&[0xd9, s.len().min(255) as u8]);
        }
        self.put(s.get(..255).unwrap_or(s));
    }
}

/// One msgpack item header: a scalar with its value, or a container with its count.
/// Containers' elements follow in the input and are not consumed by [`Reader::item`].
#[derive(Debug, Clone, Copy)]
enum Item<'a> {
    Nil,
    Bool(bool),
    Int(i128),
    Float(f64),
    Str(&'a [u8]),
    Bin(&'a [u8]),
    Ext,
    Array(u32),
    Map(u32),
}

/// Cursor over a datagram. Every read is bounds-checked and reports [`DecodeError::Truncated`].
struct Reader<'a> {
    rest: &'a [u8],
}

impl<'a> Reader<'a> {
    #[inline(always)]
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.rest.len() {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.rest.split_at(n);
        self.rest = tail;
        Ok(head)
    }

    #[inline(always)]
    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let s = self.take(N)?;
        let mut a = [0u8; N];
        a.copy_from_slice(s);
        Ok(a)
    }

    #[inline(always)]
    fn u8(&mut self) -> Result<u8, DecodeError> {
        let (&b, tail) = self.rest.split_first().ok_or(DecodeError::Truncated)?;
        self.rest = tail;
        Ok(b)
    }

    fn u16(&mut self) -> Result<u16, DecodeError> {
        Ok(u16::from_be_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_be_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_be_bytes(self.array()?))
    }

    /// Reads one item header (and a scalar's payload).
    #[inline]
    fn item(&mut self) -> Result<Item<'a>, DecodeError> {
        let m = self.u8()?;
        Ok(match m {
            0x00..=0x7f => Item::Int(m as i128),
            0x80..=0x8f => Item::Map((m & 0x0f) as u32),
            0x90..=0x9f => Item::Array((m & 0x0f) as u32),
            0xa0..=0xbf => Item::Str(self.take((m & 0x1f) as usize)?),
            0xc0 => Item::Nil,
            0xc1 => return Err(DecodeError::NotMsgpack),
            0xc2 => Item::Bool(false),
            0xc3 => Item::Bool(true),
            0xc4 => {
                let n = self.u8()? as usize;
                Item::Bin(self.take(n)?)
            }
            0xc5 => {
                let n = self.u16()? as usize;
                Item::Bin(self.take(n)?)
            }
            0xc6 => {
                let n = self.u32()? as usize;
                Item::Bin(self.take(n)?)
            }
            0xc7..=0xc9 => {
                let n = match m {
                    0xc7 => self.u8()? as usize,
                    0xc8 => self.u16()? as usize,
                    _ => self.u32()? as usize,
                };
                self.take(1 + n)?; // type byte, then data
                Item::Ext
            }
            0xca => Item::Float(f32::from_bits(self.u32()?) as f64),
            0xcb => Item::Float(f64::from_bits(self.u64()?)),
            0xcc => Item::Int(self.u8()? as i128),
            0xcd => Item::Int(self.u16()? as i128),
            0xce => Item::Int(self.u32()? as i128),
            0xcf => Item::Int(self.u64()? as i128),
            0xd0 => Item::Int(self.u8()? as i8 as i128),
            0xd1 => Item::Int(self.u16()? as i16 as i128),
            0xd2 => Item::Int(self.u32()? as i32 as i128),
            0xd3 => Item::Int(self.u64()? as i64 as i128),
            0xd4..=0xd8 => {
                // fixext 1, 2, 4, 8, 16: type byte, then 2^(m-0xd4) bytes.
                self.take(1 + (1usize << (m - 0xd4)))?;
                Item::Ext
            }
            0xd9 => {
                let n = self.u8()? as usize;
                Item::Str(self.take(n)?)
            }
            0xda => {
                let n = self.u16()? as usize;
                Item::Str(self.take(n)?)
            }
            0xdb => {
                let n = self.u32()? as usize;
                Item::Str(self.take(n)?)
            }
            0xdc => Item::Array(self.u16()? as u32),
            0xdd => Item::Array(self.u32()?),
            0xde => Item::Map(self.u16()? as u32),
            0xdf => Item::Map(self.u32()?),
            0xe0..=0xff => Item::Int(m as i8 as i128),
        })
    }

    /// Skips `pending` whole items. Iterative: a container adds its elements to the
    /// count instead of recursing, so nesting depth costs nothing. Every header takes
    /// at least one byte, so the loop ends within the datagram's length.
    fn skip(&mut self, mut pending: u64) -> Result<(), DecodeError> {
        while pending > 0 {
            if pending > self.rest.len() as u64 {
                // Each remaining item needs at least one byte.
                return Err(DecodeError::Truncated);
            }
            pending -= 1;
            match self.item()? {
                Item::Array(n) => pending += n as u64,
                Item::Map(n) => pending += 2 * n as u64,
                _ => {}
            }
        }
        Ok(())
    }

    /// Skips the elements of `item` if it is a container (its header is already read).
    fn skip_contents(&mut self, item: Item<'_>) -> Result<(), DecodeError> {
        match item {
            Item::Array(n) => self.skip(n as u64),
            Item::Map(n) => self.skip(2 * n as u64),
            _ => Ok(()),
        }
    }
}

/// Seconds as python-can carries them to ns, rounded to the nearest ns. Splitting off
/// the whole seconds first keeps the result exact enough that re-encoding gives back
/// the same float.
fn secs_to_ns(t: f64) -> Result<u64, DecodeError> {
    // Negative, NaN and infinite: python-can's check=True rejects them. Beyond what a u64
    // of ns holds (year 2554) python-can would accept, but a frame cannot carry it; the
    // float `encode` makes of u64::MAX itself is let in, saturated, so it round-trips.
    if t.is_nan() || t < 0.0 || t > u64::MAX as f64 / 1e9 {
        return Err(DecodeError::InvalidFrame);
    }
    // Casts instead of trunc()/round(), which are libm calls on baseline x86-64. Both
    // subtractions are exact (a float minus its own integer part), so this rounds half
    // away from zero exactly as round() would.
    let whole = t as u64;
    let frac = (t - whole as f64) * 1e9;
    let frac_floor = frac as u64;
    let frac_ns = frac_floor + (frac - frac_floor as f64 >= 0.5) as u64;
    Ok(whole.saturating_mul(NS_PER_SEC).saturating_add(frac_ns))
}

/// State of a field that may be set (and overwritten: duplicate keys, last wins) several
/// times; its errors count only if they survive to the end.
type Field<T> = Result<T, DecodeError>;

/// Decodes one datagram into `frame`: id, flags, len, data, channel, and `timestamp_ns`
/// from the datagram's own timestamp field (the nearest ns to its seconds). `frame.sender`
/// is left untouched; on error the other fields hold unspecified (but harmless) values.
/// Allocates nothing.
///
/// Accepts what python-can's receiver accepts: any key order, missing keys (python-can's
/// defaults, `is_extended_id` true), duplicate keys (the last wins), an int or float
/// timestamp, `data` as bin or as an array of ints, bools as ints; unknown and non-string
/// keys are skipped. Errors name the first problem found: structure ([`DecodeError::Truncated`],
/// [`NotMsgpack`](DecodeError::NotMsgpack), [`NotAMap`](DecodeError::NotAMap),
/// [`TrailingBytes`](DecodeError::TrailingBytes)), then field types
/// ([`BadFieldType`](DecodeError::BadFieldType)), then values
/// ([`InvalidFrame`](DecodeError::InvalidFrame), [`BadChannel`](DecodeError::BadChannel)).
pub fn decode(datagram: &[u8], frame: &mut CanFrame) -> Result<(), DecodeError> {
    match decode_canonical(datagram, frame) {
        Some(result) => result,
        None => decode_any(datagram, frame),
    }
}

/// The fast path: a datagram laid out exactly as `pack_message` lays it out (what
/// python-can and canmc send), read against the key template with no key lookup.
/// `None` for anything else, which [`decode_any`] then handles; where both apply they
/// agree (a property test checks it).
#[inline]
fn decode_canonical(d: &[u8], frame: &mut CanFrame) -> Option<Result<(), DecodeError>> {
    let mut r = Reader { rest: d };
    let expect = |r: &mut Reader<'_>, key: &[u8]| -> Option<()> {
        (r.take(key.len()).ok()? == key).then_some(())
    };
    let bool_at = |r: &mut Reader<'_>, bit: u8| -> Option<u8> {
        match r.u8().ok()? {
            0xc2 => Some(0),
            0xc3 => Some(bit),
            _ => None,
        }
    };

    expect(&mut r, b"\x8b\xa9timestamp\xcb")?;
    let t = f64::from_bits(r.u64().ok()?);
    expect(&mut r, b"\xaearbitration_id")?;
    let id = match r.u8().ok()? {
        m @ 0x00..=0x7f => m as u32,
        0xcc => r.u8().ok()? as u32,
        0xcd => r.u16().ok()? as u32,
        0xce => r.u32().ok()?,
        _ => return None,
    };
    expect(&mut r, b"\xaeis_extended_id")?;
    let mut fl = bool_at(&mut r, flags::EXTENDED)?;
    expect(&mut r, b"\xafis_remote_frame")?;
    fl |= bool_at(&mut r, flags::RTR)?;
    expect(&mut r, b"\xaeis_error_frame")?;
    fl |= bool_at(&mut r, flags::ERROR)?;
    expect(&mut r, b"\xa7channel")?;
    let channel = match r.item().ok()? {
        Item::Nil => Ok(Channel::NONE),
        Item::Int(v) => i64::try_from(v)
            .map(Channel::int)
            .map_err(|_| DecodeError::BadChannel),
        Item::Str(s) => Channel::from_utf8(s).map_err(|_| DecodeError::BadChannel),
        _ => return None,
    };
    expect(&mut r, b"\xa3dlc")?;
    let dlc = match r.u8().ok()? {
        m @ 0x00..=0x40 => m,
        _ => return None,
    };
    expect(&mut r, b"\xa4data\xc4")?;
    let n = r.u8().ok()? as usize;
    let data = r.take(n).ok()?;
    expect(&mut r, b"\xa5is_fd")?;
    fl |= bool_at(&mut r, flags::FD)?;
    expect(&mut r, b"\xaebitrate_switch")?;
    fl |= bool_at(&mut r, flags::BRS)?;
    expect(&mut r, b"\xb5error_state_indicator")?;
    fl |= bool_at(&mut r, flags::ESI)?;
    if !r.rest.is_empty() {
        return None;
    }

    let remote = fl & flags::RTR != 0;
    // Field errors in the order decode_any reports them: channel, then values.
    let channel = match channel {
        Ok(c) => c,
        Err(e) => return Some(Err(e)),
    };
    if !remote && data.len() != dlc as usize {
        return Some(Err(DecodeError::InvalidFrame));
    }
    let ns = match secs_to_ns(t) {
        Ok(ns) => ns,
        Err(e) => return Some(Err(e)),
    };
    let keep = if remote { 0 } else { data.len() };
    frame.timestamp_ns = ns;
    frame.id = id;
    frame.flags = fl;
    frame.len = dlc;
    frame.channel = channel;
    // keep <= dlc <= 64 here.
    let (head, tail) = frame.data.split_at_mut(keep);
    head.copy_from_slice(&data[..keep]);
    tail.fill(0);
    Some(frame.validate().map_err(|_| DecodeError::InvalidFrame))
}

/// The general path: any key order, missing, duplicate and unknown keys.
fn decode_any(datagram: &[u8], frame: &mut CanFrame) -> Result<(), DecodeError> {
    let mut r = Reader { rest: datagram };
    let entries = match r.item()? {
        Item::Map(n) => n,
        other => {
            // Report broken msgpack as such; only well-formed non-maps are NotAMap.
            r.skip_contents(other)?;
            return Err(DecodeError::NotAMap);
        }
    };

    // python-can's Message defaults.
    let mut timestamp: Field<u64> = Ok(0);
    let mut id: Field<u32> = Ok(0);
    let mut fl: u8 = flags::EXTENDED;
    // Bits of `fl` whose last value had a type python-can would not take as a bool.
    let mut bad_bools: u8 = 0;
    let mut channel: Field<Channel> = Ok(Channel::NONE);
    // None: absent or nil, meaning len(data).
    let mut dlc: Field<Option<u8>> = Ok(None);
    // Length of the data in frame.data; errors only matter if the frame is not remote.
    let mut data_len: Field<usize> = Ok(0);

    for _ in 0..entries {
        // Keys are fixstr in practice; read those without the general dispatch.
        let item = match r.rest.first() {
            Some(&m) if m & 0xe0 == 0xa0 => {
                r.rest = &r.rest[1..];
                Item::Str(r.take((m & 0x1f) as usize)?)
            }
            _ => r.item()?,
        };
        let key = match item {
            Item::Str(k) => k,
            other => {
                r.skip_contents(other)?;
                r.skip(1)?;
                continue;
            }
        };
        let bool_bit = match Key::of(key) {
            Key::Timestamp => {
                timestamp = match r.item()? {
                    Item::Float(t) => secs_to_ns(t),
                    Item::Int(s) => u64::try_from(s)
                        .ok()
                        .and_then(|s| s.checked_mul(NS_PER_SEC))
                        .ok_or(DecodeError::InvalidFrame),
                    other => {
                        r.skip_contents(other)?;
                        Err(DecodeError::BadFieldType)
                    }
                };
                continue;
            }
            Key::ArbitrationId => {
                id = match r.item()? {
                    // Negative or beyond u32: python-can's check rejects it as out of range.
                    Item::Int(v) => u32::try_from(v).map_err(|_| DecodeError::InvalidFrame),
                    other => {
                        r.skip_contents(other)?;
                        Err(DecodeError::BadFieldType)
                    }
                };
                continue;
            }
            Key::Channel => {
                channel = match r.item()? {
                    Item::Nil => Ok(Channel::NONE),
                    Item::Int(v) => i64::try_from(v)
                        .map(Channel::int)
                        .map_err(|_| DecodeError::BadChannel),
                    Item::Str(s) => Channel::from_utf8(s).map_err(|_| DecodeError::BadChannel),
                    other => {
                        r.skip_contents(other)?;
                        Err(DecodeError::BadChannel)
                    }
                };
                continue;
            }
            Key::Dlc => {
                dlc = match r.item()? {
                    Item::Nil => Ok(None),
                    // Negative or > 64: python-can's check rejects it.
                    Item::Int(v) => match u8::try_from(v) {
                        Ok(v) if v <= 64 => Ok(Some(v)),
                        _ => Err(DecodeError::InvalidFrame),
                    },
                    other => {
                        r.skip_contents(other)?;
                        Err(DecodeError::BadFieldType)
                    }
                };
                continue;
            }
            Key::Data => {
                data_len = read_data(&mut r, &mut frame.data)?;
                continue;
            }
            Key::Flag(bit) => bit,
            Key::Unknown => {
                r.skip(1)?;
                continue;
            }
        };
        let item = match r.rest.first() {
            Some(&m @ (0xc2 | 0xc3)) => {
                r.rest = &r.rest[1..];
                Item::Bool(m == 0xc3)
            }
            _ => r.item()?,
        };
        let value = match item {
            Item::Bool(b) => Some(b),
            Item::Int(v) => Some(v != 0),
            other => {
                r.skip_contents(other)?;
                None
            }
        };
        match value {
            Some(true) => fl |= bool_bit,
            Some(false) => fl &= !bool_bit,
            None => {}
        }
        if value.is_some() {
            bad_bools &= !bool_bit;
        } else {
            bad_bools |= bool_bit;
        }
    }
    if !r.rest.is_empty() {
        return Err(DecodeError::TrailingBytes);
    }

    let remote = fl & flags::RTR != 0;
    // python-can drops a remote frame's data whatever it is.
    let data_len = if remote { Ok(0) } else { data_len };
    // Type errors first, then channel, then values, whatever the key order was.
    let errors = [
        timestamp.err(),
        id.err(),
        channel.err(),
        dlc.err(),
        data_len.err(),
    ];
    if bad_bools != 0 || errors.contains(&Some(DecodeError::BadFieldType)) {
        return Err(DecodeError::BadFieldType);
    }
    if errors.contains(&Some(DecodeError::BadChannel)) {
        return Err(DecodeError::BadChannel);
    }
    let (Ok(timestamp), Ok(id), Ok(channel), Ok(dlc), Ok(n)) =
        (timestamp, id, channel, dlc, data_len)
    else {
        return Err(DecodeError::InvalidFrame);
    };
    let len = match dlc {
        // For a remote frame dlc is the requested length (default len(data) = 0).
        _ if remote => dlc.unwrap_or(0),
        Some(d) if d as usize != n => return Err(DecodeError::InvalidFrame),
        _ => n as u8,
    };
    frame.timestamp_ns = timestamp;
    frame.id = id;
    frame.channel = channel;
    frame.flags = fl;
    frame.len = len;
    // Keep CanFrame's invariant: bytes past len (all of them for remote frames) are zero.
    let keep = if remote { 0 } else { len as usize };
    if let Some(tail) = frame.data.get_mut(keep..) {
        tail.fill(0);
    }
    frame.validate().map_err(|_| DecodeError::InvalidFrame)
}

/// The keys python-can's Message takes that a frame carries.
#[derive(Clone, Copy)]
enum Key {
    Timestamp,
    ArbitrationId,
    Channel,
    Dlc,
    Data,
    /// A bool field, with its [`flags`] bit.
    Flag(u8),
    Unknown,
}

impl Key {
    /// Dispatches on the length first, so each key costs one fixed-size comparison.
    #[inline]
    fn of(key: &[u8]) -> Key {
        match (key.len(), key) {
            (3, b"dlc") => Key::Dlc,
            (4, b"data") => Key::Data,
            (5, b"is_fd") => Key::Flag(flags::FD),
            (7, b"channel") => Key::Channel,
            (9, b"timestamp") => Key::Timestamp,
            (14, b"arbitration_id") => Key::ArbitrationId,
            (14, b"is_extended_id") => Key::Flag(flags::EXTENDED),
            (14, b"is_error_frame") => Key::Flag(flags::ERROR),
            (14, b"bitrate_switch") => Key::Flag(flags::BRS),
            (15, b"is_remote_frame") => Key::Flag(flags::RTR),
            (21, b"error_state_indicator") => Key::Flag(flags::ESI),
            _ => Key::Unknown,
        }
    }
}

/// Reads a `data` value (bin, array of ints 0..=255, or nil) into `out`. The outer
/// error is structural (stops decoding); the inner one is the field's own.
fn read_data(r: &mut Reader<'_>, out: &mut [u8; 64]) -> Result<Field<usize>, DecodeError> {
    Ok(match r.item()? {
        Item::Nil => Ok(0),
        Item::Bin(b) => match out.get_mut(..b.len()) {
            Some(dst) => {
                dst.copy_from_slice(b);
                Ok(b.len())
            }
            None => Err(DecodeError::InvalidFrame),
        },
        Item::Array(n) => {
            let mut state = Ok(n as usize);
            for i in 0..n as usize {
                match r.item()? {
                    Item::Int(v) if (0..=255).contains(&v) => {
                        if let Some(slot) = out.get_mut(i) {
                            *slot = v as u8;
                        } else if state.is_ok() {
                            state = Err(DecodeError::InvalidFrame);
                        }
                    }
                    // bytearray() raises on anything else; that outranks the length.
                    other => {
                        r.skip_contents(other)?;
                        state = Err(DecodeError::BadFieldType);
                    }
                }
            }
            state
        }
        other => {
            r.skip_contents(other)?;
            Err(DecodeError::BadFieldType)
        }
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::{ChannelRef, FD_LENGTHS};
    use proptest::prelude::*;

    /// A msgpack value for building test datagrams by hand, encoded the way
    /// msgpack-python would unless a `Raw` piece says otherwise.
    #[derive(Clone, Debug)]
    enum V {
        Nil,
        B(bool),
        I(i64),
        U(u64),
        F(f64),
        F32(f32),
        S(&'static str),
        SBytes(Vec<u8>),
        Bin(Vec<u8>),
        Arr(Vec<V>),
        Map(Vec<(V, V)>),
        Raw(Vec<u8>),
    }

    fn put(v: &V, out: &mut Vec<u8>) {
        match v {
            V::Nil => out.push(0xc0),
            V::B(b) => out.push(if *b { 0xc3 } else { 0xc2 }),
            V::I(i) => {
                let mut buf = [0u8; MAX_ENCODED];
                let mut w = Writer {
                    buf: &mut buf,
                    n: 0,
                };
                w.int(*i);
                let n = w.n;
                out.extend_from_slice(&buf[..n]);
            }
            V::U(u) => {
                let mut buf = [0u8; MAX_ENCODED];
                let mut w = Writer {
                    buf: &mut buf,
                    n: 0,
                };
                w.uint(*u);
                let n = w.n;
                out.extend_from_slice(&buf[..n]);
            }
            V::F(f) => {
                out.push(0xcb);
                out.extend_from_slice(&f.to_be_bytes());
            }
            V::F32(f) => {
                out.push(0xca);
                out.extend_from_slice(&f.to_be_bytes());
            }
            V::S(s) => put(&V::SBytes(s.as_bytes().to_vec()), out),
            V::SBytes(s) => {
                if s.len() < 32 {
                    out.push(0xa0 | s.len() as u8);
                } else {
                    out.push(0xd9);
                    out.push(s.len() as u8);
                }
                out.extend_from_slice(s);
            }
            V::Bin(b) => {
                out.push(0xc4);
                out.push(b.len() as u8);
                out.extend_from_slice(b);
            }
            V::Arr(items) => {
                out.push(0xdc);
                out.extend_from_slice(&(items.len() as u16).to_be_bytes());
                for i in items {
                    put(i, out);
                }
            }
            V::Map(items) => {
                out.push(0xde);
                out.extend_from_slice(&(items.len() as u16).to_be_bytes());
                for (k, v) in items {
                    put(k, out);
                    put(v, out);
                }
            }
            V::Raw(bytes) => out.extend_from_slice(bytes),
        }
    }

    /// A datagram holding a map of `entries`.
    fn map(entries: &[(&'static str, V)]) -> Vec<u8> {
        let mut out = Vec::new();
        put(
            &V::Map(entries.iter().map(|(k, v)| (V::S(k), v.clone())).collect()),
            &mut out,
        );
        out
    }

    /// The eleven fields python-can sends, for a classic standard frame.
    fn full() -> Vec<(&'static str, V)> {
        vec![
            ("timestamp", V::F(1.5)),
            ("arbitration_id", V::U(0x123)),
            ("is_extended_id", V::B(false)),
            ("is_remote_frame", V::B(false)),
            ("is_error_frame", V::B(false)),
            ("channel", V::S("vcan0")),
            ("dlc", V::U(3)),
            ("data", V::Bin(vec![1, 2, 3])),
            ("is_fd", V::B(false)),
            ("bitrate_switch", V::B(false)),
            ("error_state_indicator", V::B(false)),
        ]
    }

    fn full_frame() -> CanFrame {
        let mut f = CanFrame::new(0x123, 0, &[1, 2, 3]).unwrap();
        f.timestamp_ns = 1_500_000_000;
        f.channel = Channel::str("vcan0").unwrap();
        f
    }

    fn with(key: &'static str, value: V) -> Vec<u8> {
        let mut e = full();
        for (k, v) in e.iter_mut() {
            if *k == key {
                *v = value.clone();
            }
        }
        map(&e)
    }

    fn dec(bytes: &[u8]) -> Result<CanFrame, DecodeError> {
        let mut f = CanFrame::EMPTY;
        decode(bytes, &mut f).map(|()| f)
    }

    fn enc(f: &CanFrame) -> Vec<u8> {
        let mut buf = [0u8; MAX_ENCODED];
        let n = encode(f, &mut buf);
        buf[..n].to_vec()
    }

    fn hex(s: &str) -> Vec<u8> {
        (0..s.len())
            .step_by(2)
            .map(|i| u8::from_str_radix(&s[i..i + 2], 16).unwrap())
            .collect()
    }

    #[test]
    fn encodes_as_python_can() {
        // Both from python-can 4.6's pack_message.
        let mut f = CanFrame::new(0x123, 0, &[0xde, 0xad, 0xbe, 0xef]).unwrap();
        f.timestamp_ns = 1_700_000_000_123_456_789;
        f.channel = Channel::str("vcan0").unwrap();
        assert_eq!(
            enc(&f),
            hex("8ba974696d657374616d70cb41d954fc4007e6b7ae6172626974726174696f6e5f6964cd0123ae69735f657874656e6465645f6964c2af69735f72656d6f74655f6672616d65c2ae69735f6572726f725f6672616d65c2a76368616e6e656ca57663616e30a3646c6304a464617461c404deadbeefa569735f6664c2ae626974726174655f737769746368c2b56572726f725f73746174655f696e64696361746f72c2")
        );
        let mut f = CanFrame::remote(0x123_4567, true, 4).unwrap();
        f.timestamp_ns = 1_500_000_000;
        f.channel = Channel::int(-1000);
        assert_eq!(
            enc(&f),
            hex("8ba974696d657374616d70cb3ff8000000000000ae6172626974726174696f6e5f6964ce01234567ae69735f657874656e6465645f6964c3af69735f72656d6f74655f6672616d65c3ae69735f6572726f725f6672616d65c2a76368616e6e656cd1fc18a3646c6304a464617461c400a569735f6664c2ae626974726174655f737769746368c2b56572726f725f73746174655f696e64696361746f72c2")
        );
    }

    #[test]
    fn encoded_sizes_match_spec() {
        let smallest = enc(&CanFrame::new(0, 0, &[]).unwrap());
        assert_eq!(smallest.len(), 152);
        let mut f = CanFrame::new(0x1FFF_FFFF, flags::EXTENDED | flags::FD, &[0xAA; 64]).unwrap();
        assert_eq!(enc(&f).len(), 220);
        f.channel = Channel::str(&"x".repeat(22)).unwrap();
        f.timestamp_ns = u64::MAX;
        assert_eq!(enc(&f).len(), 242);
        assert!(enc(&f).len() <= MAX_ENCODED);
    }

    #[test]
    fn decodes_python_can_datagram() {
        assert_eq!(dec(&map(&full())), Ok(full_frame()));
        assert_eq!(dec(&enc(&full_frame())), Ok(full_frame()));
    }

    #[test]
    fn any_key_order() {
        let mut e = full();
        e.reverse();
        assert_eq!(dec(&map(&e)), Ok(full_frame()));
        e.rotate_left(4);
        assert_eq!(dec(&map(&e)), Ok(full_frame()));
    }

    #[test]
    fn missing_keys_take_python_can_defaults() {
        // Message(): timestamp 0.0, id 0, is_extended_id True, no data.
        let f = dec(&map(&[])).unwrap();
        let mut want = CanFrame::new(0, flags::EXTENDED, &[]).unwrap();
        want.timestamp_ns = 0;
        assert_eq!(f, want);
        // dlc defaults to len(data).
        let f = dec(&map(&[("data", V::Bin(vec![9, 8]))])).unwrap();
        assert_eq!(
            (f.len, f.payload(), f.flags),
            (2, &[9u8, 8][..], flags::EXTENDED)
        );
        // dlc as nil is python's None too.
        assert_eq!(dec(&with("dlc", V::Nil)), Ok(full_frame()));
        // data as nil is an empty payload.
        let f = dec(&map(&[("data", V::Nil), ("dlc", V::U(0))])).unwrap();
        assert_eq!(f.len, 0);
    }

    #[test]
    fn timestamp_int_float32_float64() {
        assert_eq!(
            dec(&with("timestamp", V::U(1_700_000_000)))
                .unwrap()
                .timestamp_ns,
            1_700_000_000_000_000_000
        );
        assert_eq!(dec(&with("timestamp", V::U(0))).unwrap().timestamp_ns, 0);
        assert_eq!(
            dec(&with("timestamp", V::F32(2.25))).unwrap().timestamp_ns,
            2_250_000_000
        );
        assert_eq!(dec(&with("timestamp", V::F(-0.0))).unwrap().timestamp_ns, 0);
        // A real clock value comes back within a float's precision.
        let ns = 1_763_700_000_123_456_789u64;
        let mut f = full_frame();
        f.timestamp_ns = ns;
        let back = dec(&enc(&f)).unwrap();
        assert!(
            back.timestamp_ns.abs_diff(ns) < 256,
            "{}",
            back.timestamp_ns
        );
    }

    #[test]
    fn data_as_array_of_ints_and_wider_bins() {
        let arr = V::Arr(vec![V::U(1), V::U(2), V::U(3)]);
        assert_eq!(dec(&with("data", arr)), Ok(full_frame()));
        // Small ints in signed encodings are still ints.
        let arr = V::Arr(vec![
            V::Raw(vec![0xd0, 1]),
            V::Raw(vec![0xd1, 0, 2]),
            V::U(3),
        ]);
        assert_eq!(dec(&with("data", arr)), Ok(full_frame()));
        let bin16 = V::Raw(vec![0xc5, 0, 3, 1, 2, 3]);
        assert_eq!(dec(&with("data", bin16)), Ok(full_frame()));
        let bin32 = V::Raw(vec![0xc6, 0, 0, 0, 3, 1, 2, 3]);
        assert_eq!(dec(&with("data", bin32)), Ok(full_frame()));
    }

    #[test]
    fn bools_as_ints_and_every_flag() {
        let f = dec(&map(&[
            ("is_extended_id", V::I(0)),
            ("is_fd", V::U(1)),
            ("bitrate_switch", V::I(-7)),
            ("error_state_indicator", V::B(true)),
            ("data", V::Bin(vec![0; 12])),
        ]))
        .unwrap();
        assert_eq!(f.flags, flags::FD | flags::BRS | flags::ESI);
        assert_eq!(f.len, 12);
        let f = dec(&map(&[
            ("is_error_frame", V::B(true)),
            ("arbitration_id", V::U(0x80)),
        ]))
        .unwrap();
        assert_eq!(f.flags, flags::ERROR | flags::EXTENDED);
        assert_eq!(f.id, 0x80);
    }

    #[test]
    fn channel_kinds() {
        for (v, want) in [
            (V::Nil, ChannelRef::None),
            (V::S("can0"), ChannelRef::Str("can0")),
            (V::S(""), ChannelRef::Str("")),
            (V::I(-5), ChannelRef::Int(-5)),
            (V::I(i64::MIN), ChannelRef::Int(i64::MIN)),
            (V::U(i64::MAX as u64), ChannelRef::Int(i64::MAX)),
            (
                V::SBytes(b"abcdefghijklmnopqrstuv".to_vec()),
                ChannelRef::Str("abcdefghijklmnopqrstuv"),
            ),
        ] {
            assert_eq!(
                dec(&with("channel", v.clone())).unwrap().channel.get(),
                want,
                "{v:?}"
            );
        }
    }

    #[test]
    fn unknown_and_non_string_keys_are_skipped() {
        let ext = V::Raw(vec![0xd4, 1, 0xff]);
        let ext8 = V::Raw(vec![0xc7, 2, 5, 0xaa, 0xbb]);
        let fixext16 = V::Raw([vec![0xd8, 9], vec![0; 16]].concat());
        let nested = V::Arr(vec![
            V::Map(vec![(
                V::S("a"),
                V::Arr(vec![V::Nil, V::F(1.0), ext.clone()]),
            )]),
            V::Bin(vec![1, 2]),
            V::Raw(vec![0xdd, 0, 0, 0, 1, 0xdf, 0, 0, 0, 1, 0xc0, 0xc0]),
        ]);
        let mut e = full();
        e.insert(0, ("is_rx", V::B(true)));
        e.insert(3, ("nested", nested));
        e.insert(5, ("ext", ext8));
        e.push(("ext16", fixext16));
        e.push(("str32", V::Raw(vec![0xdb, 0, 0, 0, 1, b'x'])));
        let mut bytes = map(&e);
        // Append non-string keys by hand: an int key, a map key, a nil key.
        let n = u16::from_be_bytes([bytes[1], bytes[2]]) + 3;
        bytes[1..3].copy_from_slice(&n.to_be_bytes());
        bytes.extend_from_slice(&[0x05, 0xc3]);
        bytes.extend_from_slice(&[0x81, 0xa1, b'k', 0x91, 0x01, 0xa3, b'x', b'y', b'z']);
        bytes.extend_from_slice(&[0xc0, 0xc4, 0]);
        assert_eq!(dec(&bytes), Ok(full_frame()));
    }

    #[test]
    fn deep_nesting_does_not_recurse() {
        // 100 000 nested one-element arrays as an unknown key's value.
        let mut bytes = vec![0x82, 0xa1, b'x'];
        bytes.extend(std::iter::repeat_n(0x91, 100_000));
        bytes.push(0xc0);
        bytes.extend_from_slice(&[0xa3, b'd', b'l', b'c', 0]);
        assert_eq!(dec(&bytes).unwrap().len, 0);
        // The same under a known key: still skipped iteratively, reported as a type error.
        let mut bytes = vec![0x81, 0xa5];
        bytes.extend_from_slice(b"is_fd");
        bytes.extend(std::iter::repeat_n(0x91, 100_000));
        bytes.push(0xc0);
        assert_eq!(dec(&bytes), Err(DecodeError::BadFieldType));
    }

    #[test]
    fn duplicate_keys_last_wins() {
        let mut e = full();
        e.insert(0, ("arbitration_id", V::U(0x7ff)));
        e.insert(0, ("data", V::Bin(vec![0xff; 64])));
        e.insert(0, ("channel", V::F(1.0)));
        e.insert(0, ("is_fd", V::S("bad")));
        e.insert(0, ("dlc", V::S("bad")));
        e.insert(0, ("timestamp", V::F(f64::NAN)));
        assert_eq!(dec(&map(&e)), Ok(full_frame()));
        e.push(("is_extended_id", V::B(true)));
        assert_eq!(dec(&map(&e)).unwrap().flags, flags::EXTENDED);
    }

    #[test]
    fn remote_frame_data_is_ignored() {
        let f = dec(&map(&[
            ("is_remote_frame", V::B(true)),
            ("dlc", V::U(5)),
            ("data", V::Bin(vec![1, 2, 3])),
        ]))
        .unwrap();
        assert!(f.is_remote());
        assert_eq!((f.len, f.data), (5, [0; 64]));
        // Even data python-can could not have turned into bytes, and too much of it.
        for data in [V::S("x"), V::Bin(vec![7; 100]), V::Arr(vec![V::I(-1)])] {
            let f = dec(&map(&[
                ("is_remote_frame", V::B(true)),
                ("dlc", V::U(8)),
                ("data", data),
            ]))
            .unwrap();
            assert_eq!((f.len, f.payload()), (8, &[][..]));
        }
        // Without dlc the request is len(data) of the dropped data: 0.
        let f = dec(&map(&[
            ("is_remote_frame", V::B(true)),
            ("data", V::Bin(vec![1])),
        ]))
        .unwrap();
        assert_eq!(f.len, 0);
    }

    #[test]
    fn reused_frame_is_fully_overwritten() {
        let mut f = CanFrame::new(0x1, flags::FD, &[0xee; 64]).unwrap();
        f.sender =
            crate::frame::SenderAddr::from("127.0.0.1:9".parse::<std::net::SocketAddr>().unwrap());
        let sender = f.sender;
        decode(&map(&full()), &mut f).unwrap();
        let mut want = full_frame();
        want.sender = sender;
        assert_eq!(f, want);
        assert_eq!(f.data[3..], [0; 61]);
    }

    #[test]
    fn top_level_map16_and_map32() {
        let mut bytes = map(&full());
        assert_eq!(bytes[0], 0xde);
        assert_eq!(dec(&bytes), Ok(full_frame()));
        bytes.splice(0..3, [0xdf, 0, 0, 0, 11]);
        assert_eq!(dec(&bytes), Ok(full_frame()));
    }

    #[test]
    fn error_truncated() {
        assert_eq!(dec(&[]), Err(DecodeError::Truncated));
        let good = enc(&full_frame());
        for cut in 0..good.len() {
            assert_eq!(
                dec(&good[..cut]),
                Err(DecodeError::Truncated),
                "cut at {cut}"
            );
        }
        // A container claiming more than the datagram holds.
        assert_eq!(
            dec(&[0xdf, 0xff, 0xff, 0xff, 0xff, 0xa1, b'x']),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            dec(&[0x81, 0xa1, b'x', 0xdd, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(
            dec(&[0x81, 0xa1, b'x', 0xc6, 0xff, 0xff, 0xff, 0xff]),
            Err(DecodeError::Truncated)
        );
        assert_eq!(dec(&[0x91]), Err(DecodeError::Truncated));
    }

    #[test]
    fn error_not_msgpack() {
        assert_eq!(dec(&[0xc1]), Err(DecodeError::NotMsgpack));
        assert_eq!(
            dec(&with("channel", V::Raw(vec![0xc1]))),
            Err(DecodeError::NotMsgpack)
        );
        assert_eq!(
            dec(&map(&[("x", V::Arr(vec![V::Raw(vec![0xc1])]))])),
            Err(DecodeError::NotMsgpack)
        );
        assert_eq!(dec(&[0x92, 0x01, 0xc1]), Err(DecodeError::NotMsgpack));
    }

    #[test]
    fn error_not_a_map() {
        for bytes in [
            &[0x01][..],
            &[0x90],
            &[0x92, 0x01, 0xc0],
            &[0xc0],
            &[0xa1, b'x'],
            b"123#DEADBEEF",
        ] {
            assert_eq!(dec(bytes), Err(DecodeError::NotAMap), "{bytes:02x?}");
        }
    }

    #[test]
    fn error_bad_field_type() {
        for (key, v) in [
            ("timestamp", V::S("1")),
            ("timestamp", V::B(true)),
            ("timestamp", V::Raw(vec![0xd6, 0xff, 0, 0, 0, 1])), // msgpack Timestamp ext
            ("arbitration_id", V::F(1.0)),
            ("arbitration_id", V::Nil),
            ("is_extended_id", V::S("yes")),
            ("is_remote_frame", V::Nil),
            ("is_error_frame", V::F(1.0)),
            ("is_fd", V::Arr(vec![V::B(true)])),
            ("bitrate_switch", V::Map(vec![])),
            ("error_state_indicator", V::Bin(vec![1])),
            ("dlc", V::S("3")),
            ("dlc", V::F(3.0)),
            ("data", V::S("abc")),
            ("data", V::U(3)),
            ("data", V::Arr(vec![V::U(1), V::S("x"), V::U(3)])),
            ("data", V::Arr(vec![V::U(1), V::U(256), V::U(3)])),
            ("data", V::Arr(vec![V::U(1), V::I(-1), V::U(3)])),
            ("data", V::Arr(vec![V::U(1), V::Arr(vec![]), V::U(3)])),
        ] {
            assert_eq!(
                dec(&with(key, v.clone())),
                Err(DecodeError::BadFieldType),
                "{key}: {v:?}"
            );
        }
    }

    #[test]
    fn error_invalid_frame() {
        for (key, v) in [
            ("timestamp", V::F(-1.0)),
            ("timestamp", V::F(f64::NAN)),
            ("timestamp", V::F(f64::INFINITY)),
            ("timestamp", V::F(1e300)),
            ("timestamp", V::I(-1)),
            ("timestamp", V::U(u64::MAX)),
            ("arbitration_id", V::U(0x800)),
            ("arbitration_id", V::I(-1)),
            ("arbitration_id", V::U(u64::MAX)),
            ("dlc", V::U(4)),
            ("dlc", V::I(-3)),
            ("dlc", V::U(65)),
            ("data", V::Bin(vec![0; 65])),
            ("data", V::Arr(vec![V::U(0); 65])),
        ] {
            assert_eq!(
                dec(&with(key, v.clone())),
                Err(DecodeError::InvalidFrame),
                "{key}: {v:?}"
            );
        }
        // Rules of CanFrame::validate.
        for entries in [
            vec![("is_fd", V::B(true)), ("data", V::Bin(vec![0; 9]))],
            vec![("is_fd", V::B(true)), ("data", V::Bin(vec![0; 63]))],
            vec![("data", V::Bin(vec![0; 9]))],
            vec![("bitrate_switch", V::B(true))],
            vec![("error_state_indicator", V::B(true))],
            vec![("is_remote_frame", V::B(true)), ("is_fd", V::B(true))],
            vec![
                ("is_remote_frame", V::B(true)),
                ("is_error_frame", V::B(true)),
            ],
            vec![("is_remote_frame", V::B(true)), ("dlc", V::U(9))],
            vec![("arbitration_id", V::U(0x2000_0000))],
        ] {
            assert_eq!(
                dec(&map(&entries)),
                Err(DecodeError::InvalidFrame),
                "{entries:?}"
            );
        }
    }

    #[test]
    fn error_bad_channel() {
        for v in [
            V::SBytes(b"abcdefghijklmnopqrstuvw".to_vec()),
            V::SBytes(vec![0xff, 0xfe]),
            V::F(0.0),
            V::B(true),
            V::Bin(b"can0".to_vec()),
            V::U(i64::MAX as u64 + 1),
            V::Arr(vec![]),
        ] {
            assert_eq!(
                dec(&with("channel", v.clone())),
                Err(DecodeError::BadChannel),
                "{v:?}"
            );
        }
    }

    #[test]
    fn errors_rank_type_then_channel_then_value() {
        let bad = [
            ("timestamp", V::F(-1.0)),
            ("channel", V::F(1.0)),
            ("dlc", V::S("x")),
        ];
        for order in [[0, 1, 2], [2, 1, 0], [1, 0, 2]] {
            let mut e = full();
            for i in order {
                e.push(bad[i].clone());
            }
            assert_eq!(dec(&map(&e)), Err(DecodeError::BadFieldType));
            e.retain(|(k, _)| *k != "dlc");
            assert_eq!(dec(&map(&e)), Err(DecodeError::BadChannel));
        }
        // Structure outranks fields.
        let mut bytes = with("dlc", V::S("x"));
        bytes.push(0);
        assert_eq!(dec(&bytes), Err(DecodeError::TrailingBytes));
    }

    #[test]
    fn error_trailing_bytes() {
        let mut bytes = enc(&full_frame());
        bytes.push(0xc0);
        assert_eq!(dec(&bytes), Err(DecodeError::TrailingBytes));
        let mut bytes = enc(&full_frame());
        bytes.extend_from_slice(&enc(&full_frame()));
        assert_eq!(dec(&bytes), Err(DecodeError::TrailingBytes));
    }

    /// Every valid frame kind, with every channel kind and any timestamp.
    fn any_frame() -> impl Strategy<Value = CanFrame> {
        let channel = prop_oneof![
            Just(Channel::NONE),
            any::<i64>().prop_map(Channel::int),
            (-40i64..300).prop_map(Channel::int),
            "[a-z0-9 ]{0,22}".prop_map(|s| Channel::str(&s).unwrap()),
            "\\PC{0,5}".prop_map(|s| Channel::str(&s).unwrap()),
        ];
        let kind = prop_oneof![
            // classic data frame, standard or extended
            (any::<bool>(), proptest::collection::vec(any::<u8>(), 0..=8)).prop_flat_map(
                |(ext, data)| {
                    let limit: u32 = if ext { 0x2000_0000 } else { 0x800 };
                    (0..limit).prop_map(move |id| {
                        CanFrame::new(id, if ext { flags::EXTENDED } else { 0 }, &data).unwrap()
                    })
                }
            ),
            // remote frame with a requested length
            (any::<bool>(), 0u8..=8, any::<u32>()).prop_map(|(ext, len, id)| {
                let id = if ext { id % 0x2000_0000 } else { id % 0x800 };
                CanFrame::remote(id, ext, len).unwrap()
            }),
            // error frame
            (
                0u32..0x2000_0000,
                proptest::collection::vec(any::<u8>(), 0..=8)
            )
                .prop_map(|(id, data)| {
                    CanFrame::new(id, flags::ERROR | flags::EXTENDED, &data).unwrap()
                }),
            // FD at every allowed length, with or without BRS/ESI
            (
                any::<bool>(),
                proptest::sample::select(&FD_LENGTHS[..]),
                any::<bool>(),
                any::<bool>(),
                any::<u32>(),
                any::<[u8; 64]>(),
            )
                .prop_map(|(ext, len, brs, esi, id, bytes)| {
                    let mut fl = flags::FD;
                    fl |= if ext { flags::EXTENDED } else { 0 };
                    fl |= if brs { flags::BRS } else { 0 };
                    fl |= if esi { flags::ESI } else { 0 };
                    let id = if ext { id % 0x2000_0000 } else { id % 0x800 };
                    CanFrame::new(id, fl, &bytes[..len as usize]).unwrap()
                }),
        ];
        let ts = prop_oneof![
            any::<u64>(),
            0u64..10_000_000_000,
            (1u64 << 53) - 1_000_000..(1u64 << 53) + 1_000_000,
            1_600_000_000_000_000_000u64..1_900_000_000_000_000_000
        ];
        (kind, channel, ts).prop_map(|(mut f, ch, ts)| {
            f.channel = ch;
            f.timestamp_ns = ts;
            f
        })
    }

    fn ulp_ns(ns: u64) -> u64 {
        let t = ns as f64 / 1e9;
        ((f64::from_bits(t.to_bits() + 1) - t) * 1e9) as u64 + 1
    }

    /// The exact nearest ns of a non-negative float, by integer arithmetic on its bits.
    fn exact_ns(t: f64) -> u64 {
        let bits = t.to_bits();
        let exp = ((bits >> 52) & 0x7ff) as i32;
        let mant = (bits & ((1 << 52) - 1)) | if exp > 0 { 1 << 52 } else { 0 };
        let e = exp.max(1) - 1075; // t = mant * 2^e
        let num = mant as u128 * 1_000_000_000;
        let ns = if e >= 0 {
            num << e
        } else if e < -120 {
            0
        } else {
            (num + (1u128 << (-e - 1))) >> -e
        };
        ns.min(u64::MAX as u128) as u64
    }

    proptest! {
        #![proptest_config(ProptestConfig::with_cases(2000))]

        #[test]
        fn seconds_to_ns_is_the_nearest_ns(
            t in prop_oneof![0.0f64..20.0, 0.0f64..2e9, 1.6e9f64..1.9e9, 0.0f64..1.8446744e10],
        ) {
            prop_assert_eq!(secs_to_ns(t), Ok(exact_ns(t)));
        }

        #[test]
        fn round_trips_every_valid_frame(f in any_frame()) {
            let bytes = enc(&f);
            prop_assert!(bytes.len() <= MAX_ENCODED);
            // What canmc sends takes the fast path, and the general one agrees.
            let (mut fast, mut slow) = (CanFrame::EMPTY, CanFrame::EMPTY);
            prop_assert_eq!(decode_any(&bytes, &mut slow), Ok(()));
            prop_assert_eq!(decode_canonical(&bytes, &mut fast), Some(Ok(())));
            let back = dec(&bytes).map_err(|e| TestCaseError::fail(format!("{e}")))?;
            let mut same_time = back;
            same_time.timestamp_ns = f.timestamp_ns;
            prop_assert_eq!(same_time, f);
            // The time survives to the float's precision (two roundings on the way in:
            // ns to f64, then / 1e9). Re-encoding gives the same float bit for bit while
            // ns are exact in an f64 (< 2^53); above, the nearest ns can round (as
            // float(ns) does in python) to the neighbouring float: at most one ulp.
            prop_assert!(back.timestamp_ns.abs_diff(f.timestamp_ns) <= 2 * ulp_ns(f.timestamp_ns));
            let again = enc(&back);
            if f.timestamp_ns <= 1 << 53 {
                prop_assert_eq!(&again, &bytes);
            } else {
                let float_at = |b: &[u8]| u64::from_be_bytes(b[12..20].try_into().unwrap());
                prop_assert!(float_at(&again).abs_diff(float_at(&bytes)) <= 1);
                prop_assert_eq!(&again[20..], &bytes[20..]);
            }
            prop_assert_eq!(slow, back);
        }

        #[test]
        fn fast_path_agrees_with_general_path(
            f in any_frame(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 0..3),
        ) {
            // Byte substitutions keep the canonical layout often enough to reach every
            // value check of the fast path.
            let mut bytes = enc(&f);
            for (at, byte) in edits {
                let i = at.index(bytes.len());
                bytes[i] = byte;
            }
            let (mut fast, mut slow) = (CanFrame::EMPTY, CanFrame::EMPTY);
            if let Some(res) = decode_canonical(&bytes, &mut fast) {
                prop_assert_eq!(res, decode_any(&bytes, &mut slow));
                if res.is_ok() {
                    prop_assert_eq!(fast, slow);
                }
            }
        }

        #[test]
        fn never_panics_on_arbitrary_bytes(bytes in proptest::collection::vec(any::<u8>(), 0..300)) {
            let mut f = CanFrame::EMPTY;
            if decode(&bytes, &mut f).is_ok() {
                prop_assert!(f.validate().is_ok());
            }
        }

        #[test]
        fn never_panics_on_mutated_datagrams(
            f in any_frame(),
            edits in proptest::collection::vec((any::<prop::sample::Index>(), any::<u8>(), 0u8..4), 1..6),
        ) {
            let mut bytes = enc(&f);
            for (at, byte, op) in edits {
                let i = at.index(bytes.len() + 1);
                match op {
                    0 if i < bytes.len() => bytes[i] = byte,
                    1 => bytes.insert(i, byte),
                    2 if i < bytes.len() => { bytes.remove(i); }
                    _ => bytes.truncate(i),
                }
            }
            let mut out = CanFrame::EMPTY;
            if decode(&bytes, &mut out).is_ok() {
                prop_assert!(out.validate().is_ok());
                prop_assert!(out.data[out.payload().len()..].iter().all(|&b| b == 0));
            }
        }
    }
}
