//! Hostile input to a running `canmc record`, and a disk that fills up under it. Loopback
//! only (IPv4 on `lo`, TTL 0); the disk is a 2 MiB tmpfs in a private mount namespace.

use crate::common;

use std::net::UdpSocket;
use std::process::{Command, Stdio};
use std::time::Duration;

use canmc::record::{Record, Recording};
use canmc::wire::{native, pycan};
use canmc::CanFrame;
use common::{command, json_u64, ok, settle, tmpdir, Rng, CANMC};

/// A sender on loopback with TTL 0, like `--iface lo`.
fn lo_sender() -> UdpSocket {
    let s = UdpSocket::bind("127.0.0.1:0").unwrap();
    let sock = socket2::SockRef::from(&s);
    sock.set_multicast_if_v4(&std::net::Ipv4Addr::LOCALHOST)
        .unwrap();
    sock.set_multicast_ttl_v4(0).unwrap();
    s
}

#[test]
fn record_survives_garbage_and_keeps_every_valid_frame() {
    let dir = tmpdir("hostile");
    let path = dir.join("h.cmc");
    let port = 42601u16;
    let rec = command(&[
        "record",
        "--iface",
        "lo",
        "--port",
        &port.to_string(),
        "-o",
        path.to_str().unwrap(),
        "--duration",
        "4",
        "--json",
    ])
    .stdout(Stdio::piped())
    .stderr(Stdio::piped())
    .spawn()
    .unwrap();
    // Not a readiness ping: the test counts the recorder's datagrams exactly.
    settle();
    let tx = lo_sender();
    let group = ("239.74.163.2", port);
    let mut rng = Rng(0x2545_F491_4F6C_DD1D);
    let mut rand = move || rng.next();
    let mut valid = 0u64;
    let mut garbage = 0u64;
    let mut buf = [0u8; pycan::MAX_ENCODED];
    for i in 0..3000u64 {
        // A valid python-can frame carrying its sequence number…
        let f = CanFrame::new(0x321, 0, &i.to_le_bytes()).unwrap();
        let n = pycan::encode(&f, &mut buf);
        tx.send_to(&buf[..n], group).unwrap();
        valid += 1;
        // …then something hostile: random bytes, a cut frame, a native header with a
        // lying count, a msgpack array, a flipped byte.
        let mut junk: Vec<u8> = match i % 5 {
            0 => (0..(rand() % 300) as usize).map(|_| rand() as u8).collect(),
            1 => buf[..n / 2].to_vec(),
            2 => {
                let mut d = vec![
                    canmc::wire::NATIVE_MAGIC0,
                    native::NATIVE_MAGIC1,
                    native::VERSION,
                    1,
                ];
                d.extend_from_slice(&(native::FRAMES_HEADER_LEN as u16).to_le_bytes());
                d.extend_from_slice(&(native::FRAMES_HEADER_LEN as u16).to_le_bytes());
                d.extend_from_slice(&500u16.to_le_bytes()); // 500 records, none present
                d.resize(native::FRAMES_HEADER_LEN, 0);
                d
            }
            3 => vec![0x93, 1, 2, 3],
            _ => {
                let mut d = buf[..n].to_vec();
                let at = (rand() as usize) % d.len();
                d[at] ^= 0xFF;
                d
            }
        };
        if junk.is_empty() {
            junk.push(0xC1);
        }
        tx.send_to(&junk, group).unwrap();
        garbage += 1;
        if i % 200 == 199 {
            std::thread::sleep(Duration::from_millis(5));
        }
    }
    let out = rec.wait_with_output().unwrap();
    ok(&out);
    let summary = String::from_utf8(out.stdout).unwrap();
    assert_eq!(json_u64(&summary, "kernel_drops"), 0, "{summary}");
    assert_eq!(
        json_u64(&summary, "datagrams"),
        valid + garbage,
        "{summary}"
    );
    // A flipped byte can leave a valid frame (e.g. in the data): such datagrams are
    // recorded, so count what the file holds rather than assume.
    let recording = Recording::open(&path).unwrap();
    let mut seqs = Vec::new();
    for r in recording.iter() {
        if let Record::Frame(f) = r {
            if f.id() == 0x321 && f.payload().len() == 8 {
                seqs.push(u64::from_le_bytes(f.payload().try_into().unwrap()));
            }
        }
    }
    let frames = json_u64(&summary, "frames");
    let errors = json_u64(&summary, "decode_errors_total");
    // The lying native header repeats one sender id and sequence number: after the first,
    // each copy is a counted duplicate.
    let duplicates = json_u64(&summary, "duplicates");
    assert_eq!(duplicates, 599, "{summary}");
    assert_eq!(
        frames + errors + duplicates,
        valid + garbage,
        "every datagram is a frame, a counted error or a counted duplicate: {summary}"
    );
    assert!(
        errors >= garbage * 3 / 5,
        "most garbage is counted as errors: {summary}"
    );
    for kind in ["truncated", "not_a_map", "bad_length"] {
        assert!(json_u64(&summary, kind) > 0, "{kind} counted: {summary}");
    }
    // Every valid frame is in the file, in order.
    let originals: Vec<u64> = seqs.iter().copied().filter(|&s| s < valid).collect();
    let mut expect = 0;
    for s in originals {
        if s == expect {
            expect += 1;
        }
    }
    assert_eq!(expect, valid, "all {valid} valid frames recorded in order");
    let _ = std::fs::remove_dir_all(&dir);
}

#[test]
fn disk_full_stops_record_with_one_line_and_a_valid_file() {
    // A private mount namespace with a 2 MiB tmpfs; traffic on lo.
    let script = format!(
        r#"set -e
mount -t tmpfs -o size=2m canmc-full /mnt
"{canmc}" gen --iface lo --port 42602 -n 400000 --rate 100000 -L 8 -D i >/dev/null 2>&1 &
set +e
err=$(mktemp)
"{canmc}" record --iface lo --port 42602 -o /mnt/full.cmc --segment-size 1 --duration 20 2>"$err"
echo "exit=$?"
cat "$err"
rm -f "$err"
"{canmc}" info /mnt/full.cmc --json
kill %1 2>/dev/null
"#,
        canmc = CANMC
    );
    let out = Command::new("unshare")
        .args(["-m", "--propagation", "private", "sh", "-c", &script])
        .output()
        .expect("unshare -m (needs root or user namespaces)");
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        text.contains("exit=1"),
        "record must fail on a full disk:\n{text}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let err_line = text
        .lines()
        .find(|l| l.starts_with("canmc:"))
        .expect("an error line");
    assert!(
        err_line.contains("No space left") || err_line.contains("space"),
        "{err_line}"
    );
    assert!(
        err_line.contains("/mnt/full.cmc"),
        "names the file: {err_line}"
    );
    let info = text
        .lines()
        .find(|l| l.starts_with('{'))
        .expect("info opens the file");
    assert!(
        json_u64(info, "frames") > 10_000,
        "frames written before the disk filled are kept: {info}"
    );
}
