//! Wire formats: python-can's msgpack datagrams ([`pycan`]) and canmc's native batched
//! datagrams ([`native`]). One socket carries both; [`detect`] tells them apart by the
//! first byte. Codecs only: turning a socket's datagrams into frames, with sequence
//! tracking, is the receive side's [`crate::recv::Demux`].

pub mod native;
pub mod pycan;

use std::fmt;

/// Which format a datagram is in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum WireFormat {
    /// python-can `udp_multicast`: one msgpack map per datagram.
    #[default]
    Pycan,
    /// canmc native: many fixed-layout frame records per datagram.
    Native,
}

/// First byte of every native datagram. 0xC1 is the one byte msgpack never uses, so a
/// native datagram can never be mistaken for a python-can one.
pub const NATIVE_MAGIC0: u8 = 0xC1;

/// The format a datagram claims to be in, from its first byte.
pub fn detect(datagram: &[u8]) -> WireFormat {
    match datagram.first() {
        Some(&NATIVE_MAGIC0) => WireFormat::Native,
        _ => WireFormat::Pycan,
    }
}

/// Why a datagram (or one record in it) was not decoded. Every kind has a counter.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum DecodeError {
    /// Empty datagram, or it ends inside a value.
    Truncated = 0,
    /// Bytes that are not msgpack (reserved byte, bad structure).
    NotMsgpack = 1,
    /// Valid msgpack whose top level is not a map.
    NotAMap = 2,
    /// A known key whose value has the wrong type (e.g. `dlc` as a string).
    BadFieldType = 3,
    /// Decoded fields that do not make a valid frame (§1 rules).
    InvalidFrame = 4,
    /// Channel string longer than a frame can carry, or not UTF-8.
    BadChannel = 5,
    /// Bytes left over after the map.
    TrailingBytes = 6,
    /// Native datagram with a version this build does not know.
    UnknownVersion = 7,
    /// Native datagram or record of a type this build does not know.
    UnknownType = 8,
    /// Native header or record inconsistent with the datagram's length.
    BadLength = 9,
    /// Native datagram that failed authentication.
    BadAuth = 10,
}

impl DecodeError {
    /// Number of kinds; counters are arrays of this size.
    pub const COUNT: usize = 11;
    /// Every kind, in counter order.
    pub const ALL: [DecodeError; DecodeError::COUNT] = [
        DecodeError::Truncated,
        DecodeError::NotMsgpack,
        DecodeError::NotAMap,
        DecodeError::BadFieldType,
        DecodeError::InvalidFrame,
        DecodeError::BadChannel,
        DecodeError::TrailingBytes,
        DecodeError::UnknownVersion,
        DecodeError::UnknownType,
        DecodeError::BadLength,
        DecodeError::BadAuth,
    ];

    /// Stable snake_case name, used in summaries and JSON.
    pub fn name(self) -> &'static str {
        match self {
            DecodeError::Truncated => "truncated",
            DecodeError::NotMsgpack => "not_msgpack",
            DecodeError::NotAMap => "not_a_map",
            DecodeError::BadFieldType => "bad_field_type",
            DecodeError::InvalidFrame => "invalid_frame",
            DecodeError::BadChannel => "bad_channel",
            DecodeError::TrailingBytes => "trailing_bytes",
            DecodeError::UnknownVersion => "unknown_version",
            DecodeError::UnknownType => "unknown_type",
            DecodeError::BadLength => "bad_length",
            DecodeError::BadAuth => "bad_auth",
        }
    }
}

impl fmt::Display for DecodeError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

impl std::error::Error for DecodeError {}
