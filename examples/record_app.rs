//! Recording from inside an application: an engine consumer writes every event —
//! frames, sequence gaps, kernel drops — into a `.cmc` file, which is then read back.
//!
//! Runs on loopback only (IPv4 group 239.74.163.2 on `lo`, TTL 0):
//!
//! ```sh
//! cargo run --release --example record_app
//! ```

use std::time::Duration;

use canmc::engine::{Engine, EngineConfig, Event};
use canmc::gen::{GenConfig, Generator};
use canmc::record::{Record, Recorder, RecorderOptions, Recording};
use canmc::recv::{self, IoMode, RecvConfig};
use canmc::send::FrameSender;
use canmc::socket::{McastConfig, RecvSocket, SendSocket};
use canmc::wire::{native, WireFormat};

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let path = std::env::temp_dir().join("canmc-record-app.cmc");
    let net = McastConfig::loopback_v4(43122);
    let (source, _) = recv::open_source(
        RecvSocket::open(&net)?.into_socket(),
        IoMode::Auto,
        &RecvConfig::default(),
    )?;
    let (engine, mut handles) = Engine::start(source, EngineConfig::default())?;

    // The recorder runs on a worker thread; it owns the file.
    let mut recorder = Recorder::create(&path, RecorderOptions::default())?;
    let worker = Engine::spawn_worker(handles.remove(0), None, move |event| {
        let result = match *event {
            Event::Frame(ref f) => recorder.write_frame(f),
            Event::Loss {
                sender,
                lost,
                timestamp_ns,
            } => recorder.write_loss(sender, lost, timestamp_ns),
            Event::KernelDrops {
                count,
                timestamp_ns,
            } => recorder.write_kernel_drops(count, timestamp_ns),
        };
        if let Err(e) = result {
            eprintln!("recording stopped: {e}");
        }
    });

    // 100 000 frames in the native format, paced so loopback loses nothing.
    let mut tx = FrameSender::new(
        SendSocket::open(&net)?,
        WireFormat::Native,
        native::DEFAULT_MAX_DATAGRAM,
        native::DEFAULT_LINGER_NS,
    );
    let mut generator = Generator::new(GenConfig::default())?;
    for i in 0..100_000u64 {
        let now = now_ns();
        let mut f = generator.next_frame();
        f.timestamp_ns = now;
        tx.send(&f, now)?;
        if i % 5_000 == 4_999 {
            tx.flush(now)?;
            std::thread::sleep(Duration::from_millis(2));
        }
    }
    tx.flush(now_ns())?;
    std::thread::sleep(Duration::from_millis(300));
    engine.stop();
    let stats = engine.stats();
    engine.join()?;
    // The worker ends when the ring is drained; dropping its closure finishes the file.
    let _ = worker.join();

    let recording = Recording::open(&path)?;
    let (mut frames, mut lost) = (0u64, 0u64);
    for record in recording.iter() {
        match record {
            Record::Frame(_) => frames += 1,
            Record::Loss { lost: n, .. } => lost += n,
            Record::KernelDrops { .. } => {}
        }
    }
    println!(
        "engine: {} frames, {} sequence gaps; recording {}: {frames} frames, {lost} datagrams lost",
        stats.frames,
        stats.seq_gaps,
        path.display()
    );
    std::fs::remove_file(&path)?;
    Ok(())
}

fn now_ns() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_nanos() as u64)
}
