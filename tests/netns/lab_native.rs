//! The native format and `ping` between several hosts (SPEC §2.2, §8 ping, §9): network
//! namespaces on a bridge (`tools/netlab.sh hosts N`), a real `canmc` process on each.
//!
//! - `ping` lists exactly the answering receivers on the other hosts (IPv4 and IPv6), with
//!   their real pids, and exits 1 when nobody answers;
//! - two native senders reach two receivers completely, in per-sender order, and each
//!   frame is attributed to its sender's address (`--source`);
//! - losses injected by an nftables rule on the receiving host are counted exactly as
//!   `seq_gaps`, and the frames missing are exactly those of the dropped datagrams;
//! - python-can-format and native traffic share one group and one `canmc dump`.
//!
//! Every count assertion is paired with `kernel_drops == 0`: a kernel drop would make an
//! exact count meaningless, so senders are paced well below what a receiver handles.
//! The tests here pace traffic and count kernel drops; running two at once on a small
//! machine would only test the scheduler: one at a time (`serial()`).

use crate::common;
use crate::lab;

use std::collections::BTreeMap;
use std::net::{IpAddr, SocketAddr};

use common::{json_str, json_u64, nonempty_lines, serial, CANMC};
use lab::{pycan_kinds, split_log_line, Lab};

const PORT: u16 = 43113;
const GROUP_V4: &str = "239.74.163.2";
const GROUP_V6: &str = "ff15:7079:7468:6f6e:6465:6d6f:6d63:6173";

/// A `dump -L --json` output: the log lines (`IFNAME ID#DATA`, timestamps checked and
/// removed) and the summary (the last line).
struct Dump {
    frames: Vec<String>,
    summary: String,
}

#[track_caller]
fn parse_dump(out: &str, who: &str) -> Dump {
    let mut lines = nonempty_lines(out);
    let summary = lines
        .pop()
        .unwrap_or_else(|| panic!("{who}: no output at all"))
        .to_owned();
    assert!(
        summary.starts_with('{') && summary.contains("\"command\":\"dump\""),
        "{who}: last line is not the JSON summary: {summary}"
    );
    let frames = lines
        .iter()
        .map(|l| {
            split_log_line(l)
                .unwrap_or_else(|| panic!("{who}: not a candump log line: {l}"))
                .1
                .to_owned()
        })
        .collect();
    Dump { frames, summary }
}

/// The log line (`IFNAME ID#DATA`) of frame `n` of `canmc gen -I i -L 8 -D i --channel CH`:
/// ID `n mod 0x800`, data the 64-bit little-endian counter `n`.
fn gen_line(channel: &str, n: u64) -> String {
    let data: String = n.to_le_bytes().iter().map(|b| format!("{b:02X}")).collect();
    format!("{channel} {:03X}#{data}", n % 0x800)
}

/// The counter `n` of a `gen_line` back, checking that the ID matches it.
#[track_caller]
fn gen_counter(line: &str) -> u64 {
    let (_, frame) = line.split_once(' ').expect("IFNAME ID#DATA");
    let (id, data) = frame.split_once('#').expect("ID#DATA");
    assert_eq!(data.len(), 16, "not an 8-byte gen frame: {line}");
    let mut bytes = [0u8; 8];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&data[2 * i..2 * i + 2], 16).expect("hex data");
    }
    let n = u64::from_le_bytes(bytes);
    assert_eq!(
        u32::from_str_radix(id, 16).expect("hex id") as u64,
        n % 0x800,
        "ID does not match the data counter: {line}"
    );
    n
}

#[track_caller]
fn assert_clean(sum: &str, who: &str) {
    assert_eq!(
        json_u64(sum, "kernel_drops"),
        0,
        "{who}: kernel drops: {sum}"
    );
    assert_eq!(json_u64(sum, "ring_drops"), 0, "{who}: ring drops: {sum}");
    assert_eq!(
        json_u64(sum, "decode_errors_total"),
        0,
        "{who}: decode errors: {sum}"
    );
}

// ---- ping -----------------------------------------------------------------------------

/// Hosts 2 and 3 run `canmc dump`, host 4 `canmc dump --no-answer`; host 1 sends three
/// frames (so the receivers have something to report) and then pings twice. Exactly
/// hosts 2 and 3 must answer, in both rounds, with their real pids.
fn ping_lists_the_receivers(name: &str, net: &str, host_ip: impl Fn(u32) -> IpAddr) {
    let _serial = serial();
    let lab = Lab::new(CANMC, name);
    let run = lab.run_hosts(
        4,
        &format!(
            r#"
            start_dump() {{  # host, extra options
                local h=$1; shift
                "$LAB_EXEC" $h sh -c 'echo $$ >"$T/pid'$h'"; exec "$@"' sh \
                    "$CANMC" dump {net} --port {PORT} --duration 30 "$@" \
                    >"$T/dump$h.out" 2>"$T/dump$h.err" &
                eval D$h=\$!
            }}
            start_dump 2; start_dump 3; start_dump 4 --no-answer
            for h in 2 3 4; do "$LAB_EXEC" $h bash -c "$(declare -f wait_udp); wait_udp {PORT}"; done
            "$LAB_EXEC" 1 timeout 10 "$CANMC" send {net} --port {PORT} 123#01 124#02 125#03
            sleep 0.3
            rc=0
            "$LAB_EXEC" 1 timeout 20 "$CANMC" ping {net} --port {PORT} -c 2 -W 1 --json \
                >"$T/ping.out" 2>"$T/ping.err" || rc=$?
            echo $rc >"$T/ping.rc"
            kill -TERM $D2 $D3 $D4
            wait $D2 $D3 $D4 || true
            "#
        ),
    );
    lab.assert_ok(&run, &["ping.err", "dump2.err", "dump3.err", "dump4.err"]);
    let ping = lab.read("ping.out");
    let ping_err = lab.read("ping.err");
    assert_eq!(
        lab.read("ping.rc").trim(),
        "0",
        "ping found receivers, so it must exit 0\n{ping}\n{ping_err}"
    );
    let hostname = std::fs::read_to_string("/proc/sys/kernel/hostname").unwrap();
    let mut seen: BTreeMap<(u64, IpAddr), String> = BTreeMap::new();
    for line in nonempty_lines(&ping) {
        let from: SocketAddr = json_str(line, "from")
            .parse()
            .unwrap_or_else(|_| panic!("\"from\" is not ip:port in {line}"));
        let round = json_u64(line, "round");
        let prev = seen.insert((round, from.ip()), line.to_owned());
        assert!(
            prev.is_none(),
            "two answers from {from} in round {round}:\n{ping}"
        );
    }
    let mut expected = Vec::new();
    for round in [1, 2] {
        for h in [2, 3] {
            expected.push((round, host_ip(h)));
        }
    }
    assert_eq!(
        seen.keys().cloned().collect::<Vec<_>>(),
        expected,
        "ping must list exactly hosts 2 and 3 (host 1 is the prober, host 4 runs --no-answer), \
         once per round:\n{ping}\n{ping_err}"
    );
    for ((round, ip), line) in &seen {
        let h = match ip {
            IpAddr::V4(a) => a.octets()[3],
            IpAddr::V6(a) => a.octets()[15],
        };
        let pid: u64 = lab.read(&format!("pid{h}")).trim().parse().unwrap();
        assert_eq!(
            json_u64(line, "pid"),
            pid,
            "round {round}: pid of host {h}: {line}"
        );
        assert_eq!(json_str(line, "role"), "dump", "{line}");
        assert_eq!(json_str(line, "host"), hostname.trim(), "{line}");
        assert_eq!(
            json_u64(line, "frames_seen"),
            3,
            "host {h} received the three frames host 1 sent: {line}"
        );
        assert!(json_u64(line, "rtt_us") > 0, "{line}");
        assert!(json_u64(line, "uptime_ms") > 0, "{line}");
    }
}

#[test]
fn ping_v4_lists_exactly_the_receivers_on_other_hosts() {
    ping_lists_the_receivers("ping-v4", &format!("--iface v0 --group {GROUP_V4}"), |h| {
        IpAddr::V4(std::net::Ipv4Addr::new(10, 77, 0, h as u8))
    });
}

#[test]
fn ping_v6_default_group_lists_exactly_the_receivers_on_other_hosts() {
    ping_lists_the_receivers("ping-v6", "--iface v0", |h| {
        IpAddr::V6(std::net::Ipv6Addr::new(0xfd77, 0, 0, 0, 0, 0, 0, h as u16))
    });
}

/// Nobody on the group, then only a `--no-answer` receiver: both times no answer line
/// and exit 1.
#[test]
fn ping_without_receivers_exits_1() {
    let _serial = serial();
    let lab = Lab::new(CANMC, "ping-none");
    let run = lab.run_hosts(
        2,
        &format!(
            r#"
            net="--iface v0 --group {GROUP_V4} --port {PORT}"
            rc=0; "$LAB_EXEC" 1 timeout 20 "$CANMC" ping $net -W 1 --json \
                >"$T/none.out" 2>"$T/none.err" || rc=$?
            echo $rc >"$T/none.rc"
            "$LAB_EXEC" 2 "$CANMC" dump $net --no-answer --duration 30 \
                >"$T/dump.out" 2>"$T/dump.err" &
            D=$!
            "$LAB_EXEC" 2 bash -c "$(declare -f wait_udp); wait_udp {PORT}"
            rc=0; "$LAB_EXEC" 1 timeout 20 "$CANMC" ping $net -c 2 -W 1 --json \
                >"$T/silent.out" 2>"$T/silent.err" || rc=$?
            echo $rc >"$T/silent.rc"
            kill -TERM $D; wait $D || true
            "#
        ),
    );
    lab.assert_ok(&run, &["none.err", "silent.err", "dump.err"]);
    for case in ["none", "silent"] {
        let out = lab.read(&format!("{case}.out"));
        let err = lab.read(&format!("{case}.err"));
        assert_eq!(
            lab.read(&format!("{case}.rc")).trim(),
            "1",
            "{case}: nobody answers, so ping must exit 1\n{out}\n{err}"
        );
        assert!(
            out.trim().is_empty(),
            "{case}: no answer lines expected, got:\n{out}"
        );
    }
}

// ---- native traffic -------------------------------------------------------------------

/// Hosts 1 and 2 each send N native frames (channels 1 and 2); hosts 3 and 4 must each
/// get all 2N, each sender's in its order, with no sequence gaps. Receivers on hosts 5
/// and 6 accept only one sender's address (`--source`) and must see exactly its N. (On
/// separate hosts: sharing a host with a plain receiver is the next test's subject.)
#[test]
fn two_native_senders_reach_two_receivers_completely_and_in_order() {
    const N: u64 = 20_000;
    const RATE: u32 = 20_000;
    let _serial = serial();
    let lab = Lab::new(CANMC, "native-2x2");
    let run = lab.run_hosts(
        6,
        &format!(
            r#"
            net="--iface v0 --group {GROUP_V4} --port {PORT}"
            for h in 3 4; do
                "$LAB_EXEC" $h "$CANMC" dump $net -L --json -n {all} --duration 40 \
                    >"$T/dump$h.out" 2>"$T/dump$h.err" &
                eval D$h=\$!
            done
            # host 5 keeps only sender 1's frames, host 6 only sender 2's.
            "$LAB_EXEC" 5 "$CANMC" dump $net --source 10.77.0.1 -L --json -n {N} --duration 40 \
                >"$T/src1.out" 2>"$T/src1.err" &
            S1=$!
            "$LAB_EXEC" 6 "$CANMC" dump $net --source 10.77.0.2 -L --json -n {N} --duration 40 \
                >"$T/src2.out" 2>"$T/src2.err" &
            S2=$!
            for h in 3 4 5 6; do "$LAB_EXEC" $h bash -c "$(declare -f wait_udp); wait_udp {PORT}"; done
            for s in 1 2; do
                "$LAB_EXEC" $s timeout 30 "$CANMC" gen --wire native $net -n {N} --rate {RATE} \
                    -I i -L 8 -D i --channel $s --json >"$T/gen$s.out" 2>"$T/gen$s.err" &
                eval G$s=\$!
            done
            rc=0
            for p in $G1 $G2; do wait $p || rc=$?; done
            # A failed sender would leave the receivers waiting for their -n.
            [[ $rc == 0 ]] || kill -TERM $D3 $D4 $S1 $S2
            for p in $D3 $D4 $S1 $S2; do wait $p || rc=$?; done
            exit $rc
            "#,
            all = 2 * N,
        ),
    );
    lab.assert_ok(
        &run,
        &[
            "gen1.err",
            "gen2.err",
            "dump3.err",
            "dump4.err",
            "src1.err",
            "src2.err",
        ],
    );
    let expected =
        |s: u64| -> Vec<String> { (0..N).map(|n| gen_line(&format!("can{s}"), n)).collect() };
    for s in [1, 2] {
        let gen = lab.read(&format!("gen{s}.out"));
        assert_eq!(json_u64(gen.trim(), "frames"), N, "gen on host {s}: {gen}");
    }
    for h in [3, 4] {
        let who = format!("receiver on host {h}");
        let d = parse_dump(&lab.read(&format!("dump{h}.out")), &who);
        assert_clean(&d.summary, &who);
        assert_eq!(
            json_u64(&d.summary, "frames"),
            2 * N,
            "{who}: {}",
            d.summary
        );
        assert_eq!(json_u64(&d.summary, "seq_gaps"), 0, "{who}: {}", d.summary);
        for s in [1, 2] {
            let prefix = format!("can{s} ");
            let got: Vec<String> = d
                .frames
                .iter()
                .filter(|l| l.starts_with(&prefix))
                .cloned()
                .collect();
            assert_eq!(got.len() as u64, N, "{who}: frames from host {s}");
            assert!(
                got == expected(s),
                "{who}: host {s}'s frames are not its N frames in order; first difference at \
                 {:?}",
                got.iter().zip(expected(s)).position(|(a, b)| *a != b)
            );
        }
        assert_eq!(
            d.frames.len() as u64,
            2 * N,
            "{who}: frames from neither sender"
        );
    }
    // Last, so that a missing field does not hide the checks above.
    for h in [3, 4] {
        let d = parse_dump(&lab.read(&format!("dump{h}.out")), "receiver");
        assert_eq!(
            json_u64(&d.summary, "senders"),
            2,
            "receiver on host {h}: native senders seen: {}",
            d.summary
        );
    }
    for s in [1, 2] {
        let who = format!("--source 10.77.0.{s} receiver");
        let d = parse_dump(&lab.read(&format!("src{s}.out")), &who);
        assert_clean(&d.summary, &who);
        assert!(
            d.frames == expected(s),
            "{who}: must print exactly host {s}'s N frames in order ({} printed; first \
             difference at {:?})",
            d.frames.len(),
            d.frames.iter().zip(expected(s)).position(|(a, b)| *a != b)
        );
    }
}

/// Host 1 sends N native frames of 8 bytes; host 2 drops about 5 % of the datagrams with
/// nftables, host 3 drops none. Host 2's `seq_gaps` must equal the rule's drop counter and
/// its frames the ones sent minus those in the dropped datagrams; host 3 gets everything.
///
/// The last datagram of a stream must never be dropped (its loss is undetectable by
/// design). The rule only drops within a byte quota of the first N·20/2 bytes at IP
/// level; the stream has more than N·20 bytes (20 per record plus headers), so its second
/// half — and so its last datagram — always passes, however the sender batches.
///
/// Frames in the dropped datagrams: with the default 1452-byte datagrams a full one holds
/// 69 records (56-byte header + 69 × 20 = 1436 bytes, maybe padded to 1452), so dropped
/// datagrams are counted in two counters: full ones (UDP length ≥ 1444, 69 frames each)
/// and the rest, whose frames follow from their bytes: (IP length − 20 − 8 − 56) / 20.
#[test]
fn native_losses_injected_by_nftables_are_counted_exactly() {
    const N: u64 = 69_000;
    const RATE: u32 = 40_000;
    const PER_FULL: u64 = 69;
    let quota = N * 20 / 2;
    let _serial = serial();
    let lab = Lab::new(CANMC, "native-loss");
    let run = lab.run_hosts(
        3,
        &format!(
            r#"
            net="--iface v0 --group {GROUP_V4} --port {PORT}"
            # A UDP GSO batch crosses veth and bridge as one packet and is split only at
            # the receiving socket, so nftables would see (and drop) whole batches. A real
            # wire carries single datagrams: segment at the sender's interface.
            # The first datagrams (4 500 bytes) always pass: a receiver takes a sender's
            # first datagram as the start of its sequence, so losing it is invisible.
            "$LAB_EXEC" 1 ip link set v0 gso_max_segs 1
            "$LAB_EXEC" 2 nft -f - <<'EOF'
table inet canmc_loss {{
    counter seen {{}}
    counter lost_full {{}}
    counter lost_part {{}}
    chain input {{
        type filter hook input priority filter; policy accept;
        udp dport {PORT} counter name seen
        udp dport {PORT} quota over 4500 bytes quota until {quota} bytes numgen random mod 100 < 5 jump lose
    }}
    chain lose {{
        udp length >= 1444 counter name lost_full drop
        counter name lost_part drop
    }}
}}
EOF
            for h in 2 3; do
                "$LAB_EXEC" $h "$CANMC" dump $net -L --json --duration 60 \
                    >"$T/dump$h.out" 2>"$T/dump$h.err" &
                eval D$h=\$!
            done
            for h in 2 3; do "$LAB_EXEC" $h bash -c "$(declare -f wait_udp); wait_udp {PORT}"; done
            rc=0
            "$LAB_EXEC" 1 timeout 40 "$CANMC" gen --wire native $net --max-datagram 1452 \
                -n {N} --rate {RATE} -I i -L 8 -D i --channel 1 --json \
                >"$T/gen.out" 2>"$T/gen.err" || rc=$?
            sleep 1  # the receivers drain
            kill -TERM $D2 $D3
            wait $D2 || rc=$?
            wait $D3 || rc=$?
            for c in seen lost_full lost_part; do
                "$LAB_EXEC" 2 nft -j list counter inet canmc_loss $c >"$T/$c.json"
            done
            exit $rc
            "#
        ),
    );
    lab.assert_ok(&run, &["gen.err", "dump2.err", "dump3.err"]);
    let gen = lab.read("gen.out");
    assert_eq!(json_u64(gen.trim(), "frames"), N, "gen: {gen}");
    let counter = |c: &str| {
        let j = lab.read(&format!("{c}.json"));
        (json_u64(&j, "packets"), json_u64(&j, "bytes"))
    };
    let (seen, _) = counter("seen");
    let (full, _) = counter("lost_full");
    let (part, part_bytes) = counter("lost_part");
    let dropped = full + part;
    assert_eq!(
        seen,
        json_u64(gen.trim(), "datagrams"),
        "host 2's nftables must see each datagram gen sent as one packet (else drops \
         are not datagrams): {gen}"
    );
    assert!(
        dropped > 0,
        "the rule dropped nothing of {seen} datagrams: the test proves nothing"
    );
    let part_records = part_bytes - part * (20 + 8 + 56);
    assert_eq!(
        part_records % 20,
        0,
        "partial dropped datagrams are not whole 20-byte records: {part} packets, \
         {part_bytes} bytes"
    );
    let lost_frames = full * PER_FULL + part_records / 20;
    eprintln!(
        "nftables: {seen} datagrams, dropped {full} full + {part} partial = {lost_frames} frames"
    );

    let lossy = parse_dump(&lab.read("dump2.out"), "lossy receiver (host 2)");
    let sum = &lossy.summary;
    assert_clean(sum, "lossy receiver");
    assert_eq!(
        json_u64(sum, "seq_gaps"),
        dropped,
        "seq_gaps must be the datagrams nftables dropped ({full} full + {part} partial): {sum}"
    );
    assert_eq!(
        json_u64(sum, "datagrams"),
        seen - dropped,
        "datagrams received = datagrams at the host ({seen}) − dropped ({dropped}): {sum}"
    );
    assert_eq!(
        json_u64(sum, "frames"),
        N - lost_frames,
        "frames = sent − frames in the dropped datagrams ({lost_frames}): {sum}"
    );
    assert_eq!(lossy.frames.len() as u64, N - lost_frames, "log lines");
    // What arrived is in order, and what is missing comes in at most one run per
    // dropped datagram (adjacent dropped datagrams merge into one run).
    let mut next = 0;
    let mut runs = 0;
    for line in &lossy.frames {
        assert!(line.starts_with("can1 "), "unexpected frame {line}");
        let n = gen_counter(line);
        assert!(
            n >= next,
            "frame {n} after {next}: out of order or repeated"
        );
        if n > next {
            runs += 1;
        }
        next = n + 1;
    }
    assert_eq!(next, N, "the last frame must arrive (it is never dropped)");
    assert!(
        (1..=dropped).contains(&runs),
        "{runs} runs of missing frames for {dropped} dropped datagrams"
    );

    let clean = parse_dump(&lab.read("dump3.out"), "receiver without loss (host 3)");
    assert_clean(&clean.summary, "receiver without loss");
    assert_eq!(json_u64(&clean.summary, "seq_gaps"), 0, "{}", clean.summary);
    assert_eq!(json_u64(&clean.summary, "frames"), N, "{}", clean.summary);
    assert!(
        clean.frames == (0..N).map(|n| gen_line("can1", n)).collect::<Vec<_>>(),
        "receiver without loss: not all frames in order"
    );
}

/// One `canmc dump` on python-can's default IPv6 group; at the same time real python-can
/// (every frame kind) from host 1, `canmc gen` in python-can format from host 2 and
/// `canmc gen --wire native` from host 3. Every frame of all three arrives, no decode
/// errors.
#[test]
fn pycan_and_native_traffic_share_one_group_and_one_dump() {
    const N_PYCAN: u64 = 3_000;
    const N_NATIVE: u64 = 20_000;
    let kinds = pycan_kinds();
    let all = kinds.len() as u64 + N_PYCAN + N_NATIVE;
    let _serial = serial();
    let lab = Lab::new(CANMC, "coexist");
    let run = lab.run_hosts(
        4,
        &format!(
            r#"
            net="--iface v0 --port {PORT}"
            "$LAB_EXEC" 4 "$CANMC" dump $net -L --json -n {all} --duration 40 \
                >"$T/dump.out" 2>"$T/dump.err" &
            D=$!
            "$LAB_EXEC" 4 bash -c "$(declare -f wait_udp); wait_udp {PORT}"
            "$LAB_EXEC" 1 timeout 30 "$PY" "$PEER" send --group {GROUP_V6} --port {PORT} \
                >"$T/py.out" 2>"$T/py.err" &
            P=$!
            "$LAB_EXEC" 2 timeout 30 "$CANMC" gen $net -n {N_PYCAN} --rate 3000 \
                -I i -L 8 -D i --channel 5 --json >"$T/gen5.out" 2>"$T/gen5.err" &
            G5=$!
            "$LAB_EXEC" 3 timeout 30 "$CANMC" gen --wire native $net -n {N_NATIVE} --rate 20000 \
                -I i -L 8 -D i --channel 6 --json >"$T/gen6.out" 2>"$T/gen6.err" &
            G6=$!
            rc=0
            for p in $P $G5 $G6; do wait $p || rc=$?; done
            [[ $rc == 0 ]] || kill -TERM $D
            wait $D || rc=$?
            exit $rc
            "#
        ),
    );
    lab.assert_ok(&run, &["py.err", "gen5.err", "gen6.err", "dump.err"]);
    let d = parse_dump(&lab.read("dump.out"), "receiver");
    assert_clean(&d.summary, "receiver");
    assert_eq!(json_u64(&d.summary, "frames"), all, "{}", d.summary);
    assert_eq!(json_u64(&d.summary, "seq_gaps"), 0, "{}", d.summary);
    let pick = |prefix: &str| -> Vec<String> {
        d.frames
            .iter()
            .filter(|l| l.starts_with(prefix))
            .cloned()
            .collect()
    };
    let pycan_gen = pick("can5 ");
    let native_gen = pick("can6 ");
    let python: Vec<String> = d
        .frames
        .iter()
        .filter(|l| !l.starts_with("can5 ") && !l.starts_with("can6 "))
        .cloned()
        .collect();
    assert_eq!(python, kinds, "python-can's frames");
    assert!(
        pycan_gen
            == (0..N_PYCAN)
                .map(|n| gen_line("can5", n))
                .collect::<Vec<_>>(),
        "canmc gen (python-can format): {} frames, not all in order",
        pycan_gen.len()
    );
    assert!(
        native_gen
            == (0..N_NATIVE)
                .map(|n| gen_line("can6", n))
                .collect::<Vec<_>>(),
        "canmc gen --wire native: {} frames, not all in order",
        native_gen.len()
    );
    assert_eq!(
        json_u64(&d.summary, "senders"),
        1,
        "one native sender: {}",
        d.summary
    );
}

/// A user runs `canmc dump` and `canmc dump --source 10.77.0.1` side by side on one host
/// (host 5) while hosts 1–4 send native frames. The plain receiver must get every
/// sender's frames, the filtered one exactly sender 1's.
///
/// Found with this lab (kernel 6.x): both sockets are in one `SO_REUSEPORT` group, and
/// UDP early demux, finding exactly one socket whose multicast source filter accepts a
/// datagram, marks it "prefetched"; the reuseport re-selection then picks a socket of the
/// group by flow hash, ignoring the filters. Whole senders then go to the filtered socket
/// only, and the plain one never sees them. Reproduced with plain python sockets; gone
/// when the source-filtered socket does not set `SO_REUSEPORT` (SO_REUSEADDR suffices).
#[test]
fn source_filtered_and_plain_receiver_share_a_host() {
    const N: u64 = 2_000;
    let _serial = serial();
    let lab = Lab::new(CANMC, "source-beside-plain");
    let run = lab.run_hosts(
        5,
        &format!(
            r#"
            net="--iface v0 --group {GROUP_V4} --port {PORT}"
            "$LAB_EXEC" 5 "$CANMC" dump $net -L --json -n {all} --duration 20 \
                >"$T/plain.out" 2>"$T/plain.err" &
            D=$!
            "$LAB_EXEC" 5 "$CANMC" dump $net --source 10.77.0.1 -L --json -n {N} --duration 20 \
                >"$T/src.out" 2>"$T/src.err" &
            S=$!
            "$LAB_EXEC" 5 bash -c "$(declare -f wait_udp); wait_udp {PORT}"
            sleep 0.3  # both sockets joined
            for s in 1 2 3 4; do
                "$LAB_EXEC" $s timeout 30 "$CANMC" gen --wire native $net -n {N} --rate 5000 \
                    -I i -L 8 -D i --channel $s --json >"$T/gen$s.out" 2>"$T/gen$s.err" &
                eval G$s=\$!
            done
            rc=0
            for p in $G1 $G2 $G3 $G4; do wait $p || rc=$?; done
            [[ $rc == 0 ]] || kill -TERM $D $S
            for p in $D $S; do wait $p || rc=$?; done
            exit $rc
            "#,
            all = 4 * N,
        ),
    );
    lab.assert_ok(&run, &["gen1.err", "plain.err", "src.err"]);
    let plain = parse_dump(&lab.read("plain.out"), "plain receiver");
    let src = parse_dump(&lab.read("src.out"), "--source receiver");
    assert_clean(&plain.summary, "plain receiver");
    assert_clean(&src.summary, "--source receiver");
    let per_sender = |d: &Dump| -> Vec<usize> {
        (1..=4)
            .map(|s| {
                let prefix = format!("can{s} ");
                d.frames.iter().filter(|l| l.starts_with(&prefix)).count()
            })
            .collect()
    };
    let n = N as usize;
    assert_eq!(
        (per_sender(&plain), per_sender(&src)),
        (vec![n; 4], vec![n, 0, 0, 0]),
        "frames per sender (hosts 1-4) at the plain and the --source 10.77.0.1 receiver on \
         one host"
    );
}
