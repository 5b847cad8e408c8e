#!/usr/bin/env bash
# Installs the given Debian packages with apt-get unless they are installed
# already. Shared by setup.sh (build and test) and packaging/ (the .deb).
# Usage: scripts/need-packages.sh PACKAGE...
set -euo pipefail

need=()
for pkg in "$@"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || need+=("$pkg")
done
((${#need[@]})) || exit 0
echo "installing: ${need[*]}"
SUDO=""; [ "$(id -u)" -eq 0 ] || SUDO="sudo"
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${need[@]}"
