//! Tests inside network namespaces the test creates (tools/netlab.sh): python-can peers,
//! several hosts on a bridge, IPv6 on veth.
//!
//! One test crate for these files (fewer binaries to link and start); each file is a
//! module, so `cargo test --test netns MODULE::` runs one of them.

#[path = "../common/mod.rs"]
mod common;
#[path = "../lab/mod.rs"]
mod lab;

mod interop_pycan;
mod interop_replay;
mod lab_native;
