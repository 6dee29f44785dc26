//! Property tests of the native wire format and of sequence tracking: decoding never
//! panics and names what is wrong; encode → decode gives back exactly the frames sent;
//! the batcher never holds a frame past its linger; loss/duplicate/reorder totals match
//! what was done to a sequence.

use std::collections::HashSet;

use canmc::frame::{flags, CanFrame, Channel, EXT_ID_LIMIT, FD_LENGTHS, STD_ID_LIMIT};
use canmc::seq::{SeqStats, SeqTracker, WINDOW};
use canmc::wire::native::{
    decode, decode_answer, decode_probe, DatagramInfo, Encoder, NativeBatcher,
    DEFAULT_MAX_DATAGRAM, FRAMES_HEADER_LEN, MAX_DATAGRAM_LIMIT, MIN_MAX_DATAGRAM,
};
use canmc::DecodeError;
use proptest::prelude::*;

fn arb_channel() -> impl Strategy<Value = Channel> {
    prop_oneof![
        Just(Channel::NONE),
        any::<i64>().prop_map(Channel::int),
        "[a-z0-9_.-]{0,22}".prop_map(|s| Channel::str(&s).unwrap()),
        "\\PC{0,5}".prop_filter_map("too long", |s| Channel::str(&s).ok()),
    ]
}

/// Every kind of valid frame of SPEC §1.
fn arb_frame() -> impl Strategy<Value = CanFrame> {
    let data8 = prop::collection::vec(any::<u8>(), 0..=8);
    let std_or_ext = (any::<bool>(), any::<u32>()).prop_map(|(ext, id)| {
        if ext {
            (flags::EXTENDED, id % EXT_ID_LIMIT)
        } else {
            (0, id % STD_ID_LIMIT)
        }
    });
    prop_oneof![
        // classic data
        (std_or_ext.clone(), data8.clone())
            .prop_map(|((fl, id), d)| CanFrame::new(id, fl, &d).unwrap()),
        // remote
        (std_or_ext.clone(), 0u8..=8).prop_map(|((fl, id), len)| CanFrame::remote(
            id,
            fl != 0,
            len
        )
        .unwrap()),
        // error
        (any::<bool>(), any::<u32>(), data8).prop_map(|(ext, id, d)| {
            let (fl, id) = if ext {
                (flags::EXTENDED, id % EXT_ID_LIMIT)
            } else {
                (0, id % STD_ID_LIMIT)
            };
            CanFrame::new(id, fl | flags::ERROR, &d).unwrap()
        }),
        // FD, every length, BRS / ESI
        (
            std_or_ext,
            prop::sample::select(FD_LENGTHS.to_vec()),
            any::<bool>(),
            any::<bool>(),
            prop::collection::vec(any::<u8>(), 64)
        )
            .prop_map(|((fl, id), len, brs, esi, d)| {
                let fl = fl
                    | flags::FD
                    | if brs { flags::BRS } else { 0 }
                    | if esi { flags::ESI } else { 0 };
                CanFrame::new(id, fl, &d[..len as usize]).unwrap()
            }),
    ]
}

/// A stream of frames with timestamps that mostly grow in small steps, sometimes jump
/// past the 32-bit delta, sometimes go backwards; channels change now and then.
fn arb_stream(max_len: usize) -> impl Strategy<Value = Vec<CanFrame>> {
    let step = prop_oneof![
        8 => 0u64..5_000,
        1 => Just(u32::MAX as u64),
        1 => (u32::MAX as u64 + 1)..(1u64 << 40),
        1 => Just(u64::MAX), // marker: go backwards
    ];
    let channels = prop::collection::vec(arb_channel(), 1..4);
    (
        channels,
        prop::collection::vec(
            (arb_frame(), step, any::<prop::sample::Index>(), 0u8..10),
            1..max_len,
        ),
        0u64..(1 << 62),
    )
        .prop_map(|(chans, items, start)| {
            let mut ts = start;
            let mut ch = 0usize;
            items
                .into_iter()
                .map(|(mut f, step, pick, change)| {
                    ts = if step == u64::MAX {
                        ts.saturating_sub(1_000)
                    } else {
                        ts.saturating_add(step)
                    };
                    if change == 0 {
                        ch = pick.index(chans.len());
                    }
                    f.timestamp_ns = ts;
                    f.channel = chans[ch];
                    f
                })
                .collect()
        })
}

/// Encodes `frames` as the documented sender loop does: when a frame does not fit, the
/// datagram is finished and a new one begun with that frame's channel and timestamp.
fn encode_stream(frames: &[CanFrame], sender: u32, max: usize) -> Vec<Vec<u8>> {
    let mut enc = Encoder::new(sender, max);
    let mut buf = vec![0u8; enc.max_datagram()];
    let mut out = Vec::new();
    let mut seq = 0;
    let mut open = false;
    for f in frames {
        if open && enc.push(&mut buf, f) {
            continue;
        }
        if open {
            let n = enc.finish(&mut buf);
            out.push(buf[..n].to_vec());
            seq += 1;
        }
        enc.begin(&mut buf, seq, f.channel, f.timestamp_ns);
        assert!(
            enc.push(&mut buf, f),
            "a valid frame fits an empty datagram"
        );
        open = true;
    }
    if open {
        let n = enc.finish(&mut buf);
        out.push(buf[..n].to_vec());
    }
    out
}

fn decode_collect(d: &[u8]) -> (Result<DatagramInfo, DecodeError>, Vec<CanFrame>) {
    let mut v = Vec::new();
    let r = decode(d, &mut |f| v.push(*f));
    (r, v)
}

fn one_datagram() -> impl Strategy<Value = Vec<u8>> {
    arb_stream(40).prop_map(|frames| {
        // Same channel and a fresh base: one datagram of up to 40 frames.
        let mut buf = vec![0u8; MAX_DATAGRAM_LIMIT];
        let mut enc = Encoder::new(77, MAX_DATAGRAM_LIMIT);
        enc.begin(&mut buf, 9, frames[0].channel, 0);
        for f in &frames {
            let mut g = *f;
            g.channel = frames[0].channel;
            g.timestamp_ns = f.timestamp_ns % (1 << 32);
            assert!(enc.push(&mut buf, &g));
        }
        let n = enc.finish(&mut buf);
        buf.truncate(n);
        buf
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn round_trip_exact(frames in arb_stream(400), max in prop_oneof![
        Just(DEFAULT_MAX_DATAGRAM), Just(MIN_MAX_DATAGRAM), MIN_MAX_DATAGRAM..9000usize
    ], sender in any::<u32>()) {
        let dgrams = encode_stream(&frames, sender, max);
        let mut back = Vec::new();
        for (i, d) in dgrams.iter().enumerate() {
            prop_assert!(d.len() <= max);
            let (r, fs) = decode_collect(d);
            let info = r.unwrap();
            prop_assert_eq!(info.sender_id, sender);
            prop_assert_eq!(info.seq, i as u64);
            prop_assert_eq!(info.error, None);
            prop_assert_eq!(info.frames as usize, fs.len());
            prop_assert!(!fs.is_empty());
            back.extend(fs);
        }
        prop_assert_eq!(back, frames);
    }

    #[test]
    fn batcher_delivers_everything_in_order_within_linger(
        frames in arb_stream(300),
        gaps in prop::collection::vec(prop_oneof![0u64..2_000, 0u64..3_000_000], 300),
        linger in prop_oneof![Just(1_000_000u64), 0u64..5_000_000],
        pad in any::<bool>(),
    ) {
        let mut b = NativeBatcher::new(5, DEFAULT_MAX_DATAGRAM, linger);
        b.set_pad_full(pad);
        let mut now = 1_000u64;
        let mut pushed_at = Vec::new();
        let mut out: Vec<(u64, CanFrame)> = Vec::new();
        let mut last_emit: Option<u64> = None;
        let mut seq = 0u64;
        let mut take = |d: &[u8], t: u64, out: &mut Vec<(u64, CanFrame)>| {
            let (r, fs) = decode_collect(d);
            assert_eq!(r.unwrap().seq, seq);
            seq += 1;
            out.extend(fs.into_iter().map(|f| (t, f)));
        };
        for (f, gap) in frames.iter().zip(gaps.iter().cycle()) {
            now += gap;
            // The caller wakes at each deadline it was given.
            while let Some(dl) = b.deadline().filter(|&dl| dl <= now) {
                let d = b.poll(dl).expect("due datagram").to_vec();
                take(&d, dl, &mut out);
                last_emit = Some(dl);
            }
            let idle = b.pending_frames() == 0
                && last_emit.is_none_or(|t| now - t >= linger);
            pushed_at.push(now);
            let before = out.len();
            if let Some(d) = b.push(f, now) {
                let d = d.to_vec();
                take(&d, now, &mut out);
                last_emit = Some(now);
            }
            if idle {
                prop_assert_eq!(out.len(), before + 1, "idle frame must leave at once");
                prop_assert_eq!(out.last().unwrap().1, *f);
            }
        }
        if let Some(d) = b.flush(now) {
            let d = d.to_vec();
            take(&d, now, &mut out);
        }
        prop_assert_eq!(out.len(), frames.len());
        for (i, ((t, f), g)) in out.iter().zip(frames.iter()).enumerate() {
            prop_assert_eq!(f, g);
            prop_assert!(*t - pushed_at[i] <= linger, "frame {} held {} ns", i, *t - pushed_at[i]);
        }
    }

    #[test]
    fn decode_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2000)) {
        let _ = decode(&bytes, &mut |f| assert!(f.validate().is_ok()));
        let _ = decode_probe(&bytes);
        let _ = decode_answer(&bytes);
    }

    #[test]
    fn decode_never_panics_behind_a_valid_prefix(
        body in prop::collection::vec(any::<u8>(), 0..600),
        kind in 0u8..5,
    ) {
        let mut d = vec![0xC1, 0xCA, 1, kind];
        d.extend_from_slice(&body);
        // Make the length fields agree often enough to get into the records.
        if d.len() >= 8 {
            let l = d.len() as u16;
            d[6..8].copy_from_slice(&l.to_le_bytes());
        }
        let r = decode(&d, &mut |f| assert!(f.validate().is_ok()));
        if let Ok(info) = r {
            prop_assert!(info.frames as u32 + info.bad_records as u32 <= info.records as u32);
        }
        if let Ok((_, a)) = decode_answer(&d) {
            prop_assert!(a.host_len as usize <= 64);
            let _ = a.host();
        }
        let _ = decode_probe(&d);
    }

    #[test]
    fn mutated_datagrams_never_panic(
        d in one_datagram(),
        flips in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut d = d;
        for (i, v) in flips {
            let i = i.index(d.len());
            d[i] = v;
        }
        let r = decode(&d, &mut |f| assert!(f.validate().is_ok()));
        if let Ok(info) = r {
            prop_assert!(info.frames as u32 + info.bad_records as u32 <= info.records as u32);
        }
    }

    #[test]
    fn truncated_datagrams_are_truncated(d in one_datagram(), cut in any::<prop::sample::Index>()) {
        let n = cut.index(d.len());
        let r = decode(&d[..n], &mut |_| panic!("no frame from a truncated datagram"));
        prop_assert_eq!(r.unwrap_err(), DecodeError::Truncated);
    }

    #[test]
    fn count_larger_than_payload_is_bad_length(d in one_datagram(), extra in 1u16..100) {
        let mut d = d;
        let count = u16::from_le_bytes([d[8], d[9]]);
        d[8..10].copy_from_slice(&(count + extra).to_le_bytes());
        let (r, fs) = decode_collect(&d);
        let info = r.unwrap();
        prop_assert_eq!(fs.len(), count as usize, "records present are still delivered");
        prop_assert_eq!(info.error, Some(DecodeError::BadLength));
        prop_assert_eq!(info.bad_records, extra);
    }

    #[test]
    fn record_length_past_the_end_is_bad_length(d in one_datagram(), grow in 1u8..100) {
        // Walk to the last record and make it claim more bytes than there are.
        let count = u16::from_le_bytes([d[8], d[9]]) as usize;
        let mut at = FRAMES_HEADER_LEN;
        for _ in 0..count - 1 {
            at += d[at + 11] as usize * 4;
        }
        let mut d = d;
        d[at + 11] = d[at + 11].saturating_add(grow);
        let (r, fs) = decode_collect(&d);
        let info = r.unwrap();
        prop_assert_eq!(fs.len(), count - 1);
        prop_assert_eq!(info.error, Some(DecodeError::BadLength));
    }

    #[test]
    fn unknown_version_and_type(d in one_datagram(), v in 2u8..=255, k in prop_oneof![Just(0u8), 4u8..=255]) {
        let mut dv = d.clone();
        dv[2] = v;
        prop_assert_eq!(decode(&dv, &mut |_| panic!()).unwrap_err(), DecodeError::UnknownVersion);
        let mut dv = d.clone();
        dv[2] = 0;
        prop_assert_eq!(decode(&dv, &mut |_| panic!()).unwrap_err(), DecodeError::UnknownVersion);
        let mut dk = d;
        dk[3] = k;
        prop_assert_eq!(decode(&dk, &mut |_| panic!()).unwrap_err(), DecodeError::UnknownType);
    }
}

/// What the totals must be for `arrivals` of one sender, computed independently.
fn expected(arrivals: &[u64]) -> SeqStats {
    let mut seen = HashSet::new();
    let mut max = None::<u64>;
    let mut s = SeqStats::default();
    for &q in arrivals {
        s.received += 1;
        if !seen.insert(q) {
            s.duplicates += 1;
        } else if max.is_some_and(|m| q < m) {
            s.reordered += 1;
        }
        max = Some(max.map_or(q, |m| m.max(q)));
    }
    let lo = *seen.iter().min().unwrap();
    let hi = *seen.iter().max().unwrap();
    s.lost = hi - lo + 1 - seen.len() as u64;
    s
}

/// A sequence `base..base+n` with some numbers dropped, some duplicated, and local
/// reordering (each datagram moved by less than 64 places).
fn arb_arrivals(max_n: usize) -> impl Strategy<Value = Vec<u64>> {
    (
        1usize..max_n,
        prop_oneof![Just(0u64), any::<u64>().prop_map(|b| b % (u64::MAX - 2000))],
    )
        .prop_flat_map(|(n, base)| {
            (
                Just(base),
                prop::collection::vec((0u8..10, 0u8..10, 0u32..64, 0u32..64), n),
            )
        })
        .prop_map(|(base, per)| {
            let mut keyed = Vec::new();
            for (i, (drop, dup, j1, j2)) in per.into_iter().enumerate() {
                if drop == 0 {
                    continue;
                }
                let q = base + i as u64;
                keyed.push((i as u32 + j1, q));
                if dup == 0 {
                    keyed.push((i as u32 + j2, q));
                }
            }
            keyed.sort_by_key(|&(k, _)| k);
            keyed.into_iter().map(|(_, q)| q).collect()
        })
        .prop_filter("something must arrive", |v: &Vec<u64>| !v.is_empty())
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn seq_totals_match_drops_duplicates_reordering(a in arb_arrivals(900), b in arb_arrivals(900), c in arb_arrivals(900)) {
        // Three senders interleaved: each sender's counts are its own.
        let mut t = SeqTracker::new(8);
        let (mut i, mut j, mut k) = (0, 0, 0);
        while i < a.len() || j < b.len() || k < c.len() {
            if i < a.len() { t.observe(1, a[i]); i += 1; }
            if j < b.len() { t.observe(2, b[j]); j += 1; }
            if j < b.len() { t.observe(2, b[j]); j += 1; }
            if k < c.len() { t.observe(3, c[k]); k += 1; }
        }
        prop_assert_eq!(t.stats(1).unwrap(), expected(&a));
        prop_assert_eq!(t.stats(2).unwrap(), expected(&b));
        prop_assert_eq!(t.stats(3).unwrap(), expected(&c));
        let tot = t.totals();
        prop_assert_eq!(tot.received, (a.len() + b.len() + c.len()) as u64);
    }

    #[test]
    fn seq_totals_hold_over_streams_longer_than_the_window(a in arb_arrivals(6 * WINDOW as usize)) {
        // The window's ring bitmap wraps several times.
        let mut t = SeqTracker::new(1);
        for &q in &a {
            t.observe(5, q);
        }
        prop_assert_eq!(t.stats(5).unwrap(), expected(&a));
    }

    #[test]
    fn seq_restart_keeps_earlier_counts(first in (WINDOW as usize + 1)..5000, second in 1usize..2000) {
        let mut t = SeqTracker::new(1);
        for q in 0..first as u64 {
            if q != first as u64 / 2 {
                t.observe(42, q);
            }
        }
        // The sender restarts from 0 with the same id.
        for q in 0..second as u64 {
            t.observe(42, q);
        }
        let s = t.stats(42).unwrap();
        prop_assert_eq!(s.restarts, 1);
        prop_assert_eq!(s.lost, 1);
        prop_assert_eq!(s.received, (first - 1 + second) as u64);
        prop_assert_eq!(s.duplicates, 0);
    }
}
