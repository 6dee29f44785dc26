//! Replay: puts a capture (`.cmc`, candump `.log`, …) back onto the group with its
//! original timing — sleep, then spin for the last stretch — scaled by a speed factor,
//! or as fast as the kernel allows.
//!
//! Nothing is allocated per frame: events come from [`crate::convert::read_events`]
//! (zero-copy for `.cmc`) and go out through a [`FrameSender`] whose buffers exist
//! before the first frame.

use std::time::{Duration, Instant};

use crate::convert::{read_events, ConvertError, FileFormat, ReadOptions};
use crate::event::Event;
use crate::filter::FilterSet;
use crate::send::FrameSender;

/// How to replay.
#[derive(Debug, Clone, Default)]
pub struct ReplayOptions {
    /// `None`: as fast as possible. `Some(s)`: original timing divided by `s` (2.0 plays
    /// twice as fast).
    pub speed: Option<f64>,
    /// Plays of the file; `None` for ever (until `stop` says so).
    pub loops: Option<u64>,
    /// Gaps between frames longer than this are shortened to it.
    pub max_gap: Option<Duration>,
    /// Window relative to the file's first frame.
    pub start: Option<Duration>,
    /// End of the window, relative to the file's first frame.
    pub end: Option<Duration>,
    /// Only frames these candump filters pass are sent.
    pub filters: FilterSet,
    /// Skip text lines that do not parse.
    pub skip_bad: bool,
}

/// What a replay did, and how closely it kept time.
#[derive(Debug, Clone, Default)]
pub struct ReplayStats {
    /// Frames sent.
    pub frames: u64,
    /// Frames the filters or the window left out.
    pub skipped: u64,
    /// Complete plays of the file.
    pub loops: u64,
    /// Bad lines skipped (`skip_bad`), over all loops.
    pub bad_lines: u64,
    /// How late each frame left compared with its due time (timed replay only).
    pub lateness: LatenessHistogram,
    /// Wall time of the whole replay.
    pub elapsed: Duration,
}

/// A fixed-size histogram of send lateness in µs (no allocation while recording).
#[derive(Debug, Clone)]
pub struct LatenessHistogram {
    /// Bucket i counts lateness in [i, i+1) µs for i < 1000; the last bucket, ≥ 1 ms.
    buckets: [u64; 1001],
    count: u64,
    max_ns: u64,
}

impl Default for LatenessHistogram {
    fn default() -> Self {
        LatenessHistogram {
            buckets: [0; 1001],
            count: 0,
            max_ns: 0,
        }
    }
}

impl LatenessHistogram {
    fn record(&mut self, late: Duration) {
        let ns = late.as_nanos().min(u128::from(u64::MAX)) as u64;
        self.buckets[((ns / 1000) as usize).min(1000)] += 1;
        self.count += 1;
        self.max_ns = self.max_ns.max(ns);
    }

    /// Samples recorded.
    pub fn count(&self) -> u64 {
        self.count
    }

    /// The `q` quantile (0–1) in µs, as the upper edge of its bucket; `None` without
    /// samples. 1000 means "1 ms or more".
    pub fn quantile_us(&self, q: f64) -> Option<u64> {
        if self.count == 0 {
            return None;
        }
        let rank = ((q.clamp(0.0, 1.0) * self.count as f64).ceil() as u64).max(1);
        let mut seen = 0;
        for (i, &n) in self.buckets.iter().enumerate() {
            seen += n;
            if seen >= rank {
                return Some(i as u64 + 1);
            }
        }
        Some(1000)
    }

    /// Largest lateness seen.
    pub fn max(&self) -> Duration {
        Duration::from_nanos(self.max_ns)
    }
}

/// Puts the calling thread under SCHED_FIFO at `priority` (1–99), so that timed replay
/// is not preempted by ordinary work. Needs CAP_SYS_NICE or an rtprio limit.
pub fn set_realtime_priority(priority: i32) -> std::io::Result<()> {
    let param = libc::sched_param {
        sched_priority: priority,
    };
    // SAFETY: pid 0 is the calling thread; `param` is a valid sched_param that the kernel
    // only reads.
    let rc = unsafe { libc::sched_setscheduler(0, libc::SCHED_FIFO, &param) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    Ok(())
}

/// How long before a deadline to stop sleeping and spin: covers the timer slack of a
/// sleeping thread (~50–100 µs on Linux).
const SPIN_BEFORE: Duration = Duration::from_micros(200);

/// Waits for `deadline`; false if `stop` said so first (checked every 100 ms, so a
/// long gap in a capture does not make Ctrl-C wait).
fn wait_until(deadline: Instant, stop: &dyn Fn() -> bool) -> bool {
    loop {
        let now = Instant::now();
        if now >= deadline {
            return true;
        }
        let left = deadline - now;
        if left > SPIN_BEFORE {
            std::thread::sleep((left - SPIN_BEFORE).min(Duration::from_millis(100)));
            if stop() {
                return false;
            }
        } else {
            std::hint::spin_loop();
        }
    }
}

/// With no timing, frames share one clock read per this many.
const FAST_CLOCK_EVERY: u64 = 64;

fn wall_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}

/// Plays `path` onto `tx` per `opts` until done or `stop()` returns true. Frames carry
/// the time they are sent, not the time they were recorded.
pub fn replay(
    path: &std::path::Path,
    format: FileFormat,
    tx: &mut FrameSender,
    opts: &ReplayOptions,
    stop: &dyn Fn() -> bool,
) -> Result<ReplayStats, ConvertError> {
    let mut stats = ReplayStats::default();
    let started = Instant::now();
    let speed = opts.speed.filter(|s| s.is_finite() && *s > 0.0);
    let mut io_error = None;
    // The wall-clock instant the current play's timeline starts at.
    let mut play_start = Instant::now();
    // `--fast`: the send time stamped on the current run of frames.
    let mut fast_now = 0u64;
    while opts.loops.is_none_or(|n| stats.loops < n) && !stop() {
        let mut first_ts: Option<u64> = None;
        let mut prev_ts: Option<u64> = None;
        // Time removed from the timeline by `max_gap`, in file ns.
        let mut cut_ns: u64 = 0;
        let mut last_due = play_start;
        let read = read_events(
            path,
            format,
            ReadOptions {
                skip_bad: opts.skip_bad,
                start_ns: None,
            },
            &mut |event| {
                let Event::Frame(frame) = event else {
                    return true;
                };
                let ts = frame.timestamp_ns;
                let first = *first_ts.get_or_insert(ts);
                let offset = Duration::from_nanos(ts.saturating_sub(first));
                if opts.start.is_some_and(|s| offset < s) {
                    stats.skipped += 1;
                    return true;
                }
                if opts.end.is_some_and(|e| offset > e) {
                    return false;
                }
                if !opts.filters.matches(frame) {
                    stats.skipped += 1;
                    return true;
                }
                if let (Some(max_gap), Some(prev)) = (opts.max_gap, prev_ts) {
                    let gap = ts.saturating_sub(prev);
                    let max = max_gap.as_nanos() as u64;
                    if gap > max {
                        cut_ns += gap - max;
                    }
                }
                prev_ts = Some(ts);
                let mut out = *frame;
                if let Some(speed) = speed {
                    let window_start = opts.start.map_or(0, |s| s.as_nanos() as u64);
                    let file_ns = ts
                        .saturating_sub(first)
                        .saturating_sub(window_start)
                        .saturating_sub(cut_ns);
                    let due = play_start + Duration::from_nanos((file_ns as f64 / speed) as u64);
                    // Frames already due go out together; the queue is flushed
                    // only when the next frame must wait, right before waiting.
                    if due > Instant::now() {
                        if let Err(e) = tx.send_queued().and_then(|()| tx.poll(wall_ns())) {
                            io_error = Some(e);
                            return false;
                        }
                        if !wait_until(due, stop) {
                            return false;
                        }
                    }
                    last_due = due;
                    out.timestamp_ns = wall_ns();
                    stats
                        .lateness
                        .record(Instant::now().saturating_duration_since(due));
                    if let Err(e) = tx.send(&out, out.timestamp_ns) {
                        io_error = Some(e);
                        return false;
                    }
                } else {
                    // As fast as possible: frames leave in batches of up to 256 per
                    // sendmmsg anyway, so the clock is read once per 64 frames (a read
                    // per frame was 2 % of the replay's time).
                    if stats.frames % FAST_CLOCK_EVERY == 0 {
                        fast_now = wall_ns();
                    }
                    out.timestamp_ns = fast_now;
                    if let Err(e) = tx.send(&out, out.timestamp_ns) {
                        io_error = Some(e);
                        return false;
                    }
                }
                stats.frames += 1;
                // Checking for Ctrl-C every frame would cost a syscall-free atomic load
                // only, but every 256 is plenty.
                !(stats.frames % 256 == 0 && stop())
            },
        )?;
        stats.bad_lines += read.skipped;
        if let Some(e) = io_error.take() {
            return Err(ConvertError::Io {
                path: path.to_path_buf(),
                source: e,
            });
        }
        if let Err(e) = read.check(path) {
            // What was read before the problem still goes out, then the error.
            let _ = tx.flush(wall_ns());
            return Err(e);
        }
        stats.loops += 1;
        // The next play starts where this one ended (its last frame's due time).
        play_start = if speed.is_some() {
            last_due.max(Instant::now())
        } else {
            Instant::now()
        };
        if first_ts.is_none() {
            break; // an empty file: looping it forever would spin
        }
    }
    tx.flush(wall_ns()).map_err(|e| ConvertError::Io {
        path: path.to_path_buf(),
        source: e,
    })?;
    stats.elapsed = started.elapsed();
    Ok(stats)
}
