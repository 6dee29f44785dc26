//! Interop of capture and replay with real python-can (issue 5 item 7), inside the network
//! lab: python-can's own player (`python -m can.player -i udp_multicast`) plays a candump
//! log that `canmc record` captures and `canmc convert` turns back into the same frames;
//! and `canmc replay` of a log (timed, and `--fast` from a `.cmc`) reaches a python-can
//! receiver as the same sequence with nothing raised. The log holds every frame kind
//! python-can's `udp_multicast` carries: standard, extended, remote with and without a
//! length, error, and CAN FD at every length with every BRS/ESI combination.

use crate::common;
use crate::lab;

use common::{canmc, json_field, nonempty_lines, ok, stdout_of, CANMC};
use lab::{pycan_kinds, python, repo, split_log_line, Lab};
use std::process::Command;

const PORT: u16 = 43113;
const GROUP: &str = "239.74.163.2";

/// A candump log of every kind (`IFNAME ID#DATA` lines of the python peer), 2 ms apart.
fn kinds_log() -> (String, Vec<String>) {
    let kinds = pycan_kinds();
    assert!(
        kinds.len() > 50,
        "the peer's kind list is too short: {kinds:?}"
    );
    let mut text = String::new();
    for (i, k) in kinds.iter().enumerate() {
        let us = 1_700_000_000_000_000u64 + i as u64 * 2_000;
        text.push_str(&format!("({}.{:06}) {k}\n", us / 1_000_000, us % 1_000_000));
    }
    (text, kinds)
}

/// What python-can itself makes of a candump log: each message `can.LogReader` yields,
/// printed as the peer prints received messages. (python-can's reader keeps an error
/// frame only when the bus-error class bit 0x80 is set, and then without ID, data or
/// channel; canmc must carry exactly what python-can sent, so this is the reference.)
fn pycan_reads(log: &std::path::Path) -> Vec<String> {
    let script = "import sys, can\n\
                  sys.path.insert(0, sys.argv[1])\n\
                  from pycan_peer import to_line\n\
                  for m in can.LogReader(sys.argv[2]):\n    print(to_line(m))\n";
    let what = format!("python-can's LogReader on {}", log.display());
    stdout_of(
        Command::new(python())
            .args(["-c", script])
            .arg(repo().join("tools"))
            .arg(log),
        &what,
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

/// The `IFNAME ID#DATA` part of every line of a candump log, checking each has a
/// well-formed timestamp and that they never go backwards.
fn log_bodies(text: &str) -> Vec<String> {
    let mut last = 0.0;
    nonempty_lines(text)
        .iter()
        .enumerate()
        .map(|(i, l)| {
            let (ts, rest) = split_log_line(l)
                .unwrap_or_else(|| panic!("line {i} is not `(secs.micros) IF ID#DATA`: {l:?}"));
            assert!(ts >= last, "line {i} goes back in time: {l:?}");
            last = ts;
            rest.to_owned()
        })
        .collect()
}

/// Panics with the first difference between two frame sequences.
#[track_caller]
fn assert_same(got: &[String], want: &[String], what: &str) {
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert_eq!(g, w, "{what}: frame {i} differs");
    }
    assert_eq!(
        got.len(),
        want.len(),
        "{what}: {} frames, expected {}",
        got.len(),
        want.len()
    );
}

#[test]
fn pycan_player_to_canmc_record_and_convert() {
    let lab = Lab::new(CANMC, "pycan-player-record");
    let (text, _) = kinds_log();
    let log = lab.dir().join("in.log");
    std::fs::write(&log, text).unwrap();
    let want = pycan_reads(&log);
    assert!(
        want.iter().any(|l| l.contains(" 20000000#")),
        "python-can's reader dropped every error frame; the test would not cover them"
    );
    assert!(want.iter().any(|l| l.contains("#R")), "no remote frame");
    assert!(
        want.iter().any(|l| l.contains("##7")),
        "no FD frame with BRS+ESI"
    );
    assert!(
        want.iter().any(|l| l.contains("##4")),
        "no FD frame without BRS/ESI"
    );
    let n = want.len();
    let run = lab.run(&format!(
        r#"
        "$CANMC" record --iface lo --port {PORT} -o "$T/x.cmc" -n {n} --duration 30 --json \
            >"$T/rec.json" 2>"$T/rec.err" &
        R=$!
        wait_udp {PORT}
        "$PY" -m can.player -i udp_multicast -c {GROUP} --error-frames "$T/in.log" \
            >"$T/player.out" 2>"$T/player.err"
        rc=0; wait $R || rc=$?
        [[ $rc == 0 ]] || {{ echo "record exit $rc" >&2; cat "$T/rec.err" >&2; exit 1; }}
        "$CANMC" convert "$T/x.cmc" "$T/y.log"
        "#
    ));
    lab.assert_ok(&run, &["player.err", "rec.json", "rec.err"]);
    let summary = lab.read("rec.json");
    let summary = nonempty_lines(&summary).last().copied().unwrap_or("");
    assert_eq!(
        json_field(summary, "frames"),
        Some(&*n.to_string()),
        "{summary}"
    );
    assert_eq!(
        json_field(summary, "decode_errors_total"),
        Some("0"),
        "{summary}"
    );
    let got = log_bodies(&lab.read("y.log"));
    assert_same(&got, &want, "canmc convert of canmc record of can.player");
}

/// `canmc replay FILE` with `extra` options, a python-can receiver counting `want.len()`
/// messages; returns what it printed for each, as `IFNAME ID#DATA`.
fn replay_to_pycan(lab: &Lab, file: &str, extra: &str, n: usize) -> Vec<String> {
    let run = lab.run(&format!(
        r#"
        "$PY" "$PEER" recv --group {GROUP} --port {PORT} --count {n} --timeout 30 \
            --linger 0.5 --ready-file "$T/ready" >"$T/recv.out" 2>"$T/recv.err" &
        P=$!
        wait_file "$T/ready"
        wait_udp {PORT}
        "$CANMC" replay --iface lo --port {PORT} {extra} --json "$T/{file}" \
            >"$T/replay.json" 2>"$T/replay.err" || {{ cat "$T/replay.err" >&2; exit 1; }}
        rc=0; wait $P || rc=$?
        [[ $rc == 0 ]] || {{ echo "python-can receiver exit $rc" >&2; cat "$T/recv.err" >&2; exit 1; }}
        "#
    ));
    lab.assert_ok(&run, &["replay.json", "replay.err", "recv.out"]);
    let summary = lab.read("replay.json");
    let summary = nonempty_lines(&summary).last().copied().unwrap_or("");
    assert_eq!(
        json_field(summary, "frames"),
        Some(&*n.to_string()),
        "{summary}"
    );
    nonempty_lines(&lab.read("recv.out"))
        .iter()
        .map(|l| {
            let line = json_field(l, "line").unwrap_or_else(|| panic!("no line in {l}"));
            line.trim_matches('"').to_owned()
        })
        .collect()
}

#[test]
fn canmc_replay_of_log_to_pycan_receiver() {
    let lab = Lab::new(CANMC, "replay-log-pycan");
    let (text, kinds) = kinds_log();
    std::fs::write(lab.dir().join("in.log"), text).unwrap();
    let got = replay_to_pycan(&lab, "in.log", "", kinds.len());
    assert_same(
        &got,
        &kinds,
        "python-can received from canmc replay of a .log",
    );
}

#[test]
fn canmc_replay_fast_of_cmc_to_pycan_receiver() {
    let lab = Lab::new(CANMC, "replay-cmc-pycan");
    let (text, kinds) = kinds_log();
    std::fs::write(lab.dir().join("in.log"), text).unwrap();
    let (log, cmc) = (lab.dir().join("in.log"), lab.dir().join("in.cmc"));
    ok(&canmc(&[
        "convert",
        log.to_str().unwrap(),
        cmc.to_str().unwrap(),
    ]));
    let got = replay_to_pycan(&lab, "in.cmc", "--fast", kinds.len());
    assert_same(
        &got,
        &kinds,
        "python-can received from canmc replay --fast of a .cmc",
    );
}
