#!/usr/bin/env bash
# Makes a development CA and server certificates (ECDSA P-256 and RSA 2048) for
# localhost / 127.0.0.1 / ::1 in DIR. Idempotent: existing files are kept.
set -euo pipefail
dir=${1:?usage: dev-cert.sh DIR [NAME]}
name=${2:-localhost}
mkdir -p "$dir"
cd "$dir"
[ -f ca.pem ] || {
  openssl req -x509 -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -days 3650 \
    -subj "/CN=dingo development CA" -keyout ca.key -out ca.pem 2>/dev/null
}
ext="subjectAltName=DNS:$name,DNS:localhost,IP:127.0.0.1,IP:::1
basicConstraints=CA:FALSE
keyUsage=digitalSignature,keyEncipherment
extendedKeyUsage=serverAuth"
issue() {  # issue KEYFILE CERTFILE KEYSPEC...
  local key=$1 cert=$2; shift 2
  [ -f "$cert" ] && return 0
  openssl req -newkey "$@" -nodes -subj "/CN=$name" -keyout "$key" -out "$key.csr" 2>/dev/null
  openssl x509 -req -in "$key.csr" -CA ca.pem -CAkey ca.key -CAcreateserial -days 825 \
    -extfile <(printf '%s\n' "$ext") -out "$cert" 2>/dev/null
  rm -f "$key.csr"
}
issue key.pem cert.pem ec -pkeyopt ec_paramgen_curve:P-256
issue rsa-key.pem rsa-cert.pem rsa:2048
echo "$dir: ca.pem, cert.pem/key.pem (ECDSA P-256), rsa-cert.pem/rsa-key.pem (RSA 2048)"
