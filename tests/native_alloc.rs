//! Proves the native send and receive paths allocate nothing after start-up: a counting
//! global allocator watches ≥ 100 000 frames go through the batcher, the decoder and the
//! sequence tracker.

mod common;

use canmc::frame::{CanFrame, Channel};
use canmc::recv::{Decoded, Demux, RecvMeta};
use canmc::seq::{SeqEvent, SeqTracker};
use canmc::wire::native::{decode, Encoder, NativeBatcher, DEFAULT_MAX_DATAGRAM};
use common::alloc::{allocs, assert_counter_works};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

const FRAMES: u64 = 200_000;

fn sample_frames() -> Vec<CanFrame> {
    let texts = [
        "123#DEADBEEF",
        "7FF#0011223344556677",
        "1ABCDEF0#",
        "123#R4",
        "20000080#0000000000000000",
        "123##5AABBCCDDEEFF001122334455",
        "12345678##3000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F",
    ];
    let chans = [
        Channel::NONE,
        Channel::int(1),
        Channel::str("vcan0").unwrap(),
    ];
    let mut v = Vec::new();
    for (i, t) in texts.iter().enumerate() {
        let mut f: CanFrame = t.parse().unwrap();
        f.channel = chans[i % 3];
        v.push(f);
    }
    v
}

#[test]
fn batcher_decoder_and_tracker_allocate_nothing() {
    let frames = sample_frames();
    let mut batcher = NativeBatcher::new(7, DEFAULT_MAX_DATAGRAM, 1_000_000);
    let mut tracker = SeqTracker::default();
    let mut rx_buf = vec![0u8; DEFAULT_MAX_DATAGRAM];
    let mut decoded = 0u64;
    let mut mismatches = 0u64;
    let mut sent = 0u64;
    let mut gaps = 0u64;
    // The recorder's way in: the same datagrams through the receive-side demux, taken
    // whole as batches.
    let mut demux = Demux::new();
    let meta = RecvMeta::default();
    let mut batched = 0u64;
    let mut not_batched = 0u64;

    assert_counter_works();
    let before = allocs();
    let mut now = 0u64;
    let mut receive = |d: &[u8], decoded: &mut u64, mismatches: &mut u64, gaps: &mut u64| {
        // As the receive loop would: the datagram is in a reused buffer.
        rx_buf[..d.len()].copy_from_slice(d);
        let info = decode(&rx_buf[..d.len()], &mut |f| {
            let want = &frames[(*decoded % frames.len() as u64) as usize];
            if f.content() != want.content() || f.channel != want.channel {
                *mismatches += 1;
            }
            *decoded += 1;
        })
        .expect("valid datagram");
        if matches!(
            tracker.observe(info.sender_id, info.seq),
            SeqEvent::Gap { .. }
        ) {
            *gaps += 1;
        }
        demux.decode_batches(&rx_buf[..d.len()], &meta, true, |out| match out {
            Decoded::Batch(b) => batched += b.frames().count() as u64,
            Decoded::Frame(_) => not_batched += 1,
        });
    };
    while sent < FRAMES {
        // Bursts of 300 frames 100 ns apart, then a pause: exercises every batcher path.
        now += if sent % 300 == 0 { 2_000_000 } else { 100 };
        let mut f = frames[(sent % frames.len() as u64) as usize];
        f.timestamp_ns = now;
        if let Some(d) = batcher.poll(now) {
            receive(d, &mut decoded, &mut mismatches, &mut gaps);
        }
        if let Some(d) = batcher.push(&f, now) {
            receive(d, &mut decoded, &mut mismatches, &mut gaps);
        }
        sent += 1;
    }
    if let Some(d) = batcher.flush(now) {
        receive(d, &mut decoded, &mut mismatches, &mut gaps);
    }
    let allocs = allocs() - before;

    assert_eq!(decoded, FRAMES);
    assert_eq!(mismatches, 0);
    assert_eq!(gaps, 0);
    assert_eq!(tracker.totals().received, batcher.datagrams());
    assert_eq!((batched, not_batched), (FRAMES, 0));
    assert_eq!(allocs, 0, "allocations after setup");
}

#[test]
fn plain_encoder_allocates_nothing() {
    let frames = sample_frames();
    let mut enc = Encoder::new(9, DEFAULT_MAX_DATAGRAM);
    let mut buf = vec![0u8; DEFAULT_MAX_DATAGRAM];
    let mut datagrams = 0u64;
    let mut decoded = 0u64;
    assert_counter_works();
    let before = allocs();
    let mut i = 0u64;
    enc.begin(&mut buf, 0, frames[0].channel, 0);
    while i < FRAMES {
        let mut f = frames[(i % frames.len() as u64) as usize];
        f.timestamp_ns = i;
        if !enc.push(&mut buf, &f) {
            let n = enc.finish(&mut buf);
            decoded += decode(&buf[..n], &mut |_| {}).unwrap().frames as u64;
            datagrams += 1;
            enc.begin(&mut buf, datagrams, f.channel, f.timestamp_ns);
            assert!(enc.push(&mut buf, &f));
        }
        i += 1;
    }
    let n = enc.finish(&mut buf);
    decoded += decode(&buf[..n], &mut |_| {}).unwrap().frames as u64;
    let allocs = allocs() - before;
    assert_eq!(decoded, FRAMES);
    assert_eq!(allocs, 0, "allocations after setup");
}
