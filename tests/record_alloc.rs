//! The recorder allocates nothing per frame after `Recorder::create` (rotation
//! included), and reading a recording allocates nothing after `Recording::open`.

mod common;

use canmc::record::{Record, Recorder, RecorderOptions, Recording};
use canmc::{CanFrame, Channel, SenderAddr};
use common::alloc::{allocations, assert_counter_works};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

#[test]
fn hot_paths_do_not_allocate() {
    assert_counter_works();
    let dir = common::tmpdir("alloc");
    let path = dir.join("a.cmc");
    let senders: Vec<SenderAddr> = ["127.0.0.1:1", "127.0.0.2:2", "[ff15::9]:3"]
        .iter()
        .map(|s| SenderAddr::from(s.parse::<std::net::SocketAddr>().unwrap()))
        .collect();
    let channels = [
        Channel::NONE,
        Channel::int(1),
        Channel::str("vcan0").unwrap(),
    ];
    let frames: Vec<CanFrame> = (0..1000u64)
        .map(|i| {
            let mut f = if i % 10 == 0 {
                CanFrame::new(0x123, canmc::frame::flags::FD, &[i as u8; 64]).unwrap()
            } else {
                CanFrame::new((i % 0x800) as u32, 0, &i.to_le_bytes()).unwrap()
            };
            f.channel = channels[i as usize % 3];
            f.sender = senders[i as usize % 3];
            f
        })
        .collect();

    let mut rec = Recorder::create(
        &path,
        RecorderOptions {
            segment_size: 1 << 20,
            ..RecorderOptions::default()
        },
    )
    .unwrap();
    let n = 120_000u64;
    let (allocs, ()) = allocations(|| {
        for i in 0..n {
            let mut f = frames[(i % 1000) as usize];
            f.timestamp_ns = i;
            rec.write_frame(&f).unwrap();
            if i % 5000 == 0 {
                rec.write_loss(senders[1], 3, i).unwrap();
                rec.write_kernel_drops(2, i).unwrap();
            }
        }
        rec.flush().unwrap();
    });
    let stats = rec.stats();
    assert!(
        stats.segments >= 4,
        "the run must include rotations: {stats:?}"
    );
    assert_eq!(allocs, 0, "writing {n} frames allocated {allocs} times");
    let (allocs, stats) = allocations(|| rec.finish().unwrap());
    assert_eq!(allocs, 0, "finish allocated");
    assert_eq!(stats.frames, n);

    let recording = Recording::open(&path).unwrap();
    let (allocs, (count, sum)) = allocations(|| {
        let (mut count, mut sum) = (0u64, 0u64);
        for r in recording.iter() {
            if let Record::Frame(f) = r {
                count += 1;
                sum += f.payload().len() as u64 + f.to_frame().id as u64;
            }
        }
        let mut it = recording.seek(n / 2);
        let first = it.next().map(|r| r.timestamp_ns());
        assert_eq!(first, Some(n / 2));
        let st = recording.stats();
        assert_eq!(st.frames, n);
        (count, sum)
    });
    assert_eq!(count, n);
    assert!(sum > 0);
    assert_eq!(allocs, 0, "reading allocated {allocs} times");
    let _ = std::fs::remove_dir_all(&dir);
}

/// The same for frame batch records: `write_batch` (splits at block ends and rotation
/// included), then reading batches back frame by frame, seek and stats.
#[test]
fn batch_paths_do_not_allocate() {
    use canmc::wire::native::{Encoder, FrameBatch};
    assert_counter_works();
    let dir = common::tmpdir("alloc-batch");
    let path = dir.join("b.cmc");
    let senders: Vec<SenderAddr> = ["127.0.0.1:1", "[ff15::9]:3"]
        .iter()
        .map(|s| SenderAddr::from(s.parse::<std::net::SocketAddr>().unwrap()))
        .collect();
    let channels = [Channel::int(1), Channel::str("vcan0").unwrap()];
    // 16 datagrams of 69 classic frames (a full 1452-byte datagram), one with FD frames,
    // one of only 2 frames.
    let datagrams: Vec<Vec<u8>> = (0..16u64)
        .map(|d| {
            let mut buf = vec![0u8; 1452];
            let mut enc = Encoder::new(1, buf.len());
            enc.begin(&mut buf, d, channels[d as usize % 2], 0);
            // Datagram 7 has 2 frames: written as frame records (below MIN_BATCH).
            let frames_in = if d == 7 { 2 } else { 69 };
            for k in 0..frames_in {
                let f = if d == 5 && k % 4 == 0 {
                    CanFrame::new(0x100, canmc::frame::flags::FD, &[k as u8; 48]).unwrap()
                } else {
                    CanFrame::new((k * 3) as u32, 0, &(d * 100 + k).to_le_bytes()).unwrap()
                };
                let mut f = f;
                f.timestamp_ns = k * 10;
                f.channel = channels[d as usize % 2];
                if !enc.push(&mut buf, &f) {
                    break;
                }
            }
            let n = enc.finish(&mut buf);
            buf.truncate(n);
            buf
        })
        .collect();
    let mut rec = Recorder::create(
        &path,
        RecorderOptions {
            segment_size: 1 << 20,
            ..RecorderOptions::default()
        },
    )
    .unwrap();
    let n = 3_000u64;
    let (allocs, written) = allocations(|| {
        let mut written = 0u64;
        for i in 0..n {
            let d = &datagrams[(i % 16) as usize];
            // A new base time per datagram, patched in place (bytes 24..32).
            let mut copy = [0u8; 1452];
            copy[..d.len()].copy_from_slice(d);
            copy[24..32].copy_from_slice(&(i * 1_000).to_le_bytes());
            let b = FrameBatch::check(&copy[..d.len()]).unwrap().unwrap();
            rec.write_batch(&b, &senders[(i % 2) as usize]).unwrap();
            written += b.len() as u64;
            if i % 500 == 0 {
                rec.write_loss(senders[1], 3, i * 1_000).unwrap();
            }
        }
        written
    });
    let stats = rec.stats();
    assert!(stats.segments >= 4, "rotations included: {stats:?}");
    assert_eq!(allocs, 0, "writing {n} batches allocated {allocs} times");
    let stats = rec.finish().unwrap();
    assert_eq!(stats.frames, written);

    let recording = Recording::open(&path).unwrap();
    let (allocs, count) = allocations(|| {
        let mut count = 0u64;
        for r in recording.iter() {
            if let Record::Frame(f) = r {
                count += 1;
                std::hint::black_box(f.to_frame());
            }
        }
        // Inside the middle datagram: its 8th frame.
        let t = (n / 2) * 1_000 + 70;
        assert_eq!(recording.seek(t).next().map(|r| r.timestamp_ns()), Some(t));
        assert_eq!(recording.stats().frames, written);
        count
    });
    assert_eq!(count, written);
    assert_eq!(allocs, 0, "reading batches allocated {allocs} times");
    let _ = std::fs::remove_dir_all(&dir);
}
