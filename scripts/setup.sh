#!/usr/bin/env bash
# Installs the Debian packages eyrie needs (when missing), then configures and builds it.
# Usage: scripts/setup.sh [BUILD_DIR] [extra cmake arguments...]
set -euo pipefail
cd "$(dirname "$0")/.."
build_dir=${1:-build}
shift || true

packages=(g++ cmake ninja-build libcaf-dev libboost1.81-dev libsimdjson-dev
          libgtest-dev libbenchmark-dev)
# The chat UI's browser tests (tests/web) drive Debian's headless Chromium.
web_tests=1
for a in "$@"; do
  if [[ "$a" =~ ^-DEYRIE_BUILD_TESTS(:BOOL)?=(OFF|0|FALSE|NO)$ ]]; then web_tests=0; fi
done
if ((web_tests)); then packages+=(chromium); fi
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  sudo=""
  [ "$(id -u)" -eq 0 ] || sudo="sudo"
  echo "eyrie: installing ${missing[*]}"
  $sudo apt-get update -qq
  DEBIAN_FRONTEND=noninteractive $sudo apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

# playwright-core for the browser tests, pinned by tests/web/package-lock.json; reinstalled only
# when the lock file changes. Node.js itself is not a Debian 12 package recent enough: bring your own.
if ((web_tests)); then
  if ! command -v npm >/dev/null; then
    echo "eyrie: npm not found; the browser test web_e2e will fail until Node.js 18+ is installed" >&2
  elif ! cmp -s tests/web/package-lock.json tests/web/node_modules/.eyrie-lock; then
    (cd tests/web && npm ci --no-audit --no-fund --loglevel=error && cp package-lock.json node_modules/.eyrie-lock)
  fi
fi

cmake -S . -B "$build_dir" -G Ninja -DCMAKE_BUILD_TYPE=Release "$@"
cmake --build "$build_dir" -j "$(nproc)"
