//! Tests on loopback (`lo`, 127.0.0.1, TTL 0): sockets, both receive loops, the engine, Bus,
//! and the CLI end to end.
//!
//! One test crate for these files (fewer binaries to link and start); each file is a
//! module, so `cargo test --test lo MODULE::` runs one of them.

#[path = "../common/mod.rs"]
mod common;
#[path = "../lab/mod.rs"]
mod lab;

mod bus_lo;
mod cli_hostile_lo;
mod cli_native_lo;
mod cli_record_lo;
mod engine_lo;
mod faults;
mod gro_lo;
mod net_lo;
mod soak;
mod uring_lo;
mod view_top;
