//! What `dump` and `record` share: joining the group, opening the receive path, the
//! engine's configuration, and the loop that hands events to a command.

use std::cell::Cell;
use std::io::{self, IsTerminal};
use std::time::{Duration, Instant};

use canmc::engine::{Dispatch, Engine, EngineConfig, Event, PingIdentity};
use canmc::filter::FilterSet;
use canmc::recv::{self, IoMode, RecvConfig};
use canmc::socket::{McastConfig, RecvSocket, DEFAULT_GROUP_V4, DEFAULT_GROUP_V6};
use canmc::summary::Summary;
use canmc::wire::native::{self, Role};
use std::net::IpAddr;

use crate::cli::{NetArgs, RecvOpts};
use crate::term::StatusLine;
use crate::{io_failure, stopped, Failure};

impl NetArgs {
    pub(crate) fn config(&self) -> Result<McastConfig, String> {
        let on_lo = self.iface.as_deref() == Some("lo");
        let group = self.group.unwrap_or(if on_lo {
            IpAddr::V4(DEFAULT_GROUP_V4)
        } else {
            IpAddr::V6(DEFAULT_GROUP_V6)
        });
        let mut cfg = McastConfig::new(group, self.port);
        cfg.iface = self.iface.clone();
        cfg.ttl = self.ttl.unwrap_or(if on_lo { 0 } else { 1 });
        cfg.loopback = !self.no_loopback;
        cfg.sources = self.source.clone();
        cfg.validate().map_err(|e| e.to_string())?;
        Ok(cfg)
    }

    /// The key from `--key-file`, if given; a missing or malformed file is a usage error.
    pub(crate) fn key(&self) -> Result<Option<native::AuthKey>, Failure> {
        self.key_file
            .as_deref()
            .map(|p| {
                native::read_key_file(p).map_err(|e| Failure::usage(format!("--key-file {e}")))
            })
            .transpose()
    }
}

/// Joins the group and opens the receive path; the deadline is `--duration` from now.
#[allow(clippy::type_complexity)]
pub(crate) fn open_receiver(
    net: &NetArgs,
    recv: &RecvOpts,
) -> Result<(Box<dyn recv::DatagramSource>, McastConfig, Option<Instant>), Failure> {
    let cfg = net.config().map_err(|e| Failure::usage(e.to_string()))?;
    let deadline = recv.duration.map(|d| Instant::now() + d);
    let sock = RecvSocket::open(&cfg).map_err(|e| io_failure("cannot join the group", e))?;
    for w in sock.warnings() {
        eprintln!("canmc: warning: {w}");
    }
    let rcfg = RecvConfig {
        gro: !recv.no_gro,
        ..RecvConfig::default()
    };
    let (source, note) = recv::open_source(sock.into_socket(), recv.io.into(), &rcfg)
        .map_err(|e| io_failure("cannot start receiving", e))?;
    if let Some(note) = note {
        eprintln!("canmc: note: {note}");
    }
    Ok((source, cfg, deadline))
}

pub(crate) fn engine_config(
    cfg: &McastConfig,
    recv: &RecvOpts,
    role: Role,
    key: Option<native::AuthKey>,
) -> EngineConfig {
    EngineConfig {
        auth_key: key,
        consumers: 1,
        dispatch: Dispatch::All,
        // 256 Ki slots (34 MiB) absorb the consumer being descheduled for a few ms at
        // native rates of ten million frames per second.
        ring_capacity: 1 << 18,
        accept_only: cfg.sources.clone(),
        answer_pings: (!recv.no_answer).then(|| PingIdentity::this_process(role)),
        coalesce: recv.coalesce.filter(|d| !d.is_zero()),
        ..EngineConfig::default()
    }
}

pub(crate) fn summary_from(
    command: &'static str,
    io: IoMode,
    gro: bool,
    stats: &canmc::engine::Stats,
    frames: u64,
    filtered: u64,
    elapsed: Duration,
) -> Summary {
    Summary {
        command,
        io: Some(io_mode_name(io)),
        gro: Some(gro),
        stats: canmc::engine::Stats {
            frames,
            filtered: filtered + stats.filtered,
            ..*stats
        },
        elapsed,
        ..Summary::default()
    }
}

/// What a receiving command does with each event; `Ok(false)` stops it.
pub(crate) type OnEvent<'a> = dyn FnMut(&Event) -> Result<bool, Failure> + 'a;

/// Joins the group, runs the engine with one consumer, and hands every event that
/// passes the filters to `on_event` until `-n`, `--duration`, a signal, or `on_event`
/// says stop. `-n` counts frames. Returns the summary (not yet printed).
pub(crate) fn run_receiver(
    command: &'static str,
    net: &NetArgs,
    recv: &RecvOpts,
    role: Role,
    filters: &FilterSet,
    on_event: &mut OnEvent<'_>,
    on_idle: &mut dyn FnMut(),
) -> Result<Summary, Failure> {
    let key = net.key()?;
    let (source, cfg, deadline) = open_receiver(net, recv)?;
    let (engine, mut handles) = Engine::start(source, engine_config(&cfg, recv, role, key))
        .map_err(|e| io_failure("cannot start the engine", e))?;
    let mut consumer = handles.remove(0);
    let counters = engine.counters();

    let start = Instant::now();
    let mut status = StatusLine::new(command != "dump" || !io::stdout().is_terminal());
    let frames = Cell::new(0u64);
    let filtered = Cell::new(0u64);
    let limit = recv.count.unwrap_or(u64::MAX);
    let mut failure = None;
    let mut events = vec![Event::default(); 512];
    // Hands a batch to `on_event`; false once `-n` is reached, `on_event` says stop, or
    // it failed (then no further event is handed over).
    let mut consume = |batch: &[Event]| -> bool {
        for event in batch {
            if let Event::Frame(frame) = event {
                if !filters.matches(frame) {
                    filtered.set(filtered.get() + 1);
                    continue;
                }
                frames.set(frames.get() + 1);
            }
            match on_event(event) {
                Ok(true) => {}
                Ok(false) => return false,
                Err(f) => {
                    failure = Some(f);
                    return false;
                }
            }
            if frames.get() == limit {
                return false;
            }
        }
        true
    };
    let mut more = limit > 0;
    while more && !stopped() && deadline.is_none_or(|d| Instant::now() < d) {
        let n = consumer.pop_batch(&mut events);
        if n == 0 {
            on_idle();
            let s = counters.snapshot();
            status.update(
                start,
                frames.get(),
                Some((s.kernel_drops + s.ring_drops, s.seq_gaps)),
            );
            consumer.wait(Duration::from_millis(50));
            continue;
        }
        more = consume(&events[..n]);
    }
    status.clear();
    if more {
        // Ctrl-C, SIGTERM or --duration: what reached the socket before still counts.
        engine.stop_after_draining();
    } else {
        engine.stop();
    }
    let io_mode = engine.io_mode();
    let gro = engine.gro();
    if let Err(e) = engine.join() {
        eprintln!("canmc: warning: receive thread: {e}");
    }
    // Stopped by a signal or --duration: what was received before is still handed over,
    // so the summary's frames are the frames the receive thread took in.
    while more {
        let n = consumer.pop_batch(&mut events);
        if n == 0 {
            break;
        }
        more = consume(&events[..n]);
    }
    if let Some(f) = failure {
        return Err(f);
    }
    let stats = counters.snapshot();
    Ok(summary_from(
        command,
        io_mode,
        gro,
        &stats,
        frames.get(),
        filtered.get(),
        start.elapsed(),
    ))
}

pub(crate) fn io_mode_name(m: IoMode) -> &'static str {
    match m {
        IoMode::Uring => "uring",
        IoMode::Mmsg => "mmsg",
        IoMode::Auto => "auto",
    }
}
