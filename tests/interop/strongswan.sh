#!/usr/bin/env bash
# strongswan.sh - sluiced against a real strongSwan (the shared interop pair).
#
# strongSwan runs in <ns>A (198.18.0.1, ONLY=A), sluiced in <ns>B (198.18.0.2)
# with a configuration generated per scenario; namespaces are named with a
# prefix unique to the run and removed on exit, also on failure. Checks read
# strongSwan's `swanctl --list-sas` and the SAs sluiced wrote into its shared
# SA table (`sluiced show`), and compare the ESP keys with strongSwan's own key
# log. IKE_PROPOSALS / ESP_PROPOSALS (strongSwan syntax) go to both sides.
#
# usage: tests/interop/strongswan.sh [SCENARIO ...] | --list        (root)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
SHARED=${SLUICE_SHARED:-$ROOT/../shared}
PAIR=$SHARED/interop/strongswan-pair.sh

declare -A WHAT=(
  [psk-sw-initiates]="strongSwan initiates to sluiced (PSK); CHILD SA in both with matching SPIs and keys"
  [psk-sluiced-initiates]="sluiced initiates at start-up (start_action = initiate); same checks"
  [create-child-sa]="strongSwan adds a second CHILD SA (CREATE_CHILD_SA); four SAs in the table"
  [delete-by-strongswan]="strongSwan deletes the IKE SA; sluiced empties the SA table"
  [sigterm-deletes]="SIGTERM: sluiced deletes its IKE SA at strongSwan and empties the table"
  [dpd-killed-peer]="DPD: strongSwan is killed; sluiced declares it dead and removes the SAs"
  [invalid-ke]="sluiced wants ECP-256: strongSwan's Curve25519 KE gets INVALID_KE_PAYLOAD, it retries"
  [esp-aes-cbc-sha256]="CHILD SA with ESP AES-CBC-128 + HMAC-SHA-256-128 (ESP_PROPOSALS=aes128-sha256)"
  [esp-chacha20]="CHILD SA with ESP ChaCha20-Poly1305 (ESP_PROPOSALS=chacha20poly1305)"
  [ike-modp2048]="IKE SA with MODP-2048 and AES-256/SHA-384 (IKE_PROPOSALS=aes256-sha384-modp2048)"
  [ike-aes256gcm16-ecp384]="IKE SA with AES-GCM-16-256, PRF SHA-384, ECP-384 (IKE_PROPOSALS=aes256gcm16-prfsha384-ecp384)"
  [ike-aes128gcm16-ecp256]="IKE SA with AES-GCM-16-128, PRF SHA-256, ECP-256 (IKE_PROPOSALS=aes128gcm16-prfsha256-ecp256)"
  [ike-aes256-sha512-modp3072]="IKE SA with AES-CBC-256, HMAC-SHA-512, MODP-3072 (IKE_PROPOSALS=aes256-sha512-modp3072)"
  [policy-two-children]="policy-based, two subnet pairs: sluiced initiates both children (IKE_AUTH + CREATE_CHILD_SA)"
  [route-based]="route-based: one child for 0.0.0.0/0 and ::/0 both ways, strongSwan initiates"
  [psk-dn-ids]="IDs of type DER_ASN1_DN on both sides (C=CH, O=Sluice Interop, CN=...), strongSwan initiates"
  [rekey-ike-both]="IKE SA rekeyed by strongSwan (swanctl --rekey --ike) and then by sluiced (ike_rekey_time = 4): new IKE SPIs, CHILD SA kept, SIGTERM still deletes cleanly"
  [rekey-child-both]="CHILD SA rekeyed by strongSwan (swanctl --rekey --child) and by sluiced (rekey_time = 4): new SPIs and keys equal on both sides"
  [rekey-child-pfs]="CHILD SA rekeys with PFS (ESP_PROPOSALS=aes128gcm16-ecp256, a KE in CREATE_CHILD_SA) started by strongSwan and by sluiced"
  [lifetime-hard]="rekey_time = 0, lifetime = 3: sluiced deletes the CHILD SA at its hard lifetime; strongSwan and the table lose it"
  [cookie-by-sluiced]="sluiced demands a COOKIE (cookie_threshold = 0): strongSwan retries IKE_SA_INIT with it and the tunnel comes up"
  [keylog-tshark]="a capture of the exchange decrypts in tshark with sluiced's key log alone (IDs seen, ICVs correct)"
  [cert-sw-initiates]="certificates: strongSwan (ECDSA P-256, the harness's CA) initiates, sluiced answers with RSA-3072; RFC 7427 signatures both ways"
  [cert-sluiced-initiates]="certificates: sluiced initiates (start_action = initiate) with its RSA-3072 certificate"
  [cert-rsa-pss]="certificates: sluiced signs with RSASSA-PSS (rsa_pss = true), strongSwan verifies"
  [cert-openssl-p384]="certificates made by scripts/make-certs.sh (docs/certificates.md): sluiced on ECDSA P-384 under its own CA, which strongSwan trusts"
  [frag-cert-both]="IKEv2 fragmentation (RFC 7383): fragment_size 576 on both sides; strongSwan's and sluiced's certificate-bearing IKE_AUTH messages both arrive in fragments"
  [cookie-by-strongswan]="strongSwan demands a COOKIE (cookie_threshold = 1, one half-open SA made by ike-peer): sluiced initiates, answers it, the tunnel comes up"
  [cookie-flood-sw-peer]="a flood of 20000 spoofed IKE_SA_INITs (half claiming strongSwan's address) at sluiced's defaults while strongSwan initiates: its tunnel comes up, memory stays flat, the flood is counted"
  [rekey-collision]="a CHILD SA rekey collision: sluiced's rekey_time fires while strongSwan's rekey of the same CHILD SA is on its (slowed) way; both answer, the nonces pick one new CHILD SA, nothing redundant is left"
  [rekey-collision-ike]="an IKE SA rekey collision the same way (ike_rekey_time = 6, swanctl --rekey --ike): one new IKE SA on both sides holds the CHILD SA, the redundant one is deleted"
  [reauth-by-sluiced]="sluiced reauthenticates (reauth_time = 4): a new IKE SA and CHILD SA from scratch take over, then the old IKE SA is deleted; one IKE SA left at strongSwan"
  [reauth-by-strongswan]="strongSwan reauthenticates (swanctl --rekey --ike --reauth): one new IKE SA and CHILD SA at both, the policy on the new outbound SA"
  [cert-crl-revoked]="a CRL (strongSwan's pki --signcrl) revokes strongSwan's certificate: sluiced refuses it, no SA anywhere"
)
ORDER=(psk-sw-initiates psk-sluiced-initiates create-child-sa delete-by-strongswan sigterm-deletes dpd-killed-peer invalid-ke esp-aes-cbc-sha256 esp-chacha20 ike-modp2048 ike-aes256gcm16-ecp384 ike-aes128gcm16-ecp256 ike-aes256-sha512-modp3072 policy-two-children route-based psk-dn-ids rekey-ike-both rekey-child-both rekey-child-pfs lifetime-hard cookie-by-sluiced keylog-tshark cert-sw-initiates cert-sluiced-initiates cert-rsa-pss cert-openssl-p384 cert-crl-revoked frag-cert-both cookie-by-strongswan cookie-flood-sw-peer rekey-collision rekey-collision-ike reauth-by-sluiced reauth-by-strongswan)
# IKE proposal scenarios: what both sides are given | what strongSwan must show.
declare -A IKE_SCEN=(
  [ike-modp2048]="aes256-sha384-modp2048|AES_CBC-256/HMAC_SHA2_384_192/PRF_HMAC_SHA2_384/MODP_2048"
  [ike-aes256gcm16-ecp384]="aes256gcm16-prfsha384-ecp384|AES_GCM_16-256/PRF_HMAC_SHA2_384/ECP_384"
  [ike-aes128gcm16-ecp256]="aes128gcm16-prfsha256-ecp256|AES_GCM_16-128/PRF_HMAC_SHA2_256/ECP_256"
  [ike-aes256-sha512-modp3072]="aes256-sha512-modp3072|AES_CBC-256/HMAC_SHA2_512_256/PRF_HMAC_SHA2_512/MODP_3072"
)
if [ "${1:-}" = --list ]; then
  for s in "${ORDER[@]}"; do echo "$s	${WHAT[$s]}"; done
  exit 0
fi
[ -x "$PAIR" ] || { echo "strongswan.sh: $PAIR not found (set SLUICE_SHARED)" >&2; exit 1; }
[ "$(id -u)" = 0 ] || { echo "strongswan.sh: skipped, needs root for network namespaces"; exit 77; }
SCEN=("$@"); [ ${#SCEN[@]} -gt 0 ] || SCEN=("${ORDER[@]}")

export SWAN_NS="sl-sd$$-"
export SWAN_STATE=$(mktemp -d /tmp/sluice-sluiced.XXXXXX)
W=$SWAN_STATE/sluiced
SLPID=""
stop_sluiced() { [ -n "$SLPID" ] && kill -TERM "$SLPID" 2>/dev/null && wait "$SLPID" 2>/dev/null; SLPID=""; }
cleanup() { stop_sluiced; "$PAIR" down >/dev/null 2>&1 || true; rm -rf "$SWAN_STATE"; }
trap cleanup EXIT INT TERM

cargo build -q --release -p sluiced -p sluice-ike-interop || exit 1
BIN=$ROOT/target/release/sluiced

config() { # extra TOML lines for the connection
  mkdir -p "$W"
  cat > "$W/sluiced.toml" <<EOT
[daemon]
sa_table = "$W/sa-table"
keylog = "$W/keylog"
${DAEMON_EXTRA:-}

[[connection]]
name = "site-a"
local_addr = "198.18.0.2"
remote_addr = "198.18.0.1"
local_id = "b.psw.test"
remote_id = "a.psw.test"
psk = "sluice-interop-psk-0123456789"
ike_proposal = "${SLUICE_IKE:-${IKE_PROPOSALS:-aes128-sha256-x25519-ecp256}}"
esp_proposal = "${ESP_PROPOSALS:-aes128gcm16}"
$*

[[connection.child]]
name = "net"
local_ts = ["198.19.2.0/24"]
remote_ts = ["198.19.1.0/24"]
EOT
}
start_sluiced() {
  ip netns exec "${SWAN_NS}B" "$BIN" --config "$W/sluiced.toml" > "$W/log" 2>&1 & SLPID=$!
  for _ in $(seq 50); do grep -q 'listening.*4500' "$W/log" 2>/dev/null && return 0; sleep 0.1; done
  echo "sluiced did not start:"; cat "$W/log"; return 1
}
wait_log() { # pattern seconds
  for _ in $(seq $(( $2 * 10 ))); do grep -q "$1" "$W/log" 2>/dev/null && return 0; sleep 0.1; done
  return 1
}
table() { "$BIN" show --sa-table "$W/sa-table" 2>/dev/null; }
table_spi() { table | awk -v d="$1" '$1==d && $2=="SPI" {print $3}' | sort | tr '\n' ' '; }
sw_spis() { "$PAIR" sw A --list-sas 2>/dev/null | awk -v d="$1" '$1==d {gsub(",","",$2); print $2}' | sort | tr '\n' ' '; }
# The rows of a Wireshark esp_sa table (addresses, SPI, algorithms, keys).
keys_of() { grep -v '^#' "$1" | sort -u; }

check_match() { # expected number of CHILD SAs
  local ok=1 t_in t_out s_in s_out
  t_in=$(table_spi in); t_out=$(table_spi out); s_in=$(sw_spis in); s_out=$(sw_spis out)
  echo "    strongSwan in: $s_in out: $s_out | sluiced table in: $t_in out: $t_out"
  [ "$(wc -w <<< "$t_in")" = "$1" ] || { echo "expected $1 inbound SAs in the table"; ok=0; }
  [ -n "$t_in" ] && [ "$t_in" = "$s_out" ] && [ "$t_out" = "$s_in" ] || { echo "SPIs do not mirror"; ok=0; }
  "$PAIR" keys /dev/null > /dev/null 2>&1
  if [ "${esp_env:-}" = chacha20poly1305 ]; then
    # keys2tshark.py has no Wireshark name for ChaCha20-Poly1305: no rows to compare.
    echo "    ESP keys not compared: the harness's key extractor skips ChaCha20-Poly1305"
  elif [ -s "$SWAN_STATE/keys/esp_sa" ] && [ -s "$W/keylog/esp_sa" ]; then
    if [ -n "${CURRENT_KEYS_ONLY:-}" ]; then
      # Only the SAs both have now: a collision's redundant SA is installed
      # by strongSwan (and deleted), never by the side that closes it.
      local pat; pat=$(for x in $t_in $t_out; do printf '0x%s|' "$x"; done); pat=${pat%|}
      cur() { keys_of "$1" | grep -E "\"($pat)\""; }
      if [ "$(cur "$SWAN_STATE/keys/esp_sa")" = "$(cur "$W/keylog/esp_sa")" ] && [ "$(cur "$W/keylog/esp_sa" | wc -l)" = 2 ]; then
        echo "    ESP SAs: the current SAs' key log rows equal strongSwan's"
      else
        echo "ESP keys of the current SAs differ"; ok=0
      fi
    elif [ "$(keys_of "$SWAN_STATE/keys/esp_sa")" = "$(keys_of "$W/keylog/esp_sa")" ]; then
      echo "    ESP SAs: sluiced's key log rows (addresses, SPI, algorithms, keys) equal strongSwan's, $(keys_of "$W/keylog/esp_sa" | wc -l) SAs"
      keys_of "$W/keylog/esp_sa" | head -1 | cut -d, -f4,5,7 | sed 's/^/      /'
    else
      echo "ESP keys differ"; ok=0
    fi
  else
    echo "no key logs to compare"; ok=0
  fi
  return $((1 - ok))
}

fail=0
for s in "${SCEN[@]}"; do
  echo "--- $s: ${WHAT[$s]:-unknown scenario}"
  [ -n "${WHAT[$s]:-}" ] || { fail=1; continue; }
  rm -rf "$W"
  ok=1
  esp_env=${ESP_PROPOSALS:-}
  ike_env=${IKE_PROPOSALS:-}
  [ -n "${IKE_SCEN[$s]:-}" ] && ike_env=${IKE_SCEN[$s]%%|*}
  case $s in esp-aes-cbc-sha256) esp_env=aes128-sha256 ;; esp-chacha20) esp_env=chacha20poly1305 ;; rekey-child-pfs) esp_env=aes128gcm16-ecp256 ;; esac
  cap=0; [ $s = keylog-tshark ] && cap=1
  pair_scen=psk-ikev2; case $s in cert-*|frag-*) pair_scen=cert-ikev2 ;; esac
  if ! IKE_PROPOSALS=$ike_env ESP_PROPOSALS=$esp_env KEYLOG=1 CAPTURE=$cap ONLY=A INITIATE=0 "$PAIR" up $pair_scen > "$SWAN_STATE/up.log" 2>&1; then
    tail -5 "$SWAN_STATE/up.log"; echo "FAIL $s: strongSwan did not start"; fail=1; continue
  fi
  case $s in
    psk-sw-initiates|invalid-ke|esp-*|ike-*|keylog-tshark|cookie-by-sluiced)
      if [ $s = invalid-ke ]; then SLUICE_IKE=aes128-sha256-ecp256 config
      elif [ $s = cookie-by-sluiced ]; then DAEMON_EXTRA='cookie_threshold = 0' config
      elif [ -n "${IKE_SCEN[$s]:-}" ]; then SLUICE_IKE=$ike_env config
      elif [ -n "$esp_env" ]; then ESP_PROPOSALS=$esp_env config
      else config; fi
      start_sluiced || ok=0
      timeout 20 "$PAIR" sw A --initiate --ike psw --child net > "$W/init.log" 2>&1 || { cat "$W/init.log"; ok=0; }
      wait_log 'CHILD_SA installed' 5 || ok=0
      check_match 1 || ok=0
      if [ -n "${IKE_SCEN[$s]:-}" ]; then
        want=${IKE_SCEN[$s]#*|}
        "$PAIR" sw A --list-sas 2>/dev/null | grep -m1 -o "$want" | sed 's/^/    strongSwan: /' | grep . || { echo "IKE SA not on $want"; ok=0; }
      fi
      if [ $s = cookie-by-sluiced ]; then
        grep -m1 'received N(COOKIE)' "$SWAN_STATE/run/A/charon.log" | sed 's/.*\] /    strongSwan: /' | grep . ||
          grep -m1 -i 'cookie' "$SWAN_STATE/run/A/charon.log" | sed 's/.*\] /    strongSwan: /' | grep . || { echo "strongSwan saw no COOKIE"; ok=0; }
      fi
      if [ $s = keylog-tshark ]; then
        "$PAIR" capture-stop 2>/dev/null
        mode=$(stat -c %a "$W/keylog/ikev2_decryption_table" 2>/dev/null)
        [ "$mode" = 600 ] || { echo "key log mode is '$mode', expected 600"; ok=0; }
        # Only sluiced's key log: a Wireshark profile holding nothing else.
        dec=$(WIRESHARK_CONFIG_DIR=$W/keylog tshark -n -r "$SWAN_STATE/captures/psk-ikev2.pcap" \
              -Y 'isakmp.exchangetype==35' -V 2>/dev/null)
        good=$(grep -c 'Integrity Checksum Data.*\[correct\]' <<< "$dec")
        ids=$(grep -c -E 'Identification Data:(a|b)\.psw\.test' <<< "$dec")
        echo "    tshark: $good IKE_AUTH ICVs correct, $ids identities decrypted with sluiced's key log"
        [ "$good" = 2 ] && [ "$ids" -ge 2 ] || { echo "tshark could not decrypt the IKE_AUTH exchange"; ok=0; }
      fi
      if [ $s = invalid-ke ]; then
        grep -m1 'it requested' "$SWAN_STATE/run/A/charon.log" | sed 's/.*\] /    strongSwan: /' | grep . || { echo "no INVALID_KE_PAYLOAD round"; ok=0; }
      fi
      ;;
    psk-sluiced-initiates)
      config 'start_action = "initiate"'
      start_sluiced || ok=0
      wait_log 'CHILD_SA installed' 10 || ok=0
      check_match 1 || ok=0
      ;;
    create-child-sa)
      config; start_sluiced || ok=0
      timeout 20 "$PAIR" sw A --initiate --ike psw --child net > "$W/init.log" 2>&1 || ok=0
      conf=$SWAN_STATE/run/A/swanctl/swanctl.conf
      sed -i '0,/^\( *\)children {/s//&\n\1  net2 {\n\1    local_ts = 198.19.1.0\/25\n\1    remote_ts = 198.19.2.0\/25\n\1    mode = tunnel\n\1  }/' "$conf"
      "$PAIR" sw A --load-conns > /dev/null 2>&1
      timeout 20 "$PAIR" sw A --initiate --ike psw --child net2 > "$W/init2.log" 2>&1 || { cat "$W/init2.log"; ok=0; }
      for _ in $(seq 30); do [ "$(grep -c 'CHILD_SA installed' "$W/log")" = 2 ] && break; sleep 0.1; done
      check_match 2 || ok=0
      ;;
    psk-dn-ids)
      dn_a="C=CH, O=Sluice Interop, CN=a.psw.test"; dn_b="C=CH, O=Sluice Interop, CN=b.psw.test"
      config
      sed -i "s|^local_id = .*|local_id = \"$dn_b\"|; s|^remote_id = .*|remote_id = \"$dn_a\"|" "$W/sluiced.toml"
      conf=$SWAN_STATE/run/A/swanctl/swanctl.conf
      sed -i "s|id = a.psw.test|id = \"$dn_a\"|; s|id = b.psw.test|id = \"$dn_b\"|; s|id-a = a.psw.test|id-a = \"$dn_a\"|; s|id-b = b.psw.test|id-b = \"$dn_b\"|" "$conf"
      "$PAIR" sw A --load-all --noprompt > /dev/null 2>&1
      start_sluiced || ok=0
      timeout 20 "$PAIR" sw A --initiate --ike psw --child net > "$W/init.log" 2>&1 || { cat "$W/init.log"; ok=0; }
      wait_log 'CHILD_SA installed' 5 || ok=0
      check_match 1 || ok=0
      "$PAIR" sw A --list-sas 2>/dev/null | grep -m1 "remote 'C=CH, O=Sluice Interop, CN=b.psw.test'" | sed 's/^ */    strongSwan: /' | grep . || { echo "strongSwan did not see sluiced's DN"; ok=0; }
      ;;
    rekey-ike-both)
      config 'ike_rekey_time = 4'
      start_sluiced || ok=0
      timeout 20 "$PAIR" sw A --initiate --ike psw --child net > /dev/null 2>&1 || ok=0
      wait_log 'CHILD_SA installed' 5 || ok=0
      child=$(table_spi in)
      # "psw: #2, ESTABLISHED, IKEv2, <spi>_i* <spi>_r" (* marks the initiator)
      ike_spis() { "$PAIR" sw A --list-sas 2>/dev/null | grep -o '[0-9a-f]\{16\}_i[*]\? [0-9a-f]\{16\}_r[*]\?' | head -1; }
      s0=$(ike_spis)
      timeout 10 "$PAIR" sw A --rekey --ike psw > /dev/null 2>&1 || { echo "swanctl --rekey --ike failed"; ok=0; }
      wait_log 'IKE_SA rekeyed' 5 || ok=0
      sleep 0.3
      s1=$(ike_spis)
      echo "    strongSwan rekeyed: IKE SPIs $s0 -> $s1"
      [ -n "$s1" ] && [ "$s1" != "$s0" ] || { echo "strongSwan's IKE SA did not change"; ok=0; }
      for _ in $(seq 80); do [ "$(grep -c 'IKE_SA rekeyed: now' "$W/log")" -ge 2 ] && break; sleep 0.1; done
      s2=$(ike_spis)
      echo "    sluiced rekeyed: IKE SPIs $s1 -> $s2"
      grep -c 'rekeying the IKE_SA (lifetime)' "$W/log" | grep -q '^[1-9]' || { echo "sluiced did not rekey"; ok=0; }
      [ -n "$s2" ] && [ "$s2" != "$s1" ] || { echo "no second rekey seen by strongSwan"; ok=0; }
      [ "$(table_spi in)" = "$child" ] || { echo "CHILD SA changed: $child -> $(table_spi in)"; ok=0; }
      check_match 1 || ok=0
      kill -TERM "$SLPID"; wait "$SLPID"; SLPID=""
      sleep 0.3
      [ -z "$("$PAIR" sw A --list-sas 2>/dev/null | grep psw)" ] || { echo "strongSwan still has an IKE SA after SIGTERM"; ok=0; }
      ;;
    lifetime-hard)
      config 'rekey_time = 0' 'lifetime = 3'
      sed -i 's/^rekey_time = 0 lifetime = 3$/rekey_time = 0\nlifetime = 3/' "$W/sluiced.toml"
      start_sluiced || ok=0
      timeout 20 "$PAIR" sw A --initiate --ike psw --child net > /dev/null 2>&1 || ok=0
      wait_log 'CHILD_SA installed' 5 || ok=0
      wait_log 'hard lifetime' 6 || { echo "no hard expiry"; ok=0; }
      wait_log 'CHILD_SA deleted' 3 || ok=0
      grep -m1 'hard lifetime' "$W/log" | sed 's/.*daemon: /    sluiced: /'
      sleep 0.3
      [ -z "$(table_spi in)$(table_spi out)" ] || { echo "SAs left in the table"; ok=0; }
      "$PAIR" sw A --list-sas 2>/dev/null | grep -q 'INSTALLED' && { echo "strongSwan still has the CHILD SA"; ok=0; }
      "$PAIR" sw A --list-sas 2>/dev/null | grep -q 'ESTABLISHED' || { echo "the IKE SA should stay"; ok=0; }
      ;;
    rekey-child-both|rekey-child-pfs)
      ESP_PROPOSALS=$esp_env config 'rekey_time = 4'
      start_sluiced || ok=0
      timeout 20 "$PAIR" sw A --initiate --ike psw --child net > /dev/null 2>&1 || ok=0
      wait_log 'CHILD_SA installed' 5 || ok=0
      c0=$(table_spi in)
      timeout 10 "$PAIR" sw A --rekey --child net > /dev/null 2>&1 || { echo "swanctl --rekey --child failed"; ok=0; }
      wait_log 'CHILD_SA rekeyed' 5 || ok=0
      sleep 0.5
      c1=$(table_spi in)
      echo "    strongSwan rekeyed the CHILD SA: inbound SPI $c0 -> $c1"
      for _ in $(seq 60); do [ "$(grep -c 'rekeying CHILD_SA' "$W/log")" -ge 1 ] && [ "$(grep -c 'CHILD_SA rekeyed' "$W/log")" -ge 2 ] && break; sleep 0.1; done
      c2=$(table_spi in)
      echo "    sluiced rekeyed the CHILD SA: inbound SPIs $c1 -> $c2 (rekeyed ones linger 5 s)"
      [ "$c0" != "$c1" ] && [ "$c1" != "$c2" ] || ok=0
      out=$(table_spi out | tr -d ' ')
      echo "    sluiced sends on $out; strongSwan receives on: $(sw_spis in)"
      grep -qw "$out" <<< "$(sw_spis in)" || { echo "strongSwan has no inbound SA $out"; ok=0; }
      if [ $s = rekey-child-pfs ]; then
        grep -m1 'DH group ECP_256\|ECP_256' "$SWAN_STATE/run/A/charon.log" | grep -m1 'CHILD\|proposal' | sed 's/.*\] /    strongSwan: /'
        "$PAIR" sw A --list-sas 2>/dev/null | grep -m1 -o 'AES_GCM_16-128/ECP_256' | sed 's/^/    strongSwan CHILD SA: /' | grep . || { echo "no PFS group on strongSwan's CHILD SA"; ok=0; }
      fi
      "$PAIR" keys /dev/null > /dev/null 2>&1
      if [ "$(keys_of "$SWAN_STATE/keys/esp_sa")" = "$(keys_of "$W/keylog/esp_sa")" ]; then
        echo "    every ESP SA's keys equal strongSwan's ($(keys_of "$W/keylog/esp_sa" | wc -l) SAs)"
      else
        echo "ESP keys differ"; ok=0
      fi
      ;;
    policy-two-children)
      config 'start_action = "initiate"'
      printf '\n[[connection.child]]\nname = "net-b"\nlocal_ts = ["198.19.4.0/24"]\nremote_ts = ["198.19.3.0/24"]\n' >> "$W/sluiced.toml"
      conf=$SWAN_STATE/run/A/swanctl/swanctl.conf
      sed -i '0,/^\( *\)children {/s//&\n\1  net-b {\n\1    local_ts = 198.19.3.0\/24\n\1    remote_ts = 198.19.4.0\/24\n\1    mode = tunnel\n\1  }/' "$conf"
      "$PAIR" sw A --load-conns > /dev/null 2>&1
      # libipsec routes a child only with a local address inside its selector.
      "$PAIR" exec A ip addr add 198.19.3.1/32 dev lo
      start_sluiced || ok=0
      for _ in $(seq 100); do [ "$(grep -c 'CHILD_SA installed' "$W/log")" = 2 ] && break; sleep 0.1; done
      check_match 2 || ok=0
      for c in net net-b; do
        "$PAIR" sw A --list-sas 2>/dev/null | grep -q "^  $c: .*INSTALLED" || { echo "strongSwan has no $c"; ok=0; }
      done
      table | grep -q '198.19.4.0/24' || { echo "no 198.19.4.0/24 policy in the table"; ok=0; }
      ;;
    route-based)
      config
      sed -i 's|^local_ts = .*|local_ts = ["0.0.0.0/0", "::/0"]|; s|^remote_ts = .*|remote_ts = ["0.0.0.0/0", "::/0"]|' "$W/sluiced.toml"
      conf=$SWAN_STATE/run/A/swanctl/swanctl.conf
      sed -i 's|local_ts  = 198.19.1.0/24|local_ts = 0.0.0.0/0,::/0|; s|remote_ts = 198.19.2.0/24|remote_ts = 0.0.0.0/0,::/0|' "$conf"
      "$PAIR" sw A --load-conns > /dev/null 2>&1
      start_sluiced || ok=0
      timeout 20 "$PAIR" sw A --initiate --ike psw --child net > "$W/init.log" 2>&1 || { cat "$W/init.log"; ok=0; }
      wait_log 'CHILD_SA installed' 5 || ok=0
      check_match 1 || ok=0
      "$PAIR" sw A --list-sas 2>/dev/null | grep -E '^ +(local|remote) ' | sed 's/^ */    strongSwan: /'
      "$PAIR" sw A --list-sas 2>/dev/null | grep -q 'local  0.0.0.0/0 ::/0' || { echo "strongSwan's child is not 0.0.0.0/0 + ::/0"; ok=0; }
      table | grep -q '::/0' || { echo "no ::/0 policy in the table"; ok=0; }
      ;;
    cert-*|frag-*)
      # sluiced is node B of the harness's cert-ikev2 pair: b.psw.test with
      # the harness's RSA-3072 certificate, trusting the harness's CA.
      mkdir -p "$W/pki"
      P=$SWAN_STATE/pki
      cp "$P/b.cert.pem" "$P/ca.cert.pem" "$W/pki/"; install -m 600 "$P/b.key.pem" "$W/pki/b.key.pem"
      cert=$W/pki/b.cert.pem; key=$W/pki/b.key.pem; want_b=RSA_EMSA_PKCS1_SHA2_256
      extra=""
      case $s in
        cert-sluiced-initiates) extra='start_action = "initiate"' ;;
        cert-rsa-pss) extra='rsa_pss = true'; want_b=RSA_EMSA_PSS ;;
        cert-openssl-p384)
          "$ROOT/scripts/make-certs.sh" ca "$W/own" "Sluice Interop CA" > /dev/null &&
            "$ROOT/scripts/make-certs.sh" cert "$W/own" b.psw.test p384 198.18.0.2 | sed 's/^/    /' || ok=0
          cert=$W/own/b.psw.test.cert.pem; key=$W/own/b.psw.test.key.pem; want_b=ECDSA_WITH_SHA384_DER
          swdir=$SWAN_STATE/run/A/swanctl
          cp "$W/own/ca.cert.pem" "$swdir/x509ca/sluice-ca.pem"
          sed -i 's|cacerts = ca.cert.pem|cacerts = sluice-ca.pem|' "$swdir/swanctl.conf"
          "$PAIR" sw A --load-all --noprompt > /dev/null 2>&1 || { echo "strongSwan did not load the new CA"; ok=0; }
          ;;
        frag-cert-both)
          extra='fragment_size = 576'
          printf 'charon-systemd {\n  fragment_size = 576\n}\n' > "$SWAN_STATE/run/A/extra.d/30-fragments.conf"
          "$PAIR" sw A --reload-settings > /dev/null 2>&1 || { echo "strongSwan did not reload its settings"; ok=0; }
          ;;
        cert-crl-revoked)
          STRONGSWAN_CONF=$SHARED/interop/conf/pki-strongswan.conf pki --signcrl --cacert "$P/ca.cert.pem" \
            --cakey "$P/ca.key.pem" --cert "$P/a.cert.pem" --reason key-compromise --outform pem > "$W/pki/crl.pem" || ok=0
          extra="crls = [\"$W/pki/crl.pem\"]"
          ;;
      esac
      config "$(printf 'cert = "%s"\nkey = "%s"\nca_certs = ["%s"]\n%s' "$cert" "$key" "$W/pki/ca.cert.pem" "$extra")"
      start_sluiced || ok=0
      if [ $s = cert-crl-revoked ]; then
        timeout 20 "$PAIR" sw A --initiate --ike psw --child net > "$W/init.log" 2>&1 && { echo "strongSwan got a tunnel with a revoked certificate"; ok=0; }
        wait_log 'revoked' 5 || { echo "sluiced did not say the certificate is revoked"; ok=0; }
        grep -m1 'revoked' "$W/log" | sed 's/.*: peer/    sluiced: peer/'
        grep -m1 'AUTHENTICATION_FAILED' "$SWAN_STATE/run/A/charon.log" | sed 's/.*\] /    strongSwan: /' | grep . || { echo "strongSwan saw no AUTHENTICATION_FAILED"; ok=0; }
        [ -z "$(table_spi in)$(table_spi out)" ] || { echo "SAs in the table"; ok=0; }
      else
        if [ $s = cert-sluiced-initiates ]; then
          wait_log 'CHILD_SA installed' 10 || ok=0
        else
          timeout 20 "$PAIR" sw A --initiate --ike psw --child net > "$W/init.log" 2>&1 || { cat "$W/init.log"; ok=0; }
          wait_log 'CHILD_SA installed' 5 || ok=0
        fi
        check_match 1 || ok=0
        if [ $s = frag-cert-both ]; then
          grep -m1 'reassembled IKE_AUTH request' "$W/log" | sed 's/.*: reass/    sluiced: reass/' | grep . || { echo "sluiced reassembled no IKE_AUTH"; ok=0; }
          grep -m1 'IKE_AUTH response.*split into' "$W/log" | sed 's/.*: generating/    sluiced: generating/' | cut -c1-60,200- | grep . || { echo "sluiced did not fragment its IKE_AUTH response"; ok=0; }
          grep -m1 'splitting IKE message' "$SWAN_STATE/run/A/charon.log" | sed 's/.*\] /    strongSwan: /' | grep . || { echo "strongSwan did not fragment"; ok=0; }
          grep -m1 'reassembled fragmented IKE message' "$SWAN_STATE/run/A/charon.log" | sed 's/.*\] /    strongSwan: /' | grep . || { echo "strongSwan reassembled nothing"; ok=0; }
        fi
        grep -m1 "authentication of 'a.psw.test' with ECDSA_WITH_SHA256_DER successful" "$W/log" | sed 's/.*: auth/    sluiced: auth/' | grep . ||
          { echo "sluiced did not verify strongSwan's ECDSA signature"; ok=0; }
        grep -m1 "authentication of 'b.psw.test' with $want_b.* successful" "$SWAN_STATE/run/A/charon.log" | sed 's/.*\] /    strongSwan: /' | grep . ||
          { echo "strongSwan did not verify sluiced's $want_b signature"; ok=0; }
      fi
      ;;
    cookie-by-strongswan)
      # strongSwan reads its DoS settings at start: restart A's charon with them.
      d=$SWAN_STATE/run/A
      printf 'charon-systemd {\n  dos_protection = yes\n  cookie_threshold = 1\n  block_threshold = 10\n}\n' > "$d/extra.d/20-cookies.conf"
      pid=$(cat "$d/charon.pid"); kill -TERM "$pid"
      for _ in $(seq 50); do kill -0 "$pid" 2>/dev/null || break; sleep 0.1; done
      rm -f "$d/charon.vici"
      ip netns exec "${SWAN_NS}A" setsid env STRONGSWAN_CONF="$d/strongswan.conf" SWANCTL_DIR="$d/swanctl" \
        /usr/sbin/charon-systemd > "$d/charon.stdout" 2>&1 < /dev/null &
      echo $! > "$d/charon.pid"
      for _ in $(seq 100); do [ -S "$d/charon.vici" ] && break; sleep 0.1; done
      "$PAIR" sw A --load-all --noprompt > /dev/null 2>&1 || { echo "strongSwan did not come back"; ok=0; }
      # One half-open IKE SA at strongSwan (ike-peer, before sluiced binds port 500).
      ip netns exec "${SWAN_NS}B" "$ROOT/target/release/ike-peer" --role initiator --local 198.18.0.2 --remote 198.18.0.1 \
        --id b.psw.test --remote-id a.psw.test --psk sluice-interop-psk-0123456789 --local-ts 198.19.2.0/24 \
        --remote-ts 198.19.1.0/24 --then half-open --timeout 5 > "$W.half-open.log" 2>&1 || { echo "no half-open SA at strongSwan"; cat "$W.half-open.log"; ok=0; }
      config 'start_action = "initiate"'
      start_sluiced || ok=0
      wait_log 'CHILD_SA installed' 10 || ok=0
      check_match 1 || ok=0
      grep -m1 'peer demands a COOKIE' "$W/log" | sed 's/.*: peer/    sluiced: peer/' | grep . || { echo "sluiced got no COOKIE"; ok=0; }
      grep -m1 'sending COOKIE\|COOKIE' "$d/charon.log" | sed 's/.*\] /    strongSwan: /' | grep . || { echo "strongSwan demanded no COOKIE"; ok=0; }
      rm -f "$W.half-open.log"
      ;;
    cookie-flood-sw-peer)
      config; start_sluiced || ok=0
      rss() { awk '/VmRSS/ {print $2}' /proc/$SLPID/status; }
      r0=$(rss)
      ip netns exec "${SWAN_NS}A" python3 "$ROOT/tests/interop/ike-flood.py" 198.18.0.2 198.18.0.1 20000 20 > "$W/flood.log" &
      fl=$!
      sleep 0.5
      timeout 30 "$PAIR" sw A --initiate --ike psw --child net > "$W/init.log" 2>&1 || { cat "$W/init.log"; ok=0; }
      wait_log 'CHILD_SA installed' 5 || ok=0
      wait $fl; sed 's/^/    /' "$W/flood.log"
      r1=$(rss)
      echo "    sluiced RSS: $r0 kB before the flood, $r1 kB after"
      [ $((r1 - r0)) -lt 20000 ] || { echo "memory grew by $((r1 - r0)) kB"; ok=0; }
      check_match 1 || ok=0
      grep -m1 'received COOKIE\|COOKIE' "$SWAN_STATE/run/A/charon.log" | sed 's/.*\] /    strongSwan: /' | grep . || { echo "strongSwan was not asked for a COOKIE"; ok=0; }
      stop_sluiced
      grep 'IKE_SA_INIT defences' "$W/log" | sed 's/.*WARN //; s/^/    /'
      sum() { sed -n "s/.*$1=\([0-9]*\).*/\1/p" "$W/log" | awk '{s+=$1} END {print s+0}'; }
      echo "    flood: $(sum unknown_peer) from unknown addresses dropped, $(sum cookies_sent) answered with a COOKIE, $(sum per_source_full) dropped at twice the per-source limit, $(sum cookies_valid) valid COOKIE(s)"
      [ "$(sum unknown_peer)" -ge 5000 ] && [ "$(sum cookies_sent)" -ge 1000 ] && [ "$(sum cookies_valid)" -ge 1 ] || ok=0
      ;;
    rekey-collision|rekey-collision-ike)
      # The old inbound SA lingers 1 s: the check comes before the next rekey.
      if [ $s = rekey-collision ]; then
        DAEMON_EXTRA='delete_rekeyed_delay = 1' config "$(printf 'rekey_time = 6\nretransmit_initial_ms = 6000')"
        what=child; rekey_log='rekeying CHILD_SA'; resolved='rekey collision for .* \(won\|lost\)'
      else
        config "$(printf 'ike_rekey_time = 6\nretransmit_initial_ms = 6000')"
        what=ike; rekey_log='rekeying the IKE_SA'; resolved='IKE_SA rekey collision \(won\|lost\)'
      fi
      start_sluiced || ok=0
      timeout 20 "$PAIR" sw A --initiate --ike psw --child net > /dev/null 2>&1 || ok=0
      wait_log 'CHILD_SA installed' 5 || ok=0
      old=$(table_spi in)
      # sluiced rekeys 5.4-6.0 s after the install (rekey_time 6, up to 10%
      # early). At 4.9 s strongSwan rekeys too, its way to sluiced slowed to
      # 100 bytes/s by tbf (the bucket drained first by one ping): its
      # request arrives ~3 s later, after sluiced's went out, so each side
      # gets the other's request while its own is outstanding.
      sleep 4.9
      # (tbf drops what exceeds its burst: strongSwan's IKE rekey request,
      # with all its default proposals, is ~700 bytes.)
      if [ $what = child ]; then tbf="rate 800bit burst 600" fill=540; else tbf="rate 2400bit burst 1600" fill=1400; fi
      ip netns exec "${SWAN_NS}A" tc qdisc add dev ext0 root tbf $tbf latency 60s
      ip netns exec "${SWAN_NS}A" ping -c1 -W1 -s $fill 198.18.0.2 > /dev/null 2>&1
      if [ $what = child ]; then
        timeout 30 "$PAIR" sw A --rekey --child net > "$W/rekey.log" 2>&1 &
      else
        timeout 30 "$PAIR" sw A --rekey --ike psw > "$W/rekey.log" 2>&1 &
      fi
      for _ in $(seq 300); do grep -q "$resolved" "$W/log" && break; sleep 0.1; done
      grep -m1 'rekey collision: the peer rekeys' "$W/log" | sed 's/.*daemon: /    sluiced: /' | grep . || { echo "sluiced saw no collision"; ok=0; }
      grep -m1 "$resolved" "$W/log" | sed 's/.*daemon: /    sluiced: /' | grep . || { echo "sluiced did not resolve a collision"; ok=0; }
      # Resolved at sluiced means both sides saw the collision: strongSwan's way
      # out need not be slow any longer (its DELETE of a redundant SA would
      # otherwise wait behind the 100-bytes/s bucket, seconds on a slow machine).
      ip netns exec "${SWAN_NS}A" tc qdisc del dev ext0 root 2>/dev/null
      # The redundant SA and the old one go; one new CHILD SA remains.
      for _ in $(seq 100); do
        [ "$(wc -w <<< "$(table_spi in)")" = 1 ] && [ "$(table_spi in)" != "$old" ] && [ "$(wc -w <<< "$(sw_spis in)")" = 1 ] && break
        sleep 0.1
      done
      grep -m1 -i 'rekey collision' "$SWAN_STATE/run/A/charon.log" | sed 's/.*\] /    strongSwan: /' | grep . || { echo "strongSwan saw no collision"; ok=0; }
      if [ $what = child ]; then
        [ "$(table_spi in)" != "$old" ] || { echo "the old CHILD SA is still there"; ok=0; }
        CURRENT_KEYS_ONLY=1 check_match 1 || ok=0
      else
        # One IKE SA left at strongSwan (the old and the redundant one deleted),
        # the CHILD SA untouched and still mirrored.
        for _ in $(seq 50); do [ "$("$PAIR" sw A --list-sas 2>/dev/null | grep -c '^psw: #')" = 1 ] && break; sleep 0.1; done
        n=$("$PAIR" sw A --list-sas 2>/dev/null | grep -c '^psw: #')
        "$PAIR" sw A --list-sas 2>/dev/null | grep '^psw: #' | sed 's/^/    strongSwan: /'
        [ "$n" = 1 ] || { echo "strongSwan has $n IKE SAs"; ok=0; }
        grep -m1 'IKE_SA .* closed: deleted' "$W/log" | sed 's/.*daemon: /    sluiced: /'
        [ "$(table_spi in)" = "$old" ] || { echo "the CHILD SA changed"; ok=0; }
        check_match 1 || ok=0
      fi
      ;;
    reauth-by-sluiced|reauth-by-strongswan)
      if [ $s = reauth-by-sluiced ]; then
        DAEMON_EXTRA='delete_rekeyed_delay = 1' config 'reauth_time = 4'
      else
        DAEMON_EXTRA='delete_rekeyed_delay = 1' config
      fi
      start_sluiced || ok=0
      timeout 20 "$PAIR" sw A --initiate --ike psw --child net > /dev/null 2>&1 || ok=0
      wait_log 'CHILD_SA installed' 5 || ok=0
      ike0=$("$PAIR" sw A --list-sas 2>/dev/null | grep -o '[0-9a-f]\{16\}_i[*]\? [0-9a-f]\{16\}_r[*]\?' | head -1)
      old=$(table_spi in)
      if [ $s = reauth-by-sluiced ]; then
        wait_log 'reauthenticated: deleting the old IKE_SA' 8 || { echo "sluiced did not reauthenticate"; ok=0; }
        pat='closed: deleted'
      else
        timeout 20 "$PAIR" sw A --rekey --ike psw --reauth > "$W/reauth.log" 2>&1 || { echo "swanctl --reauth failed"; cat "$W/reauth.log"; ok=0; }
        pat='closed: deleted'
      fi
      wait_log "$pat" 5 || { echo "the old IKE SA was not deleted at sluiced"; ok=0; }
      # The old inbound SA lingers 1 s.
      for _ in $(seq 30); do [ "$(wc -w <<< "$(table_spi in)")" = 1 ] && [ "$(table_spi in)" != "$old" ] && break; sleep 0.1; done
      if [ $s = reauth-by-sluiced ]; then
        grep -m1 'takes over from' "$W/log" | sed 's/.*daemon: /    sluiced: /' | grep . || { echo "no CHILD SA took the policies over"; ok=0; }
      else
        # strongSwan 5.9 deletes the old IKE SA first (break-before-make),
        # then sets up the new one; make-before-break is tested by reauth-two.
        grep -m1 'reauthenticating IKE_SA' "$SWAN_STATE/run/A/charon.log" | sed 's/.*\] /    strongSwan: /'
      fi
      n=$("$PAIR" sw A --list-sas 2>/dev/null | grep -c '^psw: #')
      ike1=$("$PAIR" sw A --list-sas 2>/dev/null | grep -o '[0-9a-f]\{16\}_i[*]\? [0-9a-f]\{16\}_r[*]\?' | head -1)
      echo "    strongSwan: $n IKE SA(s), SPIs $ike0 -> $ike1"
      [ "$n" = 1 ] && [ "$ike1" != "$ike0" ] || { echo "expected one new IKE SA at strongSwan"; ok=0; }
      [ "$(table_spi in)" != "$old" ] || { echo "the CHILD SA was not replaced"; ok=0; }
      table | grep -q "protect, out SPI $(table_spi out | tr -d ' ')" || { echo "the policy is not on the new outbound SA"; ok=0; }
      CURRENT_KEYS_ONLY=1 check_match 1 || ok=0
      ;;
    delete-by-strongswan)
      config; start_sluiced || ok=0
      timeout 20 "$PAIR" sw A --initiate --ike psw --child net > /dev/null 2>&1 || ok=0
      wait_log 'CHILD_SA installed' 5 || ok=0
      timeout 10 "$PAIR" sw A --terminate --ike psw > /dev/null 2>&1
      wait_log 'closed: deleted' 5 || { echo "sluiced did not close the IKE SA"; ok=0; }
      [ -z "$(table_spi in)$(table_spi out)" ] || { echo "SAs left in the table: $(table)"; ok=0; }
      grep -E 'CHILD_SA deleted|closed' "$W/log" | sed 's/.*daemon: /    sluiced: /'
      ;;
    sigterm-deletes)
      config; start_sluiced || ok=0
      timeout 20 "$PAIR" sw A --initiate --ike psw --child net > /dev/null 2>&1 || ok=0
      wait_log 'CHILD_SA installed' 5 || ok=0
      kill -TERM "$SLPID"; wait "$SLPID"; rc=$?; SLPID=""
      [ $rc = 0 ] || { echo "sluiced exited $rc"; ok=0; }
      sleep 0.3
      [ -z "$("$PAIR" sw A --list-sas 2>/dev/null | grep psw)" ] || { echo "strongSwan still has the IKE SA"; ok=0; }
      [ -z "$(table_spi in)$(table_spi out)" ] || { echo "SAs left in the table"; ok=0; }
      grep -m1 'received DELETE for IKE_SA' "$SWAN_STATE/run/A/charon.log" | sed 's/.*\] /    strongSwan: /'
      ;;
    dpd-killed-peer)
      config 'dpd_delay = 1' 'retransmit_initial_ms = 200' 'retransmit_tries = 4'
      # one TOML key a line
      sed -i 's/^dpd_delay = 1 retransmit_initial_ms = 200 retransmit_tries = 4$/dpd_delay = 1\nretransmit_initial_ms = 200\nretransmit_tries = 4/' "$W/sluiced.toml"
      start_sluiced || ok=0
      timeout 20 "$PAIR" sw A --initiate --ike psw --child net > /dev/null 2>&1 || ok=0
      wait_log 'CHILD_SA installed' 5 || ok=0
      kill -KILL "$(cat "$SWAN_STATE/run/A/charon.pid")" 2>/dev/null
      wait_log 'peer dead' 15 || { echo "peer not declared dead"; ok=0; }
      [ -z "$(table_spi in)$(table_spi out)" ] || { echo "SAs left in the table"; ok=0; }
      grep -m1 'peer dead' "$W/log" | sed 's/.*daemon: /    sluiced: /'
      ;;
  esac
  table | sed "s/^/    /"; stop_sluiced; [ -n "${KEEP_LOG:-}" ] && cp "$W/log" /tmp/keep-sluiced.log && cp "$SWAN_STATE/run/A/charon.log" /tmp/keep-charon.log
  if [ $ok = 1 ]; then echo "ok $s"; else echo "FAIL $s"; tail -20 "$W/log" 2>/dev/null; fail=1; fi
  "$PAIR" down >/dev/null 2>&1
done
exit $fail
