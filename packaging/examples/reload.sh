#!/bin/sh
# reload.sh: check the config, then a rolling reload; waits until the new generation's
# workers are all ready and the old ones have drained out.
# Expect: "/etc/dingo/dingo.toml: ok", "reloading: generation N", "reloaded: generation N".
set -eu
. "$(dirname "$0")/lib.sh"

"$SUPERVISOR" --check-config "$DINGO_CONFIG"
out=$("$DINGOCTL" --config "$DINGO_CONFIG" reload)   # exits 2 on a config it refuses
echo "$out"
gen=${out##* }
drain=$(sed -n 's/^drain_timeout *= *"\([0-9]*\)s".*/\1/p' "$DINGO_CONFIG")
wait_for "$(( ${drain:-30} + 15 ))" \
  "(.generation == $gen) and ([.workers[] | select(.generation != $gen or .state != \"ready\")] | length == 0)" \
  || die "generation $gen not fully ready and drained: dingoctl status; journalctl -u dingo"
echo "reloaded: generation $gen"
