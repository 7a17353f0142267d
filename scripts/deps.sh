#!/usr/bin/env bash
# Installs the Debian packages roost builds and tests with, and nothing else:
# each package is checked with dpkg -s, and apt-get runs only for the missing ones.
set -euo pipefail

PKGS=(
    gcc clang make pkg-config libclang-rt-14-dev
    libuv1-dev node-llhttp libjansson-dev libssl-dev
    libsqlite3-dev libpq-dev libhiredis-dev libcurl4-openssl-dev libdeflate-dev zlib1g-dev
    python3-pytest python3-websockets python3-httpx curl clang-format
)

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
