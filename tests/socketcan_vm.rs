//! SocketCAN on a real kernel: one qemu guest boot (tools/canvm.sh, no network device)
//! runs tests/socketcan/scenarios.sh with can-utils as peers, and this test checks what
//! it left behind. The host has no CAN; the VM is required: when it cannot start, the
//! test fails (it never skips).
//!
//! Also here: the allocation test that runs inside the guest (started by the scenario
//! script with `--ignored --exact`), and the host-side check that `dump --can` says in
//! one line why it cannot open an interface.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::{Duration, Instant};

use canmc::convert::{read_events, FileFormat, ReadOptions};
use canmc::engine::Event;
use canmc::{CanFrame, Direction};
use common::alloc::{all_allocs, allocations, assert_counter_works};

#[global_allocator]
static GLOBAL: common::alloc::Counting = common::alloc::Counting;

fn repo() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR"))
}

/// The frames of a capture file (.cmc or candump .log), in order.
fn frames(path: &Path) -> Vec<CanFrame> {
    let mut out = Vec::new();
    let format = FileFormat::from_path(path).unwrap();
    let stats = read_events(
        path,
        format,
        ReadOptions {
            skip_bad: false,
            start_ns: None,
        },
        &mut |e| {
            if let Event::Frame(f) = e {
                out.push(*f);
            }
            true
        },
    )
    .unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    stats.check(path).unwrap();
    out
}

/// What two ends compare: the frame without time, channel, sender or direction.
fn content(f: &CanFrame) -> CanFrame {
    let mut c = f.content();
    c.set_direction(Direction::Rx);
    c
}

fn contents(v: &[CanFrame]) -> Vec<CanFrame> {
    v.iter().map(content).collect()
}

fn json(path: &Path) -> serde_json::Value {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    let line = text.lines().last().unwrap_or("");
    serde_json::from_str(line).unwrap_or_else(|e| panic!("{}: {e}: {text:?}", path.display()))
}

fn json_lines(path: &Path) -> Vec<serde_json::Value> {
    std::fs::read_to_string(path)
        .unwrap_or_default()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect()
}

fn read(path: &Path) -> String {
    std::fs::read_to_string(path).unwrap_or_else(|e| format!("<{}: {e}>", path.display()))
}

fn u(v: &serde_json::Value, path: &[&str]) -> u64 {
    let mut v = v;
    for k in path {
        v = &v[*k];
    }
    v.as_u64()
        .unwrap_or_else(|| panic!("no number at {path:?} in {v}"))
}

fn sorted(mut v: Vec<CanFrame>) -> Vec<Vec<u8>> {
    use zerocopy::IntoBytes;
    let mut b: Vec<Vec<u8>> = v.drain(..).map(|f| f.as_bytes().to_vec()).collect();
    b.sort();
    b
}

/// One guest boot, every scenario; failures are collected so one broken scenario does
/// not hide the others.
#[test]
fn vm_scenarios() {
    let out = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("socketcan-vm");
    let _ = std::fs::remove_dir_all(&out);
    std::fs::create_dir_all(&out).unwrap();
    let testbin = std::env::current_exe().unwrap();
    let started = Instant::now();
    let run = Command::new("bash")
        .arg(repo().join("tools/canvm.sh"))
        .args(["--rw", out.to_str().unwrap(), "--timeout", "900", "sh"])
        .arg(repo().join("tests/socketcan/scenarios.sh"))
        .arg(&out)
        .arg(env!("CARGO_BIN_EXE_canmc"))
        .arg(&testbin)
        .output()
        .expect("cannot run tools/canvm.sh");
    eprintln!(
        "canvm: exit {:?} after {:.1} s\n{}",
        run.status.code(),
        started.elapsed().as_secs_f64(),
        String::from_utf8_lossy(&run.stderr)
    );
    assert!(
        run.status.success() && out.join("done").exists(),
        "the VM run failed (exit {:?}); stderr above",
        run.status.code()
    );
    let mut failures = Vec::new();
    let mut check = |name: &str, f: &dyn Fn(&Path)| {
        let r = std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| f(&out)));
        if r.is_err() {
            failures.push(name.to_string());
        }
    };
    check("alloc", &|o| {
        let text = read(&o.join("alloc.out"));
        assert_eq!(read(&o.join("alloc.rc")).trim(), "0", "{text}");
        assert!(text.contains("test result: ok. 1 passed"), "{text}");
    });
    check("s1 cangen -> bridge -> group -> record", &|o| {
        let d = o.join("s1");
        assert_eq!(read(&d.join("cangen.rc")).trim(), "0");
        let reference = frames(&d.join("candump.log"));
        assert_eq!(
            reference.len(),
            300,
            "candump saw {} frames",
            reference.len()
        );
        let rec = frames(&d.join("rec.cmc"));
        assert_eq!(
            contents(&rec),
            contents(&reference),
            "record via the group differs from candump\n{}",
            read(&d.join("bridge.json"))
        );
        // The group path stamps frames when they reach the group socket: close to the
        // bus time, not equal.
        for (r, c) in rec.iter().zip(&reference) {
            let lag = r.timestamp_ns.abs_diff(c.timestamp_ns);
            assert!(
                lag < 500_000_000,
                "group timestamp {lag} ns off the bus time"
            );
        }
        // record --can keeps the kernel's timestamps: candump's, to the microsecond.
        let can = frames(&d.join("can.cmc"));
        assert_eq!(contents(&can), contents(&reference));
        for (r, c) in can.iter().zip(&reference) {
            assert_eq!(r.timestamp_ns / 1000, c.timestamp_ns / 1000);
            assert_eq!(r.channel.to_string(), "vcan0");
        }
        let b = json(&d.join("bridge.json"));
        assert_eq!(u(&b, &["to_group", "frames"]), 300, "{b}");
        assert_eq!(u(&b, &["to_can", "frames"]), 0, "{b}");
        assert_eq!(u(&b, &["to_can", "own_datagrams"]), 300, "{b}");
        let rc = json(&d.join("reccan.json"));
        assert_eq!(u(&rc, &["frames"]), 300);
        assert_eq!(u(&rc, &["kernel_drops"]), 0);
    });
    check("s2 send -> group -> bridge -> candump", &|o| {
        let d = o.join("s2");
        assert_eq!(
            read(&d.join("send.rc")).trim(),
            "0",
            "{}",
            read(&d.join("send.err"))
        );
        let want: Vec<CanFrame> = [
            "123#DEADBEEF",
            "1FFFFFFF#0011223344556677",
            "7FF#R",
            "12345678#R3",
            "000#",
            "123##1AABBCCDDEEFF00112233445566778899",
            "0AB##300112233445566778899AABBCCDDEEFF",
            "321##0",
            "111#11",
            "12222222##2BB",
        ]
        .iter()
        .map(|t| t.parse().unwrap())
        .collect();
        let got = frames(&d.join("candump.log"));
        assert_eq!(contents(&got), contents(&want));
        let b = json(&d.join("bridge.json"));
        assert_eq!(u(&b, &["to_can", "frames"]), 10, "{b}");
        assert_eq!(u(&b, &["to_group", "own_echoes"]), 10, "{b}");
        assert_eq!(u(&b, &["to_group", "frames"]), 0, "{b}");
    });
    check("s3 canplayer and replay --can", &|o| {
        let d = o.join("s3");
        assert_eq!(
            read(&d.join("replay.rc")).trim(),
            "0",
            "{}",
            read(&d.join("replay.err"))
        );
        let want = contents(&frames(&d.join("in.log")));
        assert_eq!(want.len(), 52);
        let player = contents(&frames(&d.join("canplayer.log")));
        assert_eq!(player, want, "canplayer");
        let ours = contents(&frames(&d.join("canmc.log")));
        let twice: Vec<CanFrame> = want.iter().chain(&want).copied().collect();
        assert_eq!(
            ours, twice,
            "canmc replay --can (timed, then --fast from .cmc)"
        );
        for s in json_lines(&d.join("replay.json")) {
            assert_eq!(u(&s, &["frames"]), 52, "{s}");
        }
    });
    check("s4 two bridges on one group", &|o| {
        let d = o.join("s4");
        let v0 = frames(&d.join("vcan0.log"));
        let v1 = frames(&d.join("vcan1.log"));
        let g = frames(&d.join("group.log"));
        assert_eq!(
            v0.len(),
            150,
            "vcan0: {} frames (100 own + 50 bridged)",
            v0.len()
        );
        assert_eq!(
            v1.len(),
            150,
            "vcan1: {} frames (50 own + 100 bridged)",
            v1.len()
        );
        assert_eq!(g.len(), 150, "group: {} frames", g.len());
        let s0 = sorted(contents(&v0));
        assert_eq!(s0, sorted(contents(&v1)));
        assert_eq!(s0, sorted(contents(&g)));
        let mut dedup = s0.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), 150, "duplicate frames");
        for (name, to_group, to_can) in [("bridge0", 100, 50), ("bridge1", 50, 100)] {
            let b = json(&d.join(format!("{name}.json")));
            assert_eq!(u(&b, &["to_group", "frames"]), to_group, "{b}");
            assert_eq!(u(&b, &["to_can", "frames"]), to_can, "{b}");
            assert_eq!(u(&b, &["to_group", "own_echoes"]), to_can, "{b}");
        }
    });
    check("s5 cangen unpaced: arrived or counted", &|o| {
        let d = o.join("s5");
        assert_eq!(
            read(&d.join("cangen.rc")).trim(),
            "0",
            "{}",
            read(&d.join("cangen.err"))
        );
        let b = json(&d.join("bridge.json"));
        let r = json(&d.join("rec.json"));
        let received = u(&b, &["to_group", "can_received"]);
        let drops = u(&b, &["to_group", "kernel_drops"]);
        let sent = u(&b, &["to_group", "frames"]);
        assert_eq!(sent, received, "{b}");
        let rec = frames(&d.join("rec.cmc")).len() as u64;
        assert_eq!(rec, u(&r, &["frames"]));
        let rec_drops = u(&r, &["kernel_drops"]);
        // What neither socket saw was dropped in a device backlog (vcan's echo, lo), and
        // the kernel counted it there.
        let num = |f: &str| read(&d.join(f)).trim().parse::<u64>().unwrap();
        let backlog = num("softnet.after") - num("softnet.before");
        let missing_on_bus = 20000 - received - drops;
        let missing_on_group = sent - rec - rec_drops;
        eprintln!(
            "s5: bridge {received} + {drops} socket drops of 20000; record {rec} + {rec_drops} of {sent}; device backlog drops {backlog}"
        );
        assert_eq!(
            missing_on_bus + missing_on_group,
            backlog,
            "record: {r} bridge: {b}"
        );
    });
    check("s6 errors", &|o| {
        let d = o.join("s6");
        for (name, needle) in [
            ("missing", "no CAN interface \"nope0\""),
            ("down", "CAN interface \"vcan9\" is down"),
            ("notcan", "interface \"lo\" is not a CAN interface"),
        ] {
            let err = read(&d.join(format!("{name}.err")));
            assert_ne!(read(&d.join(format!("{name}.rc"))).trim(), "0", "{name}");
            assert_eq!(err.lines().count(), 1, "{name}: {err:?}");
            assert!(err.contains(needle), "{name}: {err:?}");
        }
    });
    check("s7 two bridges on one bus: one forwards", &|o| {
        let d = o.join("s7");
        assert_eq!(read(&d.join("cangen.rc")).trim(), "0");
        assert_eq!(
            read(&d.join("send.rc")).trim(),
            "0",
            "{}",
            read(&d.join("send.err"))
        );
        let bus = frames(&d.join("vcan0.log"));
        let group = frames(&d.join("group.log"));
        let sent: Vec<CanFrame> = ["321#01", "322#0202", "1ABCDEF0#03", "7FF#R", "100##1AABB"]
            .iter()
            .map(|t| t.parse().unwrap())
            .collect();
        // Every frame once on the bus (100 from cangen, the 5 from the group written by
        // one bridge) and once on the group (the 100 sent by one bridge, the 5 sent).
        assert_eq!(bus.len(), 105, "vcan0: {} frames", bus.len());
        assert_eq!(group.len(), 105, "group: {} frames", group.len());
        let s = sorted(contents(&bus));
        assert_eq!(s, sorted(contents(&group)));
        let mut dedup = s.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), 105, "duplicate frames");
        let on_bus: Vec<CanFrame> = contents(&bus)
            .into_iter()
            .filter(|f| sent.contains(f))
            .collect();
        assert_eq!(
            on_bus,
            contents(&sent),
            "the group's frames on the bus, in order"
        );
        let a = json(&d.join("bridgeA.json"));
        let b = json(&d.join("bridgeB.json"));
        assert_eq!(a["bus"]["state"], "active", "{a}");
        assert_eq!(b["bus"]["state"], "standby", "{b}");
        assert_eq!(u(&a, &["bus", "takeovers"]), 1, "{a}");
        assert_eq!(u(&b, &["bus", "takeovers"]), 0, "{b}");
        assert_eq!(u(&a, &["to_group", "frames"]), 100, "{a}");
        assert_eq!(u(&a, &["to_can", "frames"]), 5, "{a}");
        assert_eq!(u(&a, &["to_group", "standby"]), 0, "{a}");
        assert_eq!(u(&b, &["to_group", "frames"]), 0, "{b}");
        assert_eq!(u(&b, &["to_can", "frames"]), 0, "{b}");
        // The standby saw everything and counted it: the bus's 105 frames, the group's.
        assert_eq!(u(&b, &["to_group", "standby"]), 105, "{b}");
        assert_eq!(u(&b, &["to_can", "standby"]), 105, "{b}");
        for v in [&a, &b] {
            assert_eq!(u(v, &["to_can", "decode_errors"]), 0, "{v}");
        }
        // Nothing circulates once traffic stops.
        let after = json(&d.join("after.json"));
        assert_eq!(u(&after, &["frames"]), 0, "{after}");
        assert_eq!(frames(&d.join("after.log")).len(), 0);
        let rec = json(&d.join("rec.json"));
        assert_eq!(
            u(&rec, &["decode_errors_total"]),
            0,
            "announcements are no errors: {rec}"
        );
    });
    check("s8 failover: the standby takes over", &|o| {
        let d = o.join("s8");
        assert_eq!(
            read(&d.join("send.rc")).trim(),
            "0",
            "{}",
            read(&d.join("send.err"))
        );
        let bus = frames(&d.join("vcan0.log"));
        let group = frames(&d.join("group.log"));
        assert_eq!(
            bus.len(),
            62,
            "vcan0: {} frames (30 + 30 + 2 from the group)",
            bus.len()
        );
        assert_eq!(group.len(), 62, "group: {} frames", group.len());
        let s = sorted(contents(&bus));
        assert_eq!(s, sorted(contents(&group)));
        let mut dedup = s.clone();
        dedup.dedup();
        assert_eq!(dedup.len(), 62, "duplicate frames");
        let b = json(&d.join("bridgeB.json"));
        assert_eq!(b["bus"]["state"], "active", "{b}");
        assert_eq!(u(&b, &["bus", "takeovers"]), 1, "{b}");
        assert_eq!(u(&b, &["to_group", "frames"]), 30, "{b}");
        assert_eq!(u(&b, &["to_can", "frames"]), 2, "{b}");
        let gap = b["bus"]["last_takeover_gap_ms"]
            .as_f64()
            .unwrap_or_else(|| panic!("no takeover gap: {b}"));
        // Documented: 3 periods (300 ms) of silence, then the next tick; the guest's
        // emulated clock is slow and noisy, hence the margin.
        assert!(
            (300.0..1000.0).contains(&gap),
            "took over {gap} ms after the last announcement"
        );
        eprintln!("s8: the standby took over {gap:.0} ms after the active one's last announcement");
    });
    check("s9 dump --can --dbc", &|o| {
        let d = o.join("s9");
        assert_eq!(
            read(&d.join("dump.rc")).trim(),
            "0",
            "{}",
            read(&d.join("dump.err"))
        );
        let reference = frames(&d.join("candump.log"));
        assert_eq!(reference.len(), 3, "candump saw {reference:?}");
        let text = read(&d.join("dump.out"));
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines.len(), 5, "{text}");
        assert!(
            lines[0].contains("vcan0") && lines[0].contains("34 12 F6 0F A0 00 0C 00"),
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
    });
    assert!(
        failures.is_empty(),
        "failed scenarios: {failures:?} (details above; files in {})",
        out.display()
    );
}

/// No allocation per frame after start-up: the CAN receiver and sender (per thread), and
/// a running bridge (every thread of the process), in the guest's kernel.
#[test]
#[ignore = "runs inside the VM: started by vm_scenarios through tests/socketcan/scenarios.sh"]
fn inguest_no_allocation_per_frame() {
    use canmc::canif::{Bridge, BridgeConfig, CanReceiver, CanSender, CanSocket, CanSocketConfig};
    use canmc::send::FrameSender;
    use canmc::socket::{McastConfig, SendSocket};
    use canmc::wire::WireFormat;

    assert_eq!(
        std::env::var("CANMC_IN_VM").as_deref(),
        Ok("1"),
        "this test needs the SocketCAN guest (tools/canvm.sh) and vcan0/vcan1"
    );
    assert_counter_works();
    let set: Vec<CanFrame> = [
        "123#DEADBEEF",
        "12345678#0011223344556677",
        "7FF#R2",
        "123##1AABBCCDDEEFF00112233445566778899",
        "20000004#0000000000000000",
    ]
    .iter()
    .map(|t| t.parse().unwrap())
    .collect();

    // Receiver and sender, on this thread.
    let rx = CanSocket::open("vcan0", &CanSocketConfig::default()).unwrap();
    let mut rx = CanReceiver::new(rx, 64).unwrap();
    let tx_cfg = CanSocketConfig {
        write_only: true,
        ..CanSocketConfig::default()
    };
    let mut tx = CanSender::new(CanSocket::open("vcan0", &tx_cfg).unwrap(), 64).unwrap();
    let mut got = 0u64;
    let round = |tx: &mut CanSender, rx: &mut CanReceiver, n: usize, got: &mut u64| {
        for i in 0..n {
            tx.push(&set[i % set.len()]).unwrap();
            if i % 64 == 63 {
                tx.flush().unwrap();
                while rx
                    .recv_batch(&mut |f, _| {
                        *got += 1;
                        std::hint::black_box(f);
                    })
                    .unwrap()
                    > 0
                {}
            }
        }
        tx.flush().unwrap();
        let deadline = Instant::now() + Duration::from_secs(5);
        while *got < tx.sent() && Instant::now() < deadline {
            rx.poll(Duration::from_millis(10), &mut |_, _| *got += 1)
                .unwrap();
        }
    };
    round(&mut tx, &mut rx, 640, &mut got);
    let (n, ()) = allocations(|| round(&mut tx, &mut rx, 20_000, &mut got));
    assert_eq!(got, tx.sent(), "every frame sent came back");
    assert_eq!(
        n, 0,
        "{n} allocations for 20 000 frames through CanSender/CanReceiver"
    );
    eprintln!("receiver/sender: 0 allocations over 20 000 frames");
    drop((tx, rx));

    // A bridge on vcan1, fed both ways.
    let port = 43600;
    let group = McastConfig::loopback_v4(port);
    let bridge = Bridge::start(&BridgeConfig::new("vcan1", group.clone())).unwrap();
    let mut net = FrameSender::new(
        SendSocket::open(&group).unwrap(),
        WireFormat::Pycan,
        1400,
        0,
    );
    let mut bus = CanSender::new(CanSocket::open("vcan1", &tx_cfg).unwrap(), 64).unwrap();
    let classic: Vec<CanFrame> = set.iter().filter(|f| !f.is_error()).copied().collect();
    let feed = |net: &mut FrameSender, bus: &mut CanSender, n: usize| {
        for i in 0..n {
            net.send(&classic[i % classic.len()], 1).unwrap();
            bus.push(&classic[i % classic.len()]).unwrap();
            if i % 32 == 31 {
                net.flush(1).unwrap();
                bus.flush().unwrap();
                // Paced so that neither socket buffer overflows under TCG.
                std::thread::sleep(Duration::from_millis(2));
            }
        }
        net.flush(1).unwrap();
        bus.flush().unwrap();
    };
    let wait_for = |bridge: &Bridge, n: u64| {
        let deadline = Instant::now() + Duration::from_secs(60);
        while Instant::now() < deadline {
            let s = bridge.stats();
            if s.to_can >= n && s.to_group >= n {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        panic!(
            "bridge did not forward {n} frames each way: {:?}",
            bridge.stats()
        );
    };
    feed(&mut net, &mut bus, 512);
    wait_for(&bridge, 512);
    let before = all_allocs();
    feed(&mut net, &mut bus, 5_000);
    wait_for(&bridge, 5_512);
    let during = all_allocs() - before;
    let stats = bridge.join().unwrap();
    assert_eq!(stats.group.decode_errors_total(), 0, "{stats:?}");
    assert_eq!(
        during, 0,
        "{during} allocations for 5 000 frames each way through the bridge"
    );
    eprintln!("bridge: 0 allocations over 5 000 frames each way: {stats:?}");

    // Two bridges on one bus (vcan0, a bus name): the active one forwards, the standby
    // counts; their announcers and elections allocate nothing either.
    use canmc::wire::native::{AnnounceState, BusName};
    let mut cfg = BridgeConfig::new("vcan0", group.clone());
    cfg.bus = Some(BusName::new("alloc").unwrap());
    let wait_state = |b: &Bridge, want: AnnounceState| {
        let deadline = Instant::now() + Duration::from_secs(20);
        while b.ha().unwrap().state != want
            || (want == AnnounceState::Standby && b.ha().unwrap().peers == 0)
        {
            assert!(Instant::now() < deadline, "never {want:?}: {:?}", b.ha());
            std::thread::sleep(Duration::from_millis(20));
        }
    };
    let active = Bridge::start(&cfg).unwrap();
    wait_state(&active, AnnounceState::Active);
    let standby = Bridge::start(&cfg).unwrap();
    wait_state(&standby, AnnounceState::Standby);
    let mut bus0 = CanSender::new(CanSocket::open("vcan0", &tx_cfg).unwrap(), 64).unwrap();
    feed(&mut net, &mut bus0, 512);
    wait_for(&active, 512);
    let before = all_allocs();
    feed(&mut net, &mut bus0, 5_000);
    wait_for(&active, 5_512);
    let during = all_allocs() - before;
    assert_eq!(active.ha().unwrap().state, AnnounceState::Active);
    let (sa, sb) = (active.join().unwrap(), standby.join().unwrap());
    assert_eq!(
        (sb.to_group, sb.to_can),
        (0, 0),
        "the standby forwarded: {sb:?}"
    );
    assert!(
        sb.to_group_standby >= 5_512 && sb.to_can_standby >= 5_512,
        "{sb:?}"
    );
    assert_eq!(
        during, 0,
        "{during} allocations for 5 000 frames each way through two bridges on one bus"
    );
    eprintln!("two bridges on one bus: 0 allocations over 5 000 frames each way: {sa:?} {sb:?}");
}

/// A DBC file that cannot be read is a usage error (exit 2) that names `--dbc`, before
/// any interface is opened: the same on this host (no CAN) as on one with CAN.
#[test]
fn dump_can_with_a_bad_dbc_says_so() {
    let bad = PathBuf::from(env!("CARGO_TARGET_TMPDIR")).join("bad-dump-can.dbc");
    std::fs::write(&bad, "BO_ not a dbc").unwrap();
    for (dbc, says) in [
        (bad.to_str().unwrap(), "not a valid DBC"),
        ("/nonexistent/canmc.dbc", "--dbc /nonexistent/canmc.dbc"),
    ] {
        let out = Command::new(env!("CARGO_BIN_EXE_canmc"))
            .args(["dump", "--can", "vcan0", "-n", "1", "--dbc", dbc])
            .output()
            .unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{dbc}: {err}");
        assert!(err.contains(says), "{dbc}: {err}");
        assert_eq!(err.lines().count(), 1, "{err:?}");
    }
}

/// On a kernel without CAN (this host), one clear line and a non-zero exit; on a kernel
/// with CAN but no vcan0, the line names the interface.
#[test]
fn dump_can_says_in_one_line_why_it_cannot() {
    let out = Command::new(env!("CARGO_BIN_EXE_canmc"))
        .args(["dump", "--can", "vcan0", "-n", "1"])
        .output()
        .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(1), "{err}");
    assert_eq!(err.lines().count(), 1, "{err:?}");
    // SAFETY: a plain socket(2) probe; a descriptor it returns is closed at once.
    let fd = unsafe { libc::socket(libc::AF_CAN, libc::SOCK_RAW, 1) };
    let kernel_has_can = fd >= 0;
    if kernel_has_can {
        // SAFETY: `fd` is ours.
        unsafe { libc::close(fd) };
    }
    if kernel_has_can {
        assert!(err.contains("vcan0"), "{err}");
    } else {
        assert!(err.contains("this kernel has no SocketCAN"), "{err}");
    }
    assert!(out.stdout.is_empty());
}
