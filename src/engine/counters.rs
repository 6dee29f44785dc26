//! The receive counters, defined once: the list below yields the live atomic
//! [`Counters`], their [`Stats`] snapshot, the JSON keys and the text labels of the
//! end-of-run [`Summary`](crate::summary::Summary). Add a counter here and every one of
//! them has it.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::wire::DecodeError;

/// Where the text summary shows a counter (the JSON shows every one).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Show {
    /// The first line: "`value label`".
    Headline,
    /// The second line: "`label value`".
    Always,
    /// A line of native-format sequence news, shown when one of them is not zero.
    Native,
    /// JSON only.
    JsonOnly,
}

/// Defines [`Counters`] and [`Stats`] from one list of `name: "text label", Show`
/// entries (with their doc comments). Decode errors, counted by kind, are the one
/// counter that is not a single number, and are added by hand to both.
macro_rules! counter_list {
    ($($(#[doc = $doc:literal])* $name:ident: $label:literal, $show:ident;)*) => {
        /// The engine's counters, shared with any thread through
        /// [`Engine::counters`](crate::engine::Engine::counters).
        ///
        /// Written by the receive thread only, once per batch, with `Relaxed` stores:
        /// reading them never slows the receive path. A [`snapshot`](Counters::snapshot)
        /// taken while running may mix two consecutive batches; each value on its own is
        /// exact as of its batch.
        #[derive(Debug, Default)]
        pub struct Counters {
            $($name: AtomicU64,)*
            decode_errors: [AtomicU64; DecodeError::COUNT],
        }

        /// A copy of the [`Counters`] at one moment (or the running totals of a
        /// [`Bus`](crate::bus::Bus)).
        #[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
        pub struct Stats {
            $($(#[doc = $doc])* pub $name: u64,)*
            /// Datagrams (or native records) not decoded, by [`DecodeError`] kind,
            /// indexed by `kind as usize`.
            pub decode_errors: [u64; DecodeError::COUNT],
        }

        impl Counters {
            /// Reads every counter.
            pub fn snapshot(&self) -> Stats {
                let ld = |a: &AtomicU64| a.load(Ordering::Relaxed);
                Stats {
                    $($name: ld(&self.$name),)*
                    decode_errors: std::array::from_fn(|i| ld(&self.decode_errors[i])),
                }
            }

            /// Single writer, so a store of the writer's running total is enough (no RMW).
            pub(crate) fn publish(&self, s: &Stats) {
                let st = |a: &AtomicU64, v: u64| a.store(v, Ordering::Relaxed);
                $(st(&self.$name, s.$name);)*
                for (a, &v) in self.decode_errors.iter().zip(&s.decode_errors) {
                    st(a, v);
                }
            }
        }

        impl Stats {
            /// How many counters [`values`](Stats::values) lists (decode errors aside).
            pub const LEN: usize = [$(stringify!($name)),*].len();

            /// The counters' names, in list order: the summary's JSON keys.
            pub const KEYS: [&'static str; Stats::LEN] = [$(stringify!($name)),*];

            /// Text labels and placement, in list order.
            pub(crate) const TEXT: [(&'static str, Show); Stats::LEN] =
                [$(($label, Show::$show)),*];

            /// Every counter but decode errors, in the order of [`KEYS`](Stats::KEYS).
            pub fn values(&self) -> [u64; Stats::LEN] {
                [$(self.$name),*]
            }
        }
    };
}

counter_list! {
    /// Frames decoded from accepted datagrams (delivered + ring drops in
    /// [`Dispatch::ById`](crate::engine::Dispatch::ById)). In a summary: the frames the
    /// command kept (or sent).
    frames: "frames", Headline;
    /// Datagrams received (all of them, including filtered and undecodable ones).
    datagrams: "datagrams", Headline;
    /// Payload bytes of all received datagrams.
    bytes: "bytes", Headline;
    /// Receives that carried more than one datagram, coalesced by UDP GRO (each of
    /// their datagrams counts in `datagrams`). Always 0 with GRO off.
    coalesced: "coalesced receives", JsonOnly;
    /// Datagrams the kernel dropped on the socket (SO_RXQ_OVFL). With UDP GRO the kernel
    /// counts a dropped super-datagram once, however many datagrams it held; for native
    /// senders `seq_gaps` counts each of them.
    kernel_drops: "kernel drops", Always;
    /// Frame deliveries refused by a full ring. With
    /// [`Dispatch::All`](crate::engine::Dispatch::All) a frame dropped by two consumers
    /// counts twice.
    ring_drops: "ring drops", Always;
    /// Datagrams missing from native senders' sequences, net of late arrivals: a gap
    /// is counted when seen, and a datagram that arrives late to fill it takes it back.
    seq_gaps: "sequence gaps", Always;
    /// Native datagrams seen twice; their frames were delivered once.
    duplicates: "duplicated", Native;
    /// Native datagrams that arrived after a later one of the same sender.
    reordered: "reordered", Native;
    /// Native senders seen (each new sender id counts once; a restarted sender picks
    /// a new id).
    senders: "senders", JsonOnly;
    /// Datagrams dropped because of their sender
    /// ([`EngineConfig::drop_from`](crate::engine::EngineConfig::drop_from),
    /// [`EngineConfig::accept_only`](crate::engine::EngineConfig::accept_only)); in a
    /// summary also frames dropped by the command's ID filters.
    filtered: "filtered", Always;
    /// `ping` probes answered.
    pings_answered: "pings answered", JsonOnly;
}

impl Stats {
    /// All decode errors together.
    pub fn decode_errors_total(&self) -> u64 {
        self.decode_errors.iter().sum()
    }

    /// Decode errors of one kind.
    pub fn decode_error(&self, kind: DecodeError) -> u64 {
        self.decode_errors[kind as usize]
    }

    /// `(key, value)` for every counter but decode errors, in list order.
    pub fn counts(&self) -> impl Iterator<Item = (&'static str, u64)> {
        Stats::KEYS.into_iter().zip(self.values())
    }
}

/// One JSON object: every counter by its key, then `decode_errors` (an object keyed by
/// [`DecodeError::name`]) and `decode_errors_total`.
impl serde::Serialize for Stats {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        use serde::ser::SerializeMap;
        struct ByKind<'a>(&'a [u64; DecodeError::COUNT]);
        impl serde::Serialize for ByKind<'_> {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.collect_map(
                    DecodeError::ALL
                        .iter()
                        .map(|k| (k.name(), self.0[*k as usize])),
                )
            }
        }
        let mut m = s.serialize_map(Some(Stats::LEN + 2))?;
        for (k, v) in self.counts() {
            m.serialize_entry(k, &v)?;
        }
        m.serialize_entry("decode_errors", &ByKind(&self.decode_errors))?;
        m.serialize_entry("decode_errors_total", &self.decode_errors_total())?;
        m.end()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn publish_then_snapshot_gives_every_counter_back() {
        let mut s = Stats::default();
        // A distinct value per counter, so a swapped pair would show.
        let mut fields: Vec<&mut u64> = vec![
            &mut s.frames,
            &mut s.datagrams,
            &mut s.bytes,
            &mut s.coalesced,
            &mut s.kernel_drops,
            &mut s.ring_drops,
            &mut s.seq_gaps,
            &mut s.duplicates,
            &mut s.reordered,
            &mut s.senders,
            &mut s.filtered,
            &mut s.pings_answered,
        ];
        assert_eq!(fields.len(), Stats::LEN);
        for (i, f) in fields.iter_mut().enumerate() {
            **f = 100 + i as u64;
        }
        for (i, e) in s.decode_errors.iter_mut().enumerate() {
            *e = 1000 + i as u64;
        }
        let c = Counters::default();
        c.publish(&s);
        assert_eq!(c.snapshot(), s);
        assert_eq!(
            s.values().to_vec(),
            (100..100 + Stats::LEN as u64).collect::<Vec<_>>()
        );
        assert_eq!(Stats::KEYS[0], "frames");
        assert_eq!(Stats::KEYS[Stats::LEN - 1], "pings_answered");
    }
}
