#!/usr/bin/env bash
# sluiced-peers.sh - sluiced against many IKE peers at once, over IPv6, and under a
# flood of half-open IKE SAs. The peers are ike-peer (tests/ike-interop), Sluice's
# own IKE driver, one process per peer with its own address.
#
# Topology: <ns>A holds the peers (198.18.0.1 and 198.18.0.101.., 2001:db8::1),
# <ns>B runs sluiced (198.18.0.2, 2001:db8::2); a veth pair between them. The
# namespaces are named with a prefix unique to the run and removed on exit, also on
# failure. Every peer runs with a timeout, every wait is bounded.
#
# usage: tests/interop/sluiced-peers.sh [SCENARIO ...] | --list        (root)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)

declare -A WHAT=(
  [ipv6]="IKE over IPv6: a peer at 2001:db8::1 brings up an IPv6 CHILD SA with sluiced listening on 2001:db8::2"
  [many-peers]="PEERS (default 40) peers initiate at the same moment, each its own connection; all come up, 2 SAs each in the table"
  [half-open-bound]="max_half_open = 3: three IKE_SA_INITs answered, the next dropped; after half_open_timeout the slots free up"
  [cookie-flood]="cookie_threshold = 0 under a flood of 20000 IKE_SA_INITs (half from spoofed addresses, half claiming the peer's): no state kept, the flood counted, memory flat, the real peer answers the COOKIE and comes up"
)
ORDER=(ipv6 many-peers half-open-bound cookie-flood)
if [ "${1:-}" = --list ]; then
  for s in "${ORDER[@]}"; do echo "$s	${WHAT[$s]}"; done
  exit 0
fi
[ "$(id -u)" = 0 ] || { echo "sluiced-peers.sh: skipped, needs root for network namespaces"; exit 77; }
SCEN=("$@"); [ ${#SCEN[@]} -gt 0 ] || SCEN=("${ORDER[@]}")
PEERS=${PEERS:-40}

NS="sl-pe$$-"
A=${NS}A; B=${NS}B
W=$(mktemp -d /tmp/sluice-peers.XXXXXX)
SLPID=""
PSK=sluice-peers-psk-0123456789
stop_sluiced() { [ -n "$SLPID" ] && kill -TERM "$SLPID" 2>/dev/null && wait "$SLPID" 2>/dev/null; SLPID=""; }
cleanup() {
  stop_sluiced
  for n in $A $B; do
    for p in $(ip netns pids $n 2>/dev/null); do kill -KILL $p 2>/dev/null; done
    ip netns del $n 2>/dev/null
  done
  rm -rf "$W"
}
trap cleanup EXIT INT TERM

cargo build -q --release -p sluiced -p sluice-ike-interop || exit 1
BIN=$ROOT/target/release/sluiced
PEER=$ROOT/target/release/ike-peer

ip netns add $A && ip netns add $B || exit 1
ip -n $A link add veth0 type veth peer name veth0 netns $B || exit 1
for n in $A $B; do ip -n $n link set lo up; ip -n $n link set veth0 up; done
ip -n $A addr add 198.18.0.1/24 dev veth0
ip -n $B addr add 198.18.0.2/24 dev veth0
ip -n $A addr add 2001:db8::1/64 dev veth0 nodad
ip -n $B addr add 2001:db8::2/64 dev veth0 nodad
for i in $(seq "$PEERS"); do ip -n $A addr add 198.18.0.$((100 + i))/32 dev veth0; done

daemon_conf() { # extra [daemon] lines
  mkdir -p "$W/run"
  { echo "[daemon]"; echo "sa_table = \"$W/run/sa-table\""; printf '%s\n' "$@"; } > "$W/sluiced.toml"
}
conn() { # name local remote remote_id local_ts remote_ts
  cat >> "$W/sluiced.toml" <<EOT

[[connection]]
name = "$1"
local_addr = "$2"
remote_addr = "$3"
local_id = "b.psw.test"
remote_id = "$4"
psk = "$PSK"
dpd_delay = 0

[[connection.child]]
name = "net"
local_ts = ["$5"]
remote_ts = ["$6"]
EOT
}
start_sluiced() {
  ip netns exec $B "$BIN" --config "$W/sluiced.toml" > "$W/log" 2>&1 & SLPID=$!
  for _ in $(seq 100); do grep -q 'listening.*4500' "$W/log" 2>/dev/null && return 0; sleep 0.1; done
  echo "sluiced did not start:"; tail -5 "$W/log"; return 1
}
table() { "$BIN" show --sa-table "$W/run/sa-table" 2>/dev/null; }
count_sas() { table | awk '($1=="in" || $1=="out") && $2=="SPI"' | wc -l; }
peer() { # local remote id local_ts remote_ts [extra args]
  local l=$1 r=$2 id=$3 lts=$4 rts=$5; shift 5
  ip netns exec $A "$PEER" --role initiator --local "$l" --remote "$r" --id "$id" \
    --remote-id b.psw.test --psk "$PSK" --local-ts "$lts" --remote-ts "$rts" "$@"
}

fail=0
for s in "${SCEN[@]}"; do
  echo "--- $s: ${WHAT[$s]:-unknown scenario}"
  [ -n "${WHAT[$s]:-}" ] || { fail=1; continue; }
  rm -rf "$W/run" "$W"/peer-*.log
  ok=1
  case $s in
    ipv6)
      daemon_conf
      conn v6-site 2001:db8::2 2001:db8::1 a.psw.test 2001:db8:2::/64 2001:db8:1::/64
      start_sluiced || ok=0
      grep -q 'listening addr=\[2001:db8::2\]:500' "$W/log" || { echo "not listening on [2001:db8::2]:500"; ok=0; }
      peer 2001:db8::1 2001:db8::2 a.psw.test 2001:db8:1::/64 2001:db8:2::/64 --timeout 15 \
        > "$W/peer-v6.log" 2>&1 || { echo "ike-peer failed:"; tail -5 "$W/peer-v6.log"; ok=0; }
      grep -m1 'CHILD_SA installed' "$W/log" | sed 's/.*daemon: /    sluiced: /'
      [ "$(count_sas)" = 2 ] || { echo "expected 2 SAs in the table, have $(count_sas)"; ok=0; }
      table | grep -q '2001:db8:1::/64' || { echo "no IPv6 selector in the table"; ok=0; }
      ;;
    many-peers)
      daemon_conf
      for i in $(seq "$PEERS"); do
        conn "peer$i" 198.18.0.2 198.18.0.$((100 + i)) "peer$i.test" "198.19.128.0/24" "198.19.$i.0/24"
      done
      start_sluiced || ok=0
      t0=$(date +%s.%N)
      pids=()
      for i in $(seq "$PEERS"); do
        peer 198.18.0.$((100 + i)) 198.18.0.2 "peer$i.test" "198.19.$i.0/24" 198.19.128.0/24 \
          --timeout 30 > "$W/peer-$i.log" 2>&1 & pids+=($!)
      done
      up=0
      for p in "${pids[@]}"; do wait "$p" && up=$((up + 1)); done
      t1=$(date +%s.%N)
      installed=$(grep -c 'CHILD_SA installed' "$W/log")
      echo "    $up of $PEERS peers up; sluiced installed $installed CHILD SAs; $(count_sas) SAs in the table;" \
        "$(awk -v a="$t0" -v b="$t1" 'BEGIN { printf "%.1f", b - a }') s including each peer's 2 s linger"
      [ "$up" = "$PEERS" ] && [ "$installed" = "$PEERS" ] || ok=0
      [ "$(count_sas)" = $((2 * PEERS)) ] || ok=0
      ;;
    half-open-bound)
      daemon_conf 'max_half_open = 3' 'half_open_timeout = 3'
      conn site-a 198.18.0.2 198.18.0.1 a.psw.test 198.19.2.0/24 198.19.1.0/24
      start_sluiced || ok=0
      answered=0
      for i in 1 2 3 4; do
        peer 198.18.0.1 198.18.0.2 a.psw.test 198.19.1.0/24 198.19.2.0/24 --then half-open \
          --timeout 2 --retransmit 500,3 > "$W/peer-h$i.log" 2>&1 && answered=$((answered + 1))
      done
      echo "    4 IKE_SA_INITs: $answered answered"
      [ "$answered" = 3 ] || ok=0
      # The half-open SAs expire and the next peer gets through, all the way.
      for _ in $(seq 60); do [ "$(grep -c 'no IKE_AUTH in time' "$W/log")" -ge 3 ] && break; sleep 0.1; done
      [ "$(grep -c 'no IKE_AUTH in time' "$W/log")" -ge 3 ] || { echo "half-open SAs did not expire"; ok=0; }
      peer 198.18.0.1 198.18.0.2 a.psw.test 198.19.1.0/24 198.19.2.0/24 --timeout 10 \
        > "$W/peer-h5.log" 2>&1 || { echo "the peer after expiry failed"; ok=0; }
      [ "$(count_sas)" = 2 ] || { echo "expected 2 SAs after expiry, have $(count_sas)"; ok=0; }
      stop_sluiced
      dropped=$(sed -n 's/.*half_open_full=\([0-9]*\).*/\1/p' "$W/log" | awk '{s+=$1} END {print s+0}')
      echo "    IKE_SA_INIT datagrams dropped at the bound (retransmissions included): $dropped"
      [ "$dropped" -ge 1 ] || ok=0
      ;;
    cookie-flood)
      daemon_conf 'cookie_threshold = 0'
      conn site-a 198.18.0.2 198.18.0.1 a.psw.test 198.19.2.0/24 198.19.1.0/24
      start_sluiced || ok=0
      rss() { awk '/VmRSS/ {print $2}' /proc/$SLPID/status; }
      r0=$(rss)
      ip netns exec $A python3 "$ROOT/tests/interop/ike-flood.py" 198.18.0.2 198.18.0.1 20000 20 > "$W/flood.log" &
      fl=$!
      sleep 0.3
      peer 198.18.0.1 198.18.0.2 a.psw.test 198.19.1.0/24 198.19.2.0/24 --timeout 15 \
        > "$W/peer-cookie.log" 2>&1 || { echo "the real peer did not come up"; tail -5 "$W/peer-cookie.log"; ok=0; }
      grep -m1 -i 'cookie' "$W/peer-cookie.log" | sed 's/^/    ike-peer: /'
      wait $fl; sed 's/^/    /' "$W/flood.log"
      r1=$(rss)
      echo "    sluiced RSS: $r0 kB before the flood, $r1 kB after"
      [ $((r1 - r0)) -lt 20000 ] || { echo "memory grew by $((r1 - r0)) kB"; ok=0; }
      [ "$(count_sas)" = 2 ] || { echo "expected the real peer's 2 SAs, have $(count_sas)"; ok=0; }
      stop_sluiced
      grep 'IKE_SA_INIT defences' "$W/log" | sed 's/.*WARN //' | sed 's/^/    /'
      sent=$(sed -n 's/.*cookies_sent=\([0-9]*\).*/\1/p' "$W/log" | awk '{s+=$1} END {print s+0}')
      unknown=$(sed -n 's/.*unknown_peer=\([0-9]*\).*/\1/p' "$W/log" | awk '{s+=$1} END {print s+0}')
      echo "    flood: $sent answered with a COOKIE (no state), $unknown from unknown addresses dropped"
      [ "$sent" -ge 5000 ] && [ "$unknown" -ge 5000 ] || ok=0
      ;;
  esac
  stop_sluiced
  if [ $ok = 1 ]; then echo "ok $s"; else echo "FAIL $s"; tail -15 "$W/log" 2>/dev/null; fail=1; fi
done
exit $fail
