//! A bounded fuzz run of every decoder that takes outside input, for CI: deterministic
//! mutations (bit flips, byte sets, truncation, extension, splices, duplicated runs) of
//! the committed corpus in tests/data/corpus/ and of generated seeds. Over a million
//! cases in all; the property is always the same: no panic, and whatever decodes is a
//! valid frame. (`cargo fuzz` needs a nightly toolchain; this runs on stable.)

use crate::common;

use std::path::Path;

use canmc::convert::candump::parse_log_line;
use canmc::frame::parse_frame;
use canmc::wire::{native, pycan, DecodeError};
use canmc::{CanFrame, Channel};
use common::Rng;

fn mutate(rng: &mut Rng, seed: &[u8], other: &[u8], out: &mut Vec<u8>) {
    out.clear();
    out.extend_from_slice(seed);
    for _ in 0..1 + rng.below(4) {
        let len = out.len();
        match rng.below(7) {
            0 if len > 0 => {
                let i = rng.below(len);
                out[i] ^= 1 << rng.below(8);
            }
            1 if len > 0 => {
                let i = rng.below(len);
                out[i] = [0, 0xFF, 0x7F, 0x80, 0xC1, 0xC0, rng.next() as u8][rng.below(7)];
            }
            2 => out.truncate(rng.below(len + 1)),
            3 => {
                for _ in 0..rng.below(16) {
                    out.push(rng.next() as u8);
                }
            }
            4 if !other.is_empty() => {
                let at = rng.below(len + 1);
                let from = rng.below(other.len());
                let n = rng.below(other.len() - from + 1);
                out.splice(at..at, other[from..from + n].iter().copied());
            }
            5 if len > 1 => {
                let from = rng.below(len);
                let n = rng.below((len - from).min(32) + 1);
                let chunk: Vec<u8> = out[from..from + n].to_vec();
                out.splice(from..from, chunk);
            }
            _ => {}
        }
    }
}

fn corpus(dir: &str) -> Vec<Vec<u8>> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("tests/data/corpus")
        .join(dir);
    let mut files: Vec<_> = std::fs::read_dir(&path)
        .unwrap_or_else(|e| panic!("{}: {e}", path.display()))
        .map(|e| e.unwrap().path())
        .collect();
    files.sort();
    files.iter().map(|p| std::fs::read(p).unwrap()).collect()
}

fn native_seeds() -> Vec<Vec<u8>> {
    let mut seeds = Vec::new();
    let texts = [
        "123#DEADBEEF",
        "1FFFFFFF#0011223344556677",
        "123#R4",
        "20000080#0000000000000000",
        "123##3000102030405060708090A0B0C0D0E0F101112131415161718191A1B1C1D1E1F202122232425262728292A2B2C2D2E2F303132333435363738393A3B3C3D3E3F",
    ];
    for channel in [
        Channel::NONE,
        Channel::int(-7),
        Channel::str("can1").unwrap(),
    ] {
        let mut enc = native::Encoder::new(0xABCD, native::DEFAULT_MAX_DATAGRAM);
        let mut buf = vec![0u8; native::DEFAULT_MAX_DATAGRAM];
        enc.begin(&mut buf, 42, channel, 1_700_000_000_000_000_000);
        for t in texts {
            let mut f: CanFrame = t.parse().unwrap();
            f.channel = channel;
            f.timestamp_ns = 1_700_000_000_000_000_500;
            assert!(enc.push(&mut buf, &f));
        }
        let n = enc.finish(&mut buf);
        seeds.push(buf[..n].to_vec());
    }
    let probe = native::PingProbe {
        probe_id: 7,
        sent_ns: 9,
    };
    let mut buf = vec![0u8; native::ANSWER_LEN];
    let n = native::encode_probe(&mut buf, 1, 2, &probe);
    seeds.push(buf[..n].to_vec());
    let answer = native::PingAnswer::new(&probe, native::Role::Dump, 3, "host");
    let n = native::encode_answer(&mut buf, 1, 3, &answer);
    seeds.push(buf[..n].to_vec());
    seeds
}

/// Fuzzes `check` with `cases` mutations of `seeds`.
fn fuzz(name: &str, seeds: &[Vec<u8>], cases: u64, mut check: impl FnMut(&[u8])) {
    assert!(!seeds.is_empty(), "{name}: no seeds");
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ name.len() as u64);
    let mut buf = Vec::with_capacity(4096);
    for s in seeds {
        check(s);
    }
    for _ in 0..cases {
        let seed = &seeds[rng.below(seeds.len())];
        let other = &seeds[rng.below(seeds.len())];
        mutate(&mut rng, seed, other, &mut buf);
        check(&buf);
    }
}

#[test]
fn pycan_decoder() {
    let seeds = corpus("pycan");
    let mut ok = 0u64;
    fuzz("pycan", &seeds, 400_000, |d| {
        let mut f = CanFrame::EMPTY;
        if pycan::decode(d, &mut f).is_ok() {
            f.validate().expect("decoded frames are valid");
            ok += 1;
        }
    });
    assert!(
        ok > 1000,
        "mutations that stay valid exercise the success path too ({ok})"
    );
}

#[test]
fn native_decoder() {
    let mut seeds = native_seeds();
    seeds.extend(corpus("native"));
    let mut frames = 0u64;
    fuzz("native", &seeds, 400_000, |d| {
        let r = native::decode(d, &mut |f| {
            f.validate().expect("decoded frames are valid");
            frames += 1;
        });
        if let Err(e) = r {
            assert!(DecodeError::ALL.contains(&e));
        }
        let _ = native::decode_probe(d);
        let _ = native::decode_answer(d);
        let _ = native::peek(d);
    });
    assert!(frames > 10_000, "{frames}");
}

#[test]
fn text_parsers() {
    let seeds: Vec<Vec<u8>> = corpus("log")
        .iter()
        .flat_map(|f| {
            f.split(|&b| b == b'\n')
                .map(<[u8]>::to_vec)
                .collect::<Vec<_>>()
        })
        .collect();
    let mut ok = 0u64;
    fuzz("log", &seeds, 300_000, |line| {
        if let Ok(text) = std::str::from_utf8(line) {
            if let Ok(Some(f)) = parse_log_line(text) {
                f.validate().expect("parsed frames are valid");
                ok += 1;
            }
        }
        if let Some(p) = line.iter().position(|&b| b == b' ') {
            if let Ok(f) = parse_frame(&line[p + 1..]) {
                f.validate().expect("parsed frames are valid");
            }
        }
    });
    assert!(ok > 1000, "{ok}");
}

/// Writes the generated native seeds into the corpus (run once with
/// CANMC_WRITE_CORPUS=1 when the format changes).
#[test]
fn native_corpus_is_current() {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/data/corpus/native");
    if std::env::var_os("CANMC_WRITE_CORPUS").is_some() {
        std::fs::create_dir_all(&dir).unwrap();
        for (i, s) in native_seeds().iter().enumerate() {
            std::fs::write(dir.join(format!("seed{i}.bin")), s).unwrap();
        }
    }
    // Every committed native seed still decodes: a format change must refresh the corpus.
    for seed in corpus("native") {
        native::peek(&seed).expect("committed native seed has a valid header");
    }
}
