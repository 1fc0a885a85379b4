#!/usr/bin/env bash
# The Debian packages the engine tests need, installed when missing. `make test` runs this under
# CI=true only: there a missing engine fails its tests instead of skipping them. On a laptop the
# tests that need one skip with the package to install, and this script is `make system-deps`.
#   postgresql  tests/integration/test_team_stack.py (a real PostgreSQL behind mlflow server)
#   chromium    tests/integration/test_docs_site.py (the course site in headless Chromium)
# With `containers` (make test-containers, not yet part of make test):
#   podman runc debootstrap netavark aardvark-dns iptables
#               tests/containers (the images built and run, the compose stack up; debootstrap
#               makes the local stand-ins for the official bases when no registry answers)
set -euo pipefail

missing=()
have_pg() { command -v pg_ctl >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; }
have_pg || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)
if [ "${1:-}" = containers ]; then
  for tool in podman runc debootstrap; do
    command -v "$tool" >/dev/null 2>&1 || missing+=("$tool")
  done
  # Container networks with names that resolve (compose's services call each other by name).
  [ -x /usr/lib/podman/netavark ] || missing+=(netavark)
  [ -x /usr/lib/podman/aardvark-dns ] || missing+=(aardvark-dns)
  command -v iptables >/dev/null 2>&1 || [ -x /usr/sbin/iptables ] || missing+=(iptables)  # netavark's NAT
fi

if [ ${#missing[@]} -eq 0 ]; then
  echo "system-deps: all present"
  exit 0
fi
echo "system-deps: installing ${missing[*]} (Debian packages)"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
