//! `canmc plot` from every format canmc reads, and `canmc convert --dbc` to CSV, run as
//! a user runs them; plus their argument errors.

use std::path::{Path, PathBuf};

use canmc::convert::{create_writer, FileFormat, WriterOptions};
use canmc::engine::Event;
use canmc::view::dbc::Dbc;
use canmc::{CanFrame, Channel};

use crate::common::{self, canmc, ok};

const T0: u64 = 1_750_000_000_000_000_000;

/// 5 s: 0x100 every 10 ms, 0x201 every 50 ms, 0x18FEF100 every 100 ms (payloads the
/// views.dbc decodes), 4 datagrams lost at 2.5 s and 2 kernel drops at 4 s.
fn events() -> Vec<Event> {
    let mut v = Vec::new();
    let ch = Channel::str("can0").unwrap();
    for i in 0..500u64 {
        let t = T0 + i * 10_000_000;
        let mut push = |id: u32, fl: u8, data: &[u8], dt: u64| {
            let mut f = CanFrame::new(id, fl, data).unwrap();
            f.timestamp_ns = t + dt;
            f.channel = ch;
            v.push(Event::Frame(f));
        };
        push(
            0x100,
            0,
            &[i as u8, (i >> 8) as u8, 0x50, 0x0F, 0xA0, 0x07, 0x03, 0],
            0,
        );
        if i % 5 == 0 {
            push(0x201, 0, &(i as f64).to_le_bytes(), 1_000_000);
        }
        if i % 10 == 0 {
            push(
                0x18FE_F100,
                canmc::frame::flags::EXTENDED,
                &[2, 2, 0, 1, 2, 0, 0, 0],
                2_000_000,
            );
        }
        if i == 250 {
            v.push(Event::Loss {
                sender: Default::default(),
                lost: 4,
                timestamp_ns: t + 3_000_000,
            });
        }
        if i == 400 {
            v.push(Event::KernelDrops {
                count: 2,
                timestamp_ns: t + 3_000_000,
            });
        }
    }
    v
}

fn dbc_file() -> String {
    crate::lab::repo()
        .join("tests/data/views.dbc")
        .display()
        .to_string()
}

const FRAMES: u64 = 500 + 100 + 50;

fn write(dir: &Path, ext: &str) -> PathBuf {
    let p = dir.join(format!("capture.{ext}"));
    let format = FileFormat::from_path(&p).unwrap();
    let mut w = create_writer(&p, format, WriterOptions::default()).unwrap();
    for e in events() {
        w.write_event(&e).unwrap();
    }
    w.finish().unwrap();
    p
}

fn svg_texts(svg: &str) -> Vec<&str> {
    svg.split("<text")
        .skip(1)
        .map(|t| {
            let body = &t[t.find('>').unwrap() + 1..];
            body[..body.find("</text>").unwrap()].trim()
        })
        .collect()
}

#[test]
fn plot_reads_every_format() {
    let dir = common::tmpdir("view-cli-plot");
    for ext in ["cmc", "log", "pcapng", "pcap", "asc"] {
        let input = write(&dir, ext);
        let out = dir.join(format!("{ext}.svg"));
        let run = canmc(&["plot", input.to_str().unwrap(), "-o", out.to_str().unwrap()]);
        ok(&run);
        let svg = std::fs::read_to_string(&out).unwrap();
        let texts = svg_texts(&svg);
        let title = texts.iter().find(|t| t.contains("frames in")).unwrap();
        assert!(
            title.starts_with(&format!("capture.{ext}  —  {FRAMES} frames in 4.99")),
            "{ext}: {title}"
        );
        assert!(title.contains("3 IDs"), "{title}");
        // The busiest ID line's legend names it with its count.
        assert!(texts.iter().any(|t| t.contains("100 (500)")), "{ext}");
        if ext == "cmc" {
            assert!(title.contains("4 lost, 2 kernel drops"), "{title}");
        }
        let stderr = String::from_utf8_lossy(&run.stderr);
        assert!(
            stderr.contains(&format!("canmc plot: {FRAMES} frames, 3 IDs")),
            "{stderr}"
        );
    }
    // HTML and PNG of the .cmc.
    let input = dir.join("capture.cmc");
    let html = dir.join("p.html");
    ok(&canmc(&[
        "plot",
        input.to_str().unwrap(),
        "-o",
        html.to_str().unwrap(),
        "--top",
        "2",
    ]));
    let page = std::fs::read_to_string(&html).unwrap();
    assert!(
        page.contains("<svg") && page.contains("\"lost\":4") && page.contains("\"kernel_drops\":2")
    );
    let png = dir.join("p.png");
    ok(&canmc(&[
        "plot",
        input.to_str().unwrap(),
        "-o",
        png.to_str().unwrap(),
        "--width",
        "600",
        "--height",
        "800",
    ]));
    let bytes = std::fs::read(&png).unwrap();
    assert_eq!(&bytes[1..4], b"PNG");
    assert_eq!(u32::from_be_bytes(bytes[16..20].try_into().unwrap()), 600);
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn plot_and_dbc_argument_errors() {
    let dir = common::tmpdir("view-cli-errors");
    let input = write(&dir, "log");
    let one_line_error = |args: &[&str], code: i32, says: &str| {
        let out = canmc(args);
        assert_eq!(out.status.code(), Some(code), "{args:?}");
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(err.lines().count(), 1, "{err}");
        assert!(err.contains(says), "{args:?}: {err}");
    };
    let i = input.to_str().unwrap();
    one_line_error(&["plot", i, "-o", "x.jpg"], 2, "unknown extension");
    one_line_error(&["plot", "nope.log", "-o", "x.svg"], 1, "no such file");
    let dbc = dbc_file();
    one_line_error(
        &["convert", "--dbc", &dbc, i, "out.log"],
        2,
        "must end in .csv",
    );
    one_line_error(
        &["convert", "--dbc", "nope.dbc", i, "out.csv"],
        2,
        "--dbc nope.dbc",
    );
    let bad = dir.join("bad.dbc");
    std::fs::write(&bad, "BO_ not a dbc").unwrap();
    one_line_error(
        &["convert", "--dbc", bad.to_str().unwrap(), i, "out.csv"],
        2,
        "not a valid DBC",
    );
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn convert_dbc_writes_one_row_per_signal() {
    let dir = common::tmpdir("view-cli-csv");
    let input = write(&dir, "cmc");
    let csv = dir.join("signals.csv");
    let dbc_path = dbc_file();
    let run = canmc(&[
        "convert",
        "--dbc",
        &dbc_path,
        input.to_str().unwrap(),
        csv.to_str().unwrap(),
    ]);
    ok(&run);
    let text = std::fs::read_to_string(&csv).unwrap();
    let mut lines = text.lines();
    assert_eq!(
        lines.next(),
        Some("timestamp,channel,id,message,signal,value,unit,label")
    );
    let rows: Vec<Vec<&str>> = lines.map(|l| l.split(',').collect()).collect();
    // What the library decodes (checked against cantools in view_dbc) is what the CSV
    // holds, row for row.
    let dbc = Dbc::open(Path::new(&dbc_path)).unwrap();
    let mut want = Vec::new();
    for e in events() {
        if let Event::Frame(f) = e {
            dbc.decode(&f, &mut |s| {
                want.push((
                    f.timestamp_ns,
                    s.signal.name.clone(),
                    s.value,
                    s.label.unwrap_or("").to_string(),
                ));
            });
        }
    }
    assert_eq!(rows.len(), want.len());
    assert!(want.len() > 500 * 7);
    for (r, (ts, name, value, label)) in rows.iter().zip(&want) {
        assert_eq!(r.len(), 8, "{r:?}");
        assert_eq!(
            r[0],
            format!("{}.{:09}", ts / 1_000_000_000, ts % 1_000_000_000)
        );
        assert_eq!(r[1], "can0");
        assert_eq!(r[4], name);
        assert_eq!(r[5].parse::<f64>().unwrap(), *value, "{r:?}");
        assert_eq!(r[7], label);
    }
    // The Diag frames (Service 2: Mode, Count) carry their labels.
    assert!(rows
        .iter()
        .any(|r| r[2] == "18FEF100" && r[3] == "Diag" && r[4] == "Service" && r[7] == "Counter"));
    assert!(rows.iter().any(|r| r[4] == "Mode" && r[7] == "Run"));
    let stderr = String::from_utf8_lossy(&run.stderr);
    assert!(stderr.contains(&format!("{FRAMES} frames")), "{stderr}");
    std::fs::remove_dir_all(&dir).unwrap();
}
