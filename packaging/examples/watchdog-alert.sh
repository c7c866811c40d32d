#!/bin/sh
# watchdog-alert.sh: an --on-alert hook for dingo-watchdog. Logs the event to the journal
# (tag dingo-alert, priority crit) and, when DINGO_ALERT_URL is set, POSTs it as JSON.
#   dingo-watchdog ... --on-alert /usr/share/doc/dingo/examples/watchdog-alert.sh
set -u
msg="dingo-watchdog ${DINGO_WATCHDOG_EVENT:-?}: check ${DINGO_WATCHDOG_CHECK:-?}: ${DINGO_WATCHDOG_DETAIL:-} (restart ${DINGO_WATCHDOG_RESTARTS:-?}) on $(hostname)"
logger -t dingo-alert -p daemon.crit -- "$msg"
if [ -n "${DINGO_ALERT_URL:-}" ]; then
  jq -cn --arg text "$msg" --arg event "${DINGO_WATCHDOG_EVENT:-}" '{text: $text, event: $event}' |
    curl -fsS --max-time 10 -H 'Content-Type: application/json' --data @- "$DINGO_ALERT_URL" >/dev/null
fi
