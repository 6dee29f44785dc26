//! Multicast sockets: opens the receive socket (joined to one group, sharing the port,
//! timestamps and drop counter on) and the send socket (interface, TTL, loopback), with
//! errors a user can act on.
//!
//! Everything here runs once at start-up; the hot paths live in [`crate::recv`] and
//! [`crate::send`].

use std::ffi::{CStr, CString};
use std::fmt;
use std::io;
use std::mem;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, SockAddr, Socket, Type};

/// python-can's default IPv6 group (`ff15:7079:7468:6f6e:6465:6d6f:6d63:6173`).
pub const DEFAULT_GROUP_V6: Ipv6Addr = Ipv6Addr::new(
    0xff15, 0x7079, 0x7468, 0x6f6e, 0x6465, 0x6d6f, 0x6d63, 0x6173,
);
/// python-can's default IPv4 group.
pub const DEFAULT_GROUP_V4: Ipv4Addr = Ipv4Addr::new(239, 74, 163, 2);
/// python-can's default port.
pub const DEFAULT_PORT: u16 = 43113;

/// Receive buffer asked for by default: 32 MiB, so a burst survives a scheduling hiccup.
pub const DEFAULT_RCVBUF: usize = 32 << 20;

/// Where and how to join or send to a multicast group.
#[derive(Clone, Debug)]
pub struct McastConfig {
    /// The group (IPv4 224.0.0.0/4 or IPv6 ff00::/8).
    pub group: IpAddr,
    /// UDP port.
    pub port: u16,
    /// Interface by name (`"lo"`, `"eth0"`) or by one of its addresses; `None` lets the
    /// kernel choose by route.
    pub iface: Option<String>,
    /// TTL (IPv4) or hop limit (IPv6) of sent datagrams; 0 keeps them on this host.
    pub ttl: u32,
    /// Deliver sent datagrams to receivers on this host too (`IP_MULTICAST_LOOP`).
    pub loopback: bool,
    /// Receive buffer to ask the kernel for, in bytes.
    pub rcvbuf: usize,
    /// Accept datagrams only from these senders (source-specific joins); empty = any.
    pub sources: Vec<IpAddr>,
}

impl McastConfig {
    /// A group and port with python-can's defaults: any interface, TTL 1, loopback on,
    /// a 32 MiB receive buffer, any source.
    pub fn new(group: IpAddr, port: u16) -> Self {
        McastConfig {
            group,
            port,
            iface: None,
            ttl: 1,
            loopback: true,
            rcvbuf: DEFAULT_RCVBUF,
            sources: Vec::new(),
        }
    }

    /// python-can's IPv4 group on `lo` with TTL 0: works without privileges on any Linux
    /// host and never leaves it.
    pub fn loopback_v4(port: u16) -> Self {
        McastConfig {
            iface: Some("lo".to_string()),
            ttl: 0,
            ..McastConfig::new(IpAddr::V4(DEFAULT_GROUP_V4), port)
        }
    }

    /// Checks what can be checked without touching the system: the group is multicast,
    /// and an interface address and the sources are of the group's family.
    pub fn validate(&self) -> Result<(), McastConfigError> {
        if !self.group.is_multicast() {
            return Err(McastConfigError::NotMulticast { group: self.group });
        }
        if let Some(Ok(addr)) = self.iface.as_deref().map(str::parse::<IpAddr>) {
            if addr.is_ipv4() != self.group.is_ipv4() {
                return Err(McastConfigError::IfaceFamily {
                    iface: addr,
                    group: self.group,
                });
            }
        }
        for &s in &self.sources {
            if s.is_ipv4() != self.group.is_ipv4() {
                return Err(McastConfigError::SourceFamily {
                    source: s,
                    group: self.group,
                });
            }
            if s.is_multicast() || s.is_unspecified() {
                return Err(McastConfigError::SourceNotUnicast { source: s });
            }
        }
        if self.ttl > 255 {
            return Err(McastConfigError::TtlTooLarge { ttl: self.ttl });
        }
        Ok(())
    }
}

/// Why a [`McastConfig`] cannot work, found by [`McastConfig::validate`] before any
/// socket is opened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum McastConfigError {
    /// The group is not a multicast address.
    NotMulticast {
        /// The configured group.
        group: IpAddr,
    },
    /// The interface is given by an address of the other family than the group's.
    IfaceFamily {
        /// The interface address.
        iface: IpAddr,
        /// The configured group.
        group: IpAddr,
    },
    /// A source address is of the other family than the group's.
    SourceFamily {
        /// The source address.
        source: IpAddr,
        /// The configured group.
        group: IpAddr,
    },
    /// A source address that cannot send (multicast or unspecified).
    SourceNotUnicast {
        /// The source address.
        source: IpAddr,
    },
    /// A TTL / hop limit above 255.
    TtlTooLarge {
        /// The configured value.
        ttl: u32,
    },
}

impl fmt::Display for McastConfigError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let family = |a: &IpAddr| if a.is_ipv4() { "IPv4" } else { "IPv6" };
        match self {
            McastConfigError::NotMulticast { group } => write!(
                f,
                "{group} is not a multicast group address (IPv4 224.0.0.0/4, IPv6 ff00::/8)"
            ),
            McastConfigError::IfaceFamily { iface, group } => write!(
                f,
                "interface address {iface} is {} but group {group} is {}",
                family(iface),
                family(group)
            ),
            McastConfigError::SourceFamily { source, group } => write!(
                f,
                "source {source} is {} but group {group} is {}",
                family(source),
                family(group)
            ),
            McastConfigError::SourceNotUnicast { source } => {
                write!(f, "source {source} is not a unicast sender address")
            }
            McastConfigError::TtlTooLarge { ttl } => {
                write!(f, "TTL / hop limit {ttl} is above 255")
            }
        }
    }
}

impl std::error::Error for McastConfigError {}

/// A socket joined to one group, ready for [`crate::recv`].
#[derive(Debug)]
pub struct RecvSocket {
    sock: Socket,
    warnings: Vec<String>,
}

impl RecvSocket {
    /// Opens, binds to `group:port`, joins (per source when `cfg.sources` is set) and
    /// turns on kernel timestamps and the drop counter.
    pub fn open(cfg: &McastConfig) -> io::Result<RecvSocket> {
        cfg.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let iface = cfg.iface.as_deref().map(Iface::resolve).transpose()?;
        let index = iface.as_ref().map_or(0, |i| i.index);
        let sock = new_udp(cfg.group)?;
        // Several programs share the port, as python-can does: SO_REUSEADDR is enough
        // for that, and every socket on the group gets its own copy of each datagram.
        sock.set_reuse_address(true)?;
        // SO_REUSEPORT as well (python-can sets both), except on a source-filtered
        // socket: in a reuseport group the kernel (seen on 6.18) re-picks one socket
        // by hash for a datagram that only some members' source filters accept, so a
        // plain receiver on the same host would miss whole senders.
        if cfg.sources.is_empty() {
            sock.set_reuse_port(true)?;
        }
        let mut warnings = Vec::new();
        set_rcvbuf(&sock, cfg.rcvbuf, &mut warnings)?;
        setsockopt(&sock, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, &1i32)?;
        setsockopt(&sock, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, &1i32)?;

        // Binding to the group (not the wildcard) keeps other groups on the same port out;
        // MULTICAST_ALL off keeps out groups other sockets of this process joined.
        match cfg.group {
            IpAddr::V4(g) => {
                sock.set_multicast_all_v4(false)?;
                sock.bind(&SocketAddr::V4(SocketAddrV4::new(g, cfg.port)).into())
                    .map_err(|e| ctx(e, format!("bind {g}:{}", cfg.port)))?;
                let local = iface
                    .as_ref()
                    .and_then(|i| i.v4)
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                if cfg.sources.is_empty() {
                    let mreq = libc::ip_mreqn {
                        imr_multiaddr: in_addr(g),
                        imr_address: in_addr(local),
                        imr_ifindex: index as i32,
                    };
                    setsockopt(&sock, libc::IPPROTO_IP, libc::IP_ADD_MEMBERSHIP, &mreq)
                        .map_err(|e| ctx(e, join_what(cfg)))?;
                }
            }
            IpAddr::V6(g) => {
                sock.set_multicast_all_v6(false)?;
                sock.bind(&SocketAddr::V6(SocketAddrV6::new(g, cfg.port, 0, index)).into())
                    .map_err(|e| ctx(e, format!("bind [{g}]:{}", cfg.port)))?;
                if cfg.sources.is_empty() {
                    sock.join_multicast_v6(&g, index)
                        .map_err(|e| ctx(e, join_what(cfg)))?;
                }
            }
        }
        for &source in &cfg.sources {
            join_source(&sock, cfg.group, source, index)
                .map_err(|e| ctx(e, format!("{} from source {source}", join_what(cfg))))?;
        }
        Ok(RecvSocket { sock, warnings })
    }

    /// Things the user should know that did not stop the socket from opening (a capped
    /// receive buffer).
    pub fn warnings(&self) -> &[String] {
        &self.warnings
    }

    /// The socket, for a receive loop to own.
    pub fn into_socket(self) -> Socket {
        self.sock
    }

    /// The socket, for inspection.
    pub fn socket(&self) -> &Socket {
        &self.sock
    }
}

/// A socket connected to `group:port`, so its local address is the real source address
/// receivers will see.
#[derive(Debug)]
pub struct SendSocket {
    sock: Socket,
    local: SocketAddr,
    /// `None` when connected (plain `send`), else where `send` addresses datagrams.
    dest: Option<SocketAddr>,
}

impl SendSocket {
    /// Opens a socket on an ephemeral port with the configured interface, TTL / hop limit
    /// and loopback, connected to the group.
    pub fn open(cfg: &McastConfig) -> io::Result<SendSocket> {
        SendSocket::open_with(cfg, true)
    }

    /// Like [`SendSocket::open`], but not connected, so unicast replies from anyone
    /// (`ping` answers) reach it. [`SendSocket::local_addr`] may then show the
    /// unspecified address with the real port. Not for [`crate::send::BatchSender`],
    /// which needs a connected socket.
    pub fn open_for_replies(cfg: &McastConfig) -> io::Result<SendSocket> {
        SendSocket::open_with(cfg, false)
    }

    fn open_with(cfg: &McastConfig, connect: bool) -> io::Result<SendSocket> {
        cfg.validate()
            .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
        let iface = cfg.iface.as_deref().map(Iface::resolve).transpose()?;
        let index = iface.as_ref().map_or(0, |i| i.index);
        let sock = new_udp(cfg.group)?;
        let dest = match cfg.group {
            IpAddr::V4(g) => {
                let local = iface
                    .as_ref()
                    .and_then(|i| i.v4)
                    .unwrap_or(Ipv4Addr::UNSPECIFIED);
                sock.bind(&SocketAddr::V4(SocketAddrV4::new(local, 0)).into())
                    .map_err(|e| ctx(e, format!("bind {local}:0")))?;
                if iface.is_some() {
                    let mreq = libc::ip_mreqn {
                        imr_multiaddr: in_addr(Ipv4Addr::UNSPECIFIED),
                        imr_address: in_addr(local),
                        imr_ifindex: index as i32,
                    };
                    setsockopt(&sock, libc::IPPROTO_IP, libc::IP_MULTICAST_IF, &mreq)
                        .map_err(|e| ctx(e, "set the sending interface".into()))?;
                }
                sock.set_multicast_ttl_v4(cfg.ttl)?;
                sock.set_multicast_loop_v4(cfg.loopback)?;
                SocketAddr::V4(SocketAddrV4::new(g, cfg.port))
            }
            IpAddr::V6(g) => {
                sock.bind(
                    &SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::UNSPECIFIED, 0, 0, 0)).into(),
                )?;
                if index != 0 {
                    sock.set_multicast_if_v6(index)
                        .map_err(|e| ctx(e, "set the sending interface".into()))?;
                }
                sock.set_multicast_hops_v6(cfg.ttl)?;
                sock.set_multicast_loop_v6(cfg.loopback)?;
                SocketAddr::V6(SocketAddrV6::new(g, cfg.port, 0, index))
            }
        };
        // Connecting fixes the source address now, so the engine can recognise (and
        // drop, if asked) its own datagrams.
        if connect {
            sock.connect(&dest.into())
                .map_err(|e| ctx(e, format!("connect to {dest}")))?;
        }
        let local = sock
            .local_addr()?
            .as_socket()
            .ok_or_else(|| io::Error::other("send socket has no IP local address"))?;
        Ok(SendSocket {
            sock,
            local,
            dest: (!connect).then_some(dest),
        })
    }

    /// The source address receivers see on this socket's datagrams.
    pub fn local_addr(&self) -> SocketAddr {
        self.local
    }

    /// Sends one datagram to the group.
    pub fn send(&self, datagram: &[u8]) -> io::Result<()> {
        match self.dest {
            None => self.sock.send(datagram).map(drop),
            Some(dest) => self.sock.send_to(datagram, &dest.into()).map(drop),
        }
    }

    /// A `std` handle on the same socket (for receiving replies with timeouts).
    pub fn try_clone_udp(&self) -> io::Result<std::net::UdpSocket> {
        Ok(self.sock.try_clone()?.into())
    }

    /// The socket, for batch senders and inspection.
    pub fn socket(&self) -> &Socket {
        &self.sock
    }
}

fn new_udp(group: IpAddr) -> io::Result<Socket> {
    let domain = if group.is_ipv4() {
        Domain::IPV4
    } else {
        Domain::IPV6
    };
    Socket::new(domain, Type::DGRAM.cloexec(), Some(Protocol::UDP))
}

/// Prefixes an OS error with what was being attempted, keeping its kind.
fn ctx(e: io::Error, what: String) -> io::Error {
    io::Error::new(e.kind(), format!("{what}: {e}"))
}

fn join_what(cfg: &McastConfig) -> String {
    match &cfg.iface {
        Some(i) => format!("join {} on interface '{i}'", cfg.group),
        None => format!("join {} (no interface given)", cfg.group),
    }
}

fn in_addr(a: Ipv4Addr) -> libc::in_addr {
    libc::in_addr {
        s_addr: u32::from_ne_bytes(a.octets()),
    }
}

/// `setsockopt` for the options socket2 does not wrap.
fn setsockopt<T>(sock: &Socket, level: i32, name: i32, val: &T) -> io::Result<()> {
    // SAFETY: `val` points to a live, initialised `T` of the length passed; the kernel
    // only reads it.
    let rc = unsafe {
        libc::setsockopt(
            sock.as_raw_fd(),
            level,
            name,
            val as *const T as *const libc::c_void,
            mem::size_of::<T>() as libc::socklen_t,
        )
    };
    if rc == 0 {
        Ok(())
    } else {
        Err(io::Error::last_os_error())
    }
}

/// Asks for `want` bytes, forcing past `rmem_max` when privileged, and records a warning
/// when the kernel gave less.
fn set_rcvbuf(sock: &Socket, want: usize, warnings: &mut Vec<String>) -> io::Result<()> {
    let val = want.min(i32::MAX as usize / 2) as i32;
    if setsockopt(sock, libc::SOL_SOCKET, libc::SO_RCVBUFFORCE, &val).is_err() {
        // Without CAP_NET_ADMIN the kernel silently caps at net.core.rmem_max.
        sock.set_recv_buffer_size(val as usize)?;
    }
    let got = sock.recv_buffer_size()?;
    warnings.extend(rcvbuf_warning(want, got));
    Ok(())
}

/// The warning for a receive buffer of `got` bytes (as `SO_RCVBUF` reads back, which
/// the kernel doubles for its bookkeeping) when `want` was asked for.
pub(crate) fn rcvbuf_warning(want: usize, got: usize) -> Option<String> {
    (got < want).then(|| {
        format!(
            "receive buffer capped at {} (asked {}); raise net.core.rmem_max \
             (sysctl -w net.core.rmem_max={want}) or run with CAP_NET_ADMIN",
            human(got),
            human(want)
        )
    })
}

fn human(n: usize) -> String {
    if n >= 1 << 20 && n % (1 << 20) == 0 {
        format!("{} MiB", n >> 20)
    } else if n >= 1 << 10 {
        format!("{} KiB", n >> 10)
    } else {
        format!("{n} B")
    }
}

fn sockaddr_storage(ip: IpAddr) -> libc::sockaddr_storage {
    let sa = SockAddr::from(SocketAddr::new(ip, 0));
    // SAFETY: sockaddr_storage is plain old data; all zeroes is a valid value.
    let mut out: libc::sockaddr_storage = unsafe { mem::zeroed() };
    // SAFETY: `sa` holds `sa.len()` initialised bytes, at most sizeof(sockaddr_storage),
    // and the two regions are distinct.
    unsafe {
        std::ptr::copy_nonoverlapping(
            sa.as_ptr() as *const u8,
            &mut out as *mut _ as *mut u8,
            sa.len() as usize,
        );
    }
    out
}

/// A source-specific join through the protocol-independent `MCAST_JOIN_SOURCE_GROUP`,
/// which takes an interface index for both families.
fn join_source(sock: &Socket, group: IpAddr, source: IpAddr, index: u32) -> io::Result<()> {
    let req = libc::group_source_req {
        gsr_interface: index,
        gsr_group: sockaddr_storage(group),
        gsr_source: sockaddr_storage(source),
    };
    let level = if group.is_ipv4() {
        libc::IPPROTO_IP
    } else {
        libc::IPPROTO_IPV6
    };
    setsockopt(sock, level, libc::MCAST_JOIN_SOURCE_GROUP, &req)
}

/// An interface resolved from a name or an address.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Iface {
    /// Kernel interface index.
    pub index: u32,
    /// Its name.
    pub name: String,
    /// Its (first, or the given) IPv4 address, if it has one.
    pub v4: Option<Ipv4Addr>,
}

impl Iface {
    /// Resolves `"lo"`, `"eth0"` or an address such as `"192.0.2.7"` to an interface.
    pub(crate) fn resolve(spec: &str) -> io::Result<Iface> {
        let not_found = |what: String| io::Error::new(io::ErrorKind::NotFound, what);
        let want_addr = spec.parse::<IpAddr>().ok();
        let mut found: Option<Iface> = None;
        for (name, addr) in if_addrs()? {
            match want_addr {
                Some(a) if addr == Some(a) => {
                    let v4 = match a {
                        IpAddr::V4(v4) => Some(v4),
                        IpAddr::V6(_) => None,
                    };
                    found = Some(Iface { index: 0, name, v4 });
                    break;
                }
                None if name == spec => {
                    let f = found.get_or_insert_with(|| Iface {
                        index: 0,
                        name: name.clone(),
                        v4: None,
                    });
                    if let (None, Some(IpAddr::V4(v4))) = (f.v4, addr) {
                        f.v4 = Some(v4);
                    }
                }
                _ => {}
            }
        }
        let mut iface = match (found, want_addr) {
            (Some(i), _) => i,
            (None, Some(a)) => {
                return Err(not_found(format!(
                    "no interface has address {a} (give an interface name or one of its addresses)"
                )))
            }
            (None, None) => return Err(not_found(format!("interface '{spec}' not found"))),
        };
        let cname = CString::new(iface.name.clone())
            .map_err(|_| not_found(format!("interface '{spec}' not found")))?;
        // SAFETY: `cname` is a valid NUL-terminated string for the duration of the call.
        iface.index = unsafe { libc::if_nametoindex(cname.as_ptr()) };
        if iface.index == 0 {
            return Err(not_found(format!("interface '{}' not found", iface.name)));
        }
        Ok(iface)
    }
}

/// Every (interface name, address) pair from `getifaddrs`; interfaces without an IP
/// address appear once with `None`.
fn if_addrs() -> io::Result<Vec<(String, Option<IpAddr>)>> {
    let mut head: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs writes a list head we free below with freeifaddrs.
    if unsafe { libc::getifaddrs(&mut head) } != 0 {
        return Err(io::Error::last_os_error());
    }
    let mut out = Vec::new();
    let mut cur = head;
    while !cur.is_null() {
        // SAFETY: `cur` is a node of the list getifaddrs returned, not yet freed.
        let ifa = unsafe { &*cur };
        // SAFETY: ifa_name is a NUL-terminated string owned by the list.
        let name = unsafe { CStr::from_ptr(ifa.ifa_name) }
            .to_string_lossy()
            .into_owned();
        let addr = if ifa.ifa_addr.is_null() {
            None
        } else {
            // SAFETY: a non-null ifa_addr points to a sockaddr whose family says how
            // long it is; we read the matching struct only.
            unsafe {
                match (*ifa.ifa_addr).sa_family as i32 {
                    libc::AF_INET => {
                        let sin = &*(ifa.ifa_addr as *const libc::sockaddr_in);
                        Some(IpAddr::V4(Ipv4Addr::from(
                            sin.sin_addr.s_addr.to_ne_bytes(),
                        )))
                    }
                    libc::AF_INET6 => {
                        let sin6 = &*(ifa.ifa_addr as *const libc::sockaddr_in6);
                        Some(IpAddr::V6(Ipv6Addr::from(sin6.sin6_addr.s6_addr)))
                    }
                    _ => None,
                }
            }
        };
        out.push((name, addr));
        cur = ifa.ifa_next;
    }
    // SAFETY: `head` came from getifaddrs and is freed exactly once.
    unsafe { libc::freeifaddrs(head) };
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn defaults_are_python_cans() {
        assert_eq!(
            DEFAULT_GROUP_V6.to_string(),
            "ff15:7079:7468:6f6e:6465:6d6f:6d63:6173"
        );
        let c = McastConfig::loopback_v4(DEFAULT_PORT);
        assert_eq!(c.group, IpAddr::V4(Ipv4Addr::new(239, 74, 163, 2)));
        assert_eq!((c.ttl, c.iface.as_deref()), (0, Some("lo")));
        assert!(c.validate().is_ok());
    }

    #[test]
    fn validate_rejects_mixed_families_and_unicast_groups() {
        let v6 = IpAddr::V6(DEFAULT_GROUP_V6);
        let lo: IpAddr = "127.0.0.1".parse().unwrap();
        let mut c = McastConfig::new("10.0.0.1".parse().unwrap(), 1);
        let e = c.validate().unwrap_err();
        assert_eq!(
            e,
            McastConfigError::NotMulticast {
                group: "10.0.0.1".parse().unwrap()
            }
        );
        assert!(e.to_string().contains("10.0.0.1 is not a multicast"), "{e}");
        c.group = v6;
        c.iface = Some("127.0.0.1".into());
        let e = c.validate().unwrap_err();
        assert_eq!(
            e,
            McastConfigError::IfaceFamily {
                iface: lo,
                group: v6
            }
        );
        assert!(e.to_string().contains("127.0.0.1 is IPv4 but group"), "{e}");
        c.iface = None;
        c.sources = vec![lo];
        let e = c.validate().unwrap_err();
        assert_eq!(
            e,
            McastConfigError::SourceFamily {
                source: lo,
                group: v6
            }
        );
        assert!(e.to_string().contains("source 127.0.0.1 is IPv4"), "{e}");
        c.sources = vec!["ff02::1".parse().unwrap()];
        let e = c.validate().unwrap_err();
        assert!(e.to_string().contains("not a unicast sender"), "{e}");
        c.sources = vec!["fe80::1".parse().unwrap()];
        assert!(c.validate().is_ok());
        c.ttl = 256;
        let e = c.validate().unwrap_err();
        assert_eq!(e, McastConfigError::TtlTooLarge { ttl: 256 });
        assert_eq!(e.to_string(), "TTL / hop limit 256 is above 255");
        // What `RecvSocket::open` makes of it: an InvalidInput error with the same text.
        let io = RecvSocket::open(&c).err().unwrap();
        assert_eq!(io.kind(), io::ErrorKind::InvalidInput);
        assert_eq!(io.to_string(), e.to_string());
    }

    #[test]
    fn lo_resolves_by_name_and_address() {
        let by_name = Iface::resolve("lo").unwrap();
        assert_eq!(by_name.v4, Some(Ipv4Addr::LOCALHOST));
        assert!(by_name.index > 0);
        assert_eq!(Iface::resolve("127.0.0.1").unwrap(), by_name);
        let e = Iface::resolve("nosuchif0").unwrap_err();
        assert_eq!(e.to_string(), "interface 'nosuchif0' not found");
        let e = Iface::resolve("192.0.2.77").unwrap_err();
        assert!(e
            .to_string()
            .contains("no interface has address 192.0.2.77"));
    }

    #[test]
    fn rcvbuf_warning_names_both_sizes() {
        assert_eq!(rcvbuf_warning(32 << 20, 64 << 20), None);
        let w = rcvbuf_warning(32 << 20, 425_984).unwrap();
        assert!(
            w.starts_with("receive buffer capped at 416 KiB (asked 32 MiB)"),
            "{w}"
        );
        assert!(w.contains("net.core.rmem_max"));
    }
}
