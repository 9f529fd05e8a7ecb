#!/usr/bin/env bash
# Installs the Debian packages Tawqi's demo and tests need, when missing.
# Idempotent and quick when everything is there; apt-get needs root.
set -euo pipefail

PACKAGES=(
  softhsm2            # the PKCS#11 token used by default and in every HSM test
  libp11-kit0         # p11-kit's RPC server code, hosted by hsm.server (one token state)
  p11-kit-modules     # p11-kit-client.so: how every process reaches the token server
  opensc              # pkcs11-tool: an outside judge of our token objects
  openssl             # an outside judge of certificates, CRLs, OCSP, time-stamps
  poppler-utils       # pdfsig: an outside judge of signed PDFs
  fonts-hosny-amiri   # the Arabic font of the visible signature stamp and the web pages
  fonts-dejavu-core   # the Latin face the web pages serve (@font-face)
  postgresql          # binaries for the test-suite's throwaway cluster
  chromium            # headless browser for the web pages' end-to-end tests
  nodejs              # npm: installs axe-core, the accessibility checker the browser tests inject
  nginx-light         # serves the pre-signed OCSP responses in the benchmark
  libnss3-tools       # certutil: the NSS trust store pdfsig reads in the tests
)

missing=()
for pkg in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$pkg")
  fi
done

if [ ${#missing[@]} -eq 0 ]; then
  exit 0
fi

echo "installing system packages: ${missing[*]}"
if [ "$(id -u)" -ne 0 ]; then
  echo "error: need root to apt-get install ${missing[*]}" >&2
  exit 1
fi
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# Debian would start nginx (and PostgreSQL's default cluster) on install; our tests and
# benchmarks run their own instances. A policy-rc.d that refuses (exit 101) keeps the
# packages from starting any service, so there is nothing of theirs to stop afterwards.
policy=/usr/sbin/policy-rc.d
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod 755 "$policy"
  trap 'rm -f "$policy"' EXIT  # ours only, even if the install fails
fi
apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
