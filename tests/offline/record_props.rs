//! Property tests of `.cmc` recordings: exact round trips of arbitrary record sequences,
//! and truncated or corrupted files that never panic and yield only a prefix.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use canmc::frame::{flags, FD_LENGTHS};
use canmc::record::{segment_path, Record, Recorder, RecorderOptions, Recording};
use canmc::{CanFrame, Channel, SenderAddr};
use proptest::prelude::*;

#[derive(Debug, Clone, PartialEq)]
enum Op {
    Frame(CanFrame),
    Loss(SenderAddr, u64, u64),
    Drops(u64, u64),
}

fn channel() -> impl Strategy<Value = Channel> {
    prop_oneof![
        Just(Channel::NONE),
        any::<i64>().prop_map(Channel::int),
        "[a-z0-9_]{0,22}".prop_map(|s| Channel::str(&s).unwrap()),
        "\\PC{0,5}".prop_filter_map("fits", |s| Channel::str(&s).ok()),
    ]
}

fn sender() -> impl Strategy<Value = SenderAddr> {
    prop_oneof![
        Just(SenderAddr::NONE),
        (any::<[u8; 4]>(), any::<u16>())
            .prop_map(|(a, p)| SenderAddr::from(SocketAddr::from((a, p)))),
        (any::<[u8; 16]>(), any::<u16>())
            .prop_map(|(a, p)| SenderAddr::from(SocketAddr::from((a, p)))),
    ]
}

fn frame() -> impl Strategy<Value = CanFrame> {
    let kind = prop_oneof![
        // classic data, standard or extended
        (
            any::<bool>(),
            any::<u32>(),
            prop::collection::vec(any::<u8>(), 0..=8)
        )
            .prop_map(|(ext, id, d)| if ext {
                CanFrame::new(id % 0x2000_0000, flags::EXTENDED, &d).unwrap()
            } else {
                CanFrame::new(id % 0x800, 0, &d).unwrap()
            }),
        // remote
        (any::<bool>(), any::<u32>(), 0u8..=8).prop_map(|(ext, id, len)| {
            let id = if ext { id % 0x2000_0000 } else { id % 0x800 };
            CanFrame::remote(id, ext, len).unwrap()
        }),
        // error
        (any::<u32>(), prop::collection::vec(any::<u8>(), 0..=8)).prop_map(|(id, d)| {
            CanFrame::new(id % 0x2000_0000, flags::ERROR | flags::EXTENDED, &d).unwrap()
        }),
        // FD, every length, BRS/ESI
        (any::<u32>(), 0usize..16, 0u8..4, any::<u8>()).prop_map(|(id, li, bits, fill)| {
            let len = FD_LENGTHS[li] as usize;
            let data: Vec<u8> = (0..len)
                .map(|i| fill.wrapping_add((i as u8).wrapping_mul(31)))
                .collect();
            let fl = flags::FD
                | if bits & 1 != 0 { flags::BRS } else { 0 }
                | if bits & 2 != 0 { flags::ESI } else { 0 };
            CanFrame::new(id % 0x800, fl, &data).unwrap()
        }),
    ];
    (kind, any::<u64>(), channel(), sender()).prop_map(|(mut f, ts, ch, s)| {
        f.timestamp_ns = ts;
        f.channel = ch;
        f.sender = s;
        f
    })
}

fn op() -> impl Strategy<Value = Op> {
    prop_oneof![
        8 => frame().prop_map(Op::Frame),
        1 => (sender(), any::<u64>(), any::<u64>()).prop_map(|(s, n, t)| Op::Loss(s, n, t)),
        1 => (any::<u64>(), any::<u64>()).prop_map(|(n, t)| Op::Drops(n, t)),
    ]
}

/// Tiny tables so that table overflow (→ rotation) happens often.
fn options() -> RecorderOptions {
    RecorderOptions {
        segment_size: 80 * 1024,
        max_channels: 3,
        max_senders: 3,
        ..RecorderOptions::default()
    }
}

struct Dir(PathBuf);
impl Dir {
    fn new() -> Dir {
        use std::sync::atomic::{AtomicU32, Ordering};
        static N: AtomicU32 = AtomicU32::new(0);
        let p = std::env::temp_dir().join(format!(
            "canmc-props-{}-{}",
            std::process::id(),
            N.fetch_add(1, Ordering::Relaxed)
        ));
        std::fs::create_dir_all(&p).unwrap();
        Dir(p)
    }
}
impl Drop for Dir {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Writes `ops`; `finish` false leaves the recording as a killed writer would.
fn write(path: &Path, ops: &[Op], finish: bool) -> u32 {
    let mut rec = Recorder::create(path, options()).unwrap();
    for op in ops {
        match op {
            Op::Frame(f) => rec.write_frame(f).unwrap(),
            Op::Loss(s, n, t) => rec.write_loss(*s, *n, *t).unwrap(),
            Op::Drops(n, t) => rec.write_kernel_drops(*n, *t).unwrap(),
        }
    }
    let segments = rec.stats().segments;
    if finish {
        rec.finish().unwrap();
    } else {
        std::mem::forget(rec);
    }
    segments
}

fn read(r: &Recording) -> Vec<Op> {
    r.iter()
        .map(|rec| match rec {
            Record::Frame(f) => Op::Frame(f.to_frame()),
            Record::Loss {
                sender,
                lost,
                timestamp_ns,
            } => Op::Loss(sender, lost, timestamp_ns),
            Record::KernelDrops {
                count,
                timestamp_ns,
            } => Op::Drops(count, timestamp_ns),
        })
        .collect()
}

fn ts(op: &Op) -> u64 {
    match op {
        Op::Frame(f) => f.timestamp_ns,
        Op::Loss(_, _, t) | Op::Drops(_, t) => *t,
    }
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 128, failure_persistence: None, ..ProptestConfig::default() })]

    #[test]
    fn round_trips_exactly(ops in prop::collection::vec(op(), 0..300), finish in any::<bool>(), seek_at in any::<prop::sample::Index>()) {
        let d = Dir::new();
        let p = d.0.join("r.cmc");
        write(&p, &ops, finish);
        let r = Recording::open(&p).unwrap();
        prop_assert_eq!(r.is_finished(), finish);
        prop_assert_eq!(&read(&r), &ops);
        // Seek lands on the first record at or after the time, whatever the order.
        if !ops.is_empty() {
            let t = ts(&ops[seek_at.index(ops.len())]);
            let want = ops.iter().position(|o| ts(o) >= t).map(|i| &ops[i..]);
            let got: Vec<u64> = r.seek(t).map(|x| x.timestamp_ns()).collect();
            let want: Vec<u64> = want.unwrap_or(&[]).iter().map(ts).collect();
            prop_assert_eq!(got, want);
        }
    }

    #[test]
    fn truncation_yields_a_prefix(ops in prop::collection::vec(op(), 1..200), finish in any::<bool>(), which in any::<prop::sample::Index>(), cut in any::<prop::sample::Index>()) {
        let d = Dir::new();
        let p = d.0.join("r.cmc");
        let segments = write(&p, &ops, finish);
        let victim = segment_path(&p, which.index(segments as usize) as u32);
        let bytes = std::fs::read(&victim).unwrap();
        let len = cut.index(bytes.len() + 1);
        std::fs::write(&victim, &bytes[..len]).unwrap();
        if let Ok(r) = Recording::open(&p) {
            let got = read(&r);
            prop_assert!(got.len() <= ops.len());
            prop_assert_eq!(&got[..], &ops[..got.len()]);
            let _ = r.stats();
        }
    }

    #[test]
    fn corruption_yields_a_prefix(ops in prop::collection::vec(op(), 1..200), finish in any::<bool>(), which in any::<prop::sample::Index>(), hits in prop::collection::vec((any::<prop::sample::Index>(), 1u8..), 1..6), near_data in any::<bool>()) {
        let d = Dir::new();
        let p = d.0.join("r.cmc");
        let segments = write(&p, &ops, finish);
        let victim = segment_path(&p, which.index(segments as usize) as u32);
        let mut bytes = std::fs::read(&victim).unwrap();
        // Half the time aim at the header, tables and first records, where a hit
        // matters most; otherwise anywhere in the file.
        let span = if near_data { bytes.len().min(4096) } else { bytes.len() };
        for (at, x) in &hits {
            bytes[at.index(span)] ^= x;
        }
        std::fs::write(&victim, &bytes).unwrap();
        if let Ok(r) = Recording::open(&p) {
            let got = read(&r);
            prop_assert!(got.len() <= ops.len());
            prop_assert_eq!(&got[..], &ops[..got.len()]);
            for t in [0, u64::MAX / 2, u64::MAX] {
                for x in r.seek(t) {
                    // Seek may land past a damaged spot; whatever it yields was written.
                    let o = match x {
                        Record::Frame(f) => Op::Frame(f.to_frame()),
                        Record::Loss { sender, lost, timestamp_ns } => Op::Loss(sender, lost, timestamp_ns),
                        Record::KernelDrops { count, timestamp_ns } => Op::Drops(count, timestamp_ns),
                    };
                    prop_assert!(ops.contains(&o));
                }
            }
        }
    }
}
