#!/bin/sh
# Runs inside the canvm guest (tools/canvm.sh), driven by tests/socketcan_vm.rs, which
# checks the files left in OUT. Usage: scenarios.sh OUT CANMC TESTBIN
# can-utils are the peers; the group is on `lo` inside the guest.
OUT=$1
B=$2
TESTBIN=$3
G="--iface lo --port 43500"
set -u
mkvcan() {
    busybox ip link add dev "$1" type vcan && busybox ip link set "$1" mtu 72 &&
        busybox ip link set "$1" up
}
mkvcan vcan0 || { echo "cannot create vcan0" >"$OUT/setup.err"; exit 1; }
mkvcan vcan1
# Something to wait on: a bridge is up when its summary's threads run; canmc has no
# ready signal, so give each process a moment under TCG.
settle() { sleep "${1:-1}"; }
# Waits until N canmc receivers on the group answer a ping (bridges, records): started.
ready() {
    i=0
    while [ "$($B ping $G -W 0.3 --json 2>/dev/null | grep -c .)" -lt "$1" ]; do
        i=$((i + 1))
        [ $i -lt 100 ] || { echo "receivers never answered" >>"$OUT/setup.err"; return 1; }
    done
}
# Stops canmc processes as Ctrl-C or SIGTERM does (they drain, then print their summary).
stop() { for p in "$@"; do kill -TERM "$p"; wait "$p"; done; }
# .cmc files are memory-mapped, which the 9p share cannot do: record them on the
# guest's tmpfs, then copy.
T=/tmp/canvm-scenarios; mkdir -p $T

# Frames the kernel drops in a device's backlog (loopback and vcan deliver through it;
# net.core.netdev_max_backlog, 1000) before any socket sees them: /proc/net/softnet_stat's
# second column, summed over CPUs.
softnet_drops() {
    s=0
    while read -r _ dropped _; do s=$((s + 0x$dropped)); done </proc/net/softnet_stat
    echo $s
}

# 0. The guarded allocations test, in this kernel (with room in the backlog: it measures
# allocations, not losses).
backlog=$(cat /proc/sys/net/core/netdev_max_backlog)
echo 100000 >/proc/sys/net/core/netdev_max_backlog
"$TESTBIN" --ignored --exact inguest_no_allocation_per_frame --nocapture \
    >"$OUT/alloc.out" 2>&1
echo $? >"$OUT/alloc.rc"
echo "$backlog" >/proc/sys/net/core/netdev_max_backlog

# 1. cangen vcan0 -> bridge -> group -> record; candump -L on vcan0 is the reference.
d=$OUT/s1; mkdir -p "$d"
$B bridge vcan0 $G --json >"$d/bridge.json" 2>"$d/bridge.err" &
b=$!
$B record $G -o "$T/s1rec.cmc" --json >"$d/rec.json" 2>"$d/rec.err" &
r=$!
$B record --can vcan0 -o "$T/s1can.cmc" --json >"$d/reccan.json" 2>"$d/reccan.err" &
rc=$!
candump -L vcan0 >"$d/candump.log" &
c=$!
ready 2; settle
cangen vcan0 -m -g 2 -n 300 2>"$d/cangen.err"
echo $? >"$d/cangen.rc"
settle 2
stop $b $r $rc
kill $c; wait $c 2>/dev/null
cp $T/s1rec.cmc "$d/rec.cmc"; cp $T/s1can.cmc "$d/can.cmc"

# 2. canmc send -> group -> bridge -> candump vcan0.
d=$OUT/s2; mkdir -p "$d"
$B bridge vcan0 $G --json >"$d/bridge.json" 2>"$d/bridge.err" &
b=$!
candump -L vcan0 >"$d/candump.log" &
c=$!
ready 1
$B send $G 123#DEADBEEF 1FFFFFFF#0011223344556677 7FF#R 12345678#R3 000#  \
    123##1AABBCCDDEEFF00112233445566778899 0AB##300112233445566778899AABBCCDDEEFF \
    321##0 2>"$d/send.err"
echo $? >"$d/send.rc"
$B send $G --wire native 111#11 12222222##2BB 2>>"$d/send.err"
settle 2
stop $b
kill $c; wait $c 2>/dev/null

# 3. canplayer and canmc replay --can put the same log onto vcan0.
d=$OUT/s3; mkdir -p "$d"
i=0
: >"$d/in.log"
while [ $i -lt 50 ]; do
    printf '(%d.%06d) vcan0 %03X#%02X%02X\n' $((1000 + i / 100)) $(((i % 100) * 10000)) \
        $((i * 7 % 2048)) $i $((i * 3 % 256)) >>"$d/in.log"
    i=$((i + 1))
done
echo "(1000.500000) vcan0 12345678##1AABBCCDDEEFF0011" >>"$d/in.log"
echo "(1000.510000) vcan0 7FF#R2" >>"$d/in.log"
candump -L vcan0 >"$d/canplayer.log" &
c=$!
settle
canplayer -I "$d/in.log" 2>"$d/canplayer.err"
settle
kill $c; wait $c 2>/dev/null
candump -L vcan0 >"$d/canmc.log" &
c=$!
settle
$B replay --can vcan0 "$d/in.log" --json >"$d/replay.json" 2>"$d/replay.err"
echo $? >"$d/replay.rc"
$B convert "$d/in.log" "$T/in.cmc" 2>>"$d/replay.err"
$B replay --can vcan0 --fast "$T/in.cmc" --json >>"$d/replay.json" 2>>"$d/replay.err"
settle
kill $c; wait $c 2>/dev/null

# 4. Two bridges (vcan0, vcan1) on one group: no loops, no duplicates.
d=$OUT/s4; mkdir -p "$d"
$B bridge vcan0 $G --json >"$d/bridge0.json" 2>"$d/bridge0.err" &
b0=$!
$B bridge vcan1 $G --json >"$d/bridge1.json" 2>"$d/bridge1.err" &
b1=$!
$B record $G -o "$d/group.log" --json >"$d/rec.json" 2>"$d/rec.err" &
r=$!
candump -L vcan0 >"$d/vcan0.log" &
c0=$!
candump -L vcan1 >"$d/vcan1.log" &
c1=$!
ready 3
cangen vcan0 -I i -L 8 -D i -g 3 -n 100
cangen vcan1 -e -I i -L 4 -D i -g 3 -n 50
settle 2
stop $b0 $b1 $r
kill $c0 $c1; wait $c0 $c1 2>/dev/null

# 5. cangen unpaced: every frame arrives or is counted.
d=$OUT/s5; mkdir -p "$d"
$B bridge vcan0 $G --json >"$d/bridge.json" 2>"$d/bridge.err" &
b=$!
$B record $G -o "$T/s5rec.cmc" --json >"$d/rec.json" 2>"$d/rec.err" &
r=$!
ready 2
softnet_drops >"$d/softnet.before"
cangen vcan0 -g 0 -n 20000 -p 10 2>"$d/cangen.err"
echo $? >"$d/cangen.rc"
settle 3
stop $b $r
softnet_drops >"$d/softnet.after"
cp $T/s5rec.cmc "$d/rec.cmc"

# 6. Errors: a missing interface, one that is down, one that is not CAN.
d=$OUT/s6; mkdir -p "$d"
busybox ip link add dev vcan9 type vcan
$B dump --can nope0 -n 1 2>"$d/missing.err"; echo $? >"$d/missing.rc"
$B dump --can vcan9 -n 1 2>"$d/down.err"; echo $? >"$d/down.rc"
$B bridge lo $G --duration 1 2>"$d/notcan.err"; echo $? >"$d/notcan.rc"

# 7. Two bridges on the same bus (vcan0, --bus body), one group: one forwards, the other
# stands by; nothing doubled, nothing circulates.
d=$OUT/s7; mkdir -p "$d"
$B bridge vcan0 $G --bus body --json >"$d/bridgeA.json" 2>"$d/bridgeA.err" &
a=$!
ready 1; settle 1   # A is the older: it is elected
$B bridge vcan0 $G --bus body --json >"$d/bridgeB.json" 2>"$d/bridgeB.err" &
bb=$!
$B record $G -o "$d/group.log" --json >"$d/rec.json" 2>"$d/rec.err" &
r=$!
candump -L vcan0 >"$d/vcan0.log" &
c=$!
ready 3; settle 1
cangen vcan0 -I i -L 8 -D i -g 3 -n 100 2>"$d/cangen.err"
echo $? >"$d/cangen.rc"
$B send $G 321#01 322#0202 1ABCDEF0#03 7FF#R 100##1AABB 2>"$d/send.err"
echo $? >"$d/send.rc"
settle 2
# Traffic has stopped: a frame still going round would reach this recorder.
$B record $G -o "$d/after.log" --duration 1 --json >"$d/after.json" 2>"$d/after.err"
stop $a $bb $r
kill $c; wait $c 2>/dev/null

# 8. Failover: the active bridge is killed (SIGKILL, no goodbye); the standby takes over.
d=$OUT/s8; mkdir -p "$d"
$B bridge vcan0 $G --bus body --json >"$d/bridgeA.json" 2>"$d/bridgeA.err" &
a=$!
ready 1; settle 1
$B bridge vcan0 $G --bus body --json >"$d/bridgeB.json" 2>"$d/bridgeB.err" &
bb=$!
$B record $G -o "$d/group.log" --json >"$d/rec.json" 2>"$d/rec.err" &
r=$!
candump -L vcan0 >"$d/vcan0.log" &
c=$!
ready 3; settle 1
cangen vcan0 -I i -L 8 -D i -g 3 -n 30 2>"$d/cangen1.err"
settle 1
kill -KILL $a; wait $a 2>/dev/null
settle 2   # well past the takeover time (3 periods, 300 ms)
cangen vcan0 -e -I i -L 4 -D i -g 3 -n 30 2>"$d/cangen2.err"
$B send $G 555#55 556#5656 2>"$d/send.err"
echo $? >"$d/send.rc"
settle 2
stop $bb $r
kill $c; wait $c 2>/dev/null

# 9. dump --can --dbc: signals decoded as for the group.
d=$OUT/s9; mkdir -p "$d"
candump -L vcan0 >"$d/candump.log" &
c=$!
$B dump --can vcan0 -n 3 --dbc "$(dirname "$0")/../data/views.dbc" >"$d/dump.out" 2>"$d/dump.err" &
p=$!
settle 2
cansend vcan0 100#3412F60FA0000C00
cansend vcan0 7FF#01
cansend vcan0 18FEF100#0202000102000000
# A dump that missed a frame would wait for ever: the check then shows what it printed.
(sleep 30; kill -TERM $p 2>/dev/null) &
w=$!
wait $p
echo $? >"$d/dump.rc"
kill $w 2>/dev/null
kill $c; wait $c 2>/dev/null
ps >"$d/ps.txt"

echo done >"$OUT/done"
