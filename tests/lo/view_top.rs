//! `canmc top` under tmux: a real terminal, real keys. The test starts `top --iface lo`
//! in a detached tmux session (its own tmux server socket), sends known frames with
//! `canmc send` / `canmc gen` on loopback, and reads the screen with
//! `tmux capture-pane -p`: the rows, counts, DLC and data are there and right, changed
//! bytes are highlighted, and the sort, pause, filter, clear and quit keys work.
//!
//! tmux is required (Debian `tmux`, installed by tools/install-deps.sh): without it
//! this test FAILS.

use std::process::{Command, Output};
use std::time::{Duration, Instant};

use crate::common::{self, canmc, json_u64, ok, wait_until_answering};

struct Tmux {
    socket: String,
}

impl Tmux {
    fn run(&self, args: &[&str]) -> Output {
        Command::new("tmux")
            .arg("-L")
            .arg(&self.socket)
            .args(args)
            .output()
            .unwrap_or_else(|e| {
                panic!("tmux missing ({e}): apt-get install tmux (tools/install-deps.sh does)")
            })
    }

    fn screen(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-t", "top"]);
        ok(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// The screen with its colours as SGR escapes.
    fn screen_styled(&self) -> String {
        let out = self.run(&["capture-pane", "-p", "-e", "-t", "top"]);
        ok(&out);
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    fn keys(&self, keys: &[&str]) {
        let mut args = vec!["send-keys", "-t", "top"];
        args.extend(keys);
        ok(&self.run(&args));
    }

    /// Waits until `pred` holds for the screen on two captures 150 ms apart (so a
    /// capture taken while a redraw is on its way is not what the test reads); panics
    /// with the screen after 10 s.
    #[track_caller]
    fn wait_for(&self, what: &str, pred: impl Fn(&str) -> bool) -> String {
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let s = self.screen();
            if pred(&s) {
                std::thread::sleep(Duration::from_millis(150));
                let again = self.screen();
                if again == s {
                    return s;
                }
                continue;
            }
            assert!(
                Instant::now() < deadline,
                "{what}: not on screen after 10 s:\n{s}"
            );
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

impl Drop for Tmux {
    fn drop(&mut self) {
        let _ = self.run(&["kill-server"]);
    }
}

/// The table row whose ID column is `id` (and channel `chan`), as its words.
fn row<'a>(screen: &'a str, chan: &str, id: &str) -> Option<Vec<&'a str>> {
    screen
        .lines()
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .find(|w| w.len() > 2 && w[0] == chan && w[1] == id)
}

/// The IDs of the table rows, top to bottom.
fn row_ids(screen: &str) -> Vec<String> {
    let mut lines = screen.lines().skip_while(|l| !l.starts_with("CHAN"));
    lines.next();
    lines
        .take_while(|l| !l.trim().is_empty())
        .map(|l| l.split_whitespace().collect::<Vec<_>>())
        .map(|w| format!("{} {}", w[0], w[1]))
        .collect()
}

fn totals_frames(screen: &str) -> Option<u64> {
    let line = screen.lines().find(|l| l.starts_with("frames "))?;
    line.split_whitespace().nth(1)?.parse().ok()
}

#[test]
fn top_under_tmux_shows_rows_and_obeys_keys() {
    let _turn = common::serial();
    let port = "42911";
    let dir = common::tmpdir("view-top");
    let out_json = dir.join("summary.json");
    let tmux = Tmux {
        socket: format!("canmc-test-{}", std::process::id()),
    };
    // `exec` so the pane's process is canmc itself (its pid answers `ping`).
    let cmd = format!(
        "exec {} top --iface lo --port {port} --highlight 60 --json > {}",
        common::CANMC,
        out_json.display()
    );
    ok(&tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "150",
        "-y",
        "30",
        &cmd,
    ]));
    let pid_out = tmux.run(&["list-panes", "-t", "top", "-F", "#{pane_pid}"]);
    ok(&pid_out);
    let pid: u32 = String::from_utf8_lossy(&pid_out.stdout)
        .trim()
        .parse()
        .unwrap();
    tmux.wait_for("the header", |s| s.contains("canmc top  group"));
    wait_until_answering(port, &[pid]);

    // 0x123 three times (byte 2 changes once), 0x2A0 200 times by gen, one extended
    // frame, and 0x123 again on channel can1.
    let send = |args: &[&str]| {
        let mut a = vec!["send", "--iface", "lo", "--port", port];
        a.extend(args);
        ok(&canmc(&a));
    };
    send(&[
        "123#11223344",
        "123#11229944",
        "123#11229944",
        "18FEF100#AABB",
    ]);
    ok(&canmc(&[
        "gen", "--iface", "lo", "--port", port, "-n", "200", "-g", "1", "-I", "2A0", "-L", "8",
    ]));
    send(&["--channel", "can1", "123#01"]);
    let s = tmux.wait_for("205 frames", |s| totals_frames(s) == Some(205));

    let r = row(&s, "-", "123").expect("row 123");
    assert_eq!(&r[2..3], ["3"], "{s}");
    assert_eq!(r[6], "4", "DLC: {s}");
    assert_eq!(&r[7..], ["11", "22", "99", "44"], "{s}");
    let r = row(&s, "-", "2A0").expect("row 2A0");
    assert_eq!((r[2], r[6], r.len()), ("200", "8", 15), "{s}");
    let r = row(&s, "-", "18FEF100").expect("extended row");
    assert_eq!((r[2], r[6], &r[7..]), ("1", "2", &["AA", "BB"][..]), "{s}");
    let r = row(&s, "can1", "123").expect("row 123 on can1");
    assert_eq!((r[2], &r[7..]), ("1", &["01"][..]), "{s}");
    assert!(s.contains("IDs 4"), "{s}");
    assert!(
        s.contains("kernel drops 0  ring drops 0  seq gaps 0"),
        "{s}"
    );
    // Sorted by ID: standard before extended within a channel, channels as they came.
    assert_eq!(
        row_ids(&s),
        ["- 123", "- 2A0", "- 18FEF100", "can1 123"],
        "{s}"
    );

    // The changed byte (22 → 99) is highlighted; the unchanged ones are not.
    let styled = tmux.screen_styled();
    let line = styled
        .lines()
        .find(|l| l.contains("11") && l.contains("99") && l.contains("44"))
        .expect("row 123 in the styled capture");
    // Yellow background: SGR 43, or 48;5;3 as tmux writes it.
    let hot = |b: &str| line.contains(&format!("43m{b}")) || line.contains(&format!("48;5;3m{b}"));
    assert!(hot("99"), "no highlight on 99: {line:?}");
    assert!(!hot("11") && !hot("22") && !hot("44"), "{line:?}");

    // Sort by count: 2A0 first.
    tmux.keys(&["n"]);
    let s = tmux.wait_for("sort count", |s| s.contains("sort count"));
    assert_eq!(row_ids(&s)[0], "- 2A0", "{s}");
    tmux.keys(&["i"]);
    tmux.wait_for("sort id", |s| s.contains("sort id"));

    // Pause: new frames are counted but the screen keeps what it showed.
    tmux.keys(&["p"]);
    tmux.wait_for("paused", |s| s.contains("[PAUSED]"));
    send(&["123#11229944", "123#11229944"]);
    std::thread::sleep(Duration::from_millis(700));
    let s = tmux.screen();
    assert_eq!(totals_frames(&s), Some(205), "paused screen changed:\n{s}");
    assert_eq!(row(&s, "-", "123").unwrap()[2], "3");
    tmux.keys(&["p"]);
    let s = tmux.wait_for("unpaused with 207 frames", |s| {
        !s.contains("[PAUSED]") && totals_frames(s) == Some(207)
    });
    assert_eq!(row(&s, "-", "123").unwrap()[2], "5", "{s}");

    // Filter to 2A0, then back to everything.
    tmux.keys(&["/", "2", "A", "0", "Enter"]);
    let s = tmux.wait_for("filter 2A0", |s| s.contains("filter 2A0"));
    assert_eq!(row_ids(&s), ["- 2A0"], "{s}");
    tmux.keys(&["/", "BSpace", "BSpace", "BSpace", "Enter"]);
    let s = tmux.wait_for("no filter", |s| s.contains("filter -"));
    assert_eq!(row_ids(&s).len(), 4, "{s}");

    // Clear forgets the rows.
    tmux.keys(&["c"]);
    let s = tmux.wait_for("cleared", |s| {
        totals_frames(s) == Some(0) && row_ids(s).is_empty()
    });
    assert!(row_ids(&s).is_empty(), "{s}");

    // Quit: the process ends and its summary counts every frame it received.
    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(10);
    let summary = loop {
        let text = std::fs::read_to_string(&out_json).unwrap_or_default();
        if text.contains("\"command\":\"top\"") {
            break text;
        }
        assert!(Instant::now() < deadline, "no summary after q: {text:?}");
        std::thread::sleep(Duration::from_millis(100));
    };
    assert_eq!(json_u64(&summary, "frames"), 207, "{summary}");
    assert_eq!(json_u64(&summary, "kernel_drops"), 0);
    assert_eq!(json_u64(&summary, "ring_drops"), 0);
    // The pane (whose process was canmc) closes with it.
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.run(&["has-session", "-t", "top"]).status.success() {
        assert!(Instant::now() < deadline, "top still running 5 s after q");
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}

#[test]
fn dump_dbc_prints_decoded_signals() {
    let _turn = common::serial();
    let port = "42912";
    let dbc = crate::lab::repo().join("tests/data/views.dbc");
    let dump = common::spawn(&[
        "dump",
        "--iface",
        "lo",
        "--port",
        port,
        "-n",
        "3",
        "--dbc",
        dbc.to_str().unwrap(),
    ]);
    wait_until_answering(port, &[dump.id()]);
    // EngineData (Speed 46.6 km/h, Gear 3 Drive), an ID the DBC lacks, Diag mux 2.
    ok(&canmc(&[
        "send",
        "--iface",
        "lo",
        "--port",
        port,
        "100#3412F60FA0000C00",
        "7FF#01",
        "18FEF100#0202000102000000",
    ]));
    let out = dump.wait_with_output().unwrap();
    ok(&out);
    let text = String::from_utf8_lossy(&out.stdout);
    let lines: Vec<&str> = text.lines().collect();
    assert_eq!(lines.len(), 5, "{text}");
    assert!(
        lines[0].contains("100") && lines[0].contains("34 12 F6 0F A0 00 0C 00"),
        "{text}"
    );
    assert_eq!(
        lines[1],
        "  EngineData: Speed=46.6 km/h, CoolantTemp=-45 degC, Rpm=1000 rpm, Torque=-4.9 Nm, \
         Gear=3 (Drive), Flag=0, Odd=7"
    );
    assert!(lines[2].contains("7FF"), "{text}");
    assert!(lines[3].contains("18FEF100"), "{text}");
    assert_eq!(
        lines[4],
        "  Diag: Service=2 (Counter), Mode=2 (Run), Count=258"
    );
}

#[test]
fn top_plays_a_file_at_speed() {
    use canmc::convert::{create_writer, FileFormat, WriterOptions};
    use canmc::engine::Event;
    use canmc::CanFrame;

    let dir = common::tmpdir("view-top-file");
    let path = dir.join("two-seconds.cmc");
    let mut w = create_writer(&path, FileFormat::Cmc, WriterOptions::default()).unwrap();
    let t0 = 1_750_000_000_000_000_000u64;
    // 2 s of data: 0x100 every 10 ms (200 frames), 0x7FF every 100 ms (20), one loss
    // event of 4 datagrams and one kernel-drop event of 2.
    for i in 0..200u64 {
        let mut f = CanFrame::new(0x100, 0, &[i as u8, 0xAB]).unwrap();
        f.timestamp_ns = t0 + i * 10_000_000;
        w.write_event(&Event::Frame(f)).unwrap();
        if i % 10 == 0 {
            let mut f = CanFrame::new(0x7FF, 0, &[1, 2, 3]).unwrap();
            f.timestamp_ns = t0 + i * 10_000_000 + 1;
            w.write_event(&Event::Frame(f)).unwrap();
        }
        if i == 100 {
            w.write_event(&Event::Loss {
                sender: Default::default(),
                lost: 4,
                timestamp_ns: t0 + i * 10_000_000 + 2,
            })
            .unwrap();
            w.write_event(&Event::KernelDrops {
                count: 2,
                timestamp_ns: t0 + i * 10_000_000 + 3,
            })
            .unwrap();
        }
    }
    w.finish().unwrap();

    let tmux = Tmux {
        socket: format!("canmc-test-file-{}", std::process::id()),
    };
    // At 4× the 2 s take 0.5 s; the screen says when the file is done.
    let cmd = format!(
        "exec {} top --file {} --speed 4",
        common::CANMC,
        path.display()
    );
    let start = Instant::now();
    ok(&tmux.run(&[
        "new-session",
        "-d",
        "-s",
        "top",
        "-x",
        "150",
        "-y",
        "30",
        &cmd,
    ]));
    let s = tmux.wait_for("end of file", |s| s.contains("[END OF FILE]"));
    let took = start.elapsed();
    assert!(
        took >= Duration::from_millis(450),
        "played 2 s at 4× in {took:?}"
    );
    assert!(
        s.contains("kernel drops 2  ring drops -  seq gaps 4"),
        "{s}"
    );
    assert!(s.contains("IDs 2"), "{s}");
    let r = row(&s, "-", "100").expect("row 100");
    assert_eq!((r[2], r[4], r[6]), ("200", "10.000", "2"), "{s}");
    assert_eq!(r[5], "0.000", "jitter of an exact period: {s}");
    let r = row(&s, "-", "7FF").expect("row 7FF");
    assert_eq!(
        (r[2], r[4], &r[7..]),
        ("20", "100.000", &["01", "02", "03"][..]),
        "{s}"
    );
    assert_eq!(totals_frames(&s), Some(220));
    tmux.keys(&["q"]);
    let deadline = Instant::now() + Duration::from_secs(5);
    while tmux.run(&["has-session", "-t", "top"]).status.success() {
        assert!(
            Instant::now() < deadline,
            "top --file still running 5 s after q"
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    std::fs::remove_dir_all(&dir).unwrap();
}
