#!/bin/bash
# A self-signed certificate for the proxy, for a laptop or a first boot:
#   docker/proxy/self-signed.sh DIR HOSTNAME [EXTRA_NAME...]
# writes DIR/tls.crt and DIR/tls.key (mode 600) unless DIR/tls.crt exists already.
# Clients must be told to trust it (curl --cacert DIR/tls.crt); replace both files
# with a certificate from your CA for real clients (docs/security.md).
set -euo pipefail
dir="${1:?usage: self-signed.sh DIR HOSTNAME [EXTRA_NAME...]}"
host="${2:?usage: self-signed.sh DIR HOSTNAME [EXTRA_NAME...]}"
shift 2
if [[ -f "$dir/tls.crt" ]]; then
  echo "self-signed: $dir/tls.crt exists, keeping it"
  exit 0
fi
san="DNS:$host,DNS:localhost,IP:127.0.0.1"
for name in "$@"; do
  if [[ "$name" =~ ^[0-9.]+$ ]]; then san="$san,IP:$name"; else san="$san,DNS:$name"; fi
done
mkdir -p "$dir"
umask 077
openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out "$dir/tls.key"
openssl req -x509 -new -key "$dir/tls.key" -sha256 -days 365 -out "$dir/tls.crt" \
  -subj "/CN=$host" -addext "subjectAltName=$san"
# nginx's master process (root in the container) reads both at start.
chmod 0644 "$dir/tls.crt"
chmod 0600 "$dir/tls.key"
echo "self-signed: $dir/tls.crt for $san (valid 365 days)"
