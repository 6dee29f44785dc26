//! Receive loops: where datagrams come off the socket in batches, with their kernel
//! metadata. io_uring (multishot recvmsg, provided-buffer ring) or recvmmsg; then
//! [`Demux`] turns each datagram into frames.
//!
//! With UDP GRO on the socket ([`enable_gro`], the default of [`open_source`]) one
//! receive can carry many datagrams of one sender back to back (a "super-datagram");
//! both loops split it at the segment size the kernel reports, so callers always see
//! single datagrams.

pub(crate) mod cmsg;
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
    /// UDP GRO segment size of the receive this datagram came in (the `UDP_GRO` control
    /// message); 0 when the kernel sent none (GRO off, or nothing coalesced).
    pub gro_size: u16,
    /// Which datagram of its receive this is: 0 for the first (or only) one.
    pub segment: u32,
    /// How many datagrams the receive held: more than 1 only when UDP GRO coalesced
    /// several (0 in metadata that did not come from a receive loop means 1).
    pub segments: u32,
}

impl RecvMeta {
    /// True for the first datagram of a receive that carried more than one (UDP GRO):
    /// counting these counts coalesced receives.
    #[inline]
    pub fn starts_coalesced(&self) -> bool {
        self.segment == 0 && self.segments > 1
    }
}

/// Payload bytes one receive can carry with UDP GRO: the kernel coalesces at most 64 KiB
/// (`gro_max_size`) per super-datagram.
pub const GRO_BUF_SIZE: usize = 64 * 1024;

/// Hands the payload of one receive to `on_datagram`, split at `meta.gro_size` when the
/// kernel coalesced several datagrams (the last one may be shorter). Returns how many
/// datagrams were handed over.
///
/// A truncated receive (`meta.truncated`, buffer too small) loses its tail: the complete
/// segments are handed over as they are and the last, cut one is flagged truncated.
#[inline]
pub(crate) fn split_segments(
    payload: &[u8],
    meta: &mut RecvMeta,
    on_datagram: &mut dyn FnMut(&[u8], &RecvMeta),
) -> usize {
    let seg = meta.gro_size as usize;
    if seg == 0 || payload.len() <= seg {
        meta.segment = 0;
        meta.segments = 1;
        on_datagram(payload, meta);
        return 1;
    }
    let n = payload.len().div_ceil(seg);
    let truncated = meta.truncated;
    meta.segments = n as u32;
    for (i, datagram) in payload.chunks(seg).enumerate() {
        meta.segment = i as u32;
        meta.truncated = truncated && i + 1 == n;
        on_datagram(datagram, meta);
    }
    n
}

/// Turns UDP GRO on for `sock` (`setsockopt(SOL_UDP, UDP_GRO, 1)`, Linux 5.0+): the
/// kernel may then hand over many equal-sized datagrams of one sender in one receive,
/// with a `UDP_GRO` control message giving their size. Receive buffers must then hold
/// [`GRO_BUF_SIZE`] bytes; both sources size theirs by [`gro_enabled`].
pub fn enable_gro(sock: &socket2::Socket) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let one: libc::c_int = 1;
    // SAFETY: `one` is a live c_int and the length passed is its size; the kernel only
    // reads it.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&one as *const libc::c_int).cast(),
            std::mem::size_of::<libc::c_int>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Whether UDP GRO is on for `sock` (`getsockopt(SOL_UDP, UDP_GRO)`); false where the
/// kernel does not know the option.
pub fn gro_enabled(sock: &socket2::Socket) -> bool {
    use std::os::fd::AsRawFd;
    let mut val: libc::c_int = 0;
    let mut len = std::mem::size_of::<libc::c_int>() as libc::socklen_t;
    // SAFETY: `val` is a writable c_int of `len` bytes that outlives the call; the
    // kernel writes at most `len` bytes and updates `len`.
    let rc = unsafe {
        libc::getsockopt(
            sock.as_raw_fd(),
            libc::SOL_UDP,
            libc::UDP_GRO,
            (&mut val as *mut libc::c_int).cast(),
            &mut len,
        )
    };
    rc == 0 && val != 0
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

    /// Whether receives may carry several datagrams coalesced by UDP GRO (which `poll`
    /// splits), for summaries. False by default.
    fn gro(&self) -> bool {
        false
    }

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

pub use demux::{Decoded, Demux, Demuxed};
pub use mmsg::RecvConfig;

/// Opens the receive path `mode` asks for on a configured socket.
///
/// With [`IoMode::Auto`], io_uring is tried first and recvmmsg taken when io_uring is
/// disabled, missing or too old; the second value then says why, so that commands can
/// report the choice. An explicit [`IoMode::Uring`] fails instead of falling back.
///
/// With `cfg.gro` UDP GRO is turned on first ([`enable_gro`]); where the kernel refuses,
/// receiving goes on without it and the note says so.
pub fn open_source(
    sock: socket2::Socket,
    mode: IoMode,
    cfg: &RecvConfig,
) -> io::Result<(Box<dyn DatagramSource>, Option<String>)> {
    let mut notes: Vec<String> = Vec::new();
    if cfg.gro {
        if let Err(e) = enable_gro(&sock) {
            notes.push(format!(
                "UDP GRO unavailable ({e}); one datagram per receive"
            ));
        }
    }
    let uring = |sock| -> io::Result<Box<dyn DatagramSource>> {
        uring::probe()?;
        let src = uring::UringSource::new(sock, cfg.batch, cfg.buf_size, uring::DEFAULT_BUF_COUNT)?;
        Ok(Box::new(src))
    };
    let src = match mode {
        IoMode::Mmsg => Box::new(mmsg::MmsgSource::new(sock, cfg)?),
        IoMode::Uring => uring(sock)?,
        IoMode::Auto => {
            // A duplicate descriptor keeps the socket (and its group membership) alive
            // for the fallback if io_uring setup consumes and drops the original.
            let spare = sock.try_clone()?;
            match uring(sock) {
                Ok(src) => src,
                Err(e) => {
                    notes.push(format!("io_uring unavailable ({e}); using recvmmsg"));
                    Box::new(mmsg::MmsgSource::new(spare, cfg)?)
                }
            }
        }
    };
    let note = (!notes.is_empty()).then(|| notes.join("; "));
    Ok((src, note))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn split(payload: &[u8], meta: RecvMeta) -> Vec<(Vec<u8>, RecvMeta)> {
        let mut meta = meta;
        let mut out = Vec::new();
        let n = split_segments(payload, &mut meta, &mut |d, m| out.push((d.to_vec(), *m)));
        assert_eq!(n, out.len());
        out
    }

    #[test]
    fn super_datagram_splits_at_the_segment_size() {
        let payload: Vec<u8> = (0..25u8).collect();
        let meta = RecvMeta {
            gro_size: 10,
            kernel_drops: 4,
            ..RecvMeta::default()
        };
        let got = split(&payload, meta);
        let lens: Vec<usize> = got.iter().map(|(d, _)| d.len()).collect();
        assert_eq!(lens, [10, 10, 5]);
        let joined: Vec<u8> = got.iter().flat_map(|(d, _)| d.clone()).collect();
        assert_eq!(joined, payload);
        for (i, (_, m)) in got.iter().enumerate() {
            assert_eq!((m.segment, m.segments), (i as u32, 3));
            assert_eq!(m.kernel_drops, 4);
            assert!(!m.truncated);
            assert_eq!(m.starts_coalesced(), i == 0);
        }
    }

    #[test]
    fn plain_receives_stay_whole() {
        for (len, gro_size) in [(0, 0), (25, 0), (10, 10), (7, 10)] {
            let meta = RecvMeta {
                gro_size,
                ..RecvMeta::default()
            };
            let got = split(&vec![1u8; len], meta);
            assert_eq!(got.len(), 1, "{len} bytes, segment {gro_size}");
            assert_eq!(got[0].0.len(), len);
            assert_eq!((got[0].1.segment, got[0].1.segments), (0, 1));
            assert!(!got[0].1.starts_coalesced());
        }
    }

    #[test]
    fn truncated_receive_flags_only_its_cut_tail() {
        let meta = RecvMeta {
            gro_size: 4,
            truncated: true,
            ..RecvMeta::default()
        };
        let got = split(&[9u8; 10], meta);
        let flags: Vec<bool> = got.iter().map(|(_, m)| m.truncated).collect();
        assert_eq!(flags, [false, false, true]);
    }
}
