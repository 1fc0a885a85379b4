#!/usr/bin/env bash
# The Debian packages the engine tests need, installed when missing. `make test` runs this under
# CI=true only: there a missing engine fails its tests instead of skipping them. On a laptop the
# tests that need one skip with the package to install, and this script is `make system-deps`.
#   postgresql  tests/integration/test_team_stack.py (a real PostgreSQL behind mlflow server)
#   chromium    tests/integration/test_docs_site.py (the course site in headless Chromium)
set -euo pipefail

missing=()
have_pg() { command -v pg_ctl >/dev/null 2>&1 || compgen -G "/usr/lib/postgresql/*/bin/pg_ctl" >/dev/null; }
have_pg || missing+=(postgresql)
command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || missing+=(chromium)

if [ ${#missing[@]} -eq 0 ]; then
  echo "system-deps: all present"
  exit 0
fi
echo "system-deps: installing ${missing[*]} (Debian packages)"
SUDO=""
if [ "$(id -u)" != 0 ]; then SUDO="sudo"; fi
$SUDO apt-get update -qq
DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
