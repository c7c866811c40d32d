#!/usr/bin/env bash
# `make run`: a development supervisor with 2 workers, plain HTTP on 127.0.0.1:8080,
# TLS on 127.0.0.1:8443 (a development certificate made here), admin on 127.0.0.1:9180.
set -euo pipefail
build=${1:-build}
root=$(cd "$(dirname "$0")/.." && pwd)
dev=$root/.dev
"$root/scripts/dev-cert.sh" "$dev" >/dev/null
if [ ! -f "$dev/dingo.toml" ]; then
  cat >"$dev/dingo.toml" <<'TOML'
# Development config written by `make run`; edit freely, it is kept.
[supervisor]
workers = 2
dispatch = "round-robin"
control_socket = "run/control.sock"
pid_file = "run/supervisor.pid"

[[listen]]
address = "127.0.0.1:8080"

[[listen]]
address = "127.0.0.1:8443"
tls = true

[tls]
cert = ["cert.pem", "rsa-cert.pem"]
key = ["key.pem", "rsa-key.pem"]

[admin]
address = "127.0.0.1:9180"
TOML
fi
cat <<EOF
dingo development supervisor (config: $dev/dingo.toml). Try, in another terminal:
  curl http://127.0.0.1:8080/healthz
  curl --cacert $dev/ca.pem https://localhost:8443/healthz
  curl http://127.0.0.1:9180/metrics
  $root/$build/bin/dingoctl --config $dev/dingo.toml status
Ctrl-C drains and stops.
EOF
exec "$root/$build/bin/dingo-supervisor" --config "$dev/dingo.toml"
