//! Text frames: `frame::parse_frame` (cansend syntax, `123#DEADBEEF`) and
//! `convert::candump::parse_log_line` (`(1700000000.123456) can0 123#DEADBEEF`), on
//! every line of the input.
//!
//! Asserts: no panic; a parsed frame is valid with zeroed bytes past its payload; it
//! survives being written back and parsed again: `write_text` + `parse_frame` gives the
//! same frame, `write_log_line` + `parse_log_line` the same content, the timestamp cut to
//! the microsecond, and a channel that prints the same.
#![no_main]

mod common;

use canmc::convert::candump::{parse_log_line, write_log_line};
use canmc::frame::parse_frame;
use canmc::CanFrame;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    for (line, bytes) in text.split('\n').zip(data.split(|&b| b == b'\n')) {
        if let Ok(f) = parse_frame(bytes) {
            common::check_frame(&f);
            let mut out = [0u8; CanFrame::TEXT_MAX];
            let n = f.write_text(&mut out);
            match parse_frame(&out[..n]) {
                Ok(back) => assert_eq!(back, f, "{:?}", String::from_utf8_lossy(&out[..n])),
                Err(e) => panic!(
                    "{f:?} written as {:?}: {e}",
                    String::from_utf8_lossy(&out[..n])
                ),
            }
        }
        if let Ok(Some(f)) = parse_log_line(line) {
            common::check_frame(&f);
            let mut out = Vec::new();
            write_log_line(&f, &mut out);
            let written = String::from_utf8(out).expect("log lines are UTF-8");
            let back = match parse_log_line(&written) {
                Ok(Some(back)) => back,
                other => panic!("{f:?} written as {written:?}, read back as {other:?}"),
            };
            assert_eq!(back.content(), f.content(), "{written:?}");
            assert_eq!(
                back.timestamp_ns,
                f.timestamp_ns / 1000 * 1000,
                "{written:?}"
            );
            assert_eq!(
                back.channel.to_string(),
                f.channel.to_string(),
                "{written:?}"
            );
        }
    }
});
