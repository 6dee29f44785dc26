//! Faults injected into running `canmc` processes, each in a private network namespace
//! (`tools/netlab.sh run`; IPv4 on `lo` with TTL 0, IPv6 on the lab's veth `v0`):
//!
//! - a receiver (`record`, `dump`) SIGKILLed and restarted mid-stream: the killed
//!   recording opens with an in-order prefix, the restarted receivers get the rest with no
//!   gap counted at their start;
//! - a sender SIGKILLed mid-stream: the receiver carries on, nothing invented, a second
//!   sender is counted as a new sender;
//! - the interface taken down and up under a sender and a receiver (IPv6 on a veth,
//!   IPv4 on `lo`): senders ride the outage out and count what they could not send;
//! - a recording truncated under a running `replay`;
//! - `record` into a directory it cannot write.
//!
//! Every script runs under the lab's `timeout` (120 s, which signals the whole process
//! group), and foreground steps under shorter ones, so a hang is a failure, not a stuck
//! CI job. Processes the scripts signal themselves are not wrapped in `timeout`: a
//! SIGKILL would reach `timeout`, not `canmc`.
//!
//! The tests pace traffic and count kernel drops: one at a time (`serial()`) on a small
//! machine.

use crate::common;
use crate::lab;

use std::path::Path;
use std::process::Command;

use canmc::record::{Record, Recording};
use common::{canmc, json_u64, ok, serial, tmpdir, CANMC};
use lab::Lab;

/// The last JSON line of a file the script wrote.
#[track_caller]
fn summary(lab: &Lab, file: &str) -> String {
    lab.read(file)
        .lines()
        .rfind(|l| l.starts_with('{'))
        .unwrap_or_else(|| panic!("no summary in {file}: {:?}", lab.read(file)))
        .to_owned()
}

/// The sequence numbers (8-byte little-endian payloads, `gen -L 8 -D i`) of the frames
/// with `id` in a recording, in file order.
fn seqs_in(path: &Path, id: u32) -> Vec<u64> {
    let rec = Recording::open(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    let mut out = Vec::new();
    for r in rec.iter() {
        if let Record::Frame(f) = r {
            assert_eq!(f.id(), id, "{}: invented frame", path.display());
            out.push(u64::from_le_bytes(
                f.payload().try_into().expect("8 data bytes"),
            ));
        }
    }
    out
}

/// Sequence numbers of `dump -L` lines `(ts) vcan0 123#<8 bytes LE>`.
fn seqs_in_log(text: &str) -> Vec<u64> {
    text.lines()
        .filter(|l| l.starts_with('('))
        .map(|l| {
            let hex = l.rsplit_once('#').expect("ID#DATA").1;
            let bytes: Vec<u8> = (0..hex.len())
                .step_by(2)
                .map(|i| u8::from_str_radix(&hex[i..i + 2], 16).unwrap())
                .collect();
            u64::from_le_bytes(bytes.try_into().expect("8 data bytes"))
        })
        .collect()
}

#[track_caller]
fn assert_consecutive(what: &str, s: &[u64]) {
    for (i, w) in s.windows(2).enumerate() {
        assert_eq!(w[1], w[0] + 1, "{what}: frame {} out of sequence", i + 1);
    }
}

#[test]
fn receiver_killed_and_restarted_gets_the_rest_without_a_bogus_gap() {
    let _g = serial();
    let lab = Lab::new(CANMC, "rx-restart");
    // 100 000 native frames at 40 000/s (2.5 s); the first record and dump are killed
    // after 0.8 s, their successors start at once and run to the end.
    lab.run_no_python(
        r#"
P=43113
"$CANMC" record --iface lo --port $P -o "$T/a.cmc" --segment-size 1 >/dev/null 2>&1 &
RA=$!
"$CANMC" dump --iface lo --port $P -L >"$T/a.log" 2>/dev/null &
DA=$!
wait_udp $P
"$CANMC" gen --iface lo --port $P --wire native --rate 40000 -n 100000 \
    -I 123 -L 8 -D i --json >"$T/gen.json" &
G=$!
sleep 0.8
kill -KILL $RA $DA
wait $RA $DA || true
"$CANMC" record --iface lo --port $P -o "$T/b.cmc" --json >"$T/b.json" 2>"$T/b.err" &
RB=$!
"$CANMC" dump --iface lo --port $P -L --json >"$T/b.log" 2>"$T/bd.err" &
DB=$!
wait $G
sleep 0.5
kill -TERM $RB $DB
wait $RB
wait $DB
"#,
    )
    .assert_ok();
    let gen = summary(&lab, "gen.json");
    let sent = json_u64(&gen, "frames");
    assert_eq!(sent, 100_000, "{gen}");

    // The killed recorder's file opens and holds an in-order prefix from frame 0.
    let a = seqs_in(&lab.dir().join("a.cmc"), 0x123);
    assert!(!a.is_empty(), "the killed recording holds frames");
    assert_eq!(a[0], 0, "the first recorder saw the stream from its start");
    assert_consecutive("killed recording", &a);
    assert!(
        *a.last().unwrap() < sent - 1,
        "killed before the end: last {}",
        a.last().unwrap()
    );
    let a_dump = seqs_in_log(&lab.read("a.log"));
    assert_consecutive("killed dump", &a_dump);

    // The restarted recorder: the rest of the stream, in order, to the last frame, with
    // no gap counted for the part it never saw.
    let b_sum = summary(&lab, "b.json");
    let b = seqs_in(&lab.dir().join("b.cmc"), 0x123);
    assert!(!b.is_empty(), "restarted recorder got frames: {b_sum}");
    assert!(b[0] > a[0], "started mid-stream: first {}", b[0]);
    assert_consecutive("restarted recording", &b);
    assert_eq!(*b.last().unwrap(), sent - 1, "got the rest: {b_sum}");
    for (key, want) in [
        ("seq_gaps", 0),
        ("kernel_drops", 0),
        ("decode_errors_total", 0),
        ("duplicates", 0),
        ("senders", 1),
    ] {
        assert_eq!(
            json_u64(&b_sum, key),
            want,
            "restarted record {key}: {b_sum}"
        );
    }
    assert_eq!(json_u64(&b_sum, "frames"), b.len() as u64, "{b_sum}");

    // The restarted dump likewise.
    let b_log = lab.read("b.log");
    let d_sum = summary(&lab, "b.log");
    let d = seqs_in_log(&b_log);
    assert!(
        !d.is_empty() && d[0] > 0,
        "dump started mid-stream: {d_sum}"
    );
    assert_consecutive("restarted dump", &d);
    assert_eq!(*d.last().unwrap(), sent - 1, "{d_sum}");
    assert_eq!(json_u64(&d_sum, "seq_gaps"), 0, "restarted dump: {d_sum}");
    assert_eq!(json_u64(&d_sum, "kernel_drops"), 0, "{d_sum}");
    assert_eq!(json_u64(&d_sum, "frames"), d.len() as u64, "{d_sum}");
}

#[test]
fn sender_killed_mid_stream_receiver_goes_on_and_counts_a_new_sender() {
    let _g = serial();
    let lab = Lab::new(CANMC, "tx-kill");
    lab.run_no_python(
        r#"
P=43113
"$CANMC" record --iface lo --port $P -o "$T/r.cmc" --json >"$T/r.json" 2>"$T/r.err" &
R=$!
wait_udp $P
"$CANMC" gen --iface lo --port $P --wire native --rate 40000 -I 123 -L 8 -D i \
    >/dev/null 2>&1 &
G1=$!
sleep 0.7
kill -KILL $G1
wait $G1 || true
sleep 0.3
kill -0 $R # the receiver is still running
timeout 20 "$CANMC" gen --iface lo --port $P --wire native --rate 40000 -n 20000 \
    -I 124 -L 8 -D i --json >"$T/g2.json"
sleep 0.5
kill -TERM $R
wait $R
"#,
    )
    .assert_ok();
    let sum = summary(&lab, "r.json");
    assert!(lab.read("r.err").is_empty(), "{}", lab.read("r.err"));
    for (key, want) in [
        ("senders", 2),
        ("seq_gaps", 0),
        ("kernel_drops", 0),
        ("decode_errors_total", 0),
        ("duplicates", 0),
        ("reordered", 0),
    ] {
        assert_eq!(json_u64(&sum, key), want, "{key}: {sum}");
    }
    // File order: the killed sender's frames (a prefix from 0, nothing invented, nothing
    // after its death), then all of the second sender's.
    let rec = Recording::open(lab.dir().join("r.cmc")).unwrap();
    let (mut first, mut second) = (Vec::new(), Vec::new());
    for r in rec.iter() {
        if let Record::Frame(f) = r {
            let seq = u64::from_le_bytes(f.payload().try_into().expect("8 data bytes"));
            match f.id() {
                0x123 => {
                    assert!(
                        second.is_empty(),
                        "a frame of the killed sender after its death"
                    );
                    first.push(seq)
                }
                0x124 => second.push(seq),
                id => panic!("invented frame with id {id:X}"),
            }
        }
    }
    assert!(first.len() > 1000, "{} frames before the kill", first.len());
    assert_eq!(first[0], 0);
    assert_consecutive("killed sender", &first);
    assert_eq!(second.len(), 20_000, "all of the second sender's frames");
    assert_consecutive("second sender", &second);
    assert_eq!(second[0], 0);
    assert_eq!(
        json_u64(&sum, "frames"),
        (first.len() + second.len()) as u64
    );
}

/// The largest gap between consecutive `-L` lines of `id`, in seconds, and how many
/// lines follow it.
fn largest_gap(log: &str, id: &str) -> (f64, usize) {
    let times: Vec<f64> = log
        .lines()
        .filter(|l| l.contains(id))
        .filter_map(|l| l.strip_prefix('(')?.split(')').next()?.parse().ok())
        .collect();
    let mut best = (0.0, 0);
    for (k, w) in times.windows(2).enumerate() {
        if w[1] - w[0] > best.0 {
            best = (w[1] - w[0], times.len() - (k + 2));
        }
    }
    best
}

#[test]
fn interface_down_and_up_receiver_survives_and_receives_again() {
    let _g = serial();
    let lab = Lab::new(CANMC, "ifdown");
    // IPv6 on the lab's veth v0: a dump and a paced native gen (3 s), v0 down for 1 s,
    // up again, then a second gen.
    let run = lab.run_no_python(
        r#"
P=43113
"$CANMC" dump --iface v0 --port $P -L --json >"$T/d.log" 2>"$T/d.err" &
D=$!
wait_udp $P
set +e
"$CANMC" gen --iface v0 --port $P --wire native --rate 2000 -n 6000 -I 123 -L 8 -D i \
    --json >"$T/g1.json" 2>"$T/g1.err" &
G1=$!
sleep 0.7
ip link set v0 down
sleep 1
ip -6 addr show dev v0 >"$T/addr-down.txt"
ip link set v0 up
# Link down flushes v0's IPv6 addresses (keep_addr_on_down is 0); put ours back, as the
# network configuration would. Without it a new sender gets EADDRNOTAVAIL.
ip -6 addr add fd00::1/64 dev v0 nodad
wait $G1
echo "gen1_rc=$?"
kill -0 $D || { echo "dump died"; exit 1; }
timeout 10 "$CANMC" gen --iface v0 --port $P --rate 2000 -n 1000 -I 124 -L 8 -D i --json \
    >"$T/g2.json" 2>"$T/g2.err"
echo "gen2_rc=$?"
sleep 0.5
kill -0 $D || { echo "dump died"; exit 1; }
kill -TERM $D
wait $D
echo "dump_rc=$?"
"#,
    );
    run.assert_ok();
    let out = &run.stdout;
    eprintln!("{out}\ngen1 stderr: {}", lab.read("g1.err"));
    assert!(
        out.contains("dump_rc=0"),
        "the receiver exits cleanly: {out}"
    );
    assert!(
        !lab.read("d.err").contains("panicked"),
        "{}",
        lab.read("d.err")
    );
    // The running sender rode the outage out: one line when it began, one when it
    // ended, every discarded datagram counted, and the receiver's gap is exactly that.
    assert!(out.contains("gen1_rc=0"), "{out} {}", lab.read("g1.err"));
    let g1_err = lab.read("g1.err");
    let lines: Vec<&str> = g1_err.lines().collect();
    assert_eq!(lines.len(), 2, "{g1_err}");
    assert!(lines[0].contains("cannot reach the group"), "{g1_err}");
    assert!(lines[1].contains("sending again after"), "{g1_err}");
    let g1 = summary(&lab, "g1.json");
    assert_eq!(json_u64(&g1, "outages"), 1, "{g1}");
    let unsent = json_u64(&g1, "unsent");
    assert!(unsent > 0, "{g1}");
    let text = lab.read("d.log");
    let (gap, after_gap) = largest_gap(&text, " 123#");
    assert!(gap > 0.9, "the outage shows as a gap of {gap} s");
    assert!(
        after_gap > 500,
        "gen1 kept sending after it: {after_gap} frames"
    );
    // After the interface is back, a new sender's frames all arrive.
    assert!(out.contains("gen2_rc=0"), "{out} {}", lab.read("g2.err"));
    let after: Vec<&str> = text.lines().filter(|l| l.contains(" 124#")).collect();
    assert_eq!(after.len(), 1000, "frames after the interface came back");
    let d_sum = summary(&lab, "d.log");
    assert_eq!(json_u64(&d_sum, "decode_errors_total"), 0, "{d_sum}");
    assert_eq!(
        json_u64(&d_sum, "seq_gaps"),
        unsent,
        "gaps = unsent: {d_sum}\n{g1}"
    );
}

#[test]
fn loopback_down_and_up_under_replay_and_gen() {
    let _g = serial();
    let lab = Lab::new(CANMC, "lodown");
    // 40 000 frames over 2 s of original time.
    let mut text = String::with_capacity(40_000 * 40);
    for i in 0..40_000u64 {
        text.push_str(&format!(
            "({}.{:06}) can0 321#{:016X}\n",
            1_700_000_000 + i / 20_000,
            i % 20_000 * 50,
            i
        ));
    }
    std::fs::write(lab.dir().join("src.log"), text).unwrap();
    // IPv4 on lo: replay (riding the outage out) and gen --stop-on-error (exiting on
    // it) while lo is down for 0.5 s.
    let run = lab.run_no_python(
        r#"
P=43114
"$CANMC" dump --iface lo --port $P -L --json >"$T/d.log" 2>"$T/d.err" &
D=$!
wait_udp $P
set +e
"$CANMC" replay --iface lo --port $P --wire native "$T/src.log" --json \
    >"$T/r.json" 2>"$T/r.err" &
R=$!
"$CANMC" gen --iface lo --port 43115 --rate 1000 --stop-on-error --json \
    >"$T/g.json" 2>"$T/g.err" &
G=$!
sleep 0.6
ip link set lo down
sleep 0.5
ip link set lo up
wait $R
echo "replay_rc=$?"
wait $G
echo "gen_rc=$?"
sleep 0.3
kill -0 $D || { echo "dump died"; exit 1; }
kill -TERM $D
wait $D
echo "dump_rc=$?"
"#,
    );
    run.assert_ok();
    let out = &run.stdout;
    eprintln!(
        "{out}\nreplay: {}\ngen: {}",
        lab.read("r.err"),
        lab.read("g.err")
    );
    assert!(out.contains("replay_rc=0"), "{out} {}", lab.read("r.err"));
    let r_err = lab.read("r.err");
    let lines: Vec<&str> = r_err.lines().collect();
    assert_eq!(lines.len(), 2, "{r_err}");
    assert!(
        lines[0].contains("cannot reach the group: Network is unreachable"),
        "{r_err}"
    );
    assert!(lines[1].contains("sending again after"), "{r_err}");
    let r = summary(&lab, "r.json");
    assert_eq!(json_u64(&r, "frames"), 40_000, "{r}");
    assert_eq!(json_u64(&r, "outages"), 1, "{r}");
    let unsent = json_u64(&r, "unsent");
    assert!(unsent > 0, "{r}");
    // --stop-on-error: one line, exit 1.
    assert!(out.contains("gen_rc=1"), "{out}");
    let g_err = lab.read("g.err");
    assert_eq!(g_err.lines().count(), 1, "{g_err}");
    assert!(
        g_err.contains("send failed: Network is unreachable"),
        "{g_err}"
    );
    // The receiver survived, got every datagram that was sent, and counted the
    // discarded ones as its sequence gap.
    assert!(out.contains("dump_rc=0"), "{out}");
    let d = summary(&lab, "d.log");
    assert_eq!(
        json_u64(&d, "datagrams"),
        json_u64(&r, "datagrams"),
        "{d}\n{r}"
    );
    assert_eq!(json_u64(&d, "seq_gaps"), unsent, "{d}\n{r}");
    assert_eq!(json_u64(&d, "decode_errors_total"), 0, "{d}");
    let (gap, after_gap) = largest_gap(&lab.read("d.log"), " 321#");
    assert!(gap > 0.4, "the outage shows as a gap of {gap} s");
    assert!(
        after_gap > 5_000,
        "replay went on after it: {after_gap} frames"
    );
}

#[test]
fn recording_truncated_under_a_running_replay_is_an_error_not_a_crash() {
    let _g = serial();
    let lab = Lab::new(CANMC, "trunc-replay");
    // 100 000 frames over 4 s of original time: a 3.2 MB single-segment recording.
    let log = lab.dir().join("src.log");
    let mut text = String::with_capacity(100_000 * 40);
    for i in 0..100_000u64 {
        let us = i * 40;
        text.push_str(&format!(
            "(1700000000.{:06}) can0 123#{:016X}\n",
            us,
            i.swap_bytes()
        ));
    }
    std::fs::write(&log, text).unwrap();
    let cmc = lab.dir().join("r.cmc");
    ok(&canmc(&[
        "convert",
        log.to_str().unwrap(),
        cmc.to_str().unwrap(),
    ]));
    let run = lab.run_no_python(
        r#"
P=43113
set +e
"$CANMC" dump --iface lo --port $P -q --json >"$T/d.json" 2>/dev/null &
D=$!
wait_udp $P
"$CANMC" replay --iface lo --port $P "$T/r.cmc" >"$T/replay.out" 2>"$T/replay.err" &
R=$!
sleep 1
truncate -s 70000 "$T/r.cmc"
wait $R
echo "replay_rc=$?"
kill -TERM $D
wait $D
"#,
    );
    run.assert_ok();
    let out = &run.stdout;
    let err = lab.read("replay.err");
    eprintln!("{out}\nreplay stderr: {err}");
    let rc: i32 = out
        .lines()
        .find_map(|l| l.strip_prefix("replay_rc="))
        .expect("replay_rc")
        .parse()
        .unwrap();
    assert_ne!(rc, 128 + libc::SIGBUS, "replay died of SIGBUS: {err}");
    assert!(rc < 128, "replay killed by signal {}: {err}", rc - 128);
    assert!(!err.contains("panicked"), "{err}");
    // It stops at the cut with one line naming the file and what happened; it never
    // sends a frame that was not in the file.
    assert_eq!(rc, 1, "{err}");
    assert_eq!(err.lines().count(), 1, "{err}");
    assert!(err.contains("r.cmc"), "{err}");
    assert!(err.contains("shrank while it was read"), "{err}");
    let before_cut: u64 = err
        .split("after ")
        .nth(1)
        .and_then(|t| t.split(' ').next())
        .and_then(|n| n.parse().ok())
        .unwrap_or_else(|| panic!("no event count in: {err}"));
    let d = summary(&lab, "d.json");
    assert_eq!(json_u64(&d, "decode_errors_total"), 0, "{d}");
    assert!(
        json_u64(&d, "frames") < 100_000,
        "the truncation cut it short: {d}"
    );
    assert_eq!(
        json_u64(&d, "frames"),
        before_cut,
        "every frame before the cut went out, and none after it: {d}"
    );
}

#[test]
fn record_into_an_unwritable_directory_one_line_nothing_left() {
    let _g = serial();
    let dir = tmpdir("faults-ro");
    std::fs::create_dir_all(dir.join("ro")).unwrap();
    // A read-only bind mount in a private mount namespace: root is refused too (chmod
    // 555 would not stop root). Each format, and a path under /proc.
    let script = format!(
        r#"set -e
mount --bind "{d}/ro" "{d}/ro"
mount -o remount,bind,ro "{d}/ro"
for f in x.cmc x.log x.pcapng x.asc; do
    set +e
    timeout 10 "{canmc}" record --iface lo --port 43191 -o "{d}/ro/$f" --duration 1 2>"{d}/err-$f"
    echo "$f rc=$?"
    set -e
done
set +e
timeout 10 "{canmc}" record --iface lo --port 43191 -o /proc/canmc-x.cmc --duration 1 2>"{d}/err-proc"
echo "proc rc=$?"
"#,
        d = dir.display(),
        canmc = CANMC
    );
    let out = Command::new("timeout")
        .args([
            "60",
            "unshare",
            "-m",
            "--propagation",
            "private",
            "sh",
            "-c",
        ])
        .arg(&script)
        .output()
        .expect("unshare -m (needs root)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    for (f, err_file, needle) in [
        ("x.cmc", "err-x.cmc", "ro/x.cmc"),
        ("x.log", "err-x.log", "ro/x.log"),
        ("x.pcapng", "err-x.pcapng", "ro/x.pcapng"),
        ("x.asc", "err-x.asc", "ro/x.asc"),
        ("proc", "err-proc", "/proc/canmc-x.cmc"),
    ] {
        let err = std::fs::read_to_string(dir.join(err_file)).unwrap();
        assert!(text.contains(&format!("{f} rc=1")), "{f}: {text} {err}");
        assert_eq!(err.lines().count(), 1, "{f}: one line: {err:?}");
        assert!(err.contains(needle), "{f}: names the file: {err}");
        assert!(!err.contains("panicked"), "{err}");
    }
    // Nothing partial: the directory is empty (the mount is gone, so this is the real
    // directory; a file created before the mount went read-only would show here).
    let left: Vec<_> = std::fs::read_dir(dir.join("ro")).unwrap().collect();
    assert!(left.is_empty(), "left behind: {left:?}");
    let _ = std::fs::remove_dir_all(&dir);
}
