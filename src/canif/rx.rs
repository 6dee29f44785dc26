//! Batched receive from a CAN socket: `poll(2)`, then `recvmmsg` into buffers allocated
//! once, each frame with its kernel timestamp, the drop counter and whether it was a local
//! echo (`MSG_DONTROUTE`) or this socket's own transmission (`MSG_CONFIRM`).

use std::io;
use std::mem;
use std::os::fd::AsRawFd;
use std::time::Duration;

use super::raw::KernelFrame;
use super::socket::CanSocket;
use crate::frame::{CanFrame, Direction};
use crate::recv::{cmsg, RecvMeta};

/// What the kernel said about one received frame besides the frame itself.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CanRxMeta {
    /// The socket's cumulative drop counter (`SO_RXQ_OVFL`) as of this frame.
    pub kernel_drops: u32,
    /// Sent by this very socket (`MSG_CONFIRM`, with `CAN_RAW_RECV_OWN_MSGS`): the
    /// confirmation that a write reached the bus. A bridge never forwards these.
    pub own: bool,
    /// Sent by another socket on this host (`MSG_DONTROUTE`): a local echo. Such frames
    /// are given [`Direction::Tx`].
    pub local: bool,
}

/// Control buffer of one message, aligned for `cmsghdr`.
type Control = [u64; cmsg::CONTROL_LEN.div_ceil(8)];

/// A batched frame source over one [`CanSocket`]. Allocates nothing after [`new`].
///
/// [`new`]: CanReceiver::new
pub struct CanReceiver {
    sock: CanSocket,
    frames: Box<[KernelFrame]>,
    control: Box<[Control]>,
    iovs: Box<[libc::iovec]>,
    hdrs: Box<[libc::mmsghdr]>,
    unknown_sizes: u64,
}

// SAFETY: the raw pointers in `iovs` and `hdrs` point only into buffers this struct owns
// and are rewritten before each use.
unsafe impl Send for CanReceiver {}

impl std::fmt::Debug for CanReceiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CanReceiver")
            .field("iface", &self.sock.iface())
            .field("batch", &self.frames.len())
            .finish()
    }
}

impl CanReceiver {
    /// Takes an open socket and allocates room for `batch` frames per call (1–1024).
    pub fn new(sock: CanSocket, batch: usize) -> io::Result<CanReceiver> {
        if batch == 0 || batch > 1024 {
            return Err(io::Error::new(
                io::ErrorKind::InvalidInput,
                format!("CAN receive batch must be 1..=1024 (got {batch})"),
            ));
        }
        Ok(CanReceiver {
            sock,
            frames: vec![KernelFrame::ZERO; batch].into_boxed_slice(),
            control: vec![[0u64; cmsg::CONTROL_LEN.div_ceil(8)]; batch].into_boxed_slice(),
            // SAFETY: iovec and mmsghdr are plain old data; zeroes are valid, and
            // `prepare` fills them before each call.
            iovs: vec![unsafe { mem::zeroed::<libc::iovec>() }; batch].into_boxed_slice(),
            // SAFETY: as above.
            hdrs: vec![unsafe { mem::zeroed::<libc::mmsghdr>() }; batch].into_boxed_slice(),
            unknown_sizes: 0,
        })
    }

    /// The socket.
    pub fn socket(&self) -> &CanSocket {
        &self.sock
    }

    /// Messages that were not a CAN or CAN FD frame by size (skipped; never seen from a
    /// conforming kernel).
    pub fn unknown_sizes(&self) -> u64 {
        self.unknown_sizes
    }

    fn prepare(&mut self) {
        for i in 0..self.frames.len() {
            self.iovs[i] = libc::iovec {
                iov_base: (&mut self.frames[i] as *mut KernelFrame).cast(),
                iov_len: mem::size_of::<KernelFrame>(),
            };
            let h = &mut self.hdrs[i].msg_hdr;
            h.msg_name = std::ptr::null_mut();
            h.msg_namelen = 0;
            h.msg_iov = &mut self.iovs[i];
            h.msg_iovlen = 1;
            h.msg_control = self.control[i].as_mut_ptr().cast();
            h.msg_controllen = mem::size_of::<Control>() as _;
            h.msg_flags = 0;
            self.hdrs[i].msg_len = 0;
        }
    }

    /// Waits up to `timeout` for frames, then hands each one of a batch to `on_frame`.
    /// Returns how many were handed over (0 on timeout). EINTR counts as a timeout.
    pub fn poll(
        &mut self,
        timeout: Duration,
        on_frame: &mut dyn FnMut(&CanFrame, &CanRxMeta),
    ) -> io::Result<usize> {
        let mut pfd = libc::pollfd {
            fd: self.sock.as_raw_fd(),
            events: libc::POLLIN,
            revents: 0,
        };
        let ms = timeout.as_millis().min(i32::MAX as u128) as libc::c_int;
        // SAFETY: one valid pollfd.
        let rc = unsafe { libc::poll(&mut pfd, 1, ms) };
        if rc < 0 {
            let e = io::Error::last_os_error();
            return if e.kind() == io::ErrorKind::Interrupted {
                Ok(0)
            } else {
                Err(e)
            };
        }
        if rc == 0 {
            return Ok(0);
        }
        if pfd.revents & libc::POLLERR != 0 && pfd.revents & libc::POLLIN == 0 {
            // The interface went away or down: the next read says why.
            let mut b = [0u8; 72];
            // SAFETY: reads into a local buffer of the length passed.
            let n = unsafe {
                libc::recv(
                    self.sock.as_raw_fd(),
                    b.as_mut_ptr().cast(),
                    b.len(),
                    libc::MSG_DONTWAIT,
                )
            };
            if n < 0 {
                return Err(io::Error::last_os_error());
            }
        }
        self.recv_batch(on_frame)
    }

    /// Receives whatever is queued now (no waiting) and hands it to `on_frame`.
    pub fn recv_batch(
        &mut self,
        on_frame: &mut dyn FnMut(&CanFrame, &CanRxMeta),
    ) -> io::Result<usize> {
        self.prepare();
        // SAFETY: every header points into buffers owned by self, sized as declared.
        let n = unsafe {
            libc::recvmmsg(
                self.sock.as_raw_fd(),
                self.hdrs.as_mut_ptr(),
                self.hdrs.len() as libc::c_uint,
                libc::MSG_DONTWAIT,
                std::ptr::null_mut(),
            )
        };
        if n < 0 {
            let e = io::Error::last_os_error();
            return match e.kind() {
                io::ErrorKind::WouldBlock | io::ErrorKind::Interrupted => Ok(0),
                _ => Err(e),
            };
        }
        let n = n as usize;
        let mut handed = 0;
        for i in 0..n {
            let hdr = &self.hdrs[i];
            let flags = hdr.msg_hdr.msg_flags;
            let clen = hdr.msg_hdr.msg_controllen.min(mem::size_of::<Control>());
            // SAFETY: the control array is plain bytes of at least `clen` length.
            let control =
                unsafe { std::slice::from_raw_parts(self.control[i].as_ptr().cast::<u8>(), clen) };
            let mut rm = RecvMeta::default();
            cmsg::parse_control(control, &mut rm);
            let meta = CanRxMeta {
                kernel_drops: rm.kernel_drops,
                own: flags & libc::MSG_CONFIRM != 0,
                local: flags & libc::MSG_DONTROUTE != 0,
            };
            let dir = if meta.own || meta.local {
                Direction::Tx
            } else {
                Direction::Rx
            };
            match self.frames[i].to_frame(hdr.msg_len as usize, rm.timestamp_ns, dir) {
                Some(frame) => {
                    on_frame(&frame, &meta);
                    handed += 1;
                }
                None => self.unknown_sizes += 1,
            }
        }
        Ok(handed)
    }
}
