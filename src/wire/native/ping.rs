//! The `ping` control messages: a probe sent to the group and the answer every canmc
//! receiver sends back (`docs/wire-native.md`). The codec only; the pinger and the
//! responder that use it live elsewhere.

use std::fmt;

use zerocopy::byteorder::little_endian::{U32, U64};
use zerocopy::{FromBytes, IntoBytes};

use super::decode::common;
use super::encode::put_common;
use super::{
    AnswerBody, CommonHeader, DatagramInfo, Kind, ProbeBody, ANSWER_LEN, COMMON_HEADER_LEN,
    HOST_MAX, PROBE_LEN,
};
use crate::wire::DecodeError;

/// A `ping` probe: sent to the group; every canmc receiver answers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingProbe {
    /// Chosen by the prober; answers echo it.
    pub probe_id: u64,
    /// When the probe was sent (prober's clock, ns), echoed for round-trip times.
    pub sent_ns: u64,
}

/// What a receiver is doing, as reported in a ping answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Role {
    /// A role this build does not know (or none given).
    Unknown = 0,
    /// `canmc dump`.
    Dump = 1,
    /// `canmc record`.
    Record = 2,
    /// An application embedding the library.
    App = 3,
    /// `canmc send`.
    Send = 4,
    /// `canmc gen`.
    Gen = 5,
    /// `canmc replay`.
    Replay = 6,
}

impl Role {
    fn from_byte(b: u8) -> Role {
        match b {
            1 => Role::Dump,
            2 => Role::Record,
            3 => Role::App,
            4 => Role::Send,
            5 => Role::Gen,
            6 => Role::Replay,
            _ => Role::Unknown,
        }
    }

    /// Lower-case name, as `ping` prints it.
    pub fn name(self) -> &'static str {
        match self {
            Role::Unknown => "unknown",
            Role::Dump => "dump",
            Role::Record => "record",
            Role::App => "app",
            Role::Send => "send",
            Role::Gen => "gen",
            Role::Replay => "replay",
        }
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A receiver's answer to a [`PingProbe`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PingAnswer {
    /// The probe's id.
    pub probe_id: u64,
    /// The probe's `sent_ns`, echoed so the prober needs no state for round-trip times.
    pub probe_sent_ns: u64,
    /// What the answering program is doing.
    pub role: Role,
    /// Process id of the answering program.
    pub pid: u32,
    /// How long the answering program has been running.
    pub uptime_ms: u64,
    /// Frames it has received so far.
    pub frames_seen: u64,
    /// Host name bytes (`host_len` of them are meaningful).
    pub host: [u8; HOST_MAX],
    /// How many bytes of `host` are the name (at most [`HOST_MAX`]).
    pub host_len: u8,
}

impl PingAnswer {
    /// An answer; `host` is cut to [`HOST_MAX`] bytes (at a UTF-8 boundary).
    pub fn new(probe: &PingProbe, role: Role, pid: u32, host: &str) -> PingAnswer {
        let mut cut = host.len().min(HOST_MAX);
        while !host.is_char_boundary(cut) {
            cut -= 1;
        }
        let mut bytes = [0u8; HOST_MAX];
        bytes[..cut].copy_from_slice(&host.as_bytes()[..cut]);
        PingAnswer {
            probe_id: probe.probe_id,
            probe_sent_ns: probe.sent_ns,
            role,
            pid,
            uptime_ms: 0,
            frames_seen: 0,
            host: bytes,
            host_len: cut as u8,
        }
    }

    /// The host name; invalid UTF-8 (from a foreign sender) shows as `"?"`.
    pub fn host(&self) -> &str {
        let n = (self.host_len as usize).min(HOST_MAX);
        std::str::from_utf8(&self.host[..n]).unwrap_or("?")
    }
}

/// Writes a probe datagram into `buf`; returns its length ([`PROBE_LEN`]), or 0 if
/// `buf` is shorter than that. `seq` is the sender's control-message counter.
pub fn encode_probe(buf: &mut [u8], sender_id: u32, seq: u64, probe: &PingProbe) -> usize {
    if buf.len() < PROBE_LEN {
        return 0;
    }
    put_common(
        buf,
        Kind::PingProbe,
        PROBE_LEN,
        PROBE_LEN,
        0,
        sender_id,
        seq,
    );
    let body = ProbeBody {
        probe_id: U64::new(probe.probe_id),
        sent_ns: U64::new(probe.sent_ns),
    };
    buf[COMMON_HEADER_LEN..PROBE_LEN].copy_from_slice(body.as_bytes());
    PROBE_LEN
}

/// Writes an answer datagram into `buf`; returns its length ([`ANSWER_LEN`]), or 0 if
/// `buf` is shorter than that.
pub fn encode_answer(buf: &mut [u8], sender_id: u32, seq: u64, answer: &PingAnswer) -> usize {
    if buf.len() < ANSWER_LEN {
        return 0;
    }
    put_common(
        buf,
        Kind::PingAnswer,
        ANSWER_LEN,
        ANSWER_LEN,
        0,
        sender_id,
        seq,
    );
    let host_len = (answer.host_len as usize).min(HOST_MAX);
    let mut host = [0u8; HOST_MAX];
    host[..host_len].copy_from_slice(&answer.host[..host_len]);
    let body = AnswerBody {
        probe_id: U64::new(answer.probe_id),
        probe_sent_ns: U64::new(answer.probe_sent_ns),
        uptime_ms: U64::new(answer.uptime_ms),
        frames_seen: U64::new(answer.frames_seen),
        pid: U32::new(answer.pid),
        role: answer.role as u8,
        host_len: host_len as u8,
        reserved: [0; 2],
        host,
    };
    buf[COMMON_HEADER_LEN..ANSWER_LEN].copy_from_slice(body.as_bytes());
    ANSWER_LEN
}

/// Reads a probe datagram. A valid native datagram of another kind is `UnknownType`.
pub fn decode_probe(datagram: &[u8]) -> Result<(DatagramInfo, PingProbe), DecodeError> {
    let (h, kind, _) = common(datagram)?;
    if kind != Kind::PingProbe {
        return Err(DecodeError::UnknownType);
    }
    let (b, _) = ProbeBody::ref_from_prefix(&datagram[COMMON_HEADER_LEN..])
        .map_err(|_| DecodeError::Truncated)?;
    Ok((
        control_info(h, kind),
        PingProbe {
            probe_id: b.probe_id.get(),
            sent_ns: b.sent_ns.get(),
        },
    ))
}

/// Reads an answer datagram. A valid native datagram of another kind is `UnknownType`;
/// a host length over [`HOST_MAX`] is `BadLength`.
pub fn decode_answer(datagram: &[u8]) -> Result<(DatagramInfo, PingAnswer), DecodeError> {
    let (h, kind, _) = common(datagram)?;
    if kind != Kind::PingAnswer {
        return Err(DecodeError::UnknownType);
    }
    let (b, _) = AnswerBody::ref_from_prefix(&datagram[COMMON_HEADER_LEN..])
        .map_err(|_| DecodeError::Truncated)?;
    if b.host_len as usize > HOST_MAX {
        return Err(DecodeError::BadLength);
    }
    Ok((
        control_info(h, kind),
        PingAnswer {
            probe_id: b.probe_id.get(),
            probe_sent_ns: b.probe_sent_ns.get(),
            role: Role::from_byte(b.role),
            pid: b.pid.get(),
            uptime_ms: b.uptime_ms.get(),
            frames_seen: b.frames_seen.get(),
            host: b.host,
            host_len: b.host_len,
        },
    ))
}

pub(super) fn control_info(h: &CommonHeader, kind: Kind) -> DatagramInfo {
    DatagramInfo {
        sender_id: h.sender_id.get(),
        seq: h.seq.get(),
        kind,
        frames: 0,
        records: h.count.get(),
        bad_records: 0,
        error: None,
    }
}

#[cfg(test)]
mod tests {
    use super::super::*;
    use crate::wire::DecodeError;

    #[test]
    fn ping_round_trip_and_errors() {
        let probe = PingProbe {
            probe_id: 0xDEAD_BEEF_0000_0001,
            sent_ns: 123_456_789,
        };
        let mut buf = [0u8; 256];
        let n = encode_probe(&mut buf, 42, 7, &probe);
        assert_eq!(n, PROBE_LEN);
        assert_eq!(buf[3], 2);
        assert_eq!(&buf[24..32], &probe.probe_id.to_le_bytes());
        assert_eq!(&buf[32..40], &probe.sent_ns.to_le_bytes());
        let (info, back) = decode_probe(&buf[..n]).unwrap();
        assert_eq!(back, probe);
        assert_eq!(
            (info.sender_id, info.seq, info.kind),
            (42, 7, Kind::PingProbe)
        );
        let i = decode(&buf[..n], &mut |_| panic!()).unwrap();
        assert_eq!((i.kind, i.frames), (Kind::PingProbe, 0));
        assert_eq!(
            decode_answer(&buf[..n]).unwrap_err(),
            DecodeError::UnknownType
        );
        assert_eq!(
            decode_probe(&buf[..n - 1]).unwrap_err(),
            DecodeError::Truncated
        );
        assert_eq!(encode_probe(&mut buf[..PROBE_LEN - 1], 1, 1, &probe), 0);

        let mut ans = PingAnswer::new(&probe, Role::Record, 4321, "host-ä");
        ans.uptime_ms = 99;
        ans.frames_seen = 1 << 40;
        let n = encode_answer(&mut buf, 43, 8, &ans);
        assert_eq!(n, ANSWER_LEN);
        assert_eq!(buf[3], 3);
        assert_eq!(buf[60], Role::Record as u8);
        assert_eq!(buf[61] as usize, "host-ä".len());
        let (info, back) = decode_answer(&buf[..n]).unwrap();
        assert_eq!(back, ans);
        assert_eq!(back.host(), "host-ä");
        assert_eq!(info.kind, Kind::PingAnswer);
        assert_eq!(
            decode_probe(&buf[..n]).unwrap_err(),
            DecodeError::UnknownType
        );
        buf[61] = 65;
        assert_eq!(
            decode_answer(&buf[..n]).unwrap_err(),
            DecodeError::BadLength
        );
        buf[61] = 0;
        buf[60] = 200;
        assert_eq!(decode_answer(&buf[..n]).unwrap().1.role, Role::Unknown);

        let long = "h".repeat(70) + "é";
        let a = PingAnswer::new(&probe, Role::App, 1, &long);
        assert_eq!(a.host_len, 64);
        let a = PingAnswer::new(&probe, Role::App, 1, &("h".repeat(63) + "é"));
        assert_eq!(a.host(), "h".repeat(63), "cut at a char boundary");
    }
}
