#!/usr/bin/env bash
# Installs what building and testing plainflow-relay needs on Debian 12
# (Swift 6 itself is expected on PATH) and builds the debug binary.
set -euo pipefail
cd "$(dirname "$0")/.."

need=()
for pkg in libcurl4-openssl-dev libsqlite3-dev pkg-config python3 socat curl; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
if ((${#need[@]})); then
  echo "installing: ${need[*]}"
  SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
  $SUDO apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
fi
command -v swift >/dev/null || { echo "swift not found: install Swift 6 (https://www.swift.org/install/linux/)" >&2; exit 1; }
swift build
