#!/usr/bin/env bash
# perf/e2e.sh [--quick] - end-to-end packets per second through sluice-dp on veth,
# against plain AF_XDP forwarding over the same topology and code path (the I/O roof).
#
#   gen (AF_XDP flood, UDP) --veth-- dut: in0 [sluice-dp, 1 worker] ext0 --veth-- sink
#
# Roof: sluice-dp with no policy (--no-policy forward): receive on in0, route, rewrite
# Ethernet, transmit on ext0, no crypto. Sluice: the same with a PROTECT policy and an
# AES-GCM-128 SA (ESN), so every packet is encrypted into ESP. Packets per second are
# counted at the sink's interface (where an XDP program drops them); rounds alternate
# roof / sluice and the median of each is kept. One JSON line per packet size: ratio = sluice / roof.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
[ "$(id -u)" = 0 ] || { echo "perf/run e2e: skipped, needs root (network namespaces, XDP, AF_XDP)" >&2; exit 77; }
ROUNDS=3 SECS=3
[ "${1:-}" = --quick ] && { ROUNDS=1; SECS=1.5; }
SIZES=${E2E_SIZES:-64 1400}
flock /tmp/sluice-cargo.lock cargo build --release -q -p sluice-dp -p sluice-perf
DP=$PWD/target/release/sluice-dp
PERF=$PWD/target/release/sluice-perf
NS="sl-perf$$-"; G=${NS}gen; D=${NS}dut; S=${NS}sink
T=$(mktemp -d /tmp/sluice-perf-e2e.XXXXXX)
DPPID=""
cleanup() {
  [ -n "$DPPID" ] && kill -TERM "$DPPID" 2>/dev/null && wait "$DPPID" 2>/dev/null
  for n in $G $D $S; do
    for p in $(ip netns pids $n 2>/dev/null); do kill -KILL $p 2>/dev/null; done
    ip netns del $n 2>/dev/null
  done
  rm -rf "$T"
}
trap cleanup EXIT INT TERM

GMAC=02:00:00:00:01:01 DIN=02:00:00:00:01:02 DOUT=02:00:00:00:02:01 SMAC=02:00:00:00:02:02
for n in $G $D $S; do ip netns add $n; ip -n $n link set lo up; done
ip -n $G link add g0 address $GMAC type veth peer name in0 address $DIN netns $D
ip -n $D link add ext0 address $DOUT type veth peer name s0 address $SMAC netns $S
ip -n $G link set g0 up; ip -n $D link set in0 up; ip -n $D link set ext0 up; ip -n $S link set s0 up
ip -n $G addr add 198.19.2.2/24 dev g0
ip -n $D addr add 198.19.2.1/24 dev in0
ip -n $D addr add 198.18.0.2/24 dev ext0
ip -n $S addr add 198.18.0.1/24 dev s0
ip -n $S addr add 198.19.1.1/32 dev lo
ip -n $D route add 198.19.1.0/24 via 198.18.0.1 dev ext0
ip -n $D neigh replace 198.18.0.1 lladdr $SMAC dev ext0 nud permanent
ip -n $D neigh replace 198.19.2.2 lladdr $GMAC dev in0 nud permanent

# The sink drops everything in XDP: the same small cost per packet for UDP (roof) and
# ESP, and no kernel stack work landing on the worker's core (veth delivers to the
# peer in the sender's context).
cat > "$T/drop.c" <<'C'
#include <linux/bpf.h>
#include <bpf/bpf_helpers.h>
SEC("xdp") int sink_drop(struct xdp_md *ctx) { return XDP_DROP; }
char _license[] SEC("license") = "Apache-2.0";
C
clang -O2 -target bpf -I/usr/include/"$(uname -m)"-linux-gnu -c "$T/drop.c" -o "$T/drop.o"
ip -n $S link set dev s0 xdp obj "$T/drop.o" sec xdp

"$PERF" install --sa-table "$T/roof" --empty > /dev/null
"$PERF" install --sa-table "$T/esp" --src 198.18.0.2 --peer 198.18.0.1 \
  --inner-src 198.19.2.0/24 --inner-dst 198.19.1.0/24 > /dev/null

cores=$(nproc); gen_core=$(( cores - 1 ))
rx() { ip netns exec $S cat /sys/class/net/s0/statistics/rx_packets; }
# One round: start sluice-dp on a table, flood for SECS, count at the sink.
round() { # table size -> "sink_pps gen_pps"
  ip netns exec $D "$DP" --outside ext0 --inside in0 --sa-table "$1" --workers 1 --no-policy forward \
    > "$T/dp.log" 2>&1 & DPPID=$!
  for _ in $(seq 50); do grep -q 'worker(s)' "$T/dp.log" && break; sleep 0.1; done
  grep -q 'worker(s)' "$T/dp.log" || { cat "$T/dp.log" >&2; exit 1; }
  local r0 r1 t0 t1 g
  r0=$(rx); t0=$(date +%s.%N)
  g=$(ip netns exec $G taskset -c $gen_core "$PERF" gen --if g0 --src-mac $GMAC --dst-mac $DIN \
      --src 198.19.2.2 --dst 198.19.1.1 --size "$2" --seconds "$SECS" | sed -n 's/.*: \([0-9]*\) pps/\1/p')
  sleep 0.2
  r1=$(rx); t1=$(date +%s.%N)
  kill -TERM $DPPID; wait $DPPID 2>/dev/null; DPPID=""
  awk -v a="$r0" -v b="$r1" -v s="$SECS" -v g="$g" 'BEGIN { printf "%.0f %s\n", (b - a) / s, g }'
}
median() { sort -n | awk '{v[NR]=$1} END {print v[int((NR + 1) / 2)]}'; }

for size in $SIZES; do
  : > "$T/roof.txt"; : > "$T/esp.txt"; : > "$T/gen.txt"
  for _ in $(seq $ROUNDS); do
    read -r p g <<< "$(round "$T/roof" "$size")"; echo "$p" >> "$T/roof.txt"; echo "$g" >> "$T/gen.txt"
    read -r p g <<< "$(round "$T/esp" "$size")"; echo "$p" >> "$T/esp.txt"
  done
  roof=$(median < "$T/roof.txt"); esp=$(median < "$T/esp.txt"); gen=$(median < "$T/gen.txt")
  awk -v s="$size" -v r="$roof" -v e="$esp" -v g="$gen" -v n="$ROUNDS" 'BEGIN {
    printf "{\"bench\":\"e2e\",\"size\":%d,\"alg\":\"aes-gcm-128\",\"workers\":1,\"sluice_pps\":%d,\"roof_pps\":%d,\"ratio\":%.2f,\"sluice_gbps\":%.3f,\"offered_pps\":%d,\"rounds\":%d}\n",
      s, e, r, (r > 0 ? e / r : 0), e * s * 8 / 1e9, g, n }'
done
