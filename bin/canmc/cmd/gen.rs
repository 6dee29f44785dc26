//! `canmc gen`: generated traffic, paced or as fast as possible, as cangen does.

use std::time::{Duration, Instant};

use canmc::gen::{GenConfig, Generator};
use canmc::socket::SendSocket;
use canmc::summary::Summary;

use super::now_ns;
use crate::cli::GenArgs;
use crate::term::{print_summary, OutageReport, StatusLine};
use crate::{io_failure, stopped, Failure};

pub(crate) fn run(a: GenArgs) -> Result<(), Failure> {
    let cfg = a.net.config().map_err(|e| Failure::usage(e.to_string()))?;
    let channel = a.opts.channel().map_err(Failure::usage)?;
    // `--rate` and `-g` exclude each other; both arrive as the gap between frames.
    let gap = a.rate_gap.or(a.gap);
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
    // Paced sending: frames due by now go out together, so high rates still batch.
    let mut next_due = Instant::now();
    while sent < limit && !stopped() {
        let ts = now_ns();
        tx.poll(ts).map_err(send_err)?;
        let batch_end = match gap {
            None => sent.saturating_add(256).min(limit),
            Some(gap) => {
                let now = Instant::now();
                if now < next_due {
                    // Idle until the next frame is due: what is queued leaves now, and
                    // a pending native datagram is polled again by its deadline.
                    tx.send_queued().map_err(send_err)?;
                    let mut wait = (next_due - now).min(Duration::from_millis(100));
                    if let Some(deadline) = tx.deadline() {
                        wait = wait.min(Duration::from_nanos(deadline.saturating_sub(ts)));
                    }
                    std::thread::sleep(wait);
                    continue;
                }
                let behind = (now - next_due).as_nanos() / gap.as_nanos().max(1);
                let due = (behind as u64 + 1).min(1024);
                next_due += gap * due as u32;
                sent.saturating_add(due).min(limit)
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
