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
#![warn(missing_docs, unreachable_pub, missing_debug_implementations)]
#![deny(unsafe_op_in_unsafe_fn)]
#![warn(clippy::undocumented_unsafe_blocks)]
pub mod bus;
pub mod convert;
pub mod engine;
pub mod event;
pub mod filter;
pub mod frame;
pub mod gen;
pub mod ping;
pub mod record;
pub mod recv;
pub mod replay;
pub mod ring;
pub mod send;
pub mod seq;
pub mod socket;
pub mod stats;
pub mod summary;
mod sys;
pub mod view;
pub mod wire;

pub use event::Event;
pub use frame::{CanFrame, Channel, ChannelRef, Direction, FrameError, SenderAddr};
pub use sys::now_ns;
pub use wire::{DecodeError, WireFormat};
