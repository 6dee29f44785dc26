//! canmc: CAN and CAN FD frames over UDP multicast, wire-compatible with python-can's
//! `udp_multicast` interface.
//!
//! The data path, module by module:
//!
//! ```text
//! socket ──► recv (io_uring | recvmmsg) ──► wire (decode) ──► engine ──► ring ──► consumers
//!                                                               │
//! frame (the one frame type everything carries)                 └──► record (.cmc)
//! ```
pub mod bus;
pub mod canif;
pub mod convert;
pub mod engine;
pub mod filter;
pub mod frame;
pub mod gen;
pub mod record;
pub mod recv;
pub mod replay;
pub mod ring;
pub mod send;
pub mod seq;
pub mod socket;
pub mod summary;
pub mod wire;

pub use frame::{CanFrame, Channel, ChannelRef, Direction, FrameError, SenderAddr};
pub use wire::{DecodeError, WireFormat};
