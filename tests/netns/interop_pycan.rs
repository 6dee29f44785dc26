//! Interop with real python-can (`udp_multicast`), both directions, IPv4 and IPv6, every
//! frame kind of SPEC §1: python-can → `canmc dump -L`, `canmc send` → python-can, and
//! `canmc gen` → python-can. Runs inside the network lab (tools/netlab.sh); IPv4 meets
//! python-can on lo (`--iface lo`), IPv6 on the lab's veth (`--iface v0`).

use crate::common;
use crate::lab;

use common::{json_field, nonempty_lines, CANMC};
use lab::{now_s, pycan_kinds, split_log_line, Lab};

const PORT: u16 = 43113;

/// How both ends reach one family's group. canmc uses its defaults for the group so
/// the test also checks that they are python-can's.
struct Net {
    name: &'static str,
    /// python-can's channel (its group).
    group: &'static str,
    /// canmc's network options.
    canmc: &'static str,
}

const V4: Net = Net {
    name: "v4",
    group: "239.74.163.2",
    canmc: "--iface lo",
};

const V6: Net = Net {
    name: "v6",
    group: "ff15:7079:7468:6f6e:6465:6d6f:6d63:6173",
    canmc: "--iface v0",
};

/// python-can sends every kind; `canmc dump -L -n N --json` must print exactly the
/// expected lines, in order, with plausible kernel receive timestamps, then a summary
/// that counts N frames and no decode error.
fn pycan_to_dump(net: &Net) {
    let kinds = pycan_kinds();
    let n = kinds.len();
    let lab = Lab::new(CANMC, &format!("pycan-to-dump-{}", net.name));
    let before = now_s();
    let run = lab.run(&format!(
        r#"
        "$CANMC" dump {net} --port {PORT} -L -n {n} --duration 30 --json >"$T/dump.out" 2>"$T/dump.err" &
        D=$!
        wait_udp {PORT}
        wait_joined {group}
        "$PY" "$PEER" send --group {group} --port {PORT} >"$T/sent.out"
        rc=0; wait $D || rc=$?
        echo "dump exit $rc" >&2
        exit $rc
        "#,
        net = net.canmc,
        group = net.group,
    ));
    let after = now_s();
    let dump = lab.read("dump.out");
    let sent = lab.read("sent.out");
    lab.assert_ok(&run, &["dump.out", "dump.err"]);
    let sent = nonempty_lines(&sent);
    assert_eq!(sent, kinds, "python-can did not send every kind");
    let mut got = nonempty_lines(&dump);
    // --json: the summary is one object on the last line of stdout.
    let summary = got.pop().unwrap_or_default();
    assert!(
        summary.starts_with("{\"command\":\"dump\"") && summary.ends_with('}'),
        "last stdout line is not the JSON summary: {summary}"
    );
    assert_eq!(json_field(summary, "frames"), Some(n.to_string().as_str()));
    assert_eq!(json_field(summary, "decode_errors_total"), Some("0"));
    assert_eq!(
        got.len(),
        n,
        "dump -n {n} printed {} frame lines:\n{dump}",
        got.len()
    );
    let mut last = 0.0;
    for (i, (line, want)) in got.iter().zip(&sent).enumerate() {
        let (ts, rest) = split_log_line(line)
            .unwrap_or_else(|| panic!("line {i} is not `(secs.micros) IF ID#DATA`: {line:?}"));
        assert_eq!(rest, *want, "frame {i} printed differently");
        assert!(
            ts >= before - 1.0 && ts <= after + 1.0,
            "frame {i}: timestamp {ts} not within the run ({before}..{after})"
        );
        assert!(
            ts >= last,
            "frame {i}: timestamp {ts} before previous {last}"
        );
        last = ts;
    }
}

/// A lab script: a python-can receiver on `net`'s group that waits for `count` messages
/// (at most `timeout` s) into `$T/recv.out`, `body` once it is ready, then the receiver's
/// exit code as the script's.
fn with_pycan_receiver(net: &Net, count: usize, timeout: u32, body: &str) -> String {
    format!(
        r#"
        "$PY" "$PEER" recv --group {group} --port {PORT} --count {count} --timeout {timeout} \
            --linger 0.3 --ready-file "$T/ready" >"$T/recv.out" 2>"$T/recv.err" &
        R=$!
        wait_file "$T/ready"
        sleep 0.1
        {body}
        rc=0; wait $R || rc=$?
        echo "python-can receiver exit $rc" >&2
        exit $rc
        "#,
        group = net.group,
    )
}

/// `canmc send` of every kind (channel none, "can1", 3): python-can receives each
/// frame equal to what was sent and raises nothing.
fn send_to_pycan(net: &Net) {
    let kinds = pycan_kinds();
    let n = kinds.len();
    let pick = |ifname: &str| -> Vec<&str> {
        kinds
            .iter()
            .filter_map(|k| k.split_once(' '))
            .filter(|(i, _)| *i == ifname)
            .map(|(_, f)| f)
            .collect()
    };
    let (none, can1, can3) = (pick("vcan0"), pick("can1"), pick("can3"));
    assert_eq!(
        none.len() + can1.len() + can3.len(),
        n,
        "unexpected channel in kinds"
    );
    let lab = Lab::new(CANMC, &format!("send-to-pycan-{}", net.name));
    let run = lab.run(&with_pycan_receiver(
        net,
        n,
        20,
        &format!(
            r#"
            "$CANMC" send {net} --port {PORT} {none}
            "$CANMC" send {net} --port {PORT} --channel can1 {can1}
            "$CANMC" send {net} --port {PORT} --channel 3 {can3}"#,
            net = net.canmc,
            none = none.join(" "),
            can1 = can1.join(" "),
            can3 = can3.join(" "),
        ),
    ));
    let recv = lab.read("recv.out");
    lab.assert_ok(&run, &["recv.out", "recv.err"]);
    let want: Vec<String> = none
        .iter()
        .map(|f| format!("vcan0 {f}"))
        .chain(can1.iter().map(|f| format!("can1 {f}")))
        .chain(can3.iter().map(|f| format!("can3 {f}")))
        .collect();
    let got = nonempty_lines(&recv);
    assert_eq!(got.len(), n);
    for (i, (json, want)) in got.iter().zip(&want).enumerate() {
        let line = json_field(json, "line").expect("peer JSON has a line");
        assert_eq!(
            line.trim_matches('"'),
            want,
            "frame {i} arrived different: {json}"
        );
        let channel = json_field(json, "channel").unwrap();
        let want_channel = match want.split_once(' ').unwrap().0 {
            "vcan0" => "null",
            "can1" => "\"can1\"",
            _ => "3",
        };
        assert_eq!(channel, want_channel, "frame {i}: channel type: {json}");
    }
}

/// `canmc gen -n 2000` at a pace python-can keeps up with: python-can gets 2000 frames,
/// each valid (its check=True) and each satisfying `check`.
fn gen_to_pycan(net: &Net, mode: &str, gen_args: &str, check: impl Fn(&str) -> Result<(), String>) {
    const N: usize = 2000;
    let lab = Lab::new(CANMC, &format!("gen-to-pycan-{}-{mode}", net.name));
    let run = lab.run(&with_pycan_receiver(
        net,
        N,
        30,
        &format!(
            r#""$CANMC" gen {net} --port {PORT} -n {N} --rate 4000 {gen_args} >"$T/gen.out" 2>"$T/gen.err""#,
            net = net.canmc,
        ),
    ));
    let recv = lab.read("recv.out");
    lab.assert_ok(&run, &["recv.err", "gen.err"]);
    let got = nonempty_lines(&recv);
    assert_eq!(got.len(), N);
    for (i, json) in got.iter().enumerate() {
        if let Err(e) = check(json) {
            panic!("gen {gen_args}: frame {i}: {e}: {json}");
        }
    }
}

fn field(json: &str, key: &str) -> String {
    json_field(json, key).unwrap_or("<missing>").to_owned()
}

fn expect(json: &str, key: &str, want: &str) -> Result<(), String> {
    let got = field(json, key);
    if got == want {
        Ok(())
    } else {
        Err(format!("{key} is {got}, expected {want}"))
    }
}

const FD_LENGTHS: [&str; 16] = [
    "0", "1", "2", "3", "4", "5", "6", "7", "8", "12", "16", "20", "24", "32", "48", "64",
];

fn gen_modes(net: &Net) {
    gen_to_pycan(net, "default", "", |j| {
        expect(j, "is_fd", "false")?;
        expect(j, "is_remote_frame", "false")?;
        expect(j, "is_error_frame", "false")?;
        let dlc: u32 = field(j, "dlc").parse().map_err(|_| "dlc".to_owned())?;
        (dlc <= 8).then_some(()).ok_or("classic dlc > 8".into())
    });
    gen_to_pycan(net, "fd-brs-ext", "-f -b -e", |j| {
        expect(j, "is_fd", "true")?;
        expect(j, "bitrate_switch", "true")?;
        expect(j, "error_state_indicator", "false")?;
        expect(j, "is_extended_id", "true")?;
        let dlc = field(j, "dlc");
        FD_LENGTHS
            .contains(&dlc.as_str())
            .then_some(())
            .ok_or(format!("FD length {dlc} not allowed"))
    });
    gen_to_pycan(net, "fd-esi-fixed", "-E -I 7A5 -L 64", |j| {
        expect(j, "is_fd", "true")?;
        expect(j, "error_state_indicator", "true")?;
        expect(j, "bitrate_switch", "false")?;
        expect(j, "arbitration_id", &0x7A5.to_string())?;
        expect(j, "is_extended_id", "false")?;
        expect(j, "dlc", "64")
    });
    gen_to_pycan(net, "remote", "-R -I 123 -L 4", |j| {
        expect(j, "is_remote_frame", "true")?;
        expect(j, "arbitration_id", &0x123.to_string())?;
        expect(j, "dlc", "4")?;
        expect(j, "data", "\"\"")
    });
}

/// `-I i`: IDs count up by one from frame to frame (wrapping at 0x800), so nothing was
/// lost or reordered between canmc and python-can.
fn gen_increment(net: &Net) {
    let prev = std::cell::Cell::new(None::<u32>);
    gen_to_pycan(net, "increment", "-I i -L 8", |j| {
        expect(j, "dlc", "8")?;
        expect(j, "is_extended_id", "false")?;
        let id: u32 = field(j, "arbitration_id")
            .parse()
            .map_err(|_| "id".to_owned())?;
        let ok = match prev.get() {
            None => true,
            Some(p) => id == (p + 1) % 0x800,
        };
        let msg = format!("id {id} after {:?}", prev.get());
        prev.set(Some(id));
        ok.then_some(()).ok_or(msg)
    });
}

#[test]
fn ipv4_pycan_to_canmc_dump_every_kind() {
    pycan_to_dump(&V4);
}

#[test]
fn ipv6_pycan_to_canmc_dump_every_kind() {
    pycan_to_dump(&V6);
}

#[test]
fn ipv4_canmc_send_to_pycan_every_kind() {
    send_to_pycan(&V4);
}

#[test]
fn ipv6_canmc_send_to_pycan_every_kind() {
    send_to_pycan(&V6);
}

#[test]
fn ipv4_canmc_gen_to_pycan() {
    gen_modes(&V4);
}

#[test]
fn ipv6_canmc_gen_to_pycan() {
    gen_modes(&V6);
}

#[test]
fn ipv4_canmc_gen_increment_to_pycan_in_order() {
    gen_increment(&V4);
}

#[test]
fn ipv6_canmc_gen_increment_to_pycan_in_order() {
    gen_increment(&V6);
}

/// Several hosts on a bridge: python-can on host 1 sends, canmc on hosts 2 and 3
/// prints every frame (IPv6 across real veth links, not loopback).
#[test]
fn ipv6_pycan_host_to_canmc_on_two_other_hosts() {
    let kinds = pycan_kinds();
    let n = kinds.len();
    let lab = Lab::new(CANMC, "hosts-v6");
    let run = lab.run_hosts(
        3,
        &format!(
            r#"
            for h in 2 3; do
                "$LAB_EXEC" $h "$CANMC" dump --iface v0 --port {PORT} -L -n {n} --duration 30 \
                    >"$T/dump$h.out" 2>"$T/dump$h.err" &
                eval D$h=\$!
            done
            for h in 2 3; do
                "$LAB_EXEC" $h bash -c "$(declare -f wait_udp wait_joined); wait_udp {PORT} && wait_joined {group}"
            done
            "$LAB_EXEC" 1 "$PY" "$PEER" send --group {group} --port {PORT} >"$T/sent.out"
            rc=0; wait $D2 || rc=$?; wait $D3 || rc=$?
            exit $rc
            "#,
            group = V6.group,
        ),
    );
    lab.assert_ok(&run, &["dump2.err", "dump3.err"]);
    for h in [2, 3] {
        let out = lab.read(&format!("dump{h}.out"));
        let got: Vec<&str> = nonempty_lines(&out)
            .iter()
            .map(|l| split_log_line(l).map_or(*l, |(_, rest)| rest))
            .collect();
        assert_eq!(got, kinds, "host {h} printed different frames");
    }
}

/// The lab itself: python-can to python-can over IPv4 and IPv6, in one namespace and
/// across two hosts. When this fails, the other failures here are the lab's, not canmc's.
#[test]
fn lab_carries_python_can_to_python_can() {
    let out = std::process::Command::new(lab::netlab())
        .arg("selftest")
        .arg(lab::python())
        .stdin(std::process::Stdio::null())
        .output()
        .expect("run tools/netlab.sh selftest");
    assert!(
        out.status.success(),
        "netlab selftest failed:\n{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}
