//! CAN and CAN FD frames: one fixed-layout type, its validation, and can-utils'
//! text syntax (`123#DEADBEEF`, `123#R4`, `123##5<hex>`, `20000080#…`) both ways.
//!
//! [`CanFrame`] is 128 bytes, `repr(C)`, and has no padding the compiler invents, so it
//! can be copied into ring slots and recording segments as plain bytes (zerocopy).

use std::fmt;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout};

/// Largest standard (11-bit) identifier plus one.
pub const STD_ID_LIMIT: u32 = 0x800;
/// Largest extended (29-bit) identifier plus one.
pub const EXT_ID_LIMIT: u32 = 0x2000_0000;
/// SocketCAN's error flag in a `can_id`; in text it marks an error frame.
pub const CAN_ERR_FLAG: u32 = 0x2000_0000;
/// Data lengths a CAN FD frame may have.
pub const FD_LENGTHS: [u8; 16] = [0, 1, 2, 3, 4, 5, 6, 7, 8, 12, 16, 20, 24, 32, 48, 64];

/// The CAN FD length of a DLC code (0–15); codes above 15 give 64.
pub fn dlc_to_len(dlc: u8) -> u8 {
    FD_LENGTHS[(dlc as usize).min(15)]
}

/// The smallest DLC code whose CAN FD length holds `len` bytes (64 and above give 15).
pub fn len_to_dlc(len: u8) -> u8 {
    FD_LENGTHS.iter().position(|&l| l >= len).unwrap_or(15) as u8
}

/// Bits of [`CanFrame::flags`].
pub mod flags {
    /// 29-bit identifier.
    pub const EXTENDED: u8 = 0x01;
    /// Remote transmission request; `len` is the requested length, data is empty.
    pub const RTR: u8 = 0x02;
    /// Error frame; `id` carries the SocketCAN error class bits. Frames parsed from
    /// text also set [`EXTENDED`], as python-can's receiver needs for classes ≥ 0x800.
    pub const ERROR: u8 = 0x04;
    /// CAN FD frame.
    pub const FD: u8 = 0x08;
    /// CAN FD bit rate switch.
    pub const BRS: u8 = 0x10;
    /// CAN FD error state indicator.
    pub const ESI: u8 = 0x20;
    /// Every bit that has a meaning.
    pub const ALL: u8 = EXTENDED | RTR | ERROR | FD | BRS | ESI;
}

/// Maximum bytes of a channel name carried inline in a frame.
pub const CHANNEL_STR_MAX: usize = 22;

/// The python-can `channel` of a frame: none, an integer, or a short string.
///
/// Stored inline (24 bytes) so that a frame never points to the heap.
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct Channel {
    kind: u8,
    len: u8,
    bytes: [u8; CHANNEL_STR_MAX],
}

const CHANNEL_NONE: u8 = 0;
const CHANNEL_INT: u8 = 1;
const CHANNEL_STR: u8 = 2;

/// A borrowed view of a [`Channel`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChannelRef<'a> {
    /// No channel.
    None,
    /// An integer channel (python-can `channel=0`).
    Int(i64),
    /// A named channel (python-can `channel="can0"`).
    Str(&'a str),
}

impl Channel {
    /// No channel (python-can's `None`).
    pub const NONE: Channel = Channel {
        kind: CHANNEL_NONE,
        len: 0,
        bytes: [0; CHANNEL_STR_MAX],
    };

    /// An integer channel.
    pub fn int(value: i64) -> Channel {
        let mut bytes = [0; CHANNEL_STR_MAX];
        bytes[..8].copy_from_slice(&value.to_le_bytes());
        Channel {
            kind: CHANNEL_INT,
            len: 8,
            bytes,
        }
    }

    /// A string channel of at most [`CHANNEL_STR_MAX`] bytes.
    pub fn str(name: &str) -> Result<Channel, FrameError> {
        Channel::from_utf8(name.as_bytes())
    }

    /// A string channel from UTF-8 bytes (as they come off the wire).
    pub fn from_utf8(name: &[u8]) -> Result<Channel, FrameError> {
        if name.len() > CHANNEL_STR_MAX {
            return Err(FrameError::ChannelTooLong(name.len()));
        }
        if std::str::from_utf8(name).is_err() {
            return Err(FrameError::ChannelNotUtf8);
        }
        let mut bytes = [0; CHANNEL_STR_MAX];
        bytes[..name.len()].copy_from_slice(name);
        Ok(Channel {
            kind: CHANNEL_STR,
            len: name.len() as u8,
            bytes,
        })
    }

    /// The channel as python-can would see it.
    pub fn get(&self) -> ChannelRef<'_> {
        match self.kind {
            CHANNEL_INT => {
                let mut le = [0u8; 8];
                le.copy_from_slice(&self.bytes[..8]);
                ChannelRef::Int(i64::from_le_bytes(le))
            }
            CHANNEL_STR => {
                let len = (self.len as usize).min(CHANNEL_STR_MAX);
                // Invalid UTF-8 can only come from bytes written outside the constructors
                // (a corrupted recording); show it as no channel rather than panic.
                match std::str::from_utf8(&self.bytes[..len]) {
                    Ok(s) => ChannelRef::Str(s),
                    Err(_) => ChannelRef::None,
                }
            }
            _ => ChannelRef::None,
        }
    }

    /// True for python-can's `None`.
    pub fn is_none(&self) -> bool {
        matches!(self.get(), ChannelRef::None)
    }
}

impl Default for Channel {
    fn default() -> Self {
        Channel::NONE
    }
}

impl fmt::Debug for Channel {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.get().fmt(f)
    }
}

impl fmt::Display for Channel {
    /// The interface name candump would print: the string, `can<N>` for an integer
    /// (as python-can's log writer does), `vcan0` for none. An all-digit string gets the
    /// `can` prefix too, unless the name would then be too long to read back as a
    /// channel ([`CHANNEL_STR_MAX`] bytes).
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get() {
            ChannelRef::None => f.write_str("vcan0"),
            ChannelRef::Int(n) => write!(f, "can{n}"),
            ChannelRef::Str(s)
                if !s.is_empty()
                    && s.len() + 3 <= CHANNEL_STR_MAX
                    && s.bytes().all(|b| b.is_ascii_digit()) =>
            {
                write!(f, "can{s}")
            }
            ChannelRef::Str(s) => f.write_str(s),
        }
    }
}

/// Where a frame came from: an IPv4 or IPv6 socket address, stored inline.
#[derive(Clone, Copy, PartialEq, Eq, Default, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct SenderAddr {
    /// IPv6 address, or IPv4 in the first 4 bytes.
    addr: [u8; 16],
    port: u16,
    /// 0 none, 4 IPv4, 6 IPv6.
    family: u8,
    _reserved: u8,
}

impl SenderAddr {
    /// No known sender (frames parsed from text, generated locally).
    pub const NONE: SenderAddr = SenderAddr {
        addr: [0; 16],
        port: 0,
        family: 0,
        _reserved: 0,
    };

    /// The socket address, if any.
    pub fn get(&self) -> Option<SocketAddr> {
        match self.family {
            4 => {
                let a = Ipv4Addr::new(self.addr[0], self.addr[1], self.addr[2], self.addr[3]);
                Some(SocketAddr::new(IpAddr::V4(a), self.port))
            }
            6 => Some(SocketAddr::new(
                IpAddr::V6(Ipv6Addr::from(self.addr)),
                self.port,
            )),
            _ => None,
        }
    }
}

impl From<SocketAddr> for SenderAddr {
    fn from(sa: SocketAddr) -> Self {
        let mut addr = [0u8; 16];
        let family = match sa.ip() {
            IpAddr::V4(v4) => {
                addr[..4].copy_from_slice(&v4.octets());
                4
            }
            IpAddr::V6(v6) => {
                addr = v6.octets();
                6
            }
        };
        SenderAddr {
            addr,
            port: sa.port(),
            family,
            _reserved: 0,
        }
    }
}

impl fmt::Debug for SenderAddr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.get() {
            Some(sa) => write!(f, "{sa}"),
            None => f.write_str("-"),
        }
    }
}

/// Which way a frame went on the bus, from the point of view of the node that logged it.
///
/// Network receivers see every frame as [`Direction::Rx`]; logs (candump's ` T`, ASC's
/// `Tx`, BLF, TRC, MF4) say [`Direction::Tx`] for the logger's own transmissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Hash)]
pub enum Direction {
    /// Received (python-can's `is_rx = True`), the default.
    #[default]
    Rx,
    /// Transmitted by the node that logged it.
    Tx,
}

/// One CAN or CAN FD frame with its receive metadata. 128 bytes, plain old data.
///
/// Build frames with [`CanFrame::new`] (or [`str::parse`]) so they are validated;
/// a frame read from untrusted bytes can be checked with [`CanFrame::validate`].
#[derive(Clone, Copy, PartialEq, Eq, FromBytes, IntoBytes, Immutable, KnownLayout)]
#[repr(C)]
pub struct CanFrame {
    /// Receive (or capture) time, ns since the Unix epoch (CLOCK_REALTIME); 0 if unknown.
    pub timestamp_ns: u64,
    /// Identifier without flags: 11 or 29 bits; for error frames the error class bits.
    pub id: u32,
    /// [`flags`] bits.
    pub flags: u8,
    /// Data length in bytes (0–8 classic, an FD length up to 64); the requested
    /// length for a remote frame.
    pub len: u8,
    /// The raw DLC code of a classic frame when it is 9–15 (the payload is then 8
    /// bytes, as candump's `_C` suffix and Vector ASC's DLC column carry it); 0 when the
    /// DLC is simply `len`. See [`CanFrame::dlc`].
    pub raw_dlc: u8,
    /// [`Direction`] as a byte (0 Rx, 1 Tx), so the frame stays plain bytes; read it
    /// with [`CanFrame::direction`].
    dir: u8,
    /// python-can channel.
    pub channel: Channel,
    /// Sender's address, when the frame came from the network.
    pub sender: SenderAddr,
    _reserved2: [u8; 4],
    /// Payload; bytes past `len` are zero.
    pub data: [u8; 64],
}

const _: () = assert!(std::mem::size_of::<CanFrame>() == 128);

/// Why a frame is not valid. Every variant names the problem.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FrameError {
    /// A standard (11-bit) ID above 0x7FF.
    StdIdOutOfRange(u32),
    /// An extended (29-bit) ID above 0x1FFFFFFF.
    ExtIdOutOfRange(u32),
    /// A classic frame with more than 8 data bytes.
    ClassicTooLong(usize),
    /// A CAN FD length that no DLC encodes (e.g. 9).
    FdLengthNotAllowed(usize),
    /// A remote frame flagged CAN FD.
    RemoteFd,
    /// A frame flagged both remote and error.
    RemoteError,
    /// A remote frame that carries data bytes.
    RemoteWithData,
    /// A remote frame requesting more than 8 bytes.
    RemoteLengthTooLarge(usize),
    /// An error frame flagged CAN FD.
    ErrorFd,
    /// An error frame with more than 8 data bytes.
    ErrorTooLong(usize),
    /// Bit rate switch set on a frame that is not CAN FD.
    BrsWithoutFd,
    /// Error state indicator set on a frame that is not CAN FD.
    EsiWithoutFd,
    /// Flag bits this build does not define.
    UnknownFlags(u8),
    /// A raw DLC of 9–15 on something other than a classic frame with 8 data bytes.
    RawDlcNotAllowed(u8),
    /// The direction byte is neither Rx (0) nor Tx (1).
    UnknownDirection(u8),
    /// A channel name longer than a frame can carry.
    ChannelTooLong(usize),
    /// A channel name that is not UTF-8.
    ChannelNotUtf8,
    /// Text that is not can-utils frame syntax; the string says where.
    Syntax(String),
}

impl fmt::Display for FrameError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        use FrameError::*;
        match self {
            StdIdOutOfRange(id) => write!(f, "standard ID 0x{id:X} is out of range (max 0x7FF)"),
            ExtIdOutOfRange(id) => {
                write!(f, "extended ID 0x{id:X} is out of range (max 0x1FFFFFFF)")
            }
            ClassicTooLong(n) => write!(f, "classic CAN frame has {n} data bytes (max 8)"),
            FdLengthNotAllowed(n) => write!(
                f,
                "CAN FD frame has {n} data bytes; allowed: 0-8, 12, 16, 20, 24, 32, 48, 64"
            ),
            RemoteFd => f.write_str("CAN FD has no remote frames"),
            RemoteError => f.write_str("a frame cannot be both remote and error"),
            RemoteWithData => f.write_str("a remote frame carries no data"),
            RemoteLengthTooLarge(n) => write!(f, "remote frame requests {n} bytes (max 8)"),
            ErrorFd => f.write_str("an error frame cannot be CAN FD"),
            ErrorTooLong(n) => write!(f, "error frame has {n} data bytes (max 8)"),
            BrsWithoutFd => f.write_str("bit rate switch (BRS) needs a CAN FD frame"),
            EsiWithoutFd => f.write_str("error state indicator (ESI) needs a CAN FD frame"),
            UnknownFlags(b) => write!(f, "unknown flag bits 0x{b:02X}"),
            RawDlcNotAllowed(d) => write!(
                f,
                "raw DLC {d} is allowed only as 9-15 on a classic frame with 8 data bytes"
            ),
            UnknownDirection(d) => write!(f, "unknown direction {d} (0 Rx, 1 Tx)"),
            ChannelTooLong(n) => {
                write!(f, "channel name is {n} bytes (max {CHANNEL_STR_MAX})")
            }
            ChannelNotUtf8 => f.write_str("channel name is not UTF-8"),
            Syntax(s) => f.write_str(s),
        }
    }
}

impl std::error::Error for FrameError {}

impl CanFrame {
    /// An all-zero frame (standard ID 0, no data). Useful as a slot initialiser.
    pub const EMPTY: CanFrame = CanFrame {
        timestamp_ns: 0,
        id: 0,
        flags: 0,
        len: 0,
        raw_dlc: 0,
        dir: 0,
        channel: Channel::NONE,
        sender: SenderAddr::NONE,
        _reserved2: [0; 4],
        data: [0; 64],
    };

    /// A validated data frame. `flags` are [`flags`] bits; `data` is the payload.
    pub fn new(id: u32, flags: u8, data: &[u8]) -> Result<CanFrame, FrameError> {
        if flags & flags::RTR != 0 && !data.is_empty() {
            return Err(FrameError::RemoteWithData);
        }
        if data.len() > 64 {
            return Err(if flags & flags::FD != 0 {
                FrameError::FdLengthNotAllowed(data.len())
            } else {
                FrameError::ClassicTooLong(data.len())
            });
        }
        let mut f = CanFrame::EMPTY;
        f.id = id;
        f.flags = flags;
        f.len = data.len() as u8;
        f.data[..data.len()].copy_from_slice(data);
        f.validate()?;
        Ok(f)
    }

    /// A validated remote frame requesting `len` bytes.
    pub fn remote(id: u32, extended: bool, len: u8) -> Result<CanFrame, FrameError> {
        let mut f = CanFrame::EMPTY;
        f.id = id;
        f.flags = flags::RTR | if extended { flags::EXTENDED } else { 0 };
        f.len = len;
        f.validate()?;
        Ok(f)
    }

    /// Checks every rule of SPEC §1. A frame that fails is never sent.
    pub fn validate(&self) -> Result<(), FrameError> {
        let fl = self.flags;
        if fl & !flags::ALL != 0 {
            return Err(FrameError::UnknownFlags(fl & !flags::ALL));
        }
        let len = self.len as usize;
        let fd = fl & flags::FD != 0;
        if fl & flags::EXTENDED != 0 {
            if self.id >= EXT_ID_LIMIT {
                return Err(FrameError::ExtIdOutOfRange(self.id));
            }
        } else if self.id >= STD_ID_LIMIT {
            return Err(FrameError::StdIdOutOfRange(self.id));
        }
        if fl & flags::RTR != 0 {
            if fl & flags::ERROR != 0 {
                return Err(FrameError::RemoteError);
            }
            if fd {
                return Err(FrameError::RemoteFd);
            }
            if len > 8 {
                return Err(FrameError::RemoteLengthTooLarge(len));
            }
        }
        if fl & flags::ERROR != 0 {
            if fd {
                return Err(FrameError::ErrorFd);
            }
            if len > 8 {
                return Err(FrameError::ErrorTooLong(len));
            }
        }
        if self.dir > 1 {
            return Err(FrameError::UnknownDirection(self.dir));
        }
        if self.raw_dlc != 0
            && (fd || fl & flags::ERROR != 0 || len != 8 || !(9..=15).contains(&self.raw_dlc))
        {
            return Err(FrameError::RawDlcNotAllowed(self.raw_dlc));
        }
        if fd {
            if !FD_LENGTHS.contains(&self.len) {
                return Err(FrameError::FdLengthNotAllowed(len));
            }
        } else {
            if len > 8 {
                return Err(FrameError::ClassicTooLong(len));
            }
            if fl & flags::BRS != 0 {
                return Err(FrameError::BrsWithoutFd);
            }
            if fl & flags::ESI != 0 {
                return Err(FrameError::EsiWithoutFd);
            }
        }
        Ok(())
    }

    /// The payload (empty for a remote frame).
    pub fn payload(&self) -> &[u8] {
        if self.is_remote() {
            &[]
        } else {
            &self.data[..(self.len as usize).min(64)]
        }
    }

    /// 29-bit (extended) ID.
    pub fn is_extended(&self) -> bool {
        self.flags & flags::EXTENDED != 0
    }
    /// Remote (RTR) frame.
    pub fn is_remote(&self) -> bool {
        self.flags & flags::RTR != 0
    }
    /// Error frame.
    pub fn is_error(&self) -> bool {
        self.flags & flags::ERROR != 0
    }
    /// CAN FD frame.
    pub fn is_fd(&self) -> bool {
        self.flags & flags::FD != 0
    }
    /// CAN FD bit rate switch.
    pub fn brs(&self) -> bool {
        self.flags & flags::BRS != 0
    }
    /// CAN FD error state indicator.
    pub fn esi(&self) -> bool {
        self.flags & flags::ESI != 0
    }

    /// Rx or Tx (see [`Direction`]).
    pub fn direction(&self) -> Direction {
        if self.dir == 1 {
            Direction::Tx
        } else {
            Direction::Rx
        }
    }

    /// Sets the direction.
    pub fn set_direction(&mut self, dir: Direction) {
        self.dir = dir as u8;
    }

    /// The DLC code as it was on the bus: the raw DLC (9–15) where one was kept, the
    /// FD length code for CAN FD, else the length.
    pub fn dlc(&self) -> u8 {
        if self.raw_dlc != 0 {
            self.raw_dlc
        } else if self.is_fd() {
            len_to_dlc(self.len)
        } else {
            self.len
        }
    }

    /// The SocketCAN-style identifier as can-utils prints it: the error flag for error
    /// frames, otherwise the bare ID.
    pub fn text_id(&self) -> u32 {
        if self.is_error() {
            CAN_ERR_FLAG | self.id
        } else {
            self.id
        }
    }

    /// The same frame with its metadata (time, channel, sender) cleared: what two
    /// ends compare when they check that a frame "arrived equal".
    pub fn content(&self) -> CanFrame {
        let mut f = *self;
        f.timestamp_ns = 0;
        f.channel = Channel::NONE;
        f.sender = SenderAddr::NONE;
        f
    }

    /// Writes the frame in cansend syntax into `out` without allocating; returns the
    /// number of bytes written (at most [`CanFrame::TEXT_MAX`]).
    pub fn write_text(&self, out: &mut [u8; CanFrame::TEXT_MAX]) -> usize {
        const HEX: &[u8; 16] = b"0123456789ABCDEF";
        let mut n = 0;
        let id = self.text_id();
        let digits = if self.is_extended() || self.is_error() {
            8
        } else {
            3
        };
        for i in (0..digits).rev() {
            out[n] = HEX[((id >> (i * 4)) & 0xF) as usize];
            n += 1;
        }
        out[n] = b'#';
        n += 1;
        if self.is_remote() {
            out[n] = b'R';
            n += 1;
            if self.len > 0 {
                out[n] = HEX[(self.len & 0xF) as usize];
                n += 1;
            }
            if self.raw_dlc != 0 {
                out[n] = b'_';
                out[n + 1] = HEX[(self.raw_dlc & 0xF) as usize];
                n += 2;
            }
            return n;
        }
        if self.is_fd() {
            let nibble = 4 | (self.brs() as u8) | ((self.esi() as u8) << 1);
            out[n] = b'#';
            out[n + 1] = HEX[nibble as usize];
            n += 2;
        }
        for &b in self.payload() {
            out[n] = HEX[(b >> 4) as usize];
            out[n + 1] = HEX[(b & 0xF) as usize];
            n += 2;
        }
        if self.raw_dlc != 0 {
            out[n] = b'_';
            out[n + 1] = HEX[(self.raw_dlc & 0xF) as usize];
            n += 2;
        }
        n
    }

    /// Longest text [`CanFrame::write_text`] produces: 8 id digits, `##F`, 128 hex digits
    /// (a `_C` raw-DLC suffix only follows 8 classic bytes, so it never adds to this).
    pub const TEXT_MAX: usize = 8 + 3 + 128;
}

impl Default for CanFrame {
    fn default() -> Self {
        CanFrame::EMPTY
    }
}

impl fmt::Display for CanFrame {
    /// cansend syntax: `123#DEADBEEF`, `12345678#R`, `123##5AABB`, `20000080#…`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; CanFrame::TEXT_MAX];
        let n = self.write_text(&mut buf);
        // write_text emits only ASCII.
        f.write_str(std::str::from_utf8(&buf[..n]).unwrap_or("?"))
    }
}

impl fmt::Debug for CanFrame {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(
            f,
            "CanFrame({self} t={} ch={:?} from={:?} {:?})",
            self.timestamp_ns,
            self.channel,
            self.sender,
            self.direction()
        )
    }
}

fn syntax(msg: impl Into<String>) -> FrameError {
    FrameError::Syntax(msg.into())
}

fn hex_val(c: u8) -> Option<u8> {
    match HEX_VALUE[c as usize] {
        NOT_HEX => None,
        v => Some(v),
    }
}

const NOT_HEX: u8 = 0xFF;

/// The value of each hex digit byte, [`NOT_HEX`] for the others: one load per digit
/// instead of three range tests (frame parsing is most of reading a `.log`).
static HEX_VALUE: [u8; 256] = {
    let mut t = [NOT_HEX; 256];
    let mut i = 0;
    while i < 10 {
        t[b'0' as usize + i] = i as u8;
        i += 1;
    }
    let mut i = 0;
    while i < 6 {
        t[b'a' as usize + i] = 10 + i as u8;
        t[b'A' as usize + i] = 10 + i as u8;
        i += 1;
    }
    t
};

/// Parses can-utils frame syntax from bytes, without allocating on success.
///
/// Accepts `ID#DATA`, `ID#R`, `ID#R<len>`, `ID##<flags><DATA>`, an optional `_<dlc>`
/// suffix (classic 8-byte frames with a raw DLC of 9–F, kept in [`CanFrame::raw_dlc`]), and
/// `.` separators between data bytes as cansend does. Three hex digits make a
/// standard ID, eight an extended one; an 8-digit ID with the error flag
/// (0x20000000) is an error frame.
pub fn parse_frame(text: &[u8]) -> Result<CanFrame, FrameError> {
    let shown = || String::from_utf8_lossy(text).into_owned();
    let hash = text
        .iter()
        .position(|&c| c == b'#')
        .ok_or_else(|| syntax(format!("'{}': expected ID#DATA", shown())))?;
    let (id_text, rest) = (&text[..hash], &text[hash + 1..]);
    if id_text.is_empty() || id_text.len() > 8 {
        return Err(syntax(format!(
            "'{}': the ID must have 1-3 hex digits (standard) or 4-8 (extended)",
            shown()
        )));
    }
    let mut id: u32 = 0;
    for &c in id_text {
        let v =
            hex_val(c).ok_or_else(|| syntax(format!("'{}': ID is not hexadecimal", shown())))?;
        id = (id << 4) | v as u32;
    }
    let mut frame = CanFrame::EMPTY;
    // can-utils: exactly 3 digits is standard, 8 is extended; python-can's reader
    // takes anything longer than 3 as extended. Accept both readings.
    if id_text.len() > 3 {
        // python-can checks error classes against the 29-bit limit only when
        // is_extended_id is set, so error frames always carry EXTENDED.
        frame.flags |= flags::EXTENDED;
        if id & CAN_ERR_FLAG != 0 {
            frame.flags |= flags::ERROR;
            id &= !CAN_ERR_FLAG;
        }
        if id >= EXT_ID_LIMIT {
            return Err(FrameError::ExtIdOutOfRange(id));
        }
    }
    frame.id = id;

    let mut body = rest;
    if let Some(b'R' | b'r') = body.first() {
        frame.flags |= flags::RTR;
        match &body[1..] {
            [] => {}
            [c] => {
                let len = hex_val(*c)
                    .ok_or_else(|| syntax(format!("'{}': bad remote length", shown())))?;
                frame.len = len;
            }
            // `R_` suffix forms (`123#R8_9`) carry a raw DLC (kept when it is 9–F).
            [c, b'_', d] if hex_val(*d).is_some() => {
                frame.len = hex_val(*c)
                    .ok_or_else(|| syntax(format!("'{}': bad remote length", shown())))?;
                frame.raw_dlc = raw_dlc_of(frame.len, hex_val(*d).unwrap_or(0));
            }
            _ => return Err(syntax(format!("'{}': bad remote frame", shown()))),
        }
        frame.validate()?;
        return Ok(frame);
    }
    if let Some(b'#') = body.first() {
        let nibble = body.get(1).and_then(|&c| hex_val(c)).ok_or_else(|| {
            syntax(format!(
                "'{}': '##' must be followed by a flags digit",
                shown()
            ))
        })?;
        frame.flags |= flags::FD;
        if nibble & 1 != 0 {
            frame.flags |= flags::BRS;
        }
        if nibble & 2 != 0 {
            frame.flags |= flags::ESI;
        }
        body = &body[2..];
    }
    // Optional `_<dlc>` suffix on classic 8-byte frames.
    let mut suffix_dlc = None;
    if body.len() >= 2 && body[body.len() - 2] == b'_' {
        suffix_dlc = Some(
            hex_val(body[body.len() - 1])
                .ok_or_else(|| syntax(format!("'{}': bad _DLC suffix", shown())))?,
        );
        body = &body[..body.len() - 2];
    }
    let mut len = 0usize;
    let mut i = 0;
    while i < body.len() {
        if body[i] == b'.' {
            i += 1;
            continue;
        }
        let hi = hex_val(body[i]);
        let lo = body.get(i + 1).and_then(|&c| hex_val(c));
        match (hi, lo) {
            (Some(h), Some(l)) => {
                if len == 64 {
                    return Err(FrameError::FdLengthNotAllowed(65 + (body.len() - i) / 2));
                }
                frame.data[len] = (h << 4) | l;
                len += 1;
                i += 2;
            }
            _ => {
                return Err(syntax(format!(
                    "'{}': data must be pairs of hex digits",
                    shown()
                )))
            }
        }
    }
    frame.len = len as u8;
    if let Some(dlc) = suffix_dlc {
        if frame.is_fd() {
            return Err(syntax(format!(
                "'{}': a _DLC suffix needs a classic frame",
                shown()
            )));
        }
        frame.raw_dlc = raw_dlc_of(frame.len, dlc);
    }
    frame.validate()?;
    Ok(frame)
}

/// The raw DLC to keep for a `_<dlc>` suffix: only 9–15 after 8 bytes mean anything
/// (candump writes the suffix only then; a suffix equal to the length says nothing new).
fn raw_dlc_of(len: u8, dlc: u8) -> u8 {
    if len == 8 && dlc > 8 {
        dlc
    } else {
        0
    }
}

impl std::str::FromStr for CanFrame {
    type Err = FrameError;
    fn from_str(s: &str) -> Result<CanFrame, FrameError> {
        parse_frame(s.trim().as_bytes())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn p(s: &str) -> CanFrame {
        s.parse().unwrap_or_else(|e| panic!("{s}: {e}"))
    }

    #[test]
    fn parses_and_prints_every_kind() {
        for (input, output) in [
            ("123#DEADBEEF", "123#DEADBEEF"),
            ("123#", "123#"),
            ("12345678#00", "12345678#00"),
            ("123#R", "123#R"),
            ("123#R4", "123#R4"),
            ("1ABCDEF0#R8", "1ABCDEF0#R8"),
            ("123##5AABB", "123##5AABB"),
            ("123##0", "123##4"),
            ("123##4", "123##4"),
            ("123##3", "123##7"),
            ("20000080#0000000000000000", "20000080#0000000000000000"),
        ] {
            assert_eq!(p(input).to_string(), output, "input {input}");
        }
    }

    #[test]
    fn raw_dlc_round_trips_through_text() {
        let f = p("123#1122334455667788_C");
        assert_eq!(f.raw_dlc, 0xC);
        assert_eq!(f.dlc(), 12);
        assert_eq!(f.len, 8);
        assert_eq!(f.to_string(), "123#1122334455667788_C");
        let r = p("123#R8_9");
        assert_eq!((r.len, r.raw_dlc), (8, 9));
        assert_eq!(r.to_string(), "123#R8_9");
        // A suffix that says nothing beyond the length is not kept.
        assert_eq!(p("123#1122334455667788_8").raw_dlc, 0);
        assert!("123##01122334455667788_C".parse::<CanFrame>().is_err());
        let mut bad = p("123#11");
        bad.raw_dlc = 9;
        assert_eq!(bad.validate(), Err(FrameError::RawDlcNotAllowed(9)));
    }

    #[test]
    fn direction_defaults_to_rx_and_is_checked() {
        let mut f = p("123#11");
        assert_eq!(f.direction(), Direction::Rx);
        f.set_direction(Direction::Tx);
        assert_eq!(f.direction(), Direction::Tx);
        assert!(f.validate().is_ok());
        assert_ne!(f.content(), p("123#11").content(), "direction is content");
    }

    #[test]
    fn dlc_codes_and_lengths() {
        assert_eq!(dlc_to_len(9), 12);
        assert_eq!(dlc_to_len(15), 64);
        assert_eq!(len_to_dlc(64), 15);
        assert_eq!(len_to_dlc(13), 10);
        assert_eq!(len_to_dlc(5), 5);
        assert_eq!(p("123##0").dlc(), 0);
        let fd = CanFrame::new(0x1, flags::FD, &[0; 48]).unwrap();
        assert_eq!(fd.dlc(), 14);
    }

    #[test]
    fn decodes_fields() {
        let f = p("12345678#0011");
        assert!(f.is_extended());
        assert_eq!(f.id, 0x1234_5678);
        assert_eq!(f.payload(), &[0x00, 0x11]);

        let f = p("123#R4");
        assert!(f.is_remote());
        assert_eq!(f.len, 4);
        assert!(f.payload().is_empty());

        let f = p("123##3");
        assert!(f.is_fd() && f.brs() && f.esi());

        let f = p("20000080#0000000000000000");
        assert!(f.is_error());
        assert_eq!(f.id, 0x80);
        assert_eq!(f.len, 8);

        let f = p("123#11.22.33");
        assert_eq!(f.payload(), &[0x11, 0x22, 0x33]);

        let f = p("123#1122334455667788_E");
        assert_eq!(f.len, 8);
    }

    #[test]
    fn fd_every_length_round_trips() {
        for &len in &FD_LENGTHS {
            let data: Vec<u8> = (0..len).collect();
            let f = CanFrame::new(0x7FF, flags::FD | flags::BRS, &data).unwrap();
            let back: CanFrame = f.to_string().parse().unwrap();
            assert_eq!(back, f);
        }
    }

    #[test]
    fn rejects_invalid_frames_with_named_reason() {
        let cases = [
            ("123#001122334455667788", FrameError::ClassicTooLong(9)),
            (
                "123##1001122334455667788",
                FrameError::FdLengthNotAllowed(9),
            ),
        ];
        // 3FFFFFFF has the error flag, leaving 0x1FFFFFFF: a valid error class.
        assert!("3FFFFFFF#".parse::<CanFrame>().unwrap().is_error());
        for (text, err) in &cases {
            assert_eq!(&text.parse::<CanFrame>().unwrap_err(), err, "{text}");
        }
        assert_eq!(
            "FFFFFFFF#".parse::<CanFrame>().unwrap_err(),
            FrameError::ExtIdOutOfRange(0xDFFF_FFFF)
        );
        for bad in [
            "",
            "123",
            "XYZ#00",
            "123#0",
            "123#GG",
            "123##",
            "123##X00",
            "123456789#00",
            "123#RZ",
        ] {
            let e = bad.parse::<CanFrame>();
            assert!(e.is_err(), "{bad:?} parsed");
        }
        assert_eq!(
            CanFrame::new(0x800, 0, &[]).unwrap_err(),
            FrameError::StdIdOutOfRange(0x800)
        );
        assert_eq!(
            CanFrame::new(1, flags::BRS, &[]).unwrap_err(),
            FrameError::BrsWithoutFd
        );
        assert_eq!(
            CanFrame::new(1, flags::ESI, &[]).unwrap_err(),
            FrameError::EsiWithoutFd
        );
        assert_eq!(
            CanFrame::new(1, flags::RTR | flags::FD, &[]).unwrap_err(),
            FrameError::RemoteFd
        );
        assert_eq!(
            CanFrame::remote(1, false, 9).unwrap_err(),
            FrameError::RemoteLengthTooLarge(9)
        );
        assert_eq!(
            CanFrame::new(1, flags::ERROR | flags::FD, &[]).unwrap_err(),
            FrameError::ErrorFd
        );
        // Every error message says something.
        assert!(FrameError::FdLengthNotAllowed(9).to_string().contains("48"));
    }

    #[test]
    fn channel_kinds() {
        assert_eq!(Channel::NONE.get(), ChannelRef::None);
        assert_eq!(Channel::int(-3).get(), ChannelRef::Int(-3));
        assert_eq!(Channel::str("can1").unwrap().get(), ChannelRef::Str("can1"));
        assert_eq!(Channel::int(2).to_string(), "can2");
        assert_eq!(Channel::str("vcan3").unwrap().to_string(), "vcan3");
        // An all-digit name is shown as python-can shows an integer, when that fits.
        assert_eq!(Channel::str("7").unwrap().to_string(), "can7");
        let long = "7".repeat(CHANNEL_STR_MAX - 2);
        assert_eq!(Channel::str(&long).unwrap().to_string(), long);
        let name = Channel::str(&long).unwrap().to_string();
        assert!(Channel::str(&name).is_ok(), "a shown name reads back");
        assert!(matches!(
            Channel::str("a-channel-name-that-is-too-long"),
            Err(FrameError::ChannelTooLong(_))
        ));
    }

    #[test]
    fn sender_addr_round_trips() {
        for s in ["127.0.0.1:43113", "[ff15::1]:9"] {
            let sa: SocketAddr = s.parse().unwrap();
            assert_eq!(SenderAddr::from(sa).get(), Some(sa));
        }
        assert_eq!(SenderAddr::NONE.get(), None);
    }

    #[test]
    fn frame_is_plain_bytes() {
        let f = p("123#DEADBEEF");
        let bytes = f.as_bytes();
        assert_eq!(bytes.len(), 128);
        let back = CanFrame::read_from_bytes(bytes).unwrap();
        assert_eq!(back, f);
    }
}
