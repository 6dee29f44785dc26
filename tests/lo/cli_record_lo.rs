//! `record`, `info`, `convert`, `replay` from the command line, on loopback (IPv4 on
//! `lo`, TTL 0): captures round-trip every frame kind, a SIGKILLed recorder leaves a
//! file that opens with an in-order prefix of the stream, and bad input gets one line.

use crate::common;

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use canmc::record::{Record, Recording};
use common::{canmc, command, ok, spawn, tmpdir, wait_until_answering, Rng};

fn s(p: &Path) -> &str {
    p.to_str().unwrap()
}

/// Frame parts of log lines (without the timestamp), in order.
fn frames_of_log(text: &str) -> Vec<String> {
    text.lines()
        .filter(|l| l.starts_with('('))
        .map(|l| l.split_once(") ").unwrap().1.to_string())
        .collect()
}

const KINDS: [&str; 9] = [
    "123#DEADBEEF",
    "1FFFFFFF#0011223344556677",
    "7FF#R",
    "123#R8",
    "20000004#0000000000000000",
    "000#",
    "123##0",
    "123##1000102030405060708090A0B0C0D0E0F",
    "12345678##3AA",
];

#[test]
fn record_info_convert_replay_round_trip_every_kind() {
    let dir = tmpdir("roundtrip");
    let cap = dir.join("cap.cmc");
    let port = "42501";
    let rec = spawn(&[
        "record",
        "--iface",
        "lo",
        "--port",
        port,
        "-o",
        s(&cap),
        "-n",
        "18",
        "--duration",
        "10",
        "--json",
    ]);
    wait_until_answering(port, &[rec.id()]);
    let mut args = vec!["send", "--iface", "lo", "--port", port, "--channel", "can2"];
    args.extend(KINDS);
    ok(&canmc(&args));
    let mut args = vec!["send", "--iface", "lo", "--port", port, "--wire", "native"];
    args.extend(KINDS);
    ok(&canmc(&args));
    let out = rec.wait_with_output().unwrap();
    ok(&out);
    assert!(String::from_utf8_lossy(&out.stdout).contains("\"frames\":18"));

    // info sees every frame and kind.
    let info = canmc(&["info", s(&cap), "--json"]);
    ok(&info);
    let j = String::from_utf8(info.stdout).unwrap();
    for want in [
        "\"frames\":18",
        "\"remote\":4",
        "\"error\":2",
        "\"fd\":6",
        "\"senders\":2",
    ] {
        assert!(j.contains(want), "{want} in {j}");
    }

    // convert to .log: both halves, in order, exactly the frames sent.
    let log = dir.join("cap.log");
    ok(&canmc(&["convert", s(&cap), s(&log)]));
    let lines = frames_of_log(&std::fs::read_to_string(&log).unwrap());
    let mut want: Vec<String> = KINDS
        .iter()
        .map(|k| format!("can2 {}", k.parse::<canmc::CanFrame>().unwrap()))
        .collect();
    want.extend(
        KINDS
            .iter()
            .map(|k| format!("vcan0 {}", k.parse::<canmc::CanFrame>().unwrap())),
    );
    assert_eq!(lines, want);

    // .log -> .cmc -> .log is the identity on frames and timestamps.
    let again = dir.join("again.cmc");
    let back = dir.join("back.log");
    ok(&canmc(&["convert", s(&log), s(&again)]));
    ok(&canmc(&["convert", s(&again), s(&back)]));
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        std::fs::read_to_string(&back).unwrap()
    );

    // replay onto the group: a dump sees the same frames in the same order.
    let dump = spawn(&[
        "dump",
        "--iface",
        "lo",
        "--port",
        "42502",
        "-L",
        "-n",
        "18",
        "--duration",
        "10",
    ]);
    wait_until_answering("42502", &[dump.id()]);
    ok(&canmc(&[
        "replay",
        "--iface",
        "lo",
        "--port",
        "42502",
        s(&cap),
    ]));
    let out = dump.wait_with_output().unwrap();
    ok(&out);
    assert_eq!(frames_of_log(&String::from_utf8(out.stdout).unwrap()), want);
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn replay_keeps_time_and_filters() {
    let dir = tmpdir("timing");
    let log = dir.join("t.log");
    // 11 frames, 20 ms apart, then one more after a 5 s gap.
    let mut text = String::from("# a comment\n\n");
    for i in 0..11u64 {
        text.push_str(&format!(
            "(1700000000.{:06}) can0 1{:02X}#{:02X} R\n",
            i * 20_000,
            i,
            i
        ));
    }
    text.push_str("(1700000005.200000) can0 7FF#FF\n");
    std::fs::write(&log, text).unwrap();
    let dump = spawn(&[
        "dump",
        "--iface",
        "lo",
        "--port",
        "42503",
        "-L",
        "-n",
        "7",
        "--duration",
        "10",
    ]);
    wait_until_answering("42503", &[dump.id()]);
    let t = Instant::now();
    // Filter 100:7F1 keeps the even IDs 100-10A, 7FF:7FF keeps the last frame;
    // --skip-gaps shortens the 5 s gap before it to 0.1 s.
    let out = canmc(&[
        "replay",
        "--iface",
        "lo",
        "--port",
        "42503",
        "--skip-gaps",
        "0.1",
        "-f",
        "100:7F1",
        "-f",
        "7FF:7FF",
        s(&log),
    ]);
    let took = t.elapsed();
    ok(&out);
    let dumped = dump.wait_with_output().unwrap();
    ok(&dumped);
    let text = String::from_utf8(dumped.stdout).unwrap();
    let ids: Vec<String> = frames_of_log(&text)
        .iter()
        .map(|l| l.split(['#', ' ']).nth(1).unwrap().to_owned())
        .collect();
    assert_eq!(ids, ["100", "102", "104", "106", "108", "10A", "7FF"]);
    // 200 ms of frames + the gap cut to 100 ms; never the 5 s.
    assert!(
        took >= Duration::from_millis(280) && took < Duration::from_secs(3),
        "{took:?}"
    );
    // Inter-frame spacing kept: 40 ms between kept frames (receive-side timestamps).
    let ts: Vec<f64> = text
        .lines()
        .map(|l| l[1..l.find(')').unwrap()].parse().unwrap())
        .collect();
    for w in ts.windows(2).take(5) {
        let gap = w[1] - w[0];
        assert!((gap - 0.040).abs() < 0.005, "spacing {gap} in {ts:?}");
    }
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killed_recorder_leaves_an_in_order_prefix() {
    killed_recorder_leaves_an_in_order_prefix_of("pycan", "50000", "42504");
}

/// Native datagrams are recorded as frame batch records: killed mid-batch, mid-segment
/// or mid-rotation (1 MiB segments fill every few ms at this rate), the file still
/// holds an in-order prefix and never a torn batch.
#[test]
fn killed_native_recorder_leaves_an_in_order_prefix() {
    killed_recorder_leaves_an_in_order_prefix_of("native", "2000000", "42514");
}

fn killed_recorder_leaves_an_in_order_prefix_of(wire: &str, rate: &str, port: &str) {
    let dir = tmpdir(&format!("crash-{wire}"));
    // Incrementing data: each frame's payload is its sequence number.
    let gen = spawn(&[
        "gen",
        "--iface",
        "lo",
        "--port",
        port,
        "--wire",
        wire,
        "--rate",
        rate,
        "-I",
        "123",
        "-L",
        "8",
        "-D",
        "i",
        "-n",
        "1000000000",
    ]);
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15);
    let mut nonempty = 0;
    for round in 0..22 {
        let path = dir.join(format!("k{round}.cmc"));
        let mut rec = command(&[
            "record",
            "--iface",
            "lo",
            "--port",
            port,
            "-o",
            s(&path),
            "--segment-size",
            "1",
        ])
        .stdout(Stdio::null())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
        std::thread::sleep(Duration::from_millis(150 + rng.next() % 400));
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(rec.id() as i32, libc::SIGKILL) };
        rec.wait().unwrap();
        let recording = Recording::open(&path).unwrap_or_else(|e| panic!("round {round}: {e}"));
        let mut prev: Option<u64> = None;
        let mut n = 0;
        for r in recording.iter() {
            let Record::Frame(f) = r else { continue };
            assert_eq!(f.id(), 0x123, "round {round}: invented frame");
            let seq = u64::from_le_bytes(f.payload().try_into().expect("8 data bytes"));
            if let Some(p) = prev {
                assert_eq!(seq, p + 1, "round {round}: frame {n} out of sequence");
            }
            prev = Some(seq);
            n += 1;
        }
        if n > 0 {
            nonempty += 1;
        }
    }
    let mut gen = gen;
    let _ = gen.kill();
    let _ = gen.wait();
    assert!(
        nonempty >= 18,
        "only {nonempty} of 22 recordings held frames"
    );
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn killed_mf4_recorder_leaves_a_file_that_opens() {
    use canmc::convert::{read_events, FileFormat, ReadOptions};
    use canmc::Event;
    let dir = tmpdir("crash-mf4");
    let port = "42505";
    let gen = spawn(&[
        "gen",
        "--iface",
        "lo",
        "--port",
        port,
        "--rate",
        "20000",
        "-I",
        "123",
        "-L",
        "8",
        "-D",
        "i",
        "-n",
        "100000000",
    ]);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    for round in 0..5 {
        let path = dir.join(format!("k{round}.mf4"));
        let mut rec = command(&["record", "--iface", "lo", "--port", port, "-o", s(&path)])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap();
        // Past the first one-second index, at a random moment after it.
        std::thread::sleep(Duration::from_millis(1_300 + rng.next() % 1_200));
        // SAFETY: plain kill(2) on our own child's pid.
        unsafe { libc::kill(rec.id() as i32, libc::SIGKILL) };
        rec.wait().unwrap();
        let mut prev: Option<u64> = None;
        let mut n = 0u64;
        let stats = read_events(&path, FileFormat::Mf4, ReadOptions::default(), &mut |e| {
            if let Event::Frame(f) = e {
                assert_eq!(f.id, 0x123, "round {round}: invented frame");
                let seq = u64::from_le_bytes(f.payload().try_into().expect("8 data bytes"));
                if let Some(p) = prev {
                    assert_eq!(seq, p + 1, "round {round}: frame {n} out of sequence");
                }
                prev = Some(seq);
                n += 1;
            }
            true
        })
        .unwrap_or_else(|e| panic!("round {round}: {e}"));
        assert!(
            stats.problem().is_none(),
            "round {round}: {:?}",
            stats.problem()
        );
        // At 20 000 frames/s, at least the first second's frames are indexed.
        assert!(
            n >= 10_000,
            "round {round}: only {n} frames in the killed recording"
        );
    }
    let mut gen = gen;
    let _ = gen.kill();
    let _ = gen.wait();
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn bad_files_and_paths_get_one_clear_line() {
    let dir = tmpdir("bad");
    let bad_log = dir.join("bad.log");
    std::fs::write(
        &bad_log,
        "(1.0) can0 123#00\n(2.0) can0 800#00\n(3.0) can0 124#01\n",
    )
    .unwrap();
    let cases: Vec<(Vec<String>, i32, &str)> = vec![
        (
            vec!["info".into(), dir.join("missing.cmc").display().to_string()],
            1,
            "no such file",
        ),
        (
            vec!["info".into(), dir.join("x.txt").display().to_string()],
            2,
            "unknown extension",
        ),
        (
            vec![
                "replay".into(),
                "--iface".into(),
                "lo".into(),
                dir.join("missing.log").display().to_string(),
            ],
            1,
            "no such file",
        ),
        (
            vec![
                "convert".into(),
                bad_log.display().to_string(),
                dir.join("o.cmc").display().to_string(),
            ],
            1,
            "bad.log:2:",
        ),
        (
            vec![
                "record".into(),
                "--iface".into(),
                "lo".into(),
                "-o".into(),
                "/nonexistent-dir/x.cmc".into(),
                "--duration".into(),
                "1".into(),
            ],
            1,
            "/nonexistent-dir/x.cmc",
        ),
        (
            vec![
                "record".into(),
                "--iface".into(),
                "lo".into(),
                "-o".into(),
                dir.join("x.mp3").display().to_string(),
            ],
            2,
            "unknown extension",
        ),
    ];
    for (args, code, needle) in cases {
        let args: Vec<&str> = args.iter().map(String::as_str).collect();
        let out = canmc(&args);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(code), "{args:?}: {err}");
        assert_eq!(err.lines().count(), 1, "{args:?}: one line, got {err}");
        assert!(err.contains(needle), "{args:?}: {err}");
        assert!(!err.contains("panicked"));
    }
    // --skip-bad keeps the rest.
    let out_cmc = dir.join("skip.cmc");
    ok(&canmc(&["convert", "--skip-bad", s(&bad_log), s(&out_cmc)]));
    let info = canmc(&["info", s(&out_cmc), "--json"]);
    assert!(String::from_utf8_lossy(&info.stdout).contains("\"frames\":2"));
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn corrupt_recording_is_read_up_to_the_damage_and_the_exit_says_so() {
    let dir = tmpdir("corrupt");
    let log = dir.join("in.log");
    let lines: Vec<String> = (0..2000u64)
        .map(|i| {
            format!(
                "({}.{:06}) can0 123#{:016X}",
                1_700_000_000 + i / 100,
                i % 100 * 10_000,
                i
            )
        })
        .collect();
    std::fs::write(&log, lines.join("\n") + "\n").unwrap();
    let cmc = dir.join("r.cmc");
    ok(&canmc(&["convert", s(&log), s(&cmc)]));
    // One flipped bit in the middle of the records: a checksum mismatch there.
    let mut bytes = std::fs::read(&cmc).unwrap();
    let at = bytes.len() / 2;
    bytes[at] ^= 0x10;
    std::fs::write(&cmc, &bytes).unwrap();

    let info = canmc(&["info", s(&cmc)]);
    let err = String::from_utf8_lossy(&info.stderr);
    assert_eq!(info.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(
        err.contains("r.cmc") && err.contains("corrupt record"),
        "{err}"
    );
    let text = String::from_utf8_lossy(&info.stdout);
    assert!(text.contains("end        corrupt"), "{text}");

    let out = dir.join("out.log");
    let conv = canmc(&["convert", s(&cmc), s(&out)]);
    let err = String::from_utf8_lossy(&conv.stderr);
    assert_eq!(conv.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("r.cmc") && err.contains("out.log"), "{err}");
    // The output is the exact prefix before the damaged record, and it says how long.
    let got: Vec<String> = std::fs::read_to_string(&out)
        .unwrap()
        .lines()
        .map(str::to_string)
        .collect();
    assert!(
        !got.is_empty() && got.len() < lines.len(),
        "{} lines",
        got.len()
    );
    assert!(
        err.contains(&format!("after {} events", got.len())),
        "{err}"
    );
    for (g, want) in got.iter().zip(&lines) {
        assert_eq!(g, want);
    }
    let _ = std::fs::remove_dir_all(&dir);
}
