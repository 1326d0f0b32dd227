#!/usr/bin/env bash
# Cross-compile check of the AArch64 (NEON) build, from an x86-64 Debian/Ubuntu machine:
#   1. installs g++-aarch64-linux-gnu and qemu-user with apt when they are missing;
#   2. cross-builds libfastxent.a (Release) with cpp/cmake/aarch64-linux-gnu.cmake, failing on any
#      compiler warning;
#   3. installs it, builds cpp/examples statically against it with find_package(fastxent) and,
#      when qemu-aarch64 is present, runs the example (exits non-zero on a loss/gradient
#      mismatch) with the default ISA (neon) and with FASTXENT_ISA=scalar.
# No cross compiler to be had (no apt, no root, no network) is not a failure of the project: the
# script says so and exits 0. Build trees go to a temporary directory (or $FASTXENT_ARM_BUILD).
# About a minute once the packages are installed.
set -euo pipefail
cd "$(dirname "$0")/.."
repo=$(pwd)

cxx=aarch64-linux-gnu-g++
sudo_cmd=()
if [ "$(id -u)" -ne 0 ]; then
  if command -v sudo >/dev/null 2>&1 && sudo -n true 2>/dev/null; then sudo_cmd=(sudo -n); fi
fi

apt_install() {  # apt_install PACKAGE...: 0 when installed
  command -v apt-get >/dev/null 2>&1 || return 1
  if [ "$(id -u)" -ne 0 ] && [ ${#sudo_cmd[@]} -eq 0 ]; then return 1; fi
  if [ -z "${apt_updated:-}" ]; then
    "${sudo_cmd[@]}" apt-get update -qq >/dev/null 2>&1 || return 1
    apt_updated=1
  fi
  "${sudo_cmd[@]}" env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "$@" >/dev/null 2>&1
}

echo "== aarch64 cross check =="
if ! command -v "$cxx" >/dev/null 2>&1; then
  echo "installing g++-aarch64-linux-gnu ..."
  if ! apt_install g++-aarch64-linux-gnu || ! command -v "$cxx" >/dev/null 2>&1; then
    echo "SKIPPED: no aarch64 cross compiler ($cxx) and it could not be installed with apt" \
         "(no apt-get, no root/sudo, or no network). Not a failure of fastxent."
    exit 0
  fi
fi
if ! command -v qemu-aarch64 >/dev/null 2>&1; then
  echo "installing qemu-user ..."
  apt_install qemu-user || echo "note: qemu-user could not be installed; the example is built, not run"
fi
"$cxx" --version | head -n 1

if [ -n "${FASTXENT_ARM_BUILD:-}" ]; then
  work=$FASTXENT_ARM_BUILD
  mkdir -p "$work"
else
  work=$(mktemp -d)
  trap 'rm -rf "$work"' EXIT
fi
toolchain="$repo/cpp/cmake/aarch64-linux-gnu.cmake"

echo "== cross-building libfastxent.a for aarch64 (Release) =="
cmake -S "$repo" -B "$work/lib" -DCMAKE_TOOLCHAIN_FILE="$toolchain" -DCMAKE_BUILD_TYPE=Release -DFASTXENT_CUDA=OFF \
  -DCMAKE_INSTALL_PREFIX="$work/prefix" >"$work/configure.log" 2>&1 || {
  cat "$work/configure.log"
  exit 1
}
# A clean rebuild of the library's objects, so that every warning shows in this log.
cmake --build "$work/lib" -j2 --clean-first 2>&1 | tee "$work/build.log"
warnings=$(grep -c "warning:" "$work/build.log" || true)
if [ "$warnings" -ne 0 ]; then
  echo "FAILED: the aarch64 build emitted $warnings warning(s) (see above)"
  exit 1
fi
echo "aarch64 library built without warnings: $(ls "$work"/lib/libfastxent.a)"
cmake --install "$work/lib" --component cpp >/dev/null

echo "== cross-building the find_package(fastxent) example (static) =="
# -static needs the archive of libgomp, which FindOpenMP would otherwise take as libgomp.so.
gomp=$("$cxx" -print-file-name=libgomp.a)
cmake -S cpp/examples -B "$work/example" -DCMAKE_TOOLCHAIN_FILE="$toolchain" \
  -DCMAKE_BUILD_TYPE=Release -DCMAKE_PREFIX_PATH="$work/prefix" \
  -DCMAKE_EXE_LINKER_FLAGS=-static -DOpenMP_gomp_LIBRARY="$gomp" >"$work/example-configure.log" 2>&1 || {
  cat "$work/example-configure.log"
  exit 1
}
if ! cmake --build "$work/example" -j2 >"$work/example-build.log" 2>&1; then
  cat "$work/example-build.log"
  exit 1
fi
# (libgomp's static archive draws a glibc note about dlopen in static programs: harmless here.)
grep -v "dlopen\|libgomp.a(" "$work/example-build.log" || true
example="$work/example/cross_entropy_example"

if command -v qemu-aarch64 >/dev/null 2>&1; then
  echo "== running the example under qemu-aarch64 =="
  qemu-aarch64 "$example"
  FASTXENT_ISA=scalar qemu-aarch64 "$example"
  qemu-aarch64 "$work/example/bce_example"
  FASTXENT_ISA=scalar qemu-aarch64 "$work/example/bce_example"
  echo "aarch64 cross check passed"
else
  echo "aarch64 cross check passed (built only: qemu-aarch64 not available to run the example)"
fi
