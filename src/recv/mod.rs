//! Receive loops: where datagrams come off the socket in batches, with their kernel
//! metadata. io_uring (multishot recvmsg, provided-buffer ring) or recvmmsg; then
//! [`Demux`] turns each datagram into frames.

mod cmsg;
mod demux;
pub mod mmsg;
pub mod uring;

use std::io;
use std::time::Duration;

use crate::frame::SenderAddr;

/// What the kernel said about one datagram.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RecvMeta {
    /// Kernel receive timestamp (SO_TIMESTAMPNS, CLOCK_REALTIME), ns since the epoch.
    pub timestamp_ns: u64,
    /// Source address of the datagram.
    pub sender: SenderAddr,
    /// The socket's cumulative kernel drop counter (SO_RXQ_OVFL) as of this datagram.
    pub kernel_drops: u32,
    /// The datagram was larger than the receive buffer and was cut (MSG_TRUNC).
    pub truncated: bool,
}

/// Which receive path to use.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum IoMode {
    /// io_uring when the kernel allows it, else recvmmsg.
    #[default]
    Auto,
    /// io_uring (multishot recvmsg with a provided-buffer ring), or fail.
    Uring,
    /// recvmmsg.
    Mmsg,
}

/// A batched datagram source. Implementations allocate nothing in `poll`.
pub trait DatagramSource: Send {
    /// Waits up to `timeout` for datagrams and hands each one, with its metadata, to
    /// `on_datagram`, a batch at a time. Returns how many were handed over (0 on
    /// timeout). Buffers are reused after `on_datagram` returns.
    fn poll(
        &mut self,
        timeout: Duration,
        on_datagram: &mut dyn FnMut(&[u8], &RecvMeta),
    ) -> io::Result<usize>;

    /// The path actually in use (`Uring` or `Mmsg`), for summaries.
    fn mode(&self) -> IoMode;

    /// The socket's cumulative kernel drop counter, read directly (`SO_MEMINFO`).
    ///
    /// [`RecvMeta::kernel_drops`] only travels with a datagram that was queued, so
    /// drops after the last queued datagram (the end of a burst that overflowed the
    /// buffer) are seen only this way. `None` when the source has no socket.
    fn socket_drops(&self) -> Option<u32> {
        None
    }
}

/// Reads a socket's drop counter (`SK_MEMINFO_DROPS` of `SO_MEMINFO`), the same counter
/// `SO_RXQ_OVFL` reports.
pub(crate) fn socket_drops(sock: &socket2::Socket) -> io::Result<u32> {
    use std::os::fd::AsRawFd;
    // SK_MEMINFO_VARS is 9 on current kernels; room for more costs nothing.
    let mut info = [0u32; 16];
    let mut len = std::mem::size_of_val(&info) as libc::socklen_t;
    // SAFETY: `info` is a writable buffer of `len` bytes that outlives the call; the
    // kernel writes at most `len` bytes and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_SOCKET,
            libc::SO_MEMINFO,
            info.as_mut_ptr().cast(),
            &mut len,
        )
    };
    if rc != 0 {
        return Err(io::Error::last_os_error());
    }
    let drops = libc::SK_MEMINFO_DROPS as usize;
    if (len as usize) < (drops + 1) * 4 {
        return Err(io::Error::other("SO_MEMINFO returned no drop counter"));
    }
    Ok(info[drops])
}

pub use demux::{Demux, Demuxed};
pub use mmsg::RecvConfig;

/// Opens the receive path `mode` asks for on a configured socket.
///
/// With [`IoMode::Auto`], io_uring is tried first and recvmmsg taken when io_uring is
/// disabled, missing or too old; the second value then says why, so that commands can
/// report the choice. An explicit [`IoMode::Uring`] fails instead of falling back.
pub fn open_source(
    sock: socket2::Socket,
    mode: IoMode,
    cfg: &RecvConfig,
) -> io::Result<(Box<dyn DatagramSource>, Option<String>)> {
    let uring = |sock| -> io::Result<Box<dyn DatagramSource>> {
        uring::probe()?;
        let src = uring::UringSource::new(sock, cfg.batch, cfg.buf_size, uring::DEFAULT_BUF_COUNT)?;
        Ok(Box::new(src))
    };
    match mode {
        IoMode::Mmsg => Ok((Box::new(mmsg::MmsgSource::new(sock, cfg)?), None)),
        IoMode::Uring => Ok((uring(sock)?, None)),
        IoMode::Auto => {
            // A duplicate descriptor keeps the socket (and its group membership) alive
            // for the fallback if io_uring setup consumes and drops the original.
            let spare = sock.try_clone()?;
            match uring(sock) {
                Ok(src) => Ok((src, None)),
                Err(e) => {
                    let note = format!("io_uring unavailable ({e}); using recvmmsg");
                    Ok((Box::new(mmsg::MmsgSource::new(spare, cfg)?), Some(note)))
                }
            }
        }
    }
}
