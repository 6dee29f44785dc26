//! Capture from a CAN interface: frames with the kernel's receive timestamps, and the
//! kernel's drops as [`Event::KernelDrops`] where they happened, handed to a consumer
//! (`canmc dump --can`, `canmc record --can`) the way the engine hands group traffic.

use std::io;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use super::rx::CanReceiver;
use crate::engine::Event;
use crate::filter::FilterSet;
use crate::frame::Channel;

/// What a capture should do.
#[derive(Debug, Clone, Default)]
pub struct CaptureOptions {
    /// Only frames these candump filters pass go to the consumer.
    pub filters: FilterSet,
    /// Stop after this many frames.
    pub limit: Option<u64>,
    /// Stop at this instant.
    pub deadline: Option<Instant>,
    /// Channel to put in each frame (the interface name, as candump prints it).
    pub channel: Channel,
    /// Leave out this host's own transmissions (frames with `MSG_DONTROUTE`); candump
    /// shows them unless told otherwise.
    pub no_local: bool,
}

/// What a capture saw.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct CaptureStats {
    /// Frames handed to the consumer.
    pub frames: u64,
    /// Frames read from the interface (filtered ones included).
    pub received: u64,
    /// Frames the filters left out.
    pub filtered: u64,
    /// Frames the kernel dropped because the socket's buffer was full (`SO_RXQ_OVFL`,
    /// and `SO_MEMINFO` at the end for drops after the last queued frame).
    pub kernel_drops: u64,
    /// Frames sent by this host (local echoes), included in `frames` unless filtered.
    pub local: u64,
    /// Wall time of the capture.
    pub elapsed: Duration,
}

fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Receives from `rx` and hands every frame (and every growth of the drop counter) to
/// `on_event` until `stop()`, the limit, the deadline, or `on_event` returning `false`.
/// `on_idle` runs after each batch and when nothing came for 100 ms (a place to flush).
/// Allocates nothing.
pub fn capture(
    rx: &mut CanReceiver,
    opts: &CaptureOptions,
    on_event: &mut dyn FnMut(&Event) -> bool,
    on_idle: &mut dyn FnMut(),
    stop: &dyn Fn() -> bool,
) -> io::Result<CaptureStats> {
    let started = Instant::now();
    let mut st = CaptureStats::default();
    let limit = opts.limit.unwrap_or(u64::MAX);
    let mut last_drops = rx.socket().drops().unwrap_or(0) as u64;
    let base_drops = last_drops;
    let mut go_on = true;
    while go_on && st.frames < limit && !stop() && opts.deadline.is_none_or(|d| Instant::now() < d)
    {
        let wait = opts.deadline.map_or(Duration::from_millis(100), |d| {
            d.saturating_duration_since(Instant::now())
                .min(Duration::from_millis(100))
        });
        rx.poll(wait, &mut |frame, meta| {
            if !go_on || st.frames >= limit {
                return;
            }
            st.received += 1;
            let drops = meta.kernel_drops as u64;
            if drops > last_drops {
                let ev = Event::KernelDrops {
                    count: drops - last_drops,
                    timestamp_ns: frame.timestamp_ns,
                };
                last_drops = drops;
                go_on = on_event(&ev);
            }
            if meta.local {
                st.local += 1;
                if opts.no_local {
                    st.filtered += 1;
                    return;
                }
            }
            if !opts.filters.matches(frame) {
                st.filtered += 1;
                return;
            }
            let mut f = *frame;
            f.channel = opts.channel;
            if f.timestamp_ns == 0 {
                f.timestamp_ns = now_ns();
            }
            st.frames += 1;
            if go_on {
                go_on = on_event(&Event::Frame(f));
            }
        })?;
        on_idle();
    }
    // Asked to stop: what the socket holds already reached the bus, so it is handed over
    // too (a limit or a consumer that said no ends at once).
    while go_on && st.frames < limit && stop() {
        let n = rx.recv_batch(&mut |frame, meta| {
            if !go_on || st.frames >= limit {
                return;
            }
            st.received += 1;
            if meta.local {
                st.local += 1;
            }
            if (meta.local && opts.no_local) || !opts.filters.matches(frame) {
                st.filtered += 1;
                return;
            }
            let mut f = *frame;
            f.channel = opts.channel;
            st.frames += 1;
            go_on = on_event(&Event::Frame(f));
        })?;
        if n == 0 {
            break;
        }
    }
    // Drops after the last queued frame are seen only by asking the socket.
    if let Ok(d) = rx.socket().drops() {
        let d = d as u64;
        if d > last_drops {
            let ev = Event::KernelDrops {
                count: d - last_drops,
                timestamp_ns: now_ns(),
            };
            on_event(&ev);
            last_drops = d;
        }
    }
    on_idle();
    st.kernel_drops = last_drops - base_drops;
    st.elapsed = started.elapsed();
    Ok(st)
}
