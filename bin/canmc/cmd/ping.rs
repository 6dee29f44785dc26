//! `canmc ping`: probes the group and lists every receiver that answers.

use std::io;
use std::time::{Duration, Instant};

use canmc::socket::SendSocket;
use canmc::wire::native;

use super::now_ns;
use crate::cli::PingArgs;
use crate::{io_failure, stopped, Failure};

pub(crate) fn run(a: PingArgs) -> Result<(), Failure> {
    let cfg = a.net.config().map_err(Failure::usage)?;
    let key = a.net.key()?;
    if !(a.wait.is_finite() && a.wait > 0.0 && a.wait <= 3600.0) {
        return Err(Failure::usage(format!(
            "-W {}: must be a number of seconds from 0 to 3600",
            a.wait
        )));
    }
    let sock =
        SendSocket::open_for_replies(&cfg).map_err(|e| io_failure("cannot open sender", e))?;
    let replies = sock
        .try_clone_udp()
        .map_err(|e| io_failure("cannot open sender", e))?;
    let sender_id = native::random_sender_id();
    let mut probe_buf = [0u8; native::PROBE_LEN + native::TAG_LEN];
    let mut bad_auth = 0u64;
    let mut buf = [0u8; 2048];
    let mut receivers = std::collections::BTreeSet::new();
    let mut answers = 0u64;
    for round in 1..=a.count {
        if stopped() {
            break;
        }
        let probe = native::PingProbe {
            probe_id: u64::from(native::random_sender_id()) << 32 | u64::from(round),
            sent_ns: now_ns(),
        };
        let mut n = native::encode_probe(&mut probe_buf, sender_id, u64::from(round), &probe);
        if let Some(key) = &key {
            n = native::seal(&mut probe_buf, n, key);
        }
        sock.send(&probe_buf[..n])
            .map_err(|e| io_failure("cannot send the probe", e))?;
        let deadline = Instant::now() + Duration::from_secs_f64(a.wait);
        while !stopped() {
            let left = deadline.saturating_duration_since(Instant::now());
            if left.is_zero() {
                break;
            }
            let _ = replies.set_read_timeout(Some(left.min(Duration::from_millis(100))));
            let (len, from) = match replies.recv_from(&mut buf) {
                Ok(r) => r,
                Err(e)
                    if matches!(
                        e.kind(),
                        io::ErrorKind::WouldBlock
                            | io::ErrorKind::TimedOut
                            | io::ErrorKind::Interrupted
                    ) =>
                {
                    continue
                }
                Err(e) => return Err(io_failure("cannot receive answers", e)),
            };
            if let Some(key) = &key {
                if native::verify(&buf[..len], key).is_err() {
                    bad_auth += 1;
                    continue;
                }
            }
            let Ok((_, answer)) = native::decode_answer(&buf[..len]) else {
                continue;
            };
            if answer.probe_id != probe.probe_id {
                continue;
            }
            let rtt_us = now_ns().saturating_sub(answer.probe_sent_ns) / 1000;
            answers += 1;
            receivers.insert(from);
            if a.json {
                println!(
                    "{{\"round\":{round},\"from\":\"{from}\",\"host\":{},\"role\":\"{}\",\"pid\":{},\"uptime_ms\":{},\"frames_seen\":{},\"rtt_us\":{rtt_us}}}",
                    json_string(answer.host()),
                    answer.role,
                    answer.pid,
                    answer.uptime_ms,
                    answer.frames_seen
                );
            } else {
                println!(
                    "{from}  host={} role={} pid={} uptime={:.1}s frames={} rtt={:.3} ms",
                    answer.host(),
                    answer.role,
                    answer.pid,
                    answer.uptime_ms as f64 / 1000.0,
                    answer.frames_seen,
                    rtt_us as f64 / 1000.0
                );
            }
        }
    }
    if !a.json {
        eprintln!("{answers} answers from {} receivers", receivers.len());
        if bad_auth > 0 {
            eprintln!("{bad_auth} unauthenticated answers dropped (bad_auth)");
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

/// A JSON string literal (quotes and escapes) for text from the network.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for c in s.chars() {
        match c {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
