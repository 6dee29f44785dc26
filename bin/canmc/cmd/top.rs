//! `canmc top`: a live per-ID table of the group (or of a file played at its pace).
//!
//! Three threads: the engine's receive thread; a consumer thread that takes the
//! engine's ring (or reads the file) and counts into a [`IdTable`], publishing a copy
//! every 100 ms; and this thread, which draws the last copy at ~10 Hz and reads keys.
//! Drawing never holds up the receive path: the lock is taken once per publish by the
//! consumer and once per redraw here, each time for a copy.

use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::thread;
use std::time::{Duration, Instant};

use canmc::convert::{self as conv, FileFormat, ReadOptions};
use canmc::engine::{Counters, Engine, Event, Stats};
use canmc::view::dbc::Dbc;
use canmc::view::table::{IdTable, SortKey};
use canmc::wire::native::Role;
use clap::Args;

use super::receiver::{engine_config, open_receiver, summary_from};
use crate::cli::{NetArgs, RecvOpts};
use crate::term::print_summary;
use crate::tui::{Screen, Source, View};
use crate::{io_failure, stopped, Failure};

/// `canmc top` flags.
#[derive(Args)]
pub(crate) struct TopArgs {
    #[command(flatten)]
    pub(crate) net: NetArgs,
    #[command(flatten)]
    pub(crate) recv: RecvOpts,
    /// Show a capture file (.cmc, .log, .pcapng, .pcap, .asc) instead of the group,
    /// played at the pace of its timestamps.
    #[arg(long, value_name = "FILE")]
    pub(crate) file: Option<PathBuf>,
    /// With --file: play this many times faster (0: as fast as it reads).
    #[arg(long, default_value_t = 1.0, value_name = "S")]
    pub(crate) speed: f64,
    /// Sort by id, rate or count (keys i, r, n change it).
    #[arg(long, default_value = "id", value_name = "KEY")]
    pub(crate) sort: SortKey,
    /// Bit rate of the CAN bus the traffic stands for, for the bus load.
    #[arg(long, default_value_t = 500_000, value_name = "BIT/S")]
    pub(crate) bitrate: u64,
    /// Decode signals with this DBC file (shown for each row the DBC knows).
    #[arg(long, value_name = "FILE")]
    pub(crate) dbc: Option<PathBuf>,
    /// Highlight bytes that changed within this many seconds (data time).
    #[arg(long, default_value_t = 1.0, value_name = "SECS")]
    pub(crate) highlight: f64,
    /// With --file: skip lines that do not parse.
    #[arg(long)]
    pub(crate) skip_bad: bool,
}

/// What the consumer thread hands the screen.
#[derive(Debug, Default)]
pub(crate) struct Shared {
    /// The table as of the last publish.
    pub(crate) table: IdTable,
    /// The data-time clock at the last publish (ns since the epoch).
    pub(crate) now_ns: u64,
    /// The file was read to its end (or failed: `error`).
    pub(crate) finished: bool,
    /// Why reading the file stopped early.
    pub(crate) error: Option<String>,
}

/// Controls from the screen to the consumer thread.
#[derive(Debug, Default)]
struct Controls {
    stop: AtomicBool,
    clear: AtomicBool,
}

const PUBLISH: Duration = Duration::from_millis(100);

pub(crate) fn run(a: TopArgs) -> Result<(), Failure> {
    if a.bitrate == 0 {
        return Err(Failure::usage("--bitrate must be above 0"));
    }
    if !(a.speed.is_finite() && a.speed >= 0.0) {
        return Err(Failure::usage(format!(
            "--speed {}: must be 0 or a positive number",
            a.speed
        )));
    }
    if !(a.highlight.is_finite() && a.highlight >= 0.0) {
        return Err(Failure::usage(format!(
            "--highlight {}: must be a number of seconds",
            a.highlight
        )));
    }
    let dbc = match &a.dbc {
        Some(p) => Some(Dbc::open(p).map_err(|e| Failure::usage(format!("--dbc {e}")))?),
        None => None,
    };
    let deadline = a.recv.duration.map(|d| Instant::now() + d);
    let shared = Arc::new(Mutex::new(Shared::default()));
    let controls = Arc::new(Controls::default());
    let start = Instant::now();
    let view = View::new(a.sort, a.bitrate, (a.highlight * 1e9) as u64, dbc);

    if let Some(path) = &a.file {
        let format = FileFormat::from_path(path).map_err(|e| Failure::usage(e.to_string()))?;
        if !path.exists() {
            return Err(Failure::runtime(format!(
                "{}: no such file",
                path.display()
            )));
        }
        let (p, sh, ct) = (path.clone(), shared.clone(), controls.clone());
        let (speed, skip_bad) = (a.speed, a.skip_bad);
        let worker = thread::Builder::new()
            .name("canmc-top".into())
            .spawn(move || play_file(&p, format, speed, skip_bad, &sh, &ct))
            .map_err(|e| io_failure("cannot start a thread", e))?;
        let source = Source::File(path.display().to_string());
        let screen_result = draw_loop(view, source, &shared, &controls, None, deadline);
        controls.stop.store(true, Ordering::Relaxed);
        let _ = worker.join();
        screen_result?;
        let sh = shared.lock().unwrap_or_else(|e| e.into_inner());
        let t = sh.table.totals();
        eprintln!(
            "canmc top: {} frames, {} IDs from {}; {} lost, {} kernel drops in the file",
            t.frames,
            sh.table.rows().len(),
            path.display(),
            t.seq_gaps,
            t.kernel_drops
        );
        return match &sh.error {
            Some(e) => Err(Failure::runtime(e.clone())),
            None => Ok(()),
        };
    }

    let key = a.net.key()?;
    let (source, cfg, _) = open_receiver(&a.net, &a.recv)?;
    let (engine, mut handles) =
        Engine::start(source, engine_config(&cfg, &a.recv, Role::Dump, key))
            .map_err(|e| io_failure("cannot start the engine", e))?;
    let mut consumer = handles.remove(0);
    let counters = engine.counters();
    let (sh, ct) = (shared.clone(), controls.clone());
    let worker = thread::Builder::new()
        .name("canmc-top".into())
        .spawn(move || {
            let mut table = IdTable::with_capacity(4096);
            let mut batch = vec![Event::default(); 1024];
            let mut last = Instant::now();
            // Frames taken from the ring, whatever `clear` did to the table.
            let mut frames = 0u64;
            while !ct.stop.load(Ordering::Relaxed) {
                let n = consumer.pop_batch(&mut batch);
                if n == 0 {
                    if consumer.is_closed() {
                        break;
                    }
                    consumer.wait(Duration::from_millis(20));
                } else {
                    if ct.clear.swap(false, Ordering::Relaxed) {
                        table.clear();
                    }
                    for e in &batch[..n] {
                        frames += u64::from(matches!(e, Event::Frame(_)));
                        table.on_event(e);
                    }
                }
                if last.elapsed() >= PUBLISH {
                    last = Instant::now();
                    if ct.clear.swap(false, Ordering::Relaxed) {
                        table.clear();
                    }
                    publish(&mut table, super::now_ns(), &sh);
                }
            }
            frames
        })
        .map_err(|e| io_failure("cannot start a thread", e))?;
    let label = format!("{}:{}", cfg.group, cfg.port);
    let screen_result = draw_loop(
        view,
        Source::Group(label),
        &shared,
        &controls,
        Some(&counters),
        deadline,
    );
    engine.stop();
    let io_mode = engine.io_mode();
    let gro = engine.gro();
    if let Err(e) = engine.join() {
        eprintln!("canmc: warning: receive thread: {e}");
    }
    controls.stop.store(true, Ordering::Relaxed);
    let frames = worker.join().unwrap_or(0);
    screen_result?;
    let sum = summary_from(
        "top",
        io_mode,
        gro,
        &counters.snapshot(),
        frames,
        0,
        start.elapsed(),
    );
    print_summary(&sum, a.recv.json);
    Ok(())
}

/// Moves the table's clock and copies it for the screen.
fn publish(table: &mut IdTable, now_ns: u64, shared: &Mutex<Shared>) {
    table.tick(now_ns);
    let mut sh = shared.lock().unwrap_or_else(|e| e.into_inner());
    table.copy_into(&mut sh.table);
    sh.now_ns = now_ns;
}

/// Reads `path` into the table at `speed` × the pace of its timestamps.
fn play_file(
    path: &std::path::Path,
    format: FileFormat,
    speed: f64,
    skip_bad: bool,
    shared: &Mutex<Shared>,
    ct: &Controls,
) {
    let mut table = IdTable::with_capacity(4096);
    let started = Instant::now();
    let mut first: Option<u64> = None;
    let mut last_publish = Instant::now();
    let mut data_now = 0u64;
    let opts = ReadOptions {
        skip_bad,
        start_ns: None,
    };
    let result = conv::read_events(path, format, opts, &mut |event| {
        let ts = match event {
            Event::Frame(f) => f.timestamp_ns,
            Event::Loss { timestamp_ns, .. } | Event::KernelDrops { timestamp_ns, .. } => {
                *timestamp_ns
            }
        };
        let t0 = *first.get_or_insert(ts);
        // Wait until the event is due, publishing meanwhile so rates stay live.
        if speed > 0.0 {
            let due = Duration::from_secs_f64(ts.saturating_sub(t0) as f64 / 1e9 / speed);
            while started.elapsed() < due {
                if ct.stop.load(Ordering::Relaxed) {
                    return false;
                }
                thread::sleep((due - started.elapsed()).min(Duration::from_millis(20)));
                if last_publish.elapsed() >= PUBLISH {
                    last_publish = Instant::now();
                    data_now = t0 + (started.elapsed().as_secs_f64() * speed * 1e9) as u64;
                    if ct.clear.swap(false, Ordering::Relaxed) {
                        table.clear();
                    }
                    publish(&mut table, data_now, shared);
                }
            }
        }
        table.on_event(event);
        data_now = data_now.max(ts);
        if last_publish.elapsed() >= PUBLISH {
            last_publish = Instant::now();
            if ct.clear.swap(false, Ordering::Relaxed) {
                table.clear();
            }
            publish(&mut table, data_now, shared);
        }
        !ct.stop.load(Ordering::Relaxed)
    });
    // One more window so the last rates cover the end of the file.
    publish(&mut table, data_now, shared);
    let mut sh = shared.lock().unwrap_or_else(|e| e.into_inner());
    sh.finished = true;
    sh.error = match result {
        Err(e) => Some(e.to_string()),
        Ok(stats) => stats.check(path).err().map(|e| e.to_string()),
    };
}

/// Draws until `q`, a signal or the deadline.
fn draw_loop(
    mut view: View,
    source: Source,
    shared: &Mutex<Shared>,
    controls: &Controls,
    counters: Option<&Arc<Counters>>,
    deadline: Option<Instant>,
) -> Result<(), Failure> {
    let mut screen = Screen::open().map_err(|e| io_failure("cannot use the terminal", e))?;
    let mut snapshot = Shared::default();
    loop {
        if stopped() || deadline.is_some_and(|d| Instant::now() >= d) {
            break;
        }
        if !view.paused {
            let sh = shared.lock().unwrap_or_else(|e| e.into_inner());
            sh.table.copy_into(&mut snapshot.table);
            snapshot.now_ns = sh.now_ns;
            snapshot.finished = sh.finished;
            snapshot.error.clone_from(&sh.error);
        }
        let stats: Option<Stats> = counters.map(|c| c.snapshot());
        screen
            .draw(&mut view, &source, &snapshot, stats.as_ref())
            .map_err(|e| io_failure("cannot draw", e))?;
        match screen
            .keys(&mut view, Duration::from_millis(100))
            .map_err(|e| io_failure("cannot read the keyboard", e))?
        {
            crate::tui::Action::Quit => break,
            crate::tui::Action::Clear => controls.clear.store(true, Ordering::Relaxed),
            crate::tui::Action::None => {}
        }
    }
    Ok(())
}
