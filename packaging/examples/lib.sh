# Shared by the example scripts: the config, dingoctl, and waiting for a condition.
# Sourced, not run. Override DINGO_CONFIG to operate another supervisor.
: "${DINGO_CONFIG:=/etc/dingo/dingo.toml}"
export DINGO_CONFIG
DINGOCTL="${DINGOCTL:-dingoctl}"
SUPERVISOR="${SUPERVISOR:-dingo-supervisor}"

die() { echo "$(basename "$0"): $*" >&2; exit 1; }

status_json() { "$DINGOCTL" --config "$DINGO_CONFIG" status --json; }

# wait_for SECONDS JQ_FILTER: until `dingoctl status --json | jq -e FILTER` holds.
wait_for() {
  limit=$1 filter=$2 t=0
  while [ "$t" -lt "$((limit * 5))" ]; do
    if status_json 2>/dev/null | jq -e "$filter" >/dev/null 2>&1; then return 0; fi
    sleep 0.2
    t=$((t + 1))
  done
  return 1
}

# Every worker of the current generation ready, none left draining.
ALL_READY='[.workers[] | select(.state != "ready")] | length == 0'
