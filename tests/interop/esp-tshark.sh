#!/usr/bin/env bash
# esp-tshark.sh - tshark decrypts and authenticates ESP written by Sluice's engine.
#
# `esp-interop write` encrypts ICMP echo packets with every algorithm Wireshark can
# decrypt (AES-GCM-128/256, AES-CBC-128/256 + HMAC-SHA-256-128), IPv4 and IPv6 outer
# and inner, raw ESP and ESP-in-UDP (port 4500), into a pcap plus Wireshark's esp_sa
# table and a list of what each frame must contain. tshark, given only that table,
# must verify every ICV and find the original inner addresses and ICMP sequence.
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
command -v tshark >/dev/null || { echo "esp-tshark: tshark missing (run scripts/setup.sh)" >&2; exit 1; }
tmp=$(mktemp -d /tmp/sluice-esptshark.XXXXXX)
trap 'rm -rf "$tmp"' EXIT

cargo build -q --release -p sluice-esp-interop
"$ROOT/target/release/esp-interop" write --out "$tmp"
mkdir -p "$tmp/ws"
cp "$tmp/esp_sa" "$tmp/ws/esp_sa"
cat > "$tmp/ws/preferences" <<'P'
esp.enable_encryption_decode: TRUE
esp.enable_authentication_check: TRUE
esp.do_esp_sequence_analysis: FALSE
P
WIRESHARK_CONFIG_DIR=$tmp/ws tshark -n -r "$tmp/esp.pcap" -d udp.port==4500,udpencap \
  -T fields -E separator='|' -E occurrence=a -E aggregator=, \
  -e frame.number -e esp.spi -e esp.icv_good -e esp.icv_bad \
  -e ip.src -e ip.dst -e ipv6.src -e ipv6.dst -e icmp.seq -e icmpv6.echo.sequence_number \
  2>/dev/null > "$tmp/tshark.txt"
python3 - "$tmp/expected.txt" "$tmp/tshark.txt" <<'PY'
import sys
exp = {}
for line in open(sys.argv[1]):
    if line.startswith('#') or not line.strip():
        continue
    num, alg, spi, inner_src, inner_dst, seq, icv = line.split()
    exp[num] = (alg, spi, inner_src, inner_dst, seq, icv)
got = {l.split('|')[0]: l.rstrip('\n').split('|') for l in open(sys.argv[2])}
bad = 0
for num, (alg, spi, isrc, idst, seq, icv) in sorted(exp.items(), key=lambda x: int(x[0])):
    f = got.get(num)
    if not f:
        print(f'frame {num} ({alg}): tshark printed nothing'); bad += 1; continue
    _, fspi, good, badicv, ip4s, ip4d, ip6s, ip6d, seq4, seq6 = f
    addrs = (ip4s + ',' + ip6s).split(',') + (ip4d + ',' + ip6d).split(',')
    problems = []
    if int(fspi, 16) != int(spi, 16): problems.append(f'spi {fspi} != {spi}')
    if icv == 'checked' and good != '1': problems.append(f'ICV not verified (good={good!r} bad={badicv!r})')
    if badicv == '1': problems.append('ICV bad')
    if isrc not in addrs or idst not in addrs: problems.append(f'inner {isrc}>{idst} not decoded ({addrs})')
    if seq not in (seq4 + ',' + seq6).split(','): problems.append(f'icmp seq {seq} not found ({seq4}/{seq6})')
    status = 'ok' if not problems else 'FAIL ' + '; '.join(problems)
    print(f'frame {num:>3} {alg:<22} spi {spi} inner {isrc} > {idst} seq {seq}: {status}')
    bad += bool(problems)
print(f'esp-tshark: {len(exp) - bad} of {len(exp)} frames decrypted and verified by tshark')
sys.exit(1 if bad or not exp else 0)
PY
