//! Batched send to a CAN socket: frames are queued in the kernel's layout and written
//! with one `sendmmsg` per batch, waiting (bounded) when the interface's queue is full.

use std::io;
use std::mem;
use std::os::fd::AsRawFd;
use std::time::{Duration, Instant};

use super::raw::KernelFrame;
use super::socket::CanSocket;
use crate::frame::CanFrame;

/// Longest [`CanSender::flush`] waits for room in a full transmit queue before it gives
/// up on the frames still queued (counted as [`CanSender::dropped`]).
pub const FULL_QUEUE_PATIENCE: Duration = Duration::from_secs(2);

/// A batched frame sink over one [`CanSocket`]. Allocates nothing after [`new`].
///
/// [`new`]: CanSender::new
pub struct CanSender {
    sock: CanSocket,
    frames: Box<[KernelFrame]>,
    lens: Box<[usize]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    queued: usize,
    sent: u64,
    rejected: u64,
    dropped: u64,
    syscalls: u64,
    waits: u64,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` point only into buffers this struct owns
// and are rewritten before each use.
unsafe impl Send for CanSender {}

impl std::fmt::Debug for CanSender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanSender")
            .field("iface", &self.sock.iface())
            .field("batch", &self.frames.len())
            .field("queued", &self.queued)
            .field("sent", &self.sent)
            .finish()
    }
}

impl CanSender {
    /// Takes an open socket and allocates room for `batch` frames per `sendmmsg` (1–1024).
    pub fn new(sock: CanSocket, batch: usize) -> io::Result<CanSender> {
        if batch == 0 || batch > 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CAN send batch must be 1..=1024 (got {batch})"),
            ));
        }
        Ok(CanSender {
            sock,
            frames: vec![KernelFrame::ZERO; batch].into_boxed_slice(),
            lens: vec![0; batch].into_boxed_slice(),
            // SAFETY: plain old data; filled before each call.
            iovs: vec![unsafe { mem::zeroed::<libc::iovec>() }; batch].into_boxed_slice(),
            // SAFETY: as above.
            hdrs: vec![unsafe { mem::zeroed::<libc::mmsghdr>() }; batch].into_boxed_slice(),
            queued: 0,
            sent: 0,
            rejected: 0,
            dropped: 0,
            syscalls: 0,
            waits: 0,
        })
    }

    /// The socket.
    pub fn socket(&self) -> &CanSocket {
        &self.sock
    }

    /// Queues a frame; writes the batch when it is full. A CAN FD frame on an interface
    /// without FD, and a frame that does not validate, is refused and counted in
    /// [`rejected`](CanSender::rejected) (returns `Ok(false)`).
    pub fn push(&mut self, frame: &CanFrame) -> io::Result<bool> {
        if frame.validate().is_err() || (frame.is_fd() && !self.sock.fd_capable()) {
            self.rejected += 1;
            return Ok(false);
        }
        if frame.is_fd() && !self.sock.config().fd {
            self.rejected += 1;
            return Ok(false);
        }
        let (k, n) = KernelFrame::from_frame(frame);
        self.frames[self.queued] = k;
        self.lens[self.queued] = n;
        self.queued += 1;
        if self.queued == self.frames.len() {
            self.flush()?;
        }
        Ok(true)
    }

    /// Frames queued and not yet written.
    pub fn pending(&self) -> usize {
        self.queued
    }

    /// Writes every queued frame. When the transmit queue is full (`ENOBUFS`, `EAGAIN`) it
    /// waits and retries for up to [`FULL_QUEUE_PATIENCE`], then counts the rest as
    /// [`dropped`](CanSender::dropped). A frame the kernel refuses (`EINVAL`) is counted
    /// as rejected and skipped. Other errors (the interface went down) are returned; the
    /// unsent frames are then counted as dropped.
    pub fn flush(&mut self) -> io::Result<()> {
        let mut start = 0;
        let mut waiting_since: Option<Instant> = None;
        while start < self.queued {
            let count = self.queued - start;
            for i in 0..count {
                let j = start + i;
                self.iovs[i] = libc::iovec {
                    iov_base: (&mut self.frames[j] as *mut KernelFrame).cast(),
                    iov_len: self.lens[j],
                };
                // SAFETY: mmsghdr is plain old data.
                self.hdrs[i] = unsafe { mem::zeroed() };
                self.hdrs[i].msg_hdr.msg_iov = &mut self.iovs[i];
                self.hdrs[i].msg_hdr.msg_iovlen = 1;
            }
            self.syscalls += 1;
            // SAFETY: `count` headers point into our buffers with the lengths given.
            let rc = unsafe {
                libc::sendmmsg(
                    self.sock.as_raw_fd(),
                    self.hdrs.as_mut_ptr(),
                    count as libc::c_uint,
                    libc::MSG_DONTWAIT,
                )
            };
            if rc > 0 {
                start += rc as usize;
                self.sent += rc as u64;
                waiting_since = None;
                continue;
            }
            let e = io::Error::last_os_error();
            match e.raw_os_error() {
                Some(libc::ENOBUFS) | Some(libc::EAGAIN) => {
                    let since = *waiting_since.get_or_insert_with(Instant::now);
                    if since.elapsed() > FULL_QUEUE_PATIENCE {
                        self.dropped += (self.queued - start) as u64;
                        break;
                    }
                    self.waits += 1;
                    // ENOBUFS does not wake poll(2); a short sleep lets the queue drain.
                    std::thread::sleep(Duration::from_micros(200));
                }
                Some(libc::EINTR) => {}
                Some(libc::EINVAL) | Some(libc::EMSGSIZE) => {
                    self.rejected += 1;
                    start += 1;
                }
                _ => {
                    self.dropped += (self.queued - start) as u64;
                    self.queued = 0;
                    return Err(e);
                }
            }
        }
        self.queued = 0;
        Ok(())
    }

    /// Frames written to the interface.
    pub fn sent(&self) -> u64 {
        self.sent
    }

    /// Frames refused (invalid, CAN FD on a classic interface, or refused by the kernel).
    pub fn rejected(&self) -> u64 {
        self.rejected
    }

    /// Frames given up on: the transmit queue stayed full, or the interface failed.
    pub fn dropped(&self) -> u64 {
        self.dropped
    }

    /// `sendmmsg` calls made.
    pub fn syscalls(&self) -> u64 {
        self.syscalls
    }

    /// Times a full transmit queue made the sender wait.
    pub fn waits(&self) -> u64 {
        self.waits
    }
}

impl crate::replay::ReplaySink for CanSender {
    fn send(&mut self, frame: &CanFrame, _now_ns: u64) -> io::Result<()> {
        self.push(frame).map(drop)
    }
    fn send_queued(&mut self) -> io::Result<()> {
        self.flush()
    }
    fn poll(&mut self, _now_ns: u64) -> io::Result<()> {
        Ok(())
    }
    fn flush(&mut self, _now_ns: u64) -> io::Result<()> {
        CanSender::flush(self)
    }
}

impl Drop for CanSender {
    fn drop(&mut self) {
        let _ = self.flush();
    }
}
