//! Raw multicast sockets on loopback for the receive-path tests that bypass canmc's
//! socket layer: the group joined on 127.0.0.1, senders with TTL 0, so nothing leaves
//! `lo`.

// Each test crate compiles this module on its own and uses a different subset of it;
// what one crate does not call would warn as dead code there.
#![allow(dead_code)]

use std::net::{Ipv4Addr, SocketAddrV4};
use std::os::fd::AsRawFd;

use socket2::{Domain, Protocol, Socket, Type};

/// python-can's default IPv4 group.
pub const GROUP: Ipv4Addr = Ipv4Addr::new(239, 74, 163, 2);

/// `setsockopt(level, name, value)` for an integer option; panics on failure.
#[track_caller]
pub fn setsockopt_int(s: &Socket, level: i32, name: i32, value: i32) {
    // SAFETY: passing a pointer to a live i32 and its exact size.
    let rc = unsafe {
        libc::setsockopt(
            s.as_raw_fd(),
            level,
            name,
            &value as *const i32 as *const libc::c_void,
            std::mem::size_of::<i32>() as libc::socklen_t,
        )
    };
    assert_eq!(
        rc,
        0,
        "setsockopt({level}, {name}): {}",
        std::io::Error::last_os_error()
    );
}

/// A socket bound to [`GROUP`]:`port`, the group joined on loopback, with kernel receive
/// timestamps and the drop counter switched on (as canmc's receive socket has them).
pub fn receiver(port: u16) -> Socket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.set_reuse_address(true).unwrap();
    s.set_reuse_port(true).unwrap();
    s.bind(&SocketAddrV4::new(GROUP, port).into()).unwrap();
    s.join_multicast_v4(&GROUP, &Ipv4Addr::LOCALHOST).unwrap();
    setsockopt_int(&s, libc::SOL_SOCKET, libc::SO_TIMESTAMPNS, 1);
    setsockopt_int(&s, libc::SOL_SOCKET, libc::SO_RXQ_OVFL, 1);
    s
}

/// A sender on 127.0.0.1 whose multicast stays on `lo` (TTL 0, loopback on).
pub fn sender() -> Socket {
    let s = Socket::new(Domain::IPV4, Type::DGRAM, Some(Protocol::UDP)).unwrap();
    s.bind(&SocketAddrV4::new(Ipv4Addr::LOCALHOST, 0).into())
        .unwrap();
    s.set_multicast_if_v4(&Ipv4Addr::LOCALHOST).unwrap();
    s.set_multicast_ttl_v4(0).unwrap();
    s.set_multicast_loop_v4(true).unwrap();
    s
}

/// A [`sender`] whose every send is a UDP GSO message (`UDP_SEGMENT` as a socket
/// option): the kernel cuts each payload into datagrams of `segment` bytes, the last
/// one possibly shorter, and sends them in one go.
pub fn gso_sender(segment: u16) -> Socket {
    let s = sender();
    setsockopt_int(&s, libc::SOL_UDP, libc::UDP_SEGMENT, i32::from(segment));
    s
}
