//! canmc's python-can wire format against real python-can: `tools/pycan_golden.py` prints
//! what python-can's `pack_message` makes of a table of messages, and datagrams in every
//! form python-can's receiver accepts; this test checks canmc encodes and decodes the same.
//!
//! Needs a python with python-can and msgpack: `CANMC_PYTHON`, else `<repo>/.venv/bin/python`.
//! Without one the test fails (it does not skip).

use crate::common;
use crate::lab;

use std::collections::BTreeSet;
use std::process::Command;

use canmc::frame::{flags, CanFrame, Channel, ChannelRef, FD_LENGTHS};
use canmc::wire::pycan::{decode, encode, MAX_ENCODED};
use canmc::DecodeError;
use common::{hex, stdout_of};
use lab::python;

fn golden_lines() -> Vec<String> {
    let script = lab::repo().join("tools/pycan_golden.py");
    stdout_of(
        Command::new(python()).arg(&script),
        &script.display().to_string(),
    )
    .lines()
    .map(str::to_owned)
    .collect()
}

fn unhex(s: &str) -> Vec<u8> {
    if s == "-" {
        return Vec::new();
    }
    assert!(s.len() % 2 == 0, "odd hex {s}");
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("hex"))
        .collect()
}

/// The CanFrame for the script's 11-token message description.
fn frame_from(t: &[&str]) -> CanFrame {
    assert_eq!(t.len(), 11, "message tokens: {t:?}");
    let bit = |s: &str, f: u8| match s {
        "1" => f,
        "0" => 0,
        _ => panic!("bool token {s}"),
    };
    let mut f = CanFrame::EMPTY;
    f.timestamp_ns = t[0].parse().expect("ns");
    f.id = t[1].parse().expect("id");
    f.flags = bit(t[2], flags::EXTENDED)
        | bit(t[3], flags::RTR)
        | bit(t[4], flags::ERROR)
        | bit(t[5], flags::FD)
        | bit(t[6], flags::BRS)
        | bit(t[7], flags::ESI);
    f.len = t[8].parse().expect("dlc");
    let data = unhex(t[9]);
    f.data[..data.len()].copy_from_slice(&data);
    if !f.is_remote() {
        assert_eq!(data.len(), f.len as usize, "dlc vs data in {t:?}");
    }
    f.channel = match t[10] {
        "none" => Channel::NONE,
        s if s.starts_with("i:") => Channel::int(s[2..].parse().expect("int channel")),
        s if s.starts_with("s:") => Channel::from_utf8(&unhex(&s[2..])).expect("str channel"),
        s => panic!("channel token {s}"),
    };
    f.validate()
        .unwrap_or_else(|e| panic!("python-can's message {t:?} is not a valid frame: {e}"));
    f
}

fn error_kind(name: &str) -> DecodeError {
    *DecodeError::ALL
        .iter()
        .find(|k| format!("{k:?}") == name)
        .unwrap_or_else(|| panic!("unknown DecodeError kind {name}"))
}

#[test]
fn matches_python_can_both_ways() {
    let lines = golden_lines();
    let mut kinds = BTreeSet::new();
    let (mut encoded, mut decoded, mut rejected) = (0, 0, 0);
    let mut failures = Vec::new();

    for line in &lines {
        let t: Vec<&str> = line.split(' ').collect();
        match t[0] {
            "E" => {
                let name = t[1];
                let frame = frame_from(&t[2..13]);
                let want = unhex(t[13]);
                let mut buf = [0u8; MAX_ENCODED];
                let n = encode(&frame, &mut buf);
                if buf[..n] != want[..] {
                    failures.push(format!(
                        "encode {name}:\n  python-can {}\n  canmc      {}",
                        t[13],
                        hex(&buf[..n])
                    ));
                }
                // python-can's bytes decode back to the same frame.
                let mut back = CanFrame::EMPTY;
                match decode(&want, &mut back) {
                    Ok(())
                        if back.content() == frame.content() && back.channel == frame.channel => {}
                    other => failures.push(format!("decode of E {name}: {other:?} {back:?}")),
                }
                kinds.extend(frame_kinds(&frame));
                encoded += 1;
            }
            "D" => {
                let name = t[1];
                let datagram = unhex(t[2]);
                let want = frame_from(&t[3..14]);
                let mut got = CanFrame::EMPTY;
                match decode(&datagram, &mut got) {
                    Ok(()) if got == want => {}
                    other => failures.push(format!(
                        "decode {name}: {other:?}\n  got  {got:?}\n  want {want:?}"
                    )),
                }
                kinds.insert(format!("variant:{}", variant_kind(name)));
                decoded += 1;
            }
            "R" => {
                let name = t[1];
                let datagram = unhex(t[2]);
                let want = error_kind(t[3]);
                let mut got = CanFrame::EMPTY;
                let res = decode(&datagram, &mut got);
                if res != Err(want) {
                    failures.push(format!("reject {name}: got {res:?}, want {want:?}"));
                }
                rejected += 1;
            }
            other => panic!("unexpected line kind {other:?} in {line}"),
        }
    }
    assert!(
        failures.is_empty(),
        "{} mismatches:\n{}",
        failures.len(),
        failures.join("\n")
    );

    // The table must keep covering every kind; a shortened script fails here.
    let mut need: Vec<String> = [
        "std",
        "ext",
        "rtr",
        "rtr_len>0",
        "error",
        "brs",
        "esi",
        "brs+esi",
        "ch:none",
        "ch:str",
        "ch:int>=0",
        "ch:int<0",
        "ch:int>u32",
        "ch:int<i32",
        "ts:0",
        "ts:>2^53",
    ]
    .iter()
    .map(|s| s.to_string())
    .collect();
    need.extend(FD_LENGTHS.iter().map(|l| format!("fd{l}")));
    need.extend(
        [
            "shuffled",
            "without",
            "only_id_and_data",
            "data_as_list",
            "int_timestamp",
            "bools_as_ints",
            "unknown_keys",
            "everything",
        ]
        .iter()
        .map(|v| format!("variant:{v}")),
    );
    let missing: Vec<_> = need.iter().filter(|k| !kinds.contains(*k)).collect();
    assert!(missing.is_empty(), "golden table lacks {missing:?}");
    assert!(
        encoded >= 100 && decoded >= 80 && rejected >= 15,
        "{encoded} {decoded} {rejected}"
    );
}

fn frame_kinds(f: &CanFrame) -> Vec<String> {
    let mut k = vec![if f.is_extended() { "ext" } else { "std" }.to_string()];
    if f.is_remote() {
        k.push("rtr".into());
        if f.len > 0 {
            k.push("rtr_len>0".into());
        }
    }
    if f.is_error() {
        k.push("error".into());
    }
    if f.is_fd() {
        k.push(format!("fd{}", f.len));
        match (f.brs(), f.esi()) {
            (true, true) => k.push("brs+esi".into()),
            (true, false) => k.push("brs".into()),
            (false, true) => k.push("esi".into()),
            _ => {}
        }
    }
    k.push(match f.channel.get() {
        ChannelRef::None => "ch:none".into(),
        ChannelRef::Str(_) => "ch:str".into(),
        ChannelRef::Int(v) if v > u32::MAX as i64 => "ch:int>u32".into(),
        ChannelRef::Int(v) if v < i32::MIN as i64 => "ch:int<i32".into(),
        ChannelRef::Int(v) if v < 0 => "ch:int<0".into(),
        ChannelRef::Int(_) => "ch:int>=0".into(),
    });
    if f.timestamp_ns == 0 {
        k.push("ts:0".into());
    } else if f.timestamp_ns > 1 << 53 {
        k.push("ts:>2^53".into());
    }
    k
}

/// The variant a D line's name (`b<i>_<variant>...`) stands for.
fn variant_kind(name: &str) -> &str {
    let v = name.split_once('_').map_or(name, |(_, v)| v);
    for known in ["shuffled", "without", "unknown_keys"] {
        if v.starts_with(known) {
            return known;
        }
    }
    v
}
