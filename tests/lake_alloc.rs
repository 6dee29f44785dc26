//! `record -o x.parquet` / `.mf4`: writing a frame allocates nothing on the caller's (the
//! receive) thread after start-up. Parquet copies the event into a preallocated batch and
//! hands full batches to its writer thread (whose Arrow encoding allocates per batch, on
//! that thread); MF4 appends to a preallocated block buffer.

mod common;

use canmc::convert::{create_writer, FileFormat, WriterOptions};
use canmc::{CanFrame, Channel, SenderAddr};
use common::alloc::{allocations, assert_counter_works};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

fn frames() -> Vec<CanFrame> {
    let sender = SenderAddr::from("127.0.0.1:9".parse::<std::net::SocketAddr>().unwrap());
    (0..1000u64)
        .map(|i| {
            let mut f = if i % 10 == 0 {
                CanFrame::new(0x123, canmc::frame::flags::FD, &[i as u8; 64]).unwrap()
            } else {
                CanFrame::new((i % 0x800) as u32, 0, &i.to_le_bytes()).unwrap()
            };
            f.channel = [
                Channel::NONE,
                Channel::int(1),
                Channel::str("vcan0").unwrap(),
            ][i as usize % 3];
            f.sender = sender;
            f
        })
        .collect()
}

#[test]
fn writing_parquet_and_mf4_does_not_allocate_per_frame() {
    assert_counter_works();
    let dir = common::tmpdir("lake-alloc");
    let frames = frames();
    for name in ["a.parquet", "a.mf4"] {
        let path = dir.join(name);
        let mut w = create_writer(
            &path,
            FileFormat::from_path(&path).unwrap(),
            WriterOptions::default(),
        )
        .unwrap();
        // Warm-up: the first batches set up the channel's wait queues and the first
        // data blocks.
        let mut ts = 0u64;
        let mut put = |w: &mut Box<dyn canmc::convert::FrameWriter>, n: u64| {
            for _ in 0..n {
                let mut f = frames[(ts % 1000) as usize];
                f.timestamp_ns = 1_796_288_400_000_000_000 + ts;
                ts += 1;
                w.write_frame(&f).unwrap();
                if ts % 50_000 == 0 {
                    w.write_loss(f.sender, 3, f.timestamp_ns).unwrap();
                    w.write_kernel_drops(2, f.timestamp_ns).unwrap();
                }
            }
        };
        put(&mut w, 300_000);
        let n = 1_000_000u64;
        let (allocs, ()) = allocations(|| put(&mut w, n));
        assert_eq!(
            allocs, 0,
            "{name}: writing {n} frames allocated {allocs} times"
        );
        w.finish().unwrap();
    }
    let _ = std::fs::remove_dir_all(&dir);
}
