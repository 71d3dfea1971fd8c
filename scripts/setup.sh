#!/usr/bin/env bash
# setup.sh - install everything Sluice needs on a fresh Debian 12 machine, as root.
#
# Idempotent: packages already present are skipped, so both README commands call it
# on every run. Only Debian's package registry and crates.io are used.
set -euo pipefail

# Debian packages, by what needs them.
PKGS=(
  # build: C toolchain for the XDP program and -sys crates, bindgen's libclang
  clang llvm libclang-dev pkg-config m4 make gcc libc6-dev
  # XDP / AF_XDP
  libbpf-dev libxdp-dev libelf-dev zlib1g-dev
  # DPDK (virtual devices in tests)
  dpdk dpdk-dev libdpdk-dev
  # strongSwan peers for interop (userspace ESP via kernel-libipsec)
  strongswan-swanctl charon-systemd libcharon-extra-plugins
  libstrongswan-extra-plugins libstrongswan-standard-plugins strongswan-pki ike-scan
  # network tests and debugging
  iproute2 iperf3 tcpdump tshark ethtool iputils-ping procps psmisc
  # test tooling
  python3 jq curl ca-certificates openssl
  # metrics: promtool and a real Prometheus server for the API tests
  prometheus
)

if [ "$(id -u)" != 0 ]; then
  echo "setup.sh: must run as root (apt-get install, network namespaces)" >&2
  exit 1
fi

missing=()
for p in "${PKGS[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed'; then
    missing+=("$p")
  fi
done

if [ ${#missing[@]} -gt 0 ]; then
  echo "setup.sh: installing ${missing[*]}"
  export DEBIAN_FRONTEND=noninteractive
  # tshark asks whether non-root users may capture; answer once, non-interactively.
  echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections
  apt-get update -qq
  # charon-systemd's unit must not start a daemon in the root namespace.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod +x /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
fi

# Rust: the machine's stable toolchain plus the components the checks use.
if command -v rustup >/dev/null 2>&1; then
  rustup component list --installed 2>/dev/null | grep -q '^rustfmt' || rustup component add rustfmt clippy >/dev/null 2>&1 || true
fi
command -v cargo >/dev/null || { echo "setup.sh: cargo not found" >&2; exit 1; }

# Crates for the workspace, once, so tests and the demo build offline afterwards.
cd "$(dirname "${BASH_SOURCE[0]}")/.."
cargo fetch --locked -q 2>/dev/null || cargo fetch -q

echo "setup.sh: ready"
