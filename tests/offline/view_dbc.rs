//! `--dbc`: canmc's signal decoding gives the values and labels cantools gives for the
//! same frames with the same DBC (tests/data/views.dbc: little and big endian, signed,
//! float and double, scaled, value tables, simple and extended multiplexing).
//!
//! cantools is required (`bash tools/setup-venv.sh` installs it into `<repo>/.venv`, or
//! point `CANMC_PYTHON` at a python that has it): without it this test FAILS.

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::path::PathBuf;
use std::process::Command;

use canmc::frame::flags;
use canmc::view::dbc::Dbc;
use canmc::CanFrame;

use crate::{common, lab};

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// (index, signal) → (value, label)
type Decoded = BTreeMap<(usize, String), (f64, String)>;

fn frames() -> Vec<CanFrame> {
    let mut rng = common::Rng(0x05ee_ddbc);
    let mut out = Vec::new();
    for n in 0..3000 {
        let mut data = [0u8; 8];
        for b in &mut data {
            *b = rng.next() as u8;
        }
        let (id, fl) = match n % 6 {
            0 => (0x100, 0),
            1 => (0x200, 0),
            2 => (0x201, 0),
            3 => {
                data[0] = 1 + (rng.next() % 3) as u8;
                (0x18FE_F100, flags::EXTENDED)
            }
            4 => {
                // Top 0 selects Inner, whose 1..=3 select LeafA or LeafB; Top 1 selects
                // Other.
                let top = (rng.next() % 2) as u8;
                let inner = 1 + (rng.next() % 3) as u8;
                data[0] = top | (inner << 4);
                (0x300, 0)
            }
            _ => (0x123, 0),
        };
        out.push(CanFrame::new(id, fl, &data).unwrap());
    }
    out
}

fn text(f: &CanFrame) -> String {
    let mut s = if f.is_extended() {
        format!("{:08X}#", f.id)
    } else {
        format!("{:03X}#", f.id)
    };
    for b in f.payload() {
        let _ = write!(s, "{b:02X}");
    }
    s
}

fn parse_value(v: &str) -> f64 {
    match v {
        "nan" => f64::NAN,
        "inf" => f64::INFINITY,
        "-inf" => f64::NEG_INFINITY,
        v => v.parse().unwrap_or_else(|_| panic!("cantools value {v:?}")),
    }
}

fn same(a: f64, b: f64) -> bool {
    (a.is_nan() && b.is_nan()) || a == b || (a - b).abs() <= 1e-12 * a.abs().max(b.abs())
}

#[test]
fn signals_match_cantools() {
    let dbc_path = repo().join("tests/data/views.dbc");
    let dbc = Dbc::open(&dbc_path).unwrap();
    let frames = frames();
    let dir = std::env::temp_dir().join(format!("canmc-view-dbc-{}", std::process::id()));
    std::fs::create_dir_all(&dir).unwrap();
    let list = dir.join("frames.txt");
    let mut body = String::new();
    for f in &frames {
        body.push_str(&text(f));
        body.push('\n');
    }
    std::fs::write(&list, body).unwrap();

    let py = lab::python();
    let probe = Command::new(&py)
        .args(["-c", "import cantools"])
        .output()
        .unwrap();
    assert!(
        probe.status.success(),
        "{} cannot import cantools: run `bash tools/setup-venv.sh`",
        py.display()
    );
    let out = common::stdout_of(
        Command::new(&py)
            .arg(repo().join("tools/dbc_decode.py"))
            .arg(&dbc_path)
            .arg(&list),
        "tools/dbc_decode.py",
    );
    std::fs::remove_dir_all(&dir).unwrap();

    let mut theirs = Decoded::new();
    let mut unknown = 0;
    for line in out.lines() {
        let parts: Vec<&str> = line.split(' ').collect();
        let i: usize = parts[0].parse().unwrap();
        match parts[1] {
            "-" => {
                assert_eq!(parts[2], "unknown", "cantools refused frame {i}: {line}");
                unknown += 1;
            }
            name => {
                theirs.insert(
                    (i, name.to_string()),
                    (parse_value(parts[2]), parts[3].to_string()),
                );
            }
        }
    }
    let mut ours = Decoded::new();
    let mut our_unknown = 0;
    for (i, f) in frames.iter().enumerate() {
        let m = dbc.decode(f, &mut |s| {
            ours.insert(
                (i, s.signal.name.clone()),
                (s.value, s.label.unwrap_or("-").replace(' ', "_")),
            );
        });
        if m.is_none() {
            our_unknown += 1;
        }
    }
    assert_eq!(our_unknown, unknown);
    assert_eq!(unknown, 500);
    // Every message and every signal kind took part.
    for name in [
        "Speed", "Torque", "Level", "Pressure", "Energy", "VoltageA", "Count", "Status", "LeafA",
        "LeafB", "Other",
    ] {
        assert!(theirs.keys().any(|k| k.1 == name), "no {name} decoded");
    }
    assert!(theirs.values().any(|v| v.1 == "Drive"));
    let their_keys: Vec<_> = theirs.keys().collect();
    let our_keys: Vec<_> = ours.keys().collect();
    assert_eq!(our_keys.len(), their_keys.len());
    assert_eq!(our_keys, their_keys, "different signals decoded");
    let mut bad = Vec::new();
    for (k, (v, l)) in &theirs {
        let (ov, ol) = &ours[k];
        if !same(*v, *ov) || l != ol {
            bad.push(format!(
                "frame {} {}: cantools {v} {l}, canmc {ov} {ol}",
                k.0, k.1
            ));
        }
    }
    assert!(
        bad.is_empty(),
        "{} differences, first: {:?}",
        bad.len(),
        &bad[..bad.len().min(10)]
    );
}
