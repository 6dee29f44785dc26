//! Flags of `canmc bridge` (the CAN interface ↔ group bridge).

use std::time::Duration;

use canmc::filter::IdFilter;
use clap::{Args, ValueEnum};

use super::{values, IoArg, NetArgs, SendOpts};

/// Which ways `bridge` carries frames.
#[derive(Clone, Copy, ValueEnum)]
pub(crate) enum DirectionArg {
    /// Bus to group and group to bus.
    Both,
    /// Bus to group only.
    ToGroup,
    /// Group to bus only.
    ToCan,
}

#[derive(Args)]
pub(crate) struct BridgeArgs {
    /// CAN interface (can0, vcan0).
    #[arg(value_name = "IFACE")]
    pub(crate) can: String,
    #[command(flatten)]
    pub(crate) net: NetArgs,
    #[command(flatten)]
    pub(crate) opts: SendOpts,
    /// Which ways frames go.
    #[arg(long, value_enum, default_value = "both")]
    pub(crate) direction: DirectionArg,
    /// Do not forward the bus's error frames to the group.
    #[arg(long)]
    pub(crate) no_error_frames: bool,
    /// Name of the physical bus this interface is on. Bridges with the same name (on
    /// this host or others, same group) elect one that forwards; the others stand by
    /// and take over when it stops (docs/socketcan.md). Without it this bridge is the
    /// bus's only one.
    #[arg(long, value_name = "NAME")]
    pub(crate) bus: Option<String>,
    /// With --bus: election priority, 0-255, lower preferred (ties: the oldest bridge).
    #[arg(long, value_name = "N", default_value_t = 100, requires = "bus")]
    pub(crate) priority: u8,
    /// Receive path on the group side.
    #[arg(long, value_enum, default_value = "auto")]
    pub(crate) io: IoArg,
    /// Group side: do not turn on UDP GRO (one datagram per receive).
    #[arg(long)]
    pub(crate) no_gro: bool,
    /// Stop after this many seconds.
    #[arg(long, value_name = "SECS", allow_negative_numbers = true,
          value_parser = values::positive_secs)]
    pub(crate) duration: Option<Duration>,
    /// Print the summary as one JSON object on stdout.
    #[arg(long)]
    pub(crate) json: bool,
    /// candump filters, both ways: <id>:<mask> (match) or <id>~<mask> (inverse), hex.
    #[arg(value_name = "FILTER", value_parser = values::filter)]
    pub(crate) filters: Vec<IdFilter>,
}
