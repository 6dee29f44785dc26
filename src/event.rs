//! What the receive side hands on: a frame, or news of a loss. The one event type the
//! engine's rings carry and the file readers and writers take, so neither depends on the
//! other (or on threads).

#![warn(missing_docs, missing_debug_implementations, unreachable_pub)]

use crate::frame::{CanFrame, SenderAddr};

/// What a consumer receives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Event {
    /// A decoded frame, with the kernel's receive timestamp and the sender's address.
    Frame(CanFrame),
    /// A sender's datagrams went missing (native format sequence gap).
    Loss {
        /// The sender whose sequence has the gap.
        sender: SenderAddr,
        /// Datagrams missing.
        lost: u64,
        /// When the datagram after the gap arrived (ns since the Unix epoch).
        timestamp_ns: u64,
    },
    /// The kernel dropped `count` datagrams on this socket (its SO_RXQ_OVFL counter grew)
    /// before the datagram received at `timestamp_ns`. Sent to every consumer.
    KernelDrops {
        /// Datagrams dropped since the last such event.
        count: u64,
        /// When the drops were noticed (ns since the Unix epoch).
        timestamp_ns: u64,
    },
}

impl Default for Event {
    /// An empty frame; handy to initialise a
    /// [`ConsumerHandle::pop_batch`](crate::engine::ConsumerHandle::pop_batch) buffer.
    fn default() -> Self {
        Event::Frame(CanFrame::EMPTY)
    }
}
