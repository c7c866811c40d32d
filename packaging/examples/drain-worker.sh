#!/bin/sh
# drain-worker.sh ID: take worker ID out of service; a new worker takes its slot first,
# the old one finishes its connections. Waits until the slot's new worker is ready.
# Expect: "draining worker ID", then "worker ID: pid OLD -> NEW, ready".
set -eu
. "$(dirname "$0")/lib.sh"
id=${1:?usage: drain-worker.sh ID}

old=$(status_json | jq --argjson id "$id" '[.workers[] | select(.id == $id)][0].pid')
[ "$old" != null ] || die "no worker $id"
"$DINGOCTL" --config "$DINGO_CONFIG" drain-worker "$id"
wait_for 30 "[.workers[] | select(.id == $id and .pid != $old and .state == \"ready\")] | length == 1" \
  || die "worker $id was not replaced in 30 s: dingoctl status; journalctl -u dingo"
new=$(status_json | jq --argjson id "$id" --argjson old "$old" \
      '[.workers[] | select(.id == $id and .pid != $old)][0].pid')
echo "worker $id: pid $old -> $new, ready"
