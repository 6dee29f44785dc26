//! The CLI's native format and `ping` on loopback (IPv4 on `lo`, TTL 0): frames cross
//! exactly, python-can and native datagrams share one receiver, ping finds exactly the
//! receivers that answer. The multi-host versions are in `lab_native.rs`.

use std::collections::BTreeSet;
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

/// The tests share `lo` and its per-CPU backlog: a flood from one test can make the
/// kernel drop another test's probe before any socket sees it. They take turns.
static LO: Mutex<()> = Mutex::new(());

fn lo_turn() -> MutexGuard<'static, ()> {
    LO.lock().unwrap_or_else(|poisoned| poisoned.into_inner())
}

const CANMC: &str = env!("CARGO_BIN_EXE_canmc");

fn canmc(args: &[&str]) -> Output {
    Command::new(CANMC).args(args).output().expect("run canmc")
}

fn spawn(args: &[&str]) -> Child {
    Command::new(CANMC)
        .args(args)
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn canmc")
}

/// Waits for a receiver to have joined (it answers probes from then on).
fn settle() {
    std::thread::sleep(Duration::from_millis(400));
}

/// Pings until every one of `pids` has answered once: a receiver answers from the
/// moment it has joined, and on a loaded machine that moment varies.
fn wait_until_answering(port: &str, pids: &[u32]) {
    let want: BTreeSet<u64> = pids.iter().map(|&p| u64::from(p)).collect();
    let mut seen = BTreeSet::new();
    let deadline = Instant::now() + Duration::from_secs(5);
    while !want.is_subset(&seen) {
        assert!(
            Instant::now() < deadline,
            "receivers {want:?} not all answering after 5 s (seen {seen:?})"
        );
        let out = canmc(&[
            "ping", "--iface", "lo", "--port", port, "-W", "0.2", "--json",
        ]);
        for line in String::from_utf8_lossy(&out.stdout).lines() {
            seen.insert(json_u64(line, "pid"));
        }
    }
}

fn json_u64(json: &str, key: &str) -> u64 {
    let pat = format!("\"{key}\":");
    let at = json
        .find(&pat)
        .unwrap_or_else(|| panic!("{key} missing in {json}"))
        + pat.len();
    json[at..]
        .chars()
        .take_while(|c| c.is_ascii_digit())
        .collect::<String>()
        .parse()
        .unwrap()
}

#[test]
fn native_send_reaches_dump_exactly() {
    let _turn = lo_turn();
    let port = "42301";
    let dump = spawn(&[
        "dump", "--iface", "lo", "--port", port, "-L", "-n", "7", "--json",
    ]);
    settle();
    let frames = [
        "123#DEADBEEF",
        "1FFFFFFF#00112233",
        "123#R4",
        "20000080#0000000000000000",
        "123##5000102030405060708090A0B",
        "7FF##2",
        "000#",
    ];
    let mut args = vec![
        "send",
        "--iface",
        "lo",
        "--port",
        port,
        "--wire",
        "native",
        "--channel",
        "can7",
    ];
    args.extend(frames);
    let out = canmc(&args);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let out = dump.wait_with_output().unwrap();
    let text = String::from_utf8(out.stdout).unwrap();
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 8, "{text}");
    for (line, want) in lines.iter().zip(frames) {
        let frame_part = line.split_once(") ").unwrap().1;
        let want_frame: canmc::CanFrame = want.parse().unwrap();
        assert_eq!(frame_part, format!("can7 {want_frame}"));
    }
    let summary = lines[7];
    assert_eq!(json_u64(summary, "frames"), 7);
    // The first frame left alone (the sender was idle), the rest shared one datagram.
    assert_eq!(json_u64(summary, "datagrams"), 2, "{summary}");
    assert_eq!(json_u64(summary, "decode_errors_total"), 0);
}

#[test]
fn native_and_pycan_share_a_receiver_and_nothing_is_lost() {
    let _turn = lo_turn();
    let port = "42302";
    let n = 60_000u64;
    let dump = spawn(&[
        "dump",
        "--iface",
        "lo",
        "--port",
        port,
        "-q",
        "-n",
        &(2 * n).to_string(),
        "--duration",
        "20",
        "--json",
    ]);
    settle();
    let count = n.to_string();
    let native = spawn(&[
        "gen", "--iface", "lo", "--port", port, "--wire", "native", "-n", &count, "--rate",
        "100000", "-L", "8",
    ]);
    let pycan = spawn(&[
        "gen", "--iface", "lo", "--port", port, "-n", &count, "--rate", "30000", "-f", "-L", "64",
    ]);
    assert!(native.wait_with_output().unwrap().status.success());
    assert!(pycan.wait_with_output().unwrap().status.success());
    let out = dump.wait_with_output().unwrap();
    let summary = String::from_utf8(out.stdout).unwrap();
    assert_eq!(
        json_u64(&summary, "kernel_drops"),
        0,
        "paced so nothing drops: {summary}"
    );
    assert_eq!(json_u64(&summary, "frames"), 2 * n, "{summary}");
    assert_eq!(json_u64(&summary, "seq_gaps"), 0, "{summary}");
    assert_eq!(json_u64(&summary, "decode_errors_total"), 0, "{summary}");
    // Batching: far fewer datagrams than frames for the native half.
    assert!(json_u64(&summary, "datagrams") < n + n / 4, "{summary}");
}

#[test]
fn ping_lists_exactly_the_answering_receivers() {
    let _turn = lo_turn();
    let port = "42303";
    let quiet = spawn(&[
        "dump",
        "--iface",
        "lo",
        "--port",
        port,
        "-q",
        "--duration",
        "8",
        "--no-answer",
    ]);
    let none = canmc(&["ping", "--iface", "lo", "--port", port, "-W", "0.5"]);
    assert_eq!(none.status.code(), Some(1), "nobody answers: exit 1");
    assert!(none.stdout.is_empty());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no receiver answered"));

    let a = spawn(&[
        "dump",
        "--iface",
        "lo",
        "--port",
        port,
        "-q",
        "--duration",
        "8",
    ]);
    let b = spawn(&[
        "dump",
        "--iface",
        "lo",
        "--port",
        port,
        "-q",
        "--duration",
        "8",
    ]);
    wait_until_answering(port, &[a.id(), b.id()]);
    let out = canmc(&[
        "ping", "--iface", "lo", "--port", port, "-c", "2", "-W", "0.5", "--json",
    ]);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let text = String::from_utf8(out.stdout).unwrap();
    let mut pids: Vec<u64> = text.lines().map(|l| json_u64(l, "pid")).collect();
    pids.sort_unstable();
    let mut want = vec![
        u64::from(a.id()),
        u64::from(b.id()),
        u64::from(a.id()),
        u64::from(b.id()),
    ];
    want.sort_unstable();
    assert_eq!(
        pids, want,
        "two answers per round, from the two answering dumps only:\n{text}"
    );
    for line in text.lines() {
        assert!(line.contains("\"role\":\"dump\""), "{line}");
        assert!(line.contains("\"from\":\"127.0.0.1:"), "{line}");
        assert!(json_u64(line, "rtt_us") < 1_000_000, "{line}");
    }
    for c in [quiet, a, b] {
        assert!(c.wait_with_output().unwrap().status.success());
    }
}

/// SIGTERM ends `dump` after it hands over everything already received: with its
/// output stalled (nobody reads the pipe yet), the frames wait in the ring, and the
/// summary must account for every datagram: printed, or a counted drop.
#[test]
fn sigterm_drains_what_was_received_before_the_summary() {
    use std::io::Read;
    let _turn = lo_turn();
    let port = "42304";
    let n: u64 = 50_000;
    let mut dump = spawn(&["dump", "--iface", "lo", "--port", port, "-L", "--json"]);
    wait_until_answering(port, &[dump.id()]);
    let gen = canmc(&[
        "gen",
        "--iface",
        "lo",
        "--port",
        port,
        "-n",
        &n.to_string(),
        "-I",
        "5A5",
    ]);
    assert!(gen.status.success());
    std::thread::sleep(Duration::from_millis(300));
    // SAFETY: kill(2) on a child we spawned and have not reaped.
    unsafe { libc::kill(dump.id() as i32, libc::SIGTERM) };
    let mut text = String::new();
    dump.stdout
        .take()
        .unwrap()
        .read_to_string(&mut text)
        .unwrap();
    assert!(dump.wait().unwrap().success());
    let summary = text.lines().last().unwrap_or_default();
    let printed = text.lines().filter(|l| l.contains(" 5A5#")).count() as u64;
    assert_eq!(printed, json_u64(summary, "frames"), "{summary}");
    // (`datagrams` also counts the readiness pings, so the check is against `n`.)
    assert_eq!(
        printed + json_u64(summary, "ring_drops") + json_u64(summary, "kernel_drops"),
        n,
        "every frame sent is printed or a counted drop: {summary}"
    );
}
