#!/bin/sh
# upgrade.sh: switch the running supervisor to the dingo-supervisor binary now on disk
# (after installing a new package) with no connection refused. Waits until the new
# supervisor serves with every worker ready.
# Expect: "upgrading: new supervisor pid P", then "upgraded: pid OLD (vA) -> P (vB)".
set -eu
. "$(dirname "$0")/lib.sh"

old_pid=$(status_json | jq .pid)
old_version=$(status_json | jq -r .version)
"$SUPERVISOR" --check-config "$DINGO_CONFIG"
out=$("$DINGOCTL" --config "$DINGO_CONFIG" upgrade)
echo "$out"
new_pid=${out##* }
wait_for 60 "(.pid == $new_pid) and ($ALL_READY)" \
  || die "the new supervisor (pid $new_pid) did not take over; the old one goes on: journalctl -u dingo"
echo "upgraded: pid $old_pid (v$old_version) -> $new_pid (v$(status_json | jq -r .version))"
