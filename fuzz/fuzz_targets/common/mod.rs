//! Helpers shared by the fuzz targets (each target includes this module with `mod common;`
//! and uses only the parts it needs).
#![allow(dead_code)]

use std::path::PathBuf;
use std::sync::OnceLock;

use canmc::CanFrame;

/// The fixed key of the authenticated-datagram checks (and of the seeds made with it).
pub const KEY: canmc::wire::native::AuthKey =
    canmc::wire::native::AuthKey::from_bytes(*b"canmc fuzz key, not a secret!!!!");

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

/// A private scratch directory for the whole-file targets, made once per process and
/// removed when it exits normally: `canmc-fuzz-<pid>` under `$TMPDIR` if set, else under
/// `/dev/shm` (RAM: a disk-backed /tmp can be 50 times slower), else under /tmp.
/// Every iteration reuses the same file names inside it. A process that crashes (a
/// finding, or `tmin`) cannot remove its directory; the next one removes those of
/// processes that are gone.
pub fn scratch_dir() -> &'static PathBuf {
    static DIR: OnceLock<PathBuf> = OnceLock::new();
    extern "C" fn remove_scratch_dir() {
        if let Some(dir) = DIR.get() {
            let _ = std::fs::remove_dir_all(dir);
        }
    }
    DIR.get_or_init(|| {
        let shm = std::path::Path::new("/dev/shm");
        let base = match std::env::var_os("TMPDIR") {
            None if shm.is_dir() => shm.to_path_buf(),
            _ => std::env::temp_dir(),
        };
        remove_stale(&base);
        let dir = base.join(format!("canmc-fuzz-{}", std::process::id()));
        std::fs::create_dir_all(&dir).expect("create the fuzz scratch directory");
        // SAFETY: registers a plain `extern "C" fn` that only touches a set OnceLock.
        unsafe { libc::atexit(remove_scratch_dir) };
        dir
    })
}

/// Removes the `canmc-fuzz-<pid>` directories in `base` whose process no longer exists.
fn remove_stale(base: &std::path::Path) {
    let Ok(entries) = std::fs::read_dir(base) else {
        return;
    };
    for e in entries.flatten() {
        let name = e.file_name();
        let Some(pid) = name.to_str().and_then(|n| n.strip_prefix("canmc-fuzz-")) else {
            continue;
        };
        if pid.bytes().all(|b| b.is_ascii_digit())
            && !std::path::Path::new("/proc").join(pid).exists()
        {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Writes `data` to `name` in the scratch directory and returns its path.
pub fn scratch_file(name: &str, data: &[u8]) -> PathBuf {
    let path = scratch_dir().join(name);
    std::fs::write(&path, data).expect("write the fuzz input file");
    path
}

/// Reads a text capture (candump log or ASC) written to the scratch file `name` with
/// `convert::read_events` four ways and checks that they agree:
///
/// 1. `skip_bad`: reads to the end (only an I/O error, such as invalid UTF-8, stops
///    it); every event is a valid frame and `stats.events` counts them;
/// 2. strict: the same events when no line was skipped, else a `Parse` error after a
///    prefix of them;
/// 3. `start_ns` = the time of the middle event: exactly the events of 1 at or after it;
/// 4. a callback that stops after the first event: one event and `stopped`.
pub fn check_text_capture(format: canmc::convert::FileFormat, name: &str, data: &[u8]) {
    use canmc::convert::{read_events, ConvertError, ReadOptions};
    use canmc::engine::Event;

    let path = scratch_file(name, data);
    let read = |opts: ReadOptions, limit: usize| {
        let mut frames = Vec::new();
        let r = read_events(&path, format, opts, &mut |ev| {
            let Event::Frame(f) = ev else {
                panic!("a text capture produced {ev:?}");
            };
            check_frame(f);
            frames.push(*f);
            frames.len() < limit
        });
        (r, frames)
    };
    let lenient = ReadOptions {
        skip_bad: true,
        start_ns: None,
    };
    let (r, all) = read(lenient, usize::MAX);
    let stats = match r {
        Ok(stats) => stats,
        Err(ConvertError::Io { .. }) => return,
        Err(e) => panic!("skip_bad read failed: {e}"),
    };
    assert_eq!(stats.events, all.len() as u64);
    assert!(!stats.stopped);

    let (r, strict) = read(ReadOptions::default(), usize::MAX);
    match r {
        Ok(s) => {
            assert_eq!(
                stats.skipped, 0,
                "strict read passed lines skip_bad skipped"
            );
            assert_eq!(s.events, stats.events);
            assert_eq!(strict, all);
        }
        Err(ConvertError::Parse { .. }) => {
            assert!(
                stats.skipped > 0,
                "strict read failed where skip_bad skipped nothing"
            );
            assert!(all.starts_with(&strict), "strict read is not a prefix");
        }
        Err(e) => panic!("strict read failed with {e}"),
    }

    if let Some(mid) = all.get(all.len() / 2) {
        let t = mid.timestamp_ns;
        let (r, late) = read(
            ReadOptions {
                skip_bad: true,
                start_ns: Some(t),
            },
            usize::MAX,
        );
        assert_eq!(r.expect("read with start_ns").events, late.len() as u64);
        let want: Vec<_> = all
            .iter()
            .filter(|f| f.timestamp_ns >= t)
            .copied()
            .collect();
        assert_eq!(late, want, "start_ns {t}");

        let (r, first) = read(lenient, 1);
        let s = r.expect("read stopped after one event");
        assert!(s.stopped && s.events == 1 && first[..] == all[..1], "{s:?}");
    }
}
