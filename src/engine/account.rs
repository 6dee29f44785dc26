//! The per-datagram accounting every receiver shares, the engine's receive thread and
//! the blocking [`Bus`](crate::bus::Bus): count the datagram, notice kernel drops, filter
//! by sender, decode, follow native sequences, answer `ping` probes. What happens to a
//! frame next (a ring, an inline consumer, the bus's buffer) is the caller's
//! [`Deliver`].

use std::net::{IpAddr, SocketAddr};

use super::Stats;
use crate::event::Event;
use crate::frame::{CanFrame, SenderAddr};
use crate::ping::Responder;
use crate::recv::{DatagramSource, Decoded, Demux, RecvMeta};
use crate::seq::SeqEvent;
use crate::sys::now_ns;
use crate::wire::native::{Announcement, FrameBatch};

/// Where the frames and control events of [`Accounting::on_datagram`] go.
pub(crate) trait Deliver {
    /// One decoded frame (already counted in `stats.frames`); a refusal is the
    /// deliverer's to count (`stats.ring_drops`).
    fn frame(&mut self, frame: CanFrame, stats: &mut Stats);
    /// A loss or kernel-drop event (already counted).
    fn control(&mut self, event: Event);
    /// Whether native datagrams whose records are all valid frames should come whole,
    /// through [`Deliver::batch`], instead of frame by frame.
    fn takes_batches(&self) -> bool {
        false
    }
    /// A native datagram from `sender`, checked whole (its frames already counted in
    /// `stats.frames`). Called only when [`Deliver::takes_batches`] says so.
    fn batch(&mut self, _batch: &FrameBatch<'_>, _sender: &SenderAddr, _stats: &mut Stats) {}
    /// A bridge announcement (`canmc bridge --bus`); only a bridge wants it.
    fn announce(&mut self, _announcement: &Announcement, _sender: &SenderAddr) {}
}

/// Why a datagram was not accepted (counted as `filtered`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Refused {
    /// It came from the address we were told to ignore (our own sender).
    Own,
    /// Its sender is not among the accepted ones.
    Foreign,
}

/// Accepts or refuses datagrams by their sender. Addresses are compared canonically
/// (an IPv4-mapped IPv6 sender matches its IPv4 address).
#[derive(Debug, Clone, Default)]
pub(crate) struct SenderFilter {
    drop_from: Option<SocketAddr>,
    accept_only: Vec<IpAddr>,
}

impl SenderFilter {
    /// Refuses `drop_from` and, if `accept_only` is not empty, every sender not in it.
    pub(crate) fn new(drop_from: Option<SocketAddr>, accept_only: &[IpAddr]) -> SenderFilter {
        SenderFilter {
            drop_from,
            accept_only: accept_only.iter().map(|ip| ip.to_canonical()).collect(),
        }
    }

    #[inline]
    fn check(&self, sender: &SenderAddr) -> Result<(), Refused> {
        if self.drop_from.is_none() && self.accept_only.is_empty() {
            return Ok(());
        }
        let Some(sa) = sender.get() else {
            return if self.accept_only.is_empty() {
                Ok(())
            } else {
                Err(Refused::Foreign)
            };
        };
        let ip = sa.ip().to_canonical();
        if let Some(own) = self.drop_from {
            if own.port() == sa.port() && own.ip().to_canonical() == ip {
                return Err(Refused::Own);
            }
        }
        if self.accept_only.is_empty() || self.accept_only.contains(&ip) {
            Ok(())
        } else {
            Err(Refused::Foreign)
        }
    }
}

/// A receiver's running totals and the state that produces them. Allocates nothing
/// per datagram.
#[derive(Debug)]
pub(crate) struct Accounting {
    /// The totals so far.
    pub(crate) stats: Stats,
    last_kernel_drops: u32,
    filter: SenderFilter,
    demux: Demux,
    responder: Option<Responder>,
}

impl Accounting {
    /// Counting from zero, decoding with `demux`, answering probes with `responder`.
    pub(crate) fn new(
        filter: SenderFilter,
        demux: Demux,
        responder: Option<Responder>,
    ) -> Accounting {
        Accounting {
            stats: Stats::default(),
            last_kernel_drops: 0,
            filter,
            demux,
            responder,
        }
    }

    /// Takes in one datagram: counts it, reports kernel drops it brings news of,
    /// filters it by sender, decodes it into `out`, follows its sender's sequence and
    /// answers it if it is a probe.
    #[inline]
    pub(crate) fn on_datagram<D: Deliver>(
        &mut self,
        datagram: &[u8],
        meta: &RecvMeta,
        out: &mut D,
    ) -> Result<(), Refused> {
        self.stats.datagrams += 1;
        self.stats.bytes += datagram.len() as u64;
        if meta.starts_coalesced() {
            self.stats.coalesced += 1;
        }
        self.note_drop_counter(meta.kernel_drops, meta.timestamp_ns, out);
        if let Err(r) = self.filter.check(&meta.sender) {
            self.stats.filtered += 1;
            return Err(r);
        }
        let stats = &mut self.stats;
        let batches = out.takes_batches();
        let o = self
            .demux
            .decode_batches(datagram, meta, batches, |d| match d {
                Decoded::Frame(frame) => {
                    stats.frames += 1;
                    out.frame(frame, stats);
                }
                Decoded::Batch(batch) => {
                    stats.frames += batch.len() as u64;
                    out.batch(batch, &meta.sender, stats);
                }
            });
        if let Some(e) = o.error {
            stats.decode_errors[e as usize] += o.error_count();
        }
        match o.seq {
            Some(SeqEvent::Gap { lost }) => {
                stats.seq_gaps += lost;
                out.control(Event::Loss {
                    sender: meta.sender,
                    lost,
                    timestamp_ns: meta.timestamp_ns,
                });
            }
            Some(SeqEvent::Late) => {
                stats.reordered += 1;
                stats.seq_gaps = stats.seq_gaps.saturating_sub(1);
            }
            Some(SeqEvent::Duplicate) => stats.duplicates += 1,
            Some(SeqEvent::First) => stats.senders += 1,
            _ => {}
        }
        if let Some(a) = &o.announce {
            out.announce(a, &meta.sender);
        }
        if let (Some(probe), Some(responder)) = (o.probe, self.responder.as_mut()) {
            if responder.answer(&probe, meta.sender, stats.frames) {
                stats.pings_answered += 1;
            }
        }
        Ok(())
    }

    /// Reads the socket's drop counter directly (when idle: drops at the end of a
    /// burst come with no datagram to report them); true if it grew.
    pub(crate) fn note_socket_drops<D: Deliver>(
        &mut self,
        source: &dyn DatagramSource,
        out: &mut D,
    ) -> bool {
        match source.socket_drops() {
            Some(now) => {
                let before = self.stats.kernel_drops;
                self.note_drop_counter(now, now_ns(), out);
                self.stats.kernel_drops != before
            }
            None => false,
        }
    }

    /// The socket's drop counter is cumulative and only present once non-zero (the
    /// kernel sends no SO_RXQ_OVFL message while it is 0), so 0 means "no news".
    fn note_drop_counter<D: Deliver>(&mut self, now: u32, timestamp_ns: u64, out: &mut D) {
        if now == 0 || now == self.last_kernel_drops {
            return;
        }
        let delta = now.wrapping_sub(self.last_kernel_drops);
        self.last_kernel_drops = now;
        // A "decrease" would be a reordered datagram, not new drops: the u32 counter
        // wraps only after 2^32 drops, so a huge delta means it went backwards.
        if delta > u32::MAX / 2 {
            return;
        }
        let count = u64::from(delta);
        self.stats.kernel_drops += count;
        out.control(Event::KernelDrops {
            count,
            timestamp_ns,
        });
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::{Ipv4Addr, Ipv6Addr};

    fn from(ip: IpAddr, port: u16) -> SenderAddr {
        SenderAddr::from(SocketAddr::new(ip, port))
    }

    #[test]
    fn filter_compares_addresses_canonically() {
        let v4 = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 7));
        let mapped = IpAddr::V6(Ipv4Addr::new(127, 0, 0, 7).to_ipv6_mapped());
        let f = SenderFilter::new(Some(SocketAddr::new(v4, 5000)), &[mapped]);
        assert_eq!(f.check(&from(mapped, 5000)), Err(Refused::Own));
        assert_eq!(f.check(&from(v4, 5001)), Ok(()));
        assert_eq!(f.check(&from(mapped, 5001)), Ok(()));
        let other = IpAddr::V6(Ipv6Addr::LOCALHOST);
        assert_eq!(f.check(&from(other, 5001)), Err(Refused::Foreign));
        assert_eq!(f.check(&SenderAddr::default()), Err(Refused::Foreign));
        assert_eq!(
            SenderFilter::default().check(&SenderAddr::default()),
            Ok(())
        );
    }
}
