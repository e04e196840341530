#!/usr/bin/env bash
# Install the system programs the tests in tests/system/ need (Debian/Ubuntu, run as root):
#   chromium    headless browser for the Dagster UI screenshot/DOM tests
#   postgresql  a real PostgreSQL server for the Postgres-backed Dagster instance test
#   redis-server  the Celery broker/result backend for the Celery backfill test
# Idempotent and quiet: does nothing when all are present; runs `apt-get update` only when a
# package is missing. Exits non-zero with a message saying what failed.
set -euo pipefail

have_chromium() { command -v chromium >/dev/null 2>&1 || [ -x /usr/bin/chromium ]; }
have_postgres() { compgen -G "/usr/lib/postgresql/*/bin/initdb" >/dev/null 2>&1 || command -v initdb >/dev/null 2>&1; }
have_redis() { command -v redis-server >/dev/null 2>&1 || [ -x /usr/bin/redis-server ]; }

missing=()
have_chromium || missing+=(chromium)
have_postgres || missing+=(postgresql)
have_redis || missing+=(redis-server)

if [ ${#missing[@]} -eq 0 ]; then
  echo "install-system-deps: chromium, postgresql and redis-server already installed; nothing to do"
  exit 0
fi

if ! command -v apt-get >/dev/null 2>&1; then
  echo "install-system-deps: missing ${missing[*]} and apt-get is not available; install them with your package manager" >&2
  exit 1
fi
if [ "$(id -u)" -ne 0 ]; then
  echo "install-system-deps: missing ${missing[*]}; run as root (or: sudo apt-get install -y ${missing[*]})" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
echo "install-system-deps: installing ${missing[*]} with apt-get"
log=$(mktemp)
trap 'rm -f "$log"' EXIT
# Update the package lists only when they are absent or the package is unknown to them.
if ! apt-cache show "${missing[@]}" >/dev/null 2>&1; then
  if ! apt-get update -qq >"$log" 2>&1; then
    cat "$log" >&2
    echo "install-system-deps: apt-get update failed" >&2
    exit 1
  fi
fi
if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >"$log" 2>&1; then
  # A stale list can name package versions the mirror no longer has: refresh once and retry.
  apt-get update -qq >>"$log" 2>&1 || true
  if ! apt-get install -y -qq --no-install-recommends "${missing[@]}" >>"$log" 2>&1; then
    tail -n 40 "$log" >&2
    echo "install-system-deps: apt-get install ${missing[*]} failed" >&2
    exit 1
  fi
fi

have_chromium || { echo "install-system-deps: chromium still missing after install" >&2; exit 1; }
have_postgres || { echo "install-system-deps: postgresql still missing after install" >&2; exit 1; }
have_redis || { echo "install-system-deps: redis-server still missing after install" >&2; exit 1; }
echo "install-system-deps: installed ${missing[*]}"
