#!/usr/bin/env bash
# lib.sh - the end-to-end topologies, sourced by tests/e2e/tunnel.sh and scripts/demo.sh.
#
# The caller sets ROOT, PAIR (the shared strongSwan pair script), NS (a namespace prefix
# unique to the run), SWAN_NS=$NS and SWAN_STATE (a fresh directory), W (work directory
# under it), SLUICED and DP (the release binaries), PIDS=() and calls cleanup on exit.
# strongswan_up: <ns>A strongSwan site -- <ns>B Sluice (ext0 198.18.0.2, in0 198.19.2.1)
# -- <ns>H host 198.19.2.2. two_up: hA -- sA -- sB -- hB, IPv4 and IPv6 inside.
# BACKEND=dpdk runs sluice-dp on DPDK ports (net_af_packet on the same veths, see
# dp_start); the default is AF_XDP.
BACKEND=${BACKEND:-afxdp}
case $BACKEND in afxdp|dpdk) ;; *) echo "BACKEND=$BACKEND: afxdp or dpdk" >&2; exit 2 ;; esac

cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  PIDS=()
  [ -x "$PAIR" ] && "$PAIR" down >/dev/null 2>&1
  for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NS"); do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$n" 2>/dev/null
  done
}

x() { local n=$1; shift; ip netns exec "$n" "$@"; }

# sluiced config: name local remote local_id remote_id start children...
sluiced_conf() {
  local f=$1 name=$2 local=$3 remote=$4 lid=$5 rid=$6 start=$7 table=$8; shift 8
  mkdir -p "$(dirname "$f")"
  cat > "$f" <<EOT
[daemon]
sa_table = "$table"
state_dir = "$(dirname "$table")/state"

[[connection]]
name = "$name"
local_addr = "$local"
remote_addr = "$remote"
local_id = "$lid"
remote_id = "$rid"
psk = "sluice-interop-psk-0123456789"
start_action = "$start"
rekey_time = ${REKEY_TIME:-3600}
${CONN_EXTRA:-}
EOT
  local i=0
  while [ $# -ge 2 ]; do
    printf '\n[[connection.child]]\nname = "net%s"\nlocal_ts = ["%s"]\nremote_ts = ["%s"]\n' $i "$1" "$2" >> "$f"
    i=$((i + 1)); shift 2
  done
  # Daemon-wide sections ([api], [metrics]) after the connection.
  [ -n "${DAEMON_EXTRA:-}" ] && printf '\n%s\n' "$DAEMON_EXTRA" >> "$f"
  return 0
}
# sluice-dp on ext0 and in0 of namespace $1, log $2, SA table $3, further options after.
# BACKEND=dpdk: the veths become DPDK ports through net_af_packet (renamed ext0p and
# in0p, and silenced for the kernel: no addresses, IPv6 off, everything dropped at
# ingress after the packet socket has its copy), as a NIC bound to vfio-pci would
# vanish from the kernel; sluice-dp's TAPs take the names ext0 and in0, and the veths'
# addresses and routes move to them, where sluiced and the kernel's ARP/ND find them.
dp_start() {
  local n=$1 log=$2 table=$3 q=1 i; shift 3
  if [ "$BACKEND" != dpdk ]; then
    start_bg "$n" "$log" "$DP" --outside ext0 --inside in0 --sa-table "$table" "$@"
    return 0
  fi
  local args=("$@")
  for ((i = 0; i < ${#args[@]} - 1; i++)); do [ "${args[i]}" = --workers ] && q=${args[i + 1]}; done
  dpdk_takeover "$n" ext0 in0 || return 1
  local from
  from=$(cat "$log" 2>/dev/null | wc -l)
  start_bg "$n" "$log" "$DP" --io dpdk --sa-table "$table" \
    --eal "--no-pci --no-telemetry --file-prefix=$n --vdev=net_af_packet0,iface=ext0p,qpairs=$q,framecnt=4096 --vdev=net_af_packet1,iface=in0p,qpairs=$q,framecnt=4096" \
    --outside net_af_packet0 --inside net_af_packet1 --outside-tap ext0 --inside-tap in0 "$@"
  local pid=$LAST
  dpdk_restore "$n" "$log" "$from" ext0 in0 || return 1
  LAST=$pid
}
dpdk_takeover() { # ns if...: the first time, save the interfaces' set-up and silence them
  local n=$1 f=$W/dpdk-$1.sh i v; shift
  [ -f "$f" ] && return 0
  # Addresses first (routes may name them as src), then routes: the flags `ip route
  # show` adds (linkdown, dead, expires N) are not for `ip route add`; multipath
  # routes (nexthop lines) do not occur in these topologies and are not carried over.
  {
    for i in "$@"; do
      ip -n "$n" -o link show "$i" | sed -n "s/.* mtu \([0-9]*\) .*/ip -n $n link set $i mtu \1/p"
      ip -n "$n" -o -4 addr show dev "$i" scope global | awk -v n="$n" -v i="$i" '{print "ip -n " n " addr add " $4 " dev " i}'
      ip -n "$n" -o -6 addr show dev "$i" scope global | awk -v n="$n" -v i="$i" '{print "ip -n " n " addr add " $4 " dev " i " nodad"}'
    done
    for i in "$@"; do
      for fam in -4 -6; do
        ip -n "$n" $fam route show dev "$i" | grep -v 'proto kernel' | grep -Ev '^(fe80|ff00|multicast)|nexthop' |
          sed -E 's/ (linkdown|dead)//g; s/ expires [0-9]+sec//' | sed "s|^|ip -n $n $fam route add |; s|\$| dev $i|" ||
          true # (no such routes: grep found nothing)
      done
    done
  } > "$f.new" || return 1
  for i in "$@"; do
    ip -n "$n" link set "$i" down && ip -n "$n" addr flush dev "$i" && ip -n "$n" link set "$i" name "${i}p" || return 1
    x "$n" sysctl -qw "net.ipv6.conf.${i}p.disable_ipv6=1" "net.ipv4.conf.${i}p.rp_filter=1" "net.ipv4.conf.${i}p.arp_ignore=8" || return 1
    # Where the kernel has tc actions, drop everything at ingress too (the packet
    # socket has its copy by then); the sysctls above suffice without.
    tc -n "$n" qdisc add dev "${i}p" clsact 2>/dev/null &&
      tc -n "$n" filter add dev "${i}p" ingress matchall action drop 2>/dev/null
    ip -n "$n" link set "${i}p" up || return 1
  done
  # The packet socket copies frames as the wire has them: checksums a sender left to
  # "hardware" would reach the TAP unfinished. Every veth of the run finishes its own.
  for v in $(ip netns list | awk '{print $1}' | grep "^$NS"); do
    for i in $(ip -n "$v" -o link show type veth | awk -F': ' '{print $2}' | cut -d@ -f1); do
      x "$v" ethtool -K "$i" tx off > /dev/null 2>&1
    done
  done
  mv "$f.new" "$f"
}
dpdk_restore() { # ns log lines-before if...: once sluice-dp's TAPs are up, the saved set-up
  local n=$1 log=$2 from=$3 i; shift 3
  # sluice-dp logs its ports once the TAPs have their ports' MAC addresses.
  for _ in $(seq 150); do tail -n +$((from + 1)) "$log" 2>/dev/null | grep -q 'with TAP' && break; sleep 0.1; done
  tail -n +$((from + 1)) "$log" 2>/dev/null | grep -q 'with TAP' || { echo "    sluice-dp made no TAPs:"; tail -5 "$log"; return 1; }
  for i in "$@"; do ip -n "$n" link set "$i" up || return 1; done
  bash -e "$W/dpdk-$n.sh" || { echo "    restoring the set-up on sluice-dp's TAPs failed"; return 1; }
}
start_bg() { # ns log cmd...
  local n=$1 log=$2; shift 2
  ip netns exec "$n" "$@" >> "$log" 2>&1 & PIDS+=($!)
  LAST=$!
}
wait_for() { # seconds file pattern
  local i
  for i in $(seq $(( $1 * 10 ))); do grep -q "$3" "$2" 2>/dev/null && return 0; sleep 0.1; done
  echo "    timeout waiting for '$3' in $(basename "$2")"; return 1
}
sa_line() { "$SLUICED" show --sa-table "$1" 2>/dev/null | awk -v d="$2" '$1==d && $2=="SPI"'; }
sa_packets() { sa_line "$1" "$2" | sed -n 's/.*  \([0-9]*\) packets.*/\1/p' | awk '{s+=$1} END {print s+0}'; }
sa_spi() { sa_line "$1" "$2" | awk '{print $3}' | head -1; }
dp_counter() { # table name (drop reason or event)
  "$DP" show --sa-table "$1" 2>/dev/null | tr ' ' '\n' | awk -F= -v k="$2" '$1==k {s+=$2} END {print s+0}'
}
pings() { # ns count src dst -> replies
  x "$1" ping -n -q -c "$2" -i 0.1 -W 1 -I "$3" "$4" 2>/dev/null | sed -n 's/.* \([0-9]*\) received.*/\1/p'
}
ping_seqs() { # ns count src dst -> the icmp_seq of each ping answered, ascending, once each
  x "$1" ping -n -c "$2" -i 0.1 -W 1 -I "$3" "$4" 2>/dev/null |
    sed -n 's/.*bytes from .*icmp_seq=\([0-9]*\) .*/\1/p' | sort -n -u
}
iperf() { # client-ns server-ns server-addr [-R] -> Mbit/s of the receiver
  local srv=$2 addr=$3; shift 3
  x "$srv" timeout $((IPERF_SECONDS + 10)) iperf3 -s -1 -B "$addr" > /dev/null 2>&1 &
  local sp=$!
  sleep 0.4
  local out
  # The receiver's rate (the SUM line with -P): the number before Mbits/sec.
  out=$(x "$CLIENT" timeout $((IPERF_SECONDS + 8)) iperf3 -c "$addr" -t "$IPERF_SECONDS" -f m "$@" 2>&1 |
        awk '/receiver/ {for (i=2;i<=NF;i++) if ($i=="Mbits/sec") v=$(i-1)} END {print v}')
  wait $sp 2>/dev/null
  echo "${out:-0}"
}

# --- strongSwan site -- Sluice -- host --------------------------------------
SW_TABLE=$W/run/sa-table
strongswan_up() { # start_action
  if ! KEYLOG=0 ONLY=A INITIATE=0 "$PAIR" up psk-ikev2 > "$SWAN_STATE/up.log" 2>&1; then
    tail -5 "$SWAN_STATE/up.log"; return 1
  fi
  B=${NS}B; H=${NS}H; A=${NS}A
  ip -n $B addr del 198.19.2.1/32 dev lo
  ip netns add $H
  ip -n $B link add in0 type veth peer name h0 netns $H
  ip -n $B addr add 198.19.2.1/24 dev in0
  ip -n $B link set in0 up
  ip -n $H link set lo up
  ip -n $H addr add 198.19.2.2/24 dev h0
  ip -n $H link set h0 up
  ip -n $H route add default via 198.19.2.1
  # veth leaves checksums to "hardware"; frames redirected to AF_XDP would keep them
  # unfinished: the host computes its own.
  x $H ethtool -K h0 tx off > /dev/null
  rm -rf "$W"; mkdir -p "$W/run"
  sluiced_conf "$W/sluiced.toml" site-a 198.18.0.2 198.18.0.1 b.psw.test a.psw.test "$1" "$SW_TABLE" \
    198.19.2.0/24 198.19.1.0/24
  # The data plane first: with DPDK, the addresses sluiced binds live on its TAPs.
  dp_start $B "$W/dp.log" "$SW_TABLE" --stats 1 || return 1; DPPID=$LAST
  start_bg $B "$W/sluiced.log" "$SLUICED" --config "$W/sluiced.toml"; SLPID=$LAST
  wait_for 5 "$W/sluiced.log" 'listening.*4500' || return 1
  wait_for 5 "$W/dp.log" 'worker(s)' || return 1
  CLIENT=$H
}
sw_packets() { # in|out -> strongSwan's packet count for its CHILD SA(s)
  "$PAIR" sw A --list-sas 2>/dev/null | awk -v d="$1" '$1==d {for (i=1;i<=NF;i++) if ($(i+1) ~ /^packets/) s+=$i} END {print s+0}'
}
udp_drops() { # UDP datagrams a namespace's kernel dropped on receive (buffer full)
  x "$1" cat /proc/net/snmp | awk '/^Udp:/ && !h {for (i=1;i<=NF;i++) n[i]=$i; h=1; next} /^Udp:/ {for (i=1;i<=NF;i++) if (n[i]=="RcvbufErrors") print $i}'
}
# --- Sluice -- Sluice ---------------------------------------------------------
two_up() { # queues per veth
  local n q=${1:-1} mq=""
  [ "$q" -gt 1 ] && mq="numtxqueues $q numrxqueues $q"
  hA=${NS}hA; sA=${NS}sA; sB=${NS}sB; hB=${NS}hB
  for n in $hA $sA $sB $hB; do
    ip netns add $n || return 1
    ip -n $n link set lo up
  done
  ip -n $hA link add h0 $mq type veth peer name in0 $mq netns $sA
  ip -n $sA link add ext0 $mq type veth peer name ext0 $mq netns $sB
  ip -n $sB link add in0 $mq type veth peer name h0 $mq netns $hB
  for n in $hA $sA $sB $hB; do for i in $(ip -n $n -o link show | awk -F': ' '{print $2}' | cut -d@ -f1 | grep -v lo); do ip -n $n link set $i up; done; done
  ip -n $hA addr add 198.19.1.2/24 dev h0; ip -n $hA addr add 2001:db8:1::2/64 dev h0 nodad
  ip -n $hA route add default via 198.19.1.1; ip -n $hA -6 route add default via 2001:db8:1::1
  ip -n $hB addr add 198.19.2.2/24 dev h0; ip -n $hB addr add 2001:db8:2::2/64 dev h0 nodad
  ip -n $hB route add default via 198.19.2.1; ip -n $hB -6 route add default via 2001:db8:2::1
  ip -n $sA addr add 198.19.1.1/24 dev in0; ip -n $sA addr add 2001:db8:1::1/64 dev in0 nodad
  ip -n $sB addr add 198.19.2.1/24 dev in0; ip -n $sB addr add 2001:db8:2::1/64 dev in0 nodad
  ip -n $sA addr add 198.18.0.1/24 dev ext0; ip -n $sB addr add 198.18.0.2/24 dev ext0
  for n in $hA $hB; do x $n ethtool -K h0 tx off > /dev/null; done
  rm -rf "$W"; mkdir -p "$W/a" "$W/b"
  CONN_EXTRA=${CONN_EXTRA_B:-} REKEY_TIME=${REKEY_B:-3600} sluiced_conf "$W/b.toml" site-a 198.18.0.2 198.18.0.1 b.psw.test a.psw.test none "$W/b/sa-table" \
    198.19.2.0/24 198.19.1.0/24 2001:db8:2::/64 2001:db8:1::/64
  CONN_EXTRA=${CONN_EXTRA_A:-} REKEY_TIME=${REKEY_A:-3600} sluiced_conf "$W/a.toml" site-b 198.18.0.1 198.18.0.2 a.psw.test b.psw.test "${START_A:-initiate}" "$W/a/sa-table" \
    198.19.1.0/24 198.19.2.0/24 2001:db8:1::/64 2001:db8:2::/64
  # The data planes first: with DPDK, the addresses sluiced binds live on their TAPs.
  # shellcheck disable=SC2086 # DP_EXTRA is a list of options
  dp_start $sB "$W/dpb.log" "$W/b/sa-table" --stats 1 --workers "$q" ${DP_EXTRA:-} || return 1
  start_bg $sB "$W/b.log" "$SLUICED" --config "$W/b.toml"
  wait_for 5 "$W/b.log" 'listening.*4500' || return 1
  # shellcheck disable=SC2086
  dp_start $sA "$W/dpa.log" "$W/a/sa-table" --stats 1 --workers "$q" ${DP_EXTRA:-} || return 1
  start_bg $sA "$W/a.log" "$SLUICED" --config "$W/a.toml"
  if [ "${START_A:-initiate}" = initiate ]; then
    for _ in $(seq 100); do [ "$(grep -c 'CHILD_SA installed' "$W/a.log")" = 2 ] && break; sleep 0.1; done
    [ "$(grep -c 'CHILD_SA installed' "$W/a.log")" = 2 ] || { echo "    appliance A: $(grep -c 'CHILD_SA installed' "$W/a.log") CHILD SAs"; return 1; }
  fi
  wait_for 5 "$W/dpa.log" 'worker(s)' && wait_for 5 "$W/dpb.log" 'worker(s)'
}
