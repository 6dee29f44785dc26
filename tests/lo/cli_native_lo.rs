//! The CLI's native format and `ping` on loopback (IPv4 on `lo`, TTL 0): frames cross
//! exactly, python-can and native datagrams share one receiver, ping finds exactly the
//! receivers that answer. The multi-host versions are in `lab_native.rs`.
//!
//! The tests share `lo` and its per-CPU backlog: a flood from one test can make the
//! kernel drop another test's probe before any socket sees it. They take turns
//! (`serial()`).

use crate::common;

use std::time::Duration;

use common::{canmc, json_u64, ok, serial, settle, spawn, wait_until_answering};

#[test]
fn native_send_reaches_dump_exactly() {
    let _turn = serial();
    let port = "42301";
    let dump = spawn(&[
        "dump", "--iface", "lo", "--port", port, "-L", "-n", "7", "--json",
    ]);
    // Not a readiness ping: the test counts the dump's datagrams exactly.
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
    ok(&canmc(&args));
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
    let _turn = serial();
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
    wait_until_answering(port, &[dump.id()]);
    let count = n.to_string();
    let native = spawn(&[
        "gen", "--iface", "lo", "--port", port, "--wire", "native", "-n", &count, "--rate",
        "100000", "-L", "8",
    ]);
    let pycan = spawn(&[
        "gen", "--iface", "lo", "--port", port, "-n", &count, "--rate", "30000", "-f", "-L", "64",
    ]);
    ok(&native.wait_with_output().unwrap());
    ok(&pycan.wait_with_output().unwrap());
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
    let _turn = serial();
    let port = "42303";
    let dump = |extra: &[&str]| {
        let mut args = vec![
            "dump",
            "--iface",
            "lo",
            "--port",
            port,
            "-q",
            "--duration",
            "8",
        ];
        args.extend(extra);
        spawn(&args)
    };
    let quiet = dump(&["--no-answer"]);
    let none = canmc(&["ping", "--iface", "lo", "--port", port, "-W", "0.5"]);
    assert_eq!(none.status.code(), Some(1), "nobody answers: exit 1");
    assert!(none.stdout.is_empty());
    assert!(String::from_utf8_lossy(&none.stderr).contains("no receiver answered"));

    let (a, b) = (dump(&[]), dump(&[]));
    wait_until_answering(port, &[a.id(), b.id()]);
    let out = canmc(&[
        "ping", "--iface", "lo", "--port", port, "-c", "2", "-W", "0.5", "--json",
    ]);
    ok(&out);
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
        ok(&c.wait_with_output().unwrap());
    }
}

/// SIGTERM ends `dump` after it hands over everything already received: with its
/// output stalled (nobody reads the pipe yet), the frames wait in the ring, and the
/// summary must account for every datagram: printed, or a counted drop.
#[test]
fn sigterm_drains_what_was_received_before_the_summary() {
    use std::io::Read;
    let _turn = serial();
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
    ok(&gen);
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

/// `--coalesce`: the receive thread waits after a small batch, and still every frame of a
/// paced stream comes through, in order.
#[test]
fn coalescing_dump_gets_every_frame_in_order() {
    let _turn = serial();
    let port = "42305";
    let n = 5_000u64;
    let dump = spawn(&[
        "dump",
        "--iface",
        "lo",
        "--port",
        port,
        "-L",
        "--coalesce",
        "2",
        "-n",
        &n.to_string(),
        "--duration",
        "20",
        "--json",
    ]);
    wait_until_answering(port, &[dump.id()]);
    ok(&canmc(&[
        "gen",
        "--iface",
        "lo",
        "--port",
        port,
        "-n",
        &n.to_string(),
        "--rate",
        "20000",
        "-I",
        "i",
        "-L",
        "8",
    ]));
    let out = dump.wait_with_output().unwrap();
    ok(&out);
    let text = String::from_utf8(out.stdout).unwrap();
    let ids: Vec<u32> = text
        .lines()
        .filter(|l| l.starts_with('('))
        .map(|l| {
            let frame = l.split_whitespace().nth(2).unwrap();
            u32::from_str_radix(frame.split('#').next().unwrap(), 16).unwrap()
        })
        .collect();
    assert_eq!(ids.len() as u64, n, "{}", text.lines().last().unwrap_or(""));
    for w in ids.windows(2) {
        assert_eq!(w[1], (w[0] + 1) % 0x800, "in order, none missing");
    }
}

/// `gen --rate R -n N` takes N / R seconds, as a user timing it would check: never
/// faster (beyond the first frame, which goes at once), and not much slower even on a
/// loaded machine; the summary's rate says the same, and every frame arrives.
#[test]
fn gen_rate_holds_the_asked_rate() {
    let _turn = serial();
    let port = "42306";
    for (rate, n, exact_delivery) in [
        (200_000u64, 300_000u64, true),
        (2_000_000, 4_000_000, false),
    ] {
        let dump = spawn(&[
            "dump",
            "--iface",
            "lo",
            "--port",
            port,
            "-q",
            "-n",
            &n.to_string(),
            "--duration",
            "30",
            "--json",
        ]);
        wait_until_answering(port, &[dump.id()]);
        let t0 = std::time::Instant::now();
        let out = canmc(&[
            "gen",
            "--iface",
            "lo",
            "--port",
            port,
            "--wire",
            "native",
            "-L",
            "8",
            "-n",
            &n.to_string(),
            "--rate",
            &rate.to_string(),
            "--json",
        ]);
        let wall = t0.elapsed().as_secs_f64();
        ok(&out);
        let gen = String::from_utf8(out.stdout).unwrap();
        let want = (n - 1) as f64 / rate as f64;
        assert!(
            wall >= want * 0.99,
            "--rate {rate}: {n} frames in {wall:.3} s, want {want:.3} s"
        );
        assert!(
            wall <= want * 1.5 + 0.5,
            "--rate {rate}: {n} frames in {wall:.3} s, want {want:.3} s"
        );
        let fps: f64 = common::json_field(&gen, "rate_fps")
            .unwrap()
            .parse()
            .unwrap();
        assert!(
            fps <= rate as f64 * 1.01 && fps >= rate as f64 * 0.66,
            "--rate {rate}: summary says {fps}/s"
        );
        assert_eq!(json_u64(&gen, "frames"), n, "{gen}");
        let out = dump.wait_with_output().unwrap();
        let summary = String::from_utf8(out.stdout).unwrap();
        if exact_delivery {
            assert_eq!(json_u64(&summary, "frames"), n, "{summary}");
        } else {
            // At 2 M/s a loaded CI machine may drop some; then they are counted.
            let got = json_u64(&summary, "frames");
            assert!(
                got == n || json_u64(&summary, "kernel_drops") + json_u64(&summary, "seq_gaps") > 0,
                "{summary}"
            );
        }
    }
}
