//! Tests that need no network: decoders against real python-can output, property tests,
//! recordings under crashes, conversions read by python-can and tshark, CLI argument errors.
//!
//! One test crate for these files (fewer binaries to link and start); each file is a
//! module, so `cargo test --test offline MODULE::` runs one of them.

#[path = "../common/mod.rs"]
mod common;
#[path = "../lab/mod.rs"]
mod lab;

mod cli_errors;
mod convert_interop;
mod engine;
mod fuzz_decoders;
mod lake;
mod native_props;
mod pycan_golden;
mod record_crash;
mod record_props;
mod vector_interop;
mod view_cli;
mod view_dbc;
mod view_plot;
