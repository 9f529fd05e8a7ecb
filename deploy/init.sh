#!/bin/sh
# The one-shot init job of docker-compose.yml (scripts/stack.py does the same steps):
# idempotent, safe to run on every `docker compose up`.
set -eu
for name in so_pin service_pin root_pin envelope_token_pin secret_key; do
    file="/run/secrets/$name"
    [ -s "$file" ] || { echo "init: missing secret $name" >&2; exit 1; }
    if grep -q "change-me" "$file"; then
        echo "init: $name holds an example secret; make a real one" >&2; exit 1
    fi
done
[ -n "${TAWQI_PUBLIC_URL:-}" ] || { echo "init: TAWQI_PUBLIC_URL is not set" >&2; exit 1; }
tawqi db upgrade
tawqi refdata load
tawqi ca show --pem root >/dev/null 2>&1 || tawqi ca init
tawqi delivery setup
tawqi ocsp export "${TAWQI_OCSP_EXPORT_DIR:-/srv/tawqi-export}"
