//! Value parsers for the flags: each turns one argument into the value a command uses,
//! or refuses it with a message that says what would be accepted. clap puts the flag's
//! name in front ("invalid value '-1' for '--duration <SECS>': …").

use std::net::IpAddr;
use std::time::Duration;

use canmc::filter::IdFilter;

/// A number that is not NaN or infinite.
fn finite(s: &str) -> Option<f64> {
    s.trim().parse::<f64>().ok().filter(|v| v.is_finite())
}

/// A `Duration` of `secs` seconds, if it fits one.
fn duration(secs: f64) -> Option<Duration> {
    Duration::try_from_secs_f64(secs).ok()
}

/// Seconds > 0 (`--duration`).
pub(crate) fn positive_secs(s: &str) -> Result<Duration, String> {
    finite(s)
        .filter(|&v| v > 0.0)
        .and_then(duration)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "must be a positive number of seconds".to_owned())
}

/// Seconds ≥ 0 (`--skip-gaps`, `--start`, `--end`).
pub(crate) fn secs(s: &str) -> Result<Duration, String> {
    finite(s)
        .filter(|&v| v >= 0.0)
        .and_then(duration)
        .ok_or_else(|| "must be seconds ≥ 0".to_owned())
}

/// Seconds in (0, 3600] (`ping -W`).
pub(crate) fn wait_secs(s: &str) -> Result<Duration, String> {
    finite(s)
        .filter(|&v| v > 0.0 && v <= 3600.0)
        .and_then(duration)
        .filter(|d| !d.is_zero())
        .ok_or_else(|| "must be a number of seconds from 0 to 3600".to_owned())
}

/// Milliseconds in `[0, max]`.
fn millis_upto(s: &str, max: f64) -> Result<Duration, String> {
    finite(s)
        .filter(|&v| (0.0..=max).contains(&v))
        .and_then(|ms| duration(ms / 1000.0))
        .ok_or_else(|| format!("must be a number of milliseconds from 0 to {max}"))
}

/// Milliseconds from 0 to 60 000 (`--linger`).
pub(crate) fn linger_ms(s: &str) -> Result<Duration, String> {
    millis_upto(s, 60_000.0)
}

/// Milliseconds from 0 to 1 000 (`--coalesce`).
pub(crate) fn coalesce_ms(s: &str) -> Result<Duration, String> {
    millis_upto(s, 1000.0)
}

/// Milliseconds ≥ 0 (`gen -g`).
pub(crate) fn gap_ms(s: &str) -> Result<Duration, String> {
    finite(s)
        .filter(|&v| v >= 0.0)
        .and_then(|ms| duration(ms / 1000.0))
        .ok_or_else(|| "must be a number of milliseconds ≥ 0".to_owned())
}

/// Frames per second > 0 (`gen --rate`), kept exact (a gap in whole nanoseconds would
/// be 1 % off at 30 M/s); refused when the gap between two frames would not fit a
/// `Duration`.
pub(crate) fn rate(s: &str) -> Result<f64, String> {
    finite(s)
        .filter(|&v| v > 0.0 && duration(1.0 / v).is_some())
        .ok_or_else(|| "must be a positive number of frames/s".to_owned())
}

/// A factor > 0 (`replay --speed`).
pub(crate) fn speed(s: &str) -> Result<f64, String> {
    finite(s)
        .filter(|&v| v > 0.0)
        .ok_or_else(|| "must be a positive factor".to_owned())
}

/// A multicast group address (`--group`).
pub(crate) fn group(s: &str) -> Result<IpAddr, String> {
    let addr: IpAddr = s
        .parse()
        .map_err(|_| "not an IPv4 or IPv6 address".to_owned())?;
    if !addr.is_multicast() {
        return Err("not a multicast group address (IPv4 224.0.0.0/4, IPv6 ff00::/8)".to_owned());
    }
    Ok(addr)
}

/// A unicast sender address (`--source`).
pub(crate) fn source(s: &str) -> Result<IpAddr, String> {
    let addr: IpAddr = s
        .parse()
        .map_err(|_| "not an IPv4 or IPv6 address".to_owned())?;
    if addr.is_multicast() || addr.is_unspecified() {
        return Err("not a unicast sender address".to_owned());
    }
    Ok(addr)
}

/// A candump filter, `id:mask` or `id~mask`.
pub(crate) fn filter(s: &str) -> Result<IdFilter, String> {
    s.parse::<IdFilter>().map_err(|e| e.to_string())
}

/// `--loop`: a count ≥ 1, or `i` (or `inf`) for ever.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct LoopCount(pub(crate) Option<u64>);

impl std::str::FromStr for LoopCount {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        match s {
            "i" | "inf" => Ok(LoopCount(None)),
            _ => match s.parse::<u64>() {
                Ok(n) if n >= 1 => Ok(LoopCount(Some(n))),
                _ => Err(format!("'{s}' is not a count ≥ 1 or 'i'")),
            },
        }
    }
}
