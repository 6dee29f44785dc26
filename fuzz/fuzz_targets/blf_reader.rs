//! Whole Vector BLF files through `convert::read_events(…, FileFormat::Blf, …)`: the file
//! header, zlib and stored LOG_CONTAINERs, objects straddling containers, every CAN
//! object kind and unknown ones.
//!
//! Asserts (see `common::check_capture`): no panic, bounded memory (libFuzzer's RSS
//! limit); every event is a valid frame; a damaged file yields a prefix then a `Parse`
//! error; strict and `--skip-bad` reads agree; `start_ns` keeps exactly the events at or
//! after it; stopping early stops.
#![no_main]

mod common;

use canmc::convert::FileFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::check_capture(FileFormat::Blf, "input.blf", data);
});
