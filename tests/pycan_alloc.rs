//! The python-can codec allocates nothing per frame (SPEC §4): after a warm-up,
//! encoding and decoding 100 000 datagrams of every kind leaves a counting global
//! allocator untouched.

mod common;

use canmc::frame::{flags, CanFrame, Channel};
use canmc::wire::pycan::{decode, encode, MAX_ENCODED};
use common::alloc::{allocs, assert_counter_works};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

fn frames() -> Vec<CanFrame> {
    let mut v = vec![
        CanFrame::new(0x123, 0, &[1, 2, 3, 4, 5, 6, 7, 8]).unwrap(),
        CanFrame::new(0x1234_5678, flags::EXTENDED, &[0xAA]).unwrap(),
        CanFrame::remote(0x7FF, false, 4).unwrap(),
        CanFrame::new(0x80, flags::ERROR | flags::EXTENDED, &[0; 8]).unwrap(),
        CanFrame::new(0x42, flags::FD | flags::BRS | flags::ESI, &[0x55; 64]).unwrap(),
        CanFrame::new(0x42, flags::FD, &[0x66; 12]).unwrap(),
    ];
    let channels = [
        Channel::NONE,
        Channel::int(-70_000),
        Channel::int(i64::MAX),
        Channel::str("can-with-22-bytes-name").unwrap(),
        Channel::str("vcan0").unwrap(),
    ];
    for (i, f) in v.iter_mut().enumerate() {
        f.channel = channels[i % channels.len()];
        f.timestamp_ns = 1_763_700_000_123_456_789 + i as u64;
    }
    v
}

#[test]
fn encode_and_decode_allocate_nothing() {
    let frames = frames();
    // Datagrams prepared up front; a few malformed ones exercise the error paths too.
    let mut datagrams: Vec<([u8; MAX_ENCODED], usize)> = frames
        .iter()
        .map(|f| {
            let mut buf = [0u8; MAX_ENCODED];
            let n = encode(f, &mut buf);
            (buf, n)
        })
        .collect();
    let (mut bad, n) = datagrams[0];
    bad[n] = 0xc0;
    datagrams.push((bad, n + 1)); // trailing byte
    datagrams.push((bad, n / 2)); // truncated

    let mut out = CanFrame::EMPTY;
    let mut buf = [0u8; MAX_ENCODED];
    let mut run = |rounds: usize| {
        let (mut ok, mut errors, mut bytes) = (0u64, 0u64, 0u64);
        for i in 0..rounds {
            let f = &frames[i % frames.len()];
            bytes += encode(std::hint::black_box(f), &mut buf) as u64;
            let (d, n) = &datagrams[i % datagrams.len()];
            match decode(std::hint::black_box(&d[..*n]), &mut out) {
                Ok(()) => ok += 1,
                Err(_) => errors += 1,
            }
        }
        (ok, errors, bytes)
    };

    run(1_000);
    let before = allocs();
    let (ok, errors, bytes) = run(100_000);
    let after = allocs();

    // The loop really did the work it claims to.
    assert_eq!(ok + errors, 100_000);
    assert_eq!(errors, 2 * 100_000 / datagrams.len() as u64);
    assert!(bytes >= 100_000 * 152);
    assert_eq!(
        after - before,
        0,
        "{} allocations in 100 000 encode+decode",
        after - before
    );
}

#[test]
fn the_counter_counts() {
    // Without this, a broken allocator hook would make the test above pass vacuously.
    assert_counter_works();
}
