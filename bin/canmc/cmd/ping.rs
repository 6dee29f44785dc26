//! `canmc ping`: probes the group and lists every receiver that answers (the protocol is
//! the library's [`canmc::ping::Pinger`]; this file prints).

use canmc::ping::{PingReply, Pinger};

use crate::cli::PingArgs;
use crate::{io_failure, stopped, Failure};

pub(crate) fn run(a: PingArgs) -> Result<(), Failure> {
    let cfg = a.net.config().map_err(|e| Failure::usage(e.to_string()))?;
    let key = a.net.key()?;
    let mut pinger = Pinger::open(&cfg, key).map_err(|e| io_failure("cannot open sender", e))?;
    let mut print_error = None;
    let mut print = |r: &PingReply| {
        if a.json {
            match serde_json::to_string(r) {
                Ok(text) => println!("{text}"),
                Err(e) => {
                    print_error.get_or_insert(e);
                }
            }
        } else {
            println!(
                "{}  host={} role={} pid={} uptime={:.1}s frames={} rtt={:.3} ms",
                r.from,
                r.host,
                r.role,
                r.pid,
                r.uptime_ms as f64 / 1000.0,
                r.frames_seen,
                r.rtt_us() as f64 / 1000.0
            );
        }
    };
    let report = pinger
        .run(a.count, a.wait, &stopped, &mut print)
        .map_err(|e| Failure::runtime(e.to_string()))?;
    if let Some(e) = print_error {
        return Err(Failure::runtime(format!("cannot write JSON: {e}")));
    }
    let receivers = report.receivers();
    if !a.json {
        eprintln!(
            "{} answers from {} receivers",
            report.answers.len(),
            receivers.len()
        );
        if report.bad_auth > 0 {
            eprintln!(
                "{} unauthenticated answers dropped (bad_auth)",
                report.bad_auth
            );
        }
    }
    if receivers.is_empty() {
        return Err(Failure {
            message: format!("no receiver answered on {}", cfg.group),
            code: 1,
        });
    }
    Ok(())
}
