//! `canmc record`: the group into a capture file, written on the receive thread.

use std::time::{Duration, Instant};

use canmc::convert::{self as conv, WriterOptions};
use canmc::engine::Engine;
use canmc::filter::FilterSet;
use canmc::record::RecorderOptions;
use canmc::wire::native::{FrameBatch, Role};
use canmc::{Event, SenderAddr};

use super::receiver::{engine_config, open_receiver, summary_from};
use crate::cli::{IoArg, RecordArgs};
use crate::term::{print_summary, StatusLine};
use crate::{convert_failure, io_failure, stopped, Failure};

/// `record`'s consumer: runs on the engine's receive thread, so a frame goes from the
/// socket buffer to the file with no ring in between.
pub(crate) struct RecordSink {
    writer: Box<dyn conv::FrameWriter>,
    filters: FilterSet,
    limit: u64,
    frames: u64,
    filtered: u64,
    error: Option<String>,
    last_flush: Instant,
}

impl canmc::engine::InlineConsumer for RecordSink {
    fn on_event(&mut self, event: &Event) -> bool {
        if let Event::Frame(f) = event {
            if !self.filters.matches(f) {
                self.filtered += 1;
                return true;
            }
        }
        if let Err(e) = self.writer.write_event(event) {
            self.error = Some(e.to_string());
            return false;
        }
        if let Event::Frame(_) = event {
            self.frames += 1;
            return self.frames < self.limit;
        }
        true
    }

    /// Without filters, a native datagram goes to the writer whole: `.cmc` stores it as
    /// it arrived, one copy and one checksum for all its frames.
    fn takes_batches(&self) -> bool {
        self.filters.is_empty()
    }

    fn on_frames(&mut self, batch: &FrameBatch<'_>, sender: &SenderAddr) -> bool {
        let n = batch.len() as u64;
        if self.frames + n > self.limit {
            // The frame limit falls inside this datagram: frame by frame, to stop at it.
            for mut frame in batch.frames() {
                frame.sender = *sender;
                if !self.on_event(&Event::Frame(frame)) {
                    return false;
                }
            }
            return true;
        }
        if let Err(e) = self.writer.write_batch(batch, sender) {
            self.error = Some(e.to_string());
            return false;
        }
        self.frames += n;
        self.frames < self.limit
    }

    fn on_batch_end(&mut self) {
        // Text formats reach the file within a second (for `tail -f`); .cmc records are
        // in the page cache already and survive a crash of this process anyway.
        if self.last_flush.elapsed() >= Duration::from_secs(1) {
            self.last_flush = Instant::now();
            if let Err(e) = self.writer.flush() {
                self.error.get_or_insert(e.to_string());
            }
        }
    }
}

pub(crate) fn run(a: RecordArgs) -> Result<(), Failure> {
    if let Some(iface) = a.can.clone() {
        return super::can::record(a, &iface);
    }
    let filters = FilterSet::new(a.filters.clone());
    let format = a
        .out
        .format(&a.output)
        .map_err(|e| Failure::usage(e.to_string()))?;
    let mut opts = WriterOptions {
        recorder: RecorderOptions {
            segment_size: a.segment_size << 20,
            ..RecorderOptions::default()
        },
        ..WriterOptions::default()
    };
    a.out.apply(&mut opts);
    // With `--io auto`, record takes recvmmsg: with the 2 ms coalescing below it cost
    // 0.75 µs of CPU per frame at 20 000 frames/s against 4.2 µs for io_uring, and
    // 0.63 against 0.76 µs at 450 000/s (docs/perf.md). `--io uring` still chooses it.
    let mut recv_opts = a.recv.clone();
    if matches!(recv_opts.io, IoArg::Auto) {
        recv_opts.io = IoArg::Mmsg;
    }
    // Join first: a bad address must not leave an empty file behind.
    let key = a.net.key()?;
    let (source, cfg, deadline) = open_receiver(&a.net, &recv_opts)?;
    let writer = conv::create_writer(&a.output, format, opts).map_err(convert_failure)?;
    let sink = RecordSink {
        writer,
        filters,
        limit: a.recv.count.unwrap_or(u64::MAX),
        frames: 0,
        filtered: 0,
        error: None,
        last_flush: Instant::now(),
    };
    let mut config = engine_config(&cfg, &a.recv, Role::Record, key);
    if a.recv.coalesce.is_none() {
        // A recorder needs no sub-millisecond latency: 2 ms of coalescing lets one
        // wake-up write many datagrams at low rates (at high rates batches are full and
        // nothing waits).
        config.coalesce = Some(Duration::from_millis(2));
    }
    let running = Engine::start_inline(source, config, sink)
        .map_err(|e| io_failure("cannot start the engine", e))?;
    let counters = running.engine().counters();
    let io_mode = running.engine().io_mode();
    let gro = running.engine().gro();
    let start = Instant::now();
    let mut status = StatusLine::new(true);
    while !stopped() && !running.is_finished() && deadline.is_none_or(|d| Instant::now() < d) {
        std::thread::sleep(Duration::from_millis(20));
        let s = counters.snapshot();
        status.update(start, s.frames, Some((s.kernel_drops, s.seq_gaps)));
    }
    status.clear();
    let elapsed = start.elapsed();
    // Ctrl-C, SIGTERM or --duration: what reached the socket before is still recorded.
    running.engine().stop_after_draining();
    let (result, sink) = running.join();
    let Some(sink) = sink else {
        return Err(Failure::runtime(
            "the receive thread died; the recording may be incomplete",
        ));
    };
    // Whatever happened, close the file so that it opens with everything written.
    let finished = sink.writer.finish();
    if let Some(e) = sink.error {
        return Err(Failure::runtime(format!(
            "recording stopped: {e}; {} keeps every frame written before",
            a.output.display()
        )));
    }
    if let Err(e) = result {
        return Err(io_failure("receiving failed", e));
    }
    finished.map_err(convert_failure)?;
    let sum = summary_from(
        "record",
        io_mode,
        gro,
        &counters.snapshot(),
        sink.frames,
        sink.filtered,
        elapsed,
    );
    print_summary(&sum, a.recv.json);
    if !a.recv.json {
        eprintln!("  written to {} ({})", a.output.display(), format.name());
    }
    Ok(())
}
