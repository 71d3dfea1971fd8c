#!/usr/bin/env bash
# demo.sh - the main job: a Sluice tunnel carrying traffic through the real data plane.
#
# In network namespaces it creates (and removes on exit, also on failure):
#
#   hA 198.19.1.2 -- [sA: sluiced + sluice-dp] == ESP 198.18.0.1 <-> 198.18.0.2 == [sB] -- hB 198.19.2.2
#      2001:db8:1::2                                                                        2001:db8:2::2
#
# sA initiates (IKEv2, PSK, an IPv4 and an IPv6 child) with the configuration embedded
# below; then iperf3 pushes TCP from hA to hB for DEMO_SECONDS (default 10) while the
# demo prints, every 2 s, the throughput and the SA list with its counters as
# `sluiced show` gives them; it ends with the data plane's counters and the operator's
# view through the REST API (sluicectl list-sas, stats) and the Prometheus metrics.
#
# With --peer strongswan the far end is a real strongSwan site (userspace ESP over UDP
# 4500, the shared interop pair) and Sluice protects host 198.19.2.2 behind it.
#
# usage: scripts/demo.sh [--peer sluice|strongswan] [--esp-engine]
#   --esp-engine  afterwards, also show tshark decrypting ESP written by Sluice's engine
#                 and the per-core ESP benchmark against the raw-AEAD roof
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$(pwd)
PEER=sluice
ENGINE=0
while [ $# -gt 0 ]; do
  case $1 in
    --peer) PEER=${2:-}; shift 2 ;;
    --esp-engine) ENGINE=1; shift ;;
    *) echo "usage: $0 [--peer sluice|strongswan] [--esp-engine]" >&2; exit 2 ;;
  esac
done
case $PEER in sluice|strongswan) ;; *) echo "--peer sluice or strongswan" >&2; exit 2 ;; esac
[ "$(id -u)" = 0 ] || { echo "demo.sh: run as root (apt, network namespaces, XDP)" >&2; exit 1; }

./scripts/setup.sh
echo "== building (release)"
cargo build -q --release -p sluiced -p sluice-dp -p sluicectl
SECONDS_RUN=${DEMO_SECONDS:-10}

PAIR=$ROOT/../shared/interop/strongswan-pair.sh
[ -n "${SLUICE_SHARED:-}" ] && PAIR=$SLUICE_SHARED/interop/strongswan-pair.sh
NS="sl-demo$$-"
export SWAN_NS=$NS SWAN_STATE
SWAN_STATE=$(mktemp -d /tmp/sluice-demo.XXXXXX)
W=$SWAN_STATE/w
PIDS=()
SLUICED=$ROOT/target/release/sluiced
DP=$ROOT/target/release/sluice-dp
CTL=$ROOT/target/release/sluicectl
# Both sluiced serve the REST API and Prometheus metrics on their loopback.
export DAEMON_EXTRA=$'[api]\nlisten = "127.0.0.1:7443"\n\n[metrics]\nlisten = "127.0.0.1:9469"'
# shellcheck source=tests/e2e/lib.sh
. "$ROOT/tests/e2e/lib.sh"
trap 'cleanup; rm -rf "$SWAN_STATE"' EXIT INT TERM
set +e

if [ "$PEER" = sluice ]; then
  echo "== topology: hA -- sA (Sluice) == ESP == sB (Sluice) -- hB; sA initiates"
  two_up 1 || { echo "the tunnel did not come up"; tail -20 "$W"/*.log; exit 1; }
  grep -h 'CHILD_SA installed' "$W/a.log" | sed 's/.*daemon: /  sA sluiced: /'
  TABLE=$W/a/sa-table CLIENT=$hA SERVER=$hB DST=198.19.2.2 SRC=198.19.1.2
  DPLOG=$W/dpa.log APPLIANCE=$sA
else
  [ -x "$PAIR" ] || { echo "strongSwan pair not found at $PAIR (set SLUICE_SHARED)"; exit 1; }
  echo "== topology: strongSwan site 198.19.1.1 == ESP-in-UDP == Sluice -- host 198.19.2.2"
  strongswan_up initiate || { echo "Sluice did not start"; exit 1; }
  wait_for 10 "$W/sluiced.log" 'CHILD_SA installed' || exit 1
  grep -h 'CHILD_SA installed' "$W/sluiced.log" | sed 's/.*daemon: /  sluiced: /'
  TABLE=$SW_TABLE CLIENT=$H SERVER=$A DST=198.19.1.1 SRC=198.19.2.2
  DPLOG=$W/dp.log APPLIANCE=$B
fi

echo
echo "== ping $SRC -> $DST through the tunnel"
# The first packets on each link wait for ARP/ND (dropped, counted as
# neigh_unresolved, resolved by the kernel): two warm-up pings first.
x "$CLIENT" ping -n -q -c 2 -i 0.3 -W 1 -I "$SRC" "$DST" > /dev/null
x "$CLIENT" ping -n -c 5 -i 0.2 -W 1 -I "$SRC" "$DST" | tail -3

echo
echo "== iperf3 TCP $SRC -> $DST for $SECONDS_RUN s; every 2 s: throughput and the SAs"
x "$SERVER" timeout $((SECONDS_RUN + 10)) iperf3 -s -1 -B "$DST" > /dev/null 2>&1 &
sleep 0.4
x "$CLIENT" timeout $((SECONDS_RUN + 8)) iperf3 -c "$DST" -t "$SECONDS_RUN" -f m > "$W/iperf.log" 2>&1 &
ipid=$!
bytes() { "$SLUICED" show --sa-table "$TABLE" | awk '$1=="out" && $2=="SPI" {for (i=1;i<NF;i++) if ($(i+1)=="bytes") s+=$i} END {print s+0}'; }
prev=$(bytes); t_prev=$(date +%s.%N)
for _ in $(seq $(( (SECONDS_RUN + 1) / 2 ))); do
  sleep 2
  now=$(bytes); t_now=$(date +%s.%N)
  rate=$(awk -v a="$prev" -v b="$now" -v t0="$t_prev" -v t1="$t_now" 'BEGIN { printf "%.0f", (b - a) * 8 / (t1 - t0) / 1e6 }')
  echo "-- $(date +%T)  encrypted by Sluice: $rate Mbit/s (inner bytes)"
  "$SLUICED" show --sa-table "$TABLE" | sed 's/^/   /'
  prev=$now; t_prev=$t_now
  kill -0 $ipid 2>/dev/null || break
done
wait $ipid
echo
echo "== iperf3 result"
grep -E 'sender|receiver' "$W/iperf.log"
echo
echo "== data plane counters (sluice-dp show) and its last log line"
"$DP" show --sa-table "$TABLE"
grep 'stats:' "$DPLOG" | tail -1
echo
STATE=$(dirname "$TABLE")/state
echo "== the operator's view through the REST API (sluicectl, docs/api.md): SAs, then stats"
ctl() { x "$APPLIANCE" env SLUICE_API_TOKEN_FILE="$STATE/api-token" SLUICE_API_CACERT="$STATE/api-cert.pem" "$CTL" "$@"; }
ctl list-sas
ctl stats
echo
echo "== Prometheus metrics (http://127.0.0.1:9469/metrics, docs/metrics.md), an excerpt"
x "$APPLIANCE" curl -s --max-time 5 http://127.0.0.1:9469/metrics |
  grep -E '^sluice_(ike_sas\{state="established"|child_sas|esp_(packets|bytes)_total|sa_bytes_total|ike_exchange_outcomes_total)' | head -14

if [ $ENGINE = 1 ]; then
  echo
  echo "== ESP written by Sluice's engine, decrypted and verified by tshark"
  cargo build -q --release -p sluice-esp-interop -p sluice-perf
  tests/interop/esp-tshark.sh
  echo
  echo "== per-core ESP throughput vs the raw AEAD roof"
  perf/run esp --quick
fi
echo
echo "demo done; cleaning up the namespaces"
