//! The one-minute soak: `tools/soak.sh 60` in a private namespace (python-can 200 000
//! frames/s + native 1 000 000 frames/s into `canmc record` and `canmc dump -q`); fails
//! when a receiver's memory grows after warm-up or its counters do not account for
//! everything sent. The ten-minute run is `bash tools/soak.sh`.

use std::process::Command;
use std::time::{Duration, Instant};

const CANMC: &str = env!("CARGO_BIN_EXE_canmc");

#[test]
fn one_minute_soak_memory_flat_counters_consistent() {
    let repo = env!("CARGO_MANIFEST_DIR");
    let t = Instant::now();
    // timeout signals the whole group: no receiver outlives a hung run.
    let out = Command::new("timeout")
        .args(["-k", "5", "110", "bash"])
        .arg(format!("{repo}/tools/soak.sh"))
        .arg("60")
        .env("CANMC", CANMC)
        .env_remove("SOAK_DIR")
        .env_remove("SOAK_INNER")
        .output()
        .expect("run tools/soak.sh");
    let err = String::from_utf8_lossy(&out.stderr);
    eprintln!("{err}");
    assert!(
        out.status.success(),
        "soak failed ({}) after {:?}:\n{err}",
        out.status,
        t.elapsed()
    );
    // The script's own verdict line, and one memory and one counter line per receiver.
    assert!(err.lines().any(|l| l == "soak: ok"), "{err}");
    for rx in ["record", "dump"] {
        assert!(
            err.contains(&format!("soak: {rx}: memory ok")),
            "{rx} memory line: {err}"
        );
    }
    assert!(t.elapsed() < Duration::from_secs(110));
}
