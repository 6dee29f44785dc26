//! An engine with two consumers on worker threads pinned to CPUs 0 and 1; frames are
//! dispatched by CAN ID so each ID stays in order on one worker.
//!
//! Runs on loopback only (IPv4 group 239.74.163.2 on `lo`, TTL 0):
//!
//! ```sh
//! cargo run --release --example pinned_engine
//! ```

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::Arc;
use std::time::Duration;

use canmc::engine::{Dispatch, Engine, EngineConfig, Event};
use canmc::gen::{GenConfig, Generator};
use canmc::recv::{self, IoMode, RecvConfig};
use canmc::send::BatchSender;
use canmc::socket::{McastConfig, RecvSocket, SendSocket};
use canmc::wire::pycan;

const FRAMES: u64 = 200_000;

fn main() -> Result<(), Box<dyn std::error::Error>> {
    let net = McastConfig::loopback_v4(43121);
    let sock = RecvSocket::open(&net)?;
    let (source, note) =
        recv::open_source(sock.into_socket(), IoMode::Auto, &RecvConfig::default())?;
    if let Some(note) = note {
        eprintln!("{note}");
    }
    let (engine, handles) = Engine::start(
        source,
        EngineConfig {
            consumers: 2,
            dispatch: Dispatch::ById,
            ..EngineConfig::default()
        },
    )?;

    let seen = Arc::new(AtomicU64::new(0));
    let workers: Vec<_> = handles
        .into_iter()
        .enumerate()
        .map(|(cpu, handle)| {
            let seen = Arc::clone(&seen);
            let w = Engine::spawn_worker(handle, Some(cpu), move |event| {
                if let Event::Frame(_) = event {
                    seen.fetch_add(1, Ordering::Relaxed);
                }
            });
            if let Some(e) = w.pin_error() {
                eprintln!("worker {cpu}: not pinned ({e}); running unpinned");
            }
            w
        })
        .collect();

    // Send with sendmmsg + GSO, paced in bursts so the loopback receiver keeps up.
    let mut tx = BatchSender::new(SendSocket::open(&net)?, pycan::MAX_ENCODED);
    let mut generator = Generator::new(GenConfig::default())?;
    for i in 0..FRAMES {
        let frame = generator.next_frame();
        tx.push_with(|buf| {
            match <&mut [u8; pycan::MAX_ENCODED]>::try_from(&mut buf[..pycan::MAX_ENCODED]) {
                Ok(slot) => pycan::encode(&frame, slot),
                Err(_) => 0,
            }
        })?;
        if i % 1024 == 1023 {
            tx.flush()?;
            std::thread::sleep(Duration::from_micros(500));
        }
    }
    tx.flush()?;
    std::thread::sleep(Duration::from_millis(300));

    engine.stop();
    let stats = engine.stats();
    engine.join()?;
    for w in workers {
        let _ = w.join();
    }
    println!(
        "sent {FRAMES}, consumed {}, datagrams {}, kernel drops {}, ring drops {}, decode errors {}",
        seen.load(Ordering::Relaxed),
        stats.datagrams,
        stats.kernel_drops,
        stats.ring_drops,
        stats.decode_errors_total()
    );
    Ok(())
}
