#!/usr/bin/env bash
# System packages the tests need on Debian 12 (run as root): Mesa's software Vulkan driver from
# bookworm-backports (Dawn rejects Debian 12's stock Mesa 22 lavapipe) for WebGPU in Node, and
# Debian's chromium for the browser test. Does nothing when they are already there. When another
# apt or dpkg holds the package locks (unattended upgrades on a fresh machine), it waits for them
# (up to 10 minutes) instead of failing.
set -euo pipefail
mesa=$(dpkg-query -W -f='${Version}' mesa-vulkan-drivers 2>/dev/null || true)
if [[ "$mesa" == 25* ]] && [ -x /usr/bin/chromium ]; then
  exit 0
fi
if [ "$(id -u)" != 0 ]; then
  echo "scripts/install-system-deps.sh: need root to install mesa-vulkan-drivers (bookworm-backports) and chromium" >&2
  exit 1
fi
if [ ! -f /etc/apt/sources.list.d/backports.sources ]; then
  uri=$(awk '/^URIs:/{print $2; exit}' /etc/apt/sources.list.d/debian.sources 2>/dev/null || echo http://deb.debian.org/debian)
  printf 'Types: deb\nURIs: %s\nSuites: bookworm-backports\nComponents: main\nSigned-By: /usr/share/keyrings/debian-archive-keyring.gpg\n' "$uri" > /etc/apt/sources.list.d/backports.sources
fi
export DEBIAN_FRONTEND=noninteractive
# apt-get waits up to this many seconds for the dpkg lock; the lists lock has no such option, so
# `apt-get update` is retried while another process holds it.
lock_wait=(-o DPkg::Lock::Timeout=600)
for try in $(seq 1 30); do
  if apt-get "${lock_wait[@]}" update -qq; then break; fi
  [ "$try" = 30 ] && { echo "scripts/install-system-deps.sh: apt-get update kept failing (is another apt holding /var/lib/apt/lists/lock?)" >&2; exit 1; }
  echo "scripts/install-system-deps.sh: apt-get update failed (another apt running?), retrying in 10 s" >&2
  sleep 10
done
apt-get "${lock_wait[@]}" install -y -qq -t bookworm-backports mesa-vulkan-drivers libvulkan1 >/dev/null
apt-get "${lock_wait[@]}" install -y -qq chromium >/dev/null
