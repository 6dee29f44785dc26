//! canmc's capture files checked by the tools people open them with: tshark decodes
//! canmc's pcap and pcapng field by field, python-can's readers read its `.log` and
//! `.asc`, and canmc reads every candump variant, its own ASC, python-can's ASC and its
//! own pcap/pcapng back.
//!
//! tshark and python-can are required; without them these tests FAIL with how to
//! install them (`apt-get install tshark`; `tools/setup-venv.sh` makes `<repo>/.venv`,
//! or point `CANMC_PYTHON` at a python with python-can).

use crate::common;
use crate::lab;

use std::path::{Path, PathBuf};
use std::process::Command;

use canmc::convert::{
    create_writer, read_events, ConvertError, FileFormat, ReadOptions, ReadStats, WriterOptions,
};
use canmc::frame::{CanFrame, Channel, ChannelRef, SenderAddr};
use canmc::Event;
use common::{hex, stdout_of};
use lab::python;

fn data_dir() -> PathBuf {
    lab::repo().join("tests/data")
}

fn tmp_path(name: &str) -> PathBuf {
    let dir = std::env::temp_dir().join(format!("canmc-conv-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    dir.join(name)
}

fn tshark() -> &'static str {
    let ok = Command::new("tshark")
        .arg("--version")
        .output()
        .map(|o| o.status.success())
        .unwrap_or(false);
    assert!(
        ok,
        "tshark is required for this test and was not found on PATH: `apt-get install tshark`"
    );
    "tshark"
}

/// A frame from cansend text at `ns` on `channel`.
fn fr(text: &str, ns: u64, channel: Channel) -> CanFrame {
    let mut f: CanFrame = text.parse().unwrap_or_else(|e| panic!("{text}: {e}"));
    f.timestamp_ns = ns;
    f.channel = channel;
    f
}

const T0: u64 = 1_700_000_000_123_456_789;

/// Every frame kind of SPEC §1, each at its own ns-precise time.
fn all_kinds() -> Vec<CanFrame> {
    let texts = [
        "123#DEADBEEF",
        "000#",
        "7FF#0011223344556677",
        "1ABCDEF0#0011223344556677",
        "00000001#AA",
        "123#R",
        "123#R4",
        "1ABCDEF0#R8",
        // Error frames: controller problem + bus error (python-can's log reader needs
        // the bus error bit to call it an error frame), and a plain bus error.
        "20000084#0004000000000000",
        "20000080#0000000000000000",
        // CAN FD at several lengths, every BRS/ESI combination.
        "123##0",
        "123##4",
        "123##1AA",
        "456##20011223344556677",
        "1ABCDEF0##3000102030405060708090A0B",
        "7FF##5000102030405060708090A0B0C0D0E0F10111213",
        "00000042##4000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F",
        "321##70001020304050607000102030405060700010203040506070001020304050607000102030405060700010203040506070001020304050607FFFFFFFFFFFFFFFF",
    ];
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| fr(t, T0 + i as u64 * 1_000_003_001, Channel::int(0)))
        .collect()
}

fn write_all(path: &Path, events: &[Event]) {
    let format = FileFormat::from_path(path).unwrap();
    let mut w = create_writer(path, format, WriterOptions::default())
        .unwrap_or_else(|e| panic!("create {}: {e}", path.display()));
    for ev in events {
        w.write_event(ev).unwrap();
    }
    w.finish().unwrap();
}

fn frames_of(frames: &[CanFrame]) -> Vec<Event> {
    frames.iter().map(|f| Event::Frame(*f)).collect()
}

fn read_all(path: &Path, opts: ReadOptions) -> Result<(Vec<CanFrame>, ReadStats), ConvertError> {
    let mut out = Vec::new();
    let stats = read_events(path, FileFormat::from_path(path)?, opts, &mut |ev| {
        if let Event::Frame(f) = ev {
            out.push(*f);
        }
        true
    })?;
    Ok((out, stats))
}

/// [`read_all`] with `--skip-bad`.
fn read_all_skipping_bad(path: &Path) -> (Vec<CanFrame>, ReadStats) {
    let opts = ReadOptions {
        skip_bad: true,
        ..Default::default()
    };
    read_all(path, opts).unwrap()
}

fn b(v: bool) -> &'static str {
    if v {
        "1"
    } else {
        "0"
    }
}

const TSHARK_FIELDS: [&str; 13] = [
    "frame.time_epoch",
    "frame.len",
    "can.id",
    "can.flags.xtd",
    "can.flags.rtr",
    "can.flags.err",
    "can.len",
    "data.data",
    "canfd.flags.brs",
    "canfd.flags.esi",
    "can.err.ctrl",
    "can.err.buserror",
    "can.err.ctrl.rx_warning",
];

/// The row tshark must print for `f` (fields as in [`TSHARK_FIELDS`]).
fn tshark_row(f: &CanFrame) -> Vec<String> {
    let ns = f.timestamp_ns;
    let time = format!("{}.{:09}", ns / 1_000_000_000, ns % 1_000_000_000);
    let s = |x: &str| x.to_string();
    if f.is_error() {
        // The dissector shows the error class bits, not an ID, and no data.
        let class = f.id;
        return vec![
            time,
            s("16"),
            s(""),
            s(""),
            s(""),
            s("1"),
            f.len.to_string(),
            s(""),
            s(""),
            s(""),
            s(b(class & 0x04 != 0)),
            s(b(class & 0x80 != 0)),
            if class & 0x04 != 0 {
                s(b(f.data[1] & 0x04 != 0))
            } else {
                s("")
            },
        ];
    }
    let (fd, rtr) = (f.is_fd(), f.is_remote());
    vec![
        time,
        s(if fd { "72" } else { "16" }),
        f.id.to_string(),
        s(b(f.is_extended())),
        if fd { s("") } else { s(b(rtr)) },
        if fd { s("") } else { s("0") },
        f.len.to_string(),
        // Wireshark 4.0's dissector shows `len` bytes as data even for a remote frame;
        // canmc writes them as zeros.
        if rtr {
            "00".repeat(f.len as usize)
        } else {
            hex(f.payload())
        },
        if fd { s(b(f.brs())) } else { s("") },
        if fd { s(b(f.esi())) } else { s("") },
        s(""),
        s(""),
        s(""),
    ]
}

fn tshark_rows(path: &Path, extra: &[&str]) -> Vec<Vec<String>> {
    let mut cmd = Command::new(tshark());
    cmd.arg("-r")
        .arg(path)
        .args(["-T", "fields", "-E", "separator=|", "-E", "occurrence=f"]);
    for field in TSHARK_FIELDS.iter().chain(extra) {
        cmd.args(["-e", field]);
    }
    stdout_of(&mut cmd, &format!("tshark on {}", path.display()))
        .lines()
        .map(|l| l.split('|').map(str::to_owned).collect())
        .collect()
}

#[test]
fn tshark_decodes_every_frame_kind_in_pcapng_and_pcap() {
    let frames = all_kinds();
    for name in ["kinds.pcapng", "kinds.pcap"] {
        let path = tmp_path(name);
        write_all(&path, &frames_of(&frames));
        let rows = tshark_rows(&path, &[]);
        assert_eq!(rows.len(), frames.len(), "{name}: packet count");
        for (f, row) in frames.iter().zip(&rows) {
            let want = tshark_row(f);
            for (i, field) in TSHARK_FIELDS.iter().enumerate() {
                assert_eq!(row[i], want[i], "{name}: {field} of {f:?}");
            }
        }
        // canmc reads back what it wrote (channels are not kept in pcap).
        let (back, stats) = read_all(&path, ReadOptions::default()).unwrap();
        assert_eq!(stats.events, frames.len() as u64);
        for (a, b) in frames.iter().zip(&back) {
            assert_eq!(a.content(), b.content(), "{name}");
            assert_eq!(a.timestamp_ns, b.timestamp_ns, "{name}");
        }
    }
}

/// Reads a u64 option `code` of the first Interface Statistics Block of a pcapng file.
fn isb_option_u64(bytes: &[u8], code: u16) -> Option<u64> {
    let mut at = 0;
    while at + 12 <= bytes.len() {
        let kind = u32::from_le_bytes(bytes[at..at + 4].try_into().unwrap());
        let len = u32::from_le_bytes(bytes[at + 4..at + 8].try_into().unwrap()) as usize;
        if kind == 5 {
            let mut o = at + 20;
            while o + 4 <= at + len - 4 {
                let c = u16::from_le_bytes([bytes[o], bytes[o + 1]]);
                let l = u16::from_le_bytes([bytes[o + 2], bytes[o + 3]]) as usize;
                if c == 0 {
                    break;
                }
                if c == code && l == 8 {
                    return Some(u64::from_le_bytes(bytes[o + 4..o + 12].try_into().unwrap()));
                }
                o += 4 + l.div_ceil(4) * 4;
            }
        }
        at += len.max(12);
    }
    None
}

#[test]
fn pcapng_tells_losses_in_comments_and_kernel_drops_in_statistics() {
    let path = tmp_path("losses.pcapng");
    let a = fr("123#01", T0, Channel::NONE);
    let b = fr("123#02", T0 + 1000, Channel::NONE);
    let sender: SenderAddr = "127.0.0.1:5000"
        .parse::<std::net::SocketAddr>()
        .unwrap()
        .into();
    write_all(
        &path,
        &[
            Event::Frame(a),
            Event::Loss {
                sender,
                lost: 7,
                timestamp_ns: T0 + 500,
            },
            Event::KernelDrops {
                count: 3,
                timestamp_ns: T0 + 600,
            },
            Event::Frame(b),
            Event::KernelDrops {
                count: 2,
                timestamp_ns: T0 + 2000,
            },
        ],
    );
    let rows = tshark_rows(&path, &["frame.comment"]);
    assert_eq!(rows.len(), 2);
    let comment_at = TSHARK_FIELDS.len();
    assert_eq!(rows[0][comment_at], "", "first packet has no comment");
    let c = &rows[1][comment_at];
    assert!(
        c.contains("7 datagrams lost from 127.0.0.1:5000"),
        "comment: {c}"
    );
    assert!(c.contains("kernel dropped 3 datagrams"), "comment: {c}");
    let bytes = std::fs::read(&path).unwrap();
    assert_eq!(isb_option_u64(&bytes, 5), Some(5), "isb_ifdrop = 3 + 2");
    // capinfos (Debian's wireshark-common, which tshark pulls in) reads the
    // statistics block too.
    let o = Command::new("capinfos")
        .arg(&path)
        .output()
        .expect("capinfos comes with tshark: `apt-get install tshark`");
    assert!(o.status.success(), "{}", String::from_utf8_lossy(&o.stderr));
    let info = String::from_utf8_lossy(&o.stdout);
    assert!(info.contains("Number of stat entries = 1"), "{info}");
}

/// What python-can's reader of `kind` (`log` or `asc`) reads from `path`: one row of
/// `timestamp id ext rtr err dlc data fd brs esi channel` per message.
fn pycan_read(path: &Path, kind: &str) -> Vec<Vec<String>> {
    let script = r#"
import sys, can
path, kind = sys.argv[1], sys.argv[2]
r = can.LogReader(path) if kind == "log" else can.ASCReader(path, relative_timestamp=False)
for m in r:
    print("\t".join([
        "%.9f" % m.timestamp, str(m.arbitration_id), str(int(m.is_extended_id)),
        str(int(m.is_remote_frame)), str(int(m.is_error_frame)), str(m.dlc),
        bytes(m.data).hex(), str(int(m.is_fd)), str(int(m.bitrate_switch)),
        str(int(m.error_state_indicator)), str(m.channel),
    ]))
"#;
    let what = format!("python-can's {kind} reader on {}", path.display());
    stdout_of(
        Command::new(python())
            .arg("-c")
            .arg(script)
            .arg(path)
            .arg(kind),
        &what,
    )
    .lines()
    .map(|l| l.split('\t').map(str::to_owned).collect())
    .collect()
}

fn assert_time_close(py: &str, ns: u64, what: &str) {
    let t: f64 = py.parse().unwrap();
    let want = ns as f64 / 1e9;
    // Both formats keep microseconds (truncated); a float near 1.7e9 adds < 0.25 µs.
    assert!(
        (t - want).abs() < 1.3e-6,
        "{what}: python-can time {t:.9} vs canmc {want:.9}"
    );
}

#[test]
fn python_can_reads_canmc_log_and_asc() {
    let frames = all_kinds();
    for kind in ["log", "asc"] {
        let path = tmp_path(&format!("pycan.{kind}"));
        write_all(&path, &frames_of(&frames));
        let rows = pycan_read(&path, kind);
        assert_eq!(rows.len(), frames.len(), "{kind}: message count");
        for (f, r) in frames.iter().zip(&rows) {
            let what = format!("{kind}: {f:?} read as {r:?}");
            assert_time_close(&r[0], f.timestamp_ns, &what);
            assert_eq!(r[4], b(f.is_error()), "{what}: error flag");
            if f.is_error() {
                // Both python-can readers give error frames no class and no data.
                continue;
            }
            assert_eq!(r[1], f.id.to_string(), "{what}: id");
            assert_eq!(r[2], b(f.is_extended()), "{what}: extended");
            // python-can's ASC reader calls every 0-byte CAN FD frame remote (its own
            // files too); FD frames cannot be remote, so the flag says nothing there.
            if !(kind == "asc" && f.is_fd()) {
                assert_eq!(r[3], b(f.is_remote()), "{what}: remote");
            }
            assert_eq!(r[5], f.len.to_string(), "{what}: dlc");
            assert_eq!(r[6], hex(f.payload()), "{what}: data");
            assert_eq!(r[7], b(f.is_fd()), "{what}: fd");
            assert_eq!(r[8], b(f.brs()), "{what}: brs");
            assert_eq!(r[9], b(f.esi()), "{what}: esi");
            // Channel 0: `can0` in a log, ASC channel 1, which python-can reads as 0.
            let want_channel = if kind == "log" { "can0" } else { "0" };
            assert_eq!(r[10], want_channel, "{what}: channel");
        }
    }
}

#[test]
fn every_candump_variant_imports() {
    let path = data_dir().join("variants.log");
    let (got, stats) = read_all(&path, ReadOptions::default()).unwrap();
    let can0 = Channel::str("can0").unwrap();
    let want = [
        fr("123#DEADBEEF", 1_700_000_000_123_456_000, can0),
        fr("123#DEADBEEF", 1_700_000_000_123_456_789, can0),
        fr("12345678#R", 1_700_000_000_500_000_000, can0),
        fr(
            "7FF#R3",
            1_700_000_001_000_000_000,
            Channel::str("vcan1").unwrap(),
        ),
        fr("123##4", 1_700_000_002_000_000_000, can0),
        fr("123##5AA", 1_700_000_002_100_000_000, can0),
        fr("123##6BB", 1_700_000_002_200_000_000, can0),
        fr("123##7CC", 1_700_000_002_300_000_000, can0),
        fr("123##4DD", 1_700_000_002_400_000_000, can0),
        fr("123##7EE", 1_700_000_002_500_000_000, can0),
        fr("123#1122334455667788_C", 1_700_000_003_000_000_000, can0),
        fr("123#1122334455667788_9", 1_700_000_003_000_000_001, can0),
        fr("20000080#0000000000000000", 1_700_000_004_000_000_000, can0),
        fr("1ABCDEF0#", 1_700_000_005_000_000_000, can0),
        fr("000#00", 1_700_000_006_250_000_000, can0),
    ];
    assert_eq!(got.len(), want.len(), "{got:#?}");
    for (g, w) in got.iter().zip(&want) {
        assert_eq!(g, w);
    }
    assert_eq!(stats.skipped, 0);
}

#[test]
fn bad_candump_line_is_named_and_can_be_skipped() {
    let path = data_dir().join("bad_line.log");
    match read_all(&path, ReadOptions::default()) {
        Err(ConvertError::Parse { line, message, .. }) => {
            assert_eq!(line, 4, "{message}");
            assert!(message.contains("--skip-bad"), "{message}");
        }
        other => panic!("expected a parse error on line 4, got {other:?}"),
    }
    let (got, stats) = read_all_skipping_bad(&path);
    assert_eq!(stats.skipped, 2);
    let texts: Vec<String> = got.iter().map(|f| f.to_string()).collect();
    assert_eq!(texts, ["123#01", "123#02", "123#03", "123#04"]);
}

#[test]
fn asc_round_trips_every_frame_kind() {
    let mut frames = all_kinds();
    // Several channels, and a time that is not a whole microsecond (ASC keeps µs).
    frames[1].channel = Channel::int(1);
    frames[2].channel = Channel::int(7);
    frames[3].timestamp_ns += 999;
    let path = tmp_path("round.asc");
    write_all(&path, &frames_of(&frames));
    let (back, stats) = read_all(&path, ReadOptions::default()).unwrap();
    assert_eq!(stats.events, frames.len() as u64);
    assert_eq!(back.len(), frames.len());
    for (a, b) in frames.iter().zip(&back) {
        assert_eq!(a.content(), b.content());
        assert_eq!(b.timestamp_ns, a.timestamp_ns / 1000 * 1000, "{a:?}");
        assert_eq!(a.channel, b.channel, "{a:?}");
    }
    // A time window skips what comes before.
    let (later, _) = read_all(
        &path,
        ReadOptions {
            start_ns: Some(frames[5].timestamp_ns / 1000 * 1000),
            ..Default::default()
        },
    )
    .unwrap();
    assert_eq!(later.len(), frames.len() - 5);
}

#[test]
fn reads_asc_written_by_python_can_and_by_vector_tools() {
    // tests/data/pycan.asc: written by python-can 4.6's ASCWriter (tools: see
    // tests/data/README.md); vector.asc: hand-made in CANoe's style with statistics,
    // a symbolic name, decimal base is not used by CANoe by default.
    let (got, _) = read_all(&data_dir().join("pycan.asc"), ReadOptions::default()).unwrap();
    let texts: Vec<String> = got.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        texts,
        [
            "123#1122",
            "00000123#R4",
            "123#",
            "20000000#",
            "01234567##5000102030405060708090A0B",
            "012##4",
        ]
    );
    let base = got[0].timestamp_ns;
    assert_eq!(got[1].timestamp_ns - base, 12_376_544_000);
    let chans: Vec<ChannelRef> = got.iter().map(|f| f.channel.get()).collect();
    assert_eq!(chans[0], ChannelRef::Int(0));
    assert_eq!(chans[1], ChannelRef::Int(0));

    let (got, stats) = read_all(&data_dir().join("vector.asc"), ReadOptions::default()).unwrap();
    let texts: Vec<String> = got.iter().map(|f| f.to_string()).collect();
    assert_eq!(
        texts,
        [
            "100#0102030405060708",
            "1FFFFFFF#",
            "200#R2",
            "300##5112233445566778899AABBCC",
            "301#0102",
        ]
    );
    assert_eq!(stats.skipped, 0);
    assert_eq!(got[1].channel.get(), ChannelRef::Int(1));
    assert_eq!(got[4].timestamp_ns - got[0].timestamp_ns, 4_000_000_000);
}

#[test]
fn bad_asc_frame_line_is_named() {
    let path = tmp_path("bad.asc");
    std::fs::write(
        &path,
        "date Tue Nov 14 22:13:20.123 2023\nbase hex  timestamps absolute\n\
         Begin Triggerblock Tue Nov 14 22:13:20.123 2023\n\
         0.100000 1  123 Rx d 2 11 22\n\
         0.200000 1  123 Rx d 2 11\n\
         0.300000 1  124 Rx d 1 33\n\
         End TriggerBlock\n",
    )
    .unwrap();
    match read_all(&path, ReadOptions::default()) {
        Err(ConvertError::Parse { line, .. }) => assert_eq!(line, 5),
        other => panic!("expected a parse error on line 5, got {other:?}"),
    }
    let (got, stats) = read_all_skipping_bad(&path);
    assert_eq!((got.len(), stats.skipped), (2, 1));
}
