//! Batching sender: queues datagrams in preallocated slots and sends them with one
//! `sendmmsg` per batch, runs of equal-sized datagrams packed into UDP GSO
//! super-datagrams the kernel splits again. This is what lets replay go past the
//! ~350 000 datagrams/s one `send` per datagram reaches.
//!
//! The kernel splits a GSO message into segments of `UDP_SEGMENT` bytes, the last one
//! possibly shorter; receivers see ordinary datagrams, in order.

use std::io;
use std::mem;
use std::net::SocketAddr;
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicI32, AtomicU64, Ordering};
use std::sync::Arc;
use std::time::{Duration, Instant};

use crate::frame::CanFrame;
use crate::socket::SendSocket;
use crate::wire::native::{self, NativeBatcher};
use crate::wire::{pycan, WireFormat};

/// Bytes of datagrams queued before a flush: the slot count is this over the largest
/// datagram, within [`MIN_BATCH`]..=[`MAX_BATCH`].
const BATCH_BYTES: usize = 1 << 20;
/// Fewest datagram slots, whatever their size.
const MIN_BATCH: usize = 16;
/// Most datagram slots (and so messages per `sendmmsg`; the kernel takes at most
/// `UIO_MAXIOV` = 1024 messages per call).
const MAX_BATCH: usize = 1024;
/// Segments per GSO message on kernels before 6.9 (`UDP_MAX_SEGMENTS`).
const OLD_MAX_SEGMENTS: usize = 64;
/// Segments per GSO message on newer kernels, which raised `UDP_MAX_SEGMENTS`; probed.
const NEW_MAX_SEGMENTS: usize = 128;
/// The largest UDP payload over IPv4, also the most one GSO message carries (the whole
/// super-datagram must fit one IP packet before segmentation).
const MAX_UDP_PAYLOAD: usize = 65_507;
/// Payload bytes per GSO message.
const MAX_GSO_BYTES: usize = MAX_UDP_PAYLOAD;
/// Consecutive ENOBUFS / EAGAIN answers before `flush` gives up and reports the error
/// (the datagrams stay queued). About a second with the back-off below.
const MAX_BUSY_RETRIES: u32 = 20_000;

/// While the network is unreachable (with [`BatchSender::keep_going`]), how long
/// datagrams are discarded before the next attempt to send.
const OUTAGE_RETRY: Duration = Duration::from_millis(10);

/// Errors that mean "no way to the group right now" (link down, route or address gone,
/// a firewall rejecting): they pass when the network comes back.
fn is_outage(errno: i32) -> bool {
    matches!(
        errno,
        libc::ENETUNREACH
            | libc::ENETDOWN
            | libc::EHOSTUNREACH
            | libc::EADDRNOTAVAIL
            | libc::ENODEV
            | libc::ENXIO
            | libc::EPERM
            | libc::ECONNREFUSED
    )
}

/// A sender's failed sends, readable from any thread while it runs (see
/// [`BatchSender::keep_going`]).
#[derive(Debug, Default)]
pub struct SendHealth {
    unsent: AtomicU64,
    outages: AtomicU64,
    failing: AtomicI32,
    /// `unsent` when the latest outage began.
    unsent_before_outage: AtomicU64,
}

impl SendHealth {
    /// Datagrams discarded because the network was unreachable.
    pub fn unsent(&self) -> u64 {
        self.unsent.load(Ordering::Relaxed)
    }

    /// Datagrams discarded since the latest outage began.
    pub fn unsent_in_outage(&self) -> u64 {
        self.unsent()
            .saturating_sub(self.unsent_before_outage.load(Ordering::Relaxed))
    }

    /// Outages so far: runs of failed sends ended by a successful one (or still on).
    pub fn outages(&self) -> u64 {
        self.outages.load(Ordering::Relaxed)
    }

    /// The error of the outage going on now, `None` while sends succeed.
    pub fn failing(&self) -> Option<io::Error> {
        match self.failing.load(Ordering::Relaxed) {
            0 => None,
            errno => Some(io::Error::from_raw_os_error(errno)),
        }
    }
}

/// One `UDP_SEGMENT` control message: header plus a u16, padded to `CMSG_SPACE(2)`.
#[repr(C)]
#[derive(Clone, Copy)]
struct GsoCmsg {
    hdr: libc::cmsghdr,
    segment: u16,
    _pad: [u8; 6],
}

#[derive(Clone, Copy, Default)]
struct Slot {
    off: usize,
    len: usize,
}

/// Sends many datagrams per system call over a [`SendSocket`]. Allocates only in
/// [`BatchSender::new`].
///
/// Datagrams go out in the order they were pushed. On an error, those not yet sent stay
/// queued and the next [`flush`](BatchSender::flush) retries them; none is sent twice.
/// Dropping the sender flushes what is queued, ignoring errors.
pub struct BatchSender {
    sock: SendSocket,
    max_datagram: usize,
    /// Datagrams packed back to back, so a run of them is one contiguous GSO payload.
    buf: Box<[u8]>,
    used: usize,
    slots: Box<[Slot]>,
    queued: usize,
    /// Slots before this one were sent by a flush that then failed.
    first_unsent: usize,
    msgs: Box<[libc::mmsghdr]>,
    iovs: Box<[libc::iovec]>,
    ctls: Box<[GsoCmsg]>,
    /// Per message: its first slot and how many slots it carries.
    msg_slots: Box<[(usize, usize)]>,
    gso: bool,
    /// Segments the kernel takes in one GSO message (64, or 128 on newer kernels).
    max_segments: usize,
    sent: u64,
    messages: u64,
    syscalls: u64,
    keep_going: bool,
    health: Arc<SendHealth>,
    /// During an outage: when to try the network again.
    retry_at: Option<Instant>,
}

// SAFETY: the raw pointers in `msgs` and `iovs` point only into buffers this struct owns
// and are rewritten before every send, so moving it to another thread moves sole
// ownership of everything they reach.
unsafe impl Send for BatchSender {}

impl BatchSender {
    /// Queues datagrams of at most `max_datagram` bytes each (clamped to 1..=65 507):
    /// about 1 MiB of them, between 16 and 1024, per `sendmmsg`. GSO is used when the
    /// kernel has it (Linux 4.18+), with as many segments per message as it takes.
    pub fn new(sock: SendSocket, max_datagram: usize) -> Self {
        let max_datagram = max_datagram.clamp(1, MAX_UDP_PAYLOAD);
        let batch = (BATCH_BYTES / max_datagram).clamp(MIN_BATCH, MAX_BATCH);
        let gso = probe_gso(&sock);
        let max_segments = if gso { probe_max_segments() } else { 1 };
        // SAFETY: cmsghdr, mmsghdr and iovec are plain old data; all zeroes is valid.
        let (hdr, msg, iov) = unsafe {
            (
                mem::zeroed::<libc::cmsghdr>(),
                mem::zeroed::<libc::mmsghdr>(),
                mem::zeroed::<libc::iovec>(),
            )
        };
        let ctl = GsoCmsg {
            hdr,
            segment: 0,
            _pad: [0; 6],
        };
        BatchSender {
            sock,
            max_datagram,
            buf: vec![0u8; batch * max_datagram].into_boxed_slice(),
            used: 0,
            slots: vec![Slot::default(); batch].into_boxed_slice(),
            queued: 0,
            first_unsent: 0,
            msgs: vec![msg; batch].into_boxed_slice(),
            iovs: vec![iov; batch].into_boxed_slice(),
            ctls: vec![ctl; batch].into_boxed_slice(),
            msg_slots: vec![(0, 0); batch].into_boxed_slice(),
            gso,
            max_segments,
            sent: 0,
            messages: 0,
            syscalls: 0,
            keep_going: false,
            health: Arc::default(),
            retry_at: None,
        }
    }

    /// Rides out a network outage instead of failing: when a send fails because the
    /// group is unreachable (link down, route or address gone, a firewall rejecting),
    /// the queued datagrams are discarded and counted in [`SendHealth::unsent`], and
    /// `flush` succeeds. Until a send succeeds again, datagrams are discarded unsent
    /// for 10 ms between attempts. Receivers of the native format count the
    /// discarded datagrams as a sequence gap. Off by default: the error is returned.
    pub fn keep_going(&mut self, on: bool) {
        self.keep_going = on;
    }

    /// The outage counters, shareable with a thread that reports them.
    pub fn health(&self) -> Arc<SendHealth> {
        Arc::clone(&self.health)
    }

    /// Counts everything queued as unsent and empties the queue.
    fn discard_unsent(&mut self) {
        let n = self.discard() as u64;
        self.health.unsent.fetch_add(n, Ordering::Relaxed);
    }

    /// Queues one datagram: `write` fills the slot it is given (`max_datagram` bytes)
    /// and returns the datagram's length. A full queue is sent first.
    ///
    /// `Ok` means the datagram is queued, an error that it is not: a length above
    /// `max_datagram` (`InvalidInput`), or a full queue that could not be sent (then
    /// `write` is not called).
    pub fn push_with(&mut self, write: impl FnOnce(&mut [u8]) -> usize) -> io::Result<()> {
        if self.queued == self.slots.len() {
            self.flush()?;
        }
        // `used <= queued * max_datagram`, so a free slot always has room.
        let len = write(&mut self.buf[self.used..self.used + self.max_datagram]);
        if len > self.max_datagram {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "datagram of {len} bytes exceeds the sender's maximum of {}",
                    self.max_datagram
                ),
            ));
        }
        self.slots[self.queued] = Slot {
            off: self.used,
            len,
        };
        self.used += len;
        self.queued += 1;
        Ok(())
    }

    /// Queues a copy of `datagram`.
    pub fn push(&mut self, datagram: &[u8]) -> io::Result<()> {
        self.push_with(|slot| {
            let n = datagram.len().min(slot.len());
            slot[..n].copy_from_slice(&datagram[..n]);
            datagram.len()
        })
    }

    /// Sends everything queued. Retries partial sends and a full socket or device queue
    /// (ENOBUFS / EAGAIN) after a brief pause.
    pub fn flush(&mut self) -> io::Result<()> {
        if let Some(at) = self.retry_at {
            if self.first_unsent < self.queued && Instant::now() < at {
                self.discard_unsent();
                return Ok(());
            }
        }
        let mut busy = 0u32;
        while self.first_unsent < self.queued {
            let n_msgs = self.build_messages();
            self.syscalls += 1;
            // SAFETY: `build_messages` just pointed the first `n_msgs` headers at iovecs
            // into `self.buf` and control messages in `self.ctls`, all owned by `self`
            // and alive for the call; the kernel only reads them (and writes msg_len).
            let rc = unsafe {
                libc::sendmmsg(
                    self.sock.socket().as_raw_fd(),
                    self.msgs.as_mut_ptr(),
                    n_msgs as libc::c_uint,
                    0,
                )
            };
            if rc > 0 {
                // The first `rc` messages went out whole; resume after them.
                let (first, count) = self.msg_slots[rc as usize - 1];
                let done = first + count;
                self.sent += (done - self.first_unsent) as u64;
                self.messages += rc as u64;
                self.first_unsent = done;
                busy = 0;
                if self.retry_at.take().is_some() {
                    self.health.failing.store(0, Ordering::Relaxed);
                }
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error().unwrap_or(0) {
                libc::EINTR => {}
                errno if self.keep_going && is_outage(errno) => {
                    if self.health.failing.load(Ordering::Relaxed) == 0 {
                        let h = &self.health;
                        h.unsent_before_outage
                            .store(h.unsent.load(Ordering::Relaxed), Ordering::Relaxed);
                        h.outages.fetch_add(1, Ordering::Relaxed);
                    }
                    self.health.failing.store(errno, Ordering::Relaxed);
                    self.retry_at = Some(Instant::now() + OUTAGE_RETRY);
                    self.discard_unsent();
                    return Ok(());
                }
                libc::ENOBUFS | libc::EAGAIN if busy < MAX_BUSY_RETRIES => {
                    busy += 1;
                    if busy < 16 {
                        std::thread::yield_now();
                    } else {
                        std::thread::sleep(Duration::from_micros(50));
                    }
                }
                // The first message was refused: if it was a GSO one, the kernel or
                // the route cannot segment. Retry with the older segment limit if it
                // had more segments than that, else send plainly from now on.
                libc::EINVAL | libc::EIO | libc::ENOPROTOOPT | libc::EOPNOTSUPP
                    if self.gso && self.msg_slots[0].1 > 1 =>
                {
                    if self.msg_slots[0].1 > OLD_MAX_SEGMENTS {
                        self.max_segments = OLD_MAX_SEGMENTS;
                    } else {
                        self.gso = false;
                    }
                }
                _ => return Err(e),
            }
        }
        self.queued = 0;
        self.used = 0;
        self.first_unsent = 0;
        Ok(())
    }

    /// Groups the unsent slots into messages and points the headers at them; returns
    /// how many messages there are.
    fn build_messages(&mut self) -> usize {
        let mut m = 0;
        let mut i = self.first_unsent;
        while i < self.queued {
            let seg = self.slots[i].len;
            let mut j = i + 1;
            let mut bytes = seg;
            if self.gso && seg > 0 {
                while j < self.queued
                    && j - i < self.max_segments
                    && self.slots[j].len == seg
                    && bytes + seg <= MAX_GSO_BYTES
                {
                    bytes += seg;
                    j += 1;
                }
                // GSO lets the last segment be shorter: take one odd tail along.
                if j < self.queued
                    && j - i < self.max_segments
                    && (1..seg).contains(&self.slots[j].len)
                    && bytes + self.slots[j].len <= MAX_GSO_BYTES
                {
                    bytes += self.slots[j].len;
                    j += 1;
                }
            }
            self.iovs[m] = libc::iovec {
                iov_base: self.buf[self.slots[i].off..].as_mut_ptr().cast(),
                iov_len: bytes,
            };
            let hdr = &mut self.msgs[m].msg_hdr;
            hdr.msg_name = std::ptr::null_mut();
            hdr.msg_namelen = 0;
            hdr.msg_iov = &mut self.iovs[m];
            hdr.msg_iovlen = 1;
            hdr.msg_flags = 0;
            if j - i > 1 {
                let ctl = &mut self.ctls[m];
                // SAFETY: CMSG_LEN is pure arithmetic on the length.
                ctl.hdr.cmsg_len = unsafe { libc::CMSG_LEN(mem::size_of::<u16>() as u32) } as _;
                ctl.hdr.cmsg_level = libc::SOL_UDP;
                ctl.hdr.cmsg_type = libc::UDP_SEGMENT;
                ctl.segment = seg as u16;
                hdr.msg_control = (ctl as *mut GsoCmsg).cast();
                hdr.msg_controllen = mem::size_of::<GsoCmsg>() as _;
            } else {
                hdr.msg_control = std::ptr::null_mut();
                hdr.msg_controllen = 0;
            }
            self.msg_slots[m] = (i, j - i);
            m += 1;
            i = j;
        }
        m
    }

    /// Datagrams the kernel accepted so far.
    pub fn datagrams_sent(&self) -> u64 {
        self.sent
    }

    /// Messages the kernel accepted so far: a GSO message carrying many datagrams
    /// counts once. `datagrams_sent / messages_sent` is the GSO packing factor.
    pub fn messages_sent(&self) -> u64 {
        self.messages
    }

    /// `sendmmsg` calls made so far, failed ones included.
    pub fn syscalls(&self) -> u64 {
        self.syscalls
    }

    /// Whether equal-sized datagrams are still packed into GSO messages (false when the
    /// kernel lacks UDP GSO or refused it).
    pub fn gso_enabled(&self) -> bool {
        self.gso
    }

    /// The most datagrams one GSO message carries: 128 where the kernel takes that many
    /// (Linux 6.9+), else 64; 1 without GSO. Bytes are capped too, at 65 507 a message.
    pub fn max_segments(&self) -> usize {
        if self.gso {
            self.max_segments
        } else {
            1
        }
    }

    /// Datagrams queued before a full queue is sent: 1 MiB over the largest datagram,
    /// between 16 and 1024.
    pub fn batch_len(&self) -> usize {
        self.slots.len()
    }

    /// Throws away every queued datagram (after an error the caller will not retry);
    /// returns how many.
    pub fn discard(&mut self) -> usize {
        let n = self.pending();
        self.queued = 0;
        self.used = 0;
        self.first_unsent = 0;
        n
    }

    /// Datagrams queued and not yet sent.
    pub fn pending(&self) -> usize {
        self.queued - self.first_unsent
    }

    /// The largest datagram a slot holds.
    pub fn max_datagram(&self) -> usize {
        self.max_datagram
    }

    /// The source address receivers see.
    pub fn local_addr(&self) -> SocketAddr {
        self.sock.local_addr()
    }

    /// The underlying socket.
    pub fn socket(&self) -> &SendSocket {
        &self.sock
    }
}

impl Drop for BatchSender {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}

impl std::fmt::Debug for BatchSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("BatchSender")
            .field("local_addr", &self.sock.local_addr())
            .field("max_datagram", &self.max_datagram)
            .field("pending", &self.pending())
            .field("gso", &self.gso)
            .field("sent", &self.sent)
            .field("messages", &self.messages)
            .field("syscalls", &self.syscalls)
            .finish()
    }
}

/// Kernels without UDP GSO (before 4.18) do not know the `UDP_SEGMENT` option at all.
fn probe_gso(sock: &SendSocket) -> bool {
    let mut val: libc::c_int = 0;
    let mut len = mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val` and `len` are live locals of the sizes passed.
    let rc = unsafe {
        libc::getsockopt(
            sock.socket().as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_SEGMENT,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0
}

/// How many segments this kernel takes in one GSO message: 128 since Linux 6.9 raised
/// `UDP_MAX_SEGMENTS`, 64 before (it answers EINVAL to more). Asked once per process
/// by sending 128 one-byte segments from a throwaway socket to another bound on
/// 127.0.0.1 (nothing leaves the host); any failure means 64.
fn probe_max_segments() -> usize {
    use std::sync::OnceLock;
    static SEGMENTS: OnceLock<usize> = OnceLock::new();
    *SEGMENTS.get_or_init(|| {
        if gso_accepts(NEW_MAX_SEGMENTS).unwrap_or(false) {
            NEW_MAX_SEGMENTS
        } else {
            OLD_MAX_SEGMENTS
        }
    })
}

/// Whether one GSO message of `segments` one-byte segments is accepted on loopback.
fn gso_accepts(segments: usize) -> io::Result<bool> {
    use std::net::UdpSocket;
    let rx = UdpSocket::bind("127.0.0.1:0")?;
    let tx = UdpSocket::bind("127.0.0.1:0")?;
    tx.connect(rx.local_addr()?)?;
    let payload = [0u8; NEW_MAX_SEGMENTS];
    let payload = &payload[..segments.min(NEW_MAX_SEGMENTS)];
    // SAFETY: cmsghdr is plain old data; all zeroes is valid.
    let hdr: libc::cmsghdr = unsafe { mem::zeroed() };
    let mut ctl = GsoCmsg {
        hdr,
        segment: 1,
        _pad: [0; 6],
    };
    // SAFETY: CMSG_LEN is pure arithmetic on the length.
    ctl.hdr.cmsg_len = unsafe { libc::CMSG_LEN(mem::size_of::<u16>() as u32) } as _;
    ctl.hdr.cmsg_level = libc::SOL_UDP;
    ctl.hdr.cmsg_type = libc::UDP_SEGMENT;
    let mut iov = libc::iovec {
        iov_base: payload.as_ptr() as *mut libc::c_void,
        iov_len: payload.len(),
    };
    // SAFETY: msghdr is plain old data; all zeroes is valid.
    let mut msg: libc::msghdr = unsafe { mem::zeroed() };
    msg.msg_iov = &mut iov;
    msg.msg_iovlen = 1;
    msg.msg_control = (&mut ctl as *mut GsoCmsg).cast();
    msg.msg_controllen = mem::size_of::<GsoCmsg>() as _;
    // SAFETY: `msg` points at `iov`, `payload` and `ctl`, all alive for the call; the
    // kernel only reads them.
    let rc = unsafe { libc::sendmsg(tx.as_raw_fd(), &msg, 0) };
    Ok(rc == payload.len() as isize)
}

/// Sends frames in either wire format over a [`BatchSender`].
///
/// python-can format: one datagram per frame, encoded straight into a batch slot.
/// Native format: frames share datagrams per [`NativeBatcher`]'s rules — a frame sent
/// while idle leaves at once, under load frames are batched, and none waits longer
/// than the linger time *provided the caller calls [`FrameSender::poll`] by
/// [`FrameSender::deadline`]* (the CLI's loops do). Nothing is sent until a batch is
/// full or [`FrameSender::flush`] is called; call it when a burst ends.
///
/// Frames are validated: an invalid one is counted in [`FrameSender::rejected`] and
/// never reaches the wire. Allocates only in `new`.
#[derive(Debug)]
pub struct FrameSender {
    tx: BatchSender,
    format: WireFormat,
    native: Option<NativeBatcher>,
    frames: u64,
    bytes: u64,
    rejected: u64,
}

impl FrameSender {
    /// A sender writing `format`; `max_datagram` and `linger_ns` apply to native
    /// datagrams (python-can datagrams are at most [`pycan::MAX_ENCODED`] bytes).
    pub fn new(sock: SendSocket, format: WireFormat, max_datagram: usize, linger_ns: u64) -> Self {
        let (tx, native) = match format {
            WireFormat::Pycan => (BatchSender::new(sock, pycan::MAX_ENCODED), None),
            WireFormat::Native => {
                let mut batcher =
                    NativeBatcher::new(native::random_sender_id(), max_datagram, linger_ns);
                // Equal-size full datagrams let the kernel take many per GSO call.
                batcher.set_pad_full(true);
                // Slots big enough for the largest datagram `with_key` may ask for.
                let slot = batcher
                    .max_datagram()
                    .max(native::MIN_MAX_DATAGRAM + native::TAG_LEN);
                (BatchSender::new(sock, slot), Some(batcher))
            }
        };
        FrameSender {
            tx,
            format,
            native,
            frames: 0,
            bytes: 0,
            rejected: 0,
        }
    }

    /// Authenticates every native datagram with `key` (a [`native::seal`]ed tag;
    /// `max_datagram` then includes the 16-byte tag). Call before sending anything.
    /// python-can datagrams cannot carry a tag: for that format this changes nothing,
    /// and receivers with a key refuse them.
    pub fn with_key(mut self, key: Option<native::AuthKey>) -> Self {
        if let Some(old) = &self.native {
            let mut batcher =
                NativeBatcher::with_key(old.sender_id(), old.max_datagram(), old.linger_ns(), key);
            batcher.set_pad_full(true);
            self.native = Some(batcher);
        }
        self
    }

    /// Rides out network outages instead of failing; see [`BatchSender::keep_going`].
    pub fn keep_going(mut self, on: bool) -> Self {
        self.tx.keep_going(on);
        self
    }

    /// The outage counters (datagrams discarded unsent, outages, the current error).
    pub fn health(&self) -> Arc<SendHealth> {
        self.tx.health()
    }

    /// Whether native datagrams are authenticated.
    pub fn is_keyed(&self) -> bool {
        self.native.as_ref().is_some_and(|b| b.is_keyed())
    }

    /// Queues one frame (its timestamp and channel go on the wire).
    #[inline]
    pub fn send(&mut self, frame: &CanFrame, now_ns: u64) -> io::Result<()> {
        if frame.validate().is_err() {
            self.rejected += 1;
            return Ok(());
        }
        match &mut self.native {
            None => {
                let mut written = 0;
                self.tx.push_with(|buf| {
                    let Some(slot) = buf.get_mut(..pycan::MAX_ENCODED) else {
                        return 0;
                    };
                    let Ok(slot) = <&mut [u8; pycan::MAX_ENCODED]>::try_from(slot) else {
                        return 0;
                    };
                    written = pycan::encode(frame, slot);
                    written
                })?;
                self.bytes += written as u64;
            }
            Some(batcher) => {
                if let Some(datagram) = batcher.push(frame, now_ns) {
                    self.bytes += datagram.len() as u64;
                    self.tx.push(datagram)?;
                }
            }
        }
        self.frames += 1;
        Ok(())
    }

    /// Queues the pending native datagram if its linger time is up.
    pub fn poll(&mut self, now_ns: u64) -> io::Result<()> {
        if let Some(batcher) = &mut self.native {
            if let Some(datagram) = batcher.poll(now_ns) {
                self.bytes += datagram.len() as u64;
                self.tx.push(datagram)?;
                self.tx.flush()?;
            }
        }
        Ok(())
    }

    /// When [`FrameSender::poll`] must be called next, if a native datagram is pending.
    pub fn deadline(&self) -> Option<u64> {
        self.native.as_ref().and_then(|b| b.deadline())
    }

    /// Sends the datagrams already sealed (a pending native datagram keeps waiting for
    /// more frames, up to its deadline).
    pub fn send_queued(&mut self) -> io::Result<()> {
        self.tx.flush()
    }

    /// Sends everything queued, including a pending native datagram.
    pub fn flush(&mut self, now_ns: u64) -> io::Result<()> {
        if let Some(batcher) = &mut self.native {
            if let Some(datagram) = batcher.flush(now_ns) {
                self.bytes += datagram.len() as u64;
                self.tx.push(datagram)?;
            }
        }
        self.tx.flush()
    }

    /// Frames accepted for sending.
    pub fn frames(&self) -> u64 {
        self.frames
    }

    /// Payload bytes of the datagrams built so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Datagrams handed to the kernel.
    pub fn datagrams_sent(&self) -> u64 {
        self.tx.datagrams_sent()
    }

    /// Invalid frames refused.
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// The format this sender writes.
    pub fn format(&self) -> WireFormat {
        self.format
    }

    /// The source address receivers see.
    pub fn local_addr(&self) -> SocketAddr {
        self.tx.local_addr()
    }

    /// Whether UDP GSO is in use.
    pub fn gso_enabled(&self) -> bool {
        self.tx.gso_enabled()
    }
}
