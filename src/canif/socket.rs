//! Opening a raw CAN socket (`AF_CAN`, `CAN_RAW`) on one interface, with the options the
//! data path needs, and telling clearly why it failed (see [`CanIfError`]).

use std::ffi::CString;
use std::io;
use std::mem;
use std::os::fd::{AsRawFd, FromRawFd, OwnedFd, RawFd};

use super::CanIfError;

/// `AF_CAN` / `PF_CAN`.
pub const AF_CAN: libc::c_int = 29;
/// `CAN_RAW` protocol.
pub const CAN_RAW: libc::c_int = 1;
/// `SOL_CAN_RAW` (`SOL_CAN_BASE + CAN_RAW`).
pub const SOL_CAN_RAW: libc::c_int = 101;
/// `CAN_RAW_FILTER`.
pub const CAN_RAW_FILTER: libc::c_int = 1;
/// `CAN_RAW_ERR_FILTER`: which error classes the socket receives.
pub const CAN_RAW_ERR_FILTER: libc::c_int = 2;
/// `CAN_RAW_LOOPBACK`: local echo of sent frames to other sockets (on by default).
pub const CAN_RAW_LOOPBACK: libc::c_int = 3;
/// `CAN_RAW_RECV_OWN_MSGS`: this socket also receives its own sent frames (flagged
/// `MSG_CONFIRM`).
pub const CAN_RAW_RECV_OWN_MSGS: libc::c_int = 4;
/// `CAN_RAW_FD_FRAMES`: the socket reads and writes CAN FD frames too.
pub const CAN_RAW_FD_FRAMES: libc::c_int = 5;
/// `CAN_ERR_MASK`: every error class.
pub const CAN_ERR_MASK: u32 = 0x1FFF_FFFF;

/// `struct sockaddr_can` (the transport-protocol union is unused by `CAN_RAW`).
#[repr(C)]
#[derive(Debug, Clone, Copy)]
struct SockaddrCan {
    family: libc::sa_family_t,
    ifindex: libc::c_int,
    addr: [u8; 16],
}

/// `struct ifreq` with the union as bytes (flags, MTU and hardware address start at 0).
#[repr(C, align(8))]
struct IfReq {
    name: [libc::c_char; libc::IFNAMSIZ],
    data: [u8; 24],
}

/// What a CAN socket is opened for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct CanSocketConfig {
    /// Read and write CAN FD frames (`CAN_RAW_FD_FRAMES`). On an interface whose MTU is
    /// classic only, FD frames cannot be sent (see [`CanSocket::fd_capable`]).
    pub fd: bool,
    /// Error classes to receive as error frames (`CAN_RAW_ERR_FILTER`); 0 receives none,
    /// [`CAN_ERR_MASK`] all.
    pub error_mask: u32,
    /// Receive this socket's own sent frames back (`CAN_RAW_RECV_OWN_MSGS`), flagged as
    /// confirmations: how a bridge tells its own writes from other traffic.
    pub recv_own: bool,
    /// Receive no frames at all (a write-only socket: `CAN_RAW_FILTER` with no entry), so
    /// a sender's receive queue never fills.
    pub write_only: bool,
    /// Kernel receive timestamps (`SO_TIMESTAMPNS`) and the drop counter
    /// (`SO_RXQ_OVFL`) on every received frame.
    pub timestamps: bool,
    /// Receive buffer to ask for, bytes (`SO_RCVBUF`, then `SO_RCVBUFFORCE` as root);
    /// 0 leaves the default.
    pub rcvbuf: usize,
}

impl Default for CanSocketConfig {
    fn default() -> Self {
        CanSocketConfig {
            fd: true,
            error_mask: CAN_ERR_MASK,
            recv_own: false,
            write_only: false,
            timestamps: true,
            rcvbuf: 8 << 20,
        }
    }
}

/// A bound raw CAN socket, non-blocking.
#[derive(Debug)]
pub struct CanSocket {
    fd: OwnedFd,
    iface: String,
    ifindex: u32,
    fd_capable: bool,
    cfg: CanSocketConfig,
}

fn errno() -> io::Error {
    io::Error::last_os_error()
}

fn denied(e: &io::Error) -> bool {
    matches!(e.raw_os_error(), Some(libc::EPERM) | Some(libc::EACCES))
}

impl CanSocket {
    /// Opens a raw CAN socket on `iface` (e.g. `can0`, `vcan0`).
    ///
    /// Errors name the cause: [`CanIfError::NoCanInKernel`] before anything else (this
    /// host has no SocketCAN), then [`CanIfError::NoSuchInterface`],
    /// [`CanIfError::NotCan`], [`CanIfError::InterfaceDown`],
    /// [`CanIfError::PermissionDenied`].
    pub fn open(iface: &str, cfg: &CanSocketConfig) -> Result<CanSocket, CanIfError> {
        // SAFETY: plain socket(2) call; the result is checked before use.
        let raw = unsafe {
            libc::socket(
                AF_CAN,
                libc::SOCK_RAW | libc::SOCK_NONBLOCK | libc::SOCK_CLOEXEC,
                CAN_RAW,
            )
        };
        if raw < 0 {
            let e = errno();
            return Err(match e.raw_os_error() {
                Some(libc::EAFNOSUPPORT) | Some(libc::EPROTONOSUPPORT) => CanIfError::NoCanInKernel,
                _ if denied(&e) => CanIfError::PermissionDenied {
                    iface: iface.into(),
                    op: "socket(AF_CAN, SOCK_RAW, CAN_RAW)",
                },
                _ => CanIfError::Io {
                    op: "socket(AF_CAN)",
                    source: e,
                },
            });
        }
        // SAFETY: `raw` is a fresh descriptor we own.
        let fd = unsafe { OwnedFd::from_raw_fd(raw) };
        let name = CString::new(iface).map_err(|_| CanIfError::NoSuchInterface(iface.into()))?;
        if iface.is_empty() || iface.len() >= libc::IFNAMSIZ {
            return Err(CanIfError::NoSuchInterface(iface.into()));
        }
        // SAFETY: `name` is a NUL-terminated string that outlives the call.
        let ifindex = unsafe { libc::if_nametoindex(name.as_ptr()) };
        if ifindex == 0 {
            return Err(CanIfError::NoSuchInterface(iface.into()));
        }
        let hw = ifreq(fd.as_raw_fd(), iface, libc::SIOCGIFHWADDR)?;
        let family = u16::from_ne_bytes([hw[0], hw[1]]);
        if family != libc::ARPHRD_CAN {
            return Err(CanIfError::NotCan(iface.into()));
        }
        let flags = ifreq(fd.as_raw_fd(), iface, libc::SIOCGIFFLAGS)?;
        let flags = i16::from_ne_bytes([flags[0], flags[1]]) as libc::c_int;
        if flags & libc::IFF_UP == 0 {
            return Err(CanIfError::InterfaceDown(iface.into()));
        }
        let mtu = ifreq(fd.as_raw_fd(), iface, libc::SIOCGIFMTU)?;
        let mtu = i32::from_ne_bytes([mtu[0], mtu[1], mtu[2], mtu[3]]);
        let sock = CanSocket {
            fd,
            iface: iface.into(),
            ifindex,
            fd_capable: mtu as usize >= super::raw::CANFD_MTU,
            cfg: *cfg,
        };
        sock.configure()?;
        let addr = SockaddrCan {
            family: AF_CAN as libc::sa_family_t,
            ifindex: ifindex as libc::c_int,
            addr: [0; 16],
        };
        // SAFETY: `addr` is a valid sockaddr_can of the length passed.
        let rc = unsafe {
            libc::bind(
                sock.fd.as_raw_fd(),
                (&addr as *const SockaddrCan).cast(),
                mem::size_of::<SockaddrCan>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            let e = errno();
            return Err(match e.raw_os_error() {
                Some(libc::ENODEV) => CanIfError::NoSuchInterface(iface.into()),
                Some(libc::ENETDOWN) => CanIfError::InterfaceDown(iface.into()),
                _ if denied(&e) => CanIfError::PermissionDenied {
                    iface: iface.into(),
                    op: "bind",
                },
                _ => CanIfError::Io {
                    op: "bind",
                    source: e,
                },
            });
        }
        Ok(sock)
    }

    fn configure(&self) -> Result<(), CanIfError> {
        let c = &self.cfg;
        let on: libc::c_int = 1;
        if c.fd {
            self.setopt(SOL_CAN_RAW, CAN_RAW_FD_FRAMES, &on, "CAN_RAW_FD_FRAMES")?;
        }
        self.setopt(
            SOL_CAN_RAW,
            CAN_RAW_ERR_FILTER,
            &c.error_mask,
            "CAN_RAW_ERR_FILTER",
        )?;
        if c.recv_own {
            self.setopt(
                SOL_CAN_RAW,
                CAN_RAW_RECV_OWN_MSGS,
                &on,
                "CAN_RAW_RECV_OWN_MSGS",
            )?;
        }
        if c.write_only {
            // SAFETY: a zero-length filter list is how the kernel is told "receive
            // nothing"; the pointer is not read for length 0.
            let rc = unsafe {
                libc::setsockopt(
                    self.fd.as_raw_fd(),
                    SOL_CAN_RAW,
                    CAN_RAW_FILTER,
                    std::ptr::null(),
                    0,
                )
            };
            if rc != 0 {
                return Err(self.opt_error("CAN_RAW_FILTER", errno()));
            }
        }
        if c.timestamps {
            self.setopt(
                libc::SOL_SOCKET,
                libc::SO_TIMESTAMPNS,
                &on,
                "SO_TIMESTAMPNS",
            )?;
            self.setopt(libc::SOL_SOCKET, libc::SO_RXQ_OVFL, &on, "SO_RXQ_OVFL")?;
        }
        if c.rcvbuf > 0 {
            let want = c.rcvbuf.min(i32::MAX as usize) as libc::c_int;
            // As root the limit can be lifted; otherwise the kernel caps SO_RCVBUF at
            // net.core.rmem_max, which is fine.
            if self
                .setopt(
                    libc::SOL_SOCKET,
                    libc::SO_RCVBUFFORCE,
                    &want,
                    "SO_RCVBUFFORCE",
                )
                .is_err()
            {
                self.setopt(libc::SOL_SOCKET, libc::SO_RCVBUF, &want, "SO_RCVBUF")?;
            }
        }
        Ok(())
    }

    fn setopt<T>(
        &self,
        level: libc::c_int,
        name: libc::c_int,
        value: &T,
        what: &'static str,
    ) -> Result<(), CanIfError> {
        // SAFETY: `value` points to a live T of the size passed.
        let rc = unsafe {
            libc::setsockopt(
                self.fd.as_raw_fd(),
                level,
                name,
                (value as *const T).cast(),
                mem::size_of::<T>() as libc::socklen_t,
            )
        };
        if rc != 0 {
            return Err(self.opt_error(what, errno()));
        }
        Ok(())
    }

    fn opt_error(&self, what: &'static str, e: io::Error) -> CanIfError {
        if denied(&e) {
            CanIfError::PermissionDenied {
                iface: self.iface.clone(),
                op: what,
            }
        } else {
            CanIfError::Io {
                op: what,
                source: e,
            }
        }
    }

    /// Another handle on the same socket (a duplicated descriptor). Frames written
    /// through either come back to both flagged as the socket's own (`MSG_CONFIRM`).
    pub fn try_clone(&self) -> Result<CanSocket, CanIfError> {
        let fd = self.fd.try_clone().map_err(|e| CanIfError::Io {
            op: "dup",
            source: e,
        })?;
        Ok(CanSocket {
            fd,
            iface: self.iface.clone(),
            ifindex: self.ifindex,
            fd_capable: self.fd_capable,
            cfg: self.cfg,
        })
    }

    /// The interface name.
    pub fn iface(&self) -> &str {
        &self.iface
    }

    /// The interface index.
    pub fn ifindex(&self) -> u32 {
        self.ifindex
    }

    /// Whether the interface carries CAN FD (its MTU is `CANFD_MTU`).
    pub fn fd_capable(&self) -> bool {
        self.fd_capable
    }

    /// The options the socket was opened with.
    pub fn config(&self) -> &CanSocketConfig {
        &self.cfg
    }

    /// The socket's cumulative drop counter, read directly (`SO_MEMINFO`): frames the
    /// kernel could not queue because the receive buffer was full.
    pub fn drops(&self) -> io::Result<u32> {
        let mut info = [0u32; 16];
        let mut len = mem::size_of_val(&info) as libc::socklen_t;
        // SAFETY: `info` is writable for `len` bytes; the kernel updates `len`.
        let rc = unsafe {
            libc::getsockopt(
                self.fd.as_raw_fd(),
                libc::SOL_SOCKET,
                libc::SO_MEMINFO,
                info.as_mut_ptr().cast(),
                &mut len,
            )
        };
        if rc != 0 {
            return Err(errno());
        }
        Ok(info
            .get(libc::SK_MEMINFO_DROPS as usize)
            .copied()
            .unwrap_or(0))
    }
}

impl AsRawFd for CanSocket {
    fn as_raw_fd(&self) -> RawFd {
        self.fd.as_raw_fd()
    }
}

/// One interface ioctl (`SIOCGIF*`); returns the union bytes.
fn ifreq(fd: RawFd, iface: &str, request: libc::c_ulong) -> Result<[u8; 24], CanIfError> {
    let mut req = IfReq {
        name: [0; libc::IFNAMSIZ],
        data: [0; 24],
    };
    for (d, s) in req.name.iter_mut().zip(iface.bytes()) {
        *d = s as libc::c_char;
    }
    // SAFETY: `req` is a properly sized ifreq with a NUL-terminated name (the length was
    // checked below IFNAMSIZ); the kernel writes only into it.
    let rc = unsafe { libc::ioctl(fd, request as _, &mut req as *mut IfReq) };
    if rc != 0 {
        let e = errno();
        return Err(match e.raw_os_error() {
            Some(libc::ENODEV) | Some(libc::ENXIO) => CanIfError::NoSuchInterface(iface.into()),
            _ => CanIfError::Io {
                op: "interface ioctl",
                source: e,
            },
        });
    }
    Ok(req.data)
}
