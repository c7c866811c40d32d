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
  libcli11-dev libfmt-dev libtomlplusplus-dev nlohmann-json3-dev libsimdjson-dev libgtest-dev libc-ares-dev libjwt-dev libhiredis-dev
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
  # the Redis engine's tests run real Redis servers
  redis-server redis-tools
  # the browser tests (tests/browser): Debian's Chromium, driven by npm's playwright-core
  chromium
  # bench/run.py draws its figures
  python3-matplotlib
)
# Node and npm for the browser tests: Debian's, unless a node with npm is there already
# (a NodeSource nodejs ships its own npm and conflicts with Debian's npm package).
if ! command -v npm >/dev/null 2>&1; then
  packages+=(nodejs npm)
fi
if [ "${1:-}" = "--bench" ]; then
  packages+=(wrk nginx-light)
fi

missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  echo "install-deps: installing ${missing[*]}"
  SUDO=""
  [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  export DEBIAN_FRONTEND=noninteractive
  $SUDO apt-get update -qq
  $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# The browser tests' npm packages, exactly as the lockfile pins them; again only when
# the lockfile changed since the last install.
browser=$(cd "$(dirname "$0")/../tests/browser" && pwd)
stamp=$browser/node_modules/.dingo-lock
if ! cmp -s "$browser/package-lock.json" "$stamp" 2>/dev/null; then
  echo "install-deps: npm ci in tests/browser"
  (cd "$browser" && npm ci --no-audit --no-fund --loglevel=error)
  cp "$browser/package-lock.json" "$stamp"
fi
