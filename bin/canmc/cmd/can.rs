//! `dump --can`, `record --can` and `replay --can`: the same commands on a CAN interface
//! instead of the group (as candump and canplayer).

use std::io::{self, Write};
use std::time::Instant;

use canmc::canif::{capture, CanReceiver, CanSender, CanSocket, CanSocketConfig, CaptureOptions};
use canmc::convert::candump::{write_log_line, ScreenFormat};
use canmc::convert::{self as conv, FileFormat, WriterOptions};
use canmc::engine::{Event, Stats};
use canmc::filter::FilterSet;
use canmc::frame::Channel;
use canmc::record::RecorderOptions;
use canmc::summary::Summary;
use canmc::view::dbc::Dbc;

use crate::cli::{DumpArgs, RecordArgs, ReplayArgs};
use crate::term::print_summary;
use crate::{convert_failure, io_failure, stopped, Failure};

fn receiver(iface: &str) -> Result<CanReceiver, Failure> {
    let sock = CanSocket::open(iface, &CanSocketConfig::default())
        .map_err(|e| Failure::runtime(e.to_string()))?;
    CanReceiver::new(sock, 64).map_err(|e| io_failure("CAN receiver", e))
}

fn options(
    iface: &str,
    filters: &[canmc::filter::IdFilter],
    count: Option<u64>,
    duration: Option<std::time::Duration>,
) -> CaptureOptions {
    CaptureOptions {
        filters: FilterSet::new(filters.to_vec()),
        limit: count,
        deadline: duration.map(|d| Instant::now() + d),
        channel: Channel::str(iface).unwrap_or(Channel::NONE),
        no_local: false,
    }
}

fn summary(command: &'static str, st: &canmc::canif::CaptureStats) -> Summary {
    Summary {
        command,
        stats: Stats {
            frames: st.frames,
            kernel_drops: st.kernel_drops,
            filtered: st.filtered,
            ..Stats::default()
        },
        elapsed: st.elapsed,
        ..Default::default()
    }
}

pub(crate) fn dump(a: DumpArgs, iface: &str) -> Result<(), Failure> {
    // The DBC first: a bad file is a usage error whether or not the interface opens.
    let dbc = match &a.dbc {
        Some(p) => Some(Dbc::open(p).map_err(|e| Failure::usage(format!("--dbc {e}")))?),
        None => None,
    };
    let mut rx = receiver(iface)?;
    let opts = options(iface, &a.filters, a.recv.count, a.recv.duration);
    let stdout = io::stdout();
    let out = std::cell::RefCell::new(io::BufWriter::with_capacity(1 << 16, stdout.lock()));
    let mut line = Vec::with_capacity(512);
    let mut screen = ScreenFormat::new(a.time.unwrap_or_default());
    let mut failed: Option<io::Error> = None;
    let st = capture(
        &mut rx,
        &opts,
        &mut |event| {
            let Event::Frame(frame) = event else {
                return true;
            };
            if a.quiet {
                return true;
            }
            line.clear();
            if a.log {
                write_log_line(frame, &mut line);
            } else {
                screen.write_line(frame, &mut line);
            }
            if let Some(dbc) = &dbc {
                dbc.describe(frame, &mut line);
            }
            match out.borrow_mut().write_all(&line) {
                Ok(()) => true,
                Err(e) => {
                    failed = Some(e);
                    false
                }
            }
        },
        &mut || {
            let _ = out.borrow_mut().flush();
        },
        &stopped,
    )
    .map_err(|e| io_failure(&format!("receiving from {iface}"), e))?;
    let _ = out.borrow_mut().flush();
    match failed {
        Some(e) if e.kind() == io::ErrorKind::BrokenPipe => return Ok(()),
        Some(e) => return Err(io_failure("cannot write output", e)),
        None => {}
    }
    print_summary(&summary("dump", &st), a.recv.json);
    Ok(())
}

pub(crate) fn record(a: RecordArgs, iface: &str) -> Result<(), Failure> {
    let format = FileFormat::from_path(&a.output).map_err(|e| Failure::usage(e.to_string()))?;
    // Open the interface first: a missing one must not leave an empty file behind.
    let mut rx = receiver(iface)?;
    let wopts = WriterOptions {
        recorder: RecorderOptions {
            segment_size: a.segment_size << 20,
            ..RecorderOptions::default()
        },
        ..WriterOptions::default()
    };
    let mut writer = conv::create_writer(&a.output, format, wopts).map_err(convert_failure)?;
    let opts = options(iface, &a.filters, a.recv.count, a.recv.duration);
    let mut error = None;
    let result = capture(
        &mut rx,
        &opts,
        &mut |event| match writer.write_event(event) {
            Ok(()) => true,
            Err(e) => {
                error = Some(e.to_string());
                false
            }
        },
        &mut || {},
        &stopped,
    );
    // Whatever happened, close the file so that it opens with everything written.
    let finished = writer.finish();
    if let Some(e) = error {
        return Err(Failure::runtime(format!(
            "recording stopped: {e}; {} keeps every frame written before",
            a.output.display()
        )));
    }
    let st = result.map_err(|e| io_failure(&format!("receiving from {iface}"), e))?;
    finished.map_err(convert_failure)?;
    print_summary(&summary("record", &st), a.recv.json);
    if !a.recv.json {
        eprintln!("  written to {} ({})", a.output.display(), format.name());
    }
    Ok(())
}

pub(crate) fn replay(a: ReplayArgs, iface: &str) -> Result<(), Failure> {
    let format = FileFormat::from_path(&a.file).map_err(|e| Failure::usage(e.to_string()))?;
    if !a.file.exists() {
        return Err(Failure::runtime(format!(
            "{}: no such file",
            a.file.display()
        )));
    }
    let cfg = CanSocketConfig {
        write_only: true,
        timestamps: false,
        rcvbuf: 0,
        error_mask: 0,
        ..CanSocketConfig::default()
    };
    let sock = CanSocket::open(iface, &cfg).map_err(|e| Failure::runtime(e.to_string()))?;
    let mut tx = CanSender::new(sock, 64).map_err(|e| io_failure("CAN sender", e))?;
    let opts = canmc::replay::ReplayOptions {
        speed: (!a.fast).then_some(a.speed),
        loops: a.repeat.0,
        max_gap: a.skip_gaps,
        start: a.start,
        end: a.end,
        filters: FilterSet::new(a.filters.clone()),
        skip_bad: a.skip_bad,
    };
    if a.realtime {
        if let Err(e) = canmc::replay::set_realtime_priority(10) {
            eprintln!("canmc: warning: --realtime: {e}; replaying at normal priority");
        }
    }
    let stats = canmc::replay::replay(&a.file, format, &mut tx, &opts, &stopped)
        .map_err(convert_failure)?;
    let sum = Summary {
        command: "replay",
        stats: Stats {
            frames: tx.sent(),
            filtered: stats.skipped + tx.rejected(),
            ..Stats::default()
        },
        unsent: tx.dropped(),
        elapsed: stats.elapsed,
        ..Default::default()
    };
    print_summary(&sum, a.json);
    if !a.json {
        if tx.rejected() > 0 {
            eprintln!(
                "  {} frames refused by {iface} (CAN FD on a classic interface?)",
                tx.rejected()
            );
        }
        let l = &stats.lateness;
        if let (Some(p50), Some(p99)) = (l.quantile_us(0.5), l.quantile_us(0.99)) {
            eprintln!("  send time behind schedule: p50 < {p50} µs, p99 < {p99} µs");
        }
    }
    Ok(())
}
