#!/usr/bin/env bash
# ike-strongswan.sh - Sluice's IKEv2 core (ike-proto, driven over real UDP by
# tests/ike-interop's ike-peer) against a real strongSwan.
#
# strongSwan runs in <ns>A of the shared interop harness (ONLY=A), Sluice's
# ike-peer in <ns>B (198.18.0.2), namespaces named with a prefix unique to the
# run and removed on exit. Each scenario checks the CHILD SA is installed on
# both sides with matching SPIs (strongSwan's inbound SPI is ours outbound and
# the other way round).
#
# usage: tests/interop/ike-strongswan.sh [SCENARIO ...] | --list   (root)
# env:   IKE_PROPOSALS / ESP_PROPOSALS passed to strongSwan (swanctl syntax)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${SLUICE_SHARED:-$ROOT/../shared}
PAIR=$SHARED/interop/strongswan-pair.sh

declare -A WHAT=(
  [psk-sw-initiates]="strongSwan initiates to Sluice (PSK, default proposals, NAT-T on 4500)"
  [psk-sluice-initiates]="Sluice initiates to strongSwan (PSK)"
  [invalid-ke]="strongSwan's Curve25519 KE refused with INVALID_KE_PAYLOAD(ECP-256); it retries"
  [delete-by-strongswan]="strongSwan deletes the IKE SA; Sluice removes it and its CHILD SA"
  [delete-by-sluice]="Sluice deletes the IKE SA; strongSwan removes it"
  [dpd-killed-peer]="Sluice's liveness checks declare a killed strongSwan dead"
  [keylog-tshark]="a capture of the exchange decrypts in tshark with Sluice's key log (IDs seen, ICVs correct)"
  [second-child-by-strongswan]="strongSwan adds a second CHILD SA with CREATE_CHILD_SA"
  [second-child-by-sluice]="Sluice adds a second CHILD SA with CREATE_CHILD_SA"
)
ORDER=(psk-sw-initiates psk-sluice-initiates invalid-ke delete-by-strongswan delete-by-sluice dpd-killed-peer keylog-tshark second-child-by-strongswan second-child-by-sluice)
if [ "${1:-}" = --list ]; then
  for s in "${ORDER[@]}"; do echo "$s	${WHAT[$s]}"; done
  exit 0
fi
[ -x "$PAIR" ] || { echo "ike-strongswan: $PAIR not found (set SLUICE_SHARED)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "ike-strongswan: skipped, needs root for network namespaces"; exit 77; }
SCEN=("$@"); [ ${#SCEN[@]} -gt 0 ] || SCEN=("${ORDER[@]}")

export SWAN_NS="sl-ike$$-"
export SWAN_STATE=$(mktemp -d /tmp/sluice-ikesw.XXXXXX)
cleanup() { "$PAIR" down >/dev/null 2>&1 || true; rm -rf "$SWAN_STATE"; }
trap cleanup EXIT INT TERM

cargo build -q --release -p sluice-ike-interop || exit 1
PEER=(ip netns exec "${SWAN_NS}B" "$ROOT/target/release/ike-peer" --local 198.18.0.2 --remote 198.18.0.1
      --id b.psw.test --remote-id a.psw.test --psk sluice-interop-psk-0123456789
      --local-ts 198.19.2.0/24 --remote-ts 198.19.1.0/24 --timeout 20)

# SPIs as "in out" from strongSwan's --list-sas and from ike-peer's output.
sw_spis() { "$PAIR" sw A --list-sas 2>/dev/null | awk '/INSTALLED/ {f=1} f && $1=="in" {i=$2} f && $1=="out" {o=$2} END {gsub(",","",i); gsub(",","",o); print i, o}'; }
peer_spis() { sed -n 's/.*CHILD_SA installed: SPIs \([0-9a-f]*\)_i \([0-9a-f]*\)_o.*/\1 \2/p' "$1" | tail -1; }

fail=0
for s in "${SCEN[@]}"; do
  echo "--- $s: ${WHAT[$s]:-unknown scenario}"
  [ -n "${WHAT[$s]:-}" ] || { fail=1; continue; }
  cap=0; [ $s = keylog-tshark ] && cap=1
  if ! CAPTURE=$cap ONLY=A INITIATE=0 "$PAIR" up psk-ikev2 > "$SWAN_STATE/up.log" 2>&1; then
    tail -5 "$SWAN_STATE/up.log"; echo "FAIL $s: strongSwan did not start"; fail=1; continue
  fi
  log=$SWAN_STATE/peer-$s.log
  case $s in
    psk-sw-initiates|invalid-ke|keylog-tshark)
      extra=(); [ $s = invalid-ke ] && extra=(--groups 19)
      if [ $s = keylog-tshark ]; then
        rm -rf "$SWAN_STATE/keylog"; mkdir -p "$SWAN_STATE/keylog"
        extra=(--keylog "$SWAN_STATE/keylog")
      fi
      "${PEER[@]}" --role responder "${extra[@]}" > "$log" 2>&1 & pid=$!
      sleep 0.3
      timeout 25 "$PAIR" sw A --initiate --ike psw --child net > "$SWAN_STATE/init.log" 2>&1
      wait $pid; rc=$?
      ;;
    psk-sluice-initiates)
      "${PEER[@]}" --role initiator > "$log" 2>&1; rc=$?
      ;;
    delete-by-strongswan)
      "${PEER[@]}" --role responder --then wait-delete > "$log" 2>&1 & pid=$!
      sleep 0.3
      timeout 25 "$PAIR" sw A --initiate --ike psw --child net > "$SWAN_STATE/init.log" 2>&1
      read -r sw_in sw_out <<< "$(sw_spis)"
      timeout 10 "$PAIR" sw A --terminate --ike psw > "$SWAN_STATE/term.log" 2>&1
      wait $pid; rc=$?
      ;;
    delete-by-sluice)
      "${PEER[@]}" --role initiator --then delete > "$log" 2>&1 & pid=$!
      for _ in $(seq 40); do grep -q 'CHILD_SA installed' "$log" 2>/dev/null && break; sleep 0.1; done
      read -r sw_in sw_out <<< "$(sw_spis)"
      wait $pid; rc=$?
      sleep 0.5
      ;;
    second-child-by-strongswan)
      "${PEER[@]}" --role responder --children 2 > "$log" 2>&1 & pid=$!
      sleep 0.3
      timeout 25 "$PAIR" sw A --initiate --ike psw --child net > "$SWAN_STATE/init.log" 2>&1
      # strongSwan will not duplicate a CHILD SA with the same selectors: give
      # it a second child config (narrower selectors) and initiate that.
      conf=$SWAN_STATE/run/A/swanctl/swanctl.conf
      sed -i '0,/^\( *\)children {/s//&\n\1  net2 {\n\1    local_ts = 198.19.1.0\/25\n\1    remote_ts = 198.19.2.0\/25\n\1    mode = tunnel\n\1  }/' "$conf"
      "$PAIR" sw A --load-conns > "$SWAN_STATE/load.log" 2>&1
      timeout 25 "$PAIR" sw A --initiate --ike psw --child net2 > "$SWAN_STATE/init2.log" 2>&1
      wait $pid; rc=$?
      ;;
    second-child-by-sluice)
      "${PEER[@]}" --role initiator --then second-child > "$log" 2>&1; rc=$?
      ;;
    dpd-killed-peer)
      "${PEER[@]}" --role initiator --then dpd --retransmit 200,4 > "$log" 2>&1 & pid=$!
      for _ in $(seq 40); do grep -q 'liveness check answered' "$log" 2>/dev/null && break; sleep 0.1; done
      read -r sw_in sw_out <<< "$(sw_spis)"
      kill -KILL "$(cat "$SWAN_STATE/run/A/charon.pid")" 2>/dev/null
      wait $pid; rc=$?
      ;;
  esac
  case $s in delete-*|dpd-*) ;; *) read -r sw_in sw_out <<< "$(sw_spis)" ;; esac
  read -r my_in my_out <<< "$(peer_spis "$log")"
  ok=1
  [ $rc = 0 ] || { echo "ike-peer exited $rc"; ok=0; }
  if [ -z "$sw_in" ] || [ "$sw_in" != "$my_out" ] || [ "$sw_out" != "$my_in" ]; then
    echo "SPIs differ: strongSwan in=$sw_in out=$sw_out, Sluice in=$my_in out=$my_out"; ok=0
  fi
  if [ $s = invalid-ke ]; then
    if line=$(grep -m1 -E 'INVALID_KE_PAYLOAD|it requested' "$SWAN_STATE/run/A/charon.log"); then
      echo "    strongSwan: ${line#*] }"
    else
      echo "strongSwan never saw INVALID_KE_PAYLOAD"; ok=0
    fi
  fi
  case $s in
    second-child-*)
      n_sw=$("$PAIR" sw A --list-sas 2>/dev/null | grep -c INSTALLED)
      n_me=$(grep -c 'CHILD_SA installed' "$log")
      echo "    CHILD SAs installed: strongSwan $n_sw, Sluice $n_me"
      [ "$n_sw" = 2 ] && [ "$n_me" = 2 ] || { echo "expected two CHILD SAs on each side"; ok=0; }
      for spi in $(sed -n 's/.*CHILD_SA installed: SPIs \([0-9a-f]*\)_i.*/\1/p' "$log"); do
        "$PAIR" sw A --list-sas 2>/dev/null | grep -q "out $spi" || { echo "strongSwan has no outbound SA $spi"; ok=0; }
      done ;;
    delete-by-strongswan)
      grep -q 'IKE_SA deleted' "$log" && grep -q "CHILD_SA deleted: SPIs $my_in" "$log" || { echo "Sluice did not process the delete"; ok=0; } ;;
    delete-by-sluice)
      grep -q 'IKE_SA deleted' "$log" || { echo "no delete response"; ok=0; }
      [ -z "$("$PAIR" sw A --list-sas 2>/dev/null | grep psw)" ] || { echo "strongSwan still has the IKE SA"; ok=0; }
      grep -q 'received DELETE for IKE_SA' "$SWAN_STATE/run/A/charon.log" && echo "    strongSwan: received DELETE for IKE_SA" ;;
    dpd-killed-peer)
      grep -q 'peer dead' "$log" || { echo "peer not declared dead"; ok=0; } ;;
    keylog-tshark)
      "$PAIR" capture-stop 2>/dev/null
      mode=$(stat -c %a "$SWAN_STATE/keylog/ikev2_decryption_table" 2>/dev/null)
      [ "$mode" = 600 ] || { echo "key log mode is '$mode', expected 600"; ok=0; }
      dec=$(WIRESHARK_CONFIG_DIR=$SWAN_STATE/keylog tshark -n -r "$SWAN_STATE/captures/psk-ikev2.pcap" \
            -Y 'isakmp.exchangetype==35' -V 2>/dev/null)
      good=$(grep -c 'Integrity Checksum Data.*\[correct\]' <<< "$dec")
      ids=$(grep -c -E 'Identification Data:(a|b)\.psw\.test' <<< "$dec")
      echo "    tshark: $good IKE_AUTH ICVs correct, $ids identities decrypted"
      [ "$good" = 2 ] && [ "$ids" -ge 2 ] || { echo "tshark could not decrypt the IKE_AUTH exchange"; ok=0; } ;;
  esac
  if [ $ok = 1 ]; then
    echo "ok $s: CHILD SA in=$my_in out=$my_out on both sides"
    grep -E 'deleted|dead|liveness check answered' "$log" | head -4 | sed 's/^/    sluice: /'
    "$PAIR" sw A --list-sas 2>/dev/null | grep -E 'ESTABLISHED|IKEv2|AES|INSTALLED' | sed 's/^/    /'
  else
    echo "FAIL $s"; tail -15 "$log"; fail=1
  fi
  "$PAIR" down >/dev/null 2>&1
done
exit $fail
