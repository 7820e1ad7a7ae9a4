#!/usr/bin/env bash
# Installs the Debian packages treatyflow needs when they are missing:
# rabbitmq-server (the local broker), docker-compose (validates docker-compose.yml) and
# postgresql (the record's deployment store: its tests start a throwaway cluster).
set -euo pipefail
need=()
[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ] || need+=(rabbitmq-server)
command -v docker-compose >/dev/null 2>&1 || need+=(docker-compose)
compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null || need+=(postgresql)
# Node.js (>= 18) and npm: the agency written from the published contract alone (tests/node_agency).
command -v node >/dev/null 2>&1 || need+=(nodejs)
command -v npm >/dev/null 2>&1 || need+=(npm)
# curl and ss: tests/test_local_user.py probes the stack as another user with them.
command -v curl >/dev/null 2>&1 || need+=(curl)
command -v ss >/dev/null 2>&1 || need+=(iproute2)
# Optional extras named on the command line (e.g. chromium for make ui-check).
for extra in "$@"; do
  [ -x "/usr/bin/$extra" ] || need+=("$extra")
done
[ ${#need[@]} -eq 0 ] && exit 0
echo "[setup] installing Debian packages: ${need[*]}"
sudo=""
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1; then sudo="sudo"; else
    echo "[setup] need root to install ${need[*]}: run as root or install them first" >&2
    exit 1
  fi
fi
export DEBIAN_FRONTEND=noninteractive
# Do not let the packages start a system-wide broker or database: ours run under the
# state folder (or a test's temporary one).
policy=/usr/sbin/policy-rc.d
created_policy=""
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null
  $sudo chmod +x "$policy"
  created_policy=1
fi
$sudo apt-get update -qq
$sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
[ -n "$created_policy" ] && $sudo rm -f "$policy"
echo "[setup] installed ${need[*]}"
