//! The recvmmsg receive path: `poll(2)` for readiness, then `recvmmsg` a batch at a time
//! into buffers allocated once. The fallback when io_uring is unavailable, and the
//! baseline it is measured against.

use std::io;
use std::mem;
use std::os::fd::AsRawFd;
use std::time::Duration;

use socket2::Socket;

use super::{cmsg, gro_enabled, split_segments, DatagramSource, IoMode, RecvMeta, GRO_BUF_SIZE};

/// Batch and buffer sizes of a receive loop.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecvConfig {
    /// Datagrams per `recvmmsg` call (or buffers per ring).
    pub batch: usize,
    /// Bytes per datagram buffer; longer datagrams are cut and flagged `truncated`.
    /// Raised to [`GRO_BUF_SIZE`] when the socket has UDP GRO on.
    pub buf_size: usize,
    /// Turn UDP GRO on in [`open_source`](super::open_source) (on by default; where the
    /// kernel refuses, receiving goes on without it).
    pub gro: bool,
}

impl Default for RecvConfig {
    fn default() -> Self {
        RecvConfig {
            batch: 64,
            buf_size: 2048,
            gro: true,
        }
    }
}

/// Batches per `poll` call before handing control back, so one busy socket cannot keep
/// the caller from its timeout forever. `poll` hands over at most this many times
/// [`RecvConfig::batch`] datagrams (one more call's worth at most).
const MAX_BATCHES: usize = 8;

/// Receives per `recvmmsg` with UDP GRO on. One GRO receive can hold ~44 datagrams (~3 500
/// native frames), so a full batch of 64 would hand a caller ~220 000 frames before it
/// could wake a consumer, more than a ring holds; 16 keep a call near the datagrams of
/// 8 × 64 plain receives. The buffers: 16 × 64 KiB = 1 MiB.
pub const GRO_BATCH: usize = 16;

/// Control buffer of one message, aligned for `cmsghdr`.
type Control = [u64; cmsg::CONTROL_LEN.div_ceil(8)];

/// A [`DatagramSource`] over `recvmmsg`.
pub struct MmsgSource {
    sock: Socket,
    /// Receives per `recvmmsg` (buffers allocated).
    batch: usize,
    /// Datagrams after which `poll` returns while more are queued.
    budget: usize,
    buf_size: usize,
    // Allocated once in `new`; `hdrs` and `iovs` point into the others.
    payload: Box<[u8]>,
    control: Box<[Control]>,
    names: Box<[libc::sockaddr_storage]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    /// The socket has UDP GRO on: receives may hold several datagrams.
    gro: bool,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` point only into buffers this struct owns
// and are rewritten before each use, so sending it to another thread sends sole
// ownership of everything they reach.
unsafe impl Send for MmsgSource {}

impl MmsgSource {
    /// Takes a bound, joined socket (see [`crate::socket::RecvSocket`]) and allocates
    /// every buffer the loop will use. If the socket has UDP GRO on
    /// ([`enable_gro`](super::enable_gro)), each buffer holds [`GRO_BUF_SIZE`] bytes
    /// whatever `cfg.buf_size` says, and a call takes at most [`GRO_BATCH`] receives
    /// (`cfg.gro` itself is for [`open_source`](super::open_source)).
    pub fn new(sock: Socket, cfg: &RecvConfig) -> io::Result<Self> {
        if cfg.batch == 0 || cfg.buf_size == 0 || cfg.batch > 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!(
                    "receive batch must be 1..=1024 and buffers non-empty (got batch {}, buffer {})",
                    cfg.batch, cfg.buf_size
                ),
            ));
        }
        let gro = gro_enabled(&sock);
        let (batch, buf_size) = if gro {
            (cfg.batch.min(GRO_BATCH), cfg.buf_size.max(GRO_BUF_SIZE))
        } else {
            (cfg.batch, cfg.buf_size)
        };
        let payload = vec![0u8; batch * buf_size].into_boxed_slice();
        let control = vec![[0u64; cmsg::CONTROL_LEN.div_ceil(8)]; batch].into_boxed_slice();
        // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
        let names =
            vec![unsafe { mem::zeroed::<libc::sockaddr_storage>() }; batch].into_boxed_slice();
        // SAFETY: iovec and mmsghdr are plain old data; all zeroes is a valid value.
        // `prepare` points them at the buffers before every call.
        let iovs = vec![unsafe { mem::zeroed::<libc::iovec>() }; batch].into_boxed_slice();
        // SAFETY: as above.
        let hdrs = vec![unsafe { mem::zeroed::<libc::mmsghdr>() }; batch].into_boxed_slice();
        let mut s = MmsgSource {
            sock,
            batch,
            budget: cfg.batch * MAX_BATCHES,
            buf_size,
            payload,
            control,
            names,
            iovs,
            hdrs,
            gro,
        };
        s.prepare();
        Ok(s)
    }

    /// Points every header at its buffers and restores the in/out lengths the kernel
    /// overwrote in the last call. Done per call (a few stores per message) so no
    /// pointer outlives the borrow it came from.
    fn prepare(&mut self) {
        let bufs = self.payload.chunks_exact_mut(self.buf_size);
        let parts = self
            .hdrs
            .iter_mut()
            .zip(self.iovs.iter_mut())
            .zip(self.names.iter_mut())
            .zip(self.control.iter_mut())
            .zip(bufs);
        for ((((h, iov), name), ctl), buf) in parts {
            iov.iov_base = buf.as_mut_ptr().cast();
            iov.iov_len = buf.len();
            h.msg_hdr.msg_name = (name as *mut libc::sockaddr_storage).cast();
            h.msg_hdr.msg_namelen = mem::size_of::<libc::sockaddr_storage>() as libc::socklen_t;
            h.msg_hdr.msg_iov = iov;
            h.msg_hdr.msg_iovlen = 1;
            h.msg_hdr.msg_control = ctl.as_mut_ptr().cast();
            h.msg_hdr.msg_controllen = mem::size_of::<Control>();
            h.msg_hdr.msg_flags = 0;
            h.msg_len = 0;
        }
    }

    /// One non-blocking `recvmmsg`; `Ok(0)` when nothing is queued.
    fn recv_batch(&mut self) -> io::Result<usize> {
        self.prepare();
        // SAFETY: `prepare` just pointed every header into buffers owned by `self` with
        // their lengths; the kernel writes at most those lengths. No timeout pointer.
        let n = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.batch as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n >= 0 {
            return Ok(n as usize);
        }
        let e = io::Error::last_os_error();
        match e.kind() {
            io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
            _ => Err(e),
        }
    }

    /// Hands over the `n` receives of the last call, split into datagrams; returns how
    /// many datagrams that was.
    fn deliver(&self, n: usize, on_datagram: &mut dyn FnMut(&[u8], &RecvMeta)) -> usize {
        let mut datagrams = 0;
        for i in 0..n {
            let h = &self.hdrs[i];
            let len = (h.msg_len as usize).min(self.buf_size);
            let start = i * self.buf_size;
            // SAFETY: `Control` is a plain array of u64; viewing its bytes is sound.
            let ctl: &[u8] = unsafe {
                std::slice::from_raw_parts(
                    self.control[i].as_ptr().cast::<u8>(),
                    mem::size_of::<Control>(),
                )
            };
            let ctl_len = h.msg_hdr.msg_controllen.min(ctl.len());
            // SAFETY: sockaddr_storage is plain old data; viewing its bytes is sound.
            let name: &[u8] = unsafe {
                std::slice::from_raw_parts(
                    (&self.names[i] as *const libc::sockaddr_storage).cast::<u8>(),
                    mem::size_of::<libc::sockaddr_storage>(),
                )
            };
            let name_len = (h.msg_hdr.msg_namelen as usize).min(name.len());
            let mut meta = RecvMeta {
                sender: cmsg::parse_sockaddr(&name[..name_len]),
                truncated: h.msg_hdr.msg_flags & libc::MSG_TRUNC != 0,
                ..RecvMeta::default()
            };
            cmsg::parse_control(&ctl[..ctl_len], &mut meta);
            datagrams += split_segments(&self.payload[start..start + len], &mut meta, on_datagram);
        }
        datagrams
    }

    /// Waits for readiness; `Ok(false)` on timeout or a signal.
    fn wait(&self, timeout: Duration) -> io::Result<bool> {
        let ms = timeout.as_nanos().div_ceil(1_000_000).min(i32::MAX as u128) as i32;
        let mut pfd = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        // SAFETY: one valid pollfd, count 1.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc >= 0 {
            return Ok(rc > 0);
        }
        let e = io::Error::last_os_error();
        if e.kind() == io::ErrorKind::Interrupted {
            Ok(false)
        } else {
            Err(e)
        }
    }
}

impl DatagramSource for MmsgSource {
    fn poll(
        &mut self,
        timeout: Duration,
        on_datagram: &mut dyn FnMut(&[u8], &RecvMeta),
    ) -> io::Result<usize> {
        // Under load data is already queued: try first, and only sleep in poll(2) when
        // the queue is empty.
        let mut n = self.recv_batch()?;
        if n == 0 {
            if !self.wait(timeout)? {
                return Ok(0);
            }
            n = self.recv_batch()?;
        }
        let mut total = 0;
        loop {
            total += self.deliver(n, on_datagram);
            // A short batch means the queue is drained: skip the syscall that would say so.
            if n < self.batch || total >= self.budget {
                break;
            }
            n = self.recv_batch()?;
            if n == 0 {
                break;
            }
        }
        Ok(total)
    }

    fn mode(&self) -> IoMode {
        IoMode::Mmsg
    }

    fn gro(&self) -> bool {
        self.gro
    }

    fn socket_drops(&self) -> Option<u32> {
        super::socket_drops(&self.sock).ok()
    }
}

impl std::fmt::Debug for MmsgSource {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MmsgSource")
            .field("fd", &self.sock.as_raw_fd())
            .field("batch", &self.batch)
            .field("buf_size", &self.buf_size)
            .field("gro", &self.gro)
            .field("iovs", &self.iovs.len())
            .finish()
    }
}
