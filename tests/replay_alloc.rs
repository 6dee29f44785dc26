//! Replay allocates nothing per frame: 100 000 frames from a `.cmc` recording go out
//! through a FrameSender (both wire formats, fast and timed) with no allocation in the
//! replaying thread after start-up. Loopback only (IPv4 on `lo`, TTL 0).

mod common;

use canmc::convert::FileFormat;
use canmc::record::{Recorder, RecorderOptions};
use canmc::replay::{replay, ReplayOptions};
use canmc::send::FrameSender;
use canmc::socket::{McastConfig, SendSocket};
use canmc::wire::{native, WireFormat};
use canmc::CanFrame;
use common::alloc::{allocations, assert_counter_works};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

const FRAMES: u64 = 100_000;

fn recording(dir: &std::path::Path) -> std::path::PathBuf {
    let path = dir.join("replay-alloc.cmc");
    let mut rec = Recorder::create(&path, RecorderOptions::default()).unwrap();
    for i in 0..FRAMES {
        let mut f = CanFrame::new((i % 0x800) as u32, 0, &i.to_le_bytes()).unwrap();
        // 1 µs apart: a timed replay at speed 1 takes a tenth of a second.
        f.timestamp_ns = 1_700_000_000_000_000_000 + i * 1_000;
        rec.write_frame(&f).unwrap();
    }
    rec.finish().unwrap();
    path
}

#[test]
fn replay_allocates_nothing_per_frame() {
    assert_counter_works();
    let dir = common::tmpdir("replay-alloc");
    let path = recording(&dir);
    let net = McastConfig::loopback_v4(42401);
    for (format, speed) in [
        (WireFormat::Pycan, None),
        (WireFormat::Native, None),
        (WireFormat::Native, Some(1.0)),
        (WireFormat::Pycan, Some(2.0)),
    ] {
        let mut tx = FrameSender::new(
            SendSocket::open(&net).unwrap(),
            format,
            native::DEFAULT_MAX_DATAGRAM,
            1_000_000,
        );
        let opts = ReplayOptions {
            speed,
            loops: Some(1),
            ..ReplayOptions::default()
        };
        // Warm-up: first use of the socket, the file and lazily initialised statics.
        replay(&path, FileFormat::Cmc, &mut tx, &opts, &|| false).unwrap();

        let (allocs, stats) =
            allocations(|| replay(&path, FileFormat::Cmc, &mut tx, &opts, &|| false).unwrap());
        assert_eq!(stats.frames, FRAMES);
        // Opening the recording (mmap bookkeeping, path buffers) may allocate a few times
        // per play; nothing may scale with the number of frames.
        assert!(
            allocs <= 16,
            "{format:?} speed {speed:?}: {allocs} allocations for {FRAMES} frames"
        );
    }
    let _ = std::fs::remove_dir_all(&dir);
}
