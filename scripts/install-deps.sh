#!/usr/bin/env bash
# Installs the Debian 12 packages dingo needs to build, test and benchmark.
# Idempotent: only missing packages are installed, and apt-get update runs only then.
set -euo pipefail

packages=(
  # toolchain
  build-essential cmake ninja-build ccache pkg-config
  # the sanitizer tree and the fuzzers: clang-14 with its ASan/UBSan/libFuzzer runtimes
  clang-14 libclang-rt-14-dev
  # libraries
  libboost1.74-dev libboost-filesystem1.74-dev libssl-dev libsqlite3-dev
  libcli11-dev libfmt-dev libtomlplusplus-dev nlohmann-json3-dev libsimdjson-dev libgtest-dev libc-ares-dev libjwt-dev
  # tools the tests drive
  openssl curl python3 python3-websockets python3-jwt python3-cryptography prometheus groff-base
  # the TLS audit (tests/integration/test_tls_audit.py, docs/security.md)
  testssl.sh
  # nsclient's tests run a real DNS server
  dnsmasq-base
  # the package test: lintian checks the .deb, systemd-analyze verifies the units, man
  # renders the pages as installed
  lintian systemd man-db
  # tools the README tour and the runbook use
  jq netcat-openbsd
)
if [ "${1:-}" = "--bench" ]; then
  packages+=(wrk nginx-light)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi
echo "install-deps: installing ${missing[*]}"
SUDO=""
[ "$(id -u)" -eq 0 ] || SUDO="sudo"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
