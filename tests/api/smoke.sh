#!/usr/bin/env bash
# smoke.sh - the REST API, sluicectl and the metrics end to end, against real sluiced
# daemons in network namespaces this script creates (and deletes on exit, also on
# failure):
#
#   <ns>a  sluiced A 198.18.0.1, API https://127.0.0.1:7443 (token or mTLS), metrics :9469
#     |  veth
#   <ns>b  sluiced B 198.18.0.2, API likewise
#
# A's configuration file has one connection to B (initiated at start-up); everything
# else is made through the API: connections created on both (applied at once, IKE SAs
# come up), replaced, deleted, persisted across a restart; IKE and CHILD SAs listed,
# rekeyed and terminated; every error path (401, 400, 404, 405, 409, 413); concurrent
# changes; the OpenAPI document; sluicectl with a pinned fingerprint and with the CA
# file; the metrics checked by promtool and scraped by a real Prometheus server.
# No data plane runs here: tests/e2e/tunnel.sh sluice manual-api carries traffic.
#
# usage: tests/api/smoke.sh      (root; exit 0 when every check passed, 77 skipped)
set -uo pipefail
ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
[ "$(id -u)" = 0 ] || { echo "smoke.sh: skipped, needs root (network namespaces)"; exit 77; }
NS="sl-api$$-"
W=$(mktemp -d /tmp/sluice-api.XXXXXX)
PIDS=()
cleanup() {
  for p in "${PIDS[@]}"; do kill -TERM "$p" 2>/dev/null; done
  sleep 0.3
  for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
  for n in $(ip netns list 2>/dev/null | awk '{print $1}' | grep "^$NS"); do
    for p in $(ip netns pids "$n" 2>/dev/null); do kill -KILL "$p" 2>/dev/null; done
    ip netns del "$n" 2>/dev/null
  done
  [ -n "${KEEP_LOGS:-}" ] && cp -r "$W" "$KEEP_LOGS"
  rm -rf "$W"
}
trap cleanup EXIT INT TERM

flock /tmp/sluice-cargo.lock cargo build -q --release -p sluiced -p sluicectl || exit 1
SLUICED=$ROOT/target/release/sluiced
CTL=$ROOT/target/release/sluicectl

fails=0
check() { # description command...
  local what=$1; shift
  if "$@"; then echo "  ok    $what"; else echo "  FAIL  $what"; fails=$((fails + 1)); fi
}
x() { local n=$1; shift; ip netns exec "$n" "$@"; }
wait_for() { # seconds file pattern
  local i
  for i in $(seq $(( $1 * 10 ))); do grep -q "$3" "$2" 2>/dev/null && return 0; sleep 0.1; done
  echo "    timeout waiting for '$3' in $(basename "$2")"; return 1
}

A=${NS}a B=${NS}b
ip netns add $A && ip netns add $B || exit 1
ip -n $A link set lo up; ip -n $B link set lo up
ip -n $A link add ext0 type veth peer name ext0 netns $B
ip -n $A addr add 198.18.0.1/24 dev ext0; ip -n $B addr add 198.18.0.2/24 dev ext0
# The API's connections use a second address pair.
ip -n $A addr add 198.18.0.11/24 dev ext0; ip -n $B addr add 198.18.0.12/24 dev ext0
ip -n $A link set ext0 up; ip -n $B link set ext0 up

# A client CA for mTLS, and a stranger CA whose certificates must not get in.
mkdir -p "$W/pki"
pki() { openssl "$@" > /dev/null 2>&1; }
for ca in ca other; do
  pki req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 30 -subj "/CN=sluice test $ca" \
    -keyout "$W/pki/$ca.key" -out "$W/pki/$ca.pem"
  pki req -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -subj "/CN=operator of $ca" \
    -keyout "$W/pki/$ca-client.key" -out "$W/pki/$ca-client.csr"
  printf 'extendedKeyUsage = clientAuth\n' > "$W/pki/ext"
  pki x509 -req -in "$W/pki/$ca-client.csr" -CA "$W/pki/$ca.pem" -CAkey "$W/pki/$ca.key" -CAcreateserial \
    -days 30 -extfile "$W/pki/ext" -out "$W/pki/$ca-client.pem"
done

conf() { # name local remote lid rid start local_ts remote_ts
  cat <<EOT
[daemon]
sa_table = "$W/$1/sa-table"
state_dir = "$W/$1/state"

[api]
listen = "127.0.0.1:7443"
client_ca = "$W/pki/ca.pem"

[metrics]
listen = "127.0.0.1:9469"

[[connection]]
name = "file-$5"
local_addr = "$2"
remote_addr = "$3"
local_id = "$4"
remote_id = "$5"
psk = "sluice-api-smoke-psk-0123456789"
start_action = "$6"

[[connection.child]]
name = "net"
local_ts = ["$7"]
remote_ts = ["$8"]
EOT
}
conf a 198.18.0.1 198.18.0.2 a.test b.test initiate 198.19.1.0/24 198.19.2.0/24 > "$W/a.toml"
conf b 198.18.0.2 198.18.0.1 b.test a.test none 198.19.2.0/24 198.19.1.0/24 > "$W/b.toml"
start() { # node
  local n=${NS}$1
  # ip netns exec execs sluiced: $! is sluiced's pid.
  ip netns exec "$n" "$SLUICED" --config "$W/$1.toml" >> "$W/$1.log" 2>&1 & PIDS+=($!)
  eval "PID_$1=$!"
}
start b; wait_for 10 "$W/b.log" 'API listening' || exit 1
start a; wait_for 10 "$W/a.log" 'API listening' || exit 1

TOKEN_A=$W/a/state/api-token TOKEN_B=$W/b/state/api-token
CERT_A=$W/a/state/api-cert.pem CERT_B=$W/b/state/api-cert.pem
# api NODE METHOD PATH [BODY] -> body in $BODY, status in $CODE
api() {
  local n=$1 m=$2 p=$3 tok
  tok=$(cat "$W/$n/state/api-token")
  local args=(-sS --max-time 20 --cacert "$W/$n/state/api-cert.pem" -H "Authorization: Bearer $tok" -X "$m"
    -o "$W/body" -w '%{http_code}')
  [ $# -ge 4 ] && args+=(-H 'Content-Type: application/json' --data-binary "$4")
  # A large body from a file: ask first (RFC 9110 §10.1.1), as clients do, so
  # a refusal (413) arrives before the body instead of racing its upload.
  [ $# -ge 4 ] && [ "${4:0:1}" = @ ] && args+=(-H 'Expect: 100-continue')
  CODE=$(x ${NS}$n curl "${args[@]}" "https://127.0.0.1:7443$p" 2>"$W/curl.err")
  BODY=$(cat "$W/body" 2>/dev/null)
}
is() { [ "$CODE" = "$1" ] || { echo "    got $CODE: $BODY $(head -c 300 "$W/curl.err")"; return 1; }; }
has() { echo "$BODY" | jq -e "$1" > /dev/null 2>&1 || { echo "    $1 not true of: $(echo "$BODY" | head -c 600)"; return 1; }; }
wait_api() { # node path jq-filter seconds
  local i
  for i in $(seq $(( $4 * 5 ))); do
    api "$1" GET "$2"; echo "$BODY" | jq -e "$3" > /dev/null 2>&1 && return 0; sleep 0.2
  done
  echo "    timeout: $3 on $2: $(echo "$BODY" | head -c 600)"; return 1
}

echo "--- first run: token, certificate, fingerprint"
check "token generated with mode 0600" [ "$(stat -c %a "$TOKEN_A")" = 600 ]
check "self-signed certificate generated, its SHA-256 fingerprint logged" grep -q 'fingerprint=SHA256:' "$W/a.log"
FP_A=$(sed -n 's/.*fingerprint=SHA256:\([0-9A-F:]*\).*/\1/p' "$W/a.log" | head -1)
check "the logged fingerprint is the certificate's" [ "$(openssl x509 -in "$CERT_A" -noout -fingerprint -sha256 | cut -d= -f2)" = "$FP_A" ]
check "no secret in the log (token, PSK)" bash -c "! grep -q -e '$(cat "$TOKEN_A")' -e 'sluice-api-smoke-psk' '$W/a.log'"

echo "--- authentication"
code() { x $A curl -sS --max-time 10 --cacert "$CERT_A" -o /dev/null -w '%{http_code}' "$@" 2>/dev/null; }
check "health without credentials: 200" [ "$(code https://127.0.0.1:7443/v1/health)" = 200 ]
check "version without credentials: 401" [ "$(code https://127.0.0.1:7443/v1/version)" = 401 ]
check "a wrong token: 401" [ "$(code -H 'Authorization: Bearer 0000000000000000000000' https://127.0.0.1:7443/v1/ike-sas)" = 401 ]
check "a token of another daemon: 401" [ "$(code -H "Authorization: Bearer $(cat "$TOKEN_B")" https://127.0.0.1:7443/v1/connections)" = 401 ]
check "Basic instead of Bearer: 401" [ "$(code -u admin:admin https://127.0.0.1:7443/v1/connections)" = 401 ]
check "a client certificate from the client CA, no token: 200" \
  [ "$(code --cert "$W/pki/ca-client.pem" --key "$W/pki/ca-client.key" https://127.0.0.1:7443/v1/connections)" = 200 ]
check "a client certificate from another CA: refused in the TLS handshake" \
  bash -c "! ip netns exec $A curl -sS --max-time 10 --cacert '$CERT_A' --cert '$W/pki/other-client.pem' --key '$W/pki/other-client.key' -o /dev/null https://127.0.0.1:7443/v1/connections 2>/dev/null"
check "plain HTTP on the API port: no answer" bash -c "! ip netns exec $A curl -s --max-time 5 -o /dev/null http://127.0.0.1:7443/v1/health"
api a GET /v1/version; check "version with the token: 200" is 200
check "  names the API v1" has '.api == "v1"'

echo "--- OpenAPI"
api a GET /v1/openapi.json
check "openapi.json: 200, OpenAPI 3.1" has '.openapi | startswith("3.1")'
check "  documents 16 paths, bearer and mTLS security" has '(.paths | length) == 16 and .components.securitySchemes.bearer and .components.securitySchemes.mtls'
check "  has the connection schema with its fields" has '.components.schemas.Connection.properties | has("remote_id") and has("child")'

echo "--- the configuration file's connection"
check "A initiated its file connection: IKE SA established" wait_api a /v1/ike-sas 'map(select(.state == "established" and .connection == "file-b.test")) | length == 1' 10
api a GET /v1/connections
check "list: the file connection, source file, PSK not shown" has '.[0].source == "file" and .[0].psk_set == true and (.[0].connection | has("psk") | not)'
api a GET /v1/child-sas
check "CHILD SA listed with SPIs, transform and selectors" has '.[0].esp == "AES_GCM_16-128" and (.[0].spi_in | length) == 8 and .[0].local_ts == ["198.19.1.0/24"]'
api a PUT /v1/connections/file-b.test "$(jq -n '{name:"file-b.test"}')"
check "PUT a connection of the file: 400 or 409 with a message" bash -c "[ '$CODE' = 400 ] || [ '$CODE' = 409 ]"
api a DELETE /v1/connections/file-b.test
check "DELETE a connection of the file: 409" is 409
check "  the message says to change the file" has '.error | test("configuration file")'

echo "--- connections through the API, applied at once"
conn_json() { # name local remote lid rid start lts rts [psk]
  jq -n --arg n "$1" --arg l "$2" --arg r "$3" --arg li "$4" --arg ri "$5" --arg s "$6" --arg lt "$7" --arg rt "$8" \
    --arg psk "${9:-sluice-api-smoke-psk-api-987654}" \
    '{name:$n, local_addr:$l, remote_addr:$r, local_id:$li, remote_id:$ri, psk:$psk, start_action:$s,
      esp_proposal:"aes256gcm16", child:[{name:"api", local_ts:[$lt], remote_ts:[$rt]}]}'
}
# B answers for a second pair of identities; A initiates it.
api b POST /v1/connections "$(conn_json api-a 198.18.0.12 198.18.0.11 b2.test a2.test none 198.19.22.0/24 198.19.11.0/24)"
check "B: created, 201" is 201
check "  source api, PSK hidden" has '.source == "api" and .psk_set and (.connection | has("psk") | not)'
api a POST /v1/connections "$(conn_json api-b 198.18.0.11 198.18.0.12 a2.test b2.test initiate 198.19.11.0/24 198.19.22.0/24)"
check "A: created with start_action initiate, 201" is 201
check "A: its IKE SA comes up without a restart" wait_api a /v1/ike-sas 'map(select(.state == "established" and .connection == "api-b")) | length == 1' 10
api a GET /v1/ike-sas
check "  the IKE SA shows its negotiated proposal" has 'map(select(.connection == "api-b"))[0].proposal | startswith("IKE:AES_CBC_128/HMAC_SHA2_256_128/PRF_HMAC_SHA2_256/")'
check "  its CHILD SA with AES-GCM-256" wait_api a /v1/child-sas 'map(select(.connection == "api-b" and .esp == "AES_GCM_16-256")) | length == 1' 5
check "persisted: connections.json mode 0600 holds it" bash -c "[ \$(stat -c %a '$W/a/state/connections.json') = 600 ] && jq -e '.[0].name == \"api-b\"' '$W/a/state/connections.json' > /dev/null"
api a POST /v1/connections "$(conn_json api-b 198.18.0.11 198.18.0.12 a2.test b2.test none 198.19.11.0/24 198.19.22.0/24)"
check "the same name again: 409" is 409
api a POST /v1/connections "$(conn_json api-c 198.18.0.11 198.18.0.12 a3.test b3.test none 198.19.33.0/24 198.19.44.0/24)"
check "a second connection between the same two addresses: 409 (a responder picks by address)" is 409

echo "--- actions"
api a GET /v1/child-sas
SPI=$(echo "$BODY" | jq -r 'map(select(.connection == "api-b"))[0].spi_in')
IKE=$(echo "$BODY" | jq -r 'map(select(.connection == "api-b"))[0].ike_sa')
api a POST "/v1/child-sas/$SPI/rekey"
check "rekey CHILD SA $SPI: 202" is 202
check "  a new CHILD SA replaces it" wait_api a /v1/child-sas "map(select(.connection == \"api-b\" and .spi_in != \"$SPI\" and (.replaced | not))) | length == 1" 10
api a GET "/v1/ike-sas/$IKE"
OLD_SPI_I=$(echo "$BODY" | jq -r .spi_i)
api a POST "/v1/ike-sas/$IKE/rekey"
check "rekey IKE SA $IKE: 202" is 202
check "  a new IKE SA with other SPIs carries the CHILD SA" wait_api a /v1/ike-sas "map(select(.connection == \"api-b\" and .state == \"established\" and .spi_i != \"$OLD_SPI_I\" and (.children | length) >= 1)) | length == 1" 10
api a GET /v1/stats
check "stats: the rekeys counted" has '.rekeys.ike >= 1 and .rekeys.child >= 1'
api a GET /v1/child-sas
SPI=$(echo "$BODY" | jq -r 'map(select(.connection == "api-b" and (.replaced | not)))[0].spi_in')
api a POST "/v1/child-sas/$SPI/terminate"
check "terminate CHILD SA $SPI: 202" is 202
check "  gone on A, its IKE SA stays" wait_api a /v1/ike-sas "map(select(.connection == \"api-b\" and .state == \"established\" and (.children | map(.spi_in) | index(\"$SPI\") | not))) | length == 1" 10
api a GET /v1/ike-sas
IKE=$(echo "$BODY" | jq -r 'map(select(.connection == "api-b" and .state == "established"))[0].id')
api a POST "/v1/ike-sas/$IKE/terminate"
check "terminate IKE SA $IKE: 202" is 202
check "  gone on A" wait_api a /v1/ike-sas 'map(select(.connection == "api-b")) | length == 0' 10
check "  and on B (deleted with the peer)" wait_api b /v1/ike-sas 'map(select(.connection == "api-a")) | length == 0' 10
api a POST /v1/connections/api-b/initiate
check "initiate api-b: 202 with the IKE SA's id" bash -c "[ '$CODE' = 202 ] && echo '$BODY' | jq -e '.ike_sa > 0' > /dev/null"
check "  established again" wait_api a /v1/ike-sas 'map(select(.connection == "api-b" and .state == "established")) | length == 1' 10

echo "--- manually keyed SAs (no data plane here: tests/e2e/tunnel.sh sluice manual-api carries traffic)"
man_json() { # name spi_in spi_out key
  jq -n --arg n "$1" --argjson i "$2" --argjson o "$3" --arg k "$4" \
    '{name:$n, local_addr:"198.18.0.1", remote_addr:"198.18.0.2", spi_in:$i, spi_out:$o, esp:"aes256gcm16",
      encr_key_in:$k, encr_key_out:$k, local_ts:["198.19.5.0/24"], remote_ts:["198.19.6.0/24"]}'
}
KEY=$(openssl rand -hex 36)
api a POST /v1/manual-sas "$(man_json m1 4097 8193 "$KEY")"
check "POST a manual SA pair: 201" is 201
check "  SPIs shown in hex, no key in the answer" has '.spi_in == "00001001" and .spi_out == "00002001" and (tostring | test("encr_key") | not)'
api a GET /v1/manual-sas
check "listed" has 'length == 1 and .[0].name == "m1"'
api a GET /v1/manual-sas/m1
check "GET one: counters in and out" has '.inbound.packets == 0 and .outbound.packets == 0'
check "persisted mode 0600, the key not in the log" bash -c "[ \$(stat -c %a '$W/a/state/manual-sas.json') = 600 ] && ! grep -q '$KEY' '$W/a.log'"
api a POST /v1/manual-sas "$(man_json m2 4097 8194 "$KEY")"
check "the same inbound SPI again: 409" is 409
api a POST /v1/manual-sas "$(man_json m3 4098 8195 "${KEY:0:40}")"
check "a key of the wrong length: 400" is 400
check "  saying how long it must be" has '.error | test("36 bytes")'
api a POST /v1/manual-sas "$(man_json m4 200 8196 "$KEY")"
check "a reserved SPI: 400" is 400
api a DELETE /v1/manual-sas/m1
check "DELETE: 204" is 204
api a DELETE /v1/manual-sas/m1
check "DELETE again: 404" is 404
check "its SAs left the table" bash -c "! '$SLUICED' show --sa-table '$W/a/sa-table' | grep -q 'SPI 00001001'"

echo "--- bad requests: 4xx with a message, nothing applied"
bad() { # expected-code description method path body
  api a "$3" "$4" "$5"
  check "$2: $1" is "$1"
  check "  with a JSON message" has '.error | length > 5'
}
bad 400 "malformed JSON" POST /v1/connections '{"name": "x", '
bad 400 "JSON of the wrong shape" POST /v1/connections '[1, 2, 3]'
bad 400 "an unknown key" POST /v1/connections "$(conn_json api-x 198.18.0.1 198.18.0.2 a.test b.test none 198.19.3.0/24 198.19.4.0/24 | jq '.colour = "red"')"
bad 400 "a short PSK" POST /v1/connections "$(conn_json api-x 198.18.0.1 198.18.0.2 a.test b.test none 198.19.3.0/24 198.19.4.0/24 short)"
bad 400 "a bad selector" POST /v1/connections "$(conn_json api-x 198.18.0.1 198.18.0.2 a.test b.test none 198.19.3.0/33 198.19.4.0/24)"
bad 400 "an unknown ESP transform" POST /v1/connections "$(conn_json api-x 198.18.0.1 198.18.0.2 a.test b.test none 198.19.3.0/24 198.19.4.0/24 | jq '.esp_proposal = "3des"')"
bad 400 "a local address not on this host" POST /v1/connections "$(conn_json api-x 198.18.7.7 198.18.0.2 a.test b.test none 198.19.3.0/24 198.19.4.0/24)"
bad 400 "a dpd_delay of 2^64-1 s (would overflow the clock)" POST /v1/connections "$(conn_json api-x 198.18.0.1 198.18.0.2 a.test b.test initiate 198.19.3.0/24 198.19.4.0/24 | jq '.dpd_delay = 18446744073709551615')"
bad 400 "a psk_file that is not a regular file (/dev/zero)" POST /v1/connections "$(conn_json api-x 198.18.0.1 198.18.0.2 a.test b.test none 198.19.3.0/24 198.19.4.0/24 | jq 'del(.psk) | .psk_file = "/dev/zero"')"
bad 400 "a name with a slash" POST /v1/connections "$(conn_json 'a/b' 198.18.0.1 198.18.0.2 a.test b.test none 198.19.3.0/24 198.19.4.0/24)"
bad 400 "PUT with another name in the body" PUT /v1/connections/api-b "$(conn_json api-z 198.18.0.1 198.18.0.2 a.test b.test none 198.19.3.0/24 198.19.4.0/24)"
bad 404 "GET an unknown connection" GET /v1/connections/nope ''
bad 404 "DELETE an unknown connection" DELETE /v1/connections/nope ''
bad 404 "an unknown IKE SA" GET /v1/ike-sas/999999 ''
bad 400 "an IKE SA id that is not a number" GET /v1/ike-sas/abc ''
bad 400 "a SPI that is not hex" POST /v1/child-sas/xyz/rekey ''
bad 404 "an unknown CHILD SA" POST /v1/child-sas/00000001/terminate ''
bad 404 "an unknown path" GET /v2/anything ''
bad 405 "a method the path does not have" PATCH /v1/connections ''
{ printf '{"name": "'; head -c 200000 /dev/zero | tr '\0' 'a'; printf '"}'; } > "$W/big.json"
bad 413 "a 200 kB body" POST /v1/connections "@$W/big.json"
api a GET /v1/connections
check "after all that: still 2 connections, sluiced serving" has 'length == 2'

echo "--- concurrent changes"
jobs=()
for i in $(seq 1 12); do
  ( api a POST /v1/connections "$(conn_json "c$i" 198.18.0.1 198.18.0.$((100 + i)) a.test "c$i.test" none "198.19.$((100 + i)).0/24" "198.19.$((200 + i)).0/24")"
    echo "$CODE" > "$W/par.$i" ) & jobs+=($!)
done
for i in $(seq 1 6); do ( api a GET /v1/ike-sas; echo "$CODE" > "$W/get.$i" ) & jobs+=($!); done
wait "${jobs[@]}"
check "12 parallel creations: all 201" [ "$(cat "$W"/par.* | grep -c '^201$')" = 12 ]
check "6 parallel listings meanwhile: all 200" [ "$(cat "$W"/get.* | grep -c '^200$')" = 6 ]
jobs=()
for i in $(seq 1 12); do
  ( if [ $((i % 2)) = 0 ]; then api a DELETE "/v1/connections/c$i"; else
      api a PUT "/v1/connections/c$i" "$(conn_json "c$i" 198.18.0.1 198.18.0.$((100 + i)) a.test "c$i-new.test" none "198.19.$((100 + i)).0/24" "198.19.$((200 + i)).0/24")"; fi
    echo "$CODE" > "$W/par.$i" ) & jobs+=($!)
done
wait "${jobs[@]}"
check "6 parallel deletions (204) and 6 replacements (200)" \
  [ "$(cat "$W"/par.* | sort | uniq -c | awk '{print $2 "x" $1}' | tr '\n' ' ')" = "200x6 204x6 " ]
api a GET /v1/connections
check "the live list: file-b.test, api-b and the 6 replaced" has 'length == 8 and (map(select(.connection.remote_id | test("-new"))) | length) == 6'
check "the persisted file agrees" bash -c "[ \$(jq length '$W/a/state/connections.json') = 7 ]"

echo "--- restart: connections persist and come back"
kill -TERM "$PID_a"; wait "$PID_a" 2>/dev/null
check "B saw A's IKE SAs deleted on shutdown" wait_api b /v1/ike-sas 'length == 0' 10
start a; wait_for 10 "$W/a.log" 'API listening' || fails=$((fails + 1))
api a GET /v1/connections
check "after the restart: the same 8 connections" has 'length == 8 and (map(select(.source == "api")) | length) == 7'
check "  api-b (start_action initiate) is up again" wait_api a /v1/ike-sas 'map(select(.connection == "api-b" and .state == "established")) | length == 1' 10
check "  same token and certificate as before" bash -c "[ \$(grep -c 'generated a new API token' '$W/a.log') = 1 ] && grep -c 'fingerprint=SHA256:$FP_A' '$W/a.log' | grep -q 2"

echo "--- sluicectl"
ctl() { x $A env SLUICE_API_TOKEN_FILE="$TOKEN_A" "$CTL" "$@"; }
ctl --fingerprint "SHA256:$FP_A" list-sas > "$W/ctl.sas" 2>&1
check "list-sas (pinned fingerprint): both IKE SAs with SPIs and counters" \
  bash -c "grep -q 'file-b.test: #' '$W/ctl.sas' && grep -q 'api-b: #' '$W/ctl.sas' && grep -Eq 'CHILD_SA [0-9a-f]{8}_i [0-9a-f]{8}_o, AES_GCM_16-256' '$W/ctl.sas' && grep -q 'packets' '$W/ctl.sas'"
check "a wrong fingerprint is refused" bash -c "! ip netns exec $A env SLUICE_API_TOKEN_FILE='$TOKEN_A' '$CTL' --fingerprint $(printf '%064d' 0) list-sas 2>/dev/null"
ctl --cacert "$CERT_A" --json list-conns > "$W/ctl.json"
check "list-conns --json (CA file): the API's JSON" jq -e 'length == 8' "$W/ctl.json"
cat > "$W/load.toml" <<EOT
[[connection]]
name = "from-toml"
local_addr = "198.18.0.1"
remote_addr = "198.18.0.9"
local_id = "a.test"
remote_id = "toml.test"
psk = "sluice-api-smoke-psk-toml-0000000"

[[connection.child]]
name = "net"
local_ts = ["198.19.90.0/24"]
remote_ts = ["198.19.91.0/24"]
EOT
check "load-conns a TOML file" bash -c "ip netns exec $A env SLUICE_API_TOKEN_FILE='$TOKEN_A' '$CTL' --cacert '$CERT_A' load-conns '$W/load.toml' | grep -q 'loaded connection from-toml'"
check "load-conns again replaces it" bash -c "ip netns exec $A env SLUICE_API_TOKEN_FILE='$TOKEN_A' '$CTL' --cacert '$CERT_A' load-conns '$W/load.toml' | grep -q 'replaced connection from-toml'"
check "unload-conn" bash -c "ip netns exec $A env SLUICE_API_TOKEN_FILE='$TOKEN_A' '$CTL' --cacert '$CERT_A' unload-conn from-toml | grep -q unloaded"
SPI=$(ctl --cacert "$CERT_A" --json list-sas | jq -r 'map(select(.connection == "api-b"))[0].children[0].spi_in')
check "rekey --child $SPI" bash -c "ip netns exec $A env SLUICE_API_TOKEN_FILE='$TOKEN_A' '$CTL' --cacert '$CERT_A' rekey --child $SPI | grep -q 'rekeying CHILD_SA'"
ctl --cacert "$CERT_A" stats > "$W/ctl.stats"
check "stats: IKE SAs by state and rekeys" bash -c "grep -q 'established=2' '$W/ctl.stats' && grep -q 'child=' '$W/ctl.stats'"
check "client certificate instead of the token" bash -c "ip netns exec $A env SLUICE_API_TOKEN_FILE=/nonexistent '$CTL' --cacert '$CERT_A' --cert '$W/pki/ca-client.pem' --key '$W/pki/ca-client.key' version | grep -q 'API v1'"
check "an error comes back with its status and message" bash -c "ip netns exec $A env SLUICE_API_TOKEN_FILE='$TOKEN_A' '$CTL' --cacert '$CERT_A' initiate nope 2>&1 | grep -q '404 no connection'"

echo "--- metrics"
x $A curl -sS --max-time 10 http://127.0.0.1:9469/metrics > "$W/metrics.txt"
check "promtool check metrics: no problems" bash -c "promtool check metrics < '$W/metrics.txt' > '$W/promtool.out' 2>&1 || { cat '$W/promtool.out'; false; }"
check "IKE SAs by state: 2 established" grep -q '^sluice_ike_sas{state="established"} 2$' "$W/metrics.txt"
check "exchange outcomes and messages counted" bash -c "grep -q 'sluice_ike_exchange_outcomes_total{exchange=\"IKE_AUTH\",outcome=\"ok\"}' '$W/metrics.txt' && grep -q 'sluice_ike_messages_total{exchange=\"IKE_SA_INIT\",direction=\"out\",kind=\"request\"}' '$W/metrics.txt'"
check "per-SA series with conn, spi and direction" grep -Eq '^sluice_sa_packets_total\{conn="api-b",spi="[0-9a-f]{8}",direction="in"\} 0$' "$W/metrics.txt"
check "every metric the Grafana dashboard charts from sluiced is exposed (or is a data-plane one)" python3 - "$ROOT/deploy/grafana/sluice.json" "$W/metrics.txt" <<'PY'
import json, re, sys
dash = json.load(open(sys.argv[1]))
exposed = {l.split()[2] for l in open(sys.argv[2]) if l.startswith("# TYPE")}
exprs = []
def walk(o):
    if isinstance(o, dict):
        for k, v in o.items():
            if k == "expr" and isinstance(v, str): exprs.append(v)
            else: walk(v)
    elif isinstance(o, list):
        for v in o: walk(v)
walk(dash)
used = {m for e in exprs for m in re.findall(r"\b(sluice_[a-z_]+)", e)}
# Worker families appear once a data plane has run; the XDP one is sluice-dp's own.
later = {m for m in used if m.startswith(("sluice_dp_worker_", "sluice_xdp_"))}
missing = sorted(used - exposed - later)
print("    dashboard uses", len(used), "metrics; missing from sluiced:", missing or "none")
sys.exit(1 if missing or not exprs else 0)
PY
if command -v prometheus > /dev/null; then
  cat > "$W/prom.yml" <<EOT
global: {scrape_interval: 1s}
scrape_configs:
  - job_name: sluiced
    static_configs: [{targets: ["127.0.0.1:9469"]}]
EOT
  x $A prometheus --config.file="$W/prom.yml" --storage.tsdb.path="$W/prom" --web.listen-address=127.0.0.1:9090 \
    > "$W/prom.log" 2>&1 & PIDS+=($!)
  q() { x $A curl -sS --max-time 5 "http://127.0.0.1:9090/api/v1/query" --data-urlencode "query=$1" 2>/dev/null; }
  ok=0
  for _ in $(seq 40); do
    [ "$(q 'sluice_ike_sas{state="established"}' | jq -r '.data.result[0].value[1] // empty')" = 2 ] && { ok=1; break; }
    sleep 0.5
  done
  check "a real Prometheus server scraped sluiced: 2 established IKE SAs" [ $ok = 1 ]
  check "  the scrape target is up" bash -c "[ \"\$(ip netns exec $A curl -sS 'http://127.0.0.1:9090/api/v1/query?query=up' | jq -r '.data.result[0].value[1]')\" = 1 ]"
else
  echo "  FAIL  prometheus is not installed (scripts/setup.sh installs it)"; fails=$((fails + 1))
fi

echo "--- sluiced survived every request"
check "A and B still running" bash -c "kill -0 $PID_a && kill -0 $PID_b"
if [ $fails = 0 ]; then echo "smoke.sh: all checks passed"; exit 0; fi
echo "smoke.sh: $fails check(s) failed"; exit 1
