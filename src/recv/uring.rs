//! The io_uring receive loop: one multishot `recvmsg` fed from a provided-buffer ring,
//! a batch of completions per wake-up, buffers handed back to the kernel in bulk.
//!
//! Memory layout. Two anonymous mappings are made once, in [`UringSource::new`]:
//!
//! * the buffer ring: `buf_count` `io_uring_buf` entries the kernel reads buffer
//!   addresses from; the ring tail shares its 16 bits with the `resv` field of entry 0;
//! * the buffers: `buf_count` slots. The kernel fills each with an
//!   `io_uring_recvmsg_out` header, the source address (room for a `sockaddr_in6`), the
//!   control messages ([`cmsg::CONTROL_LEN`]) and then up to `buf_size` payload bytes.
//!
//! With UDP GRO on the socket one receive can be a 64 KiB super-datagram, so the buffers
//! are then [`GRO_BUF_SIZE`] bytes each and fewer ([`GRO_BUF_COUNT`]): 256 × 64.2 KiB =
//! 16.05 MiB, against 4096 × 2.2 KiB = 8.75 MiB without GRO (docs/perf.md).
//!
//! Ownership of a buffer alternates: it belongs to the kernel from the moment the ring
//! tail is published past its entry until a completion names its buffer id, and to us
//! from then until the next publish. The kernel never writes a buffer we own, so the
//! payload slice handed to the callback is stable.

use std::io;
use std::mem::size_of;
use std::os::fd::AsRawFd;
use std::ptr::{self, NonNull};
use std::sync::atomic::{AtomicU16, Ordering};
use std::time::{Duration, Instant};

use io_uring::{cqueue, opcode, types, IoUring};
use socket2::{Domain, Protocol, Socket, Type};

use super::{cmsg, gro_enabled, split_segments, DatagramSource, IoMode, RecvMeta, GRO_BUF_SIZE};

/// Default payload capacity of one buffer; larger datagrams are cut and flagged.
pub const DEFAULT_BUF_SIZE: usize = 2048;
/// Default number of provided buffers (a power of two, at most 32768).
pub const DEFAULT_BUF_COUNT: u16 = 4096;
/// Most provided buffers on a socket with UDP GRO on, where each holds a 64 KiB receive:
/// 256 of them hold more datagrams of a GSO sender than 4096 small buffers do (up to 44
/// MTU-sized datagrams per receive), in 16 MiB; senders without GSO get 256 datagrams.
pub const GRO_BUF_COUNT: u16 = 256;

const RECV_UD: u64 = 1;
const CANCEL_UD: u64 = 2;
/// Each source has its own ring, so one buffer group id is enough.
const BGID: u16 = 0;
/// `struct io_uring_recvmsg_out`: four `u32`s (namelen, controllen, payloadlen, flags).
const RECVMSG_OUT_LEN: usize = 16;
const NAME_LEN: usize = size_of::<libc::sockaddr_in6>();
/// Bytes the kernel writes in front of the payload in every buffer.
const HEADER_LEN: usize = RECVMSG_OUT_LEN + NAME_LEN + cmsg::CONTROL_LEN;
/// Buffers start on cache-line boundaries so neighbours never share a line.
const SLOT_ALIGN: usize = 64;
/// The kernel accepts at most 2^15 entries in a buffer ring.
const MAX_BUF_COUNT: u16 = 1 << 15;
/// CQ sizes above this are rejected by the kernel (`IORING_MAX_CQ_ENTRIES`).
const MAX_CQ_ENTRIES: u32 = 1 << 16;
/// Longest single wait; keeps the timespec in range for any `Duration`.
const MAX_WAIT: Duration = Duration::from_secs(1 << 31);
/// How long `Drop` waits for the kernel to confirm the multishot is cancelled.
const CANCEL_GRACE: Duration = Duration::from_secs(2);

/// `struct io_uring_buf`, the kernel ABI of one buffer-ring entry.
#[repr(C)]
struct BufEntry {
    addr: u64,
    len: u32,
    bid: u16,
    /// In entry 0 this is the ring tail; never written through an entry.
    resv: u16,
}

const _: () = assert!(size_of::<BufEntry>() == 16);
const TAIL_OFFSET: usize = 14;

/// Counters of events the receive loop absorbed without failing.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct UringStats {
    /// Times the multishot recvmsg was submitted again after the kernel ended it.
    pub rearms: u64,
    /// Completions with `ENOBUFS`: every buffer was in use, the kernel paused receiving
    /// (datagrams wait in the socket buffer until the re-arm).
    pub out_of_buffers: u64,
    /// Other non-fatal completion errors (`EINTR`, `ENOMEM`, `ECANCELED`, ...).
    pub transient_errors: u64,
    /// Datagrams whose control messages did not fit (timestamp or drop count may be 0).
    pub control_truncated: u64,
    /// Completions the kernel should never produce (no buffer, unknown buffer id,
    /// header shorter than the template). Counted, never trusted.
    pub malformed: u64,
    /// Times the ring was rebuilt because another thread started polling (a ring set
    /// up for one submitting thread cannot be driven from a second).
    pub rebuilds: u64,
}

/// An anonymous private mapping: page aligned, zero filled, unmapped on drop.
struct Region {
    ptr: NonNull<u8>,
    len: usize,
}

impl Region {
    fn new(len: usize) -> io::Result<Region> {
        // SAFETY: a fresh anonymous mapping aliases nothing; the arguments are valid
        // for mmap and the result is checked before use.
        let p = unsafe {
            libc::mmap(
                ptr::null_mut(),
                len,
                libc::PROT_READ | libc::PROT_WRITE,
                libc::MAP_PRIVATE | libc::MAP_ANONYMOUS | libc::MAP_POPULATE,
                -1,
                0,
            )
        };
        if p == libc::MAP_FAILED {
            return Err(io::Error::last_os_error());
        }
        let ptr = NonNull::new(p.cast::<u8>()).ok_or(io::ErrorKind::OutOfMemory)?;
        Ok(Region { ptr, len })
    }

    /// Gives up the mapping without unmapping it.
    fn leak(&mut self) {
        self.len = 0;
    }
}

impl Drop for Region {
    fn drop(&mut self) {
        if self.len == 0 {
            return;
        }
        // SAFETY: `ptr`/`len` are exactly what mmap returned; `UringSource` drops its
        // regions only after the kernel stopped using them (see `UringSource::drop`),
        // and no reference into them outlives `self`.
        unsafe { libc::munmap(self.ptr.as_ptr().cast(), self.len) };
    }
}

/// The provided-buffer ring and its buffers, with our side of the producer protocol.
struct BufRing {
    /// `count` `BufEntry`s shared with the kernel.
    entries: Region,
    /// `count` slots of `stride` bytes.
    buffers: Region,
    count: u16,
    stride: usize,
    /// Length announced to the kernel per buffer: header + payload capacity.
    entry_len: u32,
    /// Last tail published to the kernel.
    tail: u16,
    /// Buffers staged behind `tail`, not yet visible to the kernel.
    staged: u16,
}

impl BufRing {
    fn new(count: u16, buf_size: usize) -> io::Result<BufRing> {
        let entry_len = HEADER_LEN
            .checked_add(buf_size)
            .filter(|&n| n <= u32::MAX as usize)
            .ok_or(io::ErrorKind::InvalidInput)?;
        let stride = entry_len.next_multiple_of(SLOT_ALIGN);
        let total = stride
            .checked_mul(count as usize)
            .ok_or(io::ErrorKind::InvalidInput)?;
        Ok(BufRing {
            entries: Region::new(count as usize * size_of::<BufEntry>())?,
            buffers: Region::new(total)?,
            count,
            stride,
            entry_len: entry_len as u32,
            tail: 0,
            staged: 0,
        })
    }

    fn tail_atomic(&self) -> &AtomicU16 {
        // SAFETY: entry 0's `resv` lies inside the mapping, is 2-aligned (the mapping is
        // page aligned, offset 14), lives as long as `self`, and is only ever accessed
        // atomically: by us here, and by the kernel with smp_load_acquire. Entry writes in
        // `stage` touch only addr/len/bid, never these bytes.
        unsafe { AtomicU16::from_ptr(self.entries.ptr.as_ptr().add(TAIL_OFFSET).cast()) }
    }

    /// Queues buffer `bid` for the kernel; it becomes usable at the next `publish`.
    fn stage(&mut self, bid: u16) {
        let mask = self.count - 1;
        let slot = (self.tail.wrapping_add(self.staged) & mask) as usize;
        let addr = self.buffers.ptr.as_ptr() as u64 + bid as u64 * self.stride as u64;
        // SAFETY: `slot < count`, so the entry is inside the mapping. The kernel reads
        // only entries between its head and the published tail; every buffer id is in
        // the ring at most once and there are `count` of them, so the `staged` entries
        // past the tail are ones the kernel already consumed and no longer reads.
        unsafe {
            let e = self.entries.ptr.as_ptr().cast::<BufEntry>().add(slot);
            ptr::addr_of_mut!((*e).addr).write(addr);
            ptr::addr_of_mut!((*e).len).write(self.entry_len);
            ptr::addr_of_mut!((*e).bid).write(bid);
        }
        self.staged += 1;
    }

    /// Makes all staged buffers visible to the kernel with one tail store.
    fn publish(&mut self) {
        if self.staged == 0 {
            return;
        }
        self.tail = self.tail.wrapping_add(self.staged);
        self.staged = 0;
        // Release: the entry writes in `stage` (and, for recycled buffers, our reads of
        // their contents) happen before the kernel can see the new tail and reuse them.
        self.tail_atomic().store(self.tail, Ordering::Release);
    }

    /// The first `len` bytes (capped at the buffer size) of buffer `bid`, which the
    /// caller must own (named by a completion, not yet re-staged).
    fn filled(&self, bid: u16, len: usize) -> &[u8] {
        debug_assert!(bid < self.count);
        let len = len.min(self.entry_len as usize);
        // SAFETY: `bid < count` (checked by the caller), so the range is inside the
        // buffers mapping. The kernel wrote this buffer before posting the completion
        // (made visible by the acquire load of the CQ tail) and will not write it again
        // until we re-stage and publish it, which needs `&mut self`, so the slice cannot
        // outlive our ownership.
        unsafe {
            std::slice::from_raw_parts(
                self.buffers.ptr.as_ptr().add(bid as usize * self.stride),
                len,
            )
        }
    }
}

/// Receives datagrams with io_uring: a multishot `recvmsg` that picks its buffers from a
/// kernel-shared buffer ring, woken once per batch of completions.
///
/// Construct with [`UringSource::new`], then call [`DatagramSource::poll`] in a loop.
/// Nothing is allocated after construction.
pub struct UringSource {
    // Field order is drop order: the ring (and with it every kernel reference to the
    // buffers and the socket) goes first, then the memory, then the socket.
    ring: IoUring,
    bufs: BufRing,
    /// Template the kernel reads `msg_namelen`/`msg_controllen` from; boxed so its
    /// address is stable for as long as a multishot may refer to it.
    msghdr: Box<libc::msghdr>,
    sock: socket2::Socket,
    /// A multishot recvmsg is submitted or queued in the SQ.
    armed: bool,
    /// The ring was created disabled (to be owned by the thread that first polls) and
    /// has not been enabled yet.
    disabled: bool,
    /// With a single-issuer ring: the thread that enabled it, the only one the kernel
    /// lets drive it.
    owner: Option<std::thread::ThreadId>,
    /// How many datagrams `poll` gathers before it returns while they keep coming.
    batch: usize,
    /// Geometry, for rebuilding on another thread.
    cq_entries: u32,
    buf_size: usize,
    /// The socket has UDP GRO on: receives may hold several datagrams.
    gro: bool,
    stats: UringStats,
}

impl std::fmt::Debug for UringSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UringSource")
            .field("sock", &self.sock)
            .field("armed", &self.armed)
            .field("disabled", &self.disabled)
            .field("batch", &self.batch)
            .field("cq_entries", &self.cq_entries)
            .field("buf_size", &self.buf_size)
            .field("gro", &self.gro)
            .finish_non_exhaustive()
    }
}

// SAFETY: the raw pointers inside (`msghdr` fields, the mappings) point only to memory
// this value owns exclusively. A single-issuer ring is driven only by the thread that
// enabled it: `poll` on any other thread rebuilds the ring first (and the kernel refuses
// a foreign submitter with EEXIST rather than misbehaving). Moving the whole source to
// another thread is therefore sound.
unsafe impl Send for UringSource {}

impl UringSource {
    /// Sets up a ring, registers a provided-buffer ring of `buf_count` buffers of
    /// `buf_size` payload bytes each and prepares the multishot recvmsg on `sock`.
    ///
    /// The ring is set up `SINGLE_ISSUER | DEFER_TASKRUN` (Linux 6.1+; older kernels get
    /// cooperative task running): completions are only processed when the receiving
    /// thread asks for them, so a datagram arriving while it sleeps costs no wake-up.
    /// Such a ring belongs to one thread, so it is created disabled and enabled, and the
    /// multishot submitted, by the first [`poll`](DatagramSource::poll): sources are
    /// often built on one thread and run on another. Datagrams arriving before that
    /// wait in the socket buffer. Polling later from yet another thread works too, at
    /// the cost of a new ring ([`UringStats::rebuilds`]); the old ring's buffers are
    /// leaked, so keep a source on one thread.
    ///
    /// `batch_hint` is the largest batch the caller expects per wake-up; it only sizes
    /// the completion queue. `buf_count` must be a power of two, at most 32768.
    /// `sock` should have `SO_TIMESTAMPNS` and `SO_RXQ_OVFL` enabled for
    /// [`RecvMeta::timestamp_ns`] and [`RecvMeta::kernel_drops`] to be filled. If it has
    /// UDP GRO on ([`enable_gro`](super::enable_gro)), buffers hold at least
    /// [`GRO_BUF_SIZE`] bytes and there are at most [`GRO_BUF_COUNT`] of them.
    pub fn new(
        sock: socket2::Socket,
        batch_hint: usize,
        buf_size: usize,
        buf_count: u16,
    ) -> io::Result<UringSource> {
        if !buf_count.is_power_of_two() || buf_count > MAX_BUF_COUNT || buf_size == 0 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                "buf_count must be a power of two <= 32768 and buf_size > 0",
            ));
        }
        let gro = gro_enabled(&sock);
        let (buf_size, buf_count) = if gro {
            (buf_size.max(GRO_BUF_SIZE), buf_count.min(GRO_BUF_COUNT))
        } else {
            (buf_size, buf_count)
        };
        // Every buffer in use is one pending CQE; twice that leaves room for error and
        // cancel completions so the CQ does not overflow in a full burst.
        let cq = (buf_count as u32 * 2)
            .max(batch_hint.min(MAX_CQ_ENTRIES as usize) as u32)
            .next_power_of_two()
            .min(MAX_CQ_ENTRIES);
        let (ring, bufs, disabled) = setup(cq, buf_count, buf_size)?;

        // SAFETY: msghdr is plain old data; all-zero (null pointers, zero lengths) is a
        // valid value.
        let mut msghdr: Box<libc::msghdr> = Box::new(unsafe { std::mem::zeroed() });
        msghdr.msg_namelen = NAME_LEN as libc::socklen_t;
        msghdr.msg_controllen = cmsg::CONTROL_LEN as _;

        let mut src = UringSource {
            ring,
            bufs,
            msghdr,
            sock,
            armed: false,
            disabled,
            owner: None,
            batch: batch_hint.max(1),
            cq_entries: cq,
            buf_size,
            gro,
            stats: UringStats::default(),
        };
        src.arm()?;
        Ok(src)
    }

    /// Counters of events absorbed so far.
    pub fn stats(&self) -> UringStats {
        self.stats
    }

    /// The socket being read (for socket options or drop counters).
    pub fn socket(&self) -> &socket2::Socket {
        &self.sock
    }

    /// Queues a multishot recvmsg; it reaches the kernel at the next submit.
    fn arm(&mut self) -> io::Result<()> {
        let sqe = opcode::RecvMsgMulti::new(
            types::Fd(self.sock.as_raw_fd()),
            &*self.msghdr as *const libc::msghdr,
            BGID,
        )
        .build()
        .user_data(RECV_UD);
        // SAFETY: the request refers to the socket, the msghdr template and buffer
        // group BGID; all three are owned by `self` and outlive the request, which
        // `Drop` cancels (and waits for) before anything is freed.
        if unsafe { self.ring.submission().push(&sqe) }.is_err() {
            submit_now(&self.ring)?;
            // SAFETY: as above.
            unsafe { self.ring.submission().push(&sqe) }
                .map_err(|_| io::Error::from(io::ErrorKind::WouldBlock))?;
        }
        self.armed = true;
        Ok(())
    }

    /// Hands available completions to `on_datagram` until `limit` datagrams are reached
    /// (the rest wait in the CQ for the next call), returns the buffers in one publish and
    /// re-arms the multishot if the kernel ended it.
    fn drain(
        &mut self,
        on_datagram: &mut dyn FnMut(&[u8], &RecvMeta),
        limit: usize,
    ) -> io::Result<usize> {
        let mut n = 0;
        let mut ended = false;
        let mut fatal = None;
        let UringSource {
            ring,
            bufs,
            msghdr,
            stats,
            ..
        } = self;
        for cqe in ring.completion() {
            if cqe.user_data() != RECV_UD {
                continue;
            }
            // Breaking after a completion leaves the rest in the CQ, unconsumed.
            let flags = cqe.flags();
            let res = cqe.result();
            if !cqueue::more(flags) {
                ended = true;
            }
            let bid = cqueue::buffer_select(flags);
            if res < 0 {
                match -res {
                    libc::ENOBUFS => stats.out_of_buffers += 1,
                    e if is_transient(e) => stats.transient_errors += 1,
                    e => fatal = Some(e),
                }
            } else if let Some(bid) = bid.filter(|&b| b < bufs.count) {
                let buf = bufs.filled(bid, res as usize);
                match types::RecvMsgOut::parse(buf, msghdr) {
                    Ok(out) => {
                        let mut meta = RecvMeta {
                            sender: cmsg::parse_sockaddr(out.name_data()),
                            truncated: out.is_payload_truncated(),
                            ..RecvMeta::default()
                        };
                        cmsg::parse_control(out.control_data(), &mut meta);
                        if out.is_control_data_truncated() {
                            stats.control_truncated += 1;
                        }
                        n += split_segments(out.payload_data(), &mut meta, on_datagram);
                    }
                    Err(()) => stats.malformed += 1,
                }
            } else {
                stats.malformed += 1;
            }
            // Whatever happened, a buffer named by a completion is ours: give it back.
            if let Some(bid) = bid.filter(|&b| b < bufs.count) {
                bufs.stage(bid);
            }
            if n >= limit {
                break;
            }
        }
        // Buffers go back before any re-arm, or a re-armed recv after ENOBUFS would find
        // the ring still empty.
        bufs.publish();
        if ended {
            self.armed = false;
        }
        if let Some(errno) = fatal {
            return Err(io::Error::from_raw_os_error(errno));
        }
        if ended {
            self.arm()?;
            self.stats.rearms += 1;
            submit_now(&self.ring)?;
        }
        Ok(n)
    }

    /// Replaces the ring and its buffers with new ones for the calling thread. The old
    /// ring belongs to another thread, so its multishot cannot be cancelled from here:
    /// its buffers are leaked (the kernel might still write into them), the ring is
    /// closed, and datagrams not yet received wait in the socket for the new ring.
    fn rebuild(&mut self) -> io::Result<()> {
        let (ring, bufs, disabled) = setup(self.cq_entries, self.bufs.count, self.buf_size)?;
        let mut old_ring = std::mem::replace(&mut self.ring, ring);
        let mut old_bufs = std::mem::replace(&mut self.bufs, bufs);
        // Completions already posted are lost with the old ring; count what they were.
        self.stats.transient_errors += old_ring.completion().len() as u64;
        old_bufs.buffers.leak();
        old_bufs.entries.leak();
        drop(old_ring);
        self.disabled = disabled;
        self.owner = None;
        self.armed = false;
        self.stats.rebuilds += 1;
        Ok(())
    }

    /// Cancels the multishot and waits for its last completion. Returns whether the
    /// kernel confirmed that it no longer refers to our memory.
    fn cancel(&mut self) -> bool {
        if !self.armed {
            return true;
        }
        if !self.ring.submission().is_empty() {
            // Queued but never submitted: the kernel has not seen it.
            return true;
        }
        let sqe = opcode::AsyncCancel::new(RECV_UD)
            .build()
            .user_data(CANCEL_UD);
        // SAFETY: a cancel request refers to no memory of ours.
        if unsafe { self.ring.submission().push(&sqe) }.is_err() {
            return false;
        }
        let deadline = Instant::now() + CANCEL_GRACE;
        loop {
            let ts = types::Timespec::from(Duration::from_millis(100));
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if is_wait_interrupted(&e) => {}
                Err(_) => return false,
            }
            for cqe in self.ring.completion() {
                if cqe.user_data() == RECV_UD && !cqueue::more(cqe.flags()) {
                    self.armed = false;
                }
            }
            if !self.armed {
                return true;
            }
            if Instant::now() >= deadline {
                return false;
            }
        }
    }
}

impl DatagramSource for UringSource {
    /// Waits up to `timeout` for at least one completion, then handles every completion
    /// available. Datagrams handed over before a fatal completion error are still
    /// counted by the callback; the error is returned and the next call re-arms.
    fn poll(
        &mut self,
        timeout: Duration,
        on_datagram: &mut dyn FnMut(&[u8], &RecvMeta),
    ) -> io::Result<usize> {
        let me = std::thread::current().id();
        if self.owner.is_some_and(|owner| owner != me) {
            self.rebuild()?;
        }
        if self.disabled {
            self.ring.submitter().register_enable_rings()?;
            self.disabled = false;
            self.owner = Some(me);
        }
        if !self.armed {
            self.arm()?;
        }
        if self.ring.completion().is_empty() {
            let ts = types::Timespec::from(timeout.min(MAX_WAIT));
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if is_wait_interrupted(&e) => {}
                Err(e) => return Err(e),
            }
        } else if !self.ring.submission().is_empty() {
            submit_now(&self.ring)?;
        }
        // With GRO one completion can be ~44 datagrams: a poll that took every completion
        // could hand over more frames than a consumer's ring holds before the caller
        // wakes it, so it stops at `batch * GRO_POLL_BATCHES` datagrams.
        let limit = if self.gro {
            self.batch.saturating_mul(GRO_POLL_BATCHES)
        } else {
            usize::MAX
        };
        let mut total = self.drain(on_datagram, limit)?;
        let mut last = total;
        // Under load the kernel receives a few dozen datagrams per run of the multishot;
        // while runs come back full, collect more without waiting, so that the caller's
        // per-batch work (publishing counters, waking consumers) is paid once per
        // `batch` datagrams, as with recvmmsg, rather than once per run.
        while last >= BUSY_RUN && total < self.batch && total < limit {
            let ts = types::Timespec::new();
            let args = types::SubmitArgs::new().timespec(&ts);
            match self.ring.submitter().submit_with_args(1, &args) {
                Ok(_) => {}
                Err(e) if is_wait_interrupted(&e) => {}
                Err(e) => return Err(e),
            }
            last = self.drain(on_datagram, limit - total)?;
            total += last;
        }
        Ok(total)
    }

    fn mode(&self) -> IoMode {
        IoMode::Uring
    }

    fn gro(&self) -> bool {
        self.gro
    }

    fn socket_drops(&self) -> Option<u32> {
        super::socket_drops(self.socket()).ok()
    }
}

impl Drop for UringSource {
    fn drop(&mut self) {
        if self.cancel() {
            // Nothing in flight refers to the buffers any more; unregistering is the
            // orderly goodbye, closing the ring would free the group as well.
            let _ = self.ring.submitter().unregister_buf_ring(BGID);
        } else {
            // The kernel did not confirm the cancel, so it might still write into the
            // buffers. Leaking the mappings is the only way to make sure such a write
            // never lands in memory reused for something else.
            self.bufs.buffers.leak();
            self.bufs.entries.leak();
        }
    }
}

/// A run of at least this many datagrams means more are probably waiting.
const BUSY_RUN: usize = 16;
/// With GRO, a poll hands over at most this many times `batch` datagrams (as recvmmsg's
/// `MAX_BATCHES`).
const GRO_POLL_BATCHES: usize = 8;

/// A ring with a registered provided-buffer ring of `count` buffers, all published.
/// The bool: the ring was created disabled, to be enabled by the thread that drives it.
fn setup(cq: u32, count: u16, buf_size: usize) -> io::Result<(IoUring, BufRing, bool)> {
    let (ring, disabled) = build_ring(cq)?;
    let mut bufs = BufRing::new(count, buf_size)?;
    // SAFETY: the entries mapping holds `count` entries, is page aligned and stays
    // mapped until after the ring is closed (field drop order), the group is
    // unregistered in `Drop`, or it is leaked.
    unsafe {
        ring.submitter().register_buf_ring_with_flags(
            bufs.entries.ptr.as_ptr() as u64,
            count,
            BGID,
            0,
        )?;
    }
    for bid in 0..count {
        bufs.stage(bid);
    }
    bufs.publish();
    Ok((ring, bufs, disabled))
}

/// Builds the ring: single issuer with deferred task running (6.1+; the bool says the
/// ring is disabled until its thread enables it), else cooperative task running (no
/// IPI per completion, 5.19+), else plain.
fn build_ring(cq_entries: u32) -> io::Result<(IoUring, bool)> {
    const SQ_ENTRIES: u32 = 8;
    if let Ok(ring) = IoUring::builder()
        .setup_cqsize(cq_entries)
        .setup_clamp()
        .setup_single_issuer()
        .setup_defer_taskrun()
        .setup_r_disabled()
        .build(SQ_ENTRIES)
    {
        return Ok((ring, true));
    }
    match IoUring::builder()
        .setup_cqsize(cq_entries)
        .setup_clamp()
        .setup_coop_taskrun()
        .setup_taskrun_flag()
        .build(SQ_ENTRIES)
    {
        Err(e) if e.raw_os_error() == Some(libc::EINVAL) => IoUring::builder()
            .setup_cqsize(cq_entries)
            .setup_clamp()
            .build(SQ_ENTRIES),
        r => r,
    }
    .map(|r| (r, false))
}

/// Submits queued SQEs without waiting; an interrupted submit leaves them queued for
/// the next call, so it is not an error.
fn submit_now(ring: &IoUring) -> io::Result<()> {
    match ring.submit() {
        Ok(_) => Ok(()),
        Err(e) if is_wait_interrupted(&e) => Ok(()),
        Err(e) => Err(e),
    }
}

/// `io_uring_enter` results that mean "nothing (more) to report now": the timeout
/// expired, a signal arrived, or the CQ is momentarily full of overflowed entries.
fn is_wait_interrupted(e: &io::Error) -> bool {
    matches!(
        e.raw_os_error(),
        Some(libc::ETIME | libc::EINTR | libc::EAGAIN | libc::EBUSY)
    )
}

/// Completion errors after which receiving can simply go on.
fn is_transient(errno: i32) -> bool {
    matches!(
        errno,
        libc::EINTR
            | libc::EAGAIN
            | libc::ENOMEM
            | libc::ECANCELED
            | libc::ECONNREFUSED
            | libc::ECONNRESET
            | libc::EHOSTUNREACH
            | libc::ENETUNREACH
            | libc::ENETDOWN
            | libc::EHOSTDOWN
            | libc::ETIMEDOUT
    )
}

/// Checks that io_uring with multishot recvmsg and a provided-buffer ring works here,
/// by receiving one datagram sent to ourselves on 127.0.0.1 (unicast, never leaves the
/// host).
///
/// Fails when io_uring is disabled (`kernel.io_uring_disabled`, seccomp: `EPERM`), absent
/// (`ENOSYS`), or too old for buffer rings (5.19) or multishot recvmsg (6.0, `EINVAL`).
/// [`IoMode::Auto`] uses this to choose between io_uring and recvmmsg.
pub fn probe() -> io::Result<()> {
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if disabled == 2 {
        return Err(io::Error::new(
            io::ErrorKind::PermissionDenied,
            "io_uring is disabled (kernel.io_uring_disabled = 2)",
        ));
    }
    let context = |what: &str, e: io::Error| {
        let hint = if disabled == 1 && e.raw_os_error() == Some(libc::EPERM) {
            " (kernel.io_uring_disabled = 1 restricts it to io_uring_group)"
        } else {
            ""
        };
        io::Error::new(e.kind(), format!("io_uring {what}: {e}{hint}"))
    };
    let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP))
        .map_err(|e| context("probe socket", e))?;
    let here: std::net::SocketAddr = (std::net::Ipv4Addr::LOCALHOST, 0).into();
    sock.bind(&here.into())
        .map_err(|e| context("probe socket", e))?;
    let addr = sock.local_addr().map_err(|e| context("probe socket", e))?;
    let tx = sock.try_clone().map_err(|e| context("probe socket", e))?;
    let mut src = UringSource::new(sock, 1, 64, 4).map_err(|e| context("setup", e))?;
    // Arm first, so the datagram is received by the multishot and not just queued.
    src.poll(Duration::ZERO, &mut |_, _| {})
        .map_err(|e| context("multishot recvmsg", e))?;
    const MSG: &[u8] = b"canmc io_uring probe";
    tx.send_to(MSG, &addr)
        .map_err(|e| context("probe send", e))?;
    let mut got = false;
    let deadline = Instant::now() + Duration::from_secs(2);
    while !got && Instant::now() < deadline {
        src.poll(Duration::from_millis(200), &mut |p, _| got |= p == MSG)
            .map_err(|e| context("multishot recvmsg", e))?;
    }
    if got {
        Ok(())
    } else {
        Err(io::Error::new(
            io::ErrorKind::TimedOut,
            "io_uring multishot recvmsg delivered nothing within 2 s",
        ))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rejects_bad_geometry() {
        let sock =
            || socket2::Socket::new(socket2::Domain::IPV4, socket2::Type::DGRAM, None).unwrap();
        for (size, count) in [(2048, 3), (2048, 0), (0, 16), (2048, 65535)] {
            let err = UringSource::new(sock(), 1, size, count).err();
            assert_eq!(
                err.map(|e| e.kind()),
                Some(io::ErrorKind::InvalidInput),
                "{size} x {count}"
            );
        }
    }

    #[test]
    fn probe_succeeds_on_this_kernel() {
        // Where io_uring should exist (6.0+, not disabled by sysctl) the probe must work,
        // and a failure says why (seccomp, a broken kernel); elsewhere it is not expected.
        let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
        let major: u32 = release
            .split('.')
            .next()
            .and_then(|s| s.parse().ok())
            .unwrap_or(0);
        let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
            .map(|s| s.trim() != "0")
            .unwrap_or(false);
        if major < 6 || disabled {
            eprintln!("io_uring not expected here (kernel {release}, disabled: {disabled})");
            return;
        }
        probe().unwrap();
    }

    #[test]
    fn drop_path_confirms_the_cancel() {
        let sock = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
        let here: std::net::SocketAddr = (std::net::Ipv4Addr::LOCALHOST, 0).into();
        sock.bind(&here.into()).unwrap();
        let mut src = UringSource::new(sock, 1, 64, 4).unwrap();
        // Queued only: nothing for the kernel to cancel.
        assert!(src.armed && src.cancel());
        src.poll(Duration::ZERO, &mut |_, _| {}).unwrap();
        assert!(src.armed && src.ring.submission().is_empty());
        // In flight: the kernel must confirm, or Drop would leak the buffers.
        assert!(src.cancel());
        assert!(!src.armed);
    }

    #[test]
    fn stage_and_publish_wrap_the_tail() {
        let mut r = BufRing::new(4, 32).unwrap();
        for round in 0..5u16 {
            for bid in 0..4 {
                r.stage(bid);
            }
            r.publish();
            assert_eq!(r.tail_atomic().load(Ordering::Acquire), (round + 1) * 4);
        }
        // The tail lives in entry 0's resv; staging never clobbers it.
        assert_eq!(r.tail, 20);
        r.stage(2);
        assert_eq!(r.tail_atomic().load(Ordering::Acquire), 20);
    }
}
