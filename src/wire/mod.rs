//! Wire formats: python-can's msgpack datagrams ([`pycan`]) and canmc's native batched
//! datagrams. One socket carries both; [`detect`] tells them apart by the first byte.

pub mod native;
pub mod pycan;

use std::fmt;

use crate::frame::CanFrame;
use crate::recv::RecvMeta;
use crate::seq::{SeqEvent, SeqTracker};

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

/// What [`Demux::decode`] made of one datagram.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Demuxed {
    /// Frames handed to the callback.
    pub frames: u32,
    /// The first problem, if any. For python-can datagrams and broken native headers
    /// nothing was delivered; for native records, see `bad_records`.
    pub error: Option<DecodeError>,
    /// Native records skipped or not reached (each counts as one `error`).
    pub bad_records: u16,
    /// What the datagram meant for its native sender's sequence.
    pub seq: Option<SeqEvent>,
    /// A `ping` probe to answer.
    pub probe: Option<native::PingProbe>,
    /// A `ping` answer (of interest only to a prober).
    pub answer: bool,
}

impl Demuxed {
    /// How many errors of kind `error` to count: one per skipped native record, one
    /// for a datagram whose decoding stopped (a bad length does not make the records a
    /// lying count announced into errors each), one for anything else.
    pub fn error_count(&self) -> u64 {
        match self.error {
            None => 0,
            Some(DecodeError::BadLength) => 1,
            Some(_) => u64::from(self.bad_records.max(1)),
        }
    }
}

/// Turns datagrams of either format into frames: detects the format, decodes in place,
/// tracks every native sender's sequence numbers (a datagram seen twice is reported and
/// its frames are not delivered again), and stamps frames with what the kernel said.
///
/// python-can frames get the kernel's receive time (their own timestamp field is the
/// sender's clock, which python-can's receiver also discards). Native frames keep the
/// per-frame time their sender stamped, which preserves the spacing of frames that
/// shared a datagram. Allocates nothing after [`Demux::new`].
///
/// With a key ([`Demux::with_key`]) only native datagrams authenticated with it are
/// decoded: one without the tag flag, with a wrong tag, or too short to hold one, and
/// every python-can datagram (which cannot carry a tag), is refused as
/// [`DecodeError::BadAuth`] before the sequence tracker sees it, so forgeries cannot
/// disturb loss and duplicate counting. Without a key, authenticated datagrams are
/// decoded too (their tag is not checked).
pub struct Demux {
    seq: SeqTracker,
    key: Option<native::AuthKey>,
}

impl fmt::Debug for Demux {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Demux")
            .field("seq", &self.seq)
            .field("authenticated", &self.key.is_some())
            .finish()
    }
}

impl Default for Demux {
    fn default() -> Self {
        Demux::new()
    }
}

impl Demux {
    /// A demultiplexer that accepts every datagram (no authentication).
    pub fn new() -> Demux {
        Demux::with_key(None)
    }

    /// A demultiplexer that, given a key, accepts only native datagrams authenticated
    /// with it (see the type's documentation).
    pub fn with_key(key: Option<native::AuthKey>) -> Demux {
        let mut seq = SeqTracker::new(crate::seq::DEFAULT_CAPACITY);
        // Authentic datagrams far behind their sender are replays, not a restart.
        seq.reject_stale(key.is_some());
        Demux { seq, key }
    }

    /// Whether datagrams must be authenticated.
    pub fn is_keyed(&self) -> bool {
        self.key.is_some()
    }

    /// Per-sender sequence totals so far.
    pub fn seq(&self) -> &SeqTracker {
        &self.seq
    }

    /// Decodes one datagram, calling `on_frame` for each valid frame.
    #[inline]
    pub fn decode<F: FnMut(CanFrame)>(
        &mut self,
        datagram: &[u8],
        meta: &RecvMeta,
        mut on_frame: F,
    ) -> Demuxed {
        let mut out = Demuxed::default();
        if meta.truncated {
            out.error = Some(DecodeError::Truncated);
            return out;
        }
        if let Some(key) = &self.key {
            // python-can datagrams fail here too: they cannot carry a tag.
            if let Err(e) = native::verify(datagram, key) {
                out.error = Some(e);
                return out;
            }
        }
        match detect(datagram) {
            WireFormat::Pycan => {
                let mut frame = CanFrame::EMPTY;
                match pycan::decode(datagram, &mut frame) {
                    Ok(()) => {
                        if meta.timestamp_ns != 0 {
                            frame.timestamp_ns = meta.timestamp_ns;
                        }
                        frame.sender = meta.sender;
                        on_frame(frame);
                        out.frames = 1;
                    }
                    Err(e) => out.error = Some(e),
                }
            }
            WireFormat::Native => match native::peek(datagram) {
                Err(e) => out.error = Some(e),
                Ok((native::Kind::PingProbe, _, _)) => match native::decode_probe(datagram) {
                    Ok((_, probe)) => out.probe = Some(probe),
                    Err(e) => out.error = Some(e),
                },
                Ok((native::Kind::PingAnswer, _, _)) => out.answer = true,
                Ok((native::Kind::Frames, sender_id, seq)) => {
                    let event = self.seq.observe(sender_id, seq);
                    out.seq = Some(event);
                    if event == SeqEvent::Duplicate {
                        return out;
                    }
                    let sender = meta.sender;
                    let mut frames = 0u32;
                    let result = native::decode_with(datagram, |f| {
                        let mut f = *f;
                        f.sender = sender;
                        on_frame(f);
                        frames += 1;
                    });
                    out.frames = frames;
                    match result {
                        Ok(info) => {
                            out.error = info.error;
                            out.bad_records = info.bad_records;
                        }
                        Err(e) => out.error = Some(e),
                    }
                }
            },
        }
        out
    }
}
