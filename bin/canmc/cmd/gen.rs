//! `canmc gen`: generated traffic, paced or as fast as possible, as cangen does.

use std::time::{Duration, Instant};

use canmc::gen::{GenConfig, Generator, Pacer};
use canmc::socket::SendSocket;
use canmc::summary::Summary;

use super::now_ns;
use crate::cli::GenArgs;
use crate::term::{print_summary, OutageReport, StatusLine};
use crate::{io_failure, stopped, Failure};

pub(crate) fn run(a: GenArgs) -> Result<(), Failure> {
    let cfg = a.net.config().map_err(|e| Failure::usage(e.to_string()))?;
    let channel = a.opts.channel().map_err(Failure::usage)?;
    // `--rate` and `-g` exclude each other; `-g 0` is unpaced.
    let pacer = match (a.rate, a.gap) {
        (Some(rate), _) => Pacer::per_second(rate),
        (None, Some(gap)) => Pacer::gap(gap),
        (None, None) => None,
    };
    let mut generator = Generator::new(GenConfig {
        id: a.id,
        len: a.len,
        data: a.data,
        extended: a.extended,
        fd: a.fd,
        brs: a.brs,
        esi: a.esi,
        remote: a.remote,
        ..GenConfig::default()
    })
    .map_err(|e| Failure::usage(format!("cannot generate these frames: {e}")))?;
    let sock = SendSocket::open(&cfg).map_err(|e| io_failure("cannot open sender", e))?;
    let mut tx = a
        .opts
        .sender(sock, a.net.key()?)?
        .keep_going(!a.stop_on_error);
    let outages = OutageReport::new("gen", tx.health());
    let send_err = |e| io_failure("send failed", e);
    let limit = a.count.unwrap_or(u64::MAX);
    let start = Instant::now();
    let mut status = StatusLine::new(true);
    let mut sent: u64 = 0;
    // Paced sending: frames due by now go out together, so high rates still batch. At
    // most BURST per round, so polls, outage reports and the status line keep up.
    const BURST: u64 = 4096;
    // While idle, sleep until a quantum's worth of frames is due (at least one): at high
    // rates that wakes the sender (and, over lo, the receiver) once per 200 µs instead
    // of once per timer tick, with the frames of a wake-up in one sendmmsg. The long-run
    // rate stays exact; a frame leaves at most one quantum after it was due, never before.
    const QUANTUM_NS: u64 = 200_000;
    let wake_frames = pacer.map_or(1, |p| (p.due(QUANTUM_NS) - 1).max(1));
    let paced_start = Instant::now();
    while sent < limit && !stopped() {
        let ts = now_ns();
        tx.poll(ts).map_err(send_err)?;
        let batch_end = match pacer {
            None => sent.saturating_add(256).min(limit),
            Some(pacer) => {
                let elapsed = paced_start.elapsed().as_nanos() as u64;
                let due = pacer.due(elapsed).min(limit);
                if due <= sent {
                    // Idle until the next frame is due: what is queued leaves now, and
                    // a pending native datagram is polled again by its deadline.
                    tx.send_queued().map_err(send_err)?;
                    let wake_at = sent.saturating_add(wake_frames - 1).min(limit - 1);
                    let next = pacer.due_at_ns(wake_at).saturating_sub(elapsed);
                    let mut wait = Duration::from_nanos(next).min(Duration::from_millis(100));
                    if let Some(deadline) = tx.deadline() {
                        wait = wait.min(Duration::from_nanos(deadline.saturating_sub(ts)));
                    }
                    std::thread::sleep(wait);
                    continue;
                }
                due.min(sent.saturating_add(BURST))
            }
        };
        while sent < batch_end {
            let mut f = generator.next_frame();
            f.timestamp_ns = ts;
            f.channel = channel;
            tx.send(&f, ts).map_err(send_err)?;
            sent += 1;
        }
        outages.check();
        status.update(start, sent, None);
    }
    tx.flush(now_ns()).map_err(send_err)?;
    status.clear();
    outages.finish();
    let sum = Summary {
        command: "gen",
        stats: canmc::engine::Stats {
            frames: tx.frames(),
            datagrams: tx.datagrams_sent(),
            bytes: tx.bytes(),
            ..Default::default()
        },
        elapsed: start.elapsed(),
        unsent: tx.health().unsent(),
        outages: tx.health().outages(),
        ..Default::default()
    };
    print_summary(&sum, a.json);
    Ok(())
}
