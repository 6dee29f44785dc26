#!/usr/bin/env bash
# netlab.sh — canmc's network lab: private network namespaces for multicast tests.
#
# Every packet a test sends stays inside namespaces this script creates; nothing is ever
# configured in the machine's own namespace (each `ip` change is preceded by a check that
# we are in a private one). The addresses used here (fd00::/64, 10.99.0.0/24, fd77::/64,
# 10.77.0.0/24) exist only inside these namespaces.
#
# Usage:
#   tools/netlab.sh run CMD...        CMD in a fresh private namespace ("the lab"):
#       lo      up; IPv4 route 224.0.0.0/4 dev lo
#       v0, v1  a veth pair, both up: v0 = fd00::1/64 + 10.99.0.1/24, v1 = fd00::2/64 +
#               10.99.0.2/24 (IPv6 nodad, so usable at once)
#       The local-table route `ff00::/8 dev v1` is deleted, so IPv6 groups joined or sent
#       without an interface go through v0.
#   tools/netlab.sh hosts N CMD...    N hosts (N private namespaces, 1 <= N <= 200) whose
#       interface `v0` is a veth into a bridge (multicast snooping off) in a parent
#       private namespace. Host i has 10.77.0.i/24 and fd77::i/64 (nodad) on v0, lo up
#       and the route 224.0.0.0/4 dev v0. CMD runs in the parent namespace with:
#         LAB_N=N  LAB_HOSTS="1 2 … N"  LAB_DIR=<state dir>
#         LAB_EXEC=<state dir>/exec   ->   "$LAB_EXEC" i CMD...   runs CMD in host i
#       Everything is torn down when CMD exits, fails or is interrupted.
#   tools/netlab.sh exec I CMD...     (inside `hosts`) run CMD in host I.
#   tools/netlab.sh selftest [PYTHON] python-can -> python-can over IPv4 and IPv6, in `run`
#       and between two `hosts`; PYTHON defaults to $CANMC_PYTHON or <repo>/.venv/bin/python.
#
# What works in the lab (found by trial, kernel 6.x):
#   IPv4: python-can joins with INADDR_ANY and sends with no IP_MULTICAST_IF, so the
#     kernel routes the group: without a route both fail (ENODEV / ENETUNREACH). With
#     `224.0.0.0/4 dev lo` both go through lo and meet canmc `--iface lo` (join on
#     127.0.0.1, IP_MULTICAST_IF 127.0.0.1, TTL 0). canmc <-> canmc may also use
#     `--iface v0` / `--iface 10.99.0.1`.
#   IPv6: multicast does not work on lo. python-can joins with ifindex 0 and sends with
#     no IPV6_MULTICAST_IF, i.e. the kernel picks the interface from the local table's
#     ff00::/8 routes; with the v1 one deleted it picks v0, which meets canmc `--iface v0`.
#     Sending on v0 loops back to v0's listeners (IPV6_MULTICAST_LOOP on by default).
#   hosts: inside a host v0 is the only multicast interface, so python-can and canmc
#     `--iface v0` meet there too, and frames cross the bridge between hosts (TTL 1).
#
# Needs root, or user namespaces (then `unshare -r -n` is used for `run`).

set -euo pipefail

SELF=$(readlink -f "${BASH_SOURCE[0]}")
REPO=$(dirname "$(dirname "$SELF")")

die() {
    echo "netlab: $*" >&2
    exit 2
}

# Refuses to touch the network unless this process is in a namespace other than the one
# the user called us from (recorded before unsharing) and pid 1's. The one guard between
# a bug here and a changed host network.
assert_private_ns() {
    local mine init
    mine=$(readlink /proc/self/ns/net)
    init=$(readlink /proc/1/ns/net 2>/dev/null || echo none)
    if [[ -z "${NETLAB_OUTER_NS:-}" || "$mine" == "$NETLAB_OUTER_NS" || "$mine" == "$init" ]]; then
        die "refusing to configure the network: not inside a private namespace"
    fi
}

# Remembers the caller's namespace, unless we are already inside the lab (nested use).
record_outer_ns() {
    export NETLAB_OUTER_NS=${NETLAB_OUTER_NS:-$(readlink /proc/self/ns/net)}
}

setup_run_ns() {
    assert_private_ns
    ip link set lo up
    ip route add 224.0.0.0/4 dev lo
    ip link add v0 type veth peer name v1
    ip link set v0 up
    ip link set v1 up
    ip -6 addr add fd00::1/64 dev v0 nodad
    ip -6 addr add fd00::2/64 dev v1 nodad
    ip addr add 10.99.0.1/24 dev v0
    ip addr add 10.99.0.2/24 dev v1
    ip -6 route del table local ff00::/8 dev v1
}

cmd_run() {
    [[ $# -ge 1 ]] || die "usage: netlab.sh run CMD..."
    local un=(unshare -n)
    [[ $(id -u) -eq 0 ]] || un=(unshare -r -n)
    record_outer_ns
    exec "${un[@]}" "$SELF" _run-inner "$@"
}

cmd_run_inner() {
    setup_run_ns
    exec "$@"
}

# ---- hosts -------------------------------------------------------------------------

HOST_PIDS=()
LAB_STATE=""
CMD_PID=""

hosts_cleanup() {
    local pid
    if [[ -n "$CMD_PID" ]]; then
        kill "$CMD_PID" 2>/dev/null || true
        wait "$CMD_PID" 2>/dev/null || true
    fi
    for pid in "${HOST_PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${HOST_PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    [[ -n "$LAB_STATE" ]] && rm -rf "$LAB_STATE"
}

cmd_hosts() {
    [[ $# -ge 2 ]] || die "usage: netlab.sh hosts N CMD..."
    [[ "$1" =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= 200)) || die "N must be 1..200, not '$1'"
    [[ $(id -u) -eq 0 ]] || die "hosts needs root"
    record_outer_ns
    # The bridge lives in a private parent namespace that vanishes with this process.
    exec unshare -n "$SELF" _hosts-inner "$@"
}

cmd_hosts_inner() {
    local n=$1
    shift
    assert_private_ns
    LAB_STATE=$(mktemp -d "${TMPDIR:-/tmp}/canmc-lab-$$.XXXXXX")
    trap hosts_cleanup EXIT
    trap 'exit 130' INT
    trap 'exit 143' TERM
    ip link set lo up
    ip link add br0 type bridge mcast_snooping 0
    ip link set br0 up
    local me i pid tries
    me=$(readlink /proc/self/ns/net)
    for ((i = 1; i <= n; i++)); do
        # A host is the namespace of a sleeping process: killing it removes the
        # namespace and its veth end, so nothing global (no /run/netns entry) is left.
        unshare -n sleep infinity &
        pid=$!
        HOST_PIDS+=("$pid")
        tries=0
        while [[ "$(readlink "/proc/$pid/ns/net" 2>/dev/null || echo "$me")" == "$me" ]]; do
            ((++tries < 500)) || die "host $i: namespace did not appear"
            sleep 0.01
        done
        echo "$pid" >"$LAB_STATE/host$i.pid"
        ip link add "h$i" type veth peer name v0 netns "$pid"
        ip link set "h$i" master br0
        ip link set "h$i" up
        nsenter -t "$pid" -n "$SELF" _host-setup "$i"
    done
    # LAB_EXEC is one path, so both "$LAB_EXEC" and $LAB_EXEC work in CMD.
    printf '#!/bin/sh\nLAB_DIR=%q exec %q exec "$@"\n' "$LAB_STATE" "$SELF" >"$LAB_STATE/exec"
    chmod +x "$LAB_STATE/exec"
    export LAB_N=$n LAB_DIR=$LAB_STATE LAB_EXEC=$LAB_STATE/exec
    LAB_HOSTS=$(seq -s ' ' 1 "$n")
    export LAB_HOSTS
    # CMD runs in the background so that a signal to us is handled at once (bash runs
    # traps only between foreground commands); its stdin stays ours.
    local rc=0
    "$@" <&0 &
    CMD_PID=$!
    wait "$CMD_PID" || rc=$?
    CMD_PID=""
    exit "$rc"
}

cmd_host_setup() {
    local i=$1
    assert_private_ns
    ip link set lo up
    ip link set v0 multicast on
    ip link set v0 up
    ip addr add "10.77.0.$i/24" dev v0
    ip -6 addr add "fd77::$i/64" dev v0 nodad
    ip route add 224.0.0.0/4 dev v0
}

cmd_exec() {
    [[ $# -ge 2 ]] || die "usage: netlab.sh exec I CMD..."
    [[ -n "${LAB_DIR:-}" ]] || die "exec: LAB_DIR is not set (use it inside 'netlab.sh hosts')"
    local f="$LAB_DIR/host$1.pid"
    [[ -f "$f" ]] || die "exec: no host $1 in $LAB_DIR"
    local pid
    pid=$(<"$f")
    shift
    exec nsenter -t "$pid" -n "$@"
}

# ---- selftest ----------------------------------------------------------------------

cmd_selftest() {
    local py=${1:-${CANMC_PYTHON:-$REPO/.venv/bin/python}}
    [[ -x "$py" ]] || die "selftest: no python at $py (run tools/setup-venv.sh)"
    export PY=$py PEER=$REPO/tools/pycan_peer.py
    local n
    n=$("$py" "$PEER" kinds | wc -l)
    export NKINDS=$n
    # One pair exchange: receiver in $1 (a command prefix, may be empty), sender in $2.
    local pair='
        pair() {
            local rx=$1 tx=$2 group=$3 port=$4 rdy
            rdy=$(mktemp -u)
            $rx "$PY" "$PEER" recv --group "$group" --port "$port" --count "$NKINDS" \
                --timeout 10 --linger 0.2 --quiet --ready-file "$rdy" &
            local rpid=$!
            for _ in $(seq 500); do [[ -e $rdy ]] && break; sleep 0.01; done
            [[ -e $rdy ]] || { echo "receiver did not start" >&2; return 1; }
            $tx "$PY" "$PEER" send --group "$group" --port "$port" >/dev/null
            wait "$rpid"
            rm -f "$rdy"
        }'
    local g6=ff15:7079:7468:6f6e:6465:6d6f:6d63:6173 g4=239.74.163.2
    echo "selftest: run, IPv4 and IPv6" >&2
    "$SELF" run bash -c "$pair; set -e; pair '' '' $g4 47001; pair '' '' $g6 47002"
    echo "selftest: hosts 1 -> 2, IPv4 and IPv6" >&2
    "$SELF" hosts 2 bash -c "$pair; set -e
        pair \"\$LAB_EXEC 2\" \"\$LAB_EXEC 1\" $g4 47003
        pair \"\$LAB_EXEC 2\" \"\$LAB_EXEC 1\" $g6 47004"
    echo "selftest: ok" >&2
}

case "${1:-}" in
run) shift && cmd_run "$@" ;;
_run-inner) shift && cmd_run_inner "$@" ;;
hosts) shift && cmd_hosts "$@" ;;
_hosts-inner) shift && cmd_hosts_inner "$@" ;;
_host-setup) shift && cmd_host_setup "$@" ;;
exec) shift && cmd_exec "$@" ;;
selftest) shift && cmd_selftest "$@" ;;
*)
    sed -n '2,/^$/s/^# \{0,1\}//p' "$SELF" >&2
    exit 2
    ;;
esac
