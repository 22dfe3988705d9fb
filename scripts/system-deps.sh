#!/usr/bin/env bash
# Installs the Debian packages Stalwart's demo and tests use, only when they are missing.
# `system-deps.sh demo`: only what `make demo` needs (the sandbox, a compiler for the embedded model's
# one build); the event bus, the browser and promtool are for the tests.
set -euo pipefail
need=()
command -v bwrap >/dev/null 2>&1 || need+=(bubblewrap)
[ -x /usr/bin/python3.11 ] || need+=(python3.11)
command -v g++ >/dev/null 2>&1 || need+=(g++)
command -v cmake >/dev/null 2>&1 || need+=(cmake)
command -v ninja >/dev/null 2>&1 || need+=(ninja-build)
if [ "${1:-all}" != demo ]; then
  [ -x /usr/sbin/nats-server ] || need+=(nats-server)
  command -v promtool >/dev/null 2>&1 || need+=(prometheus)
  [ -x /usr/bin/chromium ] || need+=(chromium)
  [ -f /usr/share/fonts/truetype/dejavu/DejaVuSans.ttf ] || need+=(fonts-dejavu-core)
fi
if [ ${#need[@]} -gt 0 ]; then
  if [ "$(id -u)" != 0 ]; then
    echo "missing system packages: ${need[*]} (run: sudo apt-get install -y ${need[*]})" >&2
    exit 1
  fi
  echo "installing system packages: ${need[*]}"
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
