//! `canmc replay`: a capture file onto the group, timed as recorded or as fast as possible.

use canmc::convert::FileFormat;
use canmc::filter::FilterSet;
use canmc::socket::SendSocket;
use canmc::summary::Summary;

use crate::cli::ReplayArgs;
use crate::term::{print_summary, OutageReport};
use crate::{convert_failure, io_failure, stopped, Failure};

pub(crate) fn run(a: ReplayArgs) -> Result<(), Failure> {
    let cfg = a.net.config().map_err(|e| Failure::usage(e.to_string()))?;
    let filters = FilterSet::new(a.filters.clone());
    let format = FileFormat::from_path(&a.file).map_err(|e| Failure::usage(e.to_string()))?;
    if !a.file.exists() {
        return Err(Failure::runtime(format!(
            "{}: no such file",
            a.file.display()
        )));
    }
    let opts = canmc::replay::ReplayOptions {
        speed: (!a.fast).then_some(a.speed),
        loops: a.repeat.0,
        max_gap: a.skip_gaps,
        start: a.start,
        end: a.end,
        filters,
        skip_bad: a.skip_bad,
    };
    let sock = SendSocket::open(&cfg).map_err(|e| io_failure("cannot open sender", e))?;
    let mut tx = a
        .opts
        .sender(sock, a.net.key()?)?
        .keep_going(!a.stop_on_error);
    let outages = OutageReport::new("replay", tx.health());
    if a.realtime {
        if let Err(e) = canmc::replay::set_realtime_priority(10) {
            eprintln!("canmc: warning: --realtime: {e}; replaying at normal priority");
        }
    }
    // The replay loop asks `stop` every 256 frames and while it waits: the place to
    // report an outage as it begins and ends.
    let stop = || {
        outages.check();
        stopped()
    };
    let stats =
        canmc::replay::replay(&a.file, format, &mut tx, &opts, &stop).map_err(convert_failure)?;
    outages.finish();
    let sum = Summary {
        command: "replay",
        stats: canmc::engine::Stats {
            frames: stats.frames,
            datagrams: tx.datagrams_sent(),
            bytes: tx.bytes(),
            ..Default::default()
        },
        elapsed: stats.elapsed,
        unsent: tx.health().unsent(),
        outages: tx.health().outages(),
        ..Default::default()
    };
    print_summary(&sum, a.json);
    if !a.json {
        let l = &stats.lateness;
        if let (Some(p50), Some(p99)) = (l.quantile_us(0.5), l.quantile_us(0.99)) {
            eprintln!(
                "  {} plays; send time behind schedule: p50 < {p50} µs, p99 < {p99} µs, max {:.1} µs",
                stats.loops,
                l.max().as_secs_f64() * 1e6
            );
        }
        if stats.bad_lines > 0 {
            eprintln!("  {} bad lines skipped", stats.bad_lines);
        }
    }
    Ok(())
}
