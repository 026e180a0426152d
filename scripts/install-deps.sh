#!/usr/bin/env bash
# Installs the Debian packages fieldsync needs to build, test and benchmark.
# Idempotent: when everything is present it only runs dpkg-query and exits.
set -euo pipefail

PACKAGES=(
  build-essential cmake ninja-build ccache pkg-config clang-format clang
  libclang-rt-14-dev  # libFuzzer and the sanitizer runtimes for clang (only Recommended by clang-14)
  libboost1.81-dev libboost-json1.81-dev
  libsqlite3-dev sqlite3
  flatbuffers-compiler libflatbuffers-dev
  libssl-dev openssl
  libzstd-dev  # zstd: compression of protocol version 2 frames
  libpq-dev   # the PostgreSQL central store (server side only: fieldsync_pg)
  postgresql  # ...and the throwaway cluster its tests run against (scripts/pg-cluster.sh)
  libgtest-dev libgmock-dev googletest
  libbenchmark-dev
  libgoogle-perftools-dev
  curl
  libhowardhinnant-date-dev tzdata  # the company's time zone of the head-office reports (server/src/local_time.h)
  default-jdk-headless  # mobile-glue: the JNI bridge's jni.h, javac for the Java package and its test
  # The ARM cross builds (scripts/cross-test.sh): Debian's cross compilers and qemu-user to run their tests;
  # the target libraries come from scripts/cross-sysroot.sh (below).
  g++-aarch64-linux-gnu g++-arm-linux-gnueabihf qemu-user
  chromium  # the dashboard's browser test (tests/browser) drives Debian's Chromium: no browser download
  nodejs    # ... with playwright-core (npm ci from tests/browser/package-lock.json), which needs Node.js 20+
)

missing=()
for p in "${PACKAGES[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$p")
  fi
done

# npm: a Node.js package that brings its own npm must not get Debian's npm beside it, so npm is asked for
# only when Node.js came without it.
if command -v node >/dev/null && ! command -v npm >/dev/null; then missing+=(npm); fi

if [ ${#missing[@]} -eq 0 ]; then
  "$(dirname "$0")/cross-sysroot.sh"  # the ARM target libraries: quiet and quick when they are there
  exit 0
fi

SUDO=""
if [ "$(id -u)" -ne 0 ]; then SUDO="sudo"; fi
echo "install-deps: installing ${missing[*]}"
export DEBIAN_FRONTEND=noninteractive
$SUDO apt-get update -qq >/dev/null
$SUDO apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
if ! command -v npm >/dev/null; then $SUDO apt-get install -y -qq --no-install-recommends npm >/dev/null; fi
echo "install-deps: done"
"$(dirname "$0")/cross-sysroot.sh"
