#!/usr/bin/env bash
# Unpacks the target-architecture libraries the client side links (SQLite, OpenSSL, zstd, FlatBuffers, Boost
# headers + Boost.JSON, GoogleTest, Google Benchmark) into a private sysroot per architecture:
# $FIELDSYNC_CROSS_ROOT/<triplet> (default /opt/fieldsync-cross), which cmake/toolchains/*.cmake and
# scripts/qemu-run.sh use.
# Usage: scripts/cross-sysroot.sh [aarch64-linux-gnu|arm-linux-gnueabihf]...   (default: both)
#
# Why not `dpkg --add-architecture` and `apt-get install libfoo-dev:arm64`: a Multi-Arch: same package must have
# exactly the native package's version, and the native -dev packages here come from the security suite while the
# mirror serves the foreign architectures' security indices broken (apt-get update then fails for every caller,
# rc 100). So the same Debian packages are fetched with apt's own client under a private configuration (own
# lists, own cache, the system's sources), unpacked with dpkg-deb, and the system's dpkg state is never touched.
# Idempotent: a stamp per architecture records the package set; when it matches, nothing runs and nothing prints.
set -euo pipefail
cd "$(dirname "$0")/.."

root=${FIELDSYNC_CROSS_ROOT:-/opt/fieldsync-cross}
triplets=("$@")
[ ${#triplets[@]} -eq 0 ] && triplets=(aarch64-linux-gnu arm-linux-gnueabihf)

PACKAGES=(
  libsqlite3-dev libsqlite3-0
  libssl-dev libssl3
  libzstd-dev libzstd1
  libflatbuffers-dev libflatbuffers2
  libboost1.81-dev libboost-json1.81-dev libboost-json1.81.0 libboost-container1.81-dev libboost-container1.81.0
  libboost-system1.81-dev libboost-system1.81.0
  libgtest-dev libgmock-dev
  libbenchmark-dev libbenchmark1debian  # only for the measurements of docs/PERFORMANCE.md "ARM builds" (client-side benches)
)
stamp_text="packages: ${PACKAGES[*]}"

todo=()
for t in "${triplets[@]}"; do
  case "$t" in
    aarch64-linux-gnu) ;;
    arm-linux-gnueabihf) ;;
    *) echo "cross-sysroot: unknown triplet $t" >&2; exit 2 ;;
  esac
  if [ "$(cat "$root/$t/.stamp" 2>/dev/null)" != "$stamp_text" ]; then todo+=("$t"); fi
done
[ ${#todo[@]} -eq 0 ] && exit 0

apt_dir="$root/apt"
mkdir -p "$apt_dir/lists/partial" "$apt_dir/cache/archives/partial" "$apt_dir/debs"
touch "$apt_dir/status"
cat >"$apt_dir/apt.conf" <<EOF
Dir::State::Lists "$apt_dir/lists";
Dir::State::status "$apt_dir/status";
Dir::Cache "$apt_dir/cache";
APT::Architectures { "arm64"; "armhf"; };
APT::Sandbox::User "root";
EOF
export APT_CONFIG="$apt_dir/apt.conf"
echo "cross-sysroot: fetching ${todo[*]} libraries into $root"
# A failed index of a suite that is not needed (see above) is not an error; a missing package is, below.
apt-get update -qq >/dev/null 2>&1 || true

for t in "${todo[@]}"; do
  case "$t" in
    aarch64-linux-gnu) arch=arm64 ;;
    arm-linux-gnueabihf) arch=armhf ;;
  esac
  debs="$apt_dir/debs/$arch"
  rm -rf "$debs" && mkdir -p "$debs"
  specs=()
  for p in "${PACKAGES[@]}"; do specs+=("$p:$arch"); done
  (cd "$debs" && apt-get download -qq "${specs[@]}" >/dev/null)
  # Unpacked beside the old tree and swapped in whole: a build using the old one never sees half a tree.
  sysroot="$root/$t"
  rm -rf "$sysroot.new" && mkdir -p "$sysroot.new"
  for d in "$debs"/*.deb; do dpkg-deb -x "$d" "$sysroot.new"; done
  # Absolute symlinks (a -dev package's libfoo.so -> /usr/lib/...) would point at the host: re-aim them inside.
  find "$sysroot.new" -type l -lname '/*' | while read -r l; do
    ln -sfn "$sysroot$(readlink "$l")" "$l"
  done
  echo "$stamp_text" >"$sysroot.new/.stamp"
  rm -rf "$sysroot.old"
  if [ -d "$sysroot" ]; then mv "$sysroot" "$sysroot.old"; fi
  mv "$sysroot.new" "$sysroot"
  rm -rf "$sysroot.old"
done
echo "cross-sysroot: done"
