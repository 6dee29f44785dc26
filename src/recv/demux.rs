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
    /// A bridge announcement (of interest only to bridges on a named bus). Control
    /// datagrams have their own counter: the sequence tracker never sees them.
    pub announce: Option<native::Announcement>,
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
                Ok((native::Kind::BridgeAnnounce, _, _)) => {
                    match native::decode_announce(datagram) {
                        Ok((info, body)) => {
                            out.announce = Some(native::Announcement {
                                sender_id: info.sender_id,
                                seq: info.seq,
                                body,
                            })
                        }
                        Err(e) => out.error = Some(e),
                    }
                }
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::frame::Channel;
    use crate::seq::SeqEvent;
    use crate::wire::native::{AuthKey, Encoder, KEY_LEN};

    fn frames_datagram(buf: &mut [u8], seq: u64) -> usize {
        let mut enc = Encoder::new(77, 1400);
        enc.begin(buf, seq, Channel::NONE, 0);
        assert!(enc.push(buf, &"123#11".parse().unwrap()));
        enc.finish(buf)
    }

    fn announce_datagram(buf: &mut [u8], sender_id: u32, seq: u64) -> usize {
        let a = native::BridgeAnnounce {
            bus: native::BusName::new("x").unwrap(),
            start_ns: 5,
            period_ms: 100,
            priority: 0,
            state: native::AnnounceState::Active,
        };
        native::encode_announce(buf, sender_id, seq, &a)
    }

    /// Announcements between a sender's frames datagrams leave its sequence accounting
    /// alone (even one carrying the same sender id and a far-off counter) and are no
    /// decode error; a kind this build does not know is counted as `UnknownType` and
    /// skipped the same way.
    #[test]
    fn control_datagrams_do_not_disturb_sequence_accounting() {
        let mut d = Demux::new();
        let meta = RecvMeta::default();
        let mut buf = [0u8; 1500];
        let mut frames = 0;
        let n = frames_datagram(&mut buf, 0);
        assert_eq!(
            d.decode(&buf[..n], &meta, |_| frames += 1).seq,
            Some(SeqEvent::First)
        );
        let n = announce_datagram(&mut buf, 77, 5000);
        let o = d.decode(&buf[..n], &meta, |_| frames += 1);
        assert_eq!((o.error, o.seq, o.frames), (None, None, 0));
        let a = o.announce.unwrap();
        assert_eq!((a.sender_id, a.seq, a.body.bus.as_str()), (77, 5000, "x"));
        // A future kind (9): counted, skipped.
        buf[3] = 9;
        let o = d.decode(&buf[..n], &meta, |_| frames += 1);
        assert_eq!(
            (o.error, o.seq, o.announce),
            (Some(DecodeError::UnknownType), None, None)
        );
        let n = frames_datagram(&mut buf, 1);
        assert_eq!(
            d.decode(&buf[..n], &meta, |_| frames += 1).seq,
            Some(SeqEvent::InOrder)
        );
        assert_eq!(frames, 2);
        let t = d.seq().totals();
        assert_eq!((t.lost, t.duplicates, t.restarts), (0, 0, 0), "{t:?}");
    }

    /// With a key, an unsealed announcement is refused (a forged one cannot sway an
    /// election) and a sealed one is read.
    #[test]
    fn keyed_receivers_take_only_sealed_announcements() {
        let key = AuthKey::from_bytes([3u8; KEY_LEN]);
        let mut d = Demux::with_key(Some(key));
        let meta = RecvMeta::default();
        let mut buf = [0u8; 256];
        let n = announce_datagram(&mut buf, 1, 1);
        let o = d.decode(&buf[..n], &meta, |_| {});
        assert_eq!((o.error, o.announce), (Some(DecodeError::BadAuth), None));
        let n = native::seal(&mut buf, n, &key);
        let o = d.decode(&buf[..n], &meta, |_| {});
        assert_eq!(o.error, None);
        assert!(o.announce.is_some());
        // A reader without the key reads it too (the tag is not part of the body).
        let o = Demux::new().decode(&buf[..n], &meta, |_| {});
        assert_eq!(o.announce.unwrap().body.bus.as_str(), "x");
    }
}
