//! Writes generated seed inputs for every fuzz target with canmc's own encoders and
//! writers, next to copies of the hand-made captures in tests/data/, into
//! `<out>/<target>/` (default `fuzz/seeds`), plus `<out>/cmc_reader-large/`: a recording
//! of two 64 KiB blocks for longer cmc_reader runs. tools/fuzz.sh does not need it: the
//! committed corpus in fuzz/corpus/ was made from these seeds by a fuzz run and
//! `cargo fuzz cmin`. Rerun it after a format change (docs/fuzzing.md):
//!
//! ```text
//! cargo run --manifest-path fuzz/Cargo.toml --example make_corpus -- fuzz/seeds
//! ```
use std::fs;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use canmc::convert::{create_writer, FileFormat, WriterOptions};
use canmc::record::{Recorder, RecorderOptions};
use canmc::wire::{native, pycan};
use canmc::{CanFrame, Channel, SenderAddr};

/// The key of the authenticated seeds: the fuzz targets' `common::KEY`.
const KEY: native::AuthKey = native::AuthKey::from_bytes(*b"canmc fuzz key, not a secret!!!!");
const T0: u64 = 1_700_000_000_123_456_789;

fn frame(text: &str, ts: u64, channel: Channel) -> CanFrame {
    let mut f: CanFrame = text.parse().unwrap();
    f.timestamp_ns = ts;
    f.channel = channel;
    f
}

/// One frame of every kind: classic standard and extended, remote, error, FD with
/// BRS/ESI at several lengths, on no, integer and string channels.
fn frames() -> Vec<CanFrame> {
    let fd64: String = (0..64).map(|i| format!("{i:02X}")).collect();
    let texts = [
        "123#DEADBEEF".to_string(),
        "1FFFFFFF#0011223344556677".to_string(),
        "7FF#".to_string(),
        "123#R".to_string(),
        "1ABCDEF0#R8".to_string(),
        "20000080#0000000000000000".to_string(),
        "123##0".to_string(),
        "123##1AABBCCDDEEFF001122334455".to_string(),
        "12345678##3".to_string() + &fd64,
        "456##2".to_string() + &fd64[..40],
    ];
    let channels = [
        Channel::NONE,
        Channel::int(0),
        Channel::int(-7),
        Channel::str("can1").unwrap(),
    ];
    texts
        .iter()
        .enumerate()
        .map(|(i, t)| frame(t, T0 + i as u64 * 1_250_000, channels[i % channels.len()]))
        .collect()
}

fn senders() -> [SenderAddr; 2] {
    [
        SenderAddr::from("192.0.2.7:57000".parse::<SocketAddr>().unwrap()),
        SenderAddr::from("[2001:db8::7]:57001".parse::<SocketAddr>().unwrap()),
    ]
}

struct Out {
    root: PathBuf,
    written: usize,
}

impl Out {
    fn put(&mut self, target: &str, name: &str, bytes: &[u8]) {
        let dir = self.root.join(target);
        fs::create_dir_all(&dir).unwrap();
        fs::write(dir.join(name), bytes).unwrap();
        self.written += 1;
    }

    fn copy_dir(&mut self, target: &str, dir: &Path, prefix: &str) {
        let mut files: Vec<_> = fs::read_dir(dir)
            .unwrap()
            .map(|e| e.unwrap().path())
            .collect();
        files.sort();
        for p in files {
            let name = format!("{prefix}-{}", p.file_name().unwrap().to_string_lossy());
            self.put(target, &name, &fs::read(&p).unwrap());
        }
    }
}

fn pycan_seeds(out: &mut Out) {
    for (i, f) in frames().iter().enumerate() {
        let mut buf = [0u8; pycan::MAX_ENCODED];
        let n = pycan::encode(f, &mut buf);
        out.put("pycan_decode", &format!("gen-{i}"), &buf[..n]);
    }
}

fn native_seeds(out: &mut Out) {
    let all = frames();
    let mut n_seed = 0;
    let mut put = |out: &mut Out, bytes: &[u8]| {
        out.put("native_decode", &format!("gen-{n_seed}"), bytes);
        n_seed += 1;
    };
    for (channel, key) in [
        (Channel::NONE, None),
        (Channel::int(3), None),
        (Channel::str("can0").unwrap(), Some(KEY)),
    ] {
        let mut enc = native::Encoder::with_key(0xC0FFEE, native::DEFAULT_MAX_DATAGRAM, key);
        let mut buf = vec![0u8; native::DEFAULT_MAX_DATAGRAM];
        enc.begin(&mut buf, 7, channel, T0);
        for f in &all {
            let mut f = *f;
            f.channel = channel;
            assert!(enc.push(&mut buf, &f));
        }
        let n = enc.finish(&mut buf);
        put(out, &buf[..n]);
    }
    let probe = native::PingProbe {
        probe_id: 7,
        sent_ns: T0,
    };
    let mut buf = vec![0u8; native::ANSWER_LEN + native::TAG_LEN];
    let n = native::encode_probe(&mut buf, 1, 2, &probe);
    put(out, &buf[..n]);
    let n = native::seal(&mut buf, n, &KEY);
    put(out, &buf[..n]);
    let answer = native::PingAnswer::new(&probe, native::Role::Record, 4242, "fuzz-host");
    let n = native::encode_answer(&mut buf, 1, 3, &answer);
    put(out, &buf[..n]);
}

fn text_seeds(out: &mut Out) {
    let mut log = Vec::new();
    for (i, f) in frames().iter().enumerate() {
        out.put(
            "can_text",
            &format!("gen-frame-{i}"),
            f.to_string().as_bytes(),
        );
        canmc::convert::candump::write_log_line(f, &mut log);
    }
    out.put("can_text", "gen-log", &log);
    out.put(
        "can_text",
        "gen-dlc",
        b"123#1122334455667788_C\n123#11.22.33\n",
    );
}

/// Writes `events` with the writer for `ext` and returns the file's bytes.
fn written(dir: &Path, ext: &str, loss: bool) -> Vec<u8> {
    let path = dir.join(format!("seed.{ext}"));
    let format = FileFormat::from_path(&path).unwrap();
    let mut w = create_writer(&path, format, WriterOptions::default()).unwrap();
    for (i, f) in frames().iter().enumerate() {
        w.write_frame(f).unwrap();
        if loss && i == 3 {
            w.write_loss(senders()[0], 5, f.timestamp_ns).unwrap();
            w.write_kernel_drops(2, f.timestamp_ns).unwrap();
        }
    }
    w.finish().unwrap();
    let bytes = fs::read(&path).unwrap();
    fs::remove_file(&path).unwrap();
    bytes
}

fn file_seeds(out: &mut Out, tmp: &Path, data: &Path) {
    out.put("log_reader", "gen-writer", &written(tmp, "log", true));
    out.put("asc_reader", "gen-writer", &written(tmp, "asc", true));
    for name in ["variants.log", "bad_line.log"] {
        out.put("log_reader", name, &fs::read(data.join(name)).unwrap());
    }
    for name in ["pycan.asc", "vector.asc"] {
        out.put("asc_reader", name, &fs::read(data.join(name)).unwrap());
    }
    // The header variants the writer never writes: decimal ids, relative times.
    let asc = "date Wed Nov 15 09:30:00.000 2023\nbase dec  timestamps relative\n\
               Begin Triggerblock Wed Nov 15 09:30:00.000 2023\n   0.000000 Start of measurement\n\
               \x20  0.500000 1  256             Rx   d 2 01 02\n\
               \x20  0.250000 2  536870911x      Rx   r 3\n\
               \x20  0.250000 1  ErrorFrame\nEnd TriggerBlock\n";
    out.put("asc_reader", "gen-dec-relative", asc.as_bytes());
    out.put("trc_reader", "gen-writer", &written(tmp, "trc", true));
    out.put("blf_reader", "gen-writer", &written(tmp, "blf", true));
    let trc = ";$FILEVERSION=1.3\n;$STARTTIME=45000.5\n\
               \x20    1)      1059.900 1  Rx        0300 -  8  00 00 00 00 04 00 00 00\n\
               \x20    2)      1060.900 2  Tx        0301 -  3  RTR\n\
               \x20    3)      1061.000 1  Error     0000 -  0\n";
    out.put("trc_reader", "gen-v13", trc.as_bytes());
    let trc = "     1)      1841  0001  8  00 11 22 33 44 55 66 77\n     2)      1843  0100  2  RTR\n";
    out.put("trc_reader", "gen-v10", trc.as_bytes());
}

/// A recording of `frames()` with small tables (so seeds stay small); `rotate` uses
/// one channel slot per segment, so every new channel starts a segment.
fn recording(tmp: &Path, rotate: bool, pad_to: usize) -> Vec<u8> {
    let path = tmp.join("seed.cmc");
    let opts = RecorderOptions {
        max_channels: if rotate { 1 } else { 4 },
        max_senders: 2,
        ..RecorderOptions::default()
    };
    let mut rec = Recorder::create(&path, opts).unwrap();
    let mut ts = T0;
    let mut filler = 0;
    loop {
        for (i, f) in frames().iter().enumerate() {
            let mut f = *f;
            f.sender = senders()[i % 2];
            f.timestamp_ns = ts;
            ts += 1_000_000;
            rec.write_frame(&f).unwrap();
            if i == 4 {
                rec.write_loss(senders()[1], 3, ts).unwrap();
                rec.write_kernel_drops(9, ts).unwrap();
            }
        }
        filler += 1;
        if rec.stats().bytes as usize >= pad_to || filler > 10_000 {
            break;
        }
    }
    rec.finish().unwrap();
    let mut bytes = Vec::new();
    for n in 0.. {
        let p = canmc::record::segment_path(&path, n);
        match fs::read(&p) {
            Ok(b) => bytes.extend_from_slice(&b),
            Err(_) => break,
        }
        fs::remove_file(&p).unwrap();
    }
    bytes
}

/// A version 3 recording with frame batch records (native datagrams as they arrived)
/// between frame, loss and drop records. It stays within one block (a batch split over
/// a block boundary makes an input of over 64 KiB, like `cmc_reader-large`).
fn batch_recording(tmp: &Path) -> Vec<u8> {
    let path = tmp.join("batch.cmc");
    let opts = RecorderOptions {
        max_channels: 4,
        max_senders: 2,
        ..RecorderOptions::default()
    };
    let mut rec = Recorder::create(&path, opts).unwrap();
    let all = frames();
    for (d, chunk) in all.chunks(4).enumerate() {
        let mut buf = vec![0u8; native::DEFAULT_MAX_DATAGRAM];
        let mut enc = native::Encoder::new(1, buf.len());
        let base = T0 + d as u64 * 10_000_000;
        let ch = chunk[0].channel;
        enc.begin(&mut buf, d as u64, ch, base);
        for (k, f) in chunk.iter().enumerate() {
            let mut f = *f;
            f.channel = ch;
            // Deltas out of order inside the batch: seek must look at every frame.
            f.timestamp_ns = base + ((k as u64 * 3) % 4) * 1_000;
            assert!(enc.push(&mut buf, &f));
        }
        let n = enc.finish(&mut buf);
        let b = native::FrameBatch::check(&buf[..n]).unwrap().unwrap();
        rec.write_batch(&b, &senders()[d % 2]).unwrap();
        let mut f = all[d];
        f.sender = senders()[1];
        f.timestamp_ns = base + 5_000;
        rec.write_frame(&f).unwrap();
        if d == 1 {
            rec.write_loss(senders()[0], 2, base + 6_000).unwrap();
            rec.write_kernel_drops(1, base + 6_000).unwrap();
        }
    }
    rec.finish().unwrap();
    let bytes = fs::read(&path).unwrap();
    fs::remove_file(&path).unwrap();
    bytes
}

fn cmc_seeds(out: &mut Out, tmp: &Path) {
    out.put("cmc_reader", "gen-batches", &batch_recording(tmp));
    let finished = recording(tmp, false, 0);
    out.put("cmc_reader", "gen-finished", &finished);
    // As a killed writer leaves it: no committed end offset, zeros after the records.
    let mut unfinished = finished.clone();
    let end = canmc::record::format::END_CRC_AT;
    unfinished[end..end + 4].fill(0);
    unfinished.resize(finished.len() + 256, 0);
    out.put("cmc_reader", "gen-unfinished", &unfinished);
    out.put("cmc_reader", "gen-segments", &recording(tmp, true, 0));
    // Over one 64 KiB block: block markers, what seek searches. Kept apart: inputs this
    // large slow cmc_reader down tenfold (docs/fuzzing.md, longer runs).
    out.put(
        "cmc_reader-large",
        "gen-two-blocks",
        &recording(tmp, false, 70_000),
    );
}

fn main() {
    let root = PathBuf::from(
        std::env::args()
            .nth(1)
            .unwrap_or_else(|| "fuzz/seeds".into()),
    );
    let repo = Path::new(env!("CARGO_MANIFEST_DIR"))
        .parent()
        .unwrap()
        .to_path_buf();
    let data = repo.join("tests/data");
    let tmp = std::env::temp_dir().join(format!("canmc-make-corpus-{}", std::process::id()));
    fs::create_dir_all(&tmp).unwrap();
    let mut out = Out { root, written: 0 };
    pycan_seeds(&mut out);
    out.copy_dir("pycan_decode", &data.join("corpus/pycan"), "tests");
    native_seeds(&mut out);
    out.copy_dir("native_decode", &data.join("corpus/native"), "tests");
    text_seeds(&mut out);
    out.copy_dir("can_text", &data.join("corpus/log"), "tests");
    file_seeds(&mut out, &tmp, &data);
    cmc_seeds(&mut out, &tmp);
    fs::remove_dir_all(&tmp).unwrap();
    println!("{} seeds in {}", out.written, out.root.display());
}
