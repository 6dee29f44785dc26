//! canmc native datagrams: `wire::native::decode`, `peek`, the ping probe and answer
//! decoders, `verify` with a fixed key, and `recv::Demux` (keyed and not).
//!
//! Asserts: no panic; every delivered frame is valid with zeroed bytes past its payload;
//! the counts of `DatagramInfo` add up (frames delivered + records skipped or not reached
//! = records announced); `peek` (header only) and the kind-specific decoders agree with
//! `decode`; a native datagram sealed with the key always passes `verify` and decodes to
//! the same frames; `Demux` delivers the same frames as `decode` (only after `verify`
//! when keyed), and a datagram seen twice is a duplicate whose frames are not delivered
//! again.
#![no_main]

mod common;

use canmc::recv::{Demux, RecvMeta};
use canmc::seq::SeqEvent;
use canmc::wire::native::{self, Kind};
use canmc::wire::{self, DecodeError, WireFormat};
use canmc::{CanFrame, SenderAddr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut frames: Vec<CanFrame> = Vec::new();
    let result = native::decode(data, &mut |f| {
        common::check_frame(f);
        assert_eq!(f.sender, SenderAddr::NONE);
        frames.push(*f);
    });
    let peeked = native::peek(data);
    match result {
        Ok(info) => {
            assert_eq!(peeked, Ok((info.kind, info.sender_id, info.seq)));
            assert_eq!(info.frames as usize, frames.len());
            if info.kind == Kind::Frames {
                assert_eq!(
                    u32::from(info.frames) + u32::from(info.bad_records),
                    u32::from(info.records),
                    "{info:?}"
                );
                assert_eq!(info.error.is_some(), info.bad_records > 0, "{info:?}");
            } else {
                assert!(frames.is_empty());
            }
            if let Ok((pi, _)) = native::decode_probe(data) {
                assert_eq!(pi.kind, Kind::PingProbe);
                assert_eq!((pi.sender_id, pi.seq), (info.sender_id, info.seq));
            }
            if let Ok((ai, answer)) = native::decode_answer(data) {
                assert_eq!(ai.kind, Kind::PingAnswer);
                let _ = answer.host();
                let _ = answer.role.name();
            }
        }
        Err(e) => {
            // peek reads the common header only; decode also reads the channel.
            match peeked {
                Ok((kind, _, _)) => assert_eq!((kind, e), (Kind::Frames, DecodeError::BadChannel)),
                Err(p) => assert_eq!(p, e),
            }
            assert!(frames.is_empty());
            assert!(DecodeError::ALL.contains(&e));
            assert!(native::decode_probe(data).is_err());
            assert!(native::decode_answer(data).is_err());
        }
    }

    // Authentication: verify never panics; a sealed copy of a native datagram always
    // verifies, and one that was not sealed before decodes to the same frames.
    let verified = native::verify(data, &common::KEY).is_ok();
    if data.first() == Some(&wire::NATIVE_MAGIC0) {
        let mut buf = data.to_vec();
        buf.resize(data.len() + native::TAG_LEN, 0);
        let n = native::seal(&mut buf, data.len(), &common::KEY);
        if n > 0 {
            let sealed = &buf[..n];
            assert_eq!(
                native::verify(sealed, &common::KEY),
                Ok(()),
                "sealed datagram fails verify"
            );
            let was_sealed = u16::from_le_bytes([data[10], data[11]]) & native::FLAG_AUTH != 0;
            if let (Ok(info), false) = (result, was_sealed) {
                let mut i = 0;
                let r = native::decode(sealed, &mut |f| {
                    assert_eq!(Some(f), frames.get(i), "sealed copy decodes differently");
                    i += 1;
                });
                assert_eq!(r, Ok(info), "sealed copy decodes differently");
            }
        }
    }

    // Demux: the same frames as decode (sender stamped), a repeat is a duplicate.
    if wire::detect(data) == WireFormat::Native {
        let sender = SenderAddr::from(
            "[2001:db8::7]:57000"
                .parse::<std::net::SocketAddr>()
                .unwrap(),
        );
        let meta = RecvMeta {
            timestamp_ns: 1_700_000_000_000_000_000,
            sender,
            kernel_drops: 0,
            truncated: false,
            ..RecvMeta::default()
        };
        for keyed in [false, true] {
            let mut demux = Demux::with_key(keyed.then_some(common::KEY));
            let mut got = Vec::new();
            let out = demux.decode(data, &meta, |f| got.push(f));
            if keyed && !verified {
                assert_eq!(out.error, Some(DecodeError::BadAuth));
                assert!(got.is_empty());
                continue;
            }
            assert_eq!(out.frames as usize, got.len());
            let is_frames = matches!(result, Ok(info) if info.kind == Kind::Frames);
            if is_frames {
                assert_eq!(got.len(), frames.len());
                for (g, f) in got.iter().zip(&frames) {
                    assert_eq!(g.sender, sender);
                    assert_eq!(g.content(), f.content());
                    assert_eq!((g.timestamp_ns, g.channel), (f.timestamp_ns, f.channel));
                }
                assert_eq!(out.seq, Some(SeqEvent::First));
                let again = demux.decode(data, &meta, |_| panic!("duplicate delivered"));
                assert_eq!(again.seq, Some(SeqEvent::Duplicate));
                assert_eq!(again.frames, 0);
            } else {
                assert!(got.is_empty());
            }
        }
    }
});
