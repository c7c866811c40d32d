#!/bin/sh
# rotate-tls.sh CERT KEY [OCSP]: put a new certificate chain, its key and (optionally) a
# DER OCSP response where [tls] cert, key and ocsp point, check, and reload: the new
# workers load them, connections on the old workers finish with the old certificate.
# Keeps the previous files as *.old, and puts them back if the check fails.
#   ./rotate-tls.sh /tmp/new/fullchain.pem /tmp/new/key.pem /tmp/new/ocsp.der
# Expect: "/etc/dingo/dingo.toml: ok", "reloaded: generation N", and the new serial.
set -eu
. "$(dirname "$0")/lib.sh"
cert=${1:?usage: rotate-tls.sh CERT KEY [OCSP]} key=${2:?usage: rotate-tls.sh CERT KEY [OCSP]}
ocsp=${3:-}
dir=$(dirname "$DINGO_CONFIG")

# The paths the config names, relative to its folder (single paths, not arrays).
value() { sed -n "/^\[tls\]/,/^\[/s/^$1 *= *\"\([^\"]*\)\".*/\1/p" "$DINGO_CONFIG" | head -1; }
abs() { case "$1" in /*) echo "$1" ;; *) echo "$dir/$1" ;; esac; }
dest_cert=$(abs "$(value cert)") dest_key=$(abs "$(value key)")
[ "$dest_cert" != "$dir/" ] && [ "$dest_key" != "$dir/" ] || die "no [tls] cert and key in $DINGO_CONFIG"

openssl x509 -in "$cert" -noout -serial -enddate
[ "$(openssl x509 -in "$cert" -noout -pubkey)" = "$(openssl pkey -in "$key" -pubout)" ] ||
  die "$key does not match $cert"

install_file() {  # SRC DEST MODE: keep DEST.old, then replace DEST atomically
  [ -e "$2" ] && cp -p "$2" "$2.old"
  install -o root -g dingo -m "$3" "$1" "$2.new"
  mv -f "$2.new" "$2"
}
restore() {
  for f in "$dest_cert" "$dest_key" ${dest_ocsp:+"$dest_ocsp"}; do
    [ -e "$f.old" ] && mv -f "$f.old" "$f"
  done
  die "check failed; the previous files are back in place"
}
install_file "$cert" "$dest_cert" 0644
install_file "$key" "$dest_key" 0640
dest_ocsp=
if [ -n "$ocsp" ]; then
  dest_ocsp=$(abs "$(value ocsp)")
  [ "$dest_ocsp" != "$dir/" ] || die "no [tls] ocsp in $DINGO_CONFIG"
  install_file "$ocsp" "$dest_ocsp" 0644
fi
"$SUPERVISOR" --check-config "$DINGO_CONFIG" || restore
"$(dirname "$0")/reload.sh"
