//! The flags refuse bad values while parsing: no socket, no file, no network needed.

use std::time::Duration;

use clap::error::ErrorKind;
use clap::Parser;

use super::{Cli, Command};

/// Parses `canmc ARGS`.
fn parse(args: &[&str]) -> Result<Cli, clap::Error> {
    Cli::try_parse_from(std::iter::once("canmc").chain(args.iter().copied()))
}

/// Asserts that `canmc ARGS` is refused as an invalid value, with a message naming the
/// flag and containing `why`.
#[track_caller]
fn refused(args: &[&str], flag: &str, why: &str) {
    let err = match parse(args) {
        Ok(_) => panic!("canmc {} was accepted", args.join(" ")),
        Err(e) => e,
    };
    let text = err.to_string();
    let first = text.lines().next().unwrap_or_default();
    assert_eq!(
        err.kind(),
        ErrorKind::ValueValidation,
        "canmc {}: {text}",
        args.join(" ")
    );
    assert!(
        first.contains(flag) && first.contains(why),
        "canmc {}: first line {first:?} should name {flag} and say {why:?}",
        args.join(" ")
    );
}

#[test]
fn durations_must_be_positive_finite_seconds() {
    for bad in ["-1", "0", "nan", "inf", "soon", "", "1e300"] {
        refused(
            &["dump", "--duration", bad],
            "--duration",
            "positive number of seconds",
        );
    }
    let Command::Dump(d) = parse(&["dump", "--duration", "1.5"]).unwrap().command else {
        panic!("not dump");
    };
    assert_eq!(d.recv.duration, Some(Duration::from_millis(1500)));
}

#[test]
fn rates_and_gaps_must_be_usable() {
    for bad in ["0", "-5", "nan", "inf", "x", "1e-300"] {
        refused(
            &["gen", "--rate", bad],
            "--rate",
            "positive number of frames/s",
        );
    }
    for bad in ["-1", "nan", "inf", "1e300"] {
        refused(&["gen", "-g", bad], "-g", "milliseconds ≥ 0");
    }
    let Command::Gen(g) = parse(&["gen", "--rate", "1000"]).unwrap().command else {
        panic!("not gen");
    };
    assert_eq!(g.rate, Some(1000.0));
    let Command::Gen(g) = parse(&["gen", "-g", "0"]).unwrap().command else {
        panic!("not gen");
    };
    assert_eq!(g.gap, Some(Duration::ZERO));
    // --rate and -g exclude each other.
    assert_eq!(
        parse(&["gen", "--rate", "10", "-g", "5"])
            .err()
            .map(|e| e.kind()),
        Some(ErrorKind::ArgumentConflict)
    );
}

#[test]
fn replay_speed_and_times_are_checked() {
    for bad in ["0", "-2", "nan", "inf", "fast"] {
        refused(
            &["replay", "f.log", "--speed", bad],
            "--speed",
            "positive factor",
        );
    }
    for flag in ["--skip-gaps", "--start", "--end"] {
        for bad in ["-0.5", "nan", "inf", "later"] {
            refused(&["replay", "f.log", flag, bad], flag, "seconds ≥ 0");
        }
    }
    let Command::Replay(r) = parse(&["replay", "f.log", "--speed", "0.5", "--start", "0"])
        .unwrap()
        .command
    else {
        panic!("not replay");
    };
    assert_eq!(r.speed, 0.5);
    assert_eq!(r.start, Some(Duration::ZERO));
    assert_eq!(r.end, None);
}

#[test]
fn loop_is_a_count_or_i() {
    for bad in ["x", "0", "-1", "1.5", ""] {
        refused(
            &["replay", "f.log", "--loop", bad],
            "--loop",
            "count ≥ 1 or 'i'",
        );
    }
    for (ok, want) in [("3", Some(3)), ("i", None), ("inf", None)] {
        let Command::Replay(r) = parse(&["replay", "f.log", "--loop", ok]).unwrap().command else {
            panic!("not replay");
        };
        assert_eq!(r.repeat.0, want, "--loop {ok}");
    }
}

#[test]
fn milliseconds_have_their_ranges() {
    for bad in ["-1", "1000.5", "nan", "inf", "soon"] {
        refused(&["dump", "--coalesce", bad], "--coalesce", "from 0 to 1000");
    }
    for bad in ["-0.1", "60001", "nan"] {
        refused(
            &["send", "--linger", bad, "123#00"],
            "--linger",
            "from 0 to 60000",
        );
    }
    let Command::Send(s) = parse(&["send", "123#00"]).unwrap().command else {
        panic!("not send");
    };
    assert_eq!(s.opts.linger, Duration::from_millis(1), "default --linger");
}

#[test]
fn ping_wait_and_count() {
    for bad in ["0", "-1", "3601", "nan", "inf"] {
        refused(&["ping", "-W", bad], "-W", "from 0 to 3600");
    }
    for bad in ["0", "-1", "x"] {
        assert!(
            parse(&["ping", "-c", bad]).is_err(),
            "ping -c {bad} accepted"
        );
    }
    let Command::Ping(p) = parse(&["ping"]).unwrap().command else {
        panic!("not ping");
    };
    assert_eq!((p.count, p.wait), (1, Duration::from_secs(1)));
}

#[test]
fn counts_are_whole_non_negative_numbers() {
    for args in [
        &["dump", "-n", "-1"][..],
        &["dump", "-n", "1.5"],
        &["record", "-o", "x.cmc", "-n", "many"],
        &["gen", "-n", "-3"],
        &["record", "-o", "x.cmc", "--segment-size", "0"],
    ] {
        let err = parse(args).err();
        assert_eq!(
            err.map(|e| e.kind()),
            Some(ErrorKind::ValueValidation),
            "canmc {}",
            args.join(" ")
        );
    }
}

#[test]
fn groups_sources_and_ttl_are_checked() {
    for bad in ["127.0.0.1", "10.1.2.3", "::1", "fd00::1"] {
        refused(
            &["send", "--group", bad, "123#00"],
            "--group",
            "not a multicast group",
        );
    }
    refused(
        &["send", "--group", "not-an-address", "123#00"],
        "--group",
        "not an IPv4 or IPv6 address",
    );
    for bad in ["239.1.2.3", "0.0.0.0", "::"] {
        refused(
            &["dump", "--source", bad],
            "--source",
            "not a unicast sender",
        );
    }
    assert!(parse(&["dump", "--ttl", "256"]).is_err());
    let Command::Dump(d) = parse(&["dump", "--group", "239.1.2.3", "--source", "127.0.0.1"])
        .unwrap()
        .command
    else {
        panic!("not dump");
    };
    assert_eq!(d.net.group, Some("239.1.2.3".parse().unwrap()));
    assert_eq!(
        d.net.source,
        vec!["127.0.0.1".parse::<std::net::IpAddr>().unwrap()]
    );
}

#[test]
fn filters_are_parsed_before_anything_opens() {
    refused(&["dump", "12G:7FF"], "FILTER", "is not <id>:<mask>");
    refused(
        &["record", "-o", "x.cmc", "123"],
        "FILTER",
        "is not <id>:<mask>",
    );
    refused(
        &["replay", "f.log", "-f", "123:"],
        "--filter",
        "is not <id>:<mask>",
    );
    let Command::Dump(d) = parse(&["dump", "123:7FF", "200~700"]).unwrap().command else {
        panic!("not dump");
    };
    assert_eq!(d.filters.len(), 2);
}

#[test]
fn readme_examples_parse() {
    let readme = include_str!("../../../README.md");
    let mut checked = 0;
    let mut in_code = false;
    for line in readme.lines() {
        if line.starts_with("```") {
            in_code = !in_code;
        }
        if !in_code || !line.starts_with("canmc ") {
            continue;
        }
        // Cut a trailing shell comment (` # …`, not the `#` of a frame) and a redirect.
        let command = line.split(" # ").next().unwrap_or(line);
        let command = command.split(" > ").next().unwrap_or(command);
        let args: Vec<&str> = command.split_whitespace().skip(1).collect();
        if let Err(e) = parse(&args) {
            panic!("README: {line}\n{e}");
        }
        checked += 1;
    }
    assert!(checked >= 20, "only {checked} README examples found");
}
