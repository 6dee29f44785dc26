//! Helpers shared by the integration tests: running the `canmc` binary, waiting until
//! receivers on `lo` answer, reading one-line JSON summaries, scratch directories and a
//! small deterministic PRNG. The counting allocator is in [`alloc`], raw loopback
//! multicast sockets in [`udp`]; the network lab is the sibling module `tests/lab`.
//!
//! A test crate uses it with `mod common;` (cargo builds `tests/common/mod.rs` as a
//! module of each crate that declares it, not as a test crate of its own).

// Each test crate compiles this module on its own and uses a different subset of it;
// what one crate does not call would warn as dead code there.
#![allow(dead_code)]

pub mod alloc;
pub mod udp;

use std::collections::BTreeSet;
use std::path::PathBuf;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

/// The `canmc` binary cargo built for this test run.
pub const CANMC: &str = env!("CARGO_BIN_EXE_canmc");

/// `canmc ARGS`, ready to be configured further.
pub fn command(args: &[&str]) -> Command {
    let mut cmd = Command::new(CANMC);
    cmd.args(args);
    cmd
}

/// Runs `canmc ARGS` to the end.
pub fn canmc(args: &[&str]) -> Output {
    command(args).output().expect("run canmc")
}

/// Starts `canmc ARGS` with stdout and stderr piped.
pub fn spawn(args: &[&str]) -> Child {
    command(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn canmc")
}

/// Panics with the exit code and stderr unless the command exited 0.
#[track_caller]
pub fn ok(out: &Output) {
    assert!(
        out.status.success(),
        "exit {:?}: {}",
        out.status.code(),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// Runs any `cmd` to the end and returns its stdout; panics naming `what` (and with
/// its stderr) if it cannot start, fails, or prints something that is not UTF-8.
#[track_caller]
pub fn stdout_of(cmd: &mut Command, what: &str) -> String {
    let out = cmd
        .output()
        .unwrap_or_else(|e| panic!("cannot run {what}: {e}"));
    assert!(
        out.status.success(),
        "{what} failed ({}):\n{}",
        out.status,
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).unwrap_or_else(|e| panic!("{what}: stdout is not UTF-8: {e}"))
}

/// Waits for a receiver to have joined, for the tests that cannot use
/// [`wait_until_answering`]: their receiver does not answer the probes, or they count
/// its datagrams exactly (a probe is a datagram too).
pub fn settle() {
    std::thread::sleep(Duration::from_millis(400));
}

/// Pings the group on `lo` at `port` until every one of `pids` has answered once: a
/// receiver answers from the moment it has joined, and on a loaded machine that moment
/// varies. Receivers count the probes in `datagrams` (not in `frames`).
#[track_caller]
pub fn wait_until_answering(port: &str, pids: &[u32]) {
    wait_until_answering_with(port, pids, &[]);
}

/// [`wait_until_answering`] with more `ping` options (`--key-file K` for keyed
/// receivers, which answer only authenticated probes).
#[track_caller]
pub fn wait_until_answering_with(port: &str, pids: &[u32], extra: &[&str]) {
    let want: BTreeSet<u64> = pids.iter().map(|&p| u64::from(p)).collect();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !want.is_subset(&seen) {
        assert!(
            Instant::now() < deadline,
            "receivers {want:?} not all answering after 5 s (seen {seen:?})"
        );
        let mut args = vec![
            "ping", "--iface", "lo", "--port", port, "-W", "0.2", "--json",
        ];
        args.extend(extra);
        let out = canmc(&args);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            seen.insert(json_u64(line, "pid"));
        }
    }
}

/// Takes this test crate's turn: tests that pace traffic and count drops, or share
/// `lo`'s per-CPU backlog, run one at a time (each crate has its own lock).
pub fn serial() -> MutexGuard<'static, ()> {
    static SERIAL: Mutex<()> = Mutex::new(());
    SERIAL
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

/// An empty scratch directory `canmc-NAME-PID` in the temporary directory (emptied if a
/// previous run left it). Names must differ between the tests of one crate.
pub fn tmpdir(name: &str) -> PathBuf {
    let d = std::env::temp_dir().join(format!("canmc-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&d);
    std::fs::create_dir_all(&d).unwrap();
    d
}

/// Value of `"key":` in one compact JSON line (a summary, or a line of `ping --json` or
/// `pycan_peer.py recv`), as raw text: strings keep their quotes. Enough for flat objects
/// of plain values; the first occurrence of the key counts.
pub fn json_field<'a>(line: &'a str, key: &str) -> Option<&'a str> {
    let pat = format!("\"{key}\":");
    let start = line.find(&pat)? + pat.len();
    let rest = &line[start..];
    let end = if let Some(string) = rest.strip_prefix('"') {
        string.find('"')? + 2
    } else {
        rest.find([',', '}'])?
    };
    Some(&rest[..end])
}

/// A count field of a JSON line (`"key":12` or `"key": 12`); panics if it is missing or
/// not a whole number.
#[track_caller]
pub fn json_u64(line: &str, key: &str) -> u64 {
    let raw = json_field(line, key).unwrap_or_else(|| panic!("no \"{key}\" in {line}"));
    raw.trim()
        .parse()
        .unwrap_or_else(|_| panic!("\"{key}\" is not a count in {line}"))
}

/// A string field of a JSON line, without its quotes; panics if it is missing or not a
/// string.
#[track_caller]
pub fn json_str<'a>(line: &'a str, key: &str) -> &'a str {
    let raw = json_field(line, key).unwrap_or_else(|| panic!("no \"{key}\" in {line}"));
    raw.trim()
        .strip_prefix('"')
        .and_then(|s| s.strip_suffix('"'))
        .unwrap_or_else(|| panic!("\"{key}\" is not a string in {line}"))
}

/// The lines of `text` that are not blank.
pub fn nonempty_lines(text: &str) -> Vec<&str> {
    text.lines().filter(|l| !l.trim().is_empty()).collect()
}

/// Lower-case hex, two digits a byte.
pub fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// Wall-clock nanoseconds since the Unix epoch, as kernel receive timestamps count them.
pub fn now_ns() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_nanos() as u64
}

/// xorshift64: a deterministic sequence from a fixed non-zero seed.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        self.0 ^= self.0 << 13;
        self.0 ^= self.0 >> 7;
        self.0 ^= self.0 << 17;
        self.0
    }

    /// A number in `0..n` (0 when `n` is 0).
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

/// The name libtest knows a test by (`file_module::function`), for a test that re-runs
/// itself or a child entry point with `--exact`: `module` is the caller's
/// `module_path!()`, whose first segment (the test crate) libtest leaves out.
pub fn test_name(module: &str, function: &str) -> String {
    match module.split_once("::") {
        Some((_crate, path)) => format!("{path}::{function}"),
        None => function.to_string(),
    }
}

/// Whether this machine should have io_uring with multishot recvmsg and buffer rings,
/// and, if it should, proof that it works: tests of the io_uring path start with
/// `if !common::uring_expected() { return; }`.
///
/// On a kernel older than 6.0 (no multishot recvmsg) or with `kernel.io_uring_disabled`
/// set, the feature is not expected: the test says so on stderr and passes without
/// running. Where it should exist, a failed probe fails the test with the reason (as the
/// io-uring crate's own tests do), so a broken io_uring never hides as a skip.
pub fn uring_expected() -> bool {
    let release = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let mut parts = release.trim().split(|c: char| !c.is_ascii_digit());
    let major: u32 = parts.next().and_then(|s| s.parse().ok()).unwrap_or(0);
    let disabled = std::fs::read_to_string("/proc/sys/kernel/io_uring_disabled")
        .ok()
        .and_then(|s| s.trim().parse::<u32>().ok())
        .unwrap_or(0);
    if major < 6 {
        eprintln!(
            "io_uring test not applicable: kernel {} has no multishot recvmsg (6.0+)",
            release.trim()
        );
        return false;
    }
    if disabled != 0 {
        eprintln!("io_uring test not applicable: kernel.io_uring_disabled = {disabled}");
        return false;
    }
    if let Err(e) = canmc::recv::uring::probe() {
        panic!(
            "io_uring should work on kernel {} but does not: {e}",
            release.trim()
        );
    }
    true
}
