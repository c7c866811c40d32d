#!/bin/sh
# status.sh: the numbers an on-call engineer looks at first, from `dingoctl status --json`.
# Expect: one line for the supervisor, one per worker; exit 1 if a worker is not ready.
set -eu
. "$(dirname "$0")/lib.sh"

status_json | jq -r '
  "supervisor pid \(.pid) v\(.version) up \(.uptime_s | floor)s generation \(.generation) \(.state)\(if .reloading then " (reloading)" else "" end)",
  "connections \([.workers[].connections] | add) handoff dropped \(.handoff.dropped) hub links \(.hub.links)",
  (.workers[] | "worker \(.id) pid \(.pid) \(.state) conns \(.connections) restarts \(.restarts) probe \(.last_probe_ms // "-")ms lag \(.loop_lag_ms | floor)ms")'
status_json | jq -e "$ALL_READY" >/dev/null || die "some workers are not ready"
