//! SocketCAN interfaces (`can0`, `vcan0`): raw CAN sockets with CAN FD, error frames,
//! kernel timestamps and drop counts, batched receive and send, and the bridge between an
//! interface and the multicast group (SPEC §12, docs/socketcan.md).
//!
//! ```text
//! CanSocket ──► CanReceiver (recvmmsg) ──► CanFrame ──► FrameSender ──► group
//! group ──► Engine ──► CanFrame ──► CanSender (sendmmsg) ──► CanSocket
//! ```
//!
//! Own code over libc rather than the `socketcan` crate: that crate reads one frame per
//! `recvmsg` and writes one per `write`, and does not hand out `SO_RXQ_OVFL` or the
//! `MSG_CONFIRM`/`MSG_DONTROUTE` flags a bridge needs to avoid loops (docs/socketcan.md).

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

pub mod bridge;
pub mod capture;
pub mod election;
pub mod raw;
pub mod rx;
pub mod socket;
pub mod tx;

use std::fmt;
use std::io;

pub use bridge::{Bridge, BridgeConfig, BridgeDirection, BridgeError, BridgeStats, BridgeSummary};
pub use capture::{capture, CaptureOptions, CaptureStats};
pub use raw::KernelFrame;
pub use rx::{CanReceiver, CanRxMeta};
pub use socket::{CanSocket, CanSocketConfig};
pub use tx::CanSender;

/// Why a CAN interface could not be used. Each variant's message is one line that says
/// what to do.
#[derive(Debug)]
pub enum CanIfError {
    /// `socket(AF_CAN)` failed with `EAFNOSUPPORT`: the kernel has no SocketCAN (or the
    /// `can`/`can_raw` modules are not loaded).
    NoCanInKernel,
    /// No interface of that name.
    NoSuchInterface(String),
    /// The interface exists but is not a CAN interface.
    NotCan(String),
    /// The interface is down.
    InterfaceDown(String),
    /// The system refused the socket or an option (a missing capability or a policy).
    PermissionDenied {
        /// Interface name.
        iface: String,
        /// The call that was refused.
        op: &'static str,
    },
    /// Any other system error.
    Io {
        /// The call that failed.
        op: &'static str,
        /// The system error.
        source: io::Error,
    },
}

impl fmt::Display for CanIfError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            CanIfError::NoCanInKernel => f.write_str(
                "this kernel has no SocketCAN (socket(AF_CAN) is not supported): load it with \
                 `modprobe can_raw` or use a kernel built with CONFIG_CAN",
            ),
            CanIfError::NoSuchInterface(i) => write!(
                f,
                "no CAN interface {i:?} (see `ip link`; a virtual one: `ip link add dev {i} type vcan`)"
            ),
            CanIfError::NotCan(i) => write!(f, "interface {i:?} is not a CAN interface"),
            CanIfError::InterfaceDown(i) => write!(
                f,
                "CAN interface {i:?} is down (bring it up: `ip link set {i} up`, with a bitrate for real hardware)"
            ),
            CanIfError::PermissionDenied { iface, op } => write!(
                f,
                "permission denied opening CAN interface {iface:?} ({op}): run as root or give \
                 the program CAP_NET_RAW (setcap cap_net_raw+ep)"
            ),
            CanIfError::Io { op, source } => write!(f, "CAN socket: {op}: {source}"),
        }
    }
}

impl std::error::Error for CanIfError {
    fn source(&self) -> Option<&(dyn std::error::Error + 'static)> {
        match self {
            CanIfError::Io { source, .. } => Some(source),
            _ => None,
        }
    }
}

impl From<CanIfError> for io::Error {
    fn from(e: CanIfError) -> io::Error {
        let kind = match &e {
            CanIfError::NoCanInKernel => io::ErrorKind::Unsupported,
            CanIfError::NoSuchInterface(_) => io::ErrorKind::NotFound,
            CanIfError::PermissionDenied { .. } => io::ErrorKind::PermissionDenied,
            CanIfError::Io { source, .. } => source.kind(),
            _ => io::ErrorKind::Other,
        };
        io::Error::new(kind, e)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// On a kernel with CAN the open fails for the name; without CAN, for the kernel.
    /// Either way the error is one of ours with a one-line message.
    #[test]
    fn opening_a_missing_interface_says_why() {
        let e = CanSocket::open("canmc-nope0", &CanSocketConfig::default()).unwrap_err();
        assert!(
            matches!(
                e,
                CanIfError::NoCanInKernel | CanIfError::NoSuchInterface(_)
            ),
            "{e:?}"
        );
        assert!(!e.to_string().contains('\n'));
    }

    #[test]
    fn a_non_can_interface_is_named() {
        match CanSocket::open("lo", &CanSocketConfig::default()) {
            Err(CanIfError::NoCanInKernel) | Err(CanIfError::NotCan(_)) => {}
            other => panic!("{other:?}"),
        }
    }
}
