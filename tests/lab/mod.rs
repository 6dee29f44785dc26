//! Shared helpers for the integration tests: run shell scripts inside the network lab
//! (`tools/netlab.sh`), find the python-can interpreter, and read candump log lines.
//! (What does not need the lab, JSON summaries included, is in `tests/common`.)
//!
//! Every networked test goes through [`Lab::run`] or [`Lab::run_hosts`], so its packets
//! stay inside namespaces the lab created (SPEC §9's network rule). A missing python-can
//! is a test failure with instructions, never a skip.

#![allow(dead_code)] // each test crate uses a different subset

use std::path::{Path, PathBuf};
use std::process::{Command, ExitStatus, Stdio};
use std::sync::atomic::{AtomicU16, Ordering};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{SystemTime, UNIX_EPOCH};

/// The repository root.
pub fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// `tools/netlab.sh`.
pub fn netlab() -> PathBuf {
    repo().join("tools/netlab.sh")
}

/// `tools/pycan_peer.py`.
pub fn peer() -> PathBuf {
    repo().join("tools/pycan_peer.py")
}

/// The python that has python-can: `$CANMC_PYTHON`, else `<repo>/.venv/bin/python`.
///
/// Panics with instructions when it is missing or cannot import python-can: the
/// interop tests must fail, not skip, without their peer.
pub fn python() -> PathBuf {
    static CHECKED: OnceLock<Result<PathBuf, String>> = OnceLock::new();
    let found = CHECKED.get_or_init(|| {
        let py = match std::env::var_os("CANMC_PYTHON") {
            Some(p) if !p.is_empty() => PathBuf::from(p),
            _ => repo().join(".venv/bin/python"),
        };
        let hint = "run `bash tools/setup-venv.sh` (makes <repo>/.venv with python-can and \
                    msgpack) or set CANMC_PYTHON to a python that has python-can 4.x";
        if !py.exists() {
            return Err(format!(
                "python-can peer missing: {} does not exist; {hint}",
                py.display()
            ));
        }
        let out = Command::new(&py)
            .args(["-c", "import can, msgpack; print(can.__version__)"])
            .output()
            .map_err(|e| format!("cannot run {}: {e}; {hint}", py.display()))?;
        if !out.status.success() {
            return Err(format!(
                "{} cannot import python-can/msgpack: {}; {hint}",
                py.display(),
                String::from_utf8_lossy(&out.stderr).trim()
            ));
        }
        Ok(py)
    });
    match found {
        Ok(p) => p.clone(),
        Err(e) => panic!("{e}"),
    }
}

/// A UDP port no other test of this process uses. (Each lab run is its own namespace,
/// so this only matters for tests that share one lab run or the host's loopback.)
pub fn port() -> u16 {
    static NEXT: AtomicU16 = AtomicU16::new(0);
    let base = 40000 + (std::process::id() % 1000) as u16 * 16;
    base + NEXT.fetch_add(1, Ordering::Relaxed) % 16
}

/// Seconds since the Unix epoch, as the candump log's timestamps count them.
pub fn now_s() -> f64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .unwrap()
        .as_secs_f64()
}

/// What a lab script left behind.
#[derive(Debug)]
pub struct LabRun {
    pub status: ExitStatus,
    pub stdout: String,
    pub stderr: String,
}

impl LabRun {
    /// Panics, showing the script's output, unless it exited 0.
    #[track_caller]
    pub fn assert_ok(&self) -> &LabRun {
        assert!(self.status.success(), "{}", self.failure());
        self
    }

    fn failure(&self) -> String {
        format!(
            "lab script failed ({})\n--- stdout ---\n{}\n--- stderr ---\n{}",
            self.status, self.stdout, self.stderr
        )
    }
}

/// Shell functions every lab script can use (bash, `set -euo pipefail` is on).
const PRELUDE: &str = r#"
set -euo pipefail
# wait_file FILE [SECS]: until FILE exists.
wait_file() {
    local i n=$(( ${2:-10} * 50 ))
    for ((i = 0; i < n; i++)); do [[ -e $1 ]] && return 0; sleep 0.02; done
    echo "wait_file: $1 did not appear" >&2; return 1
}
# wait_udp PORT [SECS]: until a UDP socket of this namespace is bound to PORT.
wait_udp() {
    local hex i n=$(( ${2:-10} * 50 ))
    hex=$(printf ':%04X ' "$1")
    for ((i = 0; i < n; i++)); do
        if grep -q "$hex" /proc/net/udp /proc/net/udp6 2>/dev/null; then return 0; fi
        sleep 0.02
    done
    echo "wait_udp: nothing bound to port $1" >&2; return 1
}
# wait_joined GROUP [SECS]: until some socket of this namespace has joined GROUP (IPv4,
# or IPv6 written with all 8 groups), as /proc/net/igmp{,6} show it.
wait_joined() {
    local g=$1 i n=$(( ${2:-10} * 50 )) pat file
    if [[ $g == *:* ]]; then
        local IFS=:; local parts=($g); unset IFS
        [[ ${#parts[@]} -eq 8 ]] || { echo "wait_joined: write all 8 groups of $g" >&2; return 1; }
        pat=; for x in "${parts[@]}"; do pat+=$(printf '%04x' "0x$x"); done
        pat=" $pat "; file=/proc/net/igmp6
    else
        local IFS=.; local o=($g); unset IFS
        pat=$(printf '\t%02X%02X%02X%02X ' "${o[3]}" "${o[2]}" "${o[1]}" "${o[0]}"); file=/proc/net/igmp
    fi
    for ((i = 0; i < n; i++)); do grep -q "$pat" "$file" && return 0; sleep 0.02; done
    echo "wait_joined: nobody joined $g" >&2; return 1
}
"#;

/// A per-test scratch directory (`$T` in scripts) and the means to run scripts in the lab.
pub struct Lab {
    canmc: PathBuf,
    dir: PathBuf,
    // Lab scripts pace traffic, count drops and run python-can, which loses frames
    // when it shares two cores with other labs: the tests of one binary take turns.
    _turn: MutexGuard<'static, ()>,
}

static TURN: Mutex<()> = Mutex::new(());

impl Lab {
    /// `canmc` is `env!("CARGO_BIN_EXE_canmc")` of the calling test crate.
    pub fn new(canmc: &str, name: &str) -> Lab {
        static SEQ: AtomicU16 = AtomicU16::new(0);
        let dir = std::env::temp_dir().join(format!(
            "canmc-test-{}-{}-{}",
            name,
            std::process::id(),
            SEQ.fetch_add(1, Ordering::Relaxed)
        ));
        let turn = TURN.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("create test scratch dir");
        Lab {
            canmc: PathBuf::from(canmc),
            dir,
            _turn: turn,
        }
    }

    /// The scratch directory.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Panics unless `run` exited 0, showing its output and that of `files` (in `$T`).
    #[track_caller]
    pub fn assert_ok(&self, run: &LabRun, files: &[&str]) {
        if run.status.success() {
            return;
        }
        let mut msg = format!("{}\n(in {})", run.failure(), self.dir.display());
        for f in files {
            msg += &format!("\n--- {f} ---\n{}", self.read(f));
        }
        panic!("{msg}");
    }

    /// Contents of a file the script wrote into `$T` (empty if absent).
    pub fn read(&self, file: &str) -> String {
        std::fs::read_to_string(self.dir.join(file)).unwrap_or_default()
    }

    /// Runs `script` (bash) in a fresh `netlab.sh run` namespace with a time limit.
    /// Scripts see `$CANMC`, `$PY`, `$PEER`, `$T` and the [`PRELUDE`] functions.
    pub fn run(&self, script: &str) -> LabRun {
        self.exec(&["run"], script, true)
    }

    /// Like [`Lab::run`] without python-can in the environment (`$PY` unset), for tests
    /// that do not need the peer.
    pub fn run_no_python(&self, script: &str) -> LabRun {
        self.exec(&["run"], script, false)
    }

    /// Runs `script` in the parent namespace of `netlab.sh hosts n`; `"$LAB_EXEC" i CMD`
    /// runs CMD in host i (10.77.0.i, fd77::i, interface v0).
    pub fn run_hosts(&self, n: u32, script: &str) -> LabRun {
        let n = n.to_string();
        self.exec(&["hosts", &n], script, true)
    }

    fn exec(&self, mode: &[&str], script: &str, with_python: bool) -> LabRun {
        let mut cmd = Command::new("timeout");
        // timeout signals its whole process group, so background peers die with it.
        cmd.args(["-k", "5", "120"])
            .arg(netlab())
            .args(mode)
            .args(["bash", "-c"])
            .arg(format!("{PRELUDE}\n{script}"))
            .env("CANMC", &self.canmc)
            .env("PEER", peer())
            .env("T", &self.dir)
            .current_dir(repo())
            .stdin(Stdio::null());
        if with_python {
            cmd.env("PY", python());
        }
        let out = cmd.output().expect("run tools/netlab.sh");
        LabRun {
            status: out.status,
            stdout: String::from_utf8_lossy(&out.stdout).into_owned(),
            stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
        }
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if std::thread::panicking() {
            eprintln!("test files kept in {}", self.dir.display());
        } else {
            let _ = std::fs::remove_dir_all(&self.dir);
        }
    }
}

/// Splits a candump log line `(1700000000.123456) IFNAME ID#DATA` into the timestamp
/// (seconds) and the rest; `None` if the line does not have that form.
pub fn split_log_line(line: &str) -> Option<(f64, &str)> {
    let rest = line.strip_prefix('(')?;
    let close = rest.find(") ")?;
    let ts = &rest[..close];
    let (secs, frac) = ts.split_once('.')?;
    let digits = |s: &str| !s.is_empty() && s.bytes().all(|b| b.is_ascii_digit());
    if !digits(secs) || frac.len() != 6 || !digits(frac) {
        return None;
    }
    Some((ts.parse().ok()?, &rest[close + 2..]))
}

/// The frame kinds the python peer sends, as `IFNAME ID#DATA` lines.
pub fn pycan_kinds() -> Vec<String> {
    let out = Command::new(python())
        .arg(peer())
        .arg("kinds")
        .output()
        .expect("run pycan_peer.py kinds");
    assert!(
        out.status.success(),
        "pycan_peer.py kinds failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout)
        .unwrap()
        .lines()
        .map(str::to_owned)
        .collect()
}
