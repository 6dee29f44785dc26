//! Vector and PEAK formats against their peers, both ways, every field compared:
//! python-can 4.6's ASCReader/ASCWriter, BLFReader/BLFWriter, TRCReader/TRCWriter and
//! CanutilsLogReader/Writer read what canmc writes and canmc reads what they write;
//! can-utils' `log2asc`/`asc2log` are a second opinion on `.log` ↔ `.asc`.
//!
//! Where python-can itself is wrong the test says so and checks the rest. A missing
//! peer (no python-can venv, no can-utils) fails the test with how to install it.
//! Files only: nothing here touches the network.

use crate::common::stdout_of;
use crate::lab::python;

use std::path::{Path, PathBuf};
use std::process::Command;

use canmc::convert::{create_writer, read_events, FileFormat, ReadOptions, WriterOptions};
use canmc::event::Event;
use canmc::frame::{CanFrame, Channel, Direction};

fn tmp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("canmc-vector-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

const T0: u64 = 1_700_000_000_123_456_000;

/// Every frame kind, both directions, raw DLCs, three channels; whole µs (every peer
/// format keeps µs).
fn frames(raw_dlc: bool, errors: bool) -> Vec<CanFrame> {
    let mut texts = vec![
        "123#DEADBEEF",
        "000#",
        "7FF#0011223344556677",
        "1ABCDEF0#0011223344556677",
        "00000001#AA",
        "123#R",
        "123#R4",
        "1ABCDEF0#R8",
        "123##1AA",
        "456##20011223344556677",
        "1ABCDEF0##3000102030405060708090A0B",
        "7FF##0000102030405060708090A0B0C0D0E0F10111213",
        "00000042##1000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
        "321##70001020304050607000102030405060700010203040506070001020304050607000102030405060700010203040506070001020304050607FFFFFFFFFFFFFFFF",
    ];
    if raw_dlc {
        texts.push("123#1122334455667788_C");
        texts.push("1ABCDEF0#0102030405060708_9");
    }
    if errors {
        texts.push("20000084#0004000000000000");
    }
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| {
            let mut f: CanFrame = t.parse().unwrap_or_else(|e| panic!("{t}: {e}"));
            f.timestamp_ns = T0 + i as u64 * 1_234_567_000;
            f.channel = Channel::int(i as i64 % 3);
            if i % 3 == 1 {
                f.set_direction(Direction::Tx);
            }
            f
        })
        .collect()
}

fn write(path: &Path, frames: &[CanFrame]) {
    let format = FileFormat::from_path(path).unwrap();
    let mut w = create_writer(path, format, WriterOptions::default()).unwrap();
    for f in frames {
        w.write_frame(f).unwrap();
    }
    w.finish().unwrap();
}

fn read(path: &Path) -> Vec<CanFrame> {
    let format = FileFormat::from_path(path).unwrap();
    let mut got = Vec::new();
    read_events(path, format, ReadOptions::default(), &mut |e| {
        if let Event::Frame(f) = e {
            got.push(*f);
        }
        true
    })
    .unwrap_or_else(|e| panic!("canmc reading {}: {e}", path.display()));
    got
}

/// One message as python-can sees it.
#[derive(Debug, Clone, PartialEq)]
struct Msg {
    t: f64,
    id: u32,
    ext: bool,
    rtr: bool,
    err: bool,
    fd: bool,
    brs: bool,
    esi: bool,
    rx: bool,
    dlc: u32,
    data: Vec<u8>,
    channel: String,
}

const FIELDS: &str = r#"
def row(m):
    return "\t".join([repr(m.timestamp), str(m.arbitration_id), str(int(m.is_extended_id)),
        str(int(m.is_remote_frame)), str(int(m.is_error_frame)), str(int(m.is_fd)),
        str(int(m.bitrate_switch)), str(int(m.error_state_indicator)), str(int(m.is_rx)),
        str(m.dlc), bytes(m.data).hex(), str(m.channel)])
"#;

fn parse_rows(text: &str) -> Vec<Msg> {
    text.lines()
        .map(|l| {
            let c: Vec<&str> = l.split('\t').collect();
            assert_eq!(c.len(), 12, "{l}");
            let b = |s: &str| s == "1";
            Msg {
                t: c[0].parse().unwrap(),
                id: c[1].parse().unwrap(),
                ext: b(c[2]),
                rtr: b(c[3]),
                err: b(c[4]),
                fd: b(c[5]),
                brs: b(c[6]),
                esi: b(c[7]),
                rx: b(c[8]),
                dlc: c[9].parse().unwrap(),
                data: (0..c[10].len() / 2)
                    .map(|i| u8::from_str_radix(&c[10][2 * i..2 * i + 2], 16).unwrap())
                    .collect(),
                channel: c[11].to_string(),
            }
        })
        .collect()
}

/// python-can's reader for `path`'s extension.
fn pycan_read(path: &Path) -> Vec<Msg> {
    let script = format!(
        "{FIELDS}
import sys, can
p = sys.argv[1]
if p.endswith('.asc'):
    r = can.ASCReader(p, relative_timestamp=False)
elif p.endswith('.blf'):
    r = can.BLFReader(p)
elif p.endswith('.trc'):
    r = can.TRCReader(p)
else:
    r = can.CanutilsLogReader(p)
for m in r:
    print(row(m))
"
    );
    let what = format!("python-can reading {}", path.display());
    parse_rows(&stdout_of(
        Command::new(python()).arg("-c").arg(script).arg(path),
        &what,
    ))
}

/// The messages python-can's writer for `path`'s extension writes, as it sees them
/// before writing (the script prints them): every kind its writer takes.
fn pycan_write(path: &Path) -> Vec<Msg> {
    let script = format!(
        "{FIELDS}
import sys, can
p = sys.argv[1]
t0 = 1700000000.123456
M = can.Message
ms = [
    M(timestamp=t0, arbitration_id=0x123, is_extended_id=False, data=b'\\xde\\xad\\xbe\\xef', channel=0),
    M(timestamp=t0+0.5, arbitration_id=0x1abcdef0, is_extended_id=True, data=bytes(8), channel=1, is_rx=False),
    M(timestamp=t0+1.25, arbitration_id=0x7ff, is_extended_id=False, data=b'', channel=2),
    M(timestamp=t0+1.5, arbitration_id=0x100, is_extended_id=False, is_remote_frame=True, dlc=4, channel=0),
    M(timestamp=t0+2.0, arbitration_id=0x42, is_extended_id=False, is_fd=True, bitrate_switch=True, data=bytes(range(12)), channel=0),
    M(timestamp=t0+2.5, arbitration_id=0x42, is_extended_id=True, is_fd=True, error_state_indicator=True, data=bytes(range(64)), channel=1, is_rx=False),
    M(timestamp=t0+3.0, is_error_frame=True, arbitration_id=0x80, is_extended_id=False, data=bytes(8), channel=0),
]
if p.endswith('.asc'):
    w = can.ASCWriter(p)
elif p.endswith('.blf'):
    w = can.BLFWriter(p)
elif p.endswith('.trc'):
    w = can.TRCWriter(p)
    # python-can's TRCWriter writes classic data frames only (it logs a warning and
    # drops remote, FD and error frames).
    ms = [m for m in ms if not (m.is_remote_frame or m.is_fd or m.is_error_frame)]
else:
    w = can.CanutilsLogWriter(p)
for m in ms:
    w.on_message_received(m)
    print(row(m))
w.stop()
"
    );
    let what = format!("python-can writing {}", path.display());
    parse_rows(&stdout_of(
        Command::new(python()).arg("-c").arg(script).arg(path),
        &what,
    ))
}

/// The number of an integer channel (the tests use only those).
fn channel_number(ch: &Channel) -> i64 {
    match ch.get() {
        canmc::frame::ChannelRef::Int(n) => n,
        other => panic!("not an integer channel: {other:?}"),
    }
}

fn close(t: f64, ns: u64) -> bool {
    // µs kept by every format; python-can's float arithmetic adds < 1 µs.
    (t - ns as f64 / 1e9).abs() < 1.6e-6
}

/// python-can reads what canmc writes, per format.
#[test]
fn python_can_reads_what_canmc_writes() {
    for ext in ["asc", "blf", "trc", "log"] {
        // python-can's .log reader cannot read a raw DLC (`_C`: int('…_C', 16) fails).
        let fs = frames(ext != "log", true);
        let path = tmp_path(&format!("to-pycan.{ext}"));
        write(&path, &fs);
        let got = pycan_read(&path);
        // python-can's TRC reader skips error frames (ER lines).
        let want: Vec<&CanFrame> = fs
            .iter()
            .filter(|f| !(ext == "trc" && f.is_error()))
            .collect();
        assert_eq!(got.len(), want.len(), "{ext}: {got:#?}");
        for (m, f) in got.iter().zip(want) {
            let what = format!("{ext}: {f:?} read by python-can as {m:?}");
            assert!(close(m.t, f.timestamp_ns), "{what}: time");
            assert_eq!(m.err, f.is_error(), "{what}: error");
            if f.is_error() {
                // ASC and .log error frames have no class or data (python-can's
                // readers); BLF keeps them as canmc writes them (ID = class).
                if ext == "blf" {
                    assert_eq!((m.id, &m.data[..]), (f.id, f.payload()), "{what}");
                }
                continue;
            }
            assert_eq!(m.id, f.id, "{what}: id");
            assert_eq!(m.ext, f.is_extended(), "{what}: IDE");
            assert_eq!(m.fd, f.is_fd(), "{what}: FD");
            // python-can's ASC reader calls a CAN FD frame of 0 bytes remote (its own
            // files too); FD frames cannot be remote.
            if !(ext == "asc" && f.is_fd()) {
                assert_eq!(m.rtr, f.is_remote(), "{what}: RTR");
            }
            // python-can's TRC reader takes FB for BRS+ESI-less, FE as BRS and BI as
            // ESI only (PEAK: FB = BRS, FE = ESI, BI = both): BRS is wrong for FE and
            // BI; ESI it reads right.
            if !(ext == "trc" && f.esi()) {
                assert_eq!(m.brs, f.brs(), "{what}: BRS");
            }
            assert_eq!(m.esi, f.esi(), "{what}: ESI");
            assert_eq!(m.rx, f.direction() == Direction::Rx, "{what}: direction");
            if !f.is_remote() {
                assert_eq!(&m.data[..], f.payload(), "{what}: data");
            }
            // DLC: python-can gives the length for FD (except TRC, where it takes the
            // DLC column as is) and the DLC for classic frames, raw (9–15) in BLF and
            // TRC; its ASC reader turns a classic `d C` into dlc2len(C) = 24.
            let dlc = match ext {
                "asc" if f.raw_dlc != 0 => canmc::frame::dlc_to_len(f.raw_dlc) as u32,
                "trc" => f.dlc() as u32,
                _ if f.is_fd() => f.len as u32,
                _ => f.dlc() as u32,
            };
            assert_eq!(m.dlc, dlc, "{what}: DLC");
            // Channel: canmc writes channel n as ASC/BLF/TRC channel n + 1, as
            // python-can's writers do; its ASC and BLF readers subtract the 1 again, its
            // TRC reader does not (python-can's TRC files gain 1 per round trip).
            let n = channel_number(&f.channel);
            let ch = match ext {
                "trc" => format!("{}", n + 1),
                "log" => format!("can{n}"),
                _ => format!("{n}"),
            };
            assert_eq!(m.channel, ch, "{what}: channel");
        }
    }
}

/// canmc reads what python-can writes, per format.
#[test]
fn canmc_reads_what_python_can_writes() {
    for ext in ["asc", "blf", "trc", "log"] {
        let path = tmp_path(&format!("from-pycan.{ext}"));
        let sent = pycan_write(&path);
        let got = read(&path);
        assert_eq!(got.len(), sent.len(), "{ext}: {got:#?}");
        for (f, m) in got.iter().zip(&sent) {
            let what = format!("{ext}: python-can wrote {m:?}, canmc read {f:?}");
            if ext == "asc" {
                // python-can's ASCWriter puts its first message at offset 0 from a
                // `Begin Triggerblock` date with milliseconds: the absolute times lose
                // the first message's sub-millisecond part (the same for all); times
                // relative to the first are kept to the µs.
                let d = (m.t - sent[0].t) - (f.timestamp_ns - got[0].timestamp_ns) as f64 / 1e9;
                assert!(d.abs() < 1.6e-6, "{what}: relative time");
                assert!(
                    (m.t - f.timestamp_ns as f64 / 1e9).abs() < 1e-3,
                    "{what}: time"
                );
            } else {
                assert!(close(m.t, f.timestamp_ns), "{what}: time");
            }
            assert_eq!(f.is_error(), m.err, "{what}: error");
            if m.err {
                // python-can writes error frames without class (ASC, .log: as a bus
                // error 0x20000080; BLF: its arbitration ID, 0x80 here, and data).
                assert_eq!(f.id, 0x80, "{what}: error class");
                continue;
            }
            assert_eq!(f.id, m.id, "{what}: id");
            assert_eq!(f.is_extended(), m.ext, "{what}: IDE");
            assert_eq!(f.is_remote(), m.rtr, "{what}: RTR");
            assert_eq!(f.is_fd(), m.fd, "{what}: FD");
            assert_eq!(f.brs(), m.brs, "{what}: BRS");
            assert_eq!(f.esi(), m.esi, "{what}: ESI");
            assert_eq!(f.direction() == Direction::Rx, m.rx, "{what}: direction");
            assert_eq!(f.payload(), &m.data[..], "{what}: data");
            // python-can's CanutilsLogWriter writes `#R` without the requested length.
            if m.rtr && ext != "log" {
                assert_eq!(f.len as u32, m.dlc, "{what}: requested length");
            }
            // python-can writes channel n as n + 1 (ASC, BLF, TRC) or can<n> (.log).
            match ext {
                "log" => assert_eq!(f.channel.to_string(), format!("can{}", m.channel)),
                _ => assert_eq!(channel_number(&f.channel).to_string(), m.channel),
            }
        }
    }
}

/// can-utils' converters agree with canmc on `.log` ↔ `.asc`: canmc's log through
/// `log2asc` reads back (in canmc) as the frames written; canmc's ASC through `asc2log`
/// too.
#[test]
fn can_utils_log2asc_and_asc2log_agree() {
    for tool in ["log2asc", "asc2log"] {
        let ok = Command::new(tool)
            .arg("-h")
            .output()
            .map(|o| !o.stdout.is_empty() || !o.stderr.is_empty())
            .unwrap_or(false);
        assert!(
            ok,
            "{tool} (can-utils) is required for this test: `apt-get install can-utils`"
        );
    }
    // can-utils 2020.11 knows neither direction nor raw DLC in these tools; its log2asc
    // writes channel numbers from the interface map given with -I/--.
    let fs: Vec<CanFrame> = frames(false, false)
        .into_iter()
        .map(|mut f| {
            f.set_direction(Direction::Rx);
            f.channel = Channel::str("can0").unwrap();
            f
        })
        .collect();
    let log = tmp_path("cu.log");
    write(&log, &fs);
    let asc = tmp_path("cu-from-log2asc.asc");
    let o = Command::new("log2asc")
        .args([
            "-I",
            log.to_str().unwrap(),
            "-O",
            asc.to_str().unwrap(),
            "can0",
        ])
        .output()
        .expect("run log2asc");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let back = read(&asc);
    assert_eq!(back.len(), fs.len(), "log2asc output read by canmc");
    for (b, f) in back.iter().zip(&fs) {
        let what = format!("log2asc: {f:?} came back as {b:?}");
        assert_eq!(b.content(), f.content(), "{what}");
        // log2asc writes times since the first frame with no date: relative.
        assert_eq!(
            b.timestamp_ns as i128 - back[0].timestamp_ns as i128,
            f.timestamp_ns as i128 - fs[0].timestamp_ns as i128,
            "{what}: time"
        );
    }

    let asc = tmp_path("cu.asc");
    write(&asc, &fs);
    let log2 = tmp_path("cu-from-asc2log.log");
    let o = Command::new("asc2log")
        .args(["-I", asc.to_str().unwrap(), "-O", log2.to_str().unwrap()])
        .output()
        .expect("run asc2log");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let back = read(&log2);
    assert_eq!(back.len(), fs.len(), "asc2log output read by canmc");
    for (b, f) in back.iter().zip(&fs) {
        let what = format!("asc2log: {f:?} came back as {b:?}");
        assert_eq!(b.content(), f.content(), "{what}");
        // asc2log 2020.11 turns the `date` line (with milliseconds) into a start time
        // that is off by a constant (years); the times relative to the first frame are
        // what it gets right, and those are exact.
        assert_eq!(
            b.timestamp_ns as i128 - back[0].timestamp_ns as i128,
            f.timestamp_ns as i128 - fs[0].timestamp_ns as i128,
            "{what}: time"
        );
    }
}
