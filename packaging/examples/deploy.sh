#!/bin/sh
# deploy.sh DEB: install (or upgrade) dingo from a .deb, check the config, start it and
# wait until every worker is ready. On a host that already runs it, this upgrades the
# files and then switches binaries with no downtime (upgrade.sh).
#   ./deploy.sh ./dingo_0.1.0_amd64.deb
set -eu
. "$(dirname "$0")/lib.sh"
deb=${1:?usage: deploy.sh DEB}

running=no
status_json >/dev/null 2>&1 && running=yes
apt-get install -y "$deb"
"$SUPERVISOR" --check-config "$DINGO_CONFIG"
if [ "$running" = yes ]; then
  exec "$(dirname "$0")/upgrade.sh"
fi
systemctl enable --now dingo.service
wait_for 30 "$ALL_READY" || die "workers not ready after 30 s: journalctl -u dingo"
"$DINGOCTL" --config "$DINGO_CONFIG" status
