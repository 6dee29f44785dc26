//! python-can msgpack datagrams (`wire::pycan::decode`), straight and through
//! `recv::Demux`.
//!
//! Asserts: no panic; a decoded frame is valid with zeroed bytes past its payload;
//! decoding into a dirty frame gives the same result as into an empty one; a decoded
//! frame survives `pycan::encode` + `decode` unchanged (content and channel); `Demux`
//! delivers exactly that frame (stamped with the receive time and sender it was given),
//! and a keyed `Demux` refuses every python-can datagram as `BadAuth`.
#![no_main]

mod common;

use std::net::SocketAddr;

use canmc::frame::flags;
use canmc::recv::{Demux, RecvMeta};
use canmc::wire::{self, pycan, DecodeError, WireFormat};
use canmc::{CanFrame, Channel, SenderAddr};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let mut f = CanFrame::EMPTY;
    let result = pycan::decode(data, &mut f);

    // The frame a receive loop reuses: full FD payload, a channel, a sender.
    let mut dirty = CanFrame::new(0x7FF, flags::FD | flags::BRS, &[0xAA; 64]).unwrap();
    dirty.channel = Channel::str("dirty-channel").unwrap();
    dirty.timestamp_ns = u64::MAX;
    let again = pycan::decode(data, &mut dirty);
    assert_eq!(result, again, "result depends on the frame decoded into");

    if result.is_ok() {
        common::check_frame(&f);
        assert_eq!(f.sender, SenderAddr::NONE, "decode set the sender");
        dirty.sender = SenderAddr::NONE;
        assert_eq!(f, dirty, "decoding into a used frame left traces of it");

        let mut buf = [0u8; pycan::MAX_ENCODED];
        let n = pycan::encode(&f, &mut buf);
        let mut back = CanFrame::EMPTY;
        pycan::decode(&buf[..n], &mut back).expect("re-encoded frame decodes");
        assert_eq!(back.content(), f.content(), "encode/decode round trip");
        assert_eq!(back.channel, f.channel, "channel round trip");
    }

    let sender = SenderAddr::from("192.0.2.7:57000".parse::<SocketAddr>().unwrap());
    let meta = RecvMeta {
        timestamp_ns: 1_700_000_000_000_000_000,
        sender,
        kernel_drops: 0,
        truncated: false,
        ..RecvMeta::default()
    };
    if wire::detect(data) == WireFormat::Pycan {
        let mut got = Vec::new();
        let out = Demux::new().decode(data, &meta, |fr| got.push(fr));
        assert_eq!(out.frames as usize, got.len());
        match result {
            Ok(()) => {
                assert_eq!(out.error, None);
                assert_eq!(got.len(), 1);
                let mut want = f;
                want.timestamp_ns = meta.timestamp_ns;
                want.sender = sender;
                assert_eq!(got[0], want, "Demux delivered another frame");
            }
            Err(e) => {
                assert!(got.is_empty());
                assert_eq!(out.error, Some(e));
            }
        }
        let mut keyed = Demux::with_key(Some(common::KEY));
        let out = keyed.decode(data, &meta, |_| {
            panic!("keyed Demux delivered a pycan frame")
        });
        assert_eq!(out.error, Some(DecodeError::BadAuth));
    }
});
