//! `canmc bridge IFACE`: a CAN interface and the group, both ways, until Ctrl-C.

use std::time::{Duration, Instant};

use canmc::canif::{Bridge, BridgeConfig, BridgeDirection, BridgeSummary};
use canmc::filter::FilterSet;

use crate::cli::{BridgeArgs, DirectionArg};
use crate::{stopped, Failure};

pub(crate) fn run(a: BridgeArgs) -> Result<(), Failure> {
    let group = a.net.config().map_err(Failure::usage)?;
    let key = a.net.key()?;
    if key.is_some() && matches!(a.opts.wire, crate::cli::WireArg::Pycan) {
        return Err(Failure::usage(
            "--key-file needs --wire native: python-can datagrams cannot carry a tag",
        ));
    }
    let mut cfg = BridgeConfig::new(&a.can, group);
    cfg.wire = a.opts.wire();
    cfg.direction = match a.direction {
        DirectionArg::Both => BridgeDirection::Both,
        DirectionArg::ToGroup => BridgeDirection::ToGroup,
        DirectionArg::ToCan => BridgeDirection::ToCan,
    };
    cfg.filters = FilterSet::new(a.filters.clone());
    cfg.error_frames = !a.no_error_frames;
    cfg.linger_ns = a.opts.linger.as_nanos() as u64;
    cfg.max_datagram = a.opts.max_datagram as usize;
    cfg.auth_key = key;
    cfg.io = a.io.into();
    cfg.gro = !a.no_gro;
    if let Some(name) = &a.bus {
        cfg.bus = Some(
            canmc::wire::native::BusName::new(name)
                .map_err(|e| Failure::usage(format!("--bus: {e}")))?,
        );
        cfg.priority = a.priority;
    }
    let bridge = Bridge::start(&cfg).map_err(|e| Failure::runtime(e.to_string()))?;
    if let Some(note) = bridge.io_note() {
        if !a.json {
            eprintln!("canmc: {note}");
        }
    }
    let start = Instant::now();
    let deadline = a.duration.map(|d| start + d);
    while !stopped() && !bridge.is_finished() && deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(20));
    }
    let elapsed = start.elapsed();
    let gro = bridge.gro();
    let ha = bridge.ha();
    let stats = bridge
        .join()
        .map_err(|e| Failure::runtime(format!("bridge {} stopped: {e}", a.can)))?;
    let sum = BridgeSummary {
        iface: a.can.clone(),
        wire: cfg.wire,
        elapsed,
        stats,
        gro,
        ha,
    };
    if a.json {
        println!("{}", sum.to_json());
    } else {
        eprintln!("{}", sum.to_text());
    }
    Ok(())
}
