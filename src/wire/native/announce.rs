//! The bridge announcement (`kind` = 4): every ~100 ms a bridge started with `--bus NAME`
//! tells the group which physical bus it serves, how it ranks and whether it forwards,
//! so that bridges on one bus elect a single active one (`src/canif/election.rs`). The
//! codec only (`docs/wire-native.md` §3b).

use std::fmt;

use zerocopy::byteorder::little_endian::{U16, U64};
use zerocopy::{FromBytes, Immutable, IntoBytes, KnownLayout, Unaligned};

use super::decode::common;
use super::encode::put_common;
use super::ping::control_info;
use super::{DatagramInfo, Kind, ANNOUNCE_LEN, COMMON_HEADER_LEN};
use crate::wire::DecodeError;

/// Most bytes of a bus name.
pub const BUS_NAME_MAX: usize = 32;

/// Body of an announcement datagram.
#[derive(Debug, Clone, Copy, FromBytes, IntoBytes, KnownLayout, Immutable, Unaligned)]
#[repr(C)]
pub(super) struct AnnounceBody {
    start_ns: U64,
    period_ms: U16,
    priority: u8,
    state: u8,
    bus_len: u8,
    reserved: [u8; 3],
    bus: [u8; BUS_NAME_MAX],
}

/// The name of a physical bus, as `--bus` gives it: 1 to [`BUS_NAME_MAX`] bytes of
/// UTF-8. Fixed size, so announcements are compared without allocating.
#[derive(Clone, Copy, PartialEq, Eq, Hash)]
pub struct BusName {
    bytes: [u8; BUS_NAME_MAX],
    len: u8,
}

impl BusName {
    /// A bus name, or why not (empty, longer than [`BUS_NAME_MAX`] bytes).
    pub fn new(name: &str) -> Result<BusName, String> {
        if name.is_empty() || name.len() > BUS_NAME_MAX {
            return Err(format!(
                "a bus name has 1 to {BUS_NAME_MAX} bytes (got {})",
                name.len()
            ));
        }
        let mut bytes = [0u8; BUS_NAME_MAX];
        bytes[..name.len()].copy_from_slice(name.as_bytes());
        Ok(BusName {
            bytes,
            len: name.len() as u8,
        })
    }

    /// The name; bytes from a foreign sender that are not UTF-8 show as `"?"`.
    pub fn as_str(&self) -> &str {
        std::str::from_utf8(&self.bytes[..self.len as usize]).unwrap_or("?")
    }
}

impl fmt::Debug for BusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BusName({:?})", self.as_str())
    }
}

impl fmt::Display for BusName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// What an announcing bridge is doing.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AnnounceState {
    /// Just started: listening for the others before it may forward (not a candidate).
    Listening,
    /// Receiving and counting, forwarding nothing; ready to take over.
    Standby,
    /// Forwarding both ways for its bus.
    Active,
}

impl AnnounceState {
    fn to_byte(self) -> u8 {
        match self {
            AnnounceState::Listening => 0,
            AnnounceState::Standby => 1,
            AnnounceState::Active => 2,
        }
    }

    fn from_byte(b: u8) -> Option<AnnounceState> {
        match b {
            0 => Some(AnnounceState::Listening),
            1 => Some(AnnounceState::Standby),
            2 => Some(AnnounceState::Active),
            _ => None,
        }
    }

    /// Lower-case name, as the bridge's summary prints it.
    pub fn name(self) -> &'static str {
        match self {
            AnnounceState::Listening => "listening",
            AnnounceState::Standby => "standby",
            AnnounceState::Active => "active",
        }
    }
}

/// One bridge announcement.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BridgeAnnounce {
    /// The bus the bridge serves (its `--bus`).
    pub bus: BusName,
    /// When the bridge started, ns since the Unix epoch (older ranks first).
    pub start_ns: u64,
    /// How often it announces, ms (receivers declare it gone after 3 periods of silence).
    pub period_ms: u16,
    /// Lower is preferred (ranks before the start time).
    pub priority: u8,
    /// What it is doing.
    pub state: AnnounceState,
}

/// An announcement as received: who sent it (the bridge's id and control counter from
/// the common header) and what it said.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Announcement {
    /// The announcing bridge's id (`sender_id`).
    pub sender_id: u32,
    /// Its control counter (`seq`): a lower one than already seen is a reordered, stale
    /// announcement.
    pub seq: u64,
    /// The body.
    pub body: BridgeAnnounce,
}

/// Writes an announcement datagram into `buf`; returns its length ([`ANNOUNCE_LEN`]),
/// or 0 if `buf` is shorter. `sender_id` is the bridge's id, `seq` its control counter.
pub fn encode_announce(buf: &mut [u8], sender_id: u32, seq: u64, a: &BridgeAnnounce) -> usize {
    if buf.len() < ANNOUNCE_LEN {
        return 0;
    }
    put_common(
        buf,
        Kind::BridgeAnnounce,
        ANNOUNCE_LEN,
        ANNOUNCE_LEN,
        0,
        sender_id,
        seq,
    );
    let body = AnnounceBody {
        start_ns: U64::new(a.start_ns),
        period_ms: U16::new(a.period_ms),
        priority: a.priority,
        state: a.state.to_byte(),
        bus_len: a.bus.len,
        reserved: [0; 3],
        bus: a.bus.bytes,
    };
    buf[COMMON_HEADER_LEN..ANNOUNCE_LEN].copy_from_slice(body.as_bytes());
    ANNOUNCE_LEN
}

/// Reads an announcement. Another valid kind is `UnknownType`; a bus length of 0 or
/// over [`BUS_NAME_MAX`], a period of 0 or an unknown state is `BadLength` /
/// `UnknownType` (the datagram is refused whole: a half-understood announcement must
/// not sway an election).
pub fn decode_announce(datagram: &[u8]) -> Result<(DatagramInfo, BridgeAnnounce), DecodeError> {
    let (h, kind, _) = common(datagram)?;
    if kind != Kind::BridgeAnnounce {
        return Err(DecodeError::UnknownType);
    }
    let (b, _) = AnnounceBody::ref_from_prefix(&datagram[COMMON_HEADER_LEN..])
        .map_err(|_| DecodeError::Truncated)?;
    let len = b.bus_len as usize;
    if len == 0 || len > BUS_NAME_MAX || b.period_ms.get() == 0 {
        return Err(DecodeError::BadLength);
    }
    let state = AnnounceState::from_byte(b.state).ok_or(DecodeError::UnknownType)?;
    // Canonical: bytes past the length are zero, so equal names compare equal.
    let mut bytes = [0u8; BUS_NAME_MAX];
    bytes[..len].copy_from_slice(&b.bus[..len]);
    Ok((
        control_info(h, kind),
        BridgeAnnounce {
            bus: BusName {
                bytes,
                len: len as u8,
            },
            start_ns: b.start_ns.get(),
            period_ms: b.period_ms.get(),
            priority: b.priority,
            state,
        },
    ))
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::wire::DecodeError;

    fn sample() -> BridgeAnnounce {
        BridgeAnnounce {
            bus: BusName::new("body-can").unwrap(),
            start_ns: 1_700_000_000_123_456_789,
            period_ms: 100,
            priority: 7,
            state: AnnounceState::Standby,
        }
    }

    #[test]
    fn announce_round_trip_and_layout() {
        let a = sample();
        let mut buf = [0u8; 128];
        let n = encode_announce(&mut buf, 0xA1B2_C3D4, 9, &a);
        assert_eq!(n, ANNOUNCE_LEN);
        assert_eq!(n, 72);
        assert_eq!(buf[3], 4, "kind");
        assert_eq!(&buf[24..32], &a.start_ns.to_le_bytes());
        assert_eq!(&buf[32..34], &100u16.to_le_bytes());
        assert_eq!((buf[34], buf[35], buf[36]), (7, 1, 8));
        assert_eq!(&buf[40..48], b"body-can");
        let (info, back) = decode_announce(&buf[..n]).unwrap();
        assert_eq!(back, a);
        assert_eq!(back.bus.as_str(), "body-can");
        assert_eq!(
            (info.sender_id, info.seq, info.kind),
            (0xA1B2_C3D4, 9, Kind::BridgeAnnounce)
        );
        // The frames decoder sees a valid datagram with no frames.
        let i = decode(&buf[..n], &mut |_| panic!()).unwrap();
        assert_eq!((i.kind, i.frames), (Kind::BridgeAnnounce, 0));
        assert_eq!(encode_announce(&mut buf[..71], 1, 1, &a), 0);
    }

    #[test]
    fn bad_announcements_are_refused_whole() {
        let mut buf = [0u8; 128];
        let n = encode_announce(&mut buf, 5, 1, &sample());
        assert_eq!(
            decode_announce(&buf[..n - 1]).unwrap_err(),
            DecodeError::Truncated
        );
        let mut b = buf;
        b[36] = 0;
        assert_eq!(
            decode_announce(&b[..n]).unwrap_err(),
            DecodeError::BadLength
        );
        b[36] = 33;
        assert_eq!(
            decode_announce(&b[..n]).unwrap_err(),
            DecodeError::BadLength
        );
        let mut b = buf;
        b[35] = 3;
        assert_eq!(
            decode_announce(&b[..n]).unwrap_err(),
            DecodeError::UnknownType
        );
        let mut b = buf;
        b[32] = 0;
        b[33] = 0;
        assert_eq!(
            decode_announce(&b[..n]).unwrap_err(),
            DecodeError::BadLength
        );
        // Bytes after the name are not part of it.
        let mut b = buf;
        b[60] = b'x';
        assert_eq!(decode_announce(&b[..n]).unwrap().1.bus, sample().bus);
        let mut p = [0u8; 64];
        let pn = encode_probe(
            &mut p,
            1,
            1,
            &PingProbe {
                probe_id: 1,
                sent_ns: 1,
            },
        );
        assert_eq!(
            decode_announce(&p[..pn]).unwrap_err(),
            DecodeError::UnknownType
        );
    }

    #[test]
    fn bus_names_are_checked() {
        assert!(BusName::new("").is_err());
        assert!(BusName::new(&"x".repeat(33)).is_err());
        assert_eq!(BusName::new(&"x".repeat(32)).unwrap().as_str().len(), 32);
    }
}
