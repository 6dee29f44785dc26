//! Parsing of what recvmsg returns besides the payload: control messages (kernel
//! timestamp, drop counter, UDP GRO segment size) and the source `sockaddr`. Safe byte parsing, shared by
//! the io_uring and recvmmsg paths.

use std::net::{Ipv4Addr, Ipv6Addr, SocketAddr, SocketAddrV4, SocketAddrV6};

use super::RecvMeta;
use crate::frame::SenderAddr;

/// Control buffer size that holds a timestamp (32 bytes with its header), a drop counter
/// and a UDP GRO segment size (24 each), with room to spare. A GRO size lost to a short
/// buffer would leave a super-datagram unsplit.
pub(crate) const CONTROL_LEN: usize = 128;

const HDR_LEN: usize = std::mem::size_of::<libc::cmsghdr>();
const ALIGN: usize = std::mem::size_of::<usize>();

fn align(n: usize) -> usize {
    (n + ALIGN - 1) & !(ALIGN - 1)
}

fn read_usize(b: &[u8]) -> usize {
    const N: usize = std::mem::size_of::<usize>();
    let mut a = [0u8; N];
    a.copy_from_slice(&b[..N]);
    usize::from_ne_bytes(a)
}

fn read_i32(b: &[u8]) -> i32 {
    i32::from_ne_bytes([b[0], b[1], b[2], b[3]])
}

fn read_i64(b: &[u8]) -> i64 {
    let mut a = [0u8; 8];
    a.copy_from_slice(&b[..8]);
    i64::from_ne_bytes(a)
}

/// Reads `SCM_TIMESTAMPNS`, `SO_RXQ_OVFL` and `UDP_GRO` out of a control buffer into
/// `meta`.
/// Unknown or malformed control messages are ignored (the kernel wrote them).
pub(crate) fn parse_control(control: &[u8], meta: &mut RecvMeta) {
    let mut off = 0;
    while off + HDR_LEN <= control.len() {
        let hdr = &control[off..];
        let len = read_usize(hdr);
        let level = read_i32(&hdr[std::mem::size_of::<usize>()..]);
        let kind = read_i32(&hdr[std::mem::size_of::<usize>() + 4..]);
        if len < HDR_LEN || off + len > control.len() {
            return;
        }
        let data = &control[off + HDR_LEN..off + len];
        if level == libc::SOL_SOCKET {
            if kind == libc::SCM_TIMESTAMPNS && data.len() >= 16 {
                let secs = read_i64(data);
                let nanos = read_i64(&data[8..]);
                if secs >= 0 && (0..1_000_000_000).contains(&nanos) {
                    meta.timestamp_ns = secs as u64 * 1_000_000_000 + nanos as u64;
                }
            } else if kind == libc::SO_RXQ_OVFL && data.len() >= 4 {
                meta.kernel_drops = u32::from_ne_bytes([data[0], data[1], data[2], data[3]]);
            }
        } else if level == libc::SOL_UDP && kind == libc::UDP_GRO && data.len() >= 4 {
            // An int; the kernel's gso_size is 16 bits, anything else is not a size.
            meta.gro_size = u16::try_from(read_i32(data)).unwrap_or(0);
        }
        off += align(len);
    }
}

/// Decodes a `sockaddr_in` or `sockaddr_in6` from raw bytes; anything else is
/// [`SenderAddr::NONE`].
pub(crate) fn parse_sockaddr(raw: &[u8]) -> SenderAddr {
    if raw.len() < 2 {
        return SenderAddr::NONE;
    }
    let family = u16::from_ne_bytes([raw[0], raw[1]]) as i32;
    if family == libc::AF_INET && raw.len() >= 8 {
        let port = u16::from_be_bytes([raw[2], raw[3]]);
        let ip = Ipv4Addr::new(raw[4], raw[5], raw[6], raw[7]);
        SocketAddr::V4(SocketAddrV4::new(ip, port)).into()
    } else if family == libc::AF_INET6 && raw.len() >= 24 {
        let port = u16::from_be_bytes([raw[2], raw[3]]);
        let mut octets = [0u8; 16];
        octets.copy_from_slice(&raw[8..24]);
        SocketAddr::V6(SocketAddrV6::new(Ipv6Addr::from(octets), port, 0, 0)).into()
    } else {
        SenderAddr::NONE
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn cmsg(level: i32, kind: i32, data: &[u8]) -> Vec<u8> {
        let len = HDR_LEN + data.len();
        let mut v = Vec::new();
        v.extend_from_slice(&len.to_ne_bytes());
        v.extend_from_slice(&level.to_ne_bytes());
        v.extend_from_slice(&kind.to_ne_bytes());
        v.extend_from_slice(data);
        v.resize(align(len), 0);
        v
    }

    #[test]
    fn reads_timestamp_and_drops() {
        let mut ts = Vec::new();
        ts.extend_from_slice(&1_700_000_000i64.to_ne_bytes());
        ts.extend_from_slice(&123_456_789i64.to_ne_bytes());
        let mut buf = cmsg(libc::SOL_SOCKET, libc::SCM_TIMESTAMPNS, &ts);
        buf.extend(cmsg(
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            &7u32.to_ne_bytes(),
        ));
        let mut meta = RecvMeta::default();
        parse_control(&buf, &mut meta);
        assert_eq!(meta.timestamp_ns, 1_700_000_000_123_456_789);
        assert_eq!(meta.kernel_drops, 7);
    }

    #[test]
    fn reads_gro_segment_size() {
        let mut buf = cmsg(libc::SOL_UDP, libc::UDP_GRO, &1400i32.to_ne_bytes());
        buf.extend(cmsg(
            libc::SOL_SOCKET,
            libc::SO_RXQ_OVFL,
            &3u32.to_ne_bytes(),
        ));
        let mut meta = RecvMeta::default();
        parse_control(&buf, &mut meta);
        assert_eq!((meta.gro_size, meta.kernel_drops), (1400, 3));
        // Not a 16-bit size: ignored, the receive stays one datagram.
        let mut meta = RecvMeta::default();
        parse_control(
            &cmsg(libc::SOL_UDP, libc::UDP_GRO, &(-1i32).to_ne_bytes()),
            &mut meta,
        );
        assert_eq!(meta.gro_size, 0);
        // The same type number at another level is something else.
        parse_control(
            &cmsg(libc::SOL_SOCKET, libc::UDP_GRO, &1400i32.to_ne_bytes()),
            &mut meta,
        );
        assert_eq!(meta.gro_size, 0);
    }

    #[test]
    fn control_len_holds_all_three() {
        let space = |data: usize| align(HDR_LEN + data);
        assert!(space(16) + space(4) + space(4) <= CONTROL_LEN);
    }

    #[test]
    fn garbage_control_is_ignored() {
        let mut meta = RecvMeta::default();
        parse_control(&[0xFF; 40], &mut meta);
        parse_control(&[1, 2, 3], &mut meta);
        assert_eq!(meta, RecvMeta::default());
    }

    #[test]
    fn sockaddr_v4_and_v6() {
        // SAFETY: sockaddr_in is plain old data; zeroed is a valid value.
        let mut sin: libc::sockaddr_in = unsafe { std::mem::zeroed() };
        sin.sin_family = libc::AF_INET as u16;
        sin.sin_port = 43113u16.to_be();
        sin.sin_addr.s_addr = u32::from_ne_bytes([127, 0, 0, 1]);
        // SAFETY: reading the bytes of a fully initialised POD struct.
        let raw = unsafe {
            std::slice::from_raw_parts(
                &sin as *const _ as *const u8,
                std::mem::size_of::<libc::sockaddr_in>(),
            )
        };
        assert_eq!(
            parse_sockaddr(raw).get(),
            Some("127.0.0.1:43113".parse().unwrap())
        );
        assert_eq!(parse_sockaddr(&[]), SenderAddr::NONE);
    }
}
