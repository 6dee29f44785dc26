//! Logger files and the data lake against real peers: DuckDB queries canmc's Parquet
//! (single file and Hive partitions) and answers what `canmc info` says; asammdf opens
//! canmc's `.mf4`; python-can's MF4Reader reads it and its MF4Writer writes what canmc
//! reads. Peers come from `tools/setup-venv.sh` (`<repo>/.venv`) or `CANMC_PYTHON`; a
//! missing peer fails the test.

use crate::common::{self, json_u64, stdout_of};
use crate::lab;

use std::path::{Path, PathBuf};
use std::process::Command;

use canmc::convert::mf4::{Layout, Mf4Options};
use canmc::convert::{create_writer, read_events, FileFormat, ReadOptions, WriterOptions};
use canmc::engine::Event;
use canmc::frame::{CanFrame, Channel, ChannelRef, Direction, SenderAddr};

/// The venv python, checked to import `modules`; panics with how to get them.
fn python_with(modules: &str) -> PathBuf {
    let py = match std::env::var_os("CANMC_PYTHON") {
        Some(p) if !p.is_empty() => PathBuf::from(p),
        _ => lab::repo().join(".venv/bin/python"),
    };
    let out = Command::new(&py)
        .args(["-c", &format!("import {modules}")])
        .output();
    let ok = out.as_ref().map(|o| o.status.success()).unwrap_or(false);
    assert!(
        ok,
        "peer missing: {} cannot import {modules} ({}); run `bash tools/setup-venv.sh` or set \
         CANMC_PYTHON",
        py.display(),
        out.map(|o| String::from_utf8_lossy(&o.stderr).trim().to_string())
            .unwrap_or_else(|e| e.to_string())
    );
    py
}

fn tmp(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("canmc-lake-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

const T0: u64 = 1_796_288_400_000_000_000 - 1_500_000_000_000; // 2026-12-03T08:35Z

fn fr(text: &str, ns: u64) -> CanFrame {
    let mut f: CanFrame = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
    f.timestamp_ns = ns;
    f
}

/// Every frame kind, ns-precise times, channels, both directions, a raw DLC.
fn all_kinds() -> Vec<CanFrame> {
    let texts = [
        "123#DEADBEEF",
        "000#",
        "7FF#0011223344556677",
        "1ABCDEF0#0011223344556677",
        "123#R",
        "123#R4",
        "1ABCDEF0#R8",
        "20000084#0004000000000000",
        "123##0",
        "123##1AA",
        "456##20011223344556677",
        "1ABCDEF0##3000102030405060708090A0B",
        "321##70001020304050607000102030405060700010203040506070001020304050607000102030405060700010203040506070001020304050607FFFFFFFFFFFFFFFF",
        "042#1122334455667788",
    ];
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut f = fr(t, T0 + i as u64 * 1_000_003_001);
            f.channel = Channel::int((i % 3) as i64);
            if i % 4 == 1 {
                f.set_direction(Direction::Tx);
            }
            if i == texts.len() - 1 {
                f.raw_dlc = 11;
            }
            f
        })
        .collect()
}

fn write(path: &Path, opts: WriterOptions, events: &[Event]) {
    let format = FileFormat::from_path(path).unwrap();
    let mut w = create_writer(path, format, opts).unwrap();
    for e in events {
        w.write_event(e).unwrap();
    }
    w.finish().unwrap();
}

fn read(path: &Path) -> Vec<Event> {
    let mut got = Vec::new();
    read_events(
        path,
        FileFormat::from_path(path).unwrap(),
        ReadOptions::default(),
        &mut |e| {
            got.push(*e);
            true
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    got
}

/// A recording with many IDs over two UTC hours, losses and kernel drops.
fn recording(path: &Path) -> Vec<Event> {
    let sender = SenderAddr::from("127.0.0.1:40000".parse::<std::net::SocketAddr>().unwrap());
    let mut events = Vec::new();
    let kinds = all_kinds();
    for k in 0..20_000u64 {
        let mut f = kinds[(k % kinds.len() as u64) as usize];
        f.id = if f.is_error() {
            f.id
        } else {
            (k as u32 * 7) % 50 + if f.is_extended() { 0x10000 } else { 0 }
        };
        f.timestamp_ns = T0 + k * 150_000_001; // ~50 minutes: crosses 09:00
        f.sender = sender;
        events.push(Event::Frame(f));
        if k % 5000 == 17 {
            events.push(Event::Loss {
                sender,
                lost: k / 100 + 1,
                timestamp_ns: f.timestamp_ns + 1,
            });
        }
        if k % 7000 == 3 {
            events.push(Event::KernelDrops {
                count: 2,
                timestamp_ns: f.timestamp_ns + 2,
            });
        }
    }
    write(path, WriterOptions::default(), &events);
    events
}

/// Runs DuckDB over `src` (a file or a glob) and prints: frames, first ns, last ns,
/// distinct IDs, payload bytes, loss rows, lost datagrams, drop rows, kernel drops,
/// then one line per (id, extended, frames).
fn duckdb_answers(py: &Path, src: &str) -> (Vec<u64>, Vec<(u32, bool, u64)>) {
    let script = r#"
import duckdb, sys
src = sys.argv[1]
rel = f"read_parquet('{src}', hive_partitioning = true)"
row = duckdb.sql(f"""
  SELECT count(*) FILTER (WHERE event = 'frame'),
         epoch_ns(min(timestamp) FILTER (WHERE event = 'frame')),
         epoch_ns(max(timestamp) FILTER (WHERE event = 'frame')),
         count(DISTINCT (id, extended)) FILTER (WHERE event = 'frame'),
         coalesce(sum(octet_length(data)), 0),
         count(*) FILTER (WHERE event = 'loss'),
         coalesce(sum(lost) FILTER (WHERE event = 'loss'), 0),
         count(*) FILTER (WHERE event = 'kernel_drops'),
         coalesce(sum(lost) FILTER (WHERE event = 'kernel_drops'), 0)
  FROM {rel}""").fetchall()[0]
print("\t".join(str(v) for v in row))
for r in duckdb.sql(f"""SELECT id, extended, count(*) FROM {rel} WHERE event = 'frame'
                        GROUP BY id, extended ORDER BY id, extended""").fetchall():
    print(f"{r[0]}\t{int(r[1])}\t{r[2]}")
"#;
    let out = stdout_of(
        Command::new(py).arg("-c").arg(script).arg(src),
        &format!("duckdb on {src}"),
    );
    let mut lines = out.lines();
    let totals = lines
        .next()
        .unwrap()
        .split('\t')
        .map(|v| v.parse().unwrap_or_else(|_| panic!("{v} in {out}")))
        .collect();
    let ids = lines
        .map(|l| {
            let v: Vec<&str> = l.split('\t').collect();
            (v[0].parse().unwrap(), v[1] == "1", v[2].parse().unwrap())
        })
        .collect();
    (totals, ids)
}

#[test]
fn duckdb_answers_what_canmc_info_says() {
    let py = python_with("duckdb");
    let cmc = tmp("lake.cmc");
    let events = recording(&cmc);
    let pq = tmp("lake.parquet");
    let part = tmp("lake-parts");
    let _ = std::fs::remove_dir_all(&part);
    common::ok(&common::canmc(&[
        "convert",
        cmc.to_str().unwrap(),
        pq.to_str().unwrap(),
    ]));
    common::ok(&common::canmc(&[
        "convert",
        cmc.to_str().unwrap(),
        part.to_str().unwrap(),
        "--partition",
        "hour",
    ]));
    let info = stdout_of(
        &mut common::command(&["info", "--json", cmc.to_str().unwrap()]),
        "canmc info",
    );
    // Bytes and per-ID counts, from the source recording.
    let mut bytes = 0u64;
    let mut per_id = std::collections::BTreeMap::new();
    for e in &events {
        if let Event::Frame(f) = e {
            bytes += f.payload().len() as u64;
            *per_id.entry((f.id, f.is_extended())).or_insert(0u64) += 1;
        }
    }
    let want_ids: Vec<(u32, bool, u64)> = per_id.iter().map(|(&(i, e), &n)| (i, e, n)).collect();
    let want = vec![
        json_u64(&info, "frames"),
        json_u64(&info, "first_ns"),
        json_u64(&info, "last_ns"),
        json_u64(&info, "ids"),
        bytes,
        json_u64(&info, "loss_records"),
        json_u64(&info, "lost_datagrams"),
        json_u64(&info, "kernel_drop_records"),
        json_u64(&info, "kernel_drops"),
    ];
    assert_eq!(want[0], 20_000, "{info}");
    assert!(want[6] > 0 && want[8] > 0, "{info}");
    let glob = format!("{}/**/*.parquet", part.display());
    for src in [pq.to_str().unwrap(), glob.as_str()] {
        let (totals, ids) = duckdb_answers(&py, src);
        assert_eq!(totals, want, "{src}: duckdb vs canmc info {info}");
        assert_eq!(ids, want_ids, "{src}: frames per ID");
    }
    // The partitions are the UTC hours: 08 and 09 of 2026-12-03.
    let hours = stdout_of(
        Command::new(&py).arg("-c").arg(
            "import duckdb,sys\nfor r in duckdb.sql(f\"SELECT date, hour, count(*), min(hour(timestamp AT TIME ZONE 'UTC')) FROM read_parquet('{sys.argv[1]}', hive_partitioning=true) GROUP BY ALL ORDER BY ALL\").fetchall(): print(*r)",
        ).arg(&glob),
        "duckdb partitions",
    );
    let lines: Vec<&str> = hours.lines().collect();
    assert_eq!(lines.len(), 2, "{hours}");
    // (DuckDB types `hour=08` as a string.)
    assert!(
        lines[0].starts_with("2026-12-03 08 ") && lines[0].ends_with(" 8"),
        "{hours}"
    );
    assert!(
        lines[1].starts_with("2026-12-03 09 ") && lines[1].ends_with(" 9"),
        "{hours}"
    );
    // And canmc reads its Parquet back to the events of the source.
    assert_eq!(read(&pq), read(&cmc));
}

/// asammdf's view of a canmc `.mf4`: per group, rows of
/// (ns, BusChannel, ID, IDE, DLC, DataLength, data hex, Dir, EDL, BRS, ESI).
fn asammdf_rows(py: &Path, path: &Path) -> Vec<String> {
    let script = r#"
import sys
from asammdf import MDF
mdf = MDF(sys.argv[1])
start = mdf.header.start_time.timestamp()
start_ns = int(round(start)) * 1_000_000_000
for gi, g in enumerate(mdf.groups):
    names = [c.name for c in g.channels]
    kind = [n for n in ("CAN_DataFrame", "CAN_ErrorFrame", "CAN_RemoteFrame") if n in names]
    assert kind, names
    kind = kind[0]
    assert g.channel_group.acq_source.bus_type == 2, "bus type CAN"
    sig = mdf.get(kind, gi, raw=True)
    t = mdf.get_master(gi)
    s = sig.samples
    for i in range(len(s)):
        def f(m, default=0):
            n = kind + "." + m
            return int(s[n][i]) if n in s.dtype.names else default
        n = f("DataLength")
        data = bytes(s[kind + ".DataBytes"][i][:n]).hex() if kind + ".DataBytes" in s.dtype.names else ""
        ns = start_ns + int(round(float(t[i]) * 1e9))
        print(kind, ns, f("BusChannel"), f("ID"), f("IDE"), f("DLC"), n, data, f("Dir"), f("EDL"), f("BRS"), f("ESI"))
"#;
    let out = stdout_of(
        Command::new(py).arg("-c").arg(script).arg(path),
        &format!("asammdf on {}", path.display()),
    );
    let mut rows: Vec<String> = out.lines().map(str::to_owned).collect();
    rows.sort();
    rows
}

fn expected_asammdf_row(f: &CanFrame) -> String {
    let kind = if f.is_remote() {
        "CAN_RemoteFrame"
    } else if f.is_error() {
        "CAN_ErrorFrame"
    } else {
        "CAN_DataFrame"
    };
    let ch = match f.channel.get() {
        ChannelRef::Int(n) => n,
        _ => 0,
    };
    let data: String = f.payload().iter().map(|b| format!("{b:02x}")).collect();
    format!(
        "{kind} {} {ch} {} {} {} {} {data} {} {} {} {}",
        f.timestamp_ns,
        f.id,
        u8::from(f.is_extended()),
        f.dlc(),
        f.len,
        u8::from(f.direction() == Direction::Tx),
        u8::from(f.is_fd()),
        u8::from(f.brs()),
        u8::from(f.esi())
    )
}

#[test]
fn asammdf_opens_canmc_mf4_with_the_same_frames() {
    let py = python_with("asammdf");
    let frames = all_kinds();
    let events: Vec<Event> = frames.iter().map(|f| Event::Frame(*f)).collect();
    let mut want: Vec<String> = frames.iter().map(expected_asammdf_row).collect();
    want.sort();
    for (compress, layout) in [
        (false, Layout::Sorted),
        (true, Layout::Sorted),
        (false, Layout::Unsorted),
        (true, Layout::Unsorted),
    ] {
        let path = tmp(&format!("asam-{compress}-{layout:?}.mf4"));
        let opts = WriterOptions {
            mf4: Mf4Options { compress, layout },
            ..WriterOptions::default()
        };
        write(&path, opts, &events);
        assert_eq!(asammdf_rows(&py, &path), want, "{compress} {layout:?}");
    }
}

const PYCAN_FIELDS: &str = r#"
def row(m):
    return "\t".join([
        "%.6f" % m.timestamp, str(m.arbitration_id), str(int(m.is_extended_id)),
        str(int(m.is_remote_frame)), str(int(m.is_error_frame)), str(m.dlc),
        bytes(m.data).hex(), str(int(m.is_fd)), str(int(m.bitrate_switch)),
        str(int(m.error_state_indicator)), str(m.channel), str(int(m.is_rx)),
    ])
"#;

fn pycan_row(f: &CanFrame) -> String {
    let ch = match f.channel.get() {
        ChannelRef::Int(n) => n,
        _ => 0,
    };
    let dlc = f.len;
    format!(
        "{:.6}\t{}\t{}\t{}\t{}\t{dlc}\t{}\t{}\t{}\t{}\t{ch}\t{}",
        f.timestamp_ns as f64 / 1e9,
        f.id,
        u8::from(f.is_extended()),
        u8::from(f.is_remote()),
        u8::from(f.is_error()),
        f.payload()
            .iter()
            .map(|b| format!("{b:02x}"))
            .collect::<String>(),
        u8::from(f.is_fd()),
        u8::from(f.brs()),
        u8::from(f.esi()),
        u8::from(f.direction() == Direction::Rx),
    )
}

/// Compares two rows field by field, the timestamp within 1 µs (python-can keeps a
/// float of seconds; asammdf's start time keeps µs).
fn same_row(got: &str, want: &str) -> bool {
    let g: Vec<&str> = got.split('\t').collect();
    let w: Vec<&str> = want.split('\t').collect();
    let (tg, tw): (f64, f64) = (g[0].parse().unwrap(), w[0].parse().unwrap());
    (tg - tw).abs() <= 1.5e-6 && g[1..] == w[1..]
}

#[test]
fn python_can_mf4_reader_reads_what_canmc_writes() {
    let py = python_with("can, asammdf");
    let frames = all_kinds();
    let events: Vec<Event> = frames.iter().map(|f| Event::Frame(*f)).collect();
    for compress in [false, true] {
        let path = tmp(&format!("pycan-read-{compress}.mf4"));
        let opts = WriterOptions {
            mf4: Mf4Options {
                compress,
                layout: Layout::Sorted,
            },
            ..WriterOptions::default()
        };
        write(&path, opts, &events);
        let script = format!(
            "import sys, can\n{PYCAN_FIELDS}\nfor m in can.MF4Reader(sys.argv[1]):\n    print(row(m))\n"
        );
        let out = stdout_of(
            Command::new(&py).arg("-c").arg(&script).arg(&path),
            "python-can MF4Reader",
        );
        let rows: Vec<&str> = out.lines().collect();
        assert_eq!(rows.len(), frames.len(), "{out}");
        for (r, f) in rows.iter().zip(&frames) {
            // python-can's reader takes the DLC from the data length: the raw DLC
            // 9–15 shows as 8 there (canmc reads it back, see the round trip).
            let want = pycan_row(f);
            assert!(
                same_row(r, &want),
                "compress {compress}:\n got  {r}\n want {want}"
            );
        }
    }
}

#[test]
fn canmc_reads_what_python_can_mf4_writer_writes() {
    let py = python_with("can, asammdf");
    let path = tmp("pycan-written.mf4");
    let script = format!(
        r#"
import sys, can
{PYCAN_FIELDS}
t0 = 1796288400.25
msgs = [
    can.Message(timestamp=t0, arbitration_id=0x123, data=b"\xde\xad\xbe\xef", is_extended_id=False, channel=1),
    can.Message(timestamp=t0 + 0.001, arbitration_id=0x1ABCDEF0, data=bytes(range(8)), is_extended_id=True, channel=0, is_rx=False),
    can.Message(timestamp=t0 + 0.002, arbitration_id=0x7FF, data=b"", is_extended_id=False, channel=2),
    can.Message(timestamp=t0 + 0.003, arbitration_id=0x123, is_remote_frame=True, dlc=4, is_extended_id=False, channel=0),
    can.Message(timestamp=t0 + 0.004, arbitration_id=0x1ABCDEF0, is_remote_frame=True, dlc=8, is_extended_id=True, channel=0, is_rx=False),
    can.Message(timestamp=t0 + 0.005, arbitration_id=0x80, is_error_frame=True, data=bytes(8), is_extended_id=True, channel=0),
    can.Message(timestamp=t0 + 0.006, arbitration_id=0x456, data=bytes(range(12)), is_fd=True, bitrate_switch=True, is_extended_id=False, channel=1),
    can.Message(timestamp=t0 + 0.007, arbitration_id=0x1ABCDEF0, data=bytes(range(64)), is_fd=True, error_state_indicator=True, is_extended_id=True, channel=1),
    can.Message(timestamp=t0 + 0.008, arbitration_id=0x321, data=b"\x01", is_fd=True, is_extended_id=False, channel=0, is_rx=False),
]
w = can.MF4Writer(sys.argv[1])
for m in msgs:
    w.on_message_received(m)
w.stop()
for m in msgs:
    print(row(m))
"#
    );
    let out = stdout_of(
        Command::new(&py).arg("-c").arg(&script).arg(&path),
        "python-can MF4Writer",
    );
    let want: Vec<&str> = out.lines().collect();
    let got: Vec<CanFrame> = read(&path)
        .into_iter()
        .map(|e| match e {
            Event::Frame(f) => f,
            other => panic!("{other:?}"),
        })
        .collect();
    assert_eq!(got.len(), want.len());
    for (f, w) in got.iter().zip(&want) {
        let row = pycan_row(f);
        assert!(same_row(&row, w), "\n canmc  {row}\n python {w}");
    }
}

/// `canmc convert` to MF4 (plain, compressed, unsorted) and Parquet and back keeps
/// every field each carries (the source is a Parquet file: it keeps direction and raw
/// DLC); `info` reads both; a truncated MF4 gives one line on stderr and exit 1.
#[test]
fn cli_converts_through_mf4_and_parquet() {
    let src = tmp("cli-src.parquet");
    let frames = all_kinds();
    let events: Vec<Event> = frames.iter().map(|f| Event::Frame(*f)).collect();
    write(&src, WriterOptions::default(), &events);
    assert_eq!(read(&src), events);
    for (name, extra) in [
        ("a.mf4", None),
        ("b.mf4", Some("--mf4-compress")),
        ("c.mf4", Some("--mf4-unsorted")),
        ("d.parquet", None),
    ] {
        let out = tmp(name);
        let mut args = vec!["convert", src.to_str().unwrap(), out.to_str().unwrap()];
        args.extend(extra);
        common::ok(&common::canmc(&args));
        let back = tmp(&format!("{name}.parquet"));
        common::ok(&common::canmc(&[
            "convert",
            out.to_str().unwrap(),
            back.to_str().unwrap(),
        ]));
        assert_eq!(read(&back), events, "{name}");
        let info = stdout_of(
            &mut common::command(&["info", "--json", out.to_str().unwrap()]),
            "canmc info",
        );
        assert_eq!(json_u64(&info, "frames"), frames.len() as u64, "{info}");
    }
    let bytes = std::fs::read(tmp("a.mf4")).unwrap();
    let cut = tmp("cut.mf4");
    std::fs::write(&cut, &bytes[..bytes.len() - 100]).unwrap();
    let out = common::canmc(&["info", cut.to_str().unwrap()]);
    assert_eq!(out.status.code(), Some(1));
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(err.trim().lines().count(), 1, "{err}");
}
