//! Adaptive batching without I/O: [`NativeBatcher`] decides when a datagram leaves
//! (idle → at once, busy → batched, never later than the linger time).

use std::fmt;

use super::{quick_valid, AuthKey, Encoder};
use crate::frame::CanFrame;

/// Adaptive batching without I/O: owns the datagram buffers and the [`Encoder`], and
/// decides when a datagram must leave. The caller sends what it returns.
///
/// Rules (times are the caller's `now_ns`, any monotonic clock):
/// 1. **Idle → at once.** A frame pushed when nothing is pending and the previous
///    datagram left at least `linger` ago (or never) leaves at once, alone.
/// 2. **Busy → batched.** Otherwise it joins the pending datagram (one is started if
///    needed). A frame that does not fit (full, other channel, timestamp out of the
///    base's reach) makes the pending datagram leave and starts the next one.
/// 3. **Linger bound.** A pending datagram leaves no later than `linger` after its first
///    frame was pushed: `push` and `poll` return it once `now_ns` reaches
///    [`NativeBatcher::deadline`]. Callers wake up by that deadline.
///
/// Each call returns at most one datagram, borrowed until the next call; sequence numbers
/// are consecutive from 0.
pub struct NativeBatcher {
    enc: Encoder,
    bufs: [Box<[u8]>; 2],
    /// Index of the buffer holding the pending datagram.
    cur: usize,
    pending: bool,
    pending_since: u64,
    last_sent: Option<u64>,
    linger_ns: u64,
    seq: u64,
    sent: u64,
    pad_full: bool,
}

impl NativeBatcher {
    /// A batcher for `sender_id` writing datagrams of at most `max_datagram` bytes
    /// (clamped as in [`Encoder::new`]) and holding frames at most `linger_ns`.
    pub fn new(sender_id: u32, max_datagram: usize, linger_ns: u64) -> Self {
        NativeBatcher::with_key(sender_id, max_datagram, linger_ns, None)
    }

    /// Like [`NativeBatcher::new`]; with a key every datagram carries a tag (see
    /// [`Encoder::with_key`]; `max_datagram` includes the tag).
    pub fn with_key(
        sender_id: u32,
        max_datagram: usize,
        linger_ns: u64,
        key: Option<AuthKey>,
    ) -> Self {
        let enc = Encoder::with_key(sender_id, max_datagram, key);
        let max = enc.max_datagram();
        NativeBatcher {
            enc,
            bufs: [vec![0u8; max].into(), vec![0u8; max].into()],
            cur: 0,
            pending: false,
            pending_since: 0,
            last_sent: None,
            linger_ns,
            seq: 0,
            sent: 0,
            pad_full: false,
        }
    }

    /// Pads datagrams that leave because they are full to exactly `max_datagram` bytes
    /// (see [`Encoder::finish_padded`]), so that under load every datagram has the same
    /// size and a sender can pass many in one UDP GSO call. Off by default.
    pub fn set_pad_full(&mut self, on: bool) {
        self.pad_full = on;
    }

    /// The sender id written into every datagram.
    pub fn sender_id(&self) -> u32 {
        self.enc.sender_id()
    }

    /// The longest a frame waits in a pending datagram.
    pub fn linger_ns(&self) -> u64 {
        self.linger_ns
    }

    /// Whether datagrams are authenticated.
    pub fn is_keyed(&self) -> bool {
        self.enc.is_keyed()
    }

    /// The largest datagram this batcher hands out (tag included).
    pub fn max_datagram(&self) -> usize {
        self.enc.max_datagram()
    }

    /// The sequence number the next datagram will carry.
    pub fn next_seq(&self) -> u64 {
        self.seq
    }

    /// Datagrams handed out so far.
    pub fn datagrams(&self) -> u64 {
        self.sent
    }

    /// Invalid frames refused (never sent).
    pub fn rejected(&self) -> u64 {
        self.enc.rejected()
    }

    /// Frames waiting in the pending datagram.
    pub fn pending_frames(&self) -> u16 {
        if self.pending {
            self.enc.count()
        } else {
            0
        }
    }

    /// When the pending datagram must leave, if there is one.
    pub fn deadline(&self) -> Option<u64> {
        self.pending
            .then(|| self.pending_since.saturating_add(self.linger_ns))
    }

    /// Adds `frame` (its timestamp and channel go on the wire); returns a datagram that
    /// must leave now, if any.
    pub fn push(&mut self, frame: &CanFrame, now_ns: u64) -> Option<&[u8]> {
        if !quick_valid(frame) && frame.validate().is_err() {
            // Never sent, never starts a datagram.
            self.enc.rejected += 1;
            return self.poll(now_ns);
        }
        let mut out = None;
        if self.pending && now_ns >= self.pending_since.saturating_add(self.linger_ns) {
            out = Some(self.seal(now_ns, false));
        }
        if self.pending {
            if self.enc.push(&mut self.bufs[self.cur], frame) {
                return None;
            }
            let pad = self.pad_full && self.enc.is_full_for(frame);
            out = Some(self.seal(now_ns, pad));
        }
        let idle = out.is_none()
            && self
                .last_sent
                .is_none_or(|t| now_ns.saturating_sub(t) >= self.linger_ns);
        self.start(frame, now_ns);
        if idle {
            out = Some(self.seal(now_ns, false));
        }
        out.map(|len| &self.bufs[1 - self.cur][..len])
    }

    /// Returns the pending datagram if its linger time is up at `now_ns`.
    pub fn poll(&mut self, now_ns: u64) -> Option<&[u8]> {
        if self.pending && now_ns >= self.pending_since.saturating_add(self.linger_ns) {
            let len = self.seal(now_ns, false);
            return Some(&self.bufs[1 - self.cur][..len]);
        }
        None
    }

    /// Returns the pending datagram now, whatever its age (at shutdown, or when the
    /// caller knows no more frames are coming soon).
    pub fn flush(&mut self, now_ns: u64) -> Option<&[u8]> {
        if self.pending {
            let len = self.seal(now_ns, false);
            return Some(&self.bufs[1 - self.cur][..len]);
        }
        None
    }

    fn start(&mut self, frame: &CanFrame, now_ns: u64) {
        let buf = &mut self.bufs[self.cur];
        self.enc
            .begin(buf, self.seq, frame.channel, frame.timestamp_ns);
        // A valid frame always fits an empty datagram (max ≥ MIN_MAX_DATAGRAM).
        let pushed = self.enc.push(buf, frame);
        debug_assert!(pushed);
        self.pending = true;
        self.pending_since = now_ns;
    }

    /// Finishes the pending datagram and swaps buffers; the sealed datagram is then in
    /// `bufs[1 - cur]`. Returns its length.
    fn seal(&mut self, now_ns: u64, pad: bool) -> usize {
        let buf = &mut self.bufs[self.cur];
        let len = if pad {
            self.enc.finish_padded(buf, usize::MAX)
        } else {
            self.enc.finish(buf)
        };
        self.cur = 1 - self.cur;
        self.pending = false;
        self.last_sent = Some(now_ns);
        self.seq += 1;
        self.sent += 1;
        len
    }
}

impl fmt::Debug for NativeBatcher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("NativeBatcher")
            .field("sender_id", &self.enc.sender_id())
            .field("max_datagram", &self.enc.max_datagram())
            .field("linger_ns", &self.linger_ns)
            .field("next_seq", &self.seq)
            .field("pending_frames", &self.pending_frames())
            .finish()
    }
}

#[cfg(test)]
mod tests {
    use super::super::test_util::*;
    use super::super::*;
    use crate::frame::{flags, Channel};

    const KEY: AuthKey = AuthKey::from_bytes([7u8; KEY_LEN]);

    #[test]
    fn batcher_idle_frame_leaves_at_once() {
        let mut b = NativeBatcher::new(5, DEFAULT_MAX_DATAGRAM, 1_000_000);
        let f = frame("123#01", 10, Channel::NONE);
        let d = b.push(&f, 0).expect("idle: sent at once").to_vec();
        let (info, out) = decode_all(&d);
        assert_eq!((info.unwrap().seq, out), (0, vec![f]));
        assert_eq!(b.deadline(), None);
        // 1 ms later the sender is idle again.
        assert!(b.push(&f, 1_000_000).is_some());
        assert_eq!(b.next_seq(), 2);
    }

    #[test]
    fn batcher_batches_under_load_and_honours_linger() {
        let linger = 1_000_000;
        let mut b = NativeBatcher::new(5, DEFAULT_MAX_DATAGRAM, linger);
        let f = frame("123#0011223344556677", 10, Channel::NONE);
        assert!(b.push(&f, 0).is_some());
        // Busy: the next frames wait.
        for i in 1..=10u64 {
            assert!(b.push(&f, i * 1000).is_none());
        }
        assert_eq!(b.pending_frames(), 10);
        assert_eq!(b.deadline(), Some(1000 + linger));
        assert!(b.poll(linger).is_none());
        let d = b.poll(1000 + linger).expect("linger reached").to_vec();
        let (info, out) = decode_all(&d);
        assert_eq!((info.unwrap().seq, out.len()), (1, 10));
        assert_eq!(b.deadline(), None);

        // A steady stream fills datagrams completely.
        let mut sizes = Vec::new();
        let mut now = 2000 + linger;
        for _ in 0..1000 {
            now += 10;
            if let Some(d) = b.push(&f, now) {
                sizes.push(decode(d, &mut |_| {}).unwrap().frames);
            }
        }
        assert!(sizes.len() >= 14, "{sizes:?}");
        assert!(sizes[1..].iter().all(|&n| n == 69), "{sizes:?}");
        let rest = b.flush(now).map(|d| decode(d, &mut |_| {}).unwrap().frames);
        let total: u32 = sizes.iter().map(|&n| n as u32).sum::<u32>() + rest.unwrap_or(0) as u32;
        assert_eq!(total, 1000);
        assert!(b.flush(now).is_none());
    }

    #[test]
    fn batcher_linger_expired_on_push_and_channel_change() {
        let mut b = NativeBatcher::new(5, DEFAULT_MAX_DATAGRAM, 100);
        let f = frame("1#", 0, Channel::NONE);
        b.push(&f, 0).unwrap();
        assert!(b.push(&f, 10).is_none());
        // Past the deadline: the pending datagram leaves, the new frame waits.
        let d = b.push(&f, 500).unwrap();
        assert_eq!(decode(d, &mut |_| {}).unwrap().frames, 1);
        assert_eq!(b.pending_frames(), 1);
        let mut g = f;
        g.channel = Channel::int(3);
        let d = b.push(&g, 501).unwrap();
        assert_eq!(decode(d, &mut |_| {}).unwrap().frames, 1);
        let d = b.flush(502).unwrap().to_vec();
        let (_, out) = decode_all(&d);
        assert_eq!(out, vec![g]);
        let mut bad = f;
        bad.flags = 0x80;
        assert!(b.push(&bad, 100_000).is_none());
        assert_eq!(b.rejected(), 1);
        assert_eq!(b.datagrams(), 4);
    }

    #[test]
    fn padded_datagrams_decode_the_same() {
        let mut b = NativeBatcher::new(5, 1000, 1_000_000);
        b.set_pad_full(true);
        let f = frame("123#0011223344556677", 10, Channel::NONE);
        assert_eq!(
            b.push(&f, 0).unwrap().len(),
            FRAMES_HEADER_LEN + 20,
            "lone: not padded"
        );
        let mut full = Vec::new();
        for i in 0..200 {
            if let Some(d) = b.push(&f, 1 + i) {
                full.push(d.to_vec());
            }
        }
        assert!(full.len() >= 3);
        for d in &full {
            assert_eq!(d.len(), 1000);
            let (r, out) = decode_all(d);
            let info = r.unwrap();
            assert_eq!((info.frames, info.error), (47, None));
            assert!(out.iter().all(|g| *g == f));
        }
        let tail = b.flush(300).unwrap();
        assert!(tail.len() < 1000, "flushed: not padded");

        let mut buf = [0xEEu8; 300];
        let mut enc = Encoder::new(1, 300);
        enc.begin(&mut buf, 0, Channel::NONE, 10);
        assert!(enc.push(&mut buf, &f));
        assert_eq!(enc.finish_padded(&mut buf, 200), 200);
        assert!(buf[FRAMES_HEADER_LEN + 20..200].iter().all(|&b| b == 0));
        assert_eq!(decode_all(&buf[..200]).1, vec![f]);
    }

    #[test]
    fn keyed_encoder_leaves_room_for_the_tag() {
        let enc = Encoder::with_key(1, 10, Some(KEY));
        assert_eq!(enc.max_datagram(), MIN_MAX_DATAGRAM + TAG_LEN);
        // A full keyed datagram is at most max_datagram, tag included.
        let mut b = NativeBatcher::with_key(5, 1000, 1_000_000, Some(KEY));
        b.set_pad_full(true);
        let f = frame("123#0011223344556677", 10, Channel::NONE);
        b.push(&f, 0).unwrap();
        let mut full = Vec::new();
        for i in 0..200 {
            if let Some(d) = b.push(&f, 1 + i) {
                full.push(d.to_vec());
            }
        }
        for d in &full {
            assert_eq!(d.len(), 1000);
            assert_eq!(verify(d, &KEY), Ok(()));
            let (r, out) = decode_all(d);
            assert_eq!((r.unwrap().frames, out.len()), (46, 46));
        }
        // One FD frame of 64 bytes still fits the smallest keyed datagram.
        let mut b = NativeBatcher::with_key(5, 0, 1_000_000, Some(KEY));
        let g = CanFrame::new(0x123, flags::FD, &[0xAB; 64]).unwrap();
        let d = b.push(&g, 0).unwrap();
        assert_eq!(d.len(), MIN_MAX_DATAGRAM + TAG_LEN);
        assert_eq!(verify(d, &KEY), Ok(()));
    }
}
