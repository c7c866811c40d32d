#!/usr/bin/env bash
# Runs every benchmark and prints the table (see bench/run.py for what each measures).
set -euo pipefail
build=${1:-build}
shift || true
# Debian's python3: its python3-matplotlib draws the charts (bench/charts.py).
exec /usr/bin/python3 "$(dirname "$0")/run.py" --build "$build" "$@"
