#!/usr/bin/env bash
# esp-strongswan.sh - Sluice's ESP engine decrypts ESP that a real strongSwan wrote.
#
# For each ESP proposal, brings up the strongSwan pair of ../shared/interop (two
# charons in namespaces named with a prefix unique to this run, userspace ESP, so all
# ESP is UDP-encapsulated on port 4500), captures a ping through the tunnel, takes
# the ESP keys from charon's key log (the harness's `keys` command), and has
# `esp-interop decrypt` open every ESP packet of the capture with Sluice's engine and
# check it is the ICMP echo between 198.19.1.1 and 198.19.2.1, both directions.
#
# usage: tests/interop/esp-strongswan.sh [PROPOSAL ...]   (root; default: all below)
# env:   SLUICE_SHARED=path to shared/ (default: ../shared beside the checkout)
set -euo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${SLUICE_SHARED:-$ROOT/../shared}
PAIR=$SHARED/interop/strongswan-pair.sh
[ -x "$PAIR" ] || { echo "esp-strongswan: $PAIR not found (set SLUICE_SHARED)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "esp-strongswan: skipped, needs root for network namespaces"; exit 77; }

# ESP proposals strongSwan's libipsec can do (ChaCha20-Poly1305 is left out: the
# harness's key extractor has no Wireshark name for it, so no keys come out).
PROPOSALS=("$@")
[ ${#PROPOSALS[@]} -gt 0 ] || PROPOSALS=(aes128gcm16 aes256gcm16 aes128-sha256 aes256-sha256)

export SWAN_NS="sl-espsw$$-"
export SWAN_STATE=$(mktemp -d /tmp/sluice-espsw.XXXXXX)
cleanup() { "$PAIR" down >/dev/null 2>&1 || true; rm -rf "$SWAN_STATE"; }
trap cleanup EXIT INT TERM

cargo build -q --release -p sluice-esp-interop
BIN=$ROOT/target/release/esp-interop

fail=0
for prop in "${PROPOSALS[@]}"; do
  echo "--- strongSwan ESP proposal $prop"
  if ! ESP_PROPOSALS=$prop KEYLOG=1 CAPTURE=1 "$PAIR" up psk-ikev2 > "$SWAN_STATE/up.log" 2>&1; then
    tail -20 "$SWAN_STATE/up.log"; echo "FAIL $prop: strongSwan tunnel did not come up"; fail=1
    "$PAIR" down >/dev/null 2>&1; continue
  fi
  "$PAIR" ping 5 > /dev/null
  "$PAIR" capture-stop 2>/dev/null
  "$PAIR" keys /dev/null > /dev/null 2>&1 || true
  pcap=$SWAN_STATE/captures/psk-ikev2.pcap
  # 3 pings at "up" and 5 more, each an echo request and reply: 16 ESP packets.
  if "$BIN" decrypt --pcap "$pcap" --esp-sa "$SWAN_STATE/keys/esp_sa" --min 16 \
       --inner 198.19.1.1,198.19.2.1; then
    echo "ok $prop"
  else
    echo "FAIL $prop"; fail=1
  fi
  "$PAIR" down >/dev/null 2>&1
done
exit $fail
