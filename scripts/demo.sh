#!/usr/bin/env bash
# demo.sh - the main job. Sets the machine up, then shows Sluice's ESP engine at work:
#  1. encrypts ICMP echo packets with every supported algorithm (IPv4/IPv6, raw ESP
#     and ESP-in-UDP) and has tshark decrypt and authenticate them with the same keys;
#  2. decrypts them back with Sluice's own engine and prints the per-SA counters;
#  3. runs the per-core ESP benchmark against the raw-AEAD roof (perf/run esp);
#  4. (as root) has sluiced negotiate a tunnel with a real strongSwan in network
#     namespaces and shows the CHILD SA it wrote into the shared SA table.
# The tunnel demo through the real data plane replaces this with the data-plane issue.
#
# usage: scripts/demo.sh [--quick]     (--quick: shorter benchmark)
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
./scripts/setup.sh
cargo build -q --release -p sluice-esp-interop -p sluice-perf -p sluiced

echo
echo "== 1. ESP written by Sluice, decrypted and verified by tshark"
tests/interop/esp-tshark.sh

echo
echo "== 2. The same packets decrypted by Sluice's engine"
tmp=$(mktemp -d /tmp/sluice-demo.XXXXXX)
trap 'rm -rf "$tmp"' EXIT
target/release/esp-interop write --out "$tmp" > /dev/null
target/release/esp-interop decrypt --pcap "$tmp/esp.pcap" --esp-sa "$tmp/esp_sa" --verbose

echo
echo "== 3. Per-core ESP throughput vs the raw AEAD roof (JSON lines, then a table)"
perf/run esp "${1:-}" | tee "$tmp/esp.jsonl"
python3 - "$tmp/esp.jsonl" <<'PY'
import json, sys
rows = [json.loads(l) for l in open(sys.argv[1]) if l.startswith('{')]
print(f"\n{'backend':<11}{'alg':<25}{'op':<7}{'size':>6}{'Gb/s':>8}{'Mpps':>8}{'roof Gb/s':>11}{'ratio':>7}")
for r in rows:
    print(f"{r['backend']:<11}{r['alg']:<25}{r['op']:<7}{r['size']:>6}{r['gbps']:>8.2f}{r['mpps']:>8.2f}{r['roof_gbps']:>11.2f}{r['ratio']:>7.2f}")
PY

echo
echo "== 4. sluiced negotiates a tunnel with strongSwan (IKEv2, PSK) and installs the CHILD SA"
if [ "$(id -u)" = 0 ]; then
  tests/interop/strongswan.sh psk-sw-initiates
else
  echo "(skipped: needs root for network namespaces)"
fi
