#!/usr/bin/env bash
# Installs the Debian packages roost builds and tests with, and nothing else:
# each package is checked with dpkg -s, and apt-get runs only for the missing ones.
set -euo pipefail

PKGS=(
    gcc clang make pkg-config libclang-rt-14-dev
    libuv1-dev node-llhttp libjansson-dev libssl-dev
    libsqlite3-dev libpq-dev libhiredis-dev libcurl4-openssl-dev libdeflate-dev zlib1g-dev
    python3-pytest python3-websockets python3-httpx python3-requests curl clang-format
    postgresql sqlite3 python3-fastapi python3-sqlalchemy python3-aiosqlite python3-asyncpg
    python3-uvicorn wrk chromium
    python3-celery python3-redis redis-server
    python3-prometheus-client
    python3-jsonschema
    libvips-dev libvips-tools ffmpeg
    dpkg-dev debhelper lintian fakeroot man-db groff-base
)
# Node.js runs the browser tests (playwright-core drives Debian's chromium). The machine image
# may ship its own node and npm, which conflict with Debian's: install them only when absent.
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)

missing=()
for p in "${PKGS[@]}"; do
    dpkg -s "$p" >/dev/null 2>&1 || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
    echo "deps: installing ${missing[*]}" >&2
    SUDO=""
    [ "$(id -u)" -eq 0 ] || SUDO=sudo
    $SUDO apt-get update -qq
    DEBIAN_FRONTEND=noninteractive $SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# playwright-core (pinned in package.json) for the browser tests, once; uplot and
# swagger-ui-dist are compiled into the binary; @redocly/cli lints the OpenAPI document.
cd "$(dirname "$0")/.."
if [ ! -d node_modules/playwright-core ] || [ ! -d node_modules/uplot ] ||
    [ ! -d node_modules/swagger-ui-dist ] || [ ! -d node_modules/@redocly/cli ]; then
    echo "deps: npm install (playwright-core, uplot, swagger-ui-dist, @redocly/cli)" >&2
    npm install --no-audit --no-fund --silent
fi
