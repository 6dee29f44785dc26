//! Crash safety and disk-full behaviour of `.cmc` recordings, with real processes:
//! a child writes a deterministic frame sequence and is SIGKILLed at random moments;
//! another child fills a 2 MiB tmpfs in its own mount namespace.

use crate::common;

use std::io::{BufRead, BufReader};
use std::net::SocketAddr;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use canmc::record::{End, Record, RecordError, Recorder, RecorderOptions, Recording};
use canmc::{CanFrame, Channel, SenderAddr};
use common::{tmpdir, Rng};

const CHILD_ENV: &str = "CANMC_RECORD_CRASH_CHILD";
const DISK_FULL_ENV: &str = "CANMC_RECORD_DISKFULL_DIR";
const LOSS_EVERY: u64 = 500;

fn sender(k: u64) -> SenderAddr {
    let sa: SocketAddr = match k % 4 {
        0 => "127.0.0.1:4000".parse().unwrap(),
        1 => "10.1.2.3:4001".parse().unwrap(),
        2 => "[ff15::1]:4002".parse().unwrap(),
        _ => "[fe80::1]:4003".parse().unwrap(),
    };
    SenderAddr::from(sa)
}

/// Frame `k` of the child's sequence: `k` is in the payload, the ID and the timestamp,
/// so a torn or invented frame cannot pass for a real one.
fn expected(k: u64) -> CanFrame {
    let mut f = if k % 7 == 0 {
        let mut data = [0u8; 12];
        data[..8].copy_from_slice(&k.to_le_bytes());
        data[8..].copy_from_slice(&(!k as u32).to_le_bytes());
        CanFrame::new(
            (k % 0x2000_0000) as u32,
            canmc::frame::flags::FD | canmc::frame::flags::EXTENDED,
            &data,
        )
        .unwrap()
    } else {
        CanFrame::new((k % 0x800) as u32, 0, &k.to_le_bytes()).unwrap()
    };
    f.timestamp_ns = 1_700_000_000_000_000_000 + k * 1000;
    f.channel = match k % 3 {
        0 => Channel::NONE,
        1 => Channel::int(k as i64 % 2),
        _ => Channel::str("vcan0").unwrap(),
    };
    f.sender = sender(k);
    f
}

fn child_options() -> RecorderOptions {
    RecorderOptions {
        segment_size: 256 * 1024,
        max_channels: 8,
        max_senders: 8,
        ..RecorderOptions::default()
    }
}

/// Entry point of the writer child (run by `kill_9_at_random_moments_leaves_a_prefix`).
#[test]
#[ignore = "child process of kill_9_at_random_moments_leaves_a_prefix"]
fn crash_child() {
    let Ok(path) = std::env::var(CHILD_ENV) else {
        return;
    };
    let mut rec = Recorder::create(&path, child_options()).unwrap();
    let out = std::io::stdout();
    println!("ready");
    for k in 0.. {
        rec.write_frame(&expected(k)).unwrap();
        if k % LOSS_EVERY == LOSS_EVERY - 1 {
            rec.write_loss(sender(k), k, expected(k).timestamp_ns)
                .unwrap();
        }
        if k % 4096 == 4095 {
            use std::io::Write;
            // Everything up to frame k is committed: the parent may require it.
            let _ = writeln!(out.lock(), "written {}", k + 1);
        }
    }
}

/// Kills the writer child if the parent's assertions fail first.
struct KillOnDrop(std::process::Child);
impl Drop for KillOnDrop {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Checks that the recording is exactly frames 0..n (with their loss records) for some
/// n, and that it ended at an uncommitted record, not a corrupt one. Returns n.
fn verify_prefix(path: &Path) -> (u64, u32) {
    let r = Recording::open(path).unwrap_or_else(|e| panic!("open after kill: {e}"));
    let mut k = 0u64;
    let mut want_loss = false;
    let mut it = r.iter();
    for rec in &mut it {
        match rec {
            Record::Frame(f) => {
                assert!(!want_loss, "loss record missing after frame {}", k - 1);
                let got = f.to_frame();
                assert_eq!(got, expected(k), "frame {k} differs");
                k += 1;
                want_loss = k % LOSS_EVERY == 0;
            }
            Record::Loss {
                sender: s,
                lost,
                timestamp_ns,
            } => {
                assert!(want_loss, "unexpected loss record after frame {k}");
                assert_eq!(
                    (s, lost, timestamp_ns),
                    (sender(k - 1), k - 1, expected(k - 1).timestamp_ns)
                );
                want_loss = false;
            }
            Record::KernelDrops { .. } => panic!("child never writes kernel drops"),
        }
    }
    // Finished only if the kill fell between closing a segment and creating the next.
    assert!(
        matches!(it.end(), Some(End::Unfinished | End::Finished)),
        "a killed writer leaves an unfinished recording, never a corrupt one: {:?}",
        it.end()
    );
    (k, r.segments())
}

#[test]
fn kill_9_at_random_moments_leaves_a_prefix() {
    let dir = tmpdir("crash");
    let path = dir.join("rec.cmc");
    let exe = std::env::current_exe().unwrap();
    let mut rng = Rng(0x9E37_79B9_7F4A_7C15 ^ std::process::id() as u64);
    let runs = 24;
    let (mut nonempty, mut rotated, mut total) = (0, 0, 0u64);
    for run in 0..runs {
        let mut cmd = Command::new(&exe);
        cmd.args(["--exact", &common::test_name(module_path!(), "crash_child")])
            .args(["--ignored", "--nocapture"])
            .args(["--test-threads", "1"])
            .env(CHILD_ENV, &path)
            .stdout(Stdio::piped())
            .stderr(Stdio::inherit());
        // SAFETY: prctl is a raw syscall, async-signal safe between fork and exec. The
        // child writes forever: it must not outlive a failed parent.
        unsafe {
            cmd.pre_exec(|| {
                libc::prctl(libc::PR_SET_PDEATHSIG, libc::SIGKILL);
                Ok(())
            });
        }
        let mut child = KillOnDrop(cmd.spawn().unwrap());
        let mut lines = BufReader::new(child.0.stdout.take().unwrap()).lines();
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let line = lines.next().unwrap_or_else(|| panic!("child exited early"));
            // libtest prints "test crash_child ... " before the test's own output.
            if line.unwrap().ends_with("ready") {
                break;
            }
            assert!(Instant::now() < deadline, "child never became ready");
        }
        // Kill while it writes: somewhere in the first few milliseconds (mid-block,
        // mid-rotation, mid-table definition — wherever it happens to be).
        let progress = std::thread::spawn(move || {
            let mut max = 0u64;
            for l in lines.map_while(Result::ok) {
                if let Some(n) = l.strip_prefix("written ") {
                    max = max.max(n.parse().unwrap());
                }
            }
            max
        });
        std::thread::sleep(Duration::from_micros(rng.next() % 40_000));
        child.0.kill().unwrap(); // SIGKILL
        let status = child.0.wait().unwrap();
        assert!(!status.success(), "child must die by the signal");
        let acknowledged = progress.join().unwrap();

        let (n, segments) = verify_prefix(&path);
        assert!(
            n >= acknowledged,
            "run {run}: child had committed {acknowledged} frames, recording yields {n}"
        );
        if run % 2 == 1 {
            // Persisting the repair changes nothing that is read, and finishes the file.
            Recording::repair(&path).unwrap();
            let r = Recording::open(&path).unwrap();
            assert!(r.is_finished() || r.segments() == 0);
            let mut it = r.iter();
            let m = it
                .by_ref()
                .filter(|x| matches!(x, Record::Frame(_)))
                .count() as u64;
            assert_eq!(m, n, "run {run}: repair changed the frame count");
            assert!(matches!(it.end(), Some(End::Finished)), "{:?}", it.end());
        }
        nonempty += (n > 0) as u32;
        rotated += (segments > 1) as u32;
        total += n;
    }
    eprintln!(
        "{runs} kills: {nonempty} non-empty, {rotated} with rotation, {total} frames checked"
    );
    assert!(
        nonempty >= runs * 3 / 4,
        "most kills should land after writing began"
    );
    assert!(rotated > 0, "no kill happened after a rotation");
    let _ = std::fs::remove_dir_all(&dir);
}

/// Entry point of the disk-full child: runs inside its own mount namespace with a
/// 2 MiB tmpfs at `$CANMC_RECORD_DISKFULL_DIR`.
#[test]
#[ignore = "child process of disk_full_stops_with_a_clear_error_and_keeps_the_file_valid"]
fn disk_full_child() {
    let Ok(dir) = std::env::var(DISK_FULL_ENV) else {
        return;
    };
    let dir = PathBuf::from(dir);
    let path = dir.join("full.cmc");
    let opts = RecorderOptions {
        segment_size: 512 * 1024,
        max_channels: 8,
        max_senders: 8,
        ..RecorderOptions::default()
    };
    let mut rec = Recorder::create(&path, opts).unwrap();
    let mut written = 0u64;
    let err = loop {
        match rec.write_frame(&expected(written)) {
            Ok(()) => written += 1,
            Err(e) => break e,
        }
        assert!(written < 10_000_000, "2 MiB never filled up");
    };
    let msg = err.to_string();
    match &err {
        RecordError::Preallocate {
            path: p, source, ..
        } => {
            assert_eq!(source.raw_os_error(), Some(libc::ENOSPC), "{msg}");
            assert!(p.starts_with(&dir), "{msg}");
        }
        other => panic!("expected a preallocation error, got {other:?}"),
    }
    assert!(
        msg.contains("full.cmc.") && msg.contains("No space left"),
        "{msg}"
    );
    // The failed segment file is not left behind.
    let failed = match &err {
        RecordError::Preallocate { path, .. } => path.clone(),
        _ => unreachable!(),
    };
    assert!(!failed.exists(), "{} left behind", failed.display());
    // Later writes say the recording stopped, and why.
    let again = rec.write_frame(&expected(written)).unwrap_err();
    assert!(matches!(again, RecordError::Stopped { .. }), "{again}");
    assert!(again.to_string().contains("No space left"), "{again}");
    let stats = rec.finish().unwrap();
    assert_eq!(stats.frames, written);

    let r = Recording::open(&path).unwrap();
    assert!(r.is_finished());
    let mut k = 0;
    for rec in r.iter() {
        match rec {
            Record::Frame(f) => assert_eq!(f.to_frame(), expected(k)),
            other => panic!("{other:?}"),
        }
        k += 1;
    }
    assert_eq!(
        k, written,
        "every frame written before the error is readable"
    );

    // Creating a recording on the full file system fails cleanly too.
    let e = Recorder::create(dir.join("second.cmc"), opts)
        .err()
        .unwrap();
    assert!(matches!(e, RecordError::Preallocate { .. }), "{e}");
    assert!(e.to_string().contains("second.cmc"), "{e}");
    assert!(!dir.join("second.cmc").exists());
    println!("DISKFULL-OK frames={written} segments={}", r.segments());
}

#[test]
fn disk_full_stops_with_a_clear_error_and_keeps_the_file_valid() {
    let dir = tmpdir("diskfull");
    let exe = std::env::current_exe().unwrap();
    let c = |s: &str| std::ffi::CString::new(s).unwrap();
    let (none, root, tmpfs, opts) = (c("none"), c("/"), c("tmpfs"), c("size=2m"));
    let target = c(dir.to_str().unwrap());
    let mut cmd = Command::new(&exe);
    cmd.args([
        "--exact",
        &common::test_name(module_path!(), "disk_full_child"),
    ])
    .args(["--ignored", "--nocapture"])
    .env(DISK_FULL_ENV, &dir);
    // SAFETY: between fork and exec the closure makes only raw syscalls (async-signal
    // safe) on C strings allocated before the fork.
    unsafe {
        cmd.pre_exec(move || {
            if libc::unshare(libc::CLONE_NEWNS) != 0
                || libc::mount(
                    none.as_ptr(),
                    root.as_ptr(),
                    std::ptr::null(),
                    libc::MS_REC | libc::MS_PRIVATE,
                    std::ptr::null(),
                ) != 0
                || libc::mount(
                    none.as_ptr(),
                    target.as_ptr(),
                    tmpfs.as_ptr(),
                    0,
                    opts.as_ptr().cast(),
                ) != 0
            {
                return Err(std::io::Error::last_os_error());
            }
            Ok(())
        });
    }
    let out = cmd.output().unwrap_or_else(|e| {
        panic!("cannot start the disk-full child (needs root for a private tmpfs mount): {e}")
    });
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(
        out.status.success() && stdout.contains("DISKFULL-OK"),
        "disk-full child failed ({}):\n{stdout}\n{stderr}",
        out.status
    );
    eprintln!(
        "{}",
        stdout
            .lines()
            .find(|l| l.contains("DISKFULL-OK"))
            .unwrap_or("")
    );
    let _ = std::fs::remove_dir_all(&dir);
}

/// A writer killed while creating segment N leaves an empty `rec.cmc.N`: the recording
/// is every closed segment before it, not just the first one.
#[test]
fn kill_during_segment_creation_keeps_every_closed_segment() {
    let dir = tmpdir("seg-create");
    let path = dir.join("rec.cmc");
    let mut rec = Recorder::create(&path, child_options()).unwrap();
    let n = 30_000u64;
    for k in 0..n {
        rec.write_frame(&expected(k)).unwrap();
    }
    let stats = rec.finish().unwrap();
    assert!(
        stats.segments >= 3,
        "needs several segments, got {}",
        stats.segments
    );
    // What a kill between creating the next file and committing its header leaves.
    std::fs::File::create(dir.join(format!("rec.cmc.{}", stats.segments))).unwrap();
    let r = Recording::open(&path).unwrap();
    let frames = r
        .iter()
        .filter(|rec| matches!(rec, Record::Frame(_)))
        .count() as u64;
    assert_eq!(frames, n, "every frame of every closed segment is read");
    let mut it = r.iter();
    for _ in &mut it {}
    assert!(matches!(it.end(), Some(End::Unfinished)), "{:?}", it.end());
    let _ = std::fs::remove_dir_all(&dir);
}
