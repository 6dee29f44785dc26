#!/usr/bin/env bash
# demo.sh — canmc's main job in one command, on loopback only (IPv4 239.74.163.2 on lo,
# TTL 0: nothing leaves this host): a receiver on the group, a generator sending
# 1 000 000 python-can-format frames as fast as the kernel allows, and both summaries.
set -euo pipefail
cd "$(dirname "$(dirname "$(readlink -f "${BASH_SOURCE[0]}")")")"

cargo build --release --quiet
canmc=target/release/canmc
port=${DEMO_PORT:-43199}

echo "== receiver: canmc dump --iface lo --port $port -q --duration 6"
"$canmc" dump --iface lo --port "$port" -q --duration 6 &
receiver=$!
sleep 0.5
echo "== sender:   canmc gen --iface lo --port $port -n 1000000 -L 8"
"$canmc" gen --iface lo --port "$port" -n 1000000 -L 8
wait "$receiver"
echo "== every frame is either received or counted as a kernel drop."
