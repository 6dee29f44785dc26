//! Bad input on the command line (SPEC §8, cli-spec exit codes): a malformed frame, an
//! unknown option, a group that is not multicast, a port out of range, a missing value.
//! Each must give exactly one line on stderr, nothing on stdout, exit code 2, and no
//! panic; a bad frame among good ones sends nothing. Every case runs inside the network
//! lab, so a CLI that wrongly went ahead could not reach a real network.

use crate::common;
use crate::lab;

use common::{json_field, CANMC};
use lab::Lab;

fn quote(arg: &str) -> String {
    format!("'{}'", arg.replace('\'', r"'\''"))
}

/// Runs `canmc ARGS` in the lab; returns a description of what is wrong, if anything.
fn check_usage_error(lab: &Lab, args: &[&str]) -> Option<String> {
    let cmd: Vec<String> = args.iter().map(|a| quote(a)).collect();
    // `timeout` turns a CLI that wrongly starts working into a clear failure (124).
    let run = lab.run_no_python(&format!("exec timeout 10 \"$CANMC\" {}", cmd.join(" ")));
    let mut problems = Vec::new();
    if run.status.code() != Some(2) {
        problems.push(format!("exit {:?}, expected 2", run.status.code()));
    }
    let err_lines: Vec<&str> = run.stderr.lines().collect();
    if err_lines.len() != 1 || err_lines[0].trim().is_empty() {
        problems.push(format!(
            "{} stderr lines, expected exactly 1",
            err_lines.len()
        ));
    }
    if run.stderr.contains("panicked") || run.stderr.contains("RUST_BACKTRACE") {
        problems.push("panicked".to_owned());
    }
    if !run.stdout.is_empty() {
        problems.push("wrote to stdout".to_owned());
    }
    if problems.is_empty() {
        None
    } else {
        Some(format!(
            "canmc {}: {}\n  stderr: {:?}\n  stdout: {:?}",
            args.join(" "),
            problems.join("; "),
            run.stderr,
            run.stdout
        ))
    }
}

#[track_caller]
fn all_usage_errors(name: &str, cases: &[&[&str]]) {
    let lab = Lab::new(CANMC, name);
    let failures: Vec<String> = cases
        .iter()
        .filter_map(|args| check_usage_error(&lab, args))
        .collect();
    assert!(
        failures.is_empty(),
        "{} of {} cases wrong:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

#[test]
fn bad_frames_are_refused() {
    all_usage_errors(
        "bad-frames",
        &[
            &["send", "--iface", "lo", "123#0"],  // odd number of hex digits
            &["send", "--iface", "lo", "800#00"], // standard ID > 0x7FF
            &["send", "--iface", "lo", "123#R9"], // remote length > 8
            &["send", "--iface", "lo", "123#112233445566778899"], // 9 classic bytes
            &["send", "--iface", "lo", "123##4112233445566778899"], // FD length 9
            &["send", "--iface", "lo", "123##"],  // no FD flags digit
            &["send", "--iface", "lo", "12G#00"], // ID not hex
            &["send", "--iface", "lo", "123"],    // no '#'
            &["send", "--iface", "lo", "123456789#00"], // 9-digit ID
            &["send", "--iface", "lo", "#00"],    // no ID
            &["send", "--iface", "lo", "123#00", "800#00"], // one bad among good
        ],
    );
}

#[test]
fn unknown_options_and_commands_are_refused() {
    all_usage_errors(
        "unknown-options",
        &[
            &["send", "--iface", "lo", "--bogus", "123#00"],
            &["dump", "--iface", "lo", "--frobnicate"],
            &["gen", "--iface", "lo", "-Z"],
            &["frobnicate"],
        ],
    );
}

#[test]
fn non_multicast_groups_are_refused() {
    all_usage_errors(
        "non-multicast",
        &[
            &["send", "--iface", "lo", "--group", "127.0.0.1", "123#00"],
            &["send", "--iface", "lo", "--group", "10.1.2.3", "123#00"],
            &["send", "--group", "::1", "123#00"],
            &["send", "--group", "fd00::1", "123#00"],
            &[
                "send",
                "--iface",
                "lo",
                "--group",
                "not-an-address",
                "123#00",
            ],
            &[
                "dump",
                "--iface",
                "lo",
                "--group",
                "127.0.0.1",
                "-n",
                "1",
                "--duration",
                "2",
            ],
            &["gen", "--iface", "lo", "--group", "192.0.2.1", "-n", "1"],
        ],
    );
}

#[test]
fn ports_out_of_range_are_refused() {
    all_usage_errors(
        "bad-ports",
        &[
            &["send", "--iface", "lo", "--port", "70000", "123#00"],
            &["send", "--iface", "lo", "--port", "-1", "123#00"],
            &["send", "--iface", "lo", "--port", "abc", "123#00"],
            &[
                "dump",
                "--iface",
                "lo",
                "--port",
                "65536",
                "-n",
                "1",
                "--duration",
                "2",
            ],
        ],
    );
}

#[test]
fn missing_values_are_refused() {
    all_usage_errors(
        "missing-values",
        &[
            &["send", "--iface", "lo", "123#00", "--port"],
            &["send", "--iface", "lo", "--group"],
            &["send", "--iface", "lo"], // no frame at all
            &["dump", "--iface", "lo", "-n"],
            &["gen", "--iface", "lo", "--rate"],
        ],
    );
}

#[test]
fn bad_coalesce_values_are_refused() {
    all_usage_errors(
        "bad-coalesce",
        &[
            &[
                "dump",
                "--iface",
                "lo",
                "--coalesce",
                "-1",
                "--duration",
                "2",
            ],
            &[
                "dump",
                "--iface",
                "lo",
                "--coalesce",
                "nan",
                "--duration",
                "2",
            ],
            &[
                "dump",
                "--iface",
                "lo",
                "--coalesce",
                "5000",
                "--duration",
                "2",
            ],
            &[
                "record",
                "--iface",
                "lo",
                "-o",
                "x.cmc",
                "--coalesce",
                "inf",
            ],
            &["dump", "--iface", "lo", "--coalesce", "soon"],
        ],
    );
}

/// A bad frame among good ones: nothing reaches a python-can receiver; a good send right
/// after does (so the receiver was listening).
#[test]
fn bad_frame_sends_nothing() {
    let lab = Lab::new(CANMC, "bad-frame-nothing-sent");
    let run = lab.run(
        r#"
        "$PY" "$PEER" recv --group 239.74.163.2 --port 43113 --count 1 --timeout 10 \
            --linger 0.5 --ready-file "$T/ready" >"$T/recv.out" 2>"$T/recv.err" &
        R=$!
        wait_file "$T/ready"
        sleep 0.1
        rc=0; "$CANMC" send --iface lo --port 43113 123#00 800#00 456#11 2>"$T/send.err" || rc=$?
        [[ $rc -eq 2 ]] || { echo "bad send exited $rc, expected 2" >&2; exit 1; }
        sleep 0.3
        "$CANMC" send --iface lo --port 43113 7FF#AA
        wait $R
        "#,
    );
    lab.assert_ok(&run, &["recv.out", "recv.err"]);
    let recv = lab.read("recv.out");
    let got: Vec<&str> = recv
        .lines()
        .map(|l| json_field(l, "line").unwrap_or(l))
        .collect();
    assert_eq!(got, ["\"vcan0 7FF#AA\""]);
    assert_eq!(lab.read("send.err").lines().count(), 1);
}
