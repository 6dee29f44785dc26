//! Whole Vector ASC files through `convert::read_events(…, FileFormat::Asc, …)`: header
//! lines (`date`, `base hex|dec timestamps absolute|relative`, `Begin Triggerblock`),
//! CAN and CANFD lines, error frames with canmc's `// canmc error frame:` comments (the
//! input is written to a scratch file that every iteration reuses).
//!
//! Asserts (see `common::check_text_capture`): no panic; every event is a valid frame;
//! strict and `--skip-bad` reads agree (same events, or a parse error after a prefix);
//! `start_ns` keeps exactly the events at or after it; stopping early stops.
#![no_main]

mod common;

use canmc::convert::FileFormat;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    common::check_text_capture(FileFormat::Asc, "input.asc", data);
});
