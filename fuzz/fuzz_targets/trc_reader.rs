//! Whole PEAK TRC files through `convert::read_events(…, FileFormat::Trc, …)`: every
//! version's header (`;$FILEVERSION`, `;$STARTTIME`, `;$COLUMNS`) and line shape, canmc's
//! loss comments.
//!
//! Asserts (see `common::check_capture`): no panic; every event is a valid frame;
//! strict and `--skip-bad` reads agree; `start_ns` keeps exactly the events at or after
//! it; stopping early stops.
#![no_main]

mod common;

use canmc::convert::FileFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::check_capture(FileFormat::Trc, "input.trc", data);
});
