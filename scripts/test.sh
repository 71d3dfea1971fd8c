#!/usr/bin/env bash
# test.sh - set up the machine (scripts/setup.sh) and run every Sluice test:
# formatting and lints, unit/property/multi-process tests, the loom model of the
# SA table, interop with tshark and strongSwan, and a benchmark smoke run.
#
# usage: scripts/test.sh [--no-setup] [STEP ...]     (STEP: see steps below)
# Exit status 0 only if every step passed. Needs root for the network-namespace
# steps (CI runs as root); without root those steps say so and count as skipped.
set -uo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
ROOT=$PWD
LOGDIR=$ROOT/tests/out
mkdir -p "$LOGDIR"

if [ "${1:-}" = "--no-setup" ]; then shift; else ./scripts/setup.sh || exit 1; fi

passed=0 failed=0 skipped=0 failures=()
step() { # name command...
  local name=$1; shift
  if [ ${#SELECT[@]} -gt 0 ] && [[ ! " ${SELECT[*]} " =~ " $name " ]]; then return; fi
  local t0=$SECONDS
  echo "=== $name: $*"
  "$@"
  local rc=$?
  if [ $rc = 0 ]; then passed=$((passed + 1)); echo "=== $name: ok ($((SECONDS - t0)) s)"
  elif [ $rc = 77 ]; then skipped=$((skipped + 1)); echo "=== $name: SKIPPED ($((SECONDS - t0)) s)"
  else failed=$((failed + 1)); failures+=("$name"); echo "=== $name: FAILED rc=$rc ($((SECONDS - t0)) s)"
  fi
}
SELECT=("$@")

need_root() { [ "$(id -u)" = 0 ] || { echo "skipped: needs root for network namespaces (run as root, as CI does)"; return 77; }; }
as_root() { need_root || return $?; "$@"; }

loom() {
  # loom needs its own cfg; a separate target dir keeps the main build cached.
  RUSTFLAGS="--cfg loom" CARGO_TARGET_DIR=$ROOT/target/loom \
    cargo test -p sluice-sa-table --release --test loom -- --test-threads=1
}

step fmt        cargo fmt --all -- --check
step clippy     cargo clippy --workspace --all-targets --locked -- -D warnings
step unit       cargo test --workspace --locked
step loom       loom
step esp-tshark tests/interop/esp-tshark.sh
step esp-strongswan as_root tests/interop/esp-strongswan.sh
step ike-strongswan as_root tests/interop/ike-strongswan.sh
step sluiced-strongswan as_root tests/interop/strongswan.sh
step sluiced-peers as_root tests/interop/sluiced-peers.sh
step api-smoke as_root tests/api/smoke.sh
step e2e-strongswan as_root tests/e2e/tunnel.sh strongswan
step e2e-sluice as_root tests/e2e/tunnel.sh sluice
# The same scenarios, all of them, on DPDK ports (net_af_packet over the veths, TAP
# exception path).
step e2e-dpdk-strongswan as_root env BACKEND=dpdk tests/e2e/tunnel.sh strongswan
step e2e-dpdk-sluice as_root env BACKEND=dpdk tests/e2e/tunnel.sh sluice
step perf-smoke perf/run esp --quick
step perf-dpdk-smoke as_root perf/run dpdk --quick --size 1420
step perf-e2e-smoke as_root perf/run e2e --quick

echo
echo "test.sh: ${failures[*]:+failed steps: ${failures[*]}}"
echo "test.sh: $passed passed, $failed failed, $skipped skipped"
[ $failed = 0 ]
