//! The receive stage between a socket and the engine: datagrams of either wire format →
//! frames. Detects the format, checks authentication, tracks every native sender's
//! sequence numbers (duplicates are not delivered twice) and stamps frames with what the
//! kernel said ([`RecvMeta`]). The codecs it calls are in [`crate::wire`].

use crate::frame::CanFrame;
use crate::recv::RecvMeta;
use crate::seq::{SeqEvent, SeqTracker};
use crate::wire::native::FrameBatch;
use crate::wire::{detect, native, pycan, DecodeError, WireFormat};

/// What [`Demux::decode_batches`] hands its callback: a frame, or a whole native
/// datagram whose every record is a valid frame.
#[derive(Debug)]
pub enum Decoded<'a, 'b> {
    /// One frame (python-can datagrams, and native ones taken frame by frame).
    Frame(CanFrame),
    /// A native frames datagram, checked whole (its frames carry no sender: the
    /// datagram's is the caller's [`RecvMeta::sender`]).
    Batch(&'b FrameBatch<'a>),
}

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
#[derive(Debug)]
pub struct Demux {
    seq: SeqTracker,
    key: Option<native::AuthKey>,
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
        self.decode_batches(datagram, meta, false, |d| {
            if let Decoded::Frame(f) = d {
                on_frame(f);
            }
        })
    }

    /// [`Demux::decode`], and with `batches` a native frames datagram whose every record
    /// is a valid frame comes whole, as one [`Decoded::Batch`] (after authentication and
    /// sequence accounting, exactly as its frames would have): what a recorder that
    /// stores datagrams as they arrived takes. Datagrams with a record `decode` skips
    /// still come frame by frame, so both ways deliver the same frames.
    #[inline]
    pub fn decode_batches<F: FnMut(Decoded<'_, '_>)>(
        &mut self,
        datagram: &[u8],
        meta: &RecvMeta,
        batches: bool,
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
                        on_frame(Decoded::Frame(frame));
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
                    if batches {
                        match FrameBatch::check(datagram) {
                            Ok(Some(batch)) => {
                                out.frames = batch.len() as u32;
                                on_frame(Decoded::Batch(&batch));
                                return out;
                            }
                            // A record to skip: frame by frame below, which counts it.
                            Ok(None) => {}
                            Err(e) => {
                                out.error = Some(e);
                                return out;
                            }
                        }
                    }
                    let sender = meta.sender;
                    let mut frames = 0u32;
                    let result = native::decode_with(datagram, |f| {
                        let mut f = *f;
                        f.sender = sender;
                        on_frame(Decoded::Frame(f));
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
