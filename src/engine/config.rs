//! How an engine is set up: [`EngineConfig`] and the [`Dispatch`] policy.

use std::net::{IpAddr, SocketAddr};
use std::time::Duration;

use crate::ping::PingIdentity;
use crate::wire::native::{self, Role};

/// How frames are shared out among consumers.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Dispatch {
    /// Each frame goes to one consumer, chosen by a hash of its identifier and
    /// IDE bit ([`consumer_for`](super::consumer_for)), so all frames of one ID arrive
    /// in order at one consumer.
    #[default]
    ById,
    /// Every consumer gets every frame.
    All,
}

/// Settings for [`Engine::start`](super::Engine::start).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EngineConfig {
    /// Number of consumers (and rings); at least 1.
    pub consumers: usize,
    /// Slots per ring, rounded up to a power of two; at least 1.
    pub ring_capacity: usize,
    /// How frames are shared out.
    pub dispatch: Dispatch,
    /// Datagrams from this address (our own sender, seen through multicast loopback)
    /// are dropped and counted as filtered. `None` keeps them.
    pub drop_from: Option<SocketAddr>,
    /// If not empty, only datagrams from these addresses are accepted (`--source`);
    /// the rest are counted as filtered.
    pub accept_only: Vec<IpAddr>,
    /// Longest the receive thread waits in the source before checking for
    /// [`Engine::stop`](super::Engine::stop); bounds how long stopping takes.
    pub poll_timeout: Duration,
    /// Answer `ping` probes as this program (SPEC §8); `None` stays silent
    /// (`--no-answer`).
    pub answer_pings: Option<PingIdentity>,
    /// After a batch of fewer than [`COALESCE_BATCH`] datagrams, wait this long before
    /// polling again, so that at low rates one wake-up handles many datagrams (the
    /// socket buffer holds them meanwhile). Trades that much latency for CPU: right for
    /// a recorder, wrong for a latency-sensitive consumer. `None` by default.
    pub coalesce: Option<Duration>,
    /// Accept only native datagrams authenticated with this key (python-can ones are
    /// refused too) and authenticate `ping` answers with it; refusals are counted as
    /// `bad_auth` decode errors. `None` (the default) accepts everything.
    pub auth_key: Option<native::AuthKey>,
}

/// Batches smaller than this make a coalescing engine wait (see
/// [`EngineConfig::coalesce`]).
pub const COALESCE_BATCH: usize = 32;

impl Default for EngineConfig {
    fn default() -> Self {
        EngineConfig {
            consumers: 1,
            ring_capacity: 16 * 1024,
            dispatch: Dispatch::ById,
            drop_from: None,
            accept_only: Vec::new(),
            poll_timeout: Duration::from_millis(100),
            answer_pings: Some(PingIdentity::this_process(Role::App)),
            coalesce: None,
            auth_key: None,
        }
    }
}
