//! The kernel's frame layouts (`struct can_frame`, `struct canfd_frame`) and their
//! mapping to and from [`CanFrame`], both ways, without allocating.

use crate::frame::{flags, CanFrame, Direction};

/// `CAN_EFF_FLAG`: 29-bit identifier.
pub const EFF_FLAG: u32 = 0x8000_0000;
/// `CAN_RTR_FLAG`: remote transmission request.
pub const RTR_FLAG: u32 = 0x4000_0000;
/// `CAN_ERR_FLAG`: error frame.
pub const ERR_FLAG: u32 = 0x2000_0000;
/// `CAN_EFF_MASK`: the bits of an extended identifier (and of error classes).
pub const EFF_MASK: u32 = 0x1FFF_FFFF;
/// `CAN_SFF_MASK`: the bits of a standard identifier.
pub const SFF_MASK: u32 = 0x7FF;
/// `CAN_MTU`: bytes of a classic frame on a raw socket.
pub const CAN_MTU: usize = 16;
/// `CANFD_MTU`: bytes of a CAN FD frame on a raw socket.
pub const CANFD_MTU: usize = 72;
/// `CANFD_BRS`: bit rate switch.
pub const CANFD_BRS: u8 = 0x01;
/// `CANFD_ESI`: error state indicator.
pub const CANFD_ESI: u8 = 0x02;
/// `CANFD_FDF`: marks a CAN FD frame in `canfd_frame.flags` (kernel 5.14+; older kernels
/// tell FD frames by their size alone).
pub const CANFD_FDF: u8 = 0x04;

/// One frame as the kernel reads and writes it: `struct canfd_frame`, which starts with
/// the same bytes as `struct can_frame` (classic frames use the first [`CAN_MTU`] bytes;
/// byte 7 is then `len8_dlc`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(C, align(8))]
pub struct KernelFrame {
    /// Identifier with [`EFF_FLAG`], [`RTR_FLAG`], [`ERR_FLAG`].
    pub can_id: u32,
    /// Payload length (classic: 0–8, the requested length of a remote frame).
    pub len: u8,
    /// CAN FD flags ([`CANFD_BRS`], [`CANFD_ESI`], [`CANFD_FDF`]); padding for classic.
    pub flags: u8,
    /// Reserved.
    pub res0: u8,
    /// Classic frames: the raw DLC 9–15 when `len` is 8 (`len8_dlc`); FD: reserved.
    pub len8_dlc: u8,
    /// Payload.
    pub data: [u8; 64],
}

const _: () = assert!(std::mem::size_of::<KernelFrame>() == CANFD_MTU);

impl KernelFrame {
    /// An all-zero frame, for buffers.
    pub const ZERO: KernelFrame = KernelFrame {
        can_id: 0,
        len: 0,
        flags: 0,
        res0: 0,
        len8_dlc: 0,
        data: [0; 64],
    };

    /// The frame in the kernel's layout, and how many bytes of it to write ([`CAN_MTU`] or
    /// [`CANFD_MTU`]).
    pub fn from_frame(f: &CanFrame) -> (KernelFrame, usize) {
        let mut k = KernelFrame::ZERO;
        k.can_id = if f.is_error() {
            ERR_FLAG | (f.id & EFF_MASK)
        } else if f.is_extended() {
            EFF_FLAG | (f.id & EFF_MASK)
        } else {
            f.id & SFF_MASK
        };
        if f.is_remote() {
            k.can_id |= RTR_FLAG;
        }
        k.len = f.len.min(64);
        if !f.is_remote() {
            let n = k.len as usize;
            k.data[..n].copy_from_slice(&f.data[..n]);
        }
        if f.is_fd() {
            k.flags = CANFD_FDF
                | if f.brs() { CANFD_BRS } else { 0 }
                | if f.esi() { CANFD_ESI } else { 0 };
            (k, CANFD_MTU)
        } else {
            k.len = k.len.min(8);
            if (9..=15).contains(&f.raw_dlc) && k.len == 8 {
                k.len8_dlc = f.raw_dlc;
            }
            (k, CAN_MTU)
        }
    }

    /// The frame as canmc carries it, from the `nbytes` the kernel returned (CAN_MTU or
    /// CANFD_MTU). `None` for any other size (not a CAN frame).
    ///
    /// Out-of-range lengths from a misbehaving driver are clamped so the result always
    /// validates: classic to 8, FD to the next allowed length.
    pub fn to_frame(&self, nbytes: usize, timestamp_ns: u64, dir: Direction) -> Option<CanFrame> {
        let fd = match nbytes {
            CAN_MTU => false,
            CANFD_MTU => true,
            _ => return None,
        };
        let mut f = CanFrame::EMPTY;
        f.timestamp_ns = timestamp_ns;
        f.set_direction(dir);
        let id = self.can_id;
        if id & ERR_FLAG != 0 {
            // Error frames always carry EXTENDED, as the text parser makes them.
            f.flags = flags::ERROR | flags::EXTENDED;
            f.id = id & EFF_MASK;
            f.len = self.len.min(8);
            f.data[..f.len as usize].copy_from_slice(&self.data[..f.len as usize]);
            return Some(f);
        }
        if id & EFF_FLAG != 0 {
            f.flags |= flags::EXTENDED;
            f.id = id & EFF_MASK;
        } else {
            f.id = id & SFF_MASK;
        }
        if fd {
            f.flags |= flags::FD;
            if self.flags & CANFD_BRS != 0 {
                f.flags |= flags::BRS;
            }
            if self.flags & CANFD_ESI != 0 {
                f.flags |= flags::ESI;
            }
            f.len = crate::frame::dlc_to_len(crate::frame::len_to_dlc(self.len.min(64)));
            let n = f.len as usize;
            f.data[..n].copy_from_slice(&self.data[..n]);
            return Some(f);
        }
        f.len = self.len.min(8);
        if id & RTR_FLAG != 0 {
            f.flags |= flags::RTR;
        } else {
            let n = f.len as usize;
            f.data[..n].copy_from_slice(&self.data[..n]);
        }
        if f.len == 8 && (9..=15).contains(&self.len8_dlc) {
            f.raw_dlc = self.len8_dlc;
        }
        Some(f)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn round_trip(text: &str) {
        let f: CanFrame = text.parse().unwrap();
        let (k, n) = KernelFrame::from_frame(&f);
        let back = k.to_frame(n, 0, Direction::Rx).unwrap();
        assert_eq!(back, f, "{text}");
        back.validate().unwrap();
    }

    #[test]
    fn every_kind_maps_both_ways() {
        for t in [
            "123#DEADBEEF",
            "7FF#",
            "1FFFFFFF#0011223344556677",
            "123#R",
            "123#R5",
            "00000123#R8",
            "123##1AABBCCDDEEFF001122334455",
            "123##0",
            "12345678##3",
            "20000004#0000000000000000",
            "123#0011223344556677_C",
        ] {
            round_trip(t);
        }
    }

    #[test]
    fn kernel_bits_are_socketcans() {
        let f: CanFrame = "12345678##3AA".parse().unwrap();
        let (k, n) = KernelFrame::from_frame(&f);
        assert_eq!(n, CANFD_MTU);
        assert_eq!(k.can_id, EFF_FLAG | 0x12345678);
        assert_eq!(k.flags, CANFD_FDF | CANFD_BRS | CANFD_ESI);
        let f: CanFrame = "123#R4".parse().unwrap();
        let (k, n) = KernelFrame::from_frame(&f);
        assert_eq!((k.can_id, k.len, n), (RTR_FLAG | 0x123, 4, CAN_MTU));
        let f: CanFrame = "123#0011223344556677_D".parse().unwrap();
        assert_eq!(KernelFrame::from_frame(&f).0.len8_dlc, 13);
    }

    #[test]
    fn odd_sizes_and_lengths_from_the_kernel() {
        let mut k = KernelFrame::ZERO;
        assert!(k.to_frame(20, 0, Direction::Rx).is_none());
        k.len = 200;
        k.to_frame(CAN_MTU, 0, Direction::Rx)
            .unwrap()
            .validate()
            .unwrap();
        let fd = k.to_frame(CANFD_MTU, 0, Direction::Rx).unwrap();
        fd.validate().unwrap();
        assert_eq!(fd.len, 64);
        k.len = 9;
        assert_eq!(k.to_frame(CANFD_MTU, 0, Direction::Tx).unwrap().len, 12);
        assert_eq!(
            k.to_frame(CANFD_MTU, 0, Direction::Tx).unwrap().direction(),
            Direction::Tx
        );
    }
}
