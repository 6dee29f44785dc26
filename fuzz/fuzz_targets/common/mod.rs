//! Helpers shared by the fuzz targets (each target includes this module with `mod common;`
//! and uses only the parts it needs).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use canmc::CanFrame;

/// The fixed key of the authenticated-datagram checks (and of the seeds made with it).
pub const KEY: [u8; 32] = *b"canmc fuzz key, not a secret!!!!";

/// A frame handed out by a decoder or parser: valid by [`CanFrame::validate`], and
/// with the bytes past its payload zero (the invariant `CanFrame::data` documents, which
/// makes decoded frames compare equal to the sender's).
#[track_caller]
pub fn check_frame(f: &CanFrame) {
    if let Err(e) = f.validate() {
        panic!("decoded frame is invalid ({e}): {f:?}");
    }
    let n = f.payload().len();
    assert!(
        f.data[n..].iter().all(|&b| b == 0),
        "bytes past the payload are not zero: {f:?} {:02X?}",
        f.data
    );
}

/// A private scratch directory for the whole-file targets, made once per process:
/// `$TMPDIR/canmc-fuzz-<pid>` (tools/fuzz.sh points TMPDIR at a directory it removes
/// afterwards). Every iteration reuses the same file names inside it.
pub fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    DIR.get_or_init(|| {
        let dir = std::env::temp_dir().join(format!("canmc-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the fuzz scratch directory");
        dir
    })
}

/// Writes `data` to `name` in the scratch directory and returns its path.
pub fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, data).expect("write the fuzz input file");
    path
}
